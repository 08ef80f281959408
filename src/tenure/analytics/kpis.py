"""Headline KPIs per calendar period: audience (DAU/WAU/MAU), acquisition, revenue, retention.

Both functions report on the local days of a range ``[start, end)``. The range is made of
whole local days in the reporting time zone, from the day of ``start`` to the day of the last
instant before ``end``; a fact counts on its local day, and only facts before ``end`` are
known, so a partial last day shows what was known at ``end``. The first and last periods are
clipped to those days (a week that starts before the range has only its days in range).

Trailing audiences (WAU, MAU) are computed with one pass over the person-days instead of a
range join: each active day covers the next 7 (30) days except the days an earlier active day
of the same person already covers, so a running sum of "coverage starts" minus "coverage
ends" over the calendar is the number of distinct people active in the trailing window.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import ibis
import ibis.expr.types as ir

from tenure.analytics._orders import orders_as_of
from tenure.analytics._time import Period, check_instant, check_period, instant
from tenure.config import LifecycleSettings
from tenure.errors import ValidationError
from tenure.store.engine import LakeTables

WAU_DAYS = 7
MAU_DAYS = 30
_MARGIN_DAYS = MAU_DAYS + 2  # calendar days kept before ``start`` so trailing windows see their history


def kpis(
    t: LakeTables, *, start: datetime, end: datetime, period: str = "week", lifecycle: LifecycleSettings
) -> ir.Table:
    """One row per local period (day, week from Monday, or month) overlapping ``[start, end)``.

    Every period in the range is present; periods without facts are zero-filled, and a ratio
    whose denominator is zero is 0.0. "Orders" are orders placed before ``end`` and not
    cancelled before it (``rfm.orders_as_of``); a cancellation after ``end`` is not known yet.

    Columns
    -------
    period : date
        First day of the period (``period_start``).
    active_people : int64
        Distinct people with any event on the period's days.
    dau : float64
        Mean over the period's (clipped) days of the distinct people active that day.
    wau, mau : int64
        Distinct people active in the 7 (30) local days ending with the period's last day in
        range; these windows reach back before ``start``, as an audience does.
    stickiness : float64
        ``dau / mau``.
    new_people : int64
        People whose first event ever falls in the period.
    returning_people : int64
        People active in the period whose first event is before it (``active - new``).
    orders : int64
        Orders placed in the period.
    revenue : float64
        Net revenue of those orders after the refunds made before ``end``: a refund is
        attributed to the period its order was placed in (a period's revenue is restated when a
        refund arrives later), so a period's revenue is what its orders earned, as known at ``end``.
    customers : int64
        Distinct people with an order in the period.
    arpu : float64
        ``revenue / active_people``.
    repeat_purchase_rate : float64
        Share of ``customers`` with an order in the period that is not their first order ever.
    churn_rate : float64
        Of the customers who had ordered before the period and were not churned at its start,
        the share who became churned during it. A customer becomes churned
        ``lifecycle.churned_days`` (exact 24-hour days) after an order when no order follows in
        that time; one whose churn moment is exactly the period start is churned at the next
        instant, so during the period.
    reactivation_rate : float64
        Of the people churned at the period start, the share who ordered during the period.
    """
    grain = _check(start, end, period)
    if lifecycle.churned_days <= 0:
        raise ValidationError("lifecycle.churned_days", "must be positive")
    grid = _grid(start, end).mutate(period=lambda g: g[grain])
    person_days = _person_days(t, grid, start, end)
    daily = _daily(person_days, grid)
    periods = daily.group_by("period").aggregate(
        days=daily.count(),
        first_day=daily.day.min(),
        _dau_sum=daily.dau.sum(),
        wau=daily.wau.argmax(daily.dayno),
        mau=daily.mau.argmax(daily.dayno),
    )
    orders = _orders(t, end)
    joined = _join_on_period(
        periods,
        _activity(t, person_days, grid, end),
        _sales(orders, grid),
        _retention(orders, grid, periods, end, lifecycle.churned_days),
    )
    active = joined.active_people
    return joined.select(
        "period",
        active_people=active.cast("int64"),
        dau=_ratio(joined._dau_sum, joined.days),
        wau=joined.wau.cast("int64"),
        mau=joined.mau.cast("int64"),
        stickiness=_ratio(_ratio(joined._dau_sum, joined.days), joined.mau),
        new_people=joined.new_people.cast("int64"),
        returning_people=(active - joined.new_people).cast("int64"),
        orders=joined.orders.cast("int64"),
        revenue=joined.revenue.cast("float64"),
        customers=joined.customers.cast("int64"),
        arpu=_ratio(joined.revenue, active),
        repeat_purchase_rate=_ratio(joined.repeat_customers, joined.customers),
        churn_rate=_ratio(joined.churners, joined.at_risk),
        reactivation_rate=_ratio(joined.reactivated, joined.churned_at_start),
    ).order_by("period")


def daily_activity(t: LakeTables, *, start: datetime, end: datetime) -> ir.Table:
    """One row per local day of ``[start, end)``: ``day`` (date), ``dau``, ``wau`` and ``mau``
    (int64: distinct people active that day, in the 7 and 30 days ending with it, reaching back
    before ``start``) and ``stickiness`` (``dau / mau``, 0.0 without activity), for charts."""
    _check(start, end, "day")
    grid = _grid(start, end)
    daily = _daily(_person_days(t, grid, start, end), grid)
    return daily.select(
        "day", "dau", "wau", "mau", stickiness=_ratio(daily.dau.cast("float64"), daily.mau)
    ).order_by("day")


def _check(start: datetime, end: datetime, period: str) -> Period:
    check_instant(start, "start")
    check_instant(end, "end")
    if start >= end:
        raise ValidationError("start", "must be before end")
    return check_period(period)


def _grid(start: datetime, end: datetime) -> ir.Table:
    """Calendar days around the range, flagged ``in_range`` for the local days of ``[start, end)``.

    Built from UTC dates with a margin (a local date is within a day of the UTC date); which
    days are in range is decided by the engine in the session's time zone. ``dayno`` numbers
    days so windows are integer arithmetic, which both engines do alike.
    """
    first = start.astimezone(UTC).date() - timedelta(days=_MARGIN_DAYS)
    last = end.astimezone(UTC).date() + timedelta(days=1)
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    calendar = ibis.memtable(
        {
            "day": days,
            "dayno": [d.toordinal() for d in days],
            "week": [d - timedelta(days=d.weekday()) for d in days],
            "month": [d.replace(day=1) for d in days],
        },
        schema={"day": "date", "dayno": "int64", "week": "date", "month": "date"},
    )
    first_local = instant(start).date()
    last_local = (instant(end) - ibis.interval(microseconds=1)).date()
    return calendar.mutate(in_range=(calendar.day >= first_local) & (calendar.day <= last_local))


def _person_days(t: LakeTables, grid: ir.Table, start: datetime, end: datetime) -> ir.Table:
    """Distinct ``person_id, dayno`` of activity on the calendar's days (history for trailing windows included)."""
    e = t.events
    recent = e.filter(e.timestamp >= instant(start - timedelta(days=_MARGIN_DAYS + 1)), e.timestamp < instant(end))
    seen = recent.select("person_id", day=recent.timestamp.date()).distinct()
    return seen.join(grid, seen.day == grid.day).select("person_id", "dayno")


def _daily(person_days: ir.Table, grid: ir.Table) -> ir.Table:
    """The grid's columns with ``dau, wau, mau`` for every day in range (zero-filled)."""
    previous = person_days.dayno.lag().over(group_by=person_days.person_id, order_by=person_days.dayno)
    person_days = person_days.mutate(prev=previous)
    deltas = ibis.union(
        person_days.select("dayno", dau=ibis.literal(1), wau=ibis.literal(0), mau=ibis.literal(0)),
        *_coverage(person_days, WAU_DAYS, "wau"),
        *_coverage(person_days, MAU_DAYS, "mau"),
        distinct=False,
    )
    per_day = deltas.group_by(_d="dayno").aggregate(
        _dau=deltas.dau.sum(), _wau=deltas.wau.sum(), _mau=deltas.mau.sum()
    )
    joined = grid.left_join(per_day, grid.dayno == per_day._d)
    running = ibis.window(order_by=joined.dayno, preceding=None, following=0)
    counted = joined.select(
        *grid.columns,
        dau=joined._dau.fill_null(0).cast("int64"),
        wau=joined._wau.fill_null(0).sum().over(running).cast("int64"),
        mau=joined._mau.fill_null(0).sum().over(running).cast("int64"),
    )
    return counted.filter(counted.in_range).drop("in_range")


def _coverage(person_days: ir.Table, window: int, column: str) -> tuple[ir.Table, ir.Table]:
    """+1 where a person's new coverage of a ``window``-day trailing audience starts, -1 after it ends.

    An active day ``a`` covers days ``a .. a+window-1``; the part an earlier active day ``prev``
    covers (up to ``prev+window-1``) is skipped, so intervals never overlap.
    """
    p = person_days
    begin = ibis.cases((p.prev.isnull(), p.dayno), else_=ibis.greatest(p.dayno, p.prev + window))
    covered = p.select(begin=begin, stop=p.dayno + window).filter(lambda c: c.begin < c.stop)
    others = [name for name in ("dau", "wau", "mau") if name != column]
    zeros = {name: ibis.literal(0) for name in others}
    starts = covered.select(dayno=covered.begin, **{column: ibis.literal(1)}, **zeros)
    stops = covered.select(dayno=covered.stop, **{column: ibis.literal(-1)}, **zeros)
    order = ["dayno", "dau", "wau", "mau"]
    return starts.select(*order), stops.select(*order)


def _activity(t: LakeTables, person_days: ir.Table, grid: ir.Table, end: datetime) -> ir.Table:
    """Per period: distinct active people, and people whose first event ever is in it."""
    days = grid.filter(grid.in_range)
    active = person_days.join(days.select("dayno", "period"), "dayno")
    active_counts = active.group_by("period").aggregate(active_people=active.person_id.nunique())
    e = t.events.filter(t.events.timestamp < instant(end))
    first = e.group_by("person_id").aggregate(first_seen=e.timestamp.min())
    first = first.select("person_id", day=first.first_seen.date()).join(days.select("day", "period"), "day")
    new_counts = first.group_by("period").aggregate(new_people=first.count())
    return _join_on_period(active_counts, new_counts)


def _orders(t: LakeTables, end: datetime) -> ir.Table:
    """Orders known at ``end`` (adjustments as of then), numbered per person from 0 in time order."""
    known = orders_as_of(t, as_of=end)
    w = ibis.window(group_by=known.person_id, order_by=[known.timestamp, known.order_id])
    return known.select(
        "person_id",
        "order_id",
        "timestamp",
        "net_revenue",
        number=ibis.row_number().over(w),
        next_ts=known.timestamp.lead().over(w),
        day=known.timestamp.date(),
    )


def _sales(orders: ir.Table, grid: ir.Table) -> ir.Table:
    """Per period: orders, net revenue, customers and repeat customers."""
    days = grid.filter(grid.in_range).select("day", "period")
    placed = orders.join(days, "day")
    per_person = placed.group_by(["period", "person_id"]).aggregate(
        _n=placed.count(), _revenue=placed.net_revenue.sum(), _repeat=placed.number.max() >= 1
    )
    return per_person.group_by("period").aggregate(
        orders=per_person._n.sum().cast("int64"),
        revenue=per_person._revenue.sum().cast("float64"),
        customers=per_person.count(),
        repeat_customers=per_person._repeat.cast("int64").sum(),
    )


def _retention(orders: ir.Table, grid: ir.Table, periods: ir.Table, end: datetime, churned_days: int) -> ir.Table:
    """Per period: customers at risk and churned at its start, churners and reactivated people."""
    churn_at = orders.timestamp + ibis.interval(hours=24 * churned_days)  # exact days, whatever DST does
    orders = orders.mutate(churn_at=churn_at)
    days = grid.filter(grid.in_range).select("day", "period")
    # Each person's state at a period start comes from their last order before it.
    bounds = periods.select(_p="period", first_day="first_day")
    last_before = orders.join(
        bounds,
        (orders.day < bounds.first_day)
        & (orders.next_ts.isnull() | (orders.next_ts.date() >= bounds.first_day)),
    )
    state = last_before.select(
        "person_id", period=last_before._p, churned=last_before.churn_at.date() < last_before.first_day
    )
    ordered = orders.join(days, "day").select("person_id", "period").distinct()
    lapses = orders.filter(
        orders.churn_at < instant(end), orders.next_ts.isnull() | (orders.next_ts > orders.churn_at)
    )
    lapsed = lapses.select("person_id", day=lapses.churn_at.date()).join(days, "day")
    lapsed = lapsed.select("person_id", "period").distinct()
    keys = ["person_id", "period"]
    churners = state.filter(~state.churned).semi_join(lapsed, keys)
    reactivated = state.filter(state.churned).semi_join(ordered, keys)
    base = state.group_by("period").aggregate(
        churned_at_start=state.churned.cast("int64").sum(), at_risk=(~state.churned).cast("int64").sum()
    )
    return _join_on_period(
        base,
        churners.group_by("period").aggregate(churners=churners.count()),
        reactivated.group_by("period").aggregate(reactivated=reactivated.count()),
    )


def _join_on_period(base: ir.Table, *others: ir.Table) -> ir.Table:
    """Left-join per-period aggregates onto ``base`` in one join; missing counts become 0."""
    joined = base
    renamed = [other.rename(**{f"_key{i}": "period"}) for i, other in enumerate(others)]
    for i, other in enumerate(renamed):
        joined = joined.left_join(other, base.period == other[f"_key{i}"])
    filled = {name: joined[name].fill_null(0) for other in others for name in other.columns if name != "period"}
    return joined.select(*base.columns, **filled)


def _ratio(numerator: ir.NumericValue, denominator: ir.NumericValue) -> ir.FloatingValue:
    result: ir.FloatingValue = ibis.cases(
        (denominator > 0, numerator.cast("float64") / denominator.cast("float64")), else_=0.0
    )
    return result
