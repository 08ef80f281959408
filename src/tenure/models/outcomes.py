"""Training and backtesting an outcome model (churn or propensity) on point-in-time examples.

Examples come from several cutoffs. The backtest is time-based and leak-free: a model tested
at cutoff ``c`` is trained only on cutoffs whose whole outcome window ended by ``c``
(``c' + H <= c``), as it would have been in production. The baselines are fitted on the
same data, and the generator's oracle (when there is one) is scored on the same people.
The model kept for scoring is then refitted on every cutoff.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from tenure.errors import TenureError, ValidationError
from tenure.models.baselines import BuyTillYouDieBaseline, rfm_logistic
from tenure.models.classifier import OutcomeClassifier
from tenure.models.dataset import FEATURES, Outcome
from tenure.models.metrics import binary_metrics

log = logging.getLogger(__name__)

MODEL = "gradient_boosting"
RFM_LOGISTIC = "rfm_logistic"
BGNBD = "bgnbd"
ORACLE = "oracle"


@dataclass(frozen=True, slots=True)
class Backtest:
    """Scores at one cutoff of models trained strictly before it."""

    cutoff: datetime
    train_cutoffs: list[datetime]
    metrics: dict[str, dict[str, float]]
    predictions: pd.DataFrame  # person_id, label, and one probability column per model


@dataclass(slots=True)
class TrainedOutcome:
    """The model to score with, and the evidence for trusting it."""

    outcome: Outcome
    classifier: OutcomeClassifier
    cutoffs: list[datetime]
    backtests: list[Backtest]
    importance: pd.DataFrame
    summary: dict[str, object] = field(default_factory=dict)

    @property
    def headline(self) -> Backtest:
        """The backtest at the latest cutoff: the closest to how the model will be used."""
        return self.backtests[0]


def train_outcome(
    frames: Mapping[datetime, pd.DataFrame],
    outcome: Outcome,
    *,
    oracle: pd.DataFrame | None = None,
    classifier: OutcomeClassifier | None = None,
) -> TrainedOutcome:
    """Backtest at every cutoff that has earlier complete windows, then refit on all cutoffs.

    ``frames`` maps each cutoff to its examples (``person_id``, the features, ``label``);
    ``oracle`` (``person_id``, ``p_order``) is the generator's truth at the latest cutoff.
    """
    cutoffs = sorted(frames, reverse=True)
    template = classifier or OutcomeClassifier()
    backtests = []
    for position, cutoff in enumerate(cutoffs):
        earlier = [c for c in cutoffs if c + outcome.horizon <= cutoff]
        if not earlier:
            continue
        backtests.append(
            _backtest(frames, outcome, cutoff, earlier, template, oracle if position == 0 else None)
        )
    if not backtests:
        raise ValidationError(
            "cutoffs",
            f"no cutoff has an earlier one whose {outcome.horizon_days}-day window had ended; "
            "a backtest needs a longer history or more cutoffs",
        )
    everything = _stack(frames, cutoffs)
    final = _clone(template).fit(everything[list(FEATURES)], everything["label"], groups=everything["cutoff"])
    return TrainedOutcome(
        outcome=outcome,
        classifier=final,
        cutoffs=cutoffs,
        backtests=backtests,
        importance=final.importance(),
        summary={"examples": len(everything), "positive_rate": float(everything["label"].mean())},
    )


def _backtest(
    frames: Mapping[datetime, pd.DataFrame],
    outcome: Outcome,
    cutoff: datetime,
    earlier: list[datetime],
    template: OutcomeClassifier,
    oracle: pd.DataFrame | None,
) -> Backtest:
    train = _stack(frames, earlier)
    test = frames[cutoff].reset_index(drop=True)
    _check_population(test, cutoff)
    model = _clone(template).fit(train[list(FEATURES)], train["label"], groups=train["cutoff"])
    rfm = rfm_logistic().fit(train, train["label"])
    predictions = pd.DataFrame(
        {
            "person_id": test["person_id"],
            "label": test["label"].to_numpy(),
            MODEL: model.predict_proba(test[list(FEATURES)])[:, 1],
            RFM_LOGISTIC: rfm.predict_proba(test)[:, 1],
        }
    )
    p_order = _bgnbd_baseline(frames[max(earlier)], test, outcome)
    if p_order is not None:
        predictions[BGNBD] = _to_target(p_order, outcome)
    labels = predictions["label"].to_numpy()
    compared = [name for name in (MODEL, RFM_LOGISTIC, BGNBD) if name in predictions]
    metrics = {name: binary_metrics(labels, predictions[name]) for name in compared}
    if oracle is not None:
        truth = predictions[["person_id", "label"]].merge(oracle[["person_id", "p_order"]], on="person_id", how="left")
        known = truth["p_order"].notna().to_numpy()
        predictions[ORACLE] = _to_target(truth["p_order"].to_numpy(), outcome)
        if known.any() and len(np.unique(labels[known])) == 2:
            metrics[ORACLE] = binary_metrics(labels[known], predictions[ORACLE][known])
            metrics[ORACLE]["coverage"] = float(known.mean())
    return Backtest(cutoff=cutoff, train_cutoffs=sorted(earlier), metrics=metrics, predictions=predictions)


def _bgnbd_baseline(latest_train: pd.DataFrame, test: pd.DataFrame, outcome: Outcome) -> np.ndarray | None:
    """BG/NBD's P(order in the horizon) for the test people, or None when it cannot be fitted.

    A baseline that cannot be fitted (too few repeat buyers at an early cutoff) is left out of
    the comparison rather than stopping the training of the model it is compared with.
    """
    ordered = _ordered(latest_train["label"].to_numpy(), outcome)
    try:
        return BuyTillYouDieBaseline(outcome.horizon_days).fit(latest_train, ordered).p_order(test)
    except TenureError as exc:
        log.warning("BG/NBD baseline left out at this cutoff: %s", exc)
        return None


def _ordered(labels: np.ndarray, outcome: Outcome) -> np.ndarray:
    """Whether each person ordered in the horizon, from the label (churn = did not)."""
    return 1 - labels if outcome.target == "churn" else labels


def _to_target(p_order: np.ndarray, outcome: Outcome) -> np.ndarray:
    return 1.0 - p_order if outcome.target == "churn" else p_order


def _stack(frames: Mapping[datetime, pd.DataFrame], cutoffs: list[datetime]) -> pd.DataFrame:
    return pd.concat([frames[c].assign(cutoff=c) for c in cutoffs], ignore_index=True)


def _check_population(frame: pd.DataFrame, cutoff: datetime) -> None:
    if frame["label"].nunique() < 2:
        raise ValidationError(
            "label", f"at the cutoff {cutoff:%Y-%m-%d} every person has the same outcome; nothing to evaluate"
        )


def _clone(template: OutcomeClassifier) -> OutcomeClassifier:
    return OutcomeClassifier(**template.get_params())
