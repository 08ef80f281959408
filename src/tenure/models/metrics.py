"""How good a probability is: ranking (ROC-AUC, PR-AUC), calibration (Brier) and targeting (lift).

A lifecycle team acts on the top of a list (the 10 % most at risk get the win-back offer), so
lift and capture at that depth are reported next to the global scores.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.calibration import calibration_curve
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score, roc_curve

from tenure.errors import ValidationError

TOP_SHARE = 0.10


def binary_metrics(y: Any, p: Any, *, top: float = TOP_SHARE) -> dict[str, float]:
    """ROC-AUC, PR-AUC (average precision), Brier score, base rate, and lift/capture in the top share."""
    labels, scores = _check(y, p)
    captured = capture_at(labels, scores, top)
    return {
        "roc_auc": float(roc_auc_score(labels, scores)),
        "pr_auc": float(average_precision_score(labels, scores)),
        "brier": float(brier_score_loss(labels, scores)),
        "base_rate": float(labels.mean()),
        "capture_top": captured,
        "lift_top": captured / top,
        "examples": float(len(labels)),
    }


def capture_at(labels: NDArray[np.int64], scores: NDArray[np.float64], share: float) -> float:
    """Share of all positives among the ``ceil(share * n)`` highest scores.

    Ties at the boundary are shared pro rata, so the result does not depend on row order.
    """
    if not 0 < share <= 1:
        raise ValidationError("top", f"must be a share in (0, 1], not {share!r}")
    n = len(labels)
    k = math.ceil(round(share * n, 9))  # 0.07 * 100 is 7.000000000000001: still 7 rows
    positives = labels.sum()
    if positives == 0:
        return 0.0
    threshold = np.sort(scores)[::-1][k - 1]
    above = scores > threshold
    tied = scores == threshold
    room = k - above.sum()
    hits = labels[above].sum() + room * labels[tied].mean()
    return float(hits / positives)


def gains_curve(y: Any, p: Any, *, points: int = 20) -> pd.DataFrame:
    """Cumulative share of positives captured against share of people targeted (for the lift chart)."""
    labels, scores = _check(y, p)
    shares = np.linspace(1 / points, 1.0, points)
    captured = [capture_at(labels, scores, s) for s in shares]
    return pd.DataFrame({"share_targeted": shares, "share_captured": captured, "lift": np.array(captured) / shares})


def roc_points(y: Any, p: Any) -> pd.DataFrame:
    labels, scores = _check(y, p)
    fpr, tpr, _ = roc_curve(labels, scores)
    return pd.DataFrame({"false_positive_rate": fpr, "true_positive_rate": tpr})


def calibration_points(y: Any, p: Any, *, bins: int = 10) -> pd.DataFrame:
    """Observed rate against mean predicted probability, in equal-count bins."""
    labels, scores = _check(y, p)
    observed, predicted = calibration_curve(labels, scores, n_bins=bins, strategy="quantile")
    return pd.DataFrame({"predicted": predicted, "observed": observed})


def _check(y: Any, p: Any) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    labels = np.asarray(y)
    scores = np.asarray(p, dtype=np.float64)
    if labels.shape != scores.shape or labels.ndim != 1:
        raise ValidationError("scores", f"need one score per label, got {scores.shape} for {labels.shape}")
    if not np.isfinite(scores).all():
        raise ValidationError("scores", "contain missing or non-finite values")
    if not np.isin(labels, (0, 1)).all():
        raise ValidationError("label", "must be 0 or 1")
    labels = labels.astype(np.int64)
    if labels.min() == labels.max():
        raise ValidationError("label", f"every example has label {labels[0]}; ranking metrics need both outcomes")
    return labels, scores
