"""Ranking metrics against plain Python references on random cases, and hand-checked edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import sparse

from tenure.errors import ValidationError
from tenure.models.ranking_metrics import (
    catalogue_coverage,
    map_at_k,
    ndcg_at_k,
    popularity_bias,
    precision_at_k,
    recall_at_k,
)


# -- plain references: one person at a time, straight from the definitions ------------------
def ref_precision(rec: list[int], rel: set[int], k: int) -> float:
    return sum(1 for i in rec[:k] if i in rel) / k


def ref_recall(rec: list[int], rel: set[int], k: int) -> float:
    return sum(1 for i in rec[:k] if i in rel) / len(rel)


def ref_ndcg(rec: list[int], rel: set[int], k: int) -> float:
    dcg = sum(1 / math.log2(rank + 1) for rank, i in enumerate(rec[:k], start=1) if i in rel)
    ideal = sum(1 / math.log2(rank + 1) for rank in range(1, min(k, len(rel)) + 1))
    return dcg / ideal


def ref_map(rec: list[int], rel: set[int], k: int) -> float:
    hits, total = 0, 0.0
    for rank, i in enumerate(rec[:k], start=1):
        if i in rel:
            hits += 1
            total += hits / rank
    return total / min(k, len(rel))


def ref_mean(metric, recs: list[list[int]], rels: list[set[int]], k: int) -> float:  # type: ignore[no-untyped-def]
    values = [metric(rec, rel, k) for rec, rel in zip(recs, rels, strict=True) if rel]
    return sum(values) / len(values)


def random_case(rng: np.random.Generator) -> tuple[np.ndarray, list[set[int]], int, int]:
    people, n_items, n = int(rng.integers(1, 8)), int(rng.integers(3, 25)), int(rng.integers(1, 8))
    rows = []
    for _ in range(people):
        shown = rng.permutation(n_items)[: int(rng.integers(0, min(n, n_items) + 1))].tolist()
        rows.append(shown + [-1] * (n - len(shown)))
    relevant = [set(rng.permutation(n_items)[: int(rng.integers(0, 6))].tolist()) for _ in range(people)]
    if not any(relevant):
        relevant[0] = {0}
    return np.array(rows, dtype=np.int64), relevant, n_items, n


METRICS = [(precision_at_k, ref_precision), (recall_at_k, ref_recall), (ndcg_at_k, ref_ndcg), (map_at_k, ref_map)]


@pytest.mark.parametrize(("metric", "reference"), METRICS)
def test_metric_matches_reference_on_random_cases(metric, reference) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(7)
    for _ in range(300):
        recommended, relevant, n_items, n = random_case(rng)
        k = int(rng.integers(1, n + 4))  # sometimes wider than the list
        expected = ref_mean(reference, [[i for i in row if i >= 0] for row in recommended.tolist()], relevant, k)
        assert metric(recommended, relevant, k=k) == pytest.approx(expected, abs=1e-12)
        as_matrix = sparse.csr_matrix(
            (
                np.ones(sum(map(len, relevant))),
                ([p for p, s in enumerate(relevant) for _ in s], [i for s in relevant for i in s]),
            ),
            shape=(len(relevant), n_items),
        )
        assert metric(recommended, as_matrix, k=k) == pytest.approx(expected, abs=1e-12)


def test_hand_checked_values() -> None:
    recommended = np.array([[3, 1, 7, -1], [2, 5, -1, -1], [0, 1, 2, 3]])
    relevant = [{1, 7, 9}, {5}, set()]  # the third person has nothing relevant and is skipped
    assert precision_at_k(recommended, relevant) == pytest.approx((2 / 4 + 1 / 4) / 2)
    assert recall_at_k(recommended, relevant) == pytest.approx((2 / 3 + 1) / 2)
    first = (1 / math.log2(3) + 1 / math.log2(4)) / (1 + 1 / math.log2(3) + 1 / math.log2(4))
    assert ndcg_at_k(recommended, relevant) == pytest.approx((first + 1 / math.log2(3)) / 2)
    assert map_at_k(recommended, relevant) == pytest.approx(((1 / 2 + 2 / 3) / 3 + 1 / 2) / 2)
    assert precision_at_k(recommended, relevant, k=1) == 0.0
    half = 1 / math.log2(3)  # a hit at rank 2; the first person's ideal is two hits, the second's one
    assert ndcg_at_k(recommended, relevant, k=2) == pytest.approx((half / (1 + half) + half) / 2)


def test_k_wider_than_the_list_counts_misses() -> None:
    recommended = np.array([[4, 2]])
    assert precision_at_k(recommended, [{4}], k=5) == pytest.approx(1 / 5)
    assert ndcg_at_k(recommended, [{4, 8}], k=5) == pytest.approx(1 / (1 + 1 / math.log2(3)))
    assert map_at_k(recommended, [{4, 8}], k=5) == pytest.approx(1 / 2)


def test_padding_is_never_a_hit() -> None:
    recommended = np.array([[-1, -1, -1]])
    assert precision_at_k(recommended, [{0}]) == 0.0
    assert ndcg_at_k(recommended, sparse.csr_matrix(np.array([[1.0, 0]]))) == 0.0


def test_no_relevant_items_at_all_is_an_error() -> None:
    with pytest.raises(ValidationError) as caught:
        ndcg_at_k(np.array([[0, 1]]), [set()])
    assert caught.value.field == "relevant"


@pytest.mark.parametrize(
    ("recommended", "relevant", "kwargs", "field"),
    [
        (np.array([0, 1]), [{0}], {}, "recommended"),
        (np.array([[0.5, 1.0]]), [{0}], {}, "recommended"),
        (np.array([[0, 0]]), [{0}], {}, "recommended"),
        (np.array([[-2, 0]]), [{0}], {}, "recommended"),
        (np.array([[0, 1]]), [{0}, {1}], {}, "relevant"),
        (np.array([[0, 1]]), [{0}], {"k": 0}, "k"),
        (np.array([[0, 5]]), sparse.csr_matrix((1, 3)), {}, "recommended"),
    ],
)
def test_bad_input_names_the_field(recommended, relevant, kwargs, field) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationError) as caught:
        recall_at_k(recommended, relevant, **kwargs)
    assert caught.value.field == field


def test_catalogue_coverage() -> None:
    recommended = np.array([[0, 3, -1], [3, 4, 1]])
    assert catalogue_coverage(recommended, 10) == pytest.approx(4 / 10)
    assert catalogue_coverage(recommended, 10, k=1) == pytest.approx(2 / 10)
    rng = np.random.default_rng(3)
    for _ in range(50):
        recommended, _, n_items, _ = random_case(rng)
        expected = len({i for row in recommended.tolist() for i in row if i >= 0}) / n_items
        assert catalogue_coverage(recommended, n_items) == pytest.approx(expected)
    with pytest.raises(ValidationError) as caught:
        catalogue_coverage(np.array([[0, 12]]), 10)
    assert caught.value.field == "recommended"


def test_popularity_bias_is_the_mean_popularity_percentile() -> None:
    popularity = np.array([10.0, 0, 5, 5])  # percentiles: 7/8, 1/8, (2.5 - 0.5)/4 = 1/2 for the tied pair
    assert popularity_bias(np.array([[0, -1], [0, 1]]), popularity) == pytest.approx((7 / 8 + 7 / 8 + 1 / 8) / 3)
    assert popularity_bias(np.array([[2], [3]]), popularity) == pytest.approx(0.5)
    rng = np.random.default_rng(5)
    for _ in range(50):
        recommended, _, n_items, _ = random_case(rng)
        if not (recommended >= 0).any():
            continue
        counts = rng.integers(0, 4, n_items).astype(float)
        shown = [i for row in recommended.tolist() for i in row if i >= 0]
        below = [
            (sum(c < counts[i] for c in counts) + (sum(c == counts[i] for c in counts) - 1) / 2 + 0.5) / n_items
            for i in shown
        ]
        assert popularity_bias(recommended, counts) == pytest.approx(sum(below) / len(below))
    with pytest.raises(ValidationError) as caught:
        popularity_bias(np.array([[-1]]), popularity)
    assert caught.value.field == "recommended"
