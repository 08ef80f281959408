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
from scipy.cluster.hierarchy import cut_tree, linkage  # type: ignore[import-untyped]
from scipy.optimize import linear_sum_assignment  # type: ignore[import-untyped]
from sklearn.cluster import DBSCAN, KMeans  # type: ignore[import-untyped]
from sklearn.decomposition import PCA  # type: ignore[import-untyped]
from sklearn.metrics import silhouette_score  # type: ignore[import-untyped]
from sklearn.mixture import GaussianMixture  # type: ignore[import-untyped]
from sklearn.neighbors import NearestNeighbors  # type: ignore[import-untyped]
from sklearn.preprocessing import StandardScaler  # type: ignore[import-untyped]

from tenure.errors import ValidationError

log = logging.getLogger(__name__)

ALGORITHMS: tuple[str, ...] = ("kmeans", "gmm", "agglomerative", "dbscan")
DEFAULT_FEATURES: tuple[str, ...] = (
    "orders", "revenue", "aov", "recency_days", "tenure_days",
    "events_30d", "sessions_30d", "active_days", "distinct_categories", "ipt_mean_days",
)
SMALL_POPULATION = 20_000  # agglomerative and dbscan refuse more people than this (O(n^2))
SILHOUETTE_SAMPLE = 3_000  # people the silhouette of each candidate k is estimated on
BIC_SAMPLE = 20_000  # people the BIC of each candidate k is computed on; the chosen k is refit on all
SKEWED = 1.0  # sample skewness above which a non-negative column is log1p-transformed
NAME_THRESHOLD = 0.5  # |standardised difference| a feature needs to appear in a cluster's name
NOISE = -1
OUTLIERS = "Outliers"
FILL_WITH_TENURE = ("recency_days", "ipt_mean_days")
FILL_WITH_ZERO = ("aov", "ipt_std_days", "top_category_share")
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

    ``labels``: person_id, cluster (0 is the largest on a first run; with ``previous`` the
    numbers follow the earlier run and may have gaps; DBSCAN's noise is -1), by person_id.
    ``profiles``: cluster, name, size, share, revenue_share, ``mean_<feature>`` (raw values,
    nulls skipped) and ``distinguishing``, one row per cluster, noise last.
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
    k : clusters to find; None chooses: the best silhouette (estimated on
        ``SILHOUETTE_SAMPLE`` people) for kmeans and agglomerative, the lowest BIC (on
        ``BIC_SAMPLE`` people) for gmm, each over ``k_range`` (inclusive). DBSCAN finds k
        itself, and refuses one.
    previous : person_id, cluster of an earlier run. Clusters are renumbered to overlap it
        most (Hungarian assignment on the contingency table); a cluster overlapping no
        earlier one takes the smallest number still free.
    seed : the random state of every random choice, so a fit is reproducible.

    DBSCAN uses ``min_samples = max(4, 2 * d)`` for d features (Sander et al., 1998) and
    takes ``eps`` at the knee of the sorted distances to each person's ``min_samples - 1``-th
    neighbour: the point farthest below the chord from the first to the last, both axes
    scaled to [0, 1], over the lower 99% of those distances (the extreme tail would
    otherwise flatten the curve).

    Example
    -------
    >>> fit_clusters(ws.features(), k=4).profiles[["cluster", "name", "share"]]  # doctest: +SKIP
    """
    data, used, raw, k_min = _checked(features, algorithm, k, columns, previous, k_range)
    x = _standardise(data, used)
    n = len(x)
    ks = [c for c in range(k_min, k_range[1] + 1) if 2 * c <= n] if k is None else [k]
    if algorithm == "dbscan":
        found, scores = _dbscan(x), list[tuple[int, float]]()
    elif algorithm == "gmm":
        found, scores = _gmm(x, ks, seed)
    else:
        found, scores = _by_silhouette(x, ks, algorithm, seed)
    labels = _numbered(data["person_id"], found, previous)
    clusters = int(len(set(labels.tolist()) - {NOISE}))
    frame = pd.DataFrame({"person_id": data["person_id"].to_numpy(), "cluster": labels})
    projection = _projection(x, seed)
    return Clustering(
        algorithm=algorithm,
        k=clusters,
        features=used,
        labels=frame,
        profiles=_profiles(raw, x, labels, used),
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
) -> tuple[pd.DataFrame, tuple[str, ...], pd.DataFrame, int]:
    """The people sorted by person_id, the usable columns, their raw values, and the least k."""
    if algorithm not in ALGORITHMS:
        raise ValidationError("algorithm", f"must be one of {', '.join(ALGORITHMS)}; got {algorithm!r}")
    if (not isinstance(k_range, tuple) or len(k_range) != 2 or not all(_is_int(v) for v in k_range)
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
    data = features.sort_values("person_id", kind="stable").reset_index(drop=True)
    raw = data[list(wanted)].astype("float64")
    if not np.isfinite(raw.fillna(0.0).to_numpy()).all():
        raise ValidationError("columns", "values must be finite (nulls are allowed)")
    filled = _imputed(raw, data)
    used = tuple(c for c in wanted if filled[c].nunique() > 1)
    if not used:
        raise ValidationError("columns", f"every column is constant over these people: {', '.join(wanted)}")
    if len(used) < len(wanted):
        log.info("clustering drops constant column(s) %s", ", ".join(c for c in wanted if c not in used))
    return data.assign(**{c: filled[c] for c in used})[["person_id", *used]], used, raw[list(used)], k_min


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


def _standardise(data: pd.DataFrame, used: tuple[str, ...]) -> Matrix:
    """log1p of skewed non-negative columns, then z-scores."""
    columns = []
    for column in used:
        values = data[column]
        if values.min() >= 0 and values.skew() > SKEWED:
            values = np.log1p(values)
        columns.append(values.to_numpy(dtype="float64"))
    scaled: Matrix = StandardScaler().fit_transform(np.column_stack(columns))
    return scaled


# -- the algorithms -------------------------------------------------------------------------
def _by_silhouette(x: Matrix, ks: list[int], algorithm: str, seed: int) -> tuple[Labels, list[tuple[int, float]]]:
    """KMeans or Ward labels for each k; the best silhouette wins (ties: the smaller k)."""
    if algorithm == "kmeans":
        n_init = 1 if len(x) > 50_000 else 4
        candidates = [KMeans(c, n_init=n_init, random_state=seed).fit_predict(x).astype("int64") for c in ks]
    else:
        cuts = cut_tree(linkage(x, method="ward"), n_clusters=ks)
        candidates = [cuts[:, i].astype("int64") for i in range(len(ks))]
    if len(ks) == 1:
        return candidates[0], []
    sample = SILHOUETTE_SAMPLE if len(x) > SILHOUETTE_SAMPLE else None
    scores = [
        float(silhouette_score(x, found, sample_size=sample, random_state=seed)) if len(np.unique(found)) > 1 else -1.0
        for found in candidates
    ]
    return candidates[int(np.argmax(scores))], list(zip(ks, scores, strict=True))


def _gmm(x: Matrix, ks: list[int], seed: int) -> tuple[Labels, list[tuple[int, float]]]:
    """Gaussian mixture labels; with several k, the lowest BIC (on a sample of big populations) wins."""
    scores: list[tuple[int, float]] = []
    if len(ks) > 1:
        rows = np.random.default_rng(seed).choice(len(x), BIC_SAMPLE, replace=False) if len(x) > BIC_SAMPLE else None
        sample = x if rows is None else x[np.sort(rows)]
        scores = [(c, float(_mixture(c, seed).fit(sample).bic(sample))) for c in ks]
    chosen = min(scores, key=lambda pair: pair[1])[0] if scores else ks[0]
    found: Labels = _mixture(chosen, seed).fit(x).predict(x).astype("int64")
    return found, scores


def _mixture(components: int, seed: int) -> Any:
    return GaussianMixture(components, covariance_type="full", reg_covar=1e-4, n_init=2, random_state=seed)


def _dbscan(x: Matrix) -> Labels:
    """DBSCAN with ``eps`` at the knee of the sorted k-distances (see ``fit_clusters``)."""
    min_samples = max(4, 2 * x.shape[1])
    distances, _ = NearestNeighbors(n_neighbors=min(min_samples, len(x))).fit(x).kneighbors(x)
    curve = np.sort(distances[:, -1])
    curve = curve[: max(2, int(np.ceil(0.99 * len(curve))))]
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


def _profiles(raw: pd.DataFrame, x: Matrix, labels: Labels, used: tuple[str, ...]) -> pd.DataFrame:
    """One row per cluster: name, size, shares, raw means and the most distinguishing features."""
    n = len(labels)
    revenue = raw["revenue"].fillna(0.0) if "revenue" in raw.columns else pd.Series(0.0, index=raw.index)
    total = float(revenue.sum())
    clusters = sorted(set(labels.tolist()), key=lambda c: (c == NOISE, c))
    rows = []
    for cluster in clusters:
        members = labels == cluster
        centre = x[members].mean(axis=0)
        top = np.argsort(-np.abs(centre), kind="stable")[:3]
        means = {f"mean_{c}": float(raw[c][members].mean()) for c in used}
        rows.append({
            "cluster": cluster,
            "name": OUTLIERS if cluster == NOISE else _name(centre, used, means),
            "size": int(members.sum()),
            "share": float(members.sum()) / n,
            "revenue_share": float(revenue[members].sum()) / total if total != 0 else 0.0,
            **means,
            "distinguishing": ", ".join(f"{used[i]} {centre[i]:+.1f}σ" for i in top),
        })
    profiles = pd.DataFrame(rows)
    profiles["name"] = _unique(profiles["name"].tolist())
    return profiles.astype({"cluster": "int64", "size": "int64"})


def _name(centre: Matrix, used: tuple[str, ...], means: dict[str, float]) -> str:
    """Up to two phrases for the features farthest from everyone's mean, e.g. "Big spenders, engaged"."""
    phrases: list[str] = []
    for i in np.argsort(-np.abs(centre), kind="stable"):
        if abs(centre[i]) < NAME_THRESHOLD or len(phrases) == 2:
            break
        high, low = PHRASES.get(used[i], (f"high {used[i]}", f"low {used[i]}"))
        phrase = high if centre[i] > 0 else low
        if used[i] == "orders" and centre[i] < 0:
            orders = means["mean_orders"]
            phrase = "non-buyers" if orders < 0.5 else "one-timers" if orders < 1.5 else phrase
        if phrase not in phrases:
            phrases.append(phrase)
    if not phrases:
        return "Typical"
    text = ", ".join(phrases)
    return text[0].upper() + text[1:]


def _unique(names: list[str]) -> list[str]:
    """Names made unique by numbering the repeats: "Engaged", "Engaged 2"."""
    out: list[str] = []
    for name in names:
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
