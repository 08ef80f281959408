"""Time-split evaluation of recommenders: fit on what was known at a cut, score what was bought after.

A split holds, at one instant ``cut``, everyone's interaction weights, the items they had bought
(excluded from their recommendations unless consumables may repeat), a "trending" matrix of the
pairs active in the last days before the cut, and the items each person bought in the window
after it: the relevant items. Only items with interactions before the cut are columns, so no
model sees an item the shop had not yet shown anyone; items bought later that were new then
cannot be hit by any model, and ``unreachable`` counts them.

Every candidate is ranked the same way: the model for people with a history, and popularity
for people without one (the cold-start fallback), with the metrics of ``ranking_metrics``
averaged over the people who bought something in the window.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
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
from tenure.models.recommend_popularity import Popularity
from tenure.models.recommenders import FloatArray, IntArray, Recommender
from tenure.models.signals import locate

METRICS: tuple[str, ...] = ("ndcg", "precision", "recall", "map", "coverage", "popularity_bias")
Factory = Callable[[], Recommender]


@dataclass(frozen=True, slots=True, eq=False)
class Split:
    """What a model may learn from at ``cut``, and what the people then bought."""

    cut: datetime
    people: np.ndarray
    items: np.ndarray
    interactions: sparse.csr_matrix
    purchased: sparse.csr_matrix
    recent: sparse.csr_matrix
    relevant: sparse.csr_matrix
    item_features: pd.DataFrame
    unreachable: int

    @property
    def buyers(self) -> int:
        """People with at least one relevant item: the ones the metrics average over."""
        return int((np.diff(self.relevant.indptr) > 0).sum())


def make_split(
    before: pd.DataFrame,
    after: pd.DataFrame | None,
    catalogue: pd.DataFrame,
    *,
    cut: datetime,
    trending_days: float,
    exclude_purchased: bool,
    columns: np.ndarray | None = None,
) -> Split:
    """A split from two ``interaction_weights`` frames, at ``cut`` and at the end of the window.

    An item is relevant to a person if they bought more units of it by the end of the window
    than by the cut; with ``exclude_purchased`` an item they had bought before is not, since it
    is never recommended to them. Without ``after`` nothing is relevant (a split to fit on).
    ``columns`` (sorted ids) replaces the default columns, the items of ``before``.
    """
    items = np.unique(before["item_id"].astype(str).to_numpy(dtype=str)) if columns is None else columns
    if len(items) == 0:
        raise ValidationError("events", f"no product interactions before {cut:%Y-%m-%d} to learn from")
    bought = _bought_between(before, before.iloc[:0] if after is None else after)
    reachable = bought[bought["item_id"].isin(items)]
    people = np.unique(np.concatenate([before["person_id"].astype(str).to_numpy(dtype=str),
                                       reachable["person_id"].astype(str).to_numpy(dtype=str)]))
    shape = (len(people), len(items))
    interactions = _matrix(before, "weight", people, items, shape)
    purchased = _matrix(before, "purchases", people, items, shape)
    fresh = pd.to_datetime(before["last_at"], utc=True) >= pd.Timestamp(cut) - timedelta(days=trending_days)
    recent = _matrix(before[fresh.to_numpy()], "weight", people, items, shape)
    relevant = _matrix(reachable.assign(relevant=1.0), "relevant", people, items, shape)
    if exclude_purchased:
        relevant = relevant - relevant.multiply(purchased > 0)
        relevant.eliminate_zeros()
    return Split(
        cut=cut, people=people, items=items, interactions=interactions, purchased=purchased, recent=recent,
        relevant=sparse.csr_matrix(relevant), item_features=item_features(catalogue, items),
        unreachable=len(bought) - len(reachable),
    )


def item_features(catalogue: pd.DataFrame, items: np.ndarray) -> pd.DataFrame:
    """Category, brand, price and text (name + description) per item, in ``items``' order."""
    details = catalogue.set_index("item_id").reindex(items)
    text = details["name"].fillna("").astype(str) + " " + details["description"].fillna("").astype(str)
    return pd.DataFrame(
        {"category": details["category"].to_numpy(), "brand": details["brand"].to_numpy(),
         "price": details["price"].to_numpy(dtype=np.float64, na_value=np.nan), "text": text.to_numpy()}
    )


def fit_candidate(factory: Factory, split: Split) -> Recommender:
    """A fresh candidate fitted on the split; popularities rank the trending matrix when told to."""
    model = factory()
    if isinstance(model, Popularity) and model.trending:
        return model.fit(split.interactions, item_features=split.item_features, recent=split.recent)
    return model.fit(split.interactions, item_features=split.item_features)


def rank(
    model: Recommender,
    fallback: Recommender,
    interactions: sparse.csr_matrix,
    *,
    n: int,
    excluded: sparse.csr_matrix | None,
    allowed_items: np.ndarray | None = None,
) -> tuple[IntArray, FloatArray, np.ndarray]:
    """Top ``n`` per row: the model's for people with a history, ``fallback``'s for the rest.

    Returns (indices, scores, cold), ``cold`` marking the rows the fallback ranked.
    """
    options: dict[str, Any] = {"n": n, "exclude_seen": False, "excluded": excluded, "allowed_items": allowed_items}
    indices, scores = model.recommend(interactions, **options)
    cold = np.diff(interactions.indptr) == 0
    if cold.any():
        rows = np.flatnonzero(cold)
        options["excluded"] = None if excluded is None else excluded[rows]
        indices[rows], scores[rows] = fallback.recommend(interactions[rows], **options)
    return indices, scores, cold


def evaluate(model: Recommender, fallback: Recommender, split: Split, *, k: int) -> dict[str, float]:
    """Ranking metrics at ``k`` over the split's buyers (coverage and bias over their lists)."""
    buyers = np.flatnonzero(np.diff(split.relevant.indptr) > 0)
    if len(buyers) == 0:
        raise ValidationError("events", f"nobody bought anything in the window after {split.cut:%Y-%m-%d}")
    excluded = split.purchased[buyers]
    top, _, cold = rank(model, fallback, split.interactions[buyers], n=k, excluded=excluded)
    relevant = split.relevant[buyers]
    popularity = np.asarray(split.interactions.sum(axis=0)).ravel()
    return {
        "ndcg": ndcg_at_k(top, relevant, k=k),
        "precision": precision_at_k(top, relevant, k=k),
        "recall": recall_at_k(top, relevant, k=k),
        "map": map_at_k(top, relevant, k=k),
        "coverage": catalogue_coverage(top, len(split.items), k=k),
        "popularity_bias": popularity_bias(top, popularity, k=k),
        "people": float(len(buyers)),
        "cold_people": float(cold.sum()),
    }


def compare(
    candidates: Mapping[str, Factory], fallback: Factory, split: Split, *, k: int,
    progress: Callable[[str, float], None] | None = None,
) -> pd.DataFrame:
    """Every candidate fitted on ``split`` and evaluated on its window: one row per candidate, best NDCG first.

    ``progress`` hears each candidate's name and the share of candidates done before it.
    """
    backup = fit_candidate(fallback, split)
    rows = []
    for done, (name, factory) in enumerate(candidates.items()):
        if progress is not None:
            progress(name, done / len(candidates))
        rows.append({"algorithm": name, **evaluate(fit_candidate(factory, split), backup, split, k=k)})
    table = pd.DataFrame(rows)
    return table.sort_values("ndcg", ascending=False, kind="stable").reset_index(drop=True)


def _bought_between(before: pd.DataFrame, after: pd.DataFrame) -> pd.DataFrame:
    """(person_id, item_id) pairs with more units bought in ``after`` than in ``before``."""
    keys = ["person_id", "item_id"]
    merged = after[[*keys, "purchases"]].merge(before[[*keys, "purchases"]], on=keys, how="left", suffixes=("", "_before"))
    more = merged["purchases"].fillna(0) > merged["purchases_before"].fillna(0)
    return merged.loc[more, keys].astype(str).reset_index(drop=True)


def _matrix(frame: pd.DataFrame, column: str, people: np.ndarray, items: np.ndarray, shape: tuple[int, int]) -> sparse.csr_matrix:
    """``frame``'s (person_id, item_id, column) as a matrix on the given sorted ids; other ids are dropped."""
    rows, columns = locate(people, frame["person_id"]), locate(items, frame["item_id"])
    keep = (rows >= 0) & (columns >= 0)
    values = pd.to_numeric(frame[column]).fillna(0).to_numpy(dtype=np.float64)[keep]
    matrix = sparse.csr_matrix((values, (rows[keep], columns[keep])), shape=shape)
    matrix.eliminate_zeros()
    return matrix
