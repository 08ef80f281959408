"""Content-based: items are similar when their attributes are, whoever bought them.

Each item becomes a vector of blocks: one-hot ``category``, one-hot ``brand``, one-hot price
band (``price`` cut at quantiles into ``price_bands``) and the TF-IDF of ``text``; the columns
present in ``item_features`` are used, missing values contribute nothing. Each block is
normalised to unit length and scaled by the square root of its weight, so the dot product of two
items is the weighted sum of the blocks' cosines; the whole vector is then normalised (cosine).
A person's profile is the interaction-weighted mean of their items' vectors, and their score for
an item is the cosine between profile and item. This works for items nobody has bought yet.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

from tenure.errors import ValidationError
from tenure.models.recommenders import FloatArray, IntArray, Recommender

ATTRIBUTES = ("category", "brand", "price", "text")


class ContentBased(Recommender):
    """Cosine similarity of item attribute vectors (category, brand, price band, TF-IDF text).

    Parameters
    ----------
    category_weight, brand_weight, price_weight, text_weight : float
        Relative importance of each attribute block (>= 0).
    price_bands : int
        Quantile bands the price is cut into.
    max_text_features : int
        Vocabulary size of the TF-IDF.

    Attributes
    ----------
    item_vectors_ : csr_matrix [items, features]
        Unit-length attribute vector per item.
    """

    def __init__(
        self,
        *,
        category_weight: float = 1.0,
        brand_weight: float = 1.0,
        price_weight: float = 0.5,
        text_weight: float = 1.0,
        price_bands: int = 5,
        max_text_features: int = 5000,
    ) -> None:
        self.category_weight = category_weight
        self.brand_weight = brand_weight
        self.price_weight = price_weight
        self.text_weight = text_weight
        self.price_bands = price_bands
        self.max_text_features = max_text_features

    def _fit(self, interactions: sparse.csr_matrix, item_features: pd.DataFrame | None) -> None:
        features = _check_features(item_features, interactions.shape[1])
        blocks = []
        for name in ATTRIBUTES:
            weight = getattr(self, f"{name}_weight")
            if weight < 0:
                raise ValidationError(f"{name}_weight", "must be non-negative")
            if name in features.columns and weight > 0:
                blocks.append(normalize(self._block(name, features[name])) * np.sqrt(weight))
        if not blocks:
            raise ValidationError("item_features", f"needs at least one weighted column of {', '.join(ATTRIBUTES)}")
        self.item_vectors_ = normalize(sparse.hstack(blocks, format="csr"))

    def _block(self, name: str, column: pd.Series) -> sparse.csr_matrix:
        if name == "text":
            text = column.astype("string").fillna("").tolist()
            vectorizer = TfidfVectorizer(max_features=self.max_text_features, sublinear_tf=True)
            try:
                return sparse.csr_matrix(vectorizer.fit_transform(text))
            except ValueError:  # empty vocabulary: no item has any word
                return sparse.csr_matrix((len(text), 1))
        if name == "price":
            return _one_hot(_price_bands(column, self.price_bands))
        return _one_hot(pd.Series(pd.factorize(column.astype("string"))[0]))

    def _person_scores(self, interactions: sparse.csr_matrix) -> FloatArray:
        profiles = normalize(interactions @ self.item_vectors_)
        return np.asarray((profiles @ self.item_vectors_.T).toarray())

    def _item_scores(self, items: IntArray) -> FloatArray:
        return np.asarray((self.item_vectors_[items] @ self.item_vectors_.T).toarray())


def _check_features(item_features: pd.DataFrame | None, n_items: int) -> pd.DataFrame:
    if not isinstance(item_features, pd.DataFrame):
        raise ValidationError("item_features", "a DataFrame with one row per item is required")
    if len(item_features) != n_items:
        raise ValidationError("item_features", f"expected {n_items} rows (one per item), got {len(item_features)}")
    return item_features.reset_index(drop=True)


def _price_bands(price: pd.Series, bands: int) -> pd.Series:
    if not isinstance(bands, int) or bands < 1:
        raise ValidationError("price_bands", f"must be a positive integer, got {bands!r}")
    values = pd.to_numeric(price, errors="coerce")
    if (values < 0).any():
        raise ValidationError("item_features.price", "prices must be non-negative")
    codes = pd.qcut(values.rank(method="first"), q=min(bands, max(int(values.notna().sum()), 1)), labels=False)
    return codes.fillna(-1).astype(np.int64)


def _one_hot(codes: pd.Series) -> sparse.csr_matrix:
    """One column per code; code -1 (missing) gives an empty row."""
    array = codes.to_numpy(dtype=np.int64)
    present = array >= 0
    width = int(array.max()) + 1 if present.any() else 1
    rows = np.flatnonzero(present)
    return sparse.csr_matrix((np.ones(len(rows)), (rows, array[present])), shape=(len(array), width))
