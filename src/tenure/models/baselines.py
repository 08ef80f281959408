"""What a model must beat: logistic regression on RFM, and the BG/NBD probability of buying.

Both are reported next to the gradient-boosted model in every evaluation, so a gain is a
gain over what a careful analyst would do with the classic tools, not over a coin.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from tenure.models.bgnbd import BetaGeo

RFM_INPUTS: tuple[str, ...] = ("recency", "frequency", "monetary", "has_ordered")


def rfm_inputs(features: pd.DataFrame) -> pd.DataFrame:
    """Recency (days since the last order, or since last seen for non-buyers), frequency, monetary."""
    ordered = features["orders"].to_numpy() > 0
    recency = np.where(ordered, features["recency_days"], features["days_since_last_seen"])
    return pd.DataFrame(
        {
            "recency": np.log1p(np.clip(recency.astype(np.float64), 0.0, None)),
            "frequency": np.log1p(features["orders"].to_numpy(dtype=np.float64)),
            "monetary": np.log1p(np.clip(features["revenue"].to_numpy(dtype=np.float64), 0.0, None)),
            "has_ordered": ordered.astype(np.float64),
        },
        index=features.index,
    )


def rfm_logistic() -> Pipeline:
    """Logistic regression on log-scaled, standardised R, F and M."""
    return make_pipeline(FunctionTransformer(rfm_inputs), StandardScaler(), LogisticRegression(max_iter=1000))


def bgnbd_summary(features: pd.DataFrame) -> pd.DataFrame:
    """BG/NBD inputs in days from the person features: repeat orders, their span, and age."""
    return pd.DataFrame(
        {
            "frequency": (features["orders"] - 1).clip(lower=0).astype(np.float64),
            "recency": (features["days_since_first_order"] - features["recency_days"]).clip(lower=0.0),
            "T": features["days_since_first_order"].astype(np.float64),
        },
        index=features.index,
    )


class BuyTillYouDieBaseline:
    """P(at least one order in the horizon) from a BG/NBD fitted on the customers at the cutoff.

    People without an order have no BG/NBD history; they get the rate at which such people
    ordered in the training data, which is the best a model blind to them can say.
    """

    def __init__(self, horizon_days: int) -> None:
        self.horizon_days = horizon_days

    def fit(self, features: pd.DataFrame, ordered_in_horizon: NDArray[np.int64]) -> BuyTillYouDieBaseline:
        customers = features["orders"].to_numpy() > 0
        self.model_ = BetaGeo().fit(bgnbd_summary(features[customers]))
        strangers = ordered_in_horizon[~customers]
        self.stranger_rate_ = float(strangers.mean()) if len(strangers) else 0.0
        return self

    def p_order(self, features: pd.DataFrame) -> NDArray[np.float64]:
        customers = features["orders"].to_numpy() > 0
        out = np.full(len(features), self.stranger_rate_)
        if customers.any():
            summary = bgnbd_summary(features[customers])
            out[customers] = np.asarray(self.model_.p_purchase_within(self.horizon_days, summary), dtype=np.float64)
        return out
