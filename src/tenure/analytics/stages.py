"""Lifecycle stages: each person's stage as of any instant, its history, transitions and flow.

The stage model (thresholds from ``[lifecycle]`` in ``tenure.toml``) is evaluated top-down;
the first rule that holds wins. ``recency`` is days since the last order, ``orders`` counts
orders placed before ``as_of`` and not cancelled by then, ``ipt`` is the person's mean gap
between consecutive orders, ``last gap`` the gap before the latest order:

1. no orders: **Visitor** if no user id was ever seen on the person's activity, else **Lead**;
2. **Churned** if recency > ``churned_days``;
3. **New customer** if the first order is at most ``new_customer_days`` old;
4. **At risk** if recency > ``at_risk_factor`` x ipt (2+ orders) or > ``at_risk_days`` (1 order);
5. **Reactivated** if the last gap > ``churned_days`` (they came back after having churned);
6. **Loyal** if orders >= ``loyal_min_orders`` and recency <= ``loyal_recency_days``;
7. **Active** otherwise.

New customer comes before At risk: a newcomer's own inter-purchase time rests on one or two
gaps, often of hours (a second order the same week), and would flag them as at risk days
after they bought twice.

Every person with an event or order before ``as_of`` has a stage. All analyses here evaluate
many instants in one query: the people and orders are crossed with a small table of instants,
so a weekly history costs one scan, not one per week.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from tenure.analytics._time import check_instant, check_range, days_between
from tenure.analytics.features import ipt_mean, known_activity
from tenure.config import LifecycleSettings
from tenure.errors import ValidationError
from tenure.store.engine import LakeTables

STAGES: tuple[str, ...] = (
    "Visitor",
    "Lead",
    "New customer",
    "Active",
    "Loyal",
    "At risk",
    "Churned",
    "Reactivated",
)
NEW = "(new)"  # the from_stage of people who were not known at the start of a transition


def lifecycle_stages(t: LakeTables, *, as_of: datetime, lifecycle: LifecycleSettings) -> ir.Table:
    """Each person's stage at ``as_of`` and the inputs that decided it.

    Columns: person_id, stage, identified, orders, first_order_at, last_order_at,
    recency_days, first_order_days (age of the first order), ipt_mean_days, last_gap_days.
    """
    check_instant(as_of, "as_of")
    return _stages(t, _instants([as_of]), lifecycle).drop("as_of")


def stage_history(t: LakeTables, *, as_ofs: Sequence[datetime], lifecycle: LifecycleSettings) -> ir.Table:
    """Every known person's stage at each of ``as_ofs``. Columns: as_of, person_id, stage."""
    return _stages(t, _instants(as_ofs), lifecycle).select("as_of", "person_id", "stage")


def stage_transitions(
    t: LakeTables, *, start: datetime, end: datetime, lifecycle: LifecycleSettings
) -> ir.Table:
    """How many people moved from each stage at ``start`` to each stage at ``end``.

    Columns: from_stage (a stage, or ``"(new)"`` for people first seen after ``start``),
    to_stage, people. All pairs are present (zero-filled), in ``STAGES`` order with
    ``"(new)"`` first.
    """
    check_range(start, end)
    before = _stages(t, _instants([start]), lifecycle).select("person_id", _from="stage")
    after = _stages(t, _instants([end]), lifecycle).select("person_id", _to="stage")
    moved = after.left_join(before, "person_id")
    moved = moved.mutate(_from=moved._from.fill_null(NEW))
    counts = moved.group_by(["_from", "_to"]).aggregate(_people=moved.person_id.count())
    grid = _stage_grid("_from_name", "_from_pos", (NEW, *STAGES)).cross_join(_stage_grid("_to_name", "_to_pos", STAGES))
    joined = grid.left_join(counts, (grid._from_name == counts._from) & (grid._to_name == counts._to))
    out = joined.select(
        "_from_pos",
        "_to_pos",
        from_stage=joined._from_name,
        to_stage=joined._to_name,
        people=joined._people.fill_null(0).cast("int64"),
    )
    return out.order_by(["_from_pos", "_to_pos"]).drop("_from_pos", "_to_pos")


def stage_flow(t: LakeTables, *, as_ofs: Sequence[datetime], lifecycle: LifecycleSettings) -> ir.Table:
    """People per stage at each of ``as_ofs``, every stage present (zero-filled).

    Columns: as_of, stage, people; ordered by as_of, then ``STAGES`` order.
    """
    instants = _instants(as_ofs)
    history = _stages(t, instants, lifecycle)
    counts = history.group_by([history.as_of.name("_at"), history.stage.name("_stage")]).aggregate(
        _people=history.person_id.count()
    )
    grid = instants.cross_join(_stage_grid("stage", "_pos", STAGES))
    joined = grid.left_join(counts, (grid.as_of == counts._at) & (grid.stage == counts._stage))
    out = joined.select("as_of", "stage", "_pos", people=joined._people.fill_null(0).cast("int64"))
    return out.order_by(["as_of", "_pos"]).drop("_pos")


def _stages(t: LakeTables, instants: ir.Table, lifecycle: LifecycleSettings) -> ir.Table:
    """Stage and inputs per (as_of, person) for every instant in ``instants``."""
    _check_lifecycle(lifecycle)
    activity = known_activity(t)
    people = activity.group_by("person_id").aggregate(
        _first_seen=activity.timestamp.min(),
        _identified_at=activity.timestamp.min(where=activity.user_id.notnull()),
    )
    known = people.cross_join(instants)
    known = known.filter(known._first_seen < known.as_of)
    orders = _order_summary(t, instants)
    joined = known.left_join(orders, (known.as_of == orders._at) & (known.person_id == orders._person))
    count = joined._orders.fill_null(0).cast("int64")
    identified = joined._identified_at.notnull() & (joined._identified_at < joined.as_of)
    recency = days_between(joined.as_of, joined._last)
    first_age = days_between(joined.as_of, joined._first)
    ipt = ipt_mean(joined._first, joined._last, count)
    settings = lifecycle
    stage = ibis.cases(
        ((count == 0) & ~identified, "Visitor"),
        (count == 0, "Lead"),
        (recency > settings.churned_days, "Churned"),
        (first_age <= settings.new_customer_days, "New customer"),
        ((count >= 2) & (recency > ipt * settings.at_risk_factor), "At risk"),
        ((count == 1) & (recency > settings.at_risk_days), "At risk"),
        (joined._last_gap > settings.churned_days, "Reactivated"),
        ((count >= settings.loyal_min_orders) & (recency <= settings.loyal_recency_days), "Loyal"),
        else_="Active",
    )
    return joined.select(
        "as_of",
        "person_id",
        stage=stage,
        identified=identified,
        orders=count,
        first_order_at=joined._first,
        last_order_at=joined._last,
        recency_days=recency,
        first_order_days=first_age,
        ipt_mean_days=ipt,
        last_gap_days=joined._last_gap,
    )


def _order_summary(t: LakeTables, instants: ir.Table) -> ir.Table:
    """Per (instant, person): orders placed before it and not cancelled by then, and their gaps."""
    adj = t.order_adjustments
    cancels = adj.filter(adj.kind == "cancelled").group_by(_cancelled_order=adj.order_id).aggregate(
        _cancelled_at=adj.timestamp.min()
    )
    o = t.orders.filter(t.orders.person_id.notnull())
    o = o.left_join(cancels, o.order_id == cancels._cancelled_order).select(
        "order_id", "person_id", "timestamp", "_cancelled_at"
    )
    o = o.cross_join(instants)
    o = o.filter(o.timestamp < o.as_of, o._cancelled_at.isnull() | (o._cancelled_at >= o.as_of))
    keys = [o.as_of, o.person_id]
    previous = o.timestamp.lag().over(group_by=keys, order_by=[o.timestamp, o.order_id])
    latest = ibis.row_number().over(group_by=keys, order_by=[ibis.desc(o.timestamp), ibis.desc(o.order_id)])
    o = o.mutate(_gap=days_between(o.timestamp, previous), _latest=latest == 0)
    return o.group_by(_at=o.as_of, _person=o.person_id).aggregate(
        _orders=o.order_id.count(),
        _first=o.timestamp.min(),
        _last=o.timestamp.max(),
        _last_gap=o._gap.max(where=o._latest),
    )


def _instants(as_ofs: Sequence[datetime]) -> ir.Table:
    """The distinct instants as a one-column table (``as_of``, UTC timestamps)."""
    if isinstance(as_ofs, datetime | str) or len(as_ofs) == 0:
        raise ValidationError("as_ofs", "must be a non-empty sequence of datetimes")
    for value in as_ofs:
        check_instant(value, "as_ofs")
    values = sorted({value.astimezone(UTC) for value in as_ofs})
    return ibis.memtable(pa.table({"as_of": pa.array(values, pa.timestamp("us", tz="UTC"))}))


def _stage_grid(name: str, position: str, stages: Sequence[str]) -> ir.Table:
    return ibis.memtable({name: list(stages), position: list(range(len(stages)))})


def _check_lifecycle(lifecycle: LifecycleSettings) -> None:
    for field in ("new_customer_days", "loyal_min_orders", "loyal_recency_days", "at_risk_factor", "at_risk_days",
                  "churned_days"):
        value = getattr(lifecycle, field)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ValidationError(f"lifecycle.{field}", f"must be a positive number; got {value!r}")
