"""Metrics against brute-force references, and the outcome classifier on data drawn from a known
probability: calibrated, ranking close to the truth, reasons that add up, and clear errors."""

from __future__ import annotations

import itertools
from fractions import Fraction
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone

from tenure.errors import NotFittedError, ValidationError
from tenure.models.classifier import OutcomeClassifier
from tenure.models.metrics import binary_metrics, calibration_points, capture_at, gains_curve, roc_points

LEVELS = np.array(["a", "b", "c", "d"], dtype=object)
LEVEL_EFFECT = {"a": -1.0, "b": 0.0, "c": 0.5, "d": 1.0}

# --- metrics ---------------------------------------------------------------------------------------


def two_classes(draw: st.DrawFn, max_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels with both classes and scores on a coarse grid, so that ties are common."""
    n = draw(st.integers(2, max_size))
    labels = draw(st.lists(st.sampled_from([0, 1]), min_size=n, max_size=n).filter(lambda y: 0 < sum(y) < n))
    scores = draw(st.lists(st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.9, 1.0]), min_size=n, max_size=n))
    return np.array(labels), np.array(scores)


@st.composite
def scored(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    return two_classes(draw, 40)


@st.composite
def small_scored(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    return two_classes(draw, 7)


def pairwise_auc(y: np.ndarray, p: np.ndarray) -> float:
    """P(a random positive outscores a random negative), ties counting one half."""
    pos, neg = p[y == 1], p[y == 0]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


def average_precision(y: np.ndarray, p: np.ndarray) -> float:
    """Sum over distinct thresholds, highest first, of (recall gained) x (precision at the threshold)."""
    total, previous_recall = 0.0, 0.0
    for threshold in sorted(set(p), reverse=True):
        chosen = p >= threshold
        recall = y[chosen].sum() / y.sum()
        total += (recall - previous_recall) * y[chosen].mean()
        previous_recall = recall
    return total


def expected_capture(y: np.ndarray, p: np.ndarray, share: float) -> float:
    """Mean share of positives in the top k over every order of the rows (uniform tie-breaking)."""
    k = -(-Fraction(str(share)) * len(y) // 1)  # exact ceil(share * n)
    hits = [y[sorted(order, key=lambda i: -p[i])[:k]].sum() for order in itertools.permutations(range(len(y)))]
    return float(np.mean(hits) / y.sum())


@settings(max_examples=200, deadline=None)
@given(data=scored())
def test_binary_metrics_match_plain_references(data: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = data
    got = binary_metrics(y, p)
    assert got["roc_auc"] == pytest.approx(pairwise_auc(y, p), abs=1e-12)
    assert got["pr_auc"] == pytest.approx(average_precision(y, p), abs=1e-12)
    assert got["brier"] == pytest.approx(float(np.mean((y - p) ** 2)), abs=1e-12)
    assert got["base_rate"] == pytest.approx(y.mean()) and got["examples"] == len(y)
    assert got["lift_top"] == pytest.approx(got["capture_top"] / 0.1)


@settings(max_examples=150, deadline=None)
@given(data=small_scored(), share=st.sampled_from([0.07, 0.1, 0.3, 0.5, 0.6, 1.0]))
def test_capture_is_the_expected_top_k_over_random_tie_breaking(data: tuple[np.ndarray, np.ndarray],
                                                                share: float) -> None:
    y, p = data
    assert capture_at(y, p, share) == pytest.approx(expected_capture(y, p, share), abs=1e-12)
    assert binary_metrics(y, p, top=share)["lift_top"] == pytest.approx(expected_capture(y, p, share) / share)


def test_capture_counts_exactly_the_top_share_of_rows() -> None:
    """7 % of 100 rows is 7 rows, although ``0.07 * 100`` is 7.000000000000001 in floating point."""
    y = np.r_[np.ones(7), 0, np.zeros(92)].astype(int)
    y[7] = 1
    p = np.linspace(1, 0, 100)
    assert capture_at(y, p, 0.07) == pytest.approx(7 / 8)
    for share in (0.0, 1.5):
        with pytest.raises(ValidationError) as caught:
            binary_metrics(y, p, top=share)
        assert caught.value.field == "top"


@settings(max_examples=50, deadline=None)
@given(data=scored(), points=st.integers(1, 30))
def test_gains_curve_rises_to_everything(data: tuple[np.ndarray, np.ndarray], points: int) -> None:
    y, p = data
    gains = gains_curve(y, p, points=points)
    assert len(gains) == points and gains.share_targeted.iloc[-1] == pytest.approx(1.0)
    assert np.all(np.diff(gains.share_captured) >= -1e-12) and gains.share_captured.iloc[-1] == pytest.approx(1.0)
    assert np.allclose(gains.lift, gains.share_captured / gains.share_targeted)
    roc = roc_points(y, p)
    assert (roc.iloc[-1].tolist() == [1.0, 1.0]) and np.all(np.diff(roc.true_positive_rate) >= 0)


def test_calibration_points_are_bin_means() -> None:
    p = np.repeat([0.1, 0.4, 0.8], 4)
    y = np.array([0, 0, 0, 1, 0, 1, 0, 1, 1, 1, 1, 0])
    frame = calibration_points(y, p, bins=3)
    assert frame.predicted.tolist() == pytest.approx([0.1, 0.4, 0.8])
    assert frame.observed.tolist() == pytest.approx([0.25, 0.5, 0.75])


@pytest.mark.parametrize(("y", "p", "field"), [
    ([0, 1, 1], [0.1, float("nan"), 0.3], "scores"),
    ([0, 1, 1], [0.1, float("inf"), 0.3], "scores"),
    ([1, 1, 1], [0.1, 0.2, 0.3], "label"),
    ([0, 1, 1], [0.1, 0.2], "scores"),
    ([0, 1, 2], [0.1, 0.2, 0.3], "label"),
])
def test_metrics_reject_bad_input(y: list[int], p: list[float], field: str) -> None:
    for metric in (binary_metrics, gains_curve, roc_points, calibration_points):
        with pytest.raises(ValidationError) as caught:
            metric(y, p)
        assert caught.value.field == field


# --- the classifier ----------------------------------------------------------------------------------


def true_probability(X: pd.DataFrame, shift: float) -> np.ndarray:
    """Non-linear in x1 and x2, a level effect, x3 irrelevant; a missing x2 counts as x2 = 0."""
    x2 = X["x2"].fillna(0.0).to_numpy()
    logit = shift + 1.5 * np.sin(2 * X["x1"].to_numpy()) + 0.8 * x2**2 - 1 + X["cat"].map(LEVEL_EFFECT).to_numpy()
    return 1 / (1 + np.exp(-logit))


def draw(n: int, seed: int, shift: float = 0.0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x2 = rng.normal(size=n)
    x2[rng.uniform(size=n) < 0.1] = np.nan
    X = pd.DataFrame({"x1": rng.normal(size=n), "x2": x2, "x3": rng.uniform(size=n), "cat": rng.choice(LEVELS, n)})
    p = true_probability(X, shift)
    return X, (rng.uniform(size=n) < p).astype(np.int64), p


@pytest.fixture(scope="module")
def fitted() -> OutcomeClassifier:
    X, y, _ = draw(10_000, seed=1)
    return OutcomeClassifier().fit(X, y)


@pytest.fixture(scope="module")
def fresh() -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    return draw(20_000, seed=2)


def test_calibrated_probabilities_are_close_to_the_truth(fitted: OutcomeClassifier,
                                                         fresh: tuple[pd.DataFrame, np.ndarray, np.ndarray]) -> None:
    X, y, truth = fresh
    q = fitted.predict_proba(X)[:, 1]
    assert np.abs(q - truth).mean() < 0.075  # measured 0.062
    assert abs(q.mean() - truth.mean()) < 0.01
    truth_auc = binary_metrics(y, truth)["roc_auc"]
    assert abs(binary_metrics(y, q)["roc_auc"] - truth_auc) < 0.03  # measured 0.810 against 0.827
    assert np.array_equal(fitted.predict(X), (q >= 0.5).astype(int)) and fitted.classes_.tolist() == [0, 1]


def test_calibration_repairs_an_over_confident_booster_on_small_imbalanced_data() -> None:
    X, y, _ = draw(600, seed=5, shift=-2.0)  # about 18 % positives
    model = OutcomeClassifier().fit(X, y)
    test, _, truth = draw(20_000, seed=6, shift=-2.0)
    calibrated = model.predict_proba(test)[:, 1]
    raw = model.booster_.predict_proba(model._encode(test))[:, 1]
    assert np.abs(calibrated - truth).mean() < np.abs(raw - truth).mean() - 0.01  # measured 0.106 against 0.127


def test_reasons_add_up_to_the_margin_and_name_the_driver(fitted: OutcomeClassifier,
                                                         fresh: tuple[pd.DataFrame, np.ndarray, np.ndarray]) -> None:
    X = fresh[0].head(500)
    reasons = fitted.reasons(X, top=4)
    contrib = np.asarray(fitted.booster_.predict(fitted._encode(X), pred_contrib=True))
    margin = fitted.booster_.predict(fitted._encode(X), raw_score=True)
    values = reasons[[f"contribution_{k}" for k in range(1, 5)]].to_numpy()
    assert np.allclose(values.sum(axis=1) + contrib[:, -1], margin)
    names = list(fitted.feature_names_in_)
    for k in range(1, 5):
        column = [names.index(f) for f in reasons[f"feature_{k}"]]
        assert np.allclose(reasons[f"contribution_{k}"], contrib[np.arange(len(X)), column])
    assert np.all(np.abs(values[:, :-1]) >= np.abs(values[:, 1:]))
    # Rows that differ only in x1, from a peak of sin(2 x1) to a trough: x1 moves the margin most.
    base = pd.DataFrame({"x1": np.linspace(-np.pi / 4, np.pi / 4, 21), "x2": 0.0, "x3": 0.5, "cat": "b"})
    top = fitted.reasons(base, top=1)
    extreme = np.abs(base.x1) > 0.5
    assert (top.feature_1[extreme] == "x1").all()
    assert fitted.importance().feature.iloc[-1] == "x3"  # the irrelevant feature gains least


def test_unseen_level_is_treated_as_missing(fitted: OutcomeClassifier) -> None:
    rows = pd.DataFrame({"x1": [0.3, -1.0], "x2": [1.0, np.nan], "x3": [0.2, 0.9], "cat": ["new-level", "zzz"]})
    missing = rows.assign(cat=[None, np.nan])
    assert np.array_equal(fitted.predict_proba(rows), fitted.predict_proba(missing))
    assert fitted.reasons(rows).shape == (2, 6)


def test_fit_rejects_bad_training_data() -> None:
    X, y, _ = draw(200, seed=3)
    cases: list[tuple[pd.DataFrame, Any, str, str]] = [
        (X, np.zeros(200, dtype=int), "label", "both outcomes"),
        (X.head(40), y[:40], "examples", "too few"),
        (X, np.r_[np.ones(9), np.zeros(191)].astype(int), "label", "only 9"),
        (X, y[:-1], "label", "one value per row"),
        (X, np.where(y == 1, 2, 0), "label", "0 or 1"),
        (X.assign(x1=X.x1.where(X.index != 7, np.inf)), y, "features.x1", "infinite"),
    ]
    for data, labels, field, reason in cases:
        with pytest.raises(ValidationError, match=reason) as caught:
            OutcomeClassifier(n_estimators=5).fit(data, labels)
        assert caught.value.field == field


def test_predict_rejects_bad_input(fitted: OutcomeClassifier) -> None:
    X, _, _ = draw(10, seed=4)
    with pytest.raises(ValidationError, match="x2") as caught:
        fitted.predict_proba(X.drop(columns="x2"))
    assert caught.value.field == "features"
    with pytest.raises(ValidationError) as caught:
        fitted.reasons(X.assign(x1=-np.inf))
    assert caught.value.field == "features.x1"
    with pytest.raises(ValidationError, match="'oops'") as caught:  # numeric in training: a string is an error
        fitted.predict_proba(X.assign(x3=X.x3.astype(object).where(X.index != 3, "oops")))
    assert caught.value.field == "features.x3"
    for use in (lambda m: m.predict_proba(X), lambda m: m.reasons(X), lambda m: m.importance()):
        with pytest.raises(NotFittedError):
            use(OutcomeClassifier())


def test_scikit_learn_conventions(fitted: OutcomeClassifier) -> None:
    params: dict[str, Any] = {"n_estimators": 7, "learning_rate": 0.2, "num_leaves": 5, "min_child_samples": 3,
              "calibration": "sigmoid", "folds": 2, "rows_per_tree": 1000, "n_jobs": 1, "random_state": 9}
    model = OutcomeClassifier(**params)
    assert model.get_params() == params
    copy = clone(fitted)
    assert copy.get_params() == fitted.get_params() and not hasattr(copy, "booster_")
    assert clone(model).set_params(folds=4).get_params() == params | {"folds": 4}
    X, y, _ = draw(300, seed=8)
    assert model.fit(X, y) is model and model.get_params() == params
    with pytest.raises(TypeError):
        OutcomeClassifier(300)  # type: ignore[call-arg]  # hyperparameters are keyword-only


def test_big_training_sets_grow_each_tree_on_a_sample() -> None:
    X, y, _ = draw(300, seed=8)
    sampled = OutcomeClassifier(n_estimators=5, rows_per_tree=100).fit(X, y).booster_.get_params()
    assert sampled["subsample"] == pytest.approx(100 / 300) and sampled["subsample_freq"] == 1
    assert sampled["n_jobs"] == 1  # automatic threads: one on small data
    whole = OutcomeClassifier(n_estimators=5).fit(X, y).booster_.get_params()
    assert whole["subsample"] == 1.0 and whole["subsample_freq"] == 0
