"""Shared behaviour suite for every recommender, plus each one's own known answers.

The planted data: people fall into blocks, each block consuming its own block of items. Each
person has every item of their block but one (withheld), plus one random item as noise; the
withheld item is then the single unseen item of their block, so a recommender that has learned
the structure must put it first. Items carry attributes (category, brand, text) that define the
same blocks, so the content-based model is tested on the same answer. Plain popularity cannot
know the blocks (all blocks are equally popular) and is tested on its own known answers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from sklearn.metrics.pairwise import cosine_similarity

from tenure.errors import NotFittedError, ValidationError
from tenure.models.recommend_als import ALS
from tenure.models.recommend_content import ContentBased
from tenure.models.recommend_hybrid import Hybrid
from tenure.models.recommend_neighbours import ItemNeighbours
from tenure.models.recommend_popularity import Popularity
from tenure.models.recommenders import Recommender, top_n

BLOCKS, PEOPLE_PER_BLOCK, ITEMS_PER_BLOCK = 4, 30, 10
N_PEOPLE, N_ITEMS = BLOCKS * PEOPLE_PER_BLOCK, BLOCKS * ITEMS_PER_BLOCK


@dataclass(frozen=True, slots=True)
class Planted:
    train: sparse.csr_matrix
    held: np.ndarray  # the withheld item of each person
    block_of_person: np.ndarray
    block_of_item: np.ndarray
    features: pd.DataFrame


def planted(seed: int = 0, informative_features: bool = True) -> Planted:
    rng = np.random.default_rng(seed)
    block_of_person = np.repeat(np.arange(BLOCKS), PEOPLE_PER_BLOCK)
    block_of_item = np.repeat(np.arange(BLOCKS), ITEMS_PER_BLOCK)
    held = block_of_person * ITEMS_PER_BLOCK + rng.integers(0, ITEMS_PER_BLOCK, N_PEOPLE)
    dense = (block_of_person[:, None] == block_of_item[None, :]) * rng.uniform(1.0, 3.0, (N_PEOPLE, N_ITEMS))
    noise = rng.integers(0, N_ITEMS, N_PEOPLE)
    dense[np.arange(N_PEOPLE), noise] = np.maximum(dense[np.arange(N_PEOPLE), noise], 1.0)
    dense[np.arange(N_PEOPLE), held] = 0.0
    words = np.array(["garden hose sprinkler", "laptop keyboard mouse", "yoga mat towel", "coffee grinder beans"])
    labels = block_of_item if informative_features else rng.permutation(block_of_item)
    features = pd.DataFrame(
        {
            "category": [f"cat{b}" for b in labels],
            "brand": [f"brand{b}{i % 2}" for i, b in enumerate(labels)],
            "price": rng.uniform(5, 50, N_ITEMS),
            "text": [f"{words[b]} model {i}" for i, b in enumerate(labels)],
        }
    )
    return Planted(sparse.csr_matrix(dense), held, block_of_person, block_of_item, features)


FACTORIES: dict[str, Callable[[], Recommender]] = {
    "popularity": Popularity,
    "popularity_by_category": lambda: Popularity(by_category=True),
    "neighbours": lambda: ItemNeighbours(k=20),
    "als": lambda: ALS(factors=8, iterations=15, regularization=1.0, num_threads=1, random_state=3),
    "content": ContentBased,
    "hybrid": lambda: Hybrid(components=(ItemNeighbours(k=20), ContentBased()), grid_step=0.5),
}
LEARNS_BLOCKS = [name for name in FACTORIES if name != "popularity"]


@pytest.fixture(scope="module")
def data() -> Planted:
    return planted()


@pytest.fixture(scope="module", params=list(FACTORIES))
def fitted(request: pytest.FixtureRequest, data: Planted) -> tuple[str, Recommender]:
    name = request.param
    return name, FACTORIES[name]().fit(data.train, item_features=data.features)


def everyone(data: Planted, model: Recommender, **kwargs: object) -> tuple[np.ndarray, np.ndarray]:
    return model.recommend(data.train, **kwargs)  # type: ignore[arg-type]


# -- the shared suite -------------------------------------------------------------------------
def test_withheld_item_comes_back_first(fitted: tuple[str, Recommender], data: Planted) -> None:
    name, model = fitted
    if name not in LEARNS_BLOCKS:
        pytest.skip("plain popularity cannot see the blocks; see test_popularity_* instead")
    indices, _ = everyone(data, model, n=3)
    assert np.mean(indices[:, 0] == data.held) >= 0.95
    assert np.all((indices == data.held[:, None]).any(axis=1))


def test_scores_are_sorted_and_match_indices(fitted: tuple[str, Recommender], data: Planted) -> None:
    _, model = fitted
    indices, scores = everyone(data, model, n=7)
    assert indices.shape == scores.shape == (N_PEOPLE, 7)
    assert np.all(np.diff(scores, axis=1) <= 0)
    assert np.all(indices >= 0) and np.all(np.isfinite(scores))


def test_seen_items_excluded_by_default_and_included_on_request(fitted: tuple[str, Recommender], data: Planted) -> None:
    _, model = fitted
    indices, _ = everyone(data, model, n=N_ITEMS)
    seen = data.train.toarray() > 0
    valid = indices >= 0
    rows = np.nonzero(valid)[0]
    assert not seen[rows, indices[valid]].any()
    assert np.array_equal(valid.sum(axis=1), N_ITEMS - seen.sum(axis=1))  # every unseen item, then padding
    everything, _ = everyone(data, model, n=N_ITEMS, exclude_seen=False)
    assert np.array_equal(np.sort(everything, axis=1), np.tile(np.arange(N_ITEMS), (N_PEOPLE, 1)))


def test_excluded_items_are_dropped_and_only_they(fitted: tuple[str, Recommender], data: Planted) -> None:
    """``excluded`` (e.g. purchases) masks its items while the other seen items stay recommendable."""
    _, model = fitted
    rng = np.random.default_rng(5)
    excluded = sparse.csr_matrix(data.train.multiply(rng.random(data.train.shape) < 0.5))
    indices, _ = everyone(data, model, n=N_ITEMS, exclude_seen=False, excluded=excluded)
    never = excluded.toarray() > 0
    valid = indices >= 0
    assert not never[np.nonzero(valid)[0], indices[valid]].any()
    assert np.array_equal(valid.sum(axis=1), N_ITEMS - never.sum(axis=1))
    with pytest.raises(ValidationError) as caught:
        model.recommend(data.train[[0]], n=3, excluded=excluded)
    assert caught.value.field == "excluded"


def test_allowed_items_filter(fitted: tuple[str, Recommender], data: Planted) -> None:
    _, model = fitted
    allowed = np.zeros(N_ITEMS, dtype=bool)
    allowed[::3] = True
    indices, scores = everyone(data, model, n=N_ITEMS, allowed_items=allowed)
    valid = indices >= 0
    assert allowed[indices[valid]].all()
    unseen_allowed = ((data.train.toarray() == 0) & allowed).sum(axis=1)
    assert np.array_equal(valid.sum(axis=1), unseen_allowed)
    assert np.all(np.isneginf(scores[~valid]))


def test_padding_when_fewer_items_qualify(fitted: tuple[str, Recommender], data: Planted) -> None:
    _, model = fitted
    allowed = np.zeros(N_ITEMS, dtype=bool)
    allowed[data.held[0]] = True
    indices, scores = model.recommend(data.train[[0]], n=4, allowed_items=allowed)
    assert indices.tolist() == [[data.held[0], -1, -1, -1]]
    assert np.isfinite(scores[0, 0]) and np.all(np.isneginf(scores[0, 1:]))
    wide, _ = model.similar_items(np.array([0]), n=N_ITEMS + 3)
    assert sorted(wide[0, : N_ITEMS - 1].tolist()) == list(range(1, N_ITEMS))
    assert wide[0, N_ITEMS - 1 :].tolist() == [-1] * 4


def test_similar_items_share_the_block_and_exclude_the_item(fitted: tuple[str, Recommender], data: Planted) -> None:
    name, model = fitted
    items = np.arange(N_ITEMS)
    similar, scores = model.similar_items(items, n=ITEMS_PER_BLOCK - 1)
    assert similar.shape == (N_ITEMS, ITEMS_PER_BLOCK - 1)
    assert not (similar == items[:, None]).any()
    assert np.all(np.diff(scores, axis=1) <= 0)
    if name in LEARNS_BLOCKS:
        assert np.all(data.block_of_item[similar] == data.block_of_item[:, None])


def test_fit_is_deterministic(fitted: tuple[str, Recommender], data: Planted) -> None:
    name, model = fitted
    again = FACTORIES[name]().fit(data.train, item_features=data.features)
    first, second = everyone(data, model, n=5), everyone(data, again, n=5)
    assert np.array_equal(first[0], second[0])
    np.testing.assert_allclose(first[1], second[1], rtol=1e-10)


@pytest.mark.parametrize("name", list(FACTORIES))
def test_not_fitted(name: str, data: Planted) -> None:
    model = FACTORIES[name]()
    with pytest.raises(NotFittedError):
        model.recommend(data.train[[0]], n=3)
    with pytest.raises(NotFittedError):
        model.similar_items(np.array([0]), n=3)


@pytest.mark.parametrize("name", list(FACTORIES))
def test_bad_training_input_names_the_field(name: str, data: Planted) -> None:
    negative = data.train.copy()
    negative.data[0] = -1.0
    for bad in (negative, data.train.toarray()):
        with pytest.raises(ValidationError) as caught:
            FACTORIES[name]().fit(bad, item_features=data.features)
        assert caught.value.field == "interactions"


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda m, d: m.recommend(d.train[[0], :-1], n=3), "interactions"),
        (lambda m, d: m.recommend(d.train[[0]], n=0), "n"),
        (lambda m, d: m.recommend(d.train[[0]], n=3, allowed_items=np.ones(3, bool)), "allowed_items"),
        (lambda m, d: m.recommend(d.train[[0]], n=3, allowed_items=np.ones(N_ITEMS)), "allowed_items"),
        (lambda m, d: m.similar_items(np.array([N_ITEMS]), n=3), "items"),
        (lambda m, d: m.similar_items(np.array([0]), n=-2), "n"),
    ],
)
def test_bad_query_input_names_the_field(
    fitted: tuple[str, Recommender], data: Planted, call: Callable[[Recommender, Planted], object], field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        call(fitted[1], data)
    assert caught.value.field == field


# -- shared selection against brute force -----------------------------------------------------
def test_top_n_matches_a_full_sort() -> None:
    rng = np.random.default_rng(1)
    for _ in range(50):
        scores = rng.normal(size=(rng.integers(1, 6), rng.integers(1, 30)))
        scores[rng.random(scores.shape) < 0.3] = -np.inf
        n = int(rng.integers(1, 35))
        indices, values = top_n(scores.copy(), n)
        for row, (got, got_values) in enumerate(zip(indices, values, strict=True)):
            expected = [int(i) for i in np.argsort(-scores[row], kind="stable") if np.isfinite(scores[row, i])][:n]
            assert got.tolist() == expected + [-1] * (n - len(expected))
            assert got_values[: len(expected)].tolist() == scores[row, expected].tolist()


# -- popularity's own known answers ---------------------------------------------------------
def test_popularity_ranks_by_total_weight() -> None:
    interactions = sparse.csr_matrix(np.array([[5, 0, 1, 0], [0, 2, 1, 0], [1, 0, 0, 0.5]]))
    model = Popularity().fit(interactions)
    np.testing.assert_allclose(model.popularity_, [6, 2, 2, 0.5])
    indices, _ = model.recommend(interactions, n=4)
    assert indices[0].tolist() == [1, 3, -1, -1]
    assert indices[1].tolist() == [0, 3, -1, -1]
    assert indices[2].tolist() in ([1, 2, -1, -1], [2, 1, -1, -1])
    similar, _ = model.similar_items(np.array([0]), n=3)
    assert similar[0, 2] == 3


def test_trending_ranks_by_the_recent_matrix() -> None:
    overall = sparse.csr_matrix(np.array([[9.0, 1, 0], [9, 0, 1]]))
    recent = sparse.csr_matrix(np.array([[0.0, 0, 3], [0, 1, 0]]))
    model = Popularity(trending=True).fit(overall, recent=recent)
    indices, _ = model.recommend(sparse.csr_matrix((1, 3)), n=3)
    assert indices[0].tolist() == [2, 1, 0]
    with pytest.raises(ValidationError, match="recent"):
        Popularity(trending=True).fit(overall, recent=recent[:, :2])
    with pytest.raises(ValidationError, match="recent"):
        Popularity(trending=True).fit(overall)


def test_popularity_by_category_prefers_the_persons_categories() -> None:
    # items 0-1 in "a" (popularity 1, 2), items 2-4 in "b" (popularity 10, 9, 8)
    interactions = sparse.csr_matrix(np.array([[1.0, 0, 0, 0, 0], [0, 2, 10, 9, 8]]))
    features = pd.DataFrame({"category": ["a", "a", "b", "b", "b"]})
    model = Popularity(by_category=True).fit(interactions, item_features=features)
    fan_of_a = sparse.csr_matrix(np.array([[1.0, 0, 0, 0, 0]]))
    indices, scores = model.recommend(fan_of_a, n=4)
    assert indices[0].tolist() == [1, 2, 3, 4]
    np.testing.assert_allclose(scores[0], [1 + 2 / 10, 1.0, 0.9, 0.8])
    with pytest.raises(ValidationError) as caught:
        Popularity(by_category=True).fit(interactions)
    assert caught.value.field == "item_features"


# -- the other models' own known answers ------------------------------------------------------
def test_neighbours_keep_the_k_largest_cosines(data: Planted) -> None:
    reference = cosine_similarity(data.train.T.toarray())
    np.fill_diagonal(reference, 0.0)
    full = ItemNeighbours(k=N_ITEMS).fit(data.train)
    np.testing.assert_allclose(full.similarity_.toarray(), reference, atol=1e-12)
    top3 = ItemNeighbours(k=3).fit(data.train).similarity_.toarray()
    assert np.all((top3 > 0).sum(axis=1) == 3)
    kept = np.sort(top3, axis=1)[:, -3:]
    np.testing.assert_allclose(kept, np.sort(reference, axis=1)[:, -3:], atol=1e-12)
    person = data.train[[5]]
    scores = full._person_scores(person)
    np.testing.assert_allclose(scores[0], reference @ person.toarray()[0], atol=1e-12)


def test_content_cosine_is_the_weighted_share_of_matching_attributes() -> None:
    features = pd.DataFrame({"category": ["a", "a", "b"], "brand": ["x", "y", "x"]})
    model = ContentBased(category_weight=3.0, brand_weight=1.0).fit(sparse.csr_matrix((1, 3)), item_features=features)
    similarity = (model.item_vectors_ @ model.item_vectors_.T).toarray()
    np.testing.assert_allclose(similarity, [[1, 0.75, 0.25], [0.75, 1, 0], [0.25, 0, 1]], atol=1e-12)
    with pytest.raises(ValidationError) as caught:
        ContentBased().fit(sparse.csr_matrix((1, 3)), item_features=features.iloc[:2])
    assert caught.value.field == "item_features"


def test_als_folds_people_in_by_exact_least_squares(data: Planted) -> None:
    """Scores use factors solved from the given rows: (YᵀCY + λI) x = YᵀC p, with confidence C = alpha·w."""
    model = FACTORIES["als"]().fit(data.train)
    assert isinstance(model, ALS)
    assert model.user_factors_.shape == (N_PEOPLE, 8) and model.item_factors_.shape == (N_ITEMS, 8)
    y = model.item_factors_
    row = data.train[[3]].toarray().ravel() * model.alpha
    seen = row > 0
    gram = y.T @ y + model.regularization * np.eye(8) + (y[seen].T * (row[seen] - 1)) @ y[seen]
    expected = np.linalg.solve(gram, y[seen].T @ row[seen]) @ y.T
    _, scores = model.recommend(data.train[[3]], n=1, exclude_seen=False)
    assert scores[0, 0] == pytest.approx(expected.max(), rel=1e-4)
    # a row the model never saw (a new person) is scored from that row alone
    fresh = sparse.csr_matrix(data.train[[3]].toarray())
    _, again = model.recommend(fresh, n=1, exclude_seen=False)
    assert again[0, 0] == pytest.approx(scores[0, 0], rel=1e-5)


# -- the hybrid chooses the informative component ---------------------------------------------
def test_hybrid_weights_favour_the_informative_component() -> None:
    noisy = planted(seed=2, informative_features=False)  # attributes shuffled across blocks
    model = Hybrid(components=(ItemNeighbours(k=20), ContentBased()), grid_step=0.25).fit(
        noisy.train, item_features=noisy.features
    )
    assert model.weights_.tolist()[0] > model.weights_.tolist()[1]  # the informative one is first here, last below
    assert model.weights_.sum() == pytest.approx(1.0)
    informative = planted(seed=2)
    model = Hybrid(components=(Popularity(), ContentBased()), grid_step=0.25).fit(
        informative.train, item_features=informative.features
    )
    assert model.weights_.tolist()[1] > model.weights_.tolist()[0]
    # the validation split withholds a second block item, which ties with the first: rank 1.5 of 2
    assert model.validation_ndcg_ == pytest.approx(1 / np.log2(2.5), abs=0.03)


def test_hybrid_refuses_a_bad_grid(data: Planted) -> None:
    with pytest.raises(ValidationError) as caught:
        Hybrid(components=(Popularity(),), grid_step=0.3).fit(data.train)
    assert caught.value.field == "grid_step"
