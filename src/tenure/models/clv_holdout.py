"""Holdout checks of a fitted BG/NBD model (Fader, Hardie & Lee 2005, Figures 2 and 4).

Two tables, and a figure drawing them: weekly cumulative repeat transactions of the cohort,
actual against the model's unconditional prediction, over calibration and holdout; and, for
the holdout, each customer's conditional expectation against their actual purchases, averaged
by calibration frequency. Tables and plotting are separate so reports can reuse either.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from tenure.errors import ValidationError
from tenure.models.bgnbd import BetaGeo
from tenure.models.rfm_summary import TimeUnit, check_summary, days_per_unit, purchase_days, to_day


def cumulative_repeat_transactions(
    model: BetaGeo,
    transactions: pd.DataFrame,
    *,
    customer: str,
    timestamp: str,
    calibration_end: object,
    observation_end: object,
    start: object | None = None,
    time_unit: TimeUnit = "W",
) -> pd.DataFrame:
    """Cumulative repeat transactions at the end of each period since ``start``, actual and predicted.

    The cohort is the customers whose first purchase is on or before ``calibration_end``;
    ``start`` defaults to the earliest purchase day. Period k (1-based, ``time_unit`` long) ends
    on day ``start + k·unit − 1``, and a customer who first bought on day d0 has then been
    around for (end − d0) / unit model time units (the summary's ``T`` convention), so the
    predicted total is Σ_i E[X((end_k − d0_i) / unit)]. Columns: ``actual``, ``predicted``,
    ``holdout`` (the period ends after ``calibration_end``); indexed by ``period``.
    """
    unit = days_per_unit(time_unit)
    cal_end, obs_end = to_day(calibration_end, "calibration_end"), to_day(observation_end, "observation_end")
    if obs_end <= cal_end:
        raise ValidationError("observation_end", "must be after calibration_end")
    days = purchase_days(transactions, customer=customer, timestamp=timestamp, amount=None)
    days = days[days["day"] <= obs_end]
    first = days.groupby("customer", sort=False)["day"].transform("min")
    days = days[first <= cal_end]
    first = first[first <= cal_end]
    if days.empty:
        raise ValidationError(timestamp, "no customer made a first purchase on or before calibration_end")
    origin = first.min() if start is None else to_day(start, "start")
    if origin > first.min():
        raise ValidationError("start", "must not be after the first purchase of the cohort")
    n_periods = int(np.ceil(((obs_end - origin).days + 1) / unit))
    period_end = np.arange(1, n_periods + 1) * unit - 1.0  # in days since origin

    repeat_offsets = (days["day"] - origin).dt.days.to_numpy()[(days["day"] > first).to_numpy()]
    actual = np.searchsorted(np.sort(repeat_offsets), period_end, side="right")

    first_offsets = (first[days["day"] == first] - origin).dt.days.to_numpy(dtype=np.float64)
    starts, counts = np.unique(first_offsets, return_counts=True)
    ages = np.clip(period_end[:, None] - starts[None, :], 0.0, None) / unit
    predicted = model.expected_purchases(ages) @ counts

    index = pd.RangeIndex(1, n_periods + 1, name="period")
    holdout = origin + pd.to_timedelta(period_end, unit="D") > cal_end
    return pd.DataFrame({"actual": actual.astype(np.float64), "predicted": predicted, "holdout": holdout}, index=index)


def holdout_by_frequency(model: BetaGeo, summary: pd.DataFrame, *, max_frequency: int = 7) -> pd.DataFrame:
    """Mean holdout purchases per customer, actual and conditional expectation, by calibration frequency.

    ``summary`` is a ``calibration_and_holdout`` table (one ``duration_holdout`` for everyone).
    Buckets are 0, 1, …, ``max_frequency`` − 1 and ``max_frequency``+; columns ``customers``,
    ``actual``, ``predicted``.
    """
    check_summary(summary)
    for name in ("frequency_holdout", "duration_holdout"):
        if name not in summary.columns:
            raise ValidationError(name, "missing column (use calibration_and_holdout)")
    durations = summary["duration_holdout"].unique()
    if len(durations) != 1:
        raise ValidationError("duration_holdout", "must be the same for every customer")
    if max_frequency < 1:
        raise ValidationError("max_frequency", "must be at least 1")
    predicted = model.conditional_expected_purchases(float(durations[0]), summary)
    frequency = summary["frequency"].to_numpy()
    bucket = np.minimum(frequency, max_frequency).astype(int)
    labels = [str(k) for k in range(max_frequency)] + [f"{max_frequency}+"]
    table = pd.DataFrame(
        {"bucket": bucket, "actual": summary["frequency_holdout"].to_numpy(dtype=np.float64), "predicted": predicted}
    ).groupby("bucket")
    out = pd.DataFrame(
        {"customers": table.size(), "actual": table["actual"].mean(), "predicted": table["predicted"].mean()}
    )
    out = out.reindex(range(max_frequency + 1))
    out["customers"] = out["customers"].fillna(0).astype(int)
    out.index = pd.Index(labels, name="frequency")
    return out


def plot_holdout(cumulative: pd.DataFrame, by_frequency: pd.DataFrame, *, time_label: str = "week") -> Figure:
    """The two holdout panels: cumulative tracking (the paper's Figure 2) and by frequency (Figure 4)."""
    figure = Figure(figsize=(11, 4.2), layout="constrained")
    left, right = figure.subplots(1, 2)
    left.plot(cumulative.index, cumulative["actual"], color="black", label="actual")
    left.plot(cumulative.index, cumulative["predicted"], color="tab:blue", linestyle="--", label="BG/NBD")
    calibration = cumulative.index[~cumulative["holdout"].to_numpy(dtype=bool)]
    if len(calibration):
        left.axvline(calibration[-1], color="grey", linestyle=":", linewidth=1)
    left.set(xlabel=time_label, ylabel="cumulative repeat transactions", title="Tracking: calibration | holdout")
    left.legend()
    positions = np.arange(len(by_frequency))
    right.bar(positions - 0.2, by_frequency["actual"], width=0.4, color="black", label="actual")
    right.bar(positions + 0.2, by_frequency["predicted"], width=0.4, color="tab:blue", label="BG/NBD")
    right.set_xticks(positions, list(by_frequency.index))
    right.set(xlabel="repeat purchases in calibration", ylabel="mean holdout purchases", title="Holdout by frequency")
    right.legend()
    return figure
