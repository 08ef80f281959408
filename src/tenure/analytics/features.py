"""Person features: one row per person, point in time, feeding stages, segments and models.

Only facts with ``timestamp < as_of`` are used, including refunds and cancellations, so a
feature table for a past ``as_of`` is what one would have computed then. Two inputs are
*current* rather than point-in-time, because the engine resolves them over all data:

* identity: ``person_id`` comes from today's identity graph, so anonymous activity that is
  linked to a user later (even after ``as_of``) already counts for that user's person;
  ``identified`` is point-in-time (a user id was seen on the person's activity before ``as_of``).
* traits (``channel``, ``country``): the ``users`` table merges every identify call ever made,
  so these are the latest values, not those known at ``as_of``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import ibis
import ibis.expr.types as ir

from tenure.analytics._json import json_field
from tenure.analytics._orders import orders_as_of
from tenure.analytics._time import check_instant, days_between, instant, unix_micros
from tenure.store.engine import LakeTables

WINDOWS_DAYS: tuple[int, ...] = (7, 30, 90)
SESSION_GAP_MICROS = 30 * 60 * 1_000_000  # a gap longer than 30 minutes starts a new session


def known_activity(t: LakeTables, *, cut: ir.TimestampScalar | None = None) -> ir.Table:
    """Every event and order as (person_id, timestamp, user_id), optionally before ``cut``."""
    parts = []
    for table in (t.events, t.orders):
        rows = table.filter(table.person_id.notnull())
        if cut is not None:
            rows = rows.filter(rows.timestamp < cut)
        parts.append(rows.select("person_id", "timestamp", "user_id"))
    return parts[0].union(parts[1], distinct=False)


def person_features(t: LakeTables, *, as_of: datetime) -> ir.Table:
    """One row per person with any event or order before ``as_of``.

    Columns: person_id, identified, first_seen, last_seen (any event or order),
    first_order_at, last_order_at, tenure_days (``as_of`` minus first_seen), orders (placed
    before ``as_of`` and not cancelled by then), revenue (net of refunds made before
    ``as_of``), aov, recency_days (since the last order), ipt_mean_days (mean gap between
    consecutive orders, from 2 orders), ipt_std_days (population std of those gaps, from 3
    orders), events_7d/30d/90d (messages of every type, identify and alias included, in the
    trailing 7/30/90 days before ``as_of``), sessions_7d/30d/90d (sessions *starting* in the trailing
    window; a session is a run of events with gaps of at most 30 minutes, cut over all
    events before ``as_of``), active_days (distinct local dates with an event),
    top_category, top_category_share, distinct_categories (by units bought, from the lines
    of those orders; ties go to the alphabetically first category), channel, country.
    Order columns are null (counts 0, revenue 0.0) for people without orders.
    """
    check_instant(as_of, "as_of")
    cut = instant(as_of)
    known = orders_as_of(t, as_of=as_of)
    activity = known_activity(t, cut=cut)
    people = activity.group_by("person_id").aggregate(
        identified=activity.user_id.notnull().any(),
        first_seen=activity.timestamp.min(),
        last_seen=activity.timestamp.max(),
    )
    joined = (
        people.left_join(_event_features(t, as_of), "person_id")
        .drop("person_id_right")
        .left_join(_order_features(known), "person_id")
        .drop("person_id_right")
        .left_join(_category_features(t, known), "person_id")
        .drop("person_id_right")
        .left_join(_traits(t), "person_id")
        .drop("person_id_right")
    )
    counts = [f"{kind}_{days}d" for kind in ("events", "sessions") for days in WINDOWS_DAYS]
    orders = joined.orders.fill_null(0).cast("int64")
    revenue = joined.revenue.fill_null(0.0).cast("float64")
    return joined.select(
        "person_id",
        "identified",
        "first_seen",
        "last_seen",
        "first_order_at",
        "last_order_at",
        tenure_days=days_between(cut, joined.first_seen),
        orders=orders,
        revenue=revenue,
        aov=ibis.cases((orders > 0, revenue / orders), else_=ibis.null("float64")),
        recency_days=days_between(cut, joined.last_order_at),
        ipt_mean_days=joined.ipt_mean_days,
        ipt_std_days=joined.ipt_std_days,
        **{name: joined[name].fill_null(0).cast("int64") for name in counts},
        active_days=joined.active_days.fill_null(0).cast("int64"),
        top_category=joined.top_category,
        top_category_share=joined.top_category_share,
        distinct_categories=joined.distinct_categories.fill_null(0).cast("int64"),
        channel=joined.channel,
        country=joined.country,
    )


def _event_features(t: LakeTables, as_of: datetime) -> ir.Table:
    """Trailing-window event and session counts and active days, per person."""
    e = t.events.filter(t.events.timestamp < instant(as_of), t.events.person_id.notnull())
    previous = e.timestamp.lag().over(group_by=e.person_id, order_by=[e.timestamp, e.message_id])
    starts = previous.isnull() | (unix_micros(e.timestamp) - unix_micros(previous) > SESSION_GAP_MICROS)
    e = e.mutate(_start=starts)
    counts: dict[str, ir.Value] = {}
    for days in WINDOWS_DAYS:
        recent = e.timestamp >= instant(as_of - timedelta(days=days))
        counts[f"events_{days}d"] = recent.cast("int64").sum()
        counts[f"sessions_{days}d"] = (recent & e._start).cast("int64").sum()
    return e.group_by("person_id").aggregate(active_days=e.timestamp.date().nunique(), **counts)


def _order_features(known: ir.Table) -> ir.Table:
    """Order count, net revenue, first/last order and inter-purchase gaps, per customer."""
    previous = known.timestamp.lag().over(group_by=known.person_id, order_by=[known.timestamp, known.order_id])
    known = known.mutate(_gap=days_between(known.timestamp, previous))
    per = known.group_by("person_id").aggregate(
        orders=known.order_id.count(),
        revenue=known.net_revenue.sum(),
        first_order_at=known.timestamp.min(),
        last_order_at=known.timestamp.max(),
        _gap_std=known._gap.std(how="pop"),
    )
    return per.select(
        "person_id",
        "orders",
        "revenue",
        "first_order_at",
        "last_order_at",
        ipt_mean_days=ipt_mean(per.first_order_at, per.last_order_at, per.orders),
        ipt_std_days=ibis.cases((per.orders >= 3, per._gap_std.cast("float64")), else_=ibis.null("float64")),
    )


def ipt_mean(first: ir.TimestampValue, last: ir.TimestampValue, orders: ir.IntegerValue) -> ir.FloatingValue:
    """The mean gap between consecutive orders, ``(last - first) / (orders - 1)``; null below 2 orders."""
    result: ir.FloatingValue = ibis.cases(
        (orders >= 2, days_between(last, first) / (orders - 1)), else_=ibis.null("float64")
    )
    return result


def _category_features(t: LakeTables, known: ir.Table) -> ir.Table:
    """Category mix by units bought: the top category, its share, and how many categories."""
    known = known.select(_order="order_id", person_id="person_id")
    lines = t.order_items.filter(t.order_items.category.notnull(), t.order_items.quantity > 0)
    lines = lines.select("order_id", "category", "quantity").inner_join(known, lines.order_id == known._order)
    per = lines.group_by(["person_id", "category"]).aggregate(_units=lines.quantity.sum())
    rank = ibis.row_number().over(group_by=per.person_id, order_by=[ibis.desc(per._units), per.category])
    total = per._units.sum().over(group_by=per.person_id)
    per = per.mutate(_rank=rank, _share=per._units.cast("float64") / total.cast("float64"))
    return per.group_by("person_id").aggregate(
        top_category=per.category.max(where=per._rank == 0),
        top_category_share=per._share.max(where=per._rank == 0),
        distinct_categories=per.category.count(),
    )


def _traits(t: LakeTables) -> ir.Table:
    """Current traits: the users table merges all identify calls, later values winning."""
    u = t.users
    return u.select("person_id", channel=json_field(u.traits, "channel"), country=json_field(u.traits, "country"))
