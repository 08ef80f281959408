"""Popularity: the baseline every other recommender must beat, and the cold-start fallback.

An item's popularity is its total weight over people. With ``trending=True``, ``fit(..., recent=M)``
ranks by a second matrix instead (the same people × items, built by the caller from the last
days' events or with a time-decay weight). With ``by_category=True`` and a ``category``
column in ``item_features``, a person's score for an item is the share of their own weight that
falls in the item's category plus the item's popularity relative to the most popular item, so
the popular items of the categories they buy from come first and the rest follow by popularity.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from tenure.errors import ValidationError
from tenure.models.recommenders import FloatArray, IntArray, Recommender, check_interactions


class Popularity(Recommender):
    """Most popular items first (overall, trending, or within the person's categories).

    Attributes
    ----------
    popularity_ : ndarray [items]
        Each item's total weight (in ``recent`` when given).
    categories_ : ndarray [items] or None
        Category code per item when ``by_category``.
    """

    def __init__(self, *, by_category: bool = False, trending: bool = False) -> None:
        self.by_category = by_category
        self.trending = trending

    def fit(self, interactions: Any, *, item_features: pd.DataFrame | None = None, recent: Any = None) -> Popularity:
        """Fit on ``interactions``; when ``trending``, rank by ``recent`` (same shape), which is then required."""
        matrix = check_interactions(interactions)
        if self.trending and recent is None:
            raise ValidationError("recent", "trending popularity ranks by a matrix of recent interactions; none given")
        source = check_interactions(recent, "recent") if self.trending else matrix
        if source.shape != matrix.shape:
            raise ValidationError("recent", f"expected shape {matrix.shape}, got {source.shape}")
        self.popularity_ = np.asarray(source.sum(axis=0)).ravel()
        self.categories_ = _category_codes(item_features, matrix.shape[1]) if self.by_category else None
        self.n_people_, self.n_items_ = matrix.shape
        return self

    def _relative(self) -> FloatArray:
        top = self.popularity_.max()
        return self.popularity_ / top if top > 0 else np.zeros_like(self.popularity_)

    def _person_scores(self, interactions: sparse.csr_matrix) -> FloatArray:
        relative = self._relative()
        if self.categories_ is None:
            return np.tile(relative, (interactions.shape[0], 1))
        per_category = _one_hot(self.categories_)
        weight = np.asarray((interactions @ per_category).todense())
        total = weight.sum(axis=1, keepdims=True)
        share = np.divide(weight, total, out=np.zeros_like(weight), where=total > 0)
        return np.asarray(share[:, self.categories_] + relative)

    def _item_scores(self, items: IntArray) -> FloatArray:
        """The most popular other items (of the same category when ``by_category``)."""
        scores = np.tile(self._relative(), (len(items), 1))
        if self.categories_ is not None:
            scores += self.categories_[None, :] == self.categories_[items][:, None]
        return scores


def _category_codes(item_features: pd.DataFrame | None, n_items: int) -> IntArray:
    if item_features is None or "category" not in item_features.columns:
        raise ValidationError("item_features", "by_category needs item_features with a 'category' column")
    if len(item_features) != n_items:
        raise ValidationError("item_features", f"expected {n_items} rows (one per item), got {len(item_features)}")
    codes = pd.factorize(item_features["category"].astype("string").fillna(""))[0]
    return np.asarray(codes, dtype=np.int64)


def _one_hot(codes: IntArray) -> sparse.csr_matrix:
    return sparse.csr_matrix((np.ones(len(codes)), (np.arange(len(codes)), codes)), shape=(len(codes), codes.max() + 1))
