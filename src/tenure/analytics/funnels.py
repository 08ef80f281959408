"""Funnels: how many people go on from a first event through later steps, and how quickly.

Rules, so that every engine (and a reader) gets the same numbers:

* A person enters at their **first** step-1 event with ``start <= timestamp < end``; later
  steps may happen after ``end`` as long as they are within the window.
* Events are ordered by ``(timestamp, message_id)``: of two events at the same instant, the one
  with the smaller message id counts as the earlier. "After" a step means later in that order,
  so one event never counts for two consecutive steps.
* The window is inclusive: a step exactly ``window`` after the entry still counts.
* ``order="strict"``: step *k* counts at the first matching event after the event that
  completed step *k-1* (other events in between are allowed), within the window.
  ``order="any"``: steps 2..n may happen in any order after the entry, within the window; a
  person reaches step *k* once they have done every step up to *k*, at the latest of those
  times. Each step is checked on its own, so one event can satisfy two steps that it matches.
* The time from the previous step is between the moments a person reached the two steps;
  its median is exact (the mean of the middle two for an even count).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import ibis
import ibis.expr.types as ir

from tenure.analytics._json import json_field
from tenure.analytics._time import check_period, check_range, instant, period_start, unix_micros
from tenure.errors import ValidationError
from tenure.store.engine import LakeTables

PropertyValue = str | int | float | bool
ORDERS = ("strict", "any")
NO_VALUE = "(none)"
_STEP = re.compile(r"^\s*([^\[\]]*?)\s*(?:\[([^\[\]]*)\])?\s*$")
_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_INT = re.compile(r"^-?\d+$")
_FLOAT = re.compile(r"^-?(\d+\.\d*|\.\d+|\d+(\.\d*)?[eE][-+]?\d+)$")
_MICROS = 1_000_000
_OUTPUT = ("step", "step_name", "people", "conversion", "step_conversion", "drop_off", "median_seconds_from_previous")


@dataclass(frozen=True, slots=True)
class FunnelStep:
    """One funnel step: an event name, optionally with top-level properties that must equal values."""

    event: str
    where: Mapping[str, PropertyValue] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> FunnelStep:
        """Read the CLI form ``Product Viewed`` or ``Product Viewed[category=Books,price=10]``.

        ``true``/``false`` become booleans and plain numbers become numbers (compared
        numerically, so ``price=10`` matches 10 and 10.0); anything else is text.
        """
        match = _STEP.match(text)
        if match is None or not match.group(1):
            raise ValidationError("steps", f"{text!r} is not 'Event' or 'Event[key=value,...]'")
        where: dict[str, PropertyValue] = {}
        if match.group(2) is not None:
            for pair in match.group(2).split(","):
                key, sep, value = (part.strip() for part in pair.partition("="))
                if not sep or not _KEY.match(key):
                    raise ValidationError("steps", f"{pair.strip()!r} in {text!r} is not key=value")
                if key in where:
                    raise ValidationError("steps", f"{key!r} appears twice in {text!r}")
                where[key] = _value(value)
        return cls(match.group(1), where)

    def __str__(self) -> str:
        if not self.where:
            return self.event
        pairs = ",".join(f"{key}={_text(value)}" for key, value in self.where.items())
        return f"{self.event}[{pairs}]"


def funnel(
    t: LakeTables,
    steps: Sequence[FunnelStep],
    *,
    start: datetime,
    end: datetime,
    window: timedelta,
    order: str = "strict",
    by: str | None = None,
    period: str | None = None,
) -> ir.Table:
    """People at each step, conversion, drop-off and the median time from the previous step.

    One row per step (and per local ``period`` of the entry and ``by`` value of the entry
    event, when given). Periods in ``[start, end)`` without entries get rows with zero
    people and null ratios, so a chart over time has no gaps.
    """
    _check(steps, start, end, window, order, by, period)
    events = _candidates(t.events, steps)
    entries = _entries(events, steps[0], start, end, by, period)
    reached = _reach(events, entries, steps, window, order)
    groups = [*(["period"] if period else []), *([by] if by else [])]
    stats = _step_stats(reached, groups, len(steps))
    return _summarise(_grid(stats, groups, start, end, period), steps, groups)


def _check(
    steps: Sequence[FunnelStep],
    start: datetime,
    end: datetime,
    window: timedelta,
    order: str,
    by: str | None,
    period: str | None,
) -> None:
    if len(steps) < 2:
        raise ValidationError("steps", f"a funnel needs at least 2 steps; got {len(steps)}")
    for step in steps:
        if not isinstance(step, FunnelStep) or not step.event:
            raise ValidationError("steps", f"{step!r} is not a FunnelStep with an event name")
        for key in step.where:
            if not _KEY.match(key):
                raise ValidationError("steps", f"property {key!r} must be letters, digits, '_' or '-'")
    if window <= timedelta(0):
        raise ValidationError("window", f"must be positive; got {window}")
    if order not in ORDERS:
        raise ValidationError("order", f"must be one of {', '.join(ORDERS)}; got {order!r}")
    check_range(start, end)
    if by is not None:
        if not _KEY.match(by):
            raise ValidationError("by", f"{by!r} must be letters, digits, '_' or '-'")
        if by in _OUTPUT or by == "period":
            raise ValidationError("by", f"{by!r} clashes with an output column")
    if period is not None:
        check_period(period)


def _candidates(events: ir.Table, steps: Sequence[FunnelStep]) -> ir.Table:
    """Events named by any step, with the integer instant used for ordering and windows."""
    names = sorted({step.event for step in steps})
    named = events.filter(events.event.isin(names), events.person_id.notnull())
    return named.select(
        "person_id", "message_id", "event", "properties", at=named.timestamp, us=unix_micros(named.timestamp)
    )


def _matches(events: ir.Table, step: FunnelStep) -> ir.BooleanValue:
    condition: ir.BooleanValue = events.event == step.event
    for key, value in step.where.items():
        found = json_field(events.properties, key)
        if isinstance(value, bool):
            condition &= found == ("true" if value else "false")
        elif isinstance(value, int | float):
            condition &= found.try_cast("float64") == float(value)
        else:
            condition &= found == value
    return condition.fill_null(False)


def _first_per_person(table: ir.Table, us: str = "us", message_id: str = "message_id") -> ir.Table:
    """The earliest row per person in ``(us, message_id)`` order."""
    rank = ibis.row_number().over(group_by=table.person_id, order_by=[table[us], table[message_id]])
    return table.mutate(_rank=rank).filter(lambda r: r._rank == 0).drop("_rank")


def _entries(
    events: ir.Table, first: FunnelStep, start: datetime, end: datetime, by: str | None, period: str | None
) -> ir.Table:
    """One row per person: the first step-1 event in [start, end), with its period and breakdown."""
    hits = events.filter(_matches(events, first), events.at >= instant(start), events.at < instant(end))
    entry = _first_per_person(hits)
    extra: dict[str, ir.Value] = {}
    if period is not None:
        extra["period"] = period_start(entry.at, check_period(period))
    if by is not None:
        extra[by] = json_field(entry.properties, by).fill_null(NO_VALUE)
    return entry.select("person_id", t1=entry.us, m1=entry.message_id, **extra)


def _reach(events: ir.Table, entries: ir.Table, steps: Sequence[FunnelStep], window: timedelta, order: str) -> ir.Table:
    """Entries widened with ``t<k>``/``m<k>``: the event that did step k (null when not done).

    Each step pairs the people so far with that step's events by an equality join on the
    person (the time conditions are a filter: inside a left join's condition they would force
    DuckDB into a nested-loop join, quadratic in events), keeps each person's first match and
    attaches it with a left join, so people who stop keep their row.
    """
    limit = _micros(window)
    wide = entries
    for k, step in enumerate(steps[1:], start=2):
        cand = events.filter(_matches(events, step)).select(_p=events.person_id, _us=events.us, _mid=events.message_id)
        prev, prev_id = ("t1", "m1") if order == "any" else (f"t{k - 1}", f"m{k - 1}")
        sofar = wide.select("person_id", "t1", _prev=wide[prev], _prev_id=wide[prev_id])
        pairs = sofar.inner_join(cand, sofar.person_id == cand._p)
        later = (pairs._us > pairs._prev) | ((pairs._us == pairs._prev) & (pairs._mid > pairs._prev_id))
        first = _first_per_person(pairs.filter(later, pairs._us - pairs.t1 <= limit), "_us", "_mid")
        reached = first.select(_p=first.person_id, **{f"t{k}": first._us, f"m{k}": first._mid})
        wide = wide.left_join(reached, wide.person_id == reached._p).drop("_p")
    return wide


def _step_stats(reached: ir.Table, groups: list[str], n: int) -> ir.Table:
    """Per group: people who reached each step (``_n<k>``) and median seconds since the previous (``_s<k>``)."""
    metrics: dict[str, ir.Scalar] = {}
    done: ir.IntegerValue = reached.t1
    for k in range(1, n + 1):
        if k > 1:
            now = ibis.cases((done.notnull() & reached[f"t{k}"].notnull(), ibis.greatest(done, reached[f"t{k}"])))
            metrics[f"_s{k}"] = ((now - done).cast("float64") / _MICROS).median().cast("float64")
            done = now
        metrics[f"_n{k}"] = done.count().cast("int64")
    return reached.group_by(groups).aggregate(**metrics) if groups else reached.aggregate(**metrics)


def _grid(stats: ir.Table, groups: list[str], start: datetime, end: datetime, period: str | None) -> ir.Table:
    """Every (period, breakdown value) the output shows, with its stats; empty periods included."""
    if period is None:
        return stats
    periods = _periods(start, end, check_period(period))
    by = [name for name in groups if name != "period"]
    if by:
        periods = periods.cross_join(stats.select(*by).distinct())
    keyed = stats.rename(**{f"_k_{name}": name for name in groups})
    joined = periods.left_join(keyed, [periods[name] == keyed[f"_k_{name}"] for name in groups])
    return joined.drop(*[f"_k_{name}" for name in groups])


def _periods(start: datetime, end: datetime, period: str) -> ir.Table:
    """The local periods that [start, end) touches: sample instants at most 12 hours apart.

    A local day lasts at least 23 hours, so every local day inside the range holds a sample;
    the first and last instants cover the partial days at both ends.
    """
    step = timedelta(hours=12)
    count = int((end - start) / step)
    stamps = [start + i * step for i in range(count + 1) if start + i * step < end]
    stamps.append(end - timedelta(microseconds=1))
    samples = ibis.memtable({"at": stamps}, schema={"at": "timestamp('UTC')"})
    return samples.select(period=period_start(samples.at, check_period(period))).distinct()


def _summarise(grid: ir.Table, steps: Sequence[FunnelStep], groups: list[str]) -> ir.Table:
    """One row per group and step (an unpivot by cross join, so the stats are read once)."""
    names = ibis.memtable(
        {"step": list(range(1, len(steps) + 1)), "step_name": [str(step) for step in steps]},
        schema={"step": "int64", "step_name": "string"},
    )
    rows = grid.cross_join(names)
    pick = range(1, len(steps) + 1)
    people = ibis.cases(*[(rows.step == k, rows[f"_n{k}"]) for k in pick]).fill_null(0).cast("int64")
    median = ibis.cases(*[(rows.step == k, rows[f"_s{k}"]) for k in pick if k > 1]).cast("float64")
    first = rows._n1.fill_null(0).cast("int64")
    before = ibis.cases(*[(rows.step == k, rows[f"_n{k - 1}"]) for k in pick if k > 1], else_=rows._n1)
    before = before.fill_null(0).cast("int64")
    out = rows.select(
        *groups,
        "step",
        "step_name",
        people=people,
        conversion=people.cast("float64") / first.nullif(0).cast("float64"),
        step_conversion=people.cast("float64") / before.nullif(0).cast("float64"),
        drop_off=before - people,
        median_seconds_from_previous=median,
    )
    return out.order_by([*groups, "step"])


def _micros(delta: timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * _MICROS + delta.microseconds


def _value(text: str) -> PropertyValue:
    if text in ("true", "false"):
        return text == "true"
    if _INT.match(text):
        return int(text)
    if _FLOAT.match(text):
        return float(text)
    return text


def _text(value: PropertyValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
