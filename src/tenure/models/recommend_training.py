"""Train the workspace recommender: evaluate every algorithm on time splits, keep the best, explain it.

Three snapshots of the interaction weights (at ``end - 2T``, ``end - T`` and ``end``, with ``T``
the test window) give two splits. The earlier one is the validation split: every candidate is
fitted at ``end - 2T`` and ranked by its NDCG@k on the purchases of the next ``T`` days, and the
best becomes the shop's recommender. The later split is the test: all candidates are refitted
at ``end - T`` and scored on the last ``T`` days, which reports, on data the choice never saw,
how the chosen one compares with popularity. The chosen algorithm is then fitted on everything.

Alongside it the trained object keeps what serving needs without the lake: item details, the
popularity fallback for people without a history, item-item neighbours that explain each
suggestion ("because you viewed X"), and each item's most similar items for the real-time blend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from tenure.config import RecommendationSettings
from tenure.models.recommend_als import ALS
from tenure.models.recommend_content import ContentBased
from tenure.models.recommend_evaluation import Factory, Split, compare, fit_candidate, make_split
from tenure.models.recommend_hybrid import Hybrid
from tenure.models.recommend_neighbours import ItemNeighbours
from tenure.models.recommend_popularity import Popularity
from tenure.models.recommenders import Recommender
from tenure.models.signals import locate

BASELINE = "popularity"
SIMILAR_KEPT = 20  # similar items stored per item for the real-time blend
DETAILS: tuple[str, ...] = ("name", "category", "brand", "price")


def candidates(settings: RecommendationSettings) -> dict[str, Factory]:
    """Every algorithm the validation split chooses from, by name."""

    def als() -> ALS:
        return ALS(
            factors=settings.als_factors, regularization=settings.als_regularization,
            iterations=settings.als_iterations, random_state=0,
        )

    return {
        BASELINE: Popularity,
        "trending": lambda: Popularity(trending=True),
        "category_popularity": lambda: Popularity(by_category=True),
        "item_neighbours": lambda: ItemNeighbours(k=50),
        "content": ContentBased,
        "als": als,
        "hybrid": lambda: Hybrid(
            components=(als(), ItemNeighbours(k=50), ContentBased(), Popularity(by_category=True)), k=settings.k
        ),
    }


@dataclass(frozen=True, slots=True, eq=False)
class TrainedRecommender:
    """The chosen recommender fitted on everything, with what serving and explaining need."""

    algorithm: str
    model: Recommender
    fallback: Popularity
    explainer: ItemNeighbours
    items: np.ndarray  # item ids, the model's columns (sorted)
    details: pd.DataFrame  # DETAILS and in_stock per item, positioned like ``items``
    records: list[dict[str, Any]]  # item_id and DETAILS per item, JSON-ready: serving copies them, never pandas
    similar: np.ndarray  # [items, SIMILAR_KEPT] most similar item indices (-1 padded)
    similar_scores: np.ndarray
    validation: pd.DataFrame
    test: pd.DataFrame
    cut_validation: datetime
    cut_test: datetime

    def column_of(self, item_ids: Any) -> np.ndarray:
        """Each id's column, -1 for items the model has never seen."""
        return locate(self.items, item_ids)

    def item_rows(self, columns: Any) -> list[dict[str, Any]]:
        """Fresh copies of the records of ``columns`` (callers add their own keys)."""
        return [dict(self.records[column]) for column in columns]

    def name_of(self, column: int) -> str:
        """An item's name, or its id when the catalogue has none."""
        return str(self.records[column]["name"] or self.records[column]["item_id"])

    def allowed(self, *, in_stock_only: bool, categories: tuple[str, ...]) -> np.ndarray | None:
        """The business filter over ``items`` with the catalogue as it was at training."""
        return allowed_mask(self.details, in_stock_only=in_stock_only, categories=categories)


def allowed_mask(details: pd.DataFrame, *, in_stock_only: bool, categories: tuple[str, ...]) -> np.ndarray | None:
    """The business filter as a mask over ``details``' rows (``in_stock``, ``category``): in stock
    (unknown counts as in) and in ``categories`` (empty: any); None when nothing is filtered."""
    if not in_stock_only and not categories:
        return None
    mask = np.ones(len(details), dtype=bool)
    if in_stock_only:
        mask &= details["in_stock"].fillna(True).astype(bool).to_numpy()
    if categories:
        mask &= details["category"].isin(list(categories)).to_numpy()
    return mask


def train_recommender(
    snapshots: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame],
    cuts: tuple[datetime, datetime, datetime],
    catalogue: pd.DataFrame,
    settings: RecommendationSettings,
    progress: Callable[[str, float], None],
) -> TrainedRecommender:
    """Choose on validation, report on test, fit the winner on the last snapshot."""
    choices = candidates(settings)
    splits = [
        make_split(snapshots[k], snapshots[k + 1], catalogue, cut=cuts[k], trending_days=settings.trending_days,
                   exclude_purchased=settings.exclude_purchased)
        for k in (0, 1)
    ]

    def stage(label: str, offset: int) -> Callable[[str, float], None]:
        return lambda name, done: progress(f"{label}: {name}", 0.1 + 0.4 * (offset + done))

    validation, test = (
        compare(choices, Popularity, split, k=settings.k, progress=stage(label, offset))
        for offset, (label, split) in enumerate(zip(("validation", "test"), splits, strict=True))
    )
    algorithm = str(validation["algorithm"].iloc[0])
    progress(f"fitting {algorithm} on everything", 0.9)
    final = full_split(snapshots[2], catalogue, cut=cuts[2], settings=settings)
    model = fit_candidate(choices[algorithm], final)
    similar, similar_scores = model.similar_items(np.arange(len(final.items)), n=min(SIMILAR_KEPT, len(final.items)))
    details = catalogue.drop_duplicates("item_id").set_index("item_id").reindex(final.items)[[*DETAILS, "in_stock"]]
    records = [
        {"item_id": str(item), **{name: _plain(value, name) for name, value in zip(DETAILS, values, strict=True)}}
        for item, values in zip(final.items, details[list(DETAILS)].itertuples(index=False), strict=True)
    ]
    return TrainedRecommender(
        algorithm=algorithm, model=model, fallback=Popularity().fit(final.interactions),
        explainer=ItemNeighbours(k=50).fit(final.interactions), items=final.items,
        details=details.reset_index(drop=True), records=records, similar=similar, similar_scores=similar_scores,
        validation=validation, test=test, cut_validation=cuts[0], cut_test=cuts[1],
    )


def full_split(frame: pd.DataFrame, catalogue: pd.DataFrame, *, cut: datetime, settings: RecommendationSettings) -> Split:
    """Everything known at ``cut`` with the whole catalogue as columns, so new items can be suggested."""
    known = frame["item_id"].astype(str).to_numpy(dtype=str)
    listed = catalogue["item_id"].dropna().astype(str).to_numpy(dtype=str)
    return make_split(
        frame, None, catalogue, cut=cut, trending_days=settings.trending_days,
        exclude_purchased=settings.exclude_purchased, columns=np.union1d(known, listed),
    )


def headline(validation: pd.DataFrame, test: pd.DataFrame, algorithm: str, k: int) -> dict[str, Any]:
    """The registry's metrics: the chosen algorithm against popularity on the test split, and both tables."""
    ours = test.set_index("algorithm").loc[algorithm]
    base = test.set_index("algorithm").loc[BASELINE]
    lift = float(ours["ndcg"] / base["ndcg"]) if base["ndcg"] > 0 else float("inf")
    return {
        "headline": f"{algorithm}: NDCG@{k} {ours['ndcg']:.3f} vs popularity {base['ndcg']:.3f} ({lift:.2f}x) on the test window",
        "algorithm": algorithm,
        "ndcg_lift_over_popularity": lift,
        "validation": validation.to_dict(orient="records"),
        "test": test.to_dict(orient="records"),
    }


def _plain(value: Any, name: str) -> Any:
    """A detail as JSON holds it: prices as floats, the rest as text, missing values as None."""
    if pd.isna(value):
        return None
    return float(value) if name == "price" else str(value)
