"""Alternating least squares for implicit feedback, trained by the ``implicit`` library.

Hu, Koren & Volinsky (2008), "Collaborative Filtering for Implicit Feedback Datasets", ICDM.
Each weight ``w`` becomes a confidence ``1 + alpha * w`` that the person likes the item; people
and items get ``factors``-dimensional vectors whose dot product predicts the preference.
Training runs in ``implicit``'s native CPU code with BLAS held to one thread (``implicit`` warns
and slows down when BLAS threads compete with its own). Scores are plain dot products of the
person's factors and the item factors. ``recommend`` recomputes each person's factors from
the rows it is given (``implicit``'s exact least-squares fold-in against the fitted item
factors), so people who arrived or acted after ``fit`` are scored on what they did, without a
refit. ``similar_items`` is the cosine of item factors.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from implicit.cpu.als import AlternatingLeastSquares  # type: ignore[import-untyped]
from scipy import sparse
from sklearn.preprocessing import normalize
from threadpoolctl import threadpool_limits

from tenure.errors import ValidationError
from tenure.models.recommenders import FloatArray, IntArray, Recommender


class ALS(Recommender):
    """Implicit-feedback matrix factorisation (``implicit.cpu.als.AlternatingLeastSquares``).

    Parameters
    ----------
    factors : int
        Latent dimensions.
    regularization : float
        L2 penalty on the factors.
    iterations : int
        Alternating sweeps.
    alpha : float
        Confidence per unit of weight.
    num_threads : int
        ``implicit``'s threads; 0 uses every core.
    random_state : int
        Seed for the initial factors (fits are reproducible).

    Attributes
    ----------
    user_factors_ : ndarray [people, factors]
    item_factors_ : ndarray [items, factors]
    model_ : implicit.cpu.als.AlternatingLeastSquares
        The fitted ``implicit`` model, which folds in people at ``recommend``.
    """

    def __init__(
        self,
        *,
        factors: int = 64,
        regularization: float = 0.01,
        iterations: int = 15,
        alpha: float = 1.0,
        num_threads: int = 0,
        random_state: int = 0,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.iterations = iterations
        self.alpha = alpha
        self.num_threads = num_threads
        self.random_state = random_state

    def _fit(self, interactions: sparse.csr_matrix, item_features: pd.DataFrame | None) -> None:
        for name in ("factors", "iterations"):
            if getattr(self, name) < 1:
                raise ValidationError(name, "must be at least 1")
        for name in ("regularization", "alpha"):
            if not getattr(self, name) > 0:
                raise ValidationError(name, "must be positive")
        with threadpool_limits(limits=1, user_api="blas"):
            model = AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=self.alpha,
                iterations=self.iterations,
                num_threads=self.num_threads,
                random_state=self.random_state,
            )
            model.fit(interactions.astype(np.float32), show_progress=False)
        self.model_ = model
        self.user_factors_ = np.asarray(model.user_factors, dtype=np.float64)
        self.item_factors_ = np.asarray(model.item_factors, dtype=np.float64)

    def _person_scores(self, interactions: sparse.csr_matrix) -> FloatArray:
        rows = interactions.astype(np.float32)
        with threadpool_limits(limits=1, user_api="blas"):
            factors = self.model_.recalculate_user(np.arange(rows.shape[0]), rows)
        # the product in implicit's float32 is several times faster than in float64; the ranking is the same
        return np.asarray(factors @ self.model_.item_factors.T, dtype=np.float64)

    def _item_scores(self, items: IntArray) -> FloatArray:
        unit = normalize(self.item_factors_)
        return np.asarray(unit[items] @ unit.T)
