"""Everyone's top-N recommendations with item details and a reason, ready to store on profiles.

The reason for suggesting item ``j`` to a person is the item ``i`` they interacted with that
contributes most to ``j`` in the item-item view, weight(i) × cosine(i, j), named with the
strongest thing they did with it ("because you bought X", "… added X to your cart", "… reviewed
X", "… viewed X"). When nothing they touched is a neighbour of ``j`` (a latent-factor or content
match), the reason says so without inventing a link. An item they already viewed, added or
reviewed (only purchases are excluded) is explained by that.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from scipy import sparse

from tenure.models.recommend_evaluation import rank
from tenure.models.recommend_training import TrainedRecommender
from tenure.models.recommenders import BATCH
from tenure.models.signals import locate

REASONS: dict[int, str] = {
    4: "because you bought {}", 3: "because you added {} to your cart", 2: "because you reviewed {}", 1: "because you viewed {}",
}
AGAIN: dict[int, str] = {  # the suggestion is an item they already touched (only purchases are excluded)
    4: "you bought this before", 3: "still in your cart", 2: "you reviewed this", 1: "you looked at this",
}
MATCHED = "matches your taste"
POPULAR = "popular right now"


def recommend_everyone(
    trained: TrainedRecommender,
    frame: pd.DataFrame,
    *,
    n: int,
    exclude_purchased: bool,
    allowed_items: np.ndarray | None,
) -> pd.DataFrame:
    """One row per person in ``frame`` (``interaction_weights`` output): person_id and their list as JSON."""
    known = frame[trained.column_of(frame["item_id"]) >= 0]
    people = np.unique(known["person_id"].astype(str).to_numpy(dtype=str))
    weights, purchased, kinds = (
        _aligned(known, values, people, trained)
        for values in (known["weight"].to_numpy(dtype=np.float64), known["purchases"].to_numpy(dtype=np.float64),
                       _strongest_kind(known))
    )
    toward = trained.explainer.similarity_.T.tocsr()  # row j: every item's similarity to j
    texts: list[str] = []
    for start in range(0, len(people), BATCH):
        rows = slice(start, start + BATCH)
        top, scores, _ = rank(
            trained.model, trained.fallback, weights[rows], n=n,
            excluded=purchased[rows] if exclude_purchased else None, allowed_items=allowed_items,
        )
        because, codes = explain(toward, weights[rows], kinds[rows], top)
        texts.extend(_lists(trained, top, scores, because, codes))
    return pd.DataFrame({"person_id": people, "recommendations": texts})


def explain(
    toward: sparse.csr_matrix, weights: sparse.csr_matrix, kinds: sparse.csr_matrix, top: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(the item behind each suggestion or -1, the kind code of what the person did with it or 0).

    ``toward`` is the explainer's similarity transposed: row j holds every item's similarity to j.
    """
    because = np.full(top.shape, -1, dtype=np.int64)
    codes = np.zeros(top.shape, dtype=np.int64)
    for slot in range(top.shape[1]):
        valid = top[:, slot] >= 0
        if not valid.any():
            continue
        rows = np.flatnonzero(valid)
        contribution = weights[rows].multiply(toward[top[rows, slot]]).tocsr()
        best = np.asarray(contribution.argmax(axis=1)).ravel()
        strength = np.asarray(contribution.max(axis=1).todense()).ravel()
        linked = strength > 0
        because[rows[linked], slot] = best[linked]
        codes[rows[linked], slot] = np.asarray(kinds[rows[linked], best[linked]]).ravel()
        touched = np.asarray(kinds[rows, top[rows, slot]]).ravel()
        again = touched > 0
        because[rows[again], slot] = top[rows[again], slot]
        codes[rows[again], slot] = touched[again]
    return because, codes


def reason(trained: TrainedRecommender, item: int, because: int, code: int) -> str:
    """The sentence shown next to suggesting ``item`` (``because`` is -1 when no touched item explains it)."""
    if because == item and code in AGAIN:
        return AGAIN[code]
    if because >= 0 and code in REASONS:
        return REASONS[code].format(trained.name_of(because))
    return MATCHED


def _lists(
    trained: TrainedRecommender, top: np.ndarray, scores: np.ndarray, because: np.ndarray, codes: np.ndarray
) -> list[str]:
    out = []
    for row in range(top.shape[0]):
        valid = top[row] >= 0
        columns = top[row][valid]
        entries = trained.item_rows(columns)
        for entry, column, score, item, code in zip(
            entries, columns, scores[row][valid], because[row][valid], codes[row][valid], strict=True
        ):
            entry["score"] = round(float(score), 6)
            entry["reason"] = reason(trained, int(column), int(item), int(code))
            entry["because"] = str(trained.items[item]) if item >= 0 else None
        out.append(json.dumps(entries))
    return out


def _strongest_kind(frame: pd.DataFrame) -> np.ndarray:
    """The code (see ``REASONS``) of the strongest thing done with each pair: bought > carted > reviewed > viewed."""
    done = [frame["purchases"] > 0, frame["carts"] > 0, frame["rating"].notna(), frame["views"] > 0]
    return np.select([d.to_numpy(dtype=bool) for d in done], [4, 3, 2, 1], default=0).astype(np.float64)


def _aligned(frame: pd.DataFrame, values: np.ndarray, people: np.ndarray, trained: TrainedRecommender) -> sparse.csr_matrix:
    """``values`` (one per row of ``frame``) as a people × model-items matrix."""
    rows, columns = locate(people, frame["person_id"]), trained.column_of(frame["item_id"])
    matrix = sparse.csr_matrix((values, (rows, columns)), shape=(len(people), len(trained.items)))
    matrix.eliminate_zeros()
    return matrix
