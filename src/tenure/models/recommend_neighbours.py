"""Item-item neighbours: cosine similarity between items' columns of the interaction matrix.

Only each item's ``k`` most similar other items are kept (a sparse items × items matrix), which
bounds memory and drops the long tail of weak, noisy similarities. A person's score for an item
is the sum of its similarities to the items they have, weighted by their interaction weights
(``implicit``'s ``ItemItemRecommender`` scores the same way).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.preprocessing import normalize

from tenure.errors import ValidationError
from tenure.models.recommenders import BATCH, FloatArray, IntArray, Recommender


class ItemNeighbours(Recommender):
    """Item-item cosine neighbours over the interaction matrix.

    Parameters
    ----------
    k : int
        Neighbours kept per item.

    Attributes
    ----------
    similarity_ : csr_matrix [items, items]
        Row ``i`` holds item ``i``'s ``k`` nearest neighbours and their cosine similarities.
    """

    def __init__(self, *, k: int = 50) -> None:
        self.k = k

    def _fit(self, interactions: sparse.csr_matrix, item_features: pd.DataFrame | None) -> None:
        if not isinstance(self.k, int) or self.k < 1:
            raise ValidationError("k", f"must be a positive integer, got {self.k!r}")
        columns = normalize(interactions.T.tocsr(), norm="l2", axis=1)
        n_items = columns.shape[0]
        keep = min(self.k, max(n_items - 1, 1))
        blocks = []
        for start in range(0, n_items, BATCH):
            items = np.arange(start, min(start + BATCH, n_items))
            dense = (columns[items] @ columns.T).toarray()
            dense[np.arange(len(items)), items] = 0.0
            blocks.append(_keep_top(dense, keep))
        self.similarity_ = sparse.vstack(blocks, format="csr")

    def _person_scores(self, interactions: sparse.csr_matrix) -> FloatArray:
        return np.asarray((interactions @ self.similarity_.T).toarray())

    def _item_scores(self, items: IntArray) -> FloatArray:
        return np.asarray(self.similarity_[items].toarray())


def _keep_top(dense: FloatArray, keep: int) -> sparse.csr_matrix:
    """Zero all but each row's ``keep`` largest entries."""
    if keep < dense.shape[1]:
        drop = np.argpartition(-dense, keep - 1, axis=1)[:, keep:]
        np.put_along_axis(dense, drop, 0.0, axis=1)
    out = sparse.csr_matrix(dense)
    out.eliminate_zeros()
    return out
