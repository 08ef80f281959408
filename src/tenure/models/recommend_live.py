"""The real-time blend: stored recommendations moved by what the person did in the last minutes.

Stored lists are computed in batch (hourly, or at training); a person who has just looked at
three garden hoses should see hoses now. Each recent event on item ``i`` lends ``i``'s most
similar items (from the trained model) a score of similarity × the kind's signal weight ×
freshness, where freshness falls linearly from 1 (now) to 0 (the start of the window); an item
similar to several recent ones adds them up. Live and stored scores are each scaled to [0, 1]
(stored by rank: the first item 1, the last 1/n) and mixed as
``live_weight * live + (1 - live_weight) * stored``. Items the person just acted on and items
they bought are never suggested, and neither are items the business filters out.

Everything here is arrays of at most a few hundred entries, so a call costs well under a
millisecond after the service's four state reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from tenure.models.recommend_scoring import POPULAR
from tenure.models.recommend_training import TrainedRecommender

JUST: dict[str, str] = {
    "view": "because you just viewed {}", "cart": "because you just added {} to your cart", "purchase": "because you just bought {}",
}
COLUMNS: tuple[str, ...] = ("rank", "item_id", "name", "category", "brand", "price", "score", "reason", "source")


@dataclass(frozen=True, slots=True)
class LiveInputs:
    """What the blend reads about one person."""

    stored: list[dict[str, Any]]  # the stored list, best first (as ``recommend_scoring`` writes it)
    purchased: list[str]  # item ids they have bought (never suggested)
    recent: Sequence[tuple[str, str, datetime]]  # (item_id, kind: view | cart | purchase, at), newest first


def blend(
    trained: TrainedRecommender,
    inputs: LiveInputs,
    *,
    now: datetime,
    window: timedelta,
    kind_weights: Mapping[str, float],
    live_weight: float,
    n: int,
    allowed: np.ndarray | None,
) -> pd.DataFrame:
    """The person's top ``n`` now, with columns ``COLUMNS`` (source: live, stored or popular)."""
    size = len(trained.items)
    live = np.zeros(size)
    source = np.full(size, -1, dtype=np.int64)  # the recent event that lends each item the most
    events = _known_events(trained, inputs.recent, now)
    if len(events.columns):
        columns = events.columns
        fresh = np.clip(1.0 - events.age_seconds / window.total_seconds(), 0.0, 1.0)
        strength = np.array([kind_weights.get(kind, 0.0) for kind in events.kinds]) * fresh
        neighbours = trained.similar[columns]
        lent = np.where(neighbours >= 0, np.maximum(trained.similar_scores[columns], 0.0), 0.0) * strength[:, None]
        targets, amounts = neighbours.ravel(), lent.ravel()
        keep = targets >= 0
        np.add.at(live, targets[keep], amounts[keep])
        order = np.argsort(amounts[keep], kind="stable")  # the largest loan is written last and wins
        source[targets[keep][order]] = np.repeat(np.arange(len(columns)), neighbours.shape[1])[keep][order]
    stored = np.zeros(size)
    stored_columns = trained.column_of([entry["item_id"] for entry in inputs.stored])
    ranked = stored_columns >= 0
    stored[stored_columns[ranked]] = 1.0 - np.arange(ranked.sum()) / max(len(stored_columns), 1)
    popular = not inputs.stored and not len(events.columns)
    if popular:
        stored = trained.fallback.popularity_ / max(trained.fallback.popularity_.max(), 1e-12)
    top_live = live.max()
    live_part = live_weight * (live / top_live if top_live > 0 else live)
    stored_part = (1.0 - live_weight) * stored
    score = live_part + stored_part
    banned = np.concatenate([trained.column_of(inputs.purchased), events.columns])
    score[banned[banned >= 0]] = -np.inf
    if allowed is not None:
        score[~allowed] = -np.inf
    score[(live_part == 0) & (stored_part == 0)] = -np.inf
    best = np.argsort(-score, kind="stable")[:n]
    best = best[np.isfinite(score[best])]
    return _frame(trained, best, score, live_part > stored_part, source, events, inputs, popular)


@dataclass(frozen=True, slots=True, eq=False)
class _Events:
    """The recent events on items the model knows, as arrays."""

    columns: np.ndarray
    kinds: np.ndarray
    age_seconds: np.ndarray


def _known_events(trained: TrainedRecommender, recent: Sequence[tuple[str, str, datetime]], now: datetime) -> _Events:
    """The recent events on items the model knows (others cannot lend similarity)."""
    columns = trained.column_of([item for item, _, _ in recent])
    kept = [(column, kind, (now - at).total_seconds())
            for column, (_, kind, at) in zip(columns, recent, strict=True) if column >= 0]
    return _Events(
        np.array([c for c, _, _ in kept], dtype=np.int64), np.array([k for _, k, _ in kept], dtype=str),
        np.array([a for _, _, a in kept], dtype=np.float64),
    )


def _frame(
    trained: TrainedRecommender, best: np.ndarray, score: np.ndarray, mostly_live: np.ndarray,
    source: np.ndarray, events: _Events, inputs: LiveInputs, popular: bool,
) -> pd.DataFrame:
    """The chosen items with details; the reason is the live event when that part of the score is larger."""
    reasons = {entry["item_id"]: entry.get("reason") for entry in inputs.stored}
    rows = []
    for rank, (column, entry) in enumerate(zip(best, trained.item_rows(best), strict=True), start=1):
        if mostly_live[column] and source[column] >= 0:
            event = source[column]
            why = JUST[str(events.kinds[event])].format(trained.name_of(int(events.columns[event])))
            origin = "live"
        elif popular:
            why, origin = POPULAR, "popular"
        else:
            why, origin = reasons.get(entry["item_id"]) or POPULAR, "stored"
        rows.append({"rank": rank, **entry, "score": float(score[column]), "reason": why, "source": origin})
    return pd.DataFrame(rows, columns=list(COLUMNS))
