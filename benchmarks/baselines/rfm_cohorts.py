"""RFM and cohorts as a data scientist would write them in pandas, to time against the Ibis versions.

``events`` and ``orders`` are the engine's attributed tables loaded into pandas (timestamps
tz-aware). ``orders.net_revenue`` and ``orders.status`` reflect every adjustment, so they give
the same answer as the Ibis functions when no refund or cancellation is dated at or after
``as_of``; pass ``adjustments`` (the engine's ``order_adjustments``) for the point-in-time
answer at any ``as_of``. ``timezone`` is the reporting zone the engine session runs in.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from tenure.analytics.rfm import MONEY_DIGITS, RFM_SEGMENTS, SEGMENT_GRID

_FREQ = {"day": "D", "week": "W-SUN", "month": "M"}


def rfm_scores(
    events: pd.DataFrame, orders: pd.DataFrame, *, as_of: datetime, bins: int = 5,
    adjustments: pd.DataFrame | None = None,
) -> pd.DataFrame:
    known = _known_orders(orders, as_of, adjustments)
    per = known.groupby("person_id").agg(
        last=("timestamp", "max"), frequency=("order_id", "size"), monetary=("net_revenue", "sum")
    )
    per["monetary"] = per["monetary"].round(MONEY_DIGITS)
    denominator = max(len(per) - 1, 1)

    def score(values: pd.Series) -> pd.Series:
        worse = values.rank(method="min").astype("int64") - 1
        return np.minimum(1 + worse * bins // denominator, bins).astype("int64")

    out = pd.DataFrame({
        "person_id": per.index,
        "recency_days": (pd.Timestamp(as_of) - per["last"]).dt.total_seconds().to_numpy() / 86400,
        "frequency": per["frequency"].astype("int64").to_numpy(),
        "monetary": per["monetary"].to_numpy(),
        "r_score": score(per["last"]).to_numpy(),
        "f_score": score(per["frequency"]).to_numpy(),
        "m_score": score(per["monetary"]).to_numpy(),
    })
    separator = "" if bins <= 9 else "-"
    out["rfm"] = out.r_score.astype(str) + separator + out.f_score.astype(str) + separator + out.m_score.astype(str)
    r5, f5, m5 = (1 + (8 * (out[c] - 1) + bins - 1) // (2 * (bins - 1)) for c in ("r_score", "f_score", "m_score"))
    band = np.select([f5 + m5 <= 3, f5 + m5 <= 5, f5 + m5 <= 7], [0, 1, 2], 3)
    grid = np.array([SEGMENT_GRID[r] for r in range(1, 6)], dtype=object)
    out["segment"] = grid[r5.to_numpy() - 1, band]
    return out


def rfm_segments(
    events: pd.DataFrame, orders: pd.DataFrame, *, as_of: datetime, bins: int = 5,
    adjustments: pd.DataFrame | None = None,
) -> pd.DataFrame:
    scores = rfm_scores(events, orders, as_of=as_of, bins=bins, adjustments=adjustments)
    out = scores.groupby("segment").agg(
        people=("person_id", "size"), revenue=("monetary", "sum"), avg_recency_days=("recency_days", "mean"),
        avg_frequency=("frequency", "mean"), avg_monetary=("monetary", "mean"),
    ).reindex(list(RFM_SEGMENTS))
    out["people"] = out["people"].fillna(0).astype("int64")
    out["revenue"] = out["revenue"].fillna(0.0)
    total_people, total_revenue = out["people"].sum(), out["revenue"].sum()
    out["people_share"] = out["people"] / total_people if total_people else 0.0
    out["revenue_share"] = out["revenue"] / total_revenue if total_revenue > 0 else 0.0
    columns = ["people", "people_share", "revenue", "revenue_share", "avg_recency_days", "avg_frequency", "avg_monetary"]
    return out[columns].rename_axis("segment").reset_index()


def cohort_table(
    events: pd.DataFrame, orders: pd.DataFrame, *, as_of: datetime, period: str = "month",
    cohort_of: str = "first_seen", breakdown: pd.DataFrame | None = None, timezone: str = "UTC",
    adjustments: pd.DataFrame | None = None,
) -> pd.DataFrame:
    freq = _FREQ[period]

    def periods(ts: pd.Series) -> pd.Series:
        """Local calendar periods; their ordinals number consecutive periods consecutively."""
        return ts.dt.tz_convert(timezone).dt.tz_localize(None).dt.to_period(freq)

    seen = events.loc[(events.timestamp < as_of) & events.person_id.notna(), ["person_id", "timestamp"]]
    seen = seen.assign(number=periods(seen.timestamp).array.asi8)
    bought = _known_orders(orders, as_of, adjustments)
    bought = bought.assign(number=periods(bought.timestamp).array.asi8)

    source = seen if cohort_of == "first_seen" else bought
    people = source.groupby("person_id").timestamp.min().to_frame("first")
    first = periods(people["first"])
    people["cohort"] = first.dt.start_time
    people["cohort_number"] = first.array.asi8
    keys = ["cohort"]
    if breakdown is not None:
        group = next(c for c in breakdown.columns if c != "person_id")
        values = breakdown.groupby("person_id")[group].max().astype("string")
        people[group] = values.reindex(people.index).fillna("(none)").astype(object)
        keys.append(group)
    people = people.drop(columns="first").reset_index()

    def per_period(facts: pd.DataFrame) -> pd.DataFrame:
        joined = facts.merge(people, on="person_id")
        joined["period_index"] = joined["number"] - joined["cohort_number"]
        return joined[joined.period_index >= 0].groupby([*keys, "period_index"])

    active = per_period(seen).person_id.nunique().rename("active_people")
    ordering = per_period(bought).agg(
        ordering_people=("person_id", "nunique"), orders=("order_id", "size"), revenue=("net_revenue", "sum")
    )
    last = pd.Period(pd.Timestamp(as_of).tz_convert(timezone).tz_localize(None) - pd.Timedelta(1, "us"), freq).ordinal
    sizes = people.groupby([*keys, "cohort_number"]).size().rename("cohort_size").reset_index()
    grid = sizes.loc[sizes.index.repeat(last - sizes["cohort_number"] + 1)]
    grid = grid.assign(period_index=grid.groupby(level=0).cumcount().astype("int64")).drop(columns="cohort_number")
    cells = grid.join(active, on=[*keys, "period_index"]).join(ordering, on=[*keys, "period_index"])
    for column in ("active_people", "ordering_people", "orders"):
        cells[column] = cells[column].fillna(0).astype("int64")
    cells["revenue"] = cells["revenue"].fillna(0.0)
    size = cells["cohort_size"]
    cells = cells.sort_values([*keys, "period_index"])
    first_revenue = cells["revenue"].where(cells["period_index"] == 0, 0.0).groupby([cells[k] for k in keys]).transform("sum")
    return pd.DataFrame({
        **{key: cells[key] for key in keys},
        "period_index": cells["period_index"],
        "cohort_size": size,
        "active_people": cells["active_people"],
        "retention": cells["active_people"] / size,
        "ordering_people": cells["ordering_people"],
        "order_retention": cells["ordering_people"] / size,
        "orders": cells["orders"],
        "revenue": cells["revenue"],
        "revenue_retention": cells["revenue"] / first_revenue.where(first_revenue > 0),
        "revenue_per_person": cells["revenue"] / size,
        "cumulative_revenue_per_person": cells.groupby(keys)["revenue"].cumsum() / size,
    }).reset_index(drop=True)


def _known_orders(orders: pd.DataFrame, as_of: datetime, adjustments: pd.DataFrame | None) -> pd.DataFrame:
    placed = orders[(orders.timestamp < as_of) & orders.person_id.notna()]
    if adjustments is None:
        return placed[placed.status != "cancelled"]
    made = adjustments[adjustments.timestamp < as_of]
    refund = made.kind == "refunded"
    per = made.assign(
        cancelled=made.kind == "cancelled", voided=refund & made.amount.isna(), refunded=made.amount.where(refund, 0.0)
    ).groupby("order_id").agg(cancelled=("cancelled", "any"), voided=("voided", "any"), refunded=("refunded", "sum"))
    joined = placed.drop(columns=["refunded", "net_revenue"], errors="ignore").join(per, on="order_id")
    joined = joined[~joined.cancelled.fillna(False).astype(bool)]
    net = (joined.revenue - joined.refunded.fillna(0.0)).clip(lower=0.0)
    return joined.assign(net_revenue=net.where(~joined.voided.fillna(False).astype(bool), 0.0))
