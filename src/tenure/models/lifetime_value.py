"""Customer lifetime value for a workspace: BG/NBD for how often, Gamma-Gamma for how much.

Time is in days and purchases are purchase *days* (two orders on one local day are one
transaction), as in the models' papers. The pair is checked on a holdout before it is trusted:
fitted on the history up to ``as_of - holdout_days``, it predicts each customer's purchases
and spend in the holdout, which are then counted. The model kept for scoring is refitted on
the whole history.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from tenure.errors import ValidationError
from tenure.models.bgnbd import BetaGeo
from tenure.models.clv_holdout import cumulative_repeat_transactions, holdout_by_frequency
from tenure.models.gamma_gamma import GammaGamma
from tenure.models.rfm_summary import calibration_and_holdout, summary_from_transactions

MIN_CUSTOMERS = 20
MIN_REPEAT_BUYERS = 5
DAYS_PER_MONTH = 365.25 / 12


@dataclass(frozen=True, slots=True)
class LifetimeValue:
    """A fitted BG/NBD + Gamma-Gamma pair and how CLV is discounted."""

    transactions: BetaGeo
    spend: GammaGamma
    annual_discount_rate: float

    def score(self, summary: pd.DataFrame, *, orders_days: int = 90, clv_days: int = 365) -> pd.DataFrame:
        """``p_alive``, expected purchase days in the next ``orders_days`` and discounted CLV.

        CLV sums monthly periods over ``clv_days``, discounting each month at the monthly rate
        equivalent to the annual one.
        """
        money = spend_inputs(summary)
        months = max(1, round(clv_days / DAYS_PER_MONTH))
        monthly = (1.0 + self.annual_discount_rate) ** (1 / 12) - 1.0
        clv = self.spend.customer_lifetime_value(
            self.transactions, money, horizon=months, discount_rate=monthly, time_unit_per_period=DAYS_PER_MONTH
        )
        return pd.DataFrame(
            {
                "p_alive": self.transactions.p_alive(summary),
                f"expected_orders_{orders_days}d": self.transactions.conditional_expected_purchases(orders_days, summary),
                f"clv_{clv_days}d": clv,
            },
            index=summary.index,
        )


@dataclass(frozen=True, slots=True)
class TrainedLifetimeValue:
    model: LifetimeValue
    metrics: dict[str, Any]
    tracking: pd.DataFrame  # weekly cumulative repeat purchases, actual and predicted
    by_frequency: pd.DataFrame  # holdout purchases by calibration frequency
    values: pd.DataFrame  # the scores at as_of, for the distribution chart


def fit_lifetime_value(
    orders: pd.DataFrame, *, observation_end: pd.Timestamp, holdout_days: int, annual_discount_rate: float
) -> TrainedLifetimeValue:
    """Holdout check, then a fit on everything.

    ``orders``: person_id, day (local date as a naive timestamp), value; ``observation_end``
    is the last day whose orders are known.
    """
    _check_orders(orders)
    end = observation_end
    span = (end - orders["day"].min()).days
    if holdout_days < 1 or holdout_days * 2 > span:
        raise ValidationError(
            "holdout_days", f"must be between 1 and half the {span} days of order history, not {holdout_days}"
        )
    calibration_end = end - timedelta(days=holdout_days)
    split = calibration_and_holdout(
        orders, customer="person_id", timestamp="day", amount="value",
        calibration_end=calibration_end, observation_end=end, time_unit="D",
    )
    checked = _fit_pair(split, annual_discount_rate)
    tracking = cumulative_repeat_transactions(
        checked.transactions, orders, customer="person_id", timestamp="day",
        calibration_end=calibration_end, observation_end=end, time_unit="W",
    )
    by_frequency = holdout_by_frequency(checked.transactions, split)
    summary = summary_from_transactions(
        orders, customer="person_id", timestamp="day", amount="value", observation_end=end, time_unit="D"
    )
    final = _fit_pair(summary, annual_discount_rate)
    metrics = _holdout_metrics(checked, split, holdout_days) | {
        "r": final.transactions.r_, "alpha": final.transactions.alpha_,
        "a": final.transactions.a_, "b": final.transactions.b_,
        "log_likelihood": final.transactions.log_likelihood_,
        "p": final.spend.p_, "q": final.spend.q_, "gamma": final.spend.v_,
        "customers": len(summary),
    }
    values = final.score(summary)
    metrics["headline"] = (
        f"holdout repeat purchases predicted {metrics['holdout_predicted']:.0f} vs actual {metrics['holdout_actual']:.0f} "
        f"({metrics['holdout_error']:+.1%}); mean CLV 365d {values['clv_365d'].mean():.2f}"
    )
    return TrainedLifetimeValue(model=final, metrics=metrics, tracking=tracking, by_frequency=by_frequency, values=values)


def spend_inputs(summary: pd.DataFrame) -> pd.DataFrame:
    """Gamma-Gamma inputs: repeat buyers whose repeat spend was refunded to nothing count as no spend history."""
    money = summary[["frequency", "recency", "T", "monetary_value"]].copy()
    voided = money["monetary_value"] <= 0
    money.loc[voided, ["frequency", "recency"]] = 0.0
    money.loc[voided, "monetary_value"] = 0.0
    return money


def _fit_pair(summary: pd.DataFrame, annual_discount_rate: float) -> LifetimeValue:
    repeaters = int((summary["frequency"] > 0).sum())
    if len(summary) < MIN_CUSTOMERS or repeaters < MIN_REPEAT_BUYERS:
        raise ValidationError(
            "orders",
            f"{len(summary)} customers and {repeaters} repeat buyers are too few to fit CLV models; "
            f"need at least {MIN_CUSTOMERS} and {MIN_REPEAT_BUYERS}",
        )
    transactions = BetaGeo().fit(summary)
    money = spend_inputs(summary)
    spend = GammaGamma().fit(money[money["frequency"] > 0])
    return LifetimeValue(transactions=transactions, spend=spend, annual_discount_rate=annual_discount_rate)


def _holdout_metrics(checked: LifetimeValue, split: pd.DataFrame, holdout_days: int) -> dict[str, Any]:
    predicted = checked.transactions.conditional_expected_purchases(holdout_days, split)
    actual = split["frequency_holdout"].to_numpy()
    naive = split["frequency"].to_numpy() / np.maximum(split["T"].to_numpy(), 1.0) * holdout_days
    spenders = (split["frequency_holdout"] > 0) & (split["monetary_value_holdout"] > 0)
    money = spend_inputs(split)[spenders]
    expected_spend = checked.spend.conditional_expected_average_profit(money)
    observed_spend = split.loc[spenders, "monetary_value_holdout"].to_numpy()
    return {
        "holdout_days": holdout_days,
        "holdout_customers": len(split),
        "holdout_actual": float(actual.sum()),
        "holdout_predicted": float(predicted.sum()),
        "holdout_error": float(predicted.sum() / actual.sum() - 1.0) if actual.sum() else float("nan"),
        "holdout_mae": float(np.abs(predicted - actual).mean()),
        "holdout_mae_naive_rate": float(np.abs(naive - actual).mean()),
        "holdout_spend_mae": float(np.abs(expected_spend - observed_spend).mean()) if len(money) else float("nan"),
        "holdout_spend_mae_population_mean": float(np.abs(_calibration_mean_spend(split) - observed_spend).mean())
        if len(money)
        else float("nan"),
    }


def _calibration_mean_spend(split: pd.DataFrame) -> float:
    """The naive spend forecast: every repeat buyer's mean spend in the calibration period."""
    repeat = split[(split["frequency"] > 0) & (split["monetary_value"] > 0)]
    return float(repeat["monetary_value"].mean())


def _check_orders(orders: pd.DataFrame) -> None:
    if orders.empty:
        raise ValidationError("orders", "there are no orders to fit CLV models on")
    values = orders["value"].to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        raise ValidationError("orders.net_revenue", "contains non-finite values")
