"""The ``tenure`` command line: thin commands over the capability modules."""

from tenure.cli.app import app, main

__all__ = ["app", "main"]
