"""Identity resolution: one canonical person per connected set of identifiers."""

from tenure.identity.graph import IdentityGraph, Link, links_from_records

__all__ = ["IdentityGraph", "Link", "links_from_records"]
