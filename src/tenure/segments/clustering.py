"""Behavioural clusters of people from their features, with stable numbers and readable profiles.

Pure functions over the frame ``Workspace.features()`` returns: no workspace, no engine. The
people are sorted by ``person_id`` first, so the row order of the input never matters.

Preprocessing, in this order, over ``columns``:

1. booleans become 0/1;
2. missing values are imputed: ``recency_days`` and ``ipt_mean_days`` (null without orders, or
   without a second order) take the person's ``tenure_days`` -- no (repeat) order since they
   arrived -- or the column's largest value when the frame has no tenure; ``aov``,
   ``ipt_std_days`` and ``top_category_share`` take 0 (nothing bought); any other column takes
   its median;
3. columns that are then constant are dropped (an error if none remain);
4. a non-negative column whose sample skewness (pandas ``skew``) exceeds 1 -- counts, money and
   day spans usually -- is replaced by ``log1p`` of itself;
5. every column is standardised (``StandardScaler``: mean 0, population standard deviation 1).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.cluster.hierarchy import linkage
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import DBSCAN, KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import silhouette_score
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from tenure.errors import ValidationError

log = logging.getLogger(__name__)

ALGORITHMS: tuple[str, ...] = ("kmeans", "gmm", "agglomerative", "dbscan")
DEFAULT_FEATURES: tuple[str, ...] = (
    "orders", "revenue", "aov", "recency_days", "tenure_days",
    "events_30d", "sessions_30d", "active_days", "distinct_categories", "ipt_mean_days",
)
SMALL_POPULATION = 10_000  # agglomerative and dbscan refuse more people than this (O(n^2))
SELECTION_SAMPLE = 20_000  # people each candidate k is fitted and judged on; the chosen k is refit on all
SILHOUETTE_SAMPLE = 3_000  # of those, people the silhouette of a candidate is estimated on
SKEWED = 1.0  # sample skewness above which a non-negative column is log1p-transformed
NAME_THRESHOLD = 0.5  # |standardised difference| a feature needs to appear in a cluster's name
NOISE = -1
OUTLIERS = "Outliers"
FILL_WITH_TENURE = ("recency_days", "ipt_mean_days")
FILL_WITH_ZERO = ("aov", "ipt_std_days", "top_category_share")
PURCHASES = frozenset(("orders", "revenue", "aov", "distinct_categories", "ipt_mean_days", "ipt_std_days"))
# Features that say much the same thing; a name takes at most one phrase from each family.
FAMILIES: dict[str, str] = {
    "revenue": "spend", "aov": "spend", "orders": "frequency", "ipt_mean_days": "frequency",
    "ipt_std_days": "frequency", "distinct_categories": "breadth", "top_category_share": "breadth",
    **{f"{kind}_{days}d": "activity" for kind in ("events", "sessions") for days in (7, 30, 90)},
    "active_days": "activity",
}
# How a cluster reads when its mean of a feature is far above / below everyone's.
PHRASES: dict[str, tuple[str, str]] = {
    "revenue": ("big spenders", "low spenders"),
    "orders": ("frequent buyers", "few orders"),
    "aov": ("large baskets", "small baskets"),
    "recency_days": ("lapsed", "recent buyers"),
    "tenure_days": ("long-standing", "newcomers"),
    "events_7d": ("very active this week", "quiet this week"),
    "events_30d": ("highly active", "quiet"),
    "events_90d": ("active this quarter", "quiet this quarter"),
    "sessions_7d": ("visiting this week", "not visiting this week"),
    "sessions_30d": ("frequent visitors", "rare visitors"),
    "sessions_90d": ("regular visitors", "rare visitors"),
    "active_days": ("engaged", "occasional"),
    "distinct_categories": ("broad shoppers", "narrow shoppers"),
    "ipt_mean_days": ("slow repeaters", "fast repeaters"),
    "ipt_std_days": ("irregular buyers", "regular buyers"),
    "top_category_share": ("category loyal", "category hoppers"),
    "identified": ("identified", "anonymous"),
}
Matrix = NDArray[np.float64]
Labels = NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Clustering:
    """One fit: who is in which cluster, what each cluster looks like, and a 2-D view.

    ``k`` counts the clusters found (noise aside; a mixture component can end up empty, so
    gmm may find fewer than asked); ``features`` are the columns used, constant ones dropped.
    ``labels``: person_id, cluster (0 is the largest on a first run; with ``previous`` the
    numbers follow the earlier run and may have gaps; DBSCAN's noise is -1), by person_id.
    ``profiles``: cluster, name, size, share, revenue_share, ``mean_<feature>`` per feature
    (raw values, nulls skipped) and ``distinguishing``, one row per cluster, noise last.
    ``projection``: person_id, x, y, cluster -- the first two principal components of the
    standardised features. ``selection``: k and score (silhouette, or BIC for gmm) of each
    candidate; empty when k was given or for dbscan.
    """

    algorithm: str
    k: int
    features: tuple[str, ...]
    labels: pd.DataFrame
    profiles: pd.DataFrame
    projection: pd.DataFrame
    selection: pd.DataFrame


def fit_clusters(
    features: pd.DataFrame,
    *,
    algorithm: str = "kmeans",
    k: int | None = None,
    columns: Sequence[str] = DEFAULT_FEATURES,
    previous: pd.DataFrame | None = None,
    k_range: tuple[int, int] = (2, 8),
    seed: int = 0,
) -> Clustering:
    """Cluster people on ``columns`` of their features.

    Parameters
    ----------
    features : one row per person: ``person_id`` and the numeric ``columns`` (nulls allowed).
    algorithm : ``kmeans`` (``KMeans``), ``gmm`` (full-covariance ``GaussianMixture``),
        ``agglomerative`` (Ward linkage) or ``dbscan``; the last two at most
        ``SMALL_POPULATION`` people.
    k : clusters to find; None chooses over ``k_range`` (inclusive), fitting each candidate
        on a seeded sample of ``SELECTION_SAMPLE`` people: the best silhouette (estimated on
        ``SILHOUETTE_SAMPLE`` of them; the chosen k is then refit on all) for kmeans and
        agglomerative, the lowest BIC for gmm (whose mixtures are always fitted on that
        sample and then assign everyone). DBSCAN finds k itself, and refuses one.
    previous : person_id, cluster of an earlier run. Clusters are renumbered to overlap it
        most (Hungarian assignment on the contingency table); a cluster overlapping no
        earlier one takes the smallest number still free.
    seed : the random state of every random choice, so a fit is reproducible.

    DBSCAN uses ``min_samples = max(4, 2 * d)`` for d features (Sander et al., 1998) and
    takes ``eps`` at the knee of the k-distance graph (Ester et al., 1996): each person's
    distance to their ``min_samples - 1``-th neighbour, sorted, and the point of that curve
    farthest below the chord from its first to its last point, both axes scaled to [0, 1]
    (the "kneedle" rule). People beyond the knee are border points or noise.

    Example
    -------
    >>> fit_clusters(ws.features(), k=4).profiles[["cluster", "name", "share"]]  # doctest: +SKIP
    """
    data, k_min = _checked(features, algorithm, k, columns, previous, k_range)
    raw, used = _usable(data, tuple(columns))
    x = _standardise(_imputed(raw, data), used)
    ks = [c for c in range(k_min, k_range[1] + 1) if 2 * c <= len(x)] if k is None else [k]
    with threadpool_limits(1):  # little to gain from threads here, much to lose to spinning ones on a busy host
        if algorithm == "dbscan":
            found, scores = _dbscan(x), list[tuple[int, float]]()
        elif algorithm == "gmm":
            found, scores = _gmm(x, ks, seed, k is None)
        else:
            found, scores = _by_silhouette(x, ks, algorithm, seed, k is None)
    labels = _numbered(data["person_id"], found, previous)
    clusters = int(len(set(labels.tolist()) - {NOISE}))
    frame = pd.DataFrame({"person_id": data["person_id"].to_numpy(), "cluster": labels})
    projection = _projection(x, seed)
    return Clustering(
        algorithm=algorithm,
        k=clusters,
        features=used,
        labels=frame,
        profiles=_profiles(raw, x, labels, _revenue(data)),
        projection=frame.assign(x=projection[:, 0], y=projection[:, 1])[["person_id", "x", "y", "cluster"]],
        selection=pd.DataFrame({"k": pd.Series([c for c, _ in scores], dtype="int64"),
                                "score": pd.Series([s for _, s in scores], dtype="float64")}),
    )


def plot_projection(clustering: Clustering, path: Path, *, max_points: int = 20_000) -> Path:
    """Save the 2-D projection as a 1000x600 PNG, one tab10/tab20 colour per cluster, noise grey.

    At most ``max_points`` people are drawn (a seeded random sample); the legend lists every
    cluster's number, suggested name and share.
    """
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    if max_points < 1:
        raise ValidationError("max_points", f"must be at least 1; got {max_points}")
    points = clustering.projection
    if len(points) > max_points:
        points = points.iloc[np.sort(np.random.default_rng(0).choice(len(points), max_points, replace=False))]
    palette = colormaps["tab10" if clustering.profiles["cluster"].max() < 10 else "tab20"]
    figure = Figure(figsize=(10, 6), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_axes((0.07, 0.09, 0.56, 0.83))
    handles = []
    for profile in clustering.profiles.itertuples(index=False):
        cluster = int(profile.cluster)
        colour = (0.6, 0.6, 0.6, 1.0) if cluster == NOISE else palette(cluster % palette.N)
        mine = points[points["cluster"] == cluster]
        axes.scatter(mine["x"], mine["y"], s=4, color=colour, linewidths=0, rasterized=True)
        handles.append(Line2D([], [], linestyle="", marker="o", markersize=7, color=colour,
                              label=f"{cluster}: {profile.name} ({profile.share:.0%})"))
    axes.set_xlabel("first principal component")
    axes.set_ylabel("second principal component")
    axes.set_title(f"{clustering.algorithm}: {clustering.k} clusters")
    figure.legend(handles=handles, loc="center left", bbox_to_anchor=(0.65, 0.5), fontsize="small", frameon=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=100)
    return path


# -- checks and preprocessing ---------------------------------------------------------------
def _checked(
    features: pd.DataFrame, algorithm: str, k: int | None, columns: Sequence[str],
    previous: pd.DataFrame | None, k_range: tuple[int, int],
) -> tuple[pd.DataFrame, int]:
    """The people sorted by person_id, and the least k to try; a ValidationError if anything is off."""
    if algorithm not in ALGORITHMS:
        raise ValidationError("algorithm", f"must be one of {', '.join(ALGORITHMS)}; got {algorithm!r}")
    if (not isinstance(k_range, tuple | list) or len(k_range) != 2 or not all(_is_int(v) for v in k_range)
            or not 2 <= k_range[0] <= k_range[1]):
        raise ValidationError("k_range", f"must be (low, high) integers with 2 <= low <= high; got {k_range!r}")
    if "person_id" not in features.columns:
        raise ValidationError("features", "needs a person_id column")
    if features["person_id"].isna().any() or features["person_id"].duplicated().any():
        raise ValidationError("features", "person_id must be present and unique on every row")
    wanted = tuple(columns)
    if not wanted or len(set(wanted)) != len(wanted) or "person_id" in wanted:
        raise ValidationError("columns", "must name distinct feature columns, person_id excluded")
    unknown = [c for c in wanted if c not in features.columns]
    if unknown:
        raise ValidationError("columns", f"unknown column(s) {', '.join(unknown)}")
    for column in wanted:
        dtype = features[column].dtype
        if not (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)):
            raise ValidationError("columns", f"{column} is not numeric ({dtype})")
    n = len(features)
    if algorithm == "dbscan" and k is not None:
        raise ValidationError("k", "dbscan finds the number of clusters itself; leave k unset")
    if k is not None and (not _is_int(k) or not 2 <= k <= n):
        raise ValidationError("k", f"must be an integer from 2 to the number of people ({n}); got {k!r}")
    k_min = k_range[0] if k is None else k
    if algorithm == "dbscan":
        k_min = 2
    if n < max(10, 2 * k_min):
        raise ValidationError("features", f"{n} people are too few: {algorithm} with k={k_min} needs {max(10, 2 * k_min)}")
    if algorithm in ("agglomerative", "dbscan") and n > SMALL_POPULATION:
        raise ValidationError("algorithm", f"{algorithm} needs time and memory quadratic in the people; "
                                           f"{n:,} exceed {SMALL_POPULATION:,}: use kmeans or gmm")
    if previous is not None and not _is_labelling(previous):
        raise ValidationError("previous", "needs person_id and integer cluster columns, one row per person")
    return features.sort_values("person_id", kind="stable").reset_index(drop=True), k_min


def _usable(data: pd.DataFrame, wanted: tuple[str, ...]) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """The raw values (floats, nulls kept) of the columns that are not constant once imputed."""
    raw = data[list(wanted)].astype("float64")
    if not np.isfinite(raw.fillna(0.0).to_numpy()).all():
        raise ValidationError("columns", "values must be finite (nulls are allowed)")
    filled = _imputed(raw, data)
    used = tuple(c for c in wanted if filled[c].nunique() > 1)
    if not used:
        raise ValidationError("columns", f"every column is constant over these people: {', '.join(wanted)}")
    if len(used) < len(wanted):
        log.info("clustering drops constant column(s) %s", ", ".join(c for c in wanted if c not in used))
    return raw[list(used)], used


def _revenue(data: pd.DataFrame) -> NDArray[np.float64]:
    """Each person's revenue, 0 when unknown (or when the frame has none), for revenue shares."""
    if "revenue" not in data.columns:
        return np.zeros(len(data))
    values: NDArray[np.float64] = data["revenue"].astype("float64").fillna(0.0).to_numpy()
    return values


def _is_labelling(previous: pd.DataFrame) -> bool:
    if not {"person_id", "cluster"} <= set(previous.columns) or previous["person_id"].duplicated().any():
        return False
    numbers = pd.to_numeric(previous["cluster"], errors="coerce")
    return bool(numbers.notna().all() and (numbers == numbers.round()).all())


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _imputed(raw: pd.DataFrame, data: pd.DataFrame) -> pd.DataFrame:
    """Missing values filled by the rules in the module docstring."""
    tenure = data["tenure_days"].astype("float64") if "tenure_days" in data.columns else None
    filled: dict[str, Any] = {}
    for column in raw.columns:
        values = raw[column]
        if column in FILL_WITH_TENURE:
            largest = values.max() if values.notna().any() else 0.0
            fill = tenure.fillna(largest) if tenure is not None else largest
        elif column in FILL_WITH_ZERO:
            fill = 0.0
        else:
            fill = values.median() if values.notna().any() else 0.0
        filled[column] = values.fillna(fill)
    return pd.DataFrame(filled, index=raw.index)


def _standardise(filled: pd.DataFrame, used: tuple[str, ...]) -> Matrix:
    """log1p of skewed non-negative columns, then z-scores."""
    columns = []
    for column in used:
        values = filled[column]
        if values.min() >= 0 and values.skew() > SKEWED:
            values = np.log1p(values)
        columns.append(values.to_numpy(dtype="float64"))
    scaled: Matrix = StandardScaler().fit_transform(np.column_stack(columns))
    return scaled


# -- the algorithms -------------------------------------------------------------------------
def _by_silhouette(
    x: Matrix, ks: list[int], algorithm: str, seed: int, choose: bool
) -> tuple[Labels, list[tuple[int, float]]]:
    """KMeans or Ward labels; to choose k, each candidate is fitted on a sample of
    ``SELECTION_SAMPLE`` people and the best silhouette wins (ties: the smaller k)."""
    if not choose:
        return _partitions(x, ks, algorithm, seed)[0], []
    rows = _sample(len(x), SELECTION_SAMPLE, seed)
    sample = x[rows]
    candidates = _partitions(sample, ks, algorithm, seed)
    judged = _sample(len(sample), SILHOUETTE_SAMPLE, seed)
    scores = [
        float(silhouette_score(sample[judged], found[judged])) if 2 <= len(np.unique(found[judged])) < len(judged)
        else -1.0
        for found in candidates
    ]
    best = int(np.argmax(scores))
    found = candidates[best] if len(rows) == len(x) else _partitions(x, [ks[best]], algorithm, seed)[0]
    return found, list(zip(ks, scores, strict=True))


def _partitions(x: Matrix, ks: list[int], algorithm: str, seed: int) -> list[Labels]:
    """KMeans labels for each k, or the Ward tree (built once) cut into each k."""
    if algorithm == "kmeans":
        n_init = 2 if len(x) > 50_000 else 4
        return [KMeans(c, n_init=n_init, random_state=seed).fit_predict(x).astype("int64") for c in ks]
    tree = linkage(x, method="ward")
    return [_cut(tree, len(x), c) for c in ks]


def _cut(tree: Matrix, n: int, k: int) -> Labels:
    """Leaves' clusters after the first ``n - k`` merges of a linkage (pointer jumping, not
    scipy's ``cut_tree``, which is quadratic in Python)."""
    parent = np.arange(2 * n - 1)
    merged = tree[: n - k, :2].astype("int64")
    parent[merged[:, 0]] = parent[merged[:, 1]] = n + np.arange(n - k)
    while not np.array_equal(jumped := parent[parent], parent):
        parent = jumped
    found: Labels = np.unique(parent[:n], return_inverse=True)[1].astype("int64")
    return found


def _sample(n: int, size: int, seed: int) -> NDArray[np.int64]:
    """``size`` of ``range(n)`` at random (all when fewer), in order."""
    rows: NDArray[np.int64] = np.sort(np.random.default_rng(seed).permutation(n)[:size])
    return rows


def _gmm(x: Matrix, ks: list[int], seed: int, choose: bool) -> tuple[Labels, list[tuple[int, float]]]:
    """Mixtures fitted on a sample of ``SELECTION_SAMPLE`` people (EM over more buys little but
    time); the lowest BIC chooses k, and the chosen mixture assigns everyone."""
    sample = x[_sample(len(x), SELECTION_SAMPLE, seed)]
    models = [_mixture(c, seed).fit(sample) for c in ks]
    scores = [(c, float(model.bic(sample))) for c, model in zip(ks, models, strict=True)] if choose else []
    best = int(np.argmin([score for _, score in scores])) if choose else 0
    found: Labels = models[best].predict(x).astype("int64")
    return found, scores


def _mixture(components: int, seed: int) -> Any:
    """Full covariances with a variance floor of 0.1 (a third of a standard deviation squared):
    without it a component collapses onto one value of a count or of an imputed column, and
    BIC rewards that more and more as the sample grows. Three starts: one EM run can settle
    in a poor optimum (1 seed in 12 merged two planted groups)."""
    return GaussianMixture(components, covariance_type="full", reg_covar=0.1, n_init=3, random_state=seed)


def _dbscan(x: Matrix) -> Labels:
    """DBSCAN with ``eps`` at the knee of the sorted k-distances (see ``fit_clusters``)."""
    min_samples = max(4, 2 * x.shape[1])
    distances, _ = NearestNeighbors(n_neighbors=min(min_samples, len(x))).fit(x).kneighbors(x)
    curve = np.sort(distances[:, -1])
    span = curve[-1] - curve[0]
    along = np.linspace(0.0, 1.0, len(curve))
    up = (curve - curve[0]) / span if span > 0 else np.zeros_like(curve)
    eps = float(max(curve[int(np.argmax(along - up))], 1e-9))
    log.info("dbscan: min_samples=%d, eps=%.4g", min_samples, eps)
    found: Labels = DBSCAN(eps=eps, min_samples=min_samples).fit_predict(x).astype("int64")
    return found


# -- numbering, profiles, projection --------------------------------------------------------
def _numbered(people: pd.Series, found: Labels, previous: pd.DataFrame | None) -> Labels:
    """Renumber clusters: by size (then first member) or, given ``previous``, by overlap with it."""
    clusters = [c for c in pd.unique(found).tolist() if c != NOISE]  # in order of first member
    sizes = {c: int((found == c).sum()) for c in clusters}
    by_size = sorted(clusters, key=lambda c: -sizes[c])  # stable: ties keep first-member order
    mapping: dict[int, int] = {}
    if previous is not None and len(previous):
        before = pd.Series(pd.to_numeric(previous["cluster"]).to_numpy(dtype="int64"), index=previous["person_id"].to_numpy())
        earlier = before.reindex(people.to_numpy()).to_numpy(dtype="float64")
        olds = sorted(int(c) for c in set(before.tolist()) if c != NOISE)
        table = np.array([[np.sum((found == new) & (earlier == old)) for old in olds] for new in by_size])
        if table.size:
            rows, cols = linear_sum_assignment(table, maximize=True)
            mapping = {by_size[r]: olds[c] for r, c in zip(rows, cols, strict=True) if table[r, c] > 0}
    taken = set(mapping.values())
    free = (number for number in itertools.count() if number not in taken)
    for cluster in by_size:
        if cluster not in mapping:
            mapping[cluster] = next(free)
    numbered: Labels = np.array([mapping.get(int(c), NOISE) for c in found], dtype="int64")
    return numbered


def _profiles(raw: pd.DataFrame, x: Matrix, labels: Labels, revenue: NDArray[np.float64]) -> pd.DataFrame:
    """One row per cluster: name, size, shares, raw means and the most distinguishing features.

    A feature describes a cluster (in its name and ``distinguishing``) only when at least half
    of its members have a value of their own: people without orders are not "lapsed" because
    their recency was imputed from their tenure.
    """
    n, used = len(labels), tuple(raw.columns)
    total = float(revenue.sum())
    known = raw.notna().to_numpy()
    clusters = sorted(set(labels.tolist()), key=lambda c: (c == NOISE, c))
    rows: list[dict[str, Any]] = []
    phrases: list[list[str] | None] = []
    for cluster in clusters:
        members = labels == cluster
        centre = x[members].mean(axis=0)
        observed = known[members].mean(axis=0) >= 0.5
        order = [int(i) for i in np.argsort(-np.abs(centre), kind="stable") if observed[i]]
        means = {f"mean_{c}": float(raw[c][members].mean()) for c in used}
        phrases.append(None if cluster == NOISE else _phrases(centre, used, order, means))
        rows.append({
            "cluster": cluster,
            "name": "",
            "size": int(members.sum()),
            "share": float(members.sum()) / n,
            "revenue_share": float(revenue[members].sum()) / total if total != 0 else 0.0,
            **means,
            "distinguishing": ", ".join(f"{used[i]} {centre[i]:+.1f}σ" for i in order[:3]),
        })
    profiles = pd.DataFrame(rows)
    profiles["name"] = _names(phrases)
    return profiles.astype({"cluster": "int64", "size": "int64"})


def _phrases(centre: Matrix, used: tuple[str, ...], order: list[int], means: dict[str, float]) -> list[str]:
    """Phrases for the features far (``NAME_THRESHOLD``) from everyone's mean, farthest first,
    one per family of features (``FAMILIES``).

    Low purchase features of a cluster that (on average) never ordered read "non-buyers", and
    few orders of one that ordered about once "one-timers".
    """
    orders = means.get("mean_orders", np.nan)
    never = orders < 0.5 if "mean_orders" in means else means.get("mean_revenue") == 0
    out: list[str] = []
    families: set[str] = set()
    for i in order:
        if abs(centre[i]) < NAME_THRESHOLD:
            break
        family = FAMILIES.get(used[i], used[i])
        if family in families:
            continue
        families.add(family)
        high, low = PHRASES.get(used[i], (f"high {used[i]}", f"low {used[i]}"))
        phrase = high if centre[i] > 0 else low
        if never and used[i] in PURCHASES and centre[i] < 0:
            phrase = "non-buyers"
        elif used[i] == "orders" and centre[i] < 0 and orders < 1.5:
            phrase = "one-timers"
        if phrase not in out:
            out.append(phrase)
    return out


def _names(phrases: list[list[str] | None]) -> list[str]:
    """Two phrases each ("Big spenders, engaged"), three where two share theirs, then "Engaged 2" for repeats.

    A cluster without phrases is "Typical"; noise (None) is "Outliers".
    """
    def text(parts: list[str] | None, count: int) -> str:
        if parts is None:
            return OUTLIERS
        joined = ", ".join(parts[:count]) or "typical"
        return joined[0].upper() + joined[1:]

    pairs = [None if p is None else frozenset(p[:2]) for p in phrases]  # "Quiet, lapsed" is "Lapsed, quiet"
    longer = [text(p, 3 if pairs.count(pair) > 1 else 2) for p, pair in zip(phrases, pairs, strict=True)]
    out: list[str] = []
    for name in longer:
        candidate, number = name, 1
        while candidate in out:
            number += 1
            candidate = f"{name} {number}"
        out.append(candidate)
    return out


def _projection(x: Matrix, seed: int) -> Matrix:
    """The first two principal components (the second is 0 with a single feature)."""
    if x.shape[1] == 1:
        return np.column_stack([x[:, 0], np.zeros(len(x))])
    projected: Matrix = PCA(n_components=2, random_state=seed).fit_transform(x)
    return projected
