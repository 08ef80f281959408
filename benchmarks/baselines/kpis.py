"""KPIs as a data scientist would write them in pandas, to time against ``tenure.analytics.kpis``.

Inputs are the engine's attributed ``events`` and ``orders`` (with ``status``, ``revenue`` and
``net_revenue``) loaded into pandas with UTC timestamps. The definitions are those of
``tenure.analytics.kpis``; the extra parameters are ``timezone``, the reporting zone the
engine session supplies for local days, and ``adjustments`` (the engine's
``order_adjustments``) for orders as known at ``end`` when refunds or cancellations come later. Trailing audiences use a person x day activity matrix
and a rolling sum, the usual pandas idiom.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from tenure.config import LifecycleSettings

ONE_MICRO = pd.Timedelta(microseconds=1)


def kpis(
    events: pd.DataFrame,
    orders: pd.DataFrame,
    *,
    start: datetime,
    end: datetime,
    period: str = "week",
    lifecycle: LifecycleSettings,
    timezone: str = "UTC",
    adjustments: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per local period: audience, acquisition, sales and retention KPIs."""
    begin, stop = pd.Timestamp(start), pd.Timestamp(end)
    days = _days(begin, stop, timezone)
    daily = _daily(events, begin, stop, timezone).assign(period=lambda d: _period(d.day, period))
    grid = daily.groupby("period").agg(days=("day", "size"), first_day=("day", "min"), dau=("dau", "mean"),
                                       wau=("wau", "last"), mau=("mau", "last"))

    known = events.loc[events.timestamp < stop, ["person_id", "timestamp"]]
    local = known.assign(day=_local_day(known.timestamp, timezone))
    active = local.loc[local.day.isin(days)].drop_duplicates(["person_id", "day"])
    grid["active_people"] = active.groupby(_period(active.day, period)).person_id.nunique()
    first_day = _local_day(known.groupby("person_id").timestamp.min(), timezone)
    grid["new_people"] = _period(first_day[first_day.isin(days)], period).value_counts()

    placed = _orders(_known_orders(orders, stop, adjustments), stop, timezone, lifecycle.churned_days)
    in_range = placed.loc[placed.day.isin(days)].assign(period=lambda o: _period(o.day, period))
    sales = in_range.groupby("period").agg(orders=("order_id", "size"), revenue=("net_revenue", "sum"),
                                           customers=("person_id", "nunique"))
    grid = grid.join(sales)
    repeat = in_range.groupby(["period", "person_id"]).number.max() >= 1
    grid["repeat_customers"] = repeat.groupby(level="period").sum()
    grid = grid.join(_retention(placed, in_range, grid, days, period, timezone, stop))

    out = grid.fillna(0)
    counts = ["active_people", "new_people", "orders", "customers", "wau", "mau"]
    out[counts] = out[counts].astype("int64")
    out["revenue"] = out.revenue.astype("float64")
    result = pd.DataFrame({
        "period": out.index.astype("datetime64[us]").to_numpy(),
        "active_people": out.active_people,
        "dau": out.dau,
        "wau": out.wau,
        "mau": out.mau,
        "stickiness": _ratio(out.dau, out.mau),
        "new_people": out.new_people,
        "returning_people": out.active_people - out.new_people,
        "orders": out.orders,
        "revenue": out.revenue,
        "customers": out.customers,
        "arpu": _ratio(out.revenue, out.active_people),
        "repeat_purchase_rate": _ratio(out.repeat_customers, out.customers),
        "churn_rate": _ratio(out.churners, out.at_risk),
        "reactivation_rate": _ratio(out.reactivated, out.churned_at_start),
    })
    return result.reset_index(drop=True)


def daily_activity(
    events: pd.DataFrame,
    orders: pd.DataFrame,
    *,
    start: datetime,
    end: datetime,
    timezone: str = "UTC",
) -> pd.DataFrame:
    """One row per local day: DAU, trailing 7- and 30-day audiences, stickiness."""
    daily = _daily(events, pd.Timestamp(start), pd.Timestamp(end), timezone)
    daily["stickiness"] = _ratio(daily.dau, daily.mau)
    return daily.reset_index(drop=True)


def _daily(events: pd.DataFrame, begin: pd.Timestamp, stop: pd.Timestamp, timezone: str) -> pd.DataFrame:
    days = _days(begin, stop, timezone)
    history = pd.date_range(days[0] - pd.Timedelta(days=29), days[-1], freq="D")
    recent = events.loc[(events.timestamp < stop) & (events.timestamp >= begin - pd.Timedelta(days=32)),
                        ["person_id", "timestamp"]]
    seen = recent.assign(day=_local_day(recent.timestamp, timezone))
    seen = seen.loc[seen.day.isin(history)].drop_duplicates(["person_id", "day"])
    matrix = pd.crosstab(seen.day, seen.person_id).reindex(history, fill_value=0).clip(upper=1)
    counts = pd.DataFrame({
        "dau": matrix.sum(axis=1),
        "wau": (matrix.rolling(7, min_periods=1).sum() > 0).sum(axis=1),
        "mau": (matrix.rolling(30, min_periods=1).sum() > 0).sum(axis=1),
    }).loc[days].astype("int64")
    return counts.rename_axis("day").reset_index().assign(day=lambda d: d.day.astype("datetime64[us]"))


def _known_orders(orders: pd.DataFrame, stop: pd.Timestamp, adjustments: pd.DataFrame | None) -> pd.DataFrame:
    """Orders placed before ``stop`` and not cancelled before it, net of the refunds made before it.

    Without ``adjustments`` the final ``status`` and ``net_revenue`` stand in (the same when no
    adjustment is dated at or after ``stop``).
    """
    placed = orders.loc[(orders.timestamp < stop) & orders.person_id.notna(),
                        ["person_id", "order_id", "timestamp", "status", "revenue", "net_revenue"]]
    if adjustments is None:
        return placed.loc[placed.status != "cancelled"]
    made = adjustments.loc[adjustments.timestamp < stop]
    if placed.empty or made.empty:
        return placed.assign(net_revenue=placed.revenue)
    refund = made.kind == "refunded"
    per = made.assign(cancelled=made.kind == "cancelled", voided=refund & made.amount.isna(),
                      refunded=made.amount.where(refund, 0.0))
    per = per.groupby("order_id").agg(cancelled=("cancelled", "any"), voided=("voided", "any"),
                                      refunded=("refunded", "sum"))
    joined = placed.drop(columns=["net_revenue"]).join(per, on="order_id")
    joined = joined.loc[~joined.cancelled.fillna(False).astype(bool)]
    net = (joined.revenue - joined.refunded.fillna(0.0)).clip(lower=0.0)
    return joined.assign(net_revenue=net.where(~joined.voided.fillna(False).astype(bool), 0.0))


def _orders(placed: pd.DataFrame, stop: pd.Timestamp, timezone: str, churned_days: int) -> pd.DataFrame:
    """Known orders: number per person, next order, churn moment, local day."""
    placed = placed[["person_id", "order_id", "timestamp", "net_revenue"]]
    placed = placed.sort_values(["person_id", "timestamp", "order_id"]).reset_index(drop=True)
    by_person = placed.groupby("person_id")
    return placed.assign(
        number=by_person.cumcount(),
        next_ts=by_person.timestamp.shift(-1),
        churn_at=placed.timestamp + pd.Timedelta(days=churned_days),
        day=_local_day(placed.timestamp, timezone),
    )


def _retention(
    placed: pd.DataFrame,
    in_range: pd.DataFrame,
    grid: pd.DataFrame,
    days: pd.DatetimeIndex,
    period: str,
    timezone: str,
    stop: pd.Timestamp,
) -> pd.DataFrame:
    """Per period: customers at risk / churned at its start, churners, reactivated people."""
    columns = ["at_risk", "churned_at_start", "churners", "reactivated"]
    if placed.empty:
        return pd.DataFrame(0, index=grid.index, columns=columns)
    starts = grid.first_day.dt.tz_localize(timezone).dt.tz_convert("UTC").rename("at").reset_index()
    people = placed[["person_id"]].drop_duplicates()
    state = people.merge(starts, how="cross").sort_values("at")
    last = placed.sort_values("timestamp")[["person_id", "timestamp", "churn_at"]]
    state = pd.merge_asof(state, last, left_on="at", right_on="timestamp", by="person_id",
                          allow_exact_matches=False).dropna(subset=["timestamp"])
    state["churned"] = state.churn_at < state["at"]

    lapses = placed.loc[(placed.churn_at < stop) & (placed.next_ts.isna() | (placed.next_ts > placed.churn_at))]
    lapse_day = _local_day(lapses.churn_at, timezone)
    lapsed = pd.DataFrame({"person_id": lapses.person_id, "period": _period(lapse_day, period)})[lapse_day.isin(days)]
    ordered = in_range[["person_id", "period"]].drop_duplicates()

    keys = ["person_id", "period"]
    churners = state.loc[~state.churned, keys].merge(lapsed.drop_duplicates(), on=keys)
    reactivated = state.loc[state.churned, keys].merge(ordered, on=keys)
    return pd.DataFrame({
        "at_risk": (~state.churned).groupby(state.period).sum(),
        "churned_at_start": state.churned.groupby(state.period).sum(),
        "churners": churners.groupby("period").size(),
        "reactivated": reactivated.groupby("period").size(),
    })


def _days(begin: pd.Timestamp, stop: pd.Timestamp, timezone: str) -> pd.DatetimeIndex:
    first = begin.tz_convert(timezone).tz_localize(None).normalize()
    last = (stop - ONE_MICRO).tz_convert(timezone).tz_localize(None).normalize()
    return pd.date_range(first, last, freq="D")


def _local_day(ts: pd.Series, timezone: str) -> pd.Series:
    return ts.dt.tz_convert(timezone).dt.tz_localize(None).dt.normalize()


def _period(day: pd.Series, period: str) -> pd.Series:
    if period == "day":
        return day
    if period == "week":
        return day - pd.to_timedelta(day.dt.day_of_week, unit="D")
    return day.dt.to_period("M").dt.start_time


def _ratio(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    return (numerator / denominator.where(denominator > 0)).fillna(0.0).astype("float64")
