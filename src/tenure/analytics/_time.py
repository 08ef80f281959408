"""Time conventions every analysis follows, so DuckDB and Spark agree to the second.

* ``as_of`` is an exclusive instant: facts with ``timestamp < as_of`` are known at ``as_of``.
  A date means the end of that local day (the whole day is included).
* Calendar periods are local dates in the reporting time zone (the engine session's zone):
  ``period_start(ts, "week")`` is the Monday of the local week, as a date.
* Durations come from ``unix_micros`` (Spark's function; the DuckDB engine defines it as a
  macro) because Ibis's ``epoch_seconds`` casts to a local wall-clock time on DuckDB and so
  loses an hour across daylight-saving changes. They are in days, as floats.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir

from tenure.errors import ValidationError

Period = Literal["day", "week", "month"]
PERIODS: tuple[Period, ...] = ("day", "week", "month")
_TRUNCATE = {"day": "D", "week": "W", "month": "M"}
MICROS_PER_DAY = 86_400_000_000


def cutoff(as_of: datetime | date | str, timezone: str) -> datetime:
    """The exclusive UTC instant for ``as_of``; a date (or ``YYYY-MM-DD``) ends at local midnight."""
    value = _parse(as_of, "as_of")
    if isinstance(value, datetime):
        return _aware(value, timezone)
    return datetime.combine(value + timedelta(days=1), time(), tzinfo=ZoneInfo(timezone)).astimezone(UTC)


def starting(start: datetime | date | str, timezone: str) -> datetime:
    """The inclusive UTC instant a range starts at; a date starts at its local midnight."""
    value = _parse(start, "start")
    if isinstance(value, datetime):
        return _aware(value, timezone)
    return datetime.combine(value, time(), tzinfo=ZoneInfo(timezone)).astimezone(UTC)


def _parse(value: datetime | date | str, field: str) -> datetime | date:
    if not isinstance(value, str):
        return value
    try:
        return date.fromisoformat(value) if len(value) == 10 else datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValidationError(field, f"{value!r} is not an ISO date or timestamp") from exc


def _aware(value: datetime, timezone: str) -> datetime:
    """Naive times are read in the reporting time zone."""
    return (value if value.tzinfo else value.replace(tzinfo=ZoneInfo(timezone))).astimezone(UTC)


def check_instant(value: datetime, field: str) -> None:
    """Analyses take resolved instants; a naive datetime would be read differently per engine."""
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ValidationError(field, f"must be a timezone-aware datetime; got {value!r}")


def check_range(start: datetime, end: datetime) -> None:
    """``[start, end)`` must be two aware instants with ``end`` after ``start``."""
    check_instant(start, "start")
    check_instant(end, "end")
    if end <= start:
        raise ValidationError("end", f"must be after start ({start.isoformat()}); got {end.isoformat()}")


def check_period(period: str) -> Period:
    if period not in PERIODS:
        raise ValidationError("period", f"must be one of {', '.join(PERIODS)}; got {period!r}")
    return period


def period_start(ts: ir.TimestampValue, period: Period) -> ir.DateValue:
    """The local date on which ``ts``'s day, week (Monday) or month starts."""
    day = ts.date()
    return day if period == "day" else day.truncate(_TRUNCATE[period])


@ibis.udf.scalar.builtin  # type: ignore[untyped-decorator]
def unix_micros(ts: dt.Timestamp(timezone="UTC")) -> int:  # type: ignore[empty-body,valid-type]
    """Microseconds since 1970 of an instant, whatever the session time zone."""


def days_between(later: ir.TimestampValue, earlier: ir.TimestampValue) -> ir.FloatingValue:
    """``later - earlier`` in days (fractional)."""
    return (unix_micros(later) - unix_micros(earlier)).cast("float64") / MICROS_PER_DAY


def instant(value: datetime) -> ir.TimestampScalar:
    """A UTC timestamp literal both engines compare correctly with lake timestamps."""
    return ibis.literal(value.astimezone(UTC), type="timestamp('UTC')")
