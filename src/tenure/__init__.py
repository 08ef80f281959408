"""Tenure: self-hostable user lifecycle management."""

from tenure.clock import Clock, FrozenClock, SystemClock
from tenure.errors import (
    AuthError,
    ConfigError,
    NotFoundError,
    PayloadTooLargeError,
    TenureError,
    ValidationError,
    WorkspaceError,
)
from tenure.workspace import Workspace

__all__ = [
    "AuthError",
    "Clock",
    "ConfigError",
    "FrozenClock",
    "NotFoundError",
    "PayloadTooLargeError",
    "SystemClock",
    "TenureError",
    "ValidationError",
    "Workspace",
    "WorkspaceError",
]
