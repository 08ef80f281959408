"""Tenure's exception tree.

Every error Tenure raises on purpose derives from ``TenureError``; subclasses also inherit
the builtin a caller would naturally catch::

    TenureError
    ├── ConfigError(ValueError)          a setting is missing or malformed
    ├── ValidationError(ValueError)      input (a message, a row, a flag) is invalid
    │   └── PayloadTooLargeError         a message or batch exceeds the size limits
    ├── AuthError(PermissionError)       unknown or missing write key
    ├── NotFoundError(LookupError)       a person, id or link does not exist
    ├── NotFittedError(ValueError, AttributeError)  a model is used before ``fit``
    ├── ConvergenceError(RuntimeError)   a model's likelihood optimiser did not converge
    └── WorkspaceError(RuntimeError)     the workspace is missing or not initialised

Errors carry structured context (``field``, ``reason``, ``index``) so that the HTTP layer and the
CLI can name what was wrong without parsing messages.
"""

from __future__ import annotations


class TenureError(Exception):
    """Root of every error Tenure raises on purpose."""


class ConfigError(TenureError, ValueError):
    """A setting is missing or malformed; ``key`` names it."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"setting {key!r}: {reason}")
        self.key = key
        self.reason = reason


class ValidationError(TenureError, ValueError):
    """Invalid input. ``field`` is a dotted path (``batch[3].properties.revenue``)."""

    def __init__(self, field: str, reason: str, *, index: int | None = None) -> None:
        where = field if index is None else f"batch[{index}].{field}"
        super().__init__(f"{where}: {reason}")
        self.field = field
        self.reason = reason
        self.index = index

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"field": self.field, "reason": self.reason}
        if self.index is not None:
            out["index"] = self.index
        return out


class PayloadTooLargeError(ValidationError):
    """A message or request exceeds Segment's size limits."""


class AuthError(TenureError, PermissionError):
    """Missing or unknown write key."""


class NotFoundError(TenureError, LookupError):
    """A person, identifier or record does not exist."""


class NotFittedError(TenureError, ValueError, AttributeError):
    """A model was asked to predict before it was fitted (scikit-learn's contract)."""


class ConvergenceError(TenureError, RuntimeError):
    """A model's likelihood optimiser stopped without converging."""


class WorkspaceError(TenureError, RuntimeError):
    """The workspace folder is missing or not initialised."""
