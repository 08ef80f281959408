"""Acquisition cohorts: retention, orders, revenue and LTV curves by period since acquisition.

A person's cohort is the local calendar period (day, Monday week, month) of their first event
or first order before ``as_of``. Every cohort gets one row per period index from 0 up to the
period of the last known instant (just before ``as_of``), zero-filled, so curves of young
and old cohorts line up and quiet periods show as zeros rather than gaps.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

import ibis
import ibis.expr.types as ir

from tenure.analytics._orders import orders_as_of
from tenure.analytics._time import Period, check_period, instant, period_start
from tenure.errors import ValidationError
from tenure.store.engine import LakeTables

CohortOf = Literal["first_seen", "first_order"]
COHORT_OF: tuple[CohortOf, ...] = ("first_seen", "first_order")
NO_VALUE = "(none)"
_OUTPUT = (
    "cohort", "period_index", "cohort_size", "active_people", "retention", "ordering_people", "order_retention",
    "orders", "revenue", "revenue_retention", "revenue_per_person", "cumulative_revenue_per_person",
)


def cohort_table(
    t: LakeTables,
    *,
    as_of: datetime,
    period: str = "month",
    cohort_of: str = "first_seen",
    breakdown: ir.Table | None = None,
) -> ir.Table:
    """The cohort matrix in long form, one row per cohort [and breakdown value] and period index.

    Columns: cohort (date the acquisition period starts), the breakdown column if given (people
    missing from ``breakdown`` or with a null value get ``"(none)"``), period_index,
    cohort_size, active_people (with any event in the period), retention, ordering_people
    (with an order not cancelled before ``as_of``), order_retention, orders, revenue (net of
    refunds made before ``as_of``), revenue_retention (revenue over the cohort's period-0
    revenue; null when that is 0), revenue_per_person, cumulative_revenue_per_person.

    ``breakdown`` is a table of ``person_id`` and one other column (e.g. channel); its values
    are read as strings, and a person listed twice counts once, under the greatest value.
    """
    unit = check_period(period)
    if cohort_of not in COHORT_OF:
        raise ValidationError("cohort_of", f"must be one of {', '.join(COHORT_OF)}; got {cohort_of!r}")
    group = _check_breakdown(breakdown)
    keys = ["cohort", *([group] if group else [])]
    cut = instant(as_of)
    events = t.events.filter(t.events.timestamp < cut, t.events.person_id.notnull())
    orders = orders_as_of(t, as_of=as_of)

    acquired_from = events if cohort_of == "first_seen" else orders
    people = acquired_from.group_by("person_id").aggregate(_first=acquired_from.timestamp.min())
    people = people.mutate(cohort=period_start(people._first, unit))
    if breakdown is not None and group:
        people = _with_group(people, breakdown, group)
    people = people.mutate(_cohort_number=_number(people.cohort, unit)).drop("_first")

    active = _per_period(events, people, keys, unit).aggregate(active_people=ibis._.person_id.nunique())
    ordering = _per_period(orders, people, keys, unit).aggregate(
        ordering_people=ibis._.person_id.nunique(), orders=ibis._.order_id.count(), revenue=ibis._.net_revenue.sum()
    )
    last_number = _number(period_start(ibis.literal(as_of - timedelta(microseconds=1), "timestamp('UTC')"), unit), unit)
    sizes = people.group_by([*keys, "_cohort_number"]).aggregate(cohort_size=ibis._.person_id.count())
    grid = sizes.select(
        *keys, "cohort_size", period_index=ibis.range(0, last_number - sizes._cohort_number + 1).unnest()
    )
    return _measures(_zero_filled(grid, active, ordering, keys), keys)


def _check_breakdown(breakdown: ir.Table | None) -> str | None:
    if breakdown is None:
        return None
    others = [str(c) for c in breakdown.columns if c != "person_id"]
    if "person_id" not in breakdown.columns or len(others) != 1:
        raise ValidationError("breakdown", f"must have person_id and one other column; got {list(breakdown.columns)}")
    if others[0] in _OUTPUT or others[0].startswith("_"):
        raise ValidationError("breakdown", f"column {others[0]!r} clashes with an output column")
    return others[0]


def _with_group(people: ir.Table, breakdown: ir.Table, group: str) -> ir.Table:
    values = breakdown.group_by(_person=breakdown.person_id).aggregate(_value=breakdown[group].cast("string").max())
    joined = people.left_join(values, people.person_id == values._person)
    return joined.mutate(**{group: joined._value.fill_null(NO_VALUE)}).drop("_person", "_value")


def _number(day: ir.DateValue, unit: Period) -> ir.IntegerValue:
    """Consecutive periods get consecutive numbers, so differences are period indexes."""
    if unit == "month":
        months: ir.IntegerValue = day.year().cast("int64") * 12 + day.month().cast("int64")
        return months
    days: ir.IntegerValue = day.epoch_days().cast("int64")
    return days if unit == "day" else (days + 3) // 7  # 1970-01-01 was a Thursday; weeks start on Monday


def _per_period(facts: ir.Table, people: ir.Table, keys: list[str], unit: Period) -> ir.GroupedTable:
    """Facts of cohort members grouped by cohort keys and period index (acquisition onwards)."""
    joined = facts.inner_join(people, "person_id")
    indexed = joined.mutate(period_index=_number(period_start(joined.timestamp, unit), unit) - joined._cohort_number)
    return indexed.filter(indexed.period_index >= 0).group_by([*keys, "period_index"])


def _zero_filled(grid: ir.Table, active: ir.Table, ordering: ir.Table, keys: list[str]) -> ir.Table:
    on = [*keys, "period_index"]
    joined = grid.left_join(active, on).left_join(ordering, on)
    return joined.select(
        *on,
        "cohort_size",
        active_people=joined.active_people.fill_null(0).cast("int64"),
        ordering_people=joined.ordering_people.fill_null(0).cast("int64"),
        orders=joined.orders.fill_null(0).cast("int64"),
        revenue=joined.revenue.fill_null(0.0).cast("float64"),
    )


def _measures(cells: ir.Table, keys: list[str]) -> ir.Table:
    size = cells.cohort_size.cast("float64")
    curve = ibis.window(group_by=keys, order_by="period_index", rows=(None, 0))
    first_revenue = ibis.cases((cells.period_index == 0, cells.revenue), else_=0.0).sum().over(group_by=keys)
    return cells.select(
        *keys,
        period_index=cells.period_index.cast("int64"),
        cohort_size=cells.cohort_size.cast("int64"),
        active_people=cells.active_people,
        retention=cells.active_people / size,
        ordering_people=cells.ordering_people,
        order_retention=cells.ordering_people / size,
        orders=cells.orders,
        revenue=cells.revenue,
        revenue_retention=ibis.cases((first_revenue > 0, cells.revenue / first_revenue), else_=ibis.null("float64")),
        revenue_per_person=cells.revenue / size,
        cumulative_revenue_per_person=cells.revenue.sum().over(curve) / size,
    ).order_by([*keys, "period_index"])
