"""The model report's charts, as matplotlib ``Figure`` objects (Agg, no pyplot state).

Outcome charts take a backtest's predictions (``label`` and one probability column per model)
and draw every requested model on the same axes, so the model is always seen next to its
baselines. A model with missing probabilities (the oracle does not know everyone) is drawn on
the people it scores.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from numpy.typing import NDArray

from tenure.errors import ValidationError
from tenure.models.metrics import TOP_SHARE, calibration_points, capture_at, gains_curve, roc_points

LABELS = {
    "gradient_boosting": "Gradient boosting (this model)",
    "rfm_logistic": "RFM logistic (baseline)",
    "bgnbd": "BG/NBD (baseline)",
    "oracle": "Oracle (generator's truth)",
}
STYLES = {"gradient_boosting": "-", "rfm_logistic": "--", "bgnbd": "-.", "oracle": ":"}
IMPORTANCE_TOP = 15


def roc_chart(predictions: pd.DataFrame, models: Sequence[str]) -> Figure:
    """True against false positive rate per model, with the diagonal of a random guess."""
    figure, axes = _figure()
    for name in models:
        points = roc_points(*_scored(predictions, name))
        axes.plot(points["false_positive_rate"], points["true_positive_rate"], linestyle=STYLES.get(name, "-"),
                  label=LABELS.get(name, name))
    _diagonal(axes, "random guess")
    axes.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC curve", xlim=(0, 1), ylim=(0, 1))
    axes.legend(loc="lower right")
    return figure


def calibration_chart(predictions: pd.DataFrame, models: Sequence[str], *, bins: int = 10) -> Figure:
    """Observed rate against mean predicted probability in equal-count bins, with the diagonal."""
    figure, axes = _figure()
    for name in models:
        points = calibration_points(*_scored(predictions, name), bins=bins)
        axes.plot(points["predicted"], points["observed"], marker="o", linestyle=STYLES.get(name, "-"),
                  label=LABELS.get(name, name))
    _diagonal(axes, "perfect calibration")
    axes.set(xlabel="predicted probability", ylabel="observed rate", title="Calibration", xlim=(0, 1), ylim=(0, 1))
    axes.legend(loc="upper left")
    return figure


def gains_chart(predictions: pd.DataFrame, models: Sequence[str], *, top: float = TOP_SHARE) -> Figure:
    """Cumulative share of positives captured against share of people targeted, marked at ``top``."""
    figure, axes = _figure()
    for name in models:
        labels, scores = _scored(predictions, name)
        gains = gains_curve(labels, scores)
        line = axes.plot(np.r_[0.0, gains["share_targeted"]], np.r_[0.0, gains["share_captured"]],
                         linestyle=STYLES.get(name, "-"), label=LABELS.get(name, name))[0]
        axes.plot([top], [capture_at(labels, scores, top)], marker="o", color=line.get_color())
    _diagonal(axes, "random targeting")
    axes.axvline(top, color="grey", linewidth=1, linestyle=":")
    axes.annotate(f"top {top:.0%}", (top, 0.02), xytext=(4, 0), textcoords="offset points", color="grey")
    axes.set(xlabel="share of people targeted (highest scores first)", ylabel="share of all positives captured",
             title="Cumulative gains (lift)", xlim=(0, 1), ylim=(0, 1))
    axes.legend(loc="lower right")
    return figure


def importance_chart(importance: pd.DataFrame, *, top: int = IMPORTANCE_TOP) -> Figure:
    """The ``top`` features by share of split gain, largest at the top."""
    shown = importance.sort_values("gain_share", ascending=False).head(top)
    figure = Figure(figsize=(7, 0.3 * len(shown) + 1.2), layout="constrained")
    axes = figure.subplots()
    axes.barh(np.arange(len(shown)), shown["gain_share"].to_numpy(), color="tab:blue")
    axes.set_yticks(np.arange(len(shown)), shown["feature"].astype(str).tolist())
    axes.invert_yaxis()
    axes.set(xlabel="share of total split gain", title=f"Feature importance (top {len(shown)})")
    return figure


def clv_distribution_chart(clv: pd.Series) -> Figure:
    """Histogram of CLV, clipped at the 99th percentile: the top 1 % land in the last bar."""
    values = clv.to_numpy(dtype=np.float64)
    if len(values) == 0 or not np.isfinite(values).all():
        raise ValidationError("clv", "needs at least one value, all finite")
    ceiling = float(np.percentile(values, 99))
    figure, axes = _figure()
    axes.hist(np.minimum(values, ceiling), bins=40, color="tab:green")
    axes.axvline(float(np.median(values)), color="black", linestyle="--", linewidth=1, label="median")
    axes.set(xlabel=f"CLV (values above the 99th percentile, {ceiling:,.0f}, in the last bar)", ylabel="customers",
             title="Customer lifetime value distribution")
    axes.legend()
    return figure


def ranking_chart(evaluation: pd.DataFrame, *, metric: str = "ndcg", k: int = 10) -> Figure:
    """One bar per algorithm and window (validation, test), best first: how far each is above popularity."""
    figure, axes = _figure()
    order = evaluation[evaluation["window"] == "test"].sort_values(metric)["algorithm"].tolist()
    positions = np.arange(len(order))
    for offset, window in ((-0.2, "validation"), (0.2, "test")):
        values = evaluation[evaluation["window"] == window].set_index("algorithm")[metric].reindex(order)
        axes.barh(positions + offset, values.to_numpy(dtype=np.float64), height=0.4, label=f"{window} window")
    axes.set_yticks(positions, order)
    axes.set_xlabel(f"{metric.upper()}@{k}")
    axes.legend(loc="lower right")
    return figure


def png(figure: Figure) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


def _figure() -> tuple[Figure, Axes]:
    figure = Figure(figsize=(6, 4.5), layout="constrained")
    axes: Axes = figure.subplots()
    return figure, axes


def _diagonal(axes: Axes, label: str) -> None:
    axes.plot([0, 1], [0, 1], color="grey", linewidth=1, label=label)


def _scored(predictions: pd.DataFrame, name: str) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Labels and probabilities of the people ``name`` scores."""
    if name not in predictions.columns:
        raise ValidationError("models", f"the predictions have no column {name!r}")
    scores = predictions[name].to_numpy(dtype=np.float64)
    known = ~np.isnan(scores)
    return predictions["label"].to_numpy()[known].astype(np.int64), scores[known]
