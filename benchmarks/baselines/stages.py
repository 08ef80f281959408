"""Person features and lifecycle stages as a data scientist would write them in pandas.

Baselines to time against ``tenure.analytics.features.person_features`` and
``tenure.analytics.stages.lifecycle_stages``; the definitions are theirs. Inputs are the
engine's attributed tables loaded into pandas with UTC timestamps. ``orders.net_revenue``
reflects every adjustment, including later ones, so both take ``adjustments`` (the engine's
``order_adjustments``) to stay point-in-time; the features also need ``order_items`` and
``users`` (for the category mix and the current traits) and ``timezone`` for local days.
"""

from __future__ import annotations

import json
from datetime import datetime

import numpy as np
import pandas as pd

from tenure.config import LifecycleSettings

DAY = pd.Timedelta(days=1)
SESSION_GAP = pd.Timedelta(minutes=30)
WINDOWS_DAYS = (7, 30, 90)


def person_features(
    events: pd.DataFrame,
    orders: pd.DataFrame,
    *,
    as_of: datetime,
    adjustments: pd.DataFrame,
    order_items: pd.DataFrame,
    users: pd.DataFrame,
    timezone: str = "UTC",
) -> pd.DataFrame:
    """One row per person with any event or order before ``as_of`` (columns as the Ibis version)."""
    cut = pd.Timestamp(as_of)
    ev = events.loc[(events.timestamp < cut) & events.person_id.notna()]
    people = _people(ev, orders, cut)
    known = _known_orders(orders, adjustments, cut)
    out = people.join(_event_features(ev, cut, timezone)).join(_order_features(known))
    out = out.join(_category_features(known, order_items)).join(_traits(users))
    counts = [f"{kind}_{days}d" for kind in ("events", "sessions") for days in WINDOWS_DAYS]
    out[counts] = out[counts].fillna(0).astype("int64")
    out["orders"] = out.orders.fillna(0).astype("int64")
    out["revenue"] = out.revenue.fillna(0.0)
    out["aov"] = (out.revenue / out.orders).where(out.orders > 0)
    out["tenure_days"] = (cut - out.first_seen) / DAY
    out["recency_days"] = (cut - out.last_order_at) / DAY
    out["active_days"] = out.active_days.fillna(0).astype("int64")
    out["distinct_categories"] = out.distinct_categories.fillna(0).astype("int64")
    columns = ["identified", "first_seen", "last_seen", "first_order_at", "last_order_at", "tenure_days", "orders",
               "revenue", "aov", "recency_days", "ipt_mean_days", "ipt_std_days", *counts, "active_days",
               "top_category", "top_category_share", "distinct_categories", "channel", "country"]
    return out[columns].rename_axis("person_id").reset_index()


def lifecycle_stages(
    events: pd.DataFrame,
    orders: pd.DataFrame,
    *,
    as_of: datetime,
    lifecycle: LifecycleSettings,
    adjustments: pd.DataFrame,
) -> pd.DataFrame:
    """Each person's stage at ``as_of`` and its inputs (columns as the Ibis version)."""
    cut = pd.Timestamp(as_of)
    people = _people(events.loc[(events.timestamp < cut) & events.person_id.notna()], orders, cut)
    known = _known_orders(orders, adjustments, cut).sort_values(["person_id", "timestamp", "order_id"])
    gap = known.groupby("person_id").timestamp.diff() / DAY
    per = known.assign(gap=gap).groupby("person_id").agg(
        orders=("order_id", "size"), first_order_at=("timestamp", "min"), last_order_at=("timestamp", "max"),
        last_gap_days=("gap", "last"),
    )
    out = people[["identified"]].join(per)
    n = out.orders.fillna(0).astype("int64")
    out["orders"] = n
    out["recency_days"] = (cut - out.last_order_at) / DAY
    out["first_order_days"] = (cut - out.first_order_at) / DAY
    out["ipt_mean_days"] = ((out.last_order_at - out.first_order_at) / DAY / (n - 1)).where(n >= 2)
    s, recency = lifecycle, out.recency_days
    rules = [
        (n == 0) & ~out.identified,
        n == 0,
        recency > s.churned_days,
        out.first_order_days <= s.new_customer_days,
        (n >= 2) & (recency > out.ipt_mean_days * s.at_risk_factor),
        (n == 1) & (recency > s.at_risk_days),
        out.last_gap_days > s.churned_days,
        (n >= s.loyal_min_orders) & (recency <= s.loyal_recency_days),
    ]
    names = ["Visitor", "Lead", "Churned", "New customer", "At risk", "At risk", "Reactivated", "Loyal"]
    out["stage"] = np.select(rules, names, default="Active")
    columns = ["stage", "identified", "orders", "first_order_at", "last_order_at", "recency_days", "first_order_days",
               "ipt_mean_days", "last_gap_days"]
    return out[columns].rename_axis("person_id").reset_index()


def _people(events: pd.DataFrame, orders: pd.DataFrame, cut: pd.Timestamp) -> pd.DataFrame:
    placed = orders.loc[(orders.timestamp < cut) & orders.person_id.notna()]
    activity = pd.concat([events[["person_id", "timestamp", "user_id"]], placed[["person_id", "timestamp", "user_id"]]])
    return activity.assign(named=activity.user_id.notna()).groupby("person_id").agg(
        identified=("named", "any"), first_seen=("timestamp", "min"), last_seen=("timestamp", "max")
    )


def _known_orders(orders: pd.DataFrame, adjustments: pd.DataFrame, cut: pd.Timestamp) -> pd.DataFrame:
    """Orders before ``cut`` not cancelled by then, with net revenue after the refunds made by then."""
    made = adjustments.loc[adjustments.timestamp < cut]
    refund = made.kind == "refunded"
    summary = made.assign(
        cancelled=made.kind == "cancelled", voided=refund & made.amount.isna(), refunded=made.amount.where(refund, 0.0)
    ).groupby("order_id").agg(cancelled=("cancelled", "any"), voided=("voided", "any"), refunded=("refunded", "sum"))
    placed = orders.loc[(orders.timestamp < cut) & orders.person_id.notna(), ["order_id", "person_id", "timestamp",
                                                                               "revenue"]]
    known = placed.join(summary, on="order_id")
    known = known.loc[~known.cancelled.fillna(False).astype(bool)]
    net = (known.revenue - known.refunded.fillna(0.0)).clip(lower=0.0)
    return known.assign(net_revenue=net.where(~known.voided.fillna(False).astype(bool), 0.0))


def _event_features(events: pd.DataFrame, cut: pd.Timestamp, timezone: str) -> pd.DataFrame:
    ev = events.sort_values(["person_id", "timestamp", "message_id"])
    previous = ev.groupby("person_id").timestamp.shift()
    start = previous.isna() | (ev.timestamp - previous > SESSION_GAP)
    flags = {"day": ev.timestamp.dt.tz_convert(timezone).dt.date}
    for days in WINDOWS_DAYS:
        recent = ev.timestamp >= cut - pd.Timedelta(days=days)
        flags[f"events_{days}d"] = recent
        flags[f"sessions_{days}d"] = recent & start
    frame = pd.DataFrame(flags).assign(person_id=ev.person_id)
    grouped = frame.groupby("person_id")
    out = grouped[[c for c in flags if c != "day"]].sum()
    out["active_days"] = grouped.day.nunique()
    return out


def _order_features(known: pd.DataFrame) -> pd.DataFrame:
    ordered = known.sort_values(["person_id", "timestamp", "order_id"])
    gaps = ordered.assign(gap=ordered.groupby("person_id").timestamp.diff() / DAY)
    grouped = gaps.groupby("person_id")
    out = grouped.agg(
        orders=("order_id", "size"), revenue=("net_revenue", "sum"), first_order_at=("timestamp", "min"),
        last_order_at=("timestamp", "max"),
    )
    out["ipt_std_days"] = grouped.gap.std(ddof=0)
    out["ipt_mean_days"] = ((out.last_order_at - out.first_order_at) / DAY / (out.orders - 1)).where(out.orders >= 2)
    out["ipt_std_days"] = out.ipt_std_days.where(out.orders >= 3)
    return out


def _category_features(known: pd.DataFrame, order_items: pd.DataFrame) -> pd.DataFrame:
    lines = order_items.loc[order_items.category.notna() & (order_items.quantity > 0), ["order_id", "category",
                                                                                        "quantity"]]
    lines = lines.merge(known[["order_id", "person_id"]], on="order_id")
    units = lines.groupby(["person_id", "category"], as_index=False).quantity.sum()
    ranked = units.sort_values(["person_id", "quantity", "category"], ascending=[True, False, True])
    grouped = ranked.groupby("person_id")
    top = grouped.first()
    return pd.DataFrame({
        "top_category": top.category,
        "top_category_share": top.quantity / grouped.quantity.sum(),
        "distinct_categories": grouped.category.size(),
    })


def _traits(users: pd.DataFrame) -> pd.DataFrame:
    """Current traits, parsed from the merged JSON per person."""
    parsed = users.traits.map(lambda text: json.loads(text) if isinstance(text, str) else {})
    return pd.DataFrame({
        "channel": parsed.str.get("channel").to_numpy(), "country": parsed.str.get("country").to_numpy()
    }, index=users.person_id)
