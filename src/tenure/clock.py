"""Injected time: library code asks a ``Clock`` for "now" so tests can freeze or move it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol


def as_utc(value: datetime) -> datetime:
    """A datetime read from the state DB, made aware: SQLite hands back naive ones, and state stores UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class Clock(Protocol):
    def now(self) -> datetime:
        """Current time, timezone-aware UTC."""
        ...


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass
class FrozenClock:
    """A clock that only moves when told to; for tests."""

    current: datetime = field(default_factory=lambda: datetime(2025, 1, 1, tzinfo=UTC))

    def now(self) -> datetime:
        return self.current

    def advance(self, delta: timedelta) -> None:
        self.current += delta
