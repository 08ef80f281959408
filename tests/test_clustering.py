"""Behavioural clustering on people with planted groups, against the groups and plain references.

The generator plants behavioural groups (regulars, window shoppers who never buy, lapsed
one-timers, big spenders) with realistic columns: counts, money, day spans, and the nulls
``features()`` has for people without (repeat) orders. Every algorithm must find the groups;
numbers, profiles and the projection are checked against pandas and scikit-learn references.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from matplotlib import colormaps
from matplotlib.image import imread
from scipy.cluster.hierarchy import cut_tree, linkage
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score, silhouette_score

from tenure.errors import ValidationError
from tenure.segments import clustering
from tenure.segments.clustering import (
    ALGORITHMS,
    DEFAULT_FEATURES,
    SMALL_POPULATION,
    Clustering,
    _cut,
    _names,
    fit_clusters,
    plot_projection,
)

GROUPS = ("regulars", "window shoppers", "lapsed one-timers", "big spenders")  # largest first
SIZES = (480, 340, 270, 140)


def planted(groups: tuple[str, ...] = GROUPS, sizes: tuple[int, ...] = SIZES, seed: int = 0) -> pd.DataFrame:
    """People of the given groups, shuffled, with the truth in column ``group``."""
    rng = np.random.default_rng(seed)
    parts = []
    for group, n in zip(groups, sizes, strict=True):
        zeros = np.zeros(n, dtype=int)
        if group == "big spenders":
            orders, aov, ipt = rng.poisson(25, n) + 10, rng.lognormal(np.log(250), 0.2, n), 15.0
            tenure, recency = rng.uniform(250, 700, n), rng.exponential(6, n) + 0.5
            events, sessions, active = rng.poisson(150, n), rng.poisson(30, n), rng.poisson(100, n) + 20
            categories = rng.integers(4, 8, n)
        elif group == "regulars":
            orders, aov, ipt = rng.poisson(3, n) + 2, rng.lognormal(np.log(40), 0.25, n), 60.0
            tenure, recency = rng.uniform(150, 500, n), rng.uniform(10, 50, n)
            events, sessions, active = rng.poisson(20, n), rng.poisson(5, n), rng.poisson(20, n) + 3
            categories = rng.integers(1, 4, n)
        elif group == "window shoppers":
            orders, aov, ipt = zeros, np.full(n, np.nan), np.nan
            tenure, recency = rng.uniform(5, 300, n), np.full(n, np.nan)
            events, sessions, active = rng.poisson(40, n), rng.poisson(9, n), rng.poisson(12, n) + 2
            categories = zeros
        else:  # lapsed one-timers
            orders, aov, ipt = zeros + 1, rng.lognormal(np.log(30), 0.3, n), np.nan
            recency = rng.uniform(200, 400, n)
            tenure = recency + rng.uniform(0, 40, n)
            events, sessions, active = rng.poisson(0.3, n), zeros, rng.integers(1, 3, n)
            categories = zeros + 1
        parts.append(pd.DataFrame({
            "group": group,
            "identified": orders > 0,
            "orders": orders.astype("int64"),
            "revenue": np.where(orders > 0, orders * np.nan_to_num(aov), 0.0),
            "aov": aov,
            "recency_days": recency,
            "tenure_days": tenure,
            "events_30d": events.astype("int64"),
            "sessions_30d": sessions.astype("int64"),
            "active_days": active.astype("int64"),
            "distinct_categories": categories.astype("int64"),
            "ipt_mean_days": np.where(orders >= 2, rng.lognormal(np.log(ipt), 0.3, n), np.nan),
            "channel": "email",
        }))
    people = pd.concat(parts, ignore_index=True).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    people.insert(0, "person_id", [f"p{i:05d}" for i in rng.permutation(len(people))])
    return people


def truth_of(people: pd.DataFrame, clustering: Clustering) -> pd.Series:
    """The planted group of each labelled person, in the order of ``clustering.labels``."""
    return people.set_index("person_id")["group"].reindex(clustering.labels["person_id"]).reset_index(drop=True)


def cluster_of(people: pd.DataFrame, clustering: Clustering) -> dict[str, int]:
    """The cluster holding most of each planted group."""
    truth = truth_of(people, clustering)
    return {g: int(clustering.labels["cluster"][truth == g].mode()[0]) for g in truth.unique()}


def reference_matrix(people: pd.DataFrame, columns: tuple[str, ...]) -> np.ndarray:
    """The documented preprocessing, restated: impute, log1p skewed non-negative columns, z-score."""
    frame = people.sort_values("person_id")
    out = []
    for column in columns:
        values = frame[column].astype("float64")
        if column in ("recency_days", "ipt_mean_days"):
            values = values.fillna(frame["tenure_days"])
        elif column == "aov":
            values = values.fillna(0.0)
        else:
            values = values.fillna(values.median())
        if values.min() >= 0 and values.skew() > 1:
            values = np.log1p(values)
        out.append((values - values.mean()) / values.std(ddof=0))
    return np.column_stack(out)


@pytest.fixture(scope="module")
def people() -> pd.DataFrame:
    return planted()


@pytest.fixture(scope="module")
def fits(people: pd.DataFrame) -> dict[str, Clustering]:
    """Every algorithm, k chosen automatically."""
    return {algorithm: fit_clusters(people, algorithm=algorithm) for algorithm in ALGORITHMS}


# -- recovery of planted groups ---------------------------------------------------------------
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_algorithm_recovers_the_planted_groups(people: pd.DataFrame, fits: dict[str, Clustering], algorithm: str) -> None:
    result = fits[algorithm]
    labels, truth = result.labels["cluster"], truth_of(people, result)
    kept = labels >= 0
    assert adjusted_rand_score(truth[kept], labels[kept]) >= 0.9
    if algorithm == "dbscan":
        assert (~kept).mean() <= 0.05
        assert result.k == len(GROUPS) and result.selection.empty
    else:
        assert kept.all()
    assert result.labels["person_id"].tolist() == sorted(people["person_id"])
    assert result.features == DEFAULT_FEATURES


@pytest.mark.parametrize("algorithm", ["kmeans", "gmm", "agglomerative"])
def test_automatic_k_finds_the_planted_number(people: pd.DataFrame, fits: dict[str, Clustering], algorithm: str) -> None:
    result = fits[algorithm]
    assert result.k == len(GROUPS)
    selection = result.selection
    assert selection["k"].tolist() == list(range(2, 9))
    pick = selection["score"].idxmin() if algorithm == "gmm" else selection["score"].idxmax()
    assert selection["k"][pick] == len(GROUPS)
    three = planted(groups=GROUPS[1:], sizes=SIZES[1:], seed=3)  # without the regulars
    again = fit_clusters(three, algorithm=algorithm, k_range=(2, 6))
    assert again.k == 3 and again.selection["k"].tolist() == [2, 3, 4, 5, 6]
    assert adjusted_rand_score(truth_of(three, again), again.labels["cluster"]) >= 0.9


@pytest.mark.parametrize("algorithm", ["kmeans", "gmm"])
def test_big_populations_choose_k_on_a_sample_and_label_everyone(
    people: pd.DataFrame, monkeypatch: pytest.MonkeyPatch, algorithm: str
) -> None:
    monkeypatch.setattr(clustering, "SELECTION_SAMPLE", 400)  # a third of the people, as 20,000 of 60,000
    result = fit_clusters(people, algorithm=algorithm)
    assert result.k == len(GROUPS) and len(result.labels) == len(people)
    assert adjusted_rand_score(truth_of(people, result), result.labels["cluster"]) >= 0.9


@pytest.mark.parametrize("algorithm", ["kmeans", "gmm", "agglomerative"])
def test_a_given_k_is_used(people: pd.DataFrame, algorithm: str) -> None:
    result = fit_clusters(people, algorithm=algorithm, k=4, seed=7)
    assert result.k == 4 and result.selection.empty
    assert adjusted_rand_score(truth_of(people, result), result.labels["cluster"]) >= 0.9
    split = fit_clusters(people, algorithm=algorithm, k=8)
    assert split.k == 8 or (algorithm == "gmm" and split.k >= 6)  # a component may end up empty
    assert sorted(split.labels["cluster"].unique()) == list(range(split.k))
    names = split.profiles["name"]
    assert names.is_unique
    phrases = [frozenset(re.sub(r" \d+$", "", name).lower().split(", ")) for name in names]
    assert len(set(phrases)) + names.str.contains(r" \d+$").sum() == split.k  # "Quiet, lapsed" vs "Lapsed, quiet"


def test_names_are_made_unique() -> None:
    phrases = [["big spenders", "engaged"], ["engaged", "big spenders"], ["big spenders", "engaged", "quiet"], None, []]
    assert _names(phrases) == ["Big spenders, engaged", "Engaged, big spenders", "Big spenders, engaged, quiet",
                               "Outliers", "Typical"]
    assert _names([["a", "b"], ["a", "b"], ["b", "a", "c"], ["b"]]) == ["A, b", "A, b 2", "B, a, c", "B"]


def test_ward_cuts_match_scipy() -> None:
    x = np.random.default_rng(4).normal(size=(300, 3))
    tree = linkage(x, method="ward")
    for k in (2, 3, 5, 8, 299):
        expected = cut_tree(tree, n_clusters=k)[:, 0]
        assert adjusted_rand_score(expected, _cut(tree, len(x), k)) == 1.0 and len(np.unique(_cut(tree, len(x), k))) == k


def test_fits_are_deterministic_and_ignore_row_order(people: pd.DataFrame, fits: dict[str, Clustering]) -> None:
    shuffled = people.sample(frac=1.0, random_state=11)
    for algorithm in ("kmeans", "gmm"):
        again = fit_clusters(shuffled, algorithm=algorithm)
        pd.testing.assert_frame_equal(again.labels, fits[algorithm].labels)
        pd.testing.assert_frame_equal(again.profiles, fits[algorithm].profiles)
        pd.testing.assert_frame_equal(again.projection, fits[algorithm].projection)


# -- cluster numbers ----------------------------------------------------------------------------
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_first_run_numbers_clusters_by_size(people: pd.DataFrame, fits: dict[str, Clustering], algorithm: str) -> None:
    assert cluster_of(people, fits[algorithm]) == {group: number for number, group in enumerate(GROUPS)}


@pytest.mark.parametrize("algorithm", ["kmeans", "gmm", "agglomerative"])
def test_a_refit_keeps_each_persons_number(people: pd.DataFrame, fits: dict[str, Clustering], algorithm: str) -> None:
    first = fits[algorithm].labels
    shuffled = people.sample(frac=1.0, random_state=5)
    plain = fit_clusters(shuffled, algorithm=algorithm, seed=1, previous=first)
    assert (plain.labels["cluster"] == first["cluster"]).mean() >= 0.99
    # numbers unlike size order, and known for a third of the people only, must still be followed
    renumber = {0: 2, 1: 3, 2: 0, 3: 1}
    previous = first.assign(cluster=first["cluster"].map(renumber)).sample(frac=0.33, random_state=2)
    followed = fit_clusters(shuffled, algorithm=algorithm, seed=2, previous=previous)
    assert (followed.labels["cluster"] == first["cluster"].map(renumber)).mean() >= 0.99
    assert followed.profiles["cluster"].tolist() == [0, 1, 2, 3]


def test_remaining_groups_keep_their_numbers_when_one_goes(people: pd.DataFrame, fits: dict[str, Clustering]) -> None:
    first = fits["kmeans"]
    before = cluster_of(people, first)
    fewer = people[people["group"] != "window shoppers"]  # cluster 1, the second largest
    result = fit_clusters(fewer, previous=first.labels, seed=4)
    assert result.k == 3
    after = cluster_of(fewer, result)
    assert after == {g: before[g] for g in GROUPS if g != "window shoppers"} and 1 not in after.values()
    kept = first.labels.set_index("person_id")["cluster"].reindex(result.labels["person_id"]).to_numpy()
    assert (result.labels["cluster"].to_numpy() == kept).mean() >= 0.99


def test_a_new_group_takes_the_smallest_free_number() -> None:
    three = planted(groups=GROUPS[:3], sizes=SIZES[:3], seed=8)
    first = fit_clusters(three, k=3)
    previous = first.labels.assign(cluster=first.labels["cluster"].map({0: 2, 1: 0, 2: 3}))
    four = pd.concat([three, planted(groups=GROUPS[3:], sizes=SIZES[3:], seed=9).assign(
        person_id=lambda f: "new-" + f["person_id"])], ignore_index=True)
    result = fit_clusters(four, k=4, previous=previous)
    assert cluster_of(four, result) == {"regulars": 2, "window shoppers": 0, "lapsed one-timers": 3, "big spenders": 1}


def test_a_cluster_overlapping_nobody_takes_a_free_number_not_a_leftover(fits: dict[str, Clustering], people: pd.DataFrame) -> None:
    """The regulars were not in the previous run: they get 0, the smallest free number, not 2,
    the number left over by the lapsed one-timers who are gone."""
    first = fits["kmeans"]
    regulars = people.loc[people["group"] == "regulars", "person_id"]
    previous = first.labels[~first.labels["person_id"].isin(regulars)]
    now = people[people["group"] != "lapsed one-timers"]
    result = fit_clusters(now, k=3, previous=previous)
    assert cluster_of(now, result) == {"regulars": 0, "window shoppers": 1, "big spenders": 3}


def test_dbscan_noise_is_minus_one_and_outliers(people: pd.DataFrame) -> None:
    far = planted(groups=GROUPS, sizes=SIZES, seed=0)
    odd = far.index[:3]  # three people unlike anyone: huge spend, no visits, brand new
    far.loc[odd, ["orders", "revenue", "aov", "events_30d", "tenure_days"]] = [400, 5e6, 12_500.0, 0, 1.0]
    result = fit_clusters(far, algorithm="dbscan")
    noise = result.labels.set_index("person_id")["cluster"][far.loc[odd, "person_id"]]
    assert (noise == -1).all()
    row = result.profiles.iloc[-1]
    assert row["cluster"] == -1 and row["name"] == "Outliers"
    assert row["size"] == (result.labels["cluster"] == -1).sum()
    assert result.k == result.profiles["cluster"].ge(0).sum() == len(GROUPS)


# -- profiles -----------------------------------------------------------------------------------
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_profiles_match_a_pandas_reference(people: pd.DataFrame, fits: dict[str, Clustering], algorithm: str) -> None:
    result = fits[algorithm]
    merged = people.merge(result.labels, on="person_id")
    grouped = merged.groupby("cluster")
    profiles = result.profiles.set_index("cluster").sort_index()
    assert result.profiles["cluster"].tolist() == sorted(profiles.index, key=lambda c: (c < 0, c))  # noise last
    assert profiles["size"].sum() == len(people)
    assert profiles["size"].to_dict() == grouped.size().to_dict()
    assert profiles["share"].sum() == pytest.approx(1.0) and profiles["revenue_share"].sum() == pytest.approx(1.0)
    revenue = grouped["revenue"].sum() / people["revenue"].sum()
    pd.testing.assert_series_equal(profiles["revenue_share"], revenue, check_names=False)
    for column in DEFAULT_FEATURES:
        pd.testing.assert_series_equal(profiles[f"mean_{column}"], grouped[column].mean(), check_names=False)
    assert profiles["name"].is_unique
    assert list(result.profiles.columns) == [
        "cluster", "name", "size", "share", "revenue_share", *(f"mean_{c}" for c in DEFAULT_FEATURES), "distinguishing",
    ]


def test_profiles_describe_the_planted_groups(people: pd.DataFrame, fits: dict[str, Clustering]) -> None:
    result = fits["kmeans"]
    number = cluster_of(people, result)
    profiles = result.profiles.set_index("cluster")
    x = reference_matrix(people, DEFAULT_FEATURES)
    labels = result.labels["cluster"].to_numpy()
    observed = people.sort_values("person_id")[list(DEFAULT_FEATURES)].notna().to_numpy()
    for cluster, profile in profiles.iterrows():
        entries = profile["distinguishing"].split(", ")
        assert len(entries) == 3
        parsed = [re.fullmatch(r"(\w+) ([+-]\d+\.\d)σ", entry) for entry in entries]
        assert all(parsed)
        # top 3 by |centre| in the reference space, among features most members really have
        centre = x[labels == cluster].mean(axis=0)
        own = observed[labels == cluster].mean(axis=0) >= 0.5
        ranked = sorted((i for i in range(len(centre)) if own[i]), key=lambda i: -abs(centre[i]))[:3]
        assert [(m[1], float(m[2])) for m in parsed if m] == [(DEFAULT_FEATURES[i], round(centre[i], 1)) for i in ranked]
    big = profiles.loc[number["big spenders"]]
    assert re.search(r"revenue \+\d", big["distinguishing"])
    assert "big spenders" in big["name"].lower()
    assert big["revenue_share"] > 0.5
    shoppers = profiles.loc[number["window shoppers"]]
    assert shoppers["name"].startswith("Non-buyers") and shoppers["revenue_share"] == 0.0
    assert "recency_days" not in shoppers["distinguishing"]  # imputed for all of them, so not a trait
    assert "lapsed" in profiles.loc[number["lapsed one-timers"]]["name"].lower()


def test_booleans_constants_and_a_single_column(people: pd.DataFrame) -> None:
    frame = people.assign(constant=3.0)
    result = fit_clusters(frame, k=2, columns=("identified", "constant", "events_30d"))
    assert result.features == ("identified", "events_30d")
    merged = frame.merge(result.labels, on="person_id")
    shares = merged.groupby("cluster")["identified"].mean()
    pd.testing.assert_series_equal(result.profiles.set_index("cluster")["mean_identified"], shares, check_names=False)
    single = fit_clusters(frame, k=2, columns=("revenue",))
    assert single.features == ("revenue",) and (single.projection["y"] == 0).all()


def test_revenue_shares_without_revenue_among_the_columns(people: pd.DataFrame) -> None:
    result = fit_clusters(people, k=2, columns=("orders", "events_30d"))
    merged = people.merge(result.labels, on="person_id")
    expected = merged.groupby("cluster")["revenue"].sum() / people["revenue"].sum()
    pd.testing.assert_series_equal(result.profiles.set_index("cluster")["revenue_share"], expected, check_names=False)
    free = fit_clusters(people.assign(revenue=0.0), k=2, columns=("orders", "events_30d"))
    assert (free.profiles["revenue_share"] == 0.0).all()


# -- projection and plot ------------------------------------------------------------------------
def test_projection_is_pca_of_the_standardised_features(people: pd.DataFrame, fits: dict[str, Clustering]) -> None:
    expected = PCA(n_components=2).fit_transform(reference_matrix(people, DEFAULT_FEATURES))
    for algorithm, result in fits.items():
        projection = result.projection
        assert list(projection.columns) == ["person_id", "x", "y", "cluster"]
        pd.testing.assert_frame_equal(projection[["person_id", "cluster"]], result.labels)
        for i, axis in enumerate(("x", "y")):
            got = projection[axis].to_numpy()
            sign = np.sign(got @ expected[:, i])
            np.testing.assert_allclose(got, sign * expected[:, i], atol=1e-8, err_msg=algorithm)
    points = fits["kmeans"].projection
    assert silhouette_score(points[["x", "y"]], truth_of(people, fits["kmeans"])) > 0.5


@pytest.mark.parametrize("algorithm", ["kmeans", "dbscan"])
def test_plot_projection_draws_every_cluster_in_its_colour(
    fits: dict[str, Clustering], tmp_path: Path, algorithm: str
) -> None:
    result = fits[algorithm]
    path = plot_projection(result, tmp_path / "charts" / "clusters.png", max_points=1_000)
    assert path == tmp_path / "charts" / "clusters.png"
    image = imread(path)
    assert image.shape == (600, 1000, 4)
    pixels = image[..., :3].reshape(-1, 3)
    assert len(np.unique(np.round(pixels * 255) @ [65536, 256, 1])) >= result.k + 1
    palette = colormaps["tab10"]
    for cluster in result.profiles["cluster"]:
        colour = np.array([0.6, 0.6, 0.6]) if cluster == -1 else np.array(palette(int(cluster))[:3])
        assert (np.abs(pixels - colour).max(axis=1) < 0.01).sum() >= 20, cluster
    with pytest.raises(ValidationError) as caught:
        plot_projection(result, tmp_path / "none.png", max_points=0)
    assert caught.value.field == "max_points"


# -- errors -------------------------------------------------------------------------------------
def small(n: int) -> pd.DataFrame:
    return planted(sizes=(n, 0, 0, 0), seed=1)


def big() -> pd.DataFrame:
    n = SMALL_POPULATION + 1
    rng = np.random.default_rng(0)
    return pd.DataFrame({"person_id": np.arange(n), "orders": rng.integers(0, 5, n), "revenue": rng.random(n)})


ERRORS: list[tuple[str, Any, dict[str, Any]]] = [
    ("algorithm", None, {"algorithm": "spectral"}),
    ("algorithm", big, {"algorithm": "agglomerative", "columns": ("orders", "revenue")}),
    ("algorithm", big, {"algorithm": "dbscan", "columns": ("orders", "revenue")}),
    ("columns", None, {"columns": ("orders", "nope")}),
    ("columns", None, {"columns": ()}),
    ("columns", None, {"columns": ("orders", "orders")}),
    ("columns", None, {"columns": ("orders", "channel")}),
    ("columns", lambda: planted().assign(flat=1.0, none=np.nan), {"columns": ("flat", "none")}),
    ("columns", lambda: planted().assign(revenue=np.inf), {}),
    ("features", lambda: small(9), {}),
    ("features", lambda: small(11), {"k": 6}),
    ("features", lambda: small(15), {"k_range": (8, 10)}),
    ("features", lambda: planted().drop(columns="person_id"), {}),
    ("features", lambda: pd.concat([planted().head(20)] * 2), {}),
    ("k", None, {"k": 1}),
    ("k", lambda: small(30), {"k": 31}),
    ("k", None, {"k": True}),
    ("k", None, {"k": 2.5}),
    ("k", None, {"algorithm": "dbscan", "k": 3}),
    ("k_range", None, {"k_range": (1, 5)}),
    ("k_range", None, {"k_range": (5, 3)}),
    ("k_range", None, {"k_range": (2,)}),
    ("k_range", None, {"k_range": ("2", 8)}),
    ("previous", None, {"previous": pd.DataFrame({"person_id": ["p00001"]})}),
    ("previous", None, {"previous": pd.DataFrame({"person_id": ["a", "a"], "cluster": [0, 1]})}),
]


@pytest.mark.parametrize(("field", "make", "options"), ERRORS)
def test_invalid_input_names_the_field(people: pd.DataFrame, field: str, make: Any, options: dict[str, Any]) -> None:
    frame = people if make is None else make()
    with pytest.raises(ValidationError) as caught:
        fit_clusters(frame, **options)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")


def test_the_smallest_valid_inputs_fit(people: pd.DataFrame) -> None:
    assert fit_clusters(small(10)).k >= 2
    assert fit_clusters(small(12), k=6).k == 6
    assert fit_clusters(people, k_range=(3, 3)).selection["k"].tolist() == [3]
