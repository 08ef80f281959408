"""HTTP: the Segment-compatible collector (and, later, the REST API and dashboard)."""

from tenure.api.app import create_app

__all__ = ["create_app"]
