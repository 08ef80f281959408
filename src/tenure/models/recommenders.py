"""The recommender interface: fit on an implicit-feedback matrix, then top-N items per person.

Every recommender scores all items for a batch of people (or items) as a dense block and
shares the same selection: seen and disallowed items are masked with ``-inf``, the best ``n``
are picked with ``argpartition`` and sorted, and slots left when fewer than ``n`` items qualify
are padded with index ``-1`` and score ``-inf``. Subclasses only say how to score
(``_fit``, ``_person_scores``, ``_item_scores``), so the behaviour suite holds for all of them.

``interactions`` is a people × items ``scipy.sparse`` matrix of non-negative weights (views,
carts and purchases already weighted and decayed by the caller). In ``recommend`` its rows are
the people to recommend for, as they are now: every model scores a person from their row alone,
so people who arrived or acted after ``fit`` need no refit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import sparse
from sklearn.base import BaseEstimator

from tenure.errors import NotFittedError, ValidationError

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
BATCH = 1024  # people or items scored per dense block: bounds memory at BATCH × items floats


class Recommender(BaseEstimator):  # type: ignore[misc]
    """Base class: validation, masking and top-N selection shared by every recommender."""

    def fit(self, interactions: Any, *, item_features: pd.DataFrame | None = None) -> Recommender:
        """Learn from ``interactions`` (people × items, weights >= 0); ``item_features`` if the model uses them."""
        matrix = check_interactions(interactions)
        self.n_people_, self.n_items_ = matrix.shape
        self._fit(matrix, item_features)
        return self

    def recommend(
        self,
        interactions: Any,
        *,
        n: int,
        exclude_seen: bool = True,
        excluded: Any = None,
        allowed_items: npt.ArrayLike | None = None,
    ) -> tuple[IntArray, FloatArray]:
        """Top ``n`` items for each row of ``interactions``: (indices [rows, n], scores), best first.

        ``exclude_seen`` drops every item in the person's ``interactions``; ``excluded`` (same
        shape, non-zero = never) drops only those, e.g. the purchased items when views may repeat.
        """
        self._check_fitted()
        check_n(n)
        current = check_interactions(interactions)
        if current.shape[1] != self.n_items_:
            raise ValidationError("interactions", f"expected {self.n_items_} columns (one per item), got {current.shape[1]}")
        allowed = self._allowed(allowed_items)
        never = None if excluded is None else check_interactions(excluded, "excluded")
        if never is not None and never.shape != current.shape:
            raise ValidationError("excluded", f"expected shape {current.shape}, got {never.shape}")
        chunks = []
        for start in range(0, current.shape[0], BATCH):
            block = slice(start, start + BATCH)
            scores = self._person_scores(current[block])
            if exclude_seen:
                scores[current[block].nonzero()] = -np.inf
            if never is not None:
                scores[never[block].nonzero()] = -np.inf
            if allowed is not None:
                scores[:, ~allowed] = -np.inf
            chunks.append(top_n(scores, n))
        return _stack(chunks, n)

    def similar_items(self, items: npt.ArrayLike, *, n: int) -> tuple[IntArray, FloatArray]:
        """The ``n`` items most similar to each of ``items`` (never the item itself), best first."""
        self._check_fitted()
        targets = _indices(items, self.n_items_, "items")
        check_n(n)
        chunks = []
        for start in range(0, len(targets), BATCH):
            block = targets[start : start + BATCH]
            scores = self._item_scores(block)
            scores[np.arange(len(block)), block] = -np.inf
            chunks.append(top_n(scores, n))
        return _stack(chunks, n)

    # -- for subclasses ----------------------------------------------------------------------
    def _fit(self, interactions: sparse.csr_matrix, item_features: pd.DataFrame | None) -> None:
        raise NotImplementedError

    def _person_scores(self, interactions: sparse.csr_matrix) -> FloatArray:
        """Dense scores [len(people), items]; a fresh array the caller may overwrite."""
        raise NotImplementedError

    def _item_scores(self, items: IntArray) -> FloatArray:
        """Dense similarities [len(items), items]; a fresh array the caller may overwrite."""
        raise NotImplementedError

    # -- internals ---------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "n_items_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit() first")

    def _allowed(self, allowed_items: npt.ArrayLike | None) -> BoolArray | None:
        if allowed_items is None:
            return None
        mask = np.asarray(allowed_items)
        if mask.dtype != np.bool_ or mask.shape != (self.n_items_,):
            raise ValidationError("allowed_items", f"expected a boolean mask of shape ({self.n_items_},)")
        return mask


def check_interactions(interactions: Any, field: str = "interactions") -> sparse.csr_matrix:
    """A float64 CSR copy without explicit zeros; refuses dense input, NaN and negative weights."""
    if not sparse.issparse(interactions) or interactions.ndim != 2:
        raise ValidationError(field, "expected a 2-D scipy.sparse matrix (people × items)")
    matrix = sparse.csr_matrix(interactions, dtype=np.float64, copy=True)
    if not np.all(np.isfinite(matrix.data)):
        raise ValidationError(field, "weights must be finite")
    if np.any(matrix.data < 0):
        raise ValidationError(field, "weights must be non-negative")
    matrix.eliminate_zeros()
    matrix.sum_duplicates()
    return matrix


def check_n(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValidationError("n", f"must be a positive integer, got {n!r}")


def top_n(scores: FloatArray, n: int) -> tuple[IntArray, FloatArray]:
    """Best ``n`` columns per row, sorted; ``-inf`` scores become index -1, short rows are padded."""
    rows, width = scores.shape
    k = min(n, width)
    if k < width:  # the k largest, partitioned in place of a negated copy of the whole block
        candidates = np.argpartition(scores, width - k, axis=1)[:, width - k :]
    else:
        candidates = np.broadcast_to(np.arange(width), (rows, width))
    values = np.take_along_axis(scores, candidates, axis=1)
    order = np.argsort(-values, axis=1, kind="stable")
    indices = np.take_along_axis(candidates, order, axis=1).astype(np.int64)
    values = np.take_along_axis(values, order, axis=1)
    indices[np.isneginf(values)] = -1
    pad = n - k
    if pad:
        indices = np.hstack([indices, np.full((rows, pad), -1, dtype=np.int64)])
        values = np.hstack([values, np.full((rows, pad), -np.inf)])
    return indices, values


def row_minmax(scores: FloatArray) -> FloatArray:
    """Rescale each row to [0, 1] so that different models' scores can be blended; flat rows become 0."""
    low = scores.min(axis=1, keepdims=True)
    span = scores.max(axis=1, keepdims=True) - low
    out: FloatArray = np.divide(scores - low, span, out=np.zeros_like(scores), where=span > 0)
    return out


def _indices(values: npt.ArrayLike, size: int, field: str) -> IntArray:
    array = np.asarray(values)
    if array.ndim != 1 or (array.size and not np.issubdtype(array.dtype, np.integer)):
        raise ValidationError(field, "expected a 1-D array of integer indices")
    array = array.astype(np.int64)
    if array.size and (array.min() < 0 or array.max() >= size):
        raise ValidationError(field, f"indices must be in [0, {size})")
    return array


def _stack(chunks: list[tuple[IntArray, FloatArray]], n: int) -> tuple[IntArray, FloatArray]:
    if not chunks:
        return np.empty((0, n), dtype=np.int64), np.empty((0, n))
    return np.vstack([c[0] for c in chunks]), np.vstack([c[1] for c in chunks])
