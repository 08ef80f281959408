"""Ranking metrics for top-N recommendations against held-out items.

All take ``recommended``, an integer array [people, n] of item indices best first, padded with
-1 (as ``Recommender.recommend`` returns), and ``relevant``, the held-out items of the same
people: a sparse people × items matrix (non-zero = relevant) or a list of sets. Only the first
``k`` columns count (all when ``k`` is None; a ``k`` wider than the list counts the missing
slots as misses). Accuracy metrics average over the people with at least one relevant item,
with binary relevance:

- ``precision_at_k``: hits in the top k / k;
- ``recall_at_k``: hits in the top k / number relevant;
- ``ndcg_at_k``: DCG with a log2 discount (a hit at rank r, from 1, adds 1 / log2(r + 1)),
  divided by the ideal DCG of min(k, number relevant) hits;
- ``map_at_k``: sum of the precision at each hit's rank, divided by min(k, number relevant).

Beyond accuracy: ``catalogue_coverage`` is the share of the catalogue recommended to anyone,
and ``popularity_bias`` is the mean popularity percentile of the recommended items: an item's
percentile is (items less popular + half the items as popular, itself included) / items, the
mid-rank, so recommending items at random scores 0.5 on average and only the most popular
items scores close to 1.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import sparse, stats

from tenure.errors import ValidationError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Relevant = Any  # a scipy.sparse matrix [people, items] or a list of sets of item indices


def precision_at_k(recommended: npt.ArrayLike, relevant: Relevant, *, k: int | None = None) -> float:
    """Mean share of the top ``k`` slots that hold a relevant item."""
    hits, counts, width = _hits(recommended, relevant, k)
    return float(np.mean(hits.sum(axis=1) / width))


def recall_at_k(recommended: npt.ArrayLike, relevant: Relevant, *, k: int | None = None) -> float:
    """Mean share of each person's relevant items found in their top ``k``."""
    hits, counts, _ = _hits(recommended, relevant, k)
    return float(np.mean(hits.sum(axis=1) / counts))


def ndcg_at_k(recommended: npt.ArrayLike, relevant: Relevant, *, k: int | None = None) -> float:
    """Mean normalised discounted cumulative gain at ``k`` (binary relevance, log2 discount)."""
    hits, counts, width = _hits(recommended, relevant, k)
    discount = 1.0 / np.log2(np.arange(2, width + 2))
    ideal = np.cumsum(discount)[np.minimum(counts, width) - 1]
    return float(np.mean((hits * discount).sum(axis=1) / ideal))


def map_at_k(recommended: npt.ArrayLike, relevant: Relevant, *, k: int | None = None) -> float:
    """Mean average precision at ``k``, normalised by min(k, number relevant)."""
    hits, counts, width = _hits(recommended, relevant, k)
    precision = np.cumsum(hits, axis=1) / np.arange(1, width + 1)
    return float(np.mean((precision * hits).sum(axis=1) / np.minimum(counts, width)))


def catalogue_coverage(recommended: npt.ArrayLike, n_items: int, *, k: int | None = None) -> float:
    """Share of the ``n_items`` catalogue that appears in anyone's top ``k``."""
    top = _recommended(recommended, k)
    if n_items < 1:
        raise ValidationError("n_items", "must be at least 1")
    if top.size and top.max() >= n_items:
        raise ValidationError("recommended", f"item indices must be below n_items={n_items}")
    return float(len(np.unique(top[top >= 0])) / n_items)


def popularity_bias(recommended: npt.ArrayLike, popularity: npt.ArrayLike, *, k: int | None = None) -> float:
    """Mean popularity percentile (in [0, 1]) of the recommended items; see the module docstring."""
    top = _recommended(recommended, k)
    counts = np.asarray(popularity, dtype=np.float64)
    if counts.ndim != 1 or counts.size == 0 or not np.all(np.isfinite(counts)):
        raise ValidationError("popularity", "expected a non-empty 1-D array of finite item popularities")
    shown = top[top >= 0]
    if shown.size == 0:
        raise ValidationError("recommended", "no item was recommended")
    if shown.max() >= counts.size:
        raise ValidationError("recommended", f"item indices must be below {counts.size} (the popularity length)")
    percentile = (stats.rankdata(counts, method="average") - 0.5) / counts.size
    return float(np.mean(percentile[shown]))


def _recommended(recommended: npt.ArrayLike, k: int | None) -> IntArray:
    array = np.asarray(recommended)
    if array.ndim != 2 or (array.size and not np.issubdtype(array.dtype, np.integer)):
        raise ValidationError("recommended", "expected a 2-D integer array [people, n]")
    if array.size and array.min() < -1:
        raise ValidationError("recommended", "item indices must be >= 0 (or -1 for padding)")
    if k is not None:
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValidationError("k", f"must be a positive integer, got {k!r}")
        array = array[:, :k]
        if array.shape[1] < k:
            array = np.hstack([array, np.full((array.shape[0], k - array.shape[1]), -1)])
    if array.shape[1] < 1:
        raise ValidationError("recommended", "needs at least one column")
    ordered = np.sort(array, axis=1)
    if np.any((ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)):
        raise ValidationError("recommended", "an item repeats within a person's list")
    return array.astype(np.int64)


def _relevant_matrix(relevant: Relevant, people: int, width: int) -> sparse.csr_matrix:
    if sparse.issparse(relevant):
        matrix = sparse.csr_matrix(relevant)
    elif isinstance(relevant, Iterable):
        sets = [sorted(int(i) for i in s) for s in relevant]
        if any(i < 0 for s in sets for i in s):
            raise ValidationError("relevant", "item indices must be non-negative")
        cols = max([width, *(s[-1] + 1 for s in sets if s)])
        rows = np.repeat(np.arange(len(sets)), [len(s) for s in sets])
        flat = np.fromiter((i for s in sets for i in s), dtype=np.int64, count=len(rows))
        matrix = sparse.csr_matrix((np.ones(len(rows)), (rows, flat)), shape=(len(sets), cols))
    else:
        raise ValidationError("relevant", "expected a sparse matrix or a list of sets")
    if matrix.shape[0] != people:
        raise ValidationError("relevant", f"expected {people} rows (one per person), got {matrix.shape[0]}")
    matrix.eliminate_zeros()
    return matrix


def _hits(recommended: npt.ArrayLike, relevant: Relevant, k: int | None) -> tuple[FloatArray, IntArray, int]:
    """(hit matrix of the people with relevant items, their relevant counts, k)."""
    top = _recommended(recommended, k)
    matrix = _relevant_matrix(relevant, top.shape[0], int(top.max()) + 1 if top.size else 0)
    if top.size and top.max() >= matrix.shape[1]:
        raise ValidationError("recommended", f"item indices must be below {matrix.shape[1]} (the relevant columns)")
    counts = np.diff(matrix.indptr).astype(np.int64)
    keep = counts > 0
    if not keep.any():
        raise ValidationError("relevant", "no person has a relevant item")
    top, counts = top[keep], counts[keep]
    people = np.repeat(np.arange(top.shape[0]), top.shape[1])
    found = np.asarray(matrix[keep][people, np.maximum(top.ravel(), 0)]).reshape(top.shape)
    hits = ((found != 0) & (top >= 0)).astype(np.float64)
    return hits, counts, top.shape[1]
