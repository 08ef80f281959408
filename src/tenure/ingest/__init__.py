"""Getting facts in: the HTTP collector's inbox, the flusher into the lake, file importers."""
