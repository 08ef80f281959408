"""Hybrid: a weighted blend of other recommenders, with the weights chosen on a validation split.

Scores of different models live on different scales (ALS dot products, summed cosines,
popularity counts), so each component's scores are rescaled per person to [0, 1] before
blending. ``fit`` withholds one random item from each person with at least two, fits the
components on the rest, and tries every weight vector on a grid over the simplex (steps of
``grid_step``); the weights whose blend ranks the withheld items best (mean NDCG@``k``, ties
ranked at their average position) win. The components are then refitted on everything.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.base import clone

from tenure.errors import ValidationError
from tenure.models.recommenders import FloatArray, IntArray, Recommender, row_minmax


class Hybrid(Recommender):
    """Blend of recommenders' per-person min-max scores, weighted as chosen on validation.

    Parameters
    ----------
    components : sequence of Recommender
        Unfitted models to blend (cloned, never modified).
    grid_step : float
        Spacing of the weight grid; ``1 / grid_step`` must be an integer.
    k : int
        Cut-off of the NDCG used to choose the weights.
    validation_people : int
        At most this many people are used to choose the weights (sampled).
    random_state : int
        Seed of the split and the sample.

    Attributes
    ----------
    weights_ : ndarray [components]
        Chosen weights (sum to 1), in the order of ``components``.
    validation_ndcg_ : float
        Mean NDCG@k of the chosen blend on the withheld items.
    components_ : list of Recommender
        The components refitted on all interactions.
    """

    def __init__(
        self,
        *,
        components: Sequence[Recommender] = (),
        grid_step: float = 0.25,
        k: int = 10,
        validation_people: int = 2000,
        random_state: int = 0,
    ) -> None:
        self.components = components
        self.grid_step = grid_step
        self.k = k
        self.validation_people = validation_people
        self.random_state = random_state

    def _fit(self, interactions: sparse.csr_matrix, item_features: pd.DataFrame | None) -> None:
        if len(self.components) < 1:
            raise ValidationError("components", "at least one recommender is needed")
        grid = _simplex(len(self.components), self.grid_step)
        rng = np.random.default_rng(self.random_state)
        train, people, held = _withhold_one(interactions, rng, self.validation_people)
        if len(people) == 0:
            raise ValidationError("interactions", "no person has two items to withhold one for validation")
        seen = train[people].nonzero()
        scores = [
            row_minmax(_fit(component, train, item_features)._person_scores(train[people]))
            for component in self.components
        ]
        ndcg = np.array([_withheld_ndcg(_blend(scores, w), seen, held, self.k) for w in grid])
        best = int(np.argmax(ndcg))
        self.weights_ = grid[best]
        self.validation_ndcg_ = float(ndcg[best])
        self.components_ = [_fit(component, interactions, item_features) for component in self.components]

    def _person_scores(self, interactions: sparse.csr_matrix) -> FloatArray:
        parts = [row_minmax(m._person_scores(interactions)) for m in self.components_]
        return _blend(parts, self.weights_)

    def _item_scores(self, items: IntArray) -> FloatArray:
        return _blend([row_minmax(m._item_scores(items)) for m in self.components_], self.weights_)


def _fit(component: Recommender, interactions: sparse.csr_matrix, item_features: pd.DataFrame | None) -> Recommender:
    model: Recommender = clone(component)
    return model.fit(interactions, item_features=item_features)


def _simplex(size: int, step: float) -> FloatArray:
    """Every weight vector of ``size`` non-negative multiples of ``step`` summing to 1."""
    parts = round(1 / step) if step > 0 else 0
    if parts < 1 or not np.isclose(parts * step, 1.0):
        raise ValidationError("grid_step", f"1 / grid_step must be a positive integer, got {step!r}")
    combos = [c for c in itertools.product(range(parts + 1), repeat=size) if sum(c) == parts]
    return np.array(combos, dtype=np.float64) / parts


def _withhold_one(
    interactions: sparse.csr_matrix, rng: np.random.Generator, limit: int
) -> tuple[sparse.csr_matrix, IntArray, IntArray]:
    """(training matrix, people with a withheld item, the withheld item of each)."""
    counts = np.diff(interactions.indptr)
    people = np.flatnonzero(counts >= 2)
    if len(people) > limit:
        people = np.sort(rng.choice(people, size=limit, replace=False))
    positions = interactions.indptr[people] + rng.integers(0, counts[people])
    held = interactions.indices[positions].astype(np.int64)
    train = interactions.copy()
    train.data[positions] = 0.0
    train.eliminate_zeros()
    return train, people, held


def _blend(scores: list[FloatArray], weights: FloatArray) -> FloatArray:
    out = np.zeros_like(scores[0])
    for block, weight in zip(scores, weights, strict=True):
        out += weight * block
    return out


def _withheld_ndcg(scores: FloatArray, seen: tuple[IntArray, IntArray], held: IntArray, k: int) -> float:
    """Mean NDCG@k of one relevant item per row, ``seen`` items excluded; ties share their average rank."""
    scores[seen] = -np.inf
    target = scores[np.arange(len(held)), held][:, None]
    ahead = (scores > target).sum(axis=1)
    tied = (scores == target).sum(axis=1) - 1
    rank = ahead + tied / 2.0
    gain: Any = np.where(rank < k, 1.0 / np.log2(rank + 2.0), 0.0)
    return float(np.mean(gain))
