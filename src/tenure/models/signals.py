"""Implicit and explicit feedback per person and item, weighted and decayed, as the recommenders' input.

Each fact a person leaves about an item scores a weight: a ``Product Viewed`` event ``view``, a
``Product Added`` event ``cart``, each unit on an order line ``purchase``, and their last
``Product Reviewed`` rating ``r`` (1-5) ``rating_weight * (r - 3)``, so a 5 adds and a 1
subtracts as much. With ``half_life_days`` every fact's score is halved per half-life of age
at ``as_of``, so last week's interest outweighs last year's. A pair's weight is the sum,
clipped at zero: a bad review can cancel a view but never make a negative preference, which
implicit-feedback models cannot read.

Point in time, like every model input: only facts with ``timestamp < as_of`` (and within
``window_days`` of it) count, and orders are those known at ``as_of`` with cancellations
made by then applied. A refund does not remove the purchase signal: the person still chose
the item, and partial refunds do not say which line went back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import ibis
import ibis.expr.types as ir
import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import sparse

from tenure.analytics._json import json_field
from tenure.analytics._orders import orders_as_of
from tenure.analytics._time import check_instant, days_between, instant
from tenure.errors import ValidationError
from tenure.store.engine import LakeTables

VIEW_EVENT = "Product Viewed"
CART_EVENT = "Product Added"
REVIEW_EVENT = "Product Reviewed"
NEUTRAL_RATING = 3.0
RATING_RANGE = (1.0, 5.0)
# Totals at or below this are zero: the floating-point residue of signals that cancel exactly
# (e.g. a view and a cart add against a 1-star review) must not become an interaction.
NEGLIGIBLE = 1e-9
COLUMNS: tuple[str, ...] = ("person_id", "item_id", "weight", "views", "carts", "purchases", "rating", "last_at")


@dataclass(frozen=True, slots=True)
class Signals:
    """How much each kind of fact weighs, how fast it fades, and how far back facts count.

    ``rating_weight`` scales a rating's distance from the neutral 3; ratings outside 1-5 are
    ignored. ``half_life_days=None`` means no decay, ``window_days=None`` all history.
    """

    view: float = 1.0
    cart: float = 3.0
    purchase: float = 5.0
    rating_weight: float = 2.0
    half_life_days: float | None = None
    window_days: float | None = None

    def __post_init__(self) -> None:
        for name in ("view", "cart", "purchase", "rating_weight"):
            _check_number(name, getattr(self, name), positive=False)
        for name in ("half_life_days", "window_days"):
            if getattr(self, name) is not None:
                _check_number(name, getattr(self, name), positive=True)


def _check_number(field: str, value: object, *, positive: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValidationError(field, f"must be a finite number, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise ValidationError(field, f"must be {'positive' if positive else 'non-negative'}, got {value!r}")


def interaction_weights(t: LakeTables, *, as_of: datetime, signals: Signals) -> ir.Table:
    """One row per (person_id, item_id) with a positive weight at ``as_of``.

    Columns: person_id, item_id, weight (float64, the decayed sum), views and carts (events),
    purchases (units bought), rating (the last rating, null if none) and last_at (the latest
    fact counted).
    """
    check_instant(as_of, "as_of")
    cut = instant(as_of)
    start = None if signals.window_days is None else instant(as_of - timedelta(days=signals.window_days))
    facts = _event_facts(t, cut, signals).union(_purchase_facts(t, as_of, signals), distinct=False)
    facts = facts.union(_rating_facts(t, cut, signals), distinct=False)
    if start is not None:
        facts = facts.filter(facts.timestamp >= start)
    decay = 1.0
    if signals.half_life_days is not None:
        decay = (days_between(cut, facts.timestamp) * (-math.log(2) / signals.half_life_days)).exp()
    scored = facts.mutate(_score=facts._score * decay)
    pairs = scored.group_by("person_id", "item_id").aggregate(
        _total=scored._score.sum(),
        views=scored.views.sum(),
        carts=scored.carts.sum(),
        purchases=scored.purchases.sum(),
        rating=scored.rating.max(),
        last_at=scored.timestamp.max(),
    )
    pairs = pairs.filter(pairs._total > NEGLIGIBLE)
    return pairs.mutate(weight=pairs._total.cast("float64")).select(*COLUMNS)


def _fact(
    table: ir.Table,
    *,
    score: ir.FloatingValue,
    views: ir.Value | int = 0,
    carts: ir.Value | int = 0,
    purchases: ir.Value | int = 0,
    rating: ir.Value | None = None,
) -> ir.Table:
    """The shared shape of every fact, so the kinds union into one table."""
    return table.select(
        "person_id",
        "item_id",
        "timestamp",
        views=_as_value(views).cast("int64"),
        carts=_as_value(carts).cast("int64"),
        purchases=_as_value(purchases).cast("int64"),
        rating=ibis.null("float64") if rating is None else rating.cast("float64"),
        _score=score.cast("float64"),
    )


def _as_value(value: ir.Value | int) -> ir.Value:
    return value if isinstance(value, ir.Value) else ibis.literal(value)


def _product_events(t: LakeTables, cut: ir.TimestampScalar, names: Sequence[str]) -> ir.Table:
    e = t.events
    found = e.filter(e.event.isin(list(names)), e.timestamp < cut, e.person_id.notnull())
    found = found.mutate(item_id=json_field(found.properties, "product_id"))
    return found.filter(found.item_id.notnull())


def _event_facts(t: LakeTables, cut: ir.TimestampScalar, signals: Signals) -> ir.Table:
    found = _product_events(t, cut, (VIEW_EVENT, CART_EVENT))
    viewed = found.event == VIEW_EVENT
    score = ibis.cases((viewed, signals.view), else_=signals.cart)
    return _fact(found, views=viewed, carts=~viewed, score=score)


def _purchase_facts(t: LakeTables, as_of: datetime, signals: Signals) -> ir.Table:
    """Units on the lines of orders known at ``as_of``; a line without a quantity is one unit."""
    orders = orders_as_of(t, as_of=as_of).select("order_id", "person_id", "timestamp")
    lines = t.order_items.select(
        _order=t.order_items.order_id, item_id=t.order_items.product_id, units=t.order_items.quantity.fill_null(1)
    )
    joined = orders.join(lines, orders.order_id == lines._order)
    joined = joined.filter(joined.item_id.notnull(), joined.units > 0)
    return _fact(joined, purchases=joined.units, score=joined.units.cast("float64") * signals.purchase)


def _rating_facts(t: LakeTables, cut: ir.TimestampScalar, signals: Signals) -> ir.Table:
    """Each pair's last valid rating (ties on time broken by message id); the window applies to it like any fact."""
    found = _product_events(t, cut, (REVIEW_EVENT,))
    found = found.mutate(_rating=json_field(found.properties, "rating").try_cast("float64"))
    low, high = RATING_RANGE
    found = found.filter(found._rating.between(low, high))
    latest = ibis.row_number().over(
        group_by=[found.person_id, found.item_id], order_by=[ibis.desc(found.timestamp), ibis.desc(found.message_id)]
    )
    last = found.mutate(_rank=latest).filter(lambda r: r._rank == 0)
    return _fact(last, rating=last._rating, score=(last._rating - NEUTRAL_RATING) * signals.rating_weight)


@dataclass(frozen=True, slots=True, eq=False)
class InteractionMatrix:
    """People × items weights with the ids behind each row and column (both sorted)."""

    matrix: sparse.csr_matrix
    people: npt.NDArray[np.str_]
    items: npt.NDArray[np.str_]

    def row_of(self, person_ids: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """The row of each person; unknown ids are refused (a cold-start person has no row)."""
        return _positions(self.people, person_ids, "person_id")

    def column_of(self, item_ids: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """The column of each item; unknown ids are refused."""
        return _positions(self.items, item_ids, "item_id")


def build_matrix(frame: pd.DataFrame) -> InteractionMatrix:
    """The csr matrix of ``frame``'s (person_id, item_id, weight) rows, e.g. ``interaction_weights``'s."""
    missing = [c for c in ("person_id", "item_id", "weight") if c not in frame.columns]
    if missing:
        raise ValidationError("frame", f"missing columns: {', '.join(missing)}")
    for column in ("person_id", "item_id"):
        if frame[column].isna().any():
            raise ValidationError(column, "must not be null")
    if frame.duplicated(["person_id", "item_id"]).any():
        raise ValidationError("frame", "has more than one row for a (person_id, item_id) pair")
    weights = pd.to_numeric(frame["weight"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise ValidationError("weight", "must be finite and non-negative")
    people, rows = np.unique(frame["person_id"].astype(str).to_numpy(dtype=str), return_inverse=True)
    items, columns = np.unique(frame["item_id"].astype(str).to_numpy(dtype=str), return_inverse=True)
    matrix = sparse.csr_matrix((weights, (rows, columns)), shape=(len(people), len(items)), dtype=np.float64)
    matrix.eliminate_zeros()
    return InteractionMatrix(matrix, people, items)


def _positions(ids: npt.NDArray[np.str_], wanted: npt.ArrayLike, field: str) -> npt.NDArray[np.int64]:
    keys = np.asarray(wanted, dtype=str).ravel()
    at = locate(ids, keys)
    if (at < 0).any():
        unknown = ", ".join(repr(k) for k in keys[at < 0][:5])
        raise ValidationError(field, f"unknown: {unknown}")
    return at


def locate(ids: npt.NDArray[np.str_], keys: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """The position of each key in the sorted ``ids``, -1 where it is missing."""
    wanted = np.asarray(keys, dtype=str).ravel()
    at = np.searchsorted(ids, wanted).astype(np.int64)
    inside = at < len(ids)
    found = np.zeros(len(wanted), dtype=bool)
    found[inside] = ids[at[inside]] == wanted[inside]
    return np.where(found, at, -1)
