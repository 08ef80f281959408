"""Per-customer recency/frequency/monetary summaries, the input of the buy-till-you-die models.

Conventions are those of Fader, Hardie & Lee (2005): purchases are counted per calendar day
(several transactions on one day are one transaction, their amounts summed); the first purchase
is excluded from ``frequency`` and from ``monetary_value``; ``recency`` is the time from the first
to the last purchase and ``T`` the time from the first purchase to the end of observation (the
end day included), both in ``time_unit`` (``"W"`` weeks of 7 days or ``"D"`` days).

On the CDNOW 1/10 sample (``master_id``, ``date``, ``dollar_value``),
``calibration_and_holdout(..., calibration_end="1997-09-30", observation_end="1998-06-30")``
gives the paper's 39-week calibration summary and its 39-week holdout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from tenure.errors import ValidationError

TimeUnit = Literal["W", "D"]
FloatArray = npt.NDArray[np.float64]
_DAYS_PER_UNIT: dict[str, float] = {"W": 7.0, "D": 1.0}


@dataclass(frozen=True, slots=True)
class SummaryArrays:
    """Validated columns of a summary as float arrays (``monetary_value`` only when asked for)."""

    frequency: FloatArray
    recency: FloatArray
    T: FloatArray
    monetary_value: FloatArray | None = None


def summary_from_transactions(
    transactions: pd.DataFrame,
    *,
    customer: str,
    timestamp: str,
    amount: str | None = None,
    observation_end: object,
    time_unit: TimeUnit = "W",
) -> pd.DataFrame:
    """One row per customer with ``frequency``, ``recency``, ``T`` (and ``monetary_value``).

    Transactions after ``observation_end`` are ignored. The result is indexed by customer and
    sorted by it; ``monetary_value`` (present when ``amount`` is given) is the mean value of the
    repeat purchase days, 0 for customers without repeat purchases.
    """
    days = purchase_days(transactions, customer=customer, timestamp=timestamp, amount=amount)
    end = to_day(observation_end, "observation_end")
    days = days[days["day"] <= end]
    if days.empty:
        raise ValidationError(timestamp, "no transactions on or before observation_end")
    return _summarise(days, end=end, unit=days_per_unit(time_unit), monetary=amount is not None)


def calibration_and_holdout(
    transactions: pd.DataFrame,
    *,
    customer: str,
    timestamp: str,
    amount: str | None = None,
    calibration_end: object,
    observation_end: object,
    time_unit: TimeUnit = "W",
) -> pd.DataFrame:
    """The calibration summary plus ``frequency_holdout``, ``duration_holdout`` (and money).

    Only customers whose first purchase is on or before ``calibration_end`` are kept; every
    purchase day in (calibration_end, observation_end] is a holdout purchase.
    ``monetary_value_holdout`` is the mean value of the holdout purchase days (0 if none).
    """
    cal_end = to_day(calibration_end, "calibration_end")
    obs_end = to_day(observation_end, "observation_end")
    if obs_end <= cal_end:
        raise ValidationError("observation_end", "must be after calibration_end")
    unit = days_per_unit(time_unit)
    days = purchase_days(transactions, customer=customer, timestamp=timestamp, amount=amount)
    calibration = days[days["day"] <= cal_end]
    if calibration.empty:
        raise ValidationError(timestamp, "no transactions on or before calibration_end")
    out = _summarise(calibration, end=cal_end, unit=unit, monetary=amount is not None)
    holdout = days[(days["day"] > cal_end) & (days["day"] <= obs_end)]
    grouped = holdout.groupby("customer", sort=False)["value"]
    out["frequency_holdout"] = grouped.size().reindex(out.index, fill_value=0).astype(np.float64)
    if amount is not None:
        out["monetary_value_holdout"] = grouped.mean().reindex(out.index, fill_value=0.0).astype(np.float64)
    out["duration_holdout"] = (obs_end - cal_end).days / unit
    return out


def check_summary(summary: pd.DataFrame, *, monetary: bool = False) -> SummaryArrays:
    """Validate a summary's columns; every problem is a ``ValidationError`` naming the column."""
    if not isinstance(summary, pd.DataFrame):
        raise ValidationError("summary", f"expected a pandas DataFrame, got {type(summary).__name__}")
    columns = ("frequency", "recency", "T", "monetary_value") if monetary else ("frequency", "recency", "T")
    arrays = {name: _finite_column(summary, name) for name in columns}
    frequency, recency, T = arrays["frequency"], arrays["recency"], arrays["T"]
    if np.any(frequency != np.round(frequency)):
        raise ValidationError("frequency", "must be a whole number of repeat purchases")
    if np.any(recency > T):
        raise ValidationError("recency", "must not exceed T (the customer's age)")
    if np.any((frequency == 0) & (recency > 0)):
        raise ValidationError("recency", "must be 0 for customers without repeat purchases (frequency 0)")
    money = arrays.get("monetary_value")
    if money is not None and np.any((frequency > 0) & (money <= 0)):
        raise ValidationError("monetary_value", "must be positive for customers with repeat purchases")
    return SummaryArrays(frequency, recency, T, money)


def _finite_column(summary: pd.DataFrame, name: str) -> FloatArray:
    if name not in summary.columns:
        raise ValidationError(name, "missing column")
    try:
        values: FloatArray = summary[name].to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise ValidationError(name, "must be numeric") from exc
    if not np.all(np.isfinite(values)):
        raise ValidationError(name, "must be finite (found NaN or infinity)")
    if np.any(values < 0):
        raise ValidationError(name, "must not be negative")
    return values


def purchase_days(
    transactions: pd.DataFrame, *, customer: str, timestamp: str, amount: str | None
) -> pd.DataFrame:
    """Collapse transactions to purchase days: columns ``customer``, ``day``, ``value`` (summed), sorted."""
    for name in (customer, timestamp) + ((amount,) if amount is not None else ()):
        if name not in transactions.columns:
            raise ValidationError(name, "missing column")
    if transactions[customer].isna().any():
        raise ValidationError(customer, "missing customer id")
    try:
        stamps = pd.to_datetime(transactions[timestamp])
    except (TypeError, ValueError) as exc:
        raise ValidationError(timestamp, "not a date or timestamp") from exc
    if stamps.isna().any():
        raise ValidationError(timestamp, "missing timestamp")
    if getattr(stamps.dt, "tz", None) is not None:
        stamps = stamps.dt.tz_localize(None)
    frame = pd.DataFrame({"customer": transactions[customer].to_numpy(), "day": stamps.dt.normalize().to_numpy()})
    if amount is None:
        frame["value"] = 0.0
    else:
        values = pd.to_numeric(transactions[amount], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        if not np.all(np.isfinite(values)):
            raise ValidationError(amount, "must be finite numbers")
        frame["value"] = values
    return frame.groupby(["customer", "day"], sort=True, as_index=False)["value"].sum()


def _summarise(days: pd.DataFrame, *, end: pd.Timestamp, unit: float, monetary: bool) -> pd.DataFrame:
    """Sorted (customer, day) purchase days → the per-customer summary."""
    grouped = days.groupby("customer", sort=True)
    first = grouped["day"].min()
    last = grouped["day"].max()
    frequency = grouped.size() - 1
    out = pd.DataFrame(
        {
            "frequency": frequency.astype(np.float64),
            "recency": (last - first).dt.days / unit,
            "T": (end - first).dt.days / unit,
        }
    )
    if monetary:
        is_first = days["day"].to_numpy() == first.reindex(days["customer"]).to_numpy()
        repeat_total = days["value"].where(~is_first, 0.0).groupby(days["customer"], sort=True).sum()
        out["monetary_value"] = np.where(frequency > 0, repeat_total / frequency.clip(lower=1), 0.0)
    out.index.name = "customer"
    return out


def to_day(value: object, field: str) -> pd.Timestamp:
    """A date-like value as a naive midnight timestamp; a ``ValidationError`` naming ``field`` if it is not one."""
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError) as exc:
        raise ValidationError(field, f"not a date: {value!r}") from exc
    if stamp is pd.NaT:
        raise ValidationError(field, "missing date")
    if stamp.tzinfo is not None:
        stamp = stamp.tz_localize(None)
    return stamp.normalize()


def days_per_unit(time_unit: str) -> float:
    """Days in one ``time_unit`` (``"W"`` or ``"D"``)."""
    if time_unit not in _DAYS_PER_UNIT:
        raise ValidationError("time_unit", f"must be 'W' or 'D', got {time_unit!r}")
    return _DAYS_PER_UNIT[time_unit]
