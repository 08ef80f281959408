"""Recommendation signals against a plain-Python reference over the raw messages, on Spark, and as a matrix.

The random shops mix views, cart adds, reviews (valid, out-of-range and non-numeric ratings),
orders with repeated products and zero quantities, refunds and cancellations, identity links,
and instants exactly at ``as_of`` and on the window's edge. The reference reads the messages
only, reusing ``test_features``'s conventions for people and orders known at an instant.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from analytics_support import assert_engines_agree, run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_features import DAYS, MINUTES, OWNER, USERS, ZONES, at, days, iso, known_orders, person_of, ts_of, workspace

from tenure import Workspace
from tenure.analytics._time import cutoff
from tenure.errors import ValidationError
from tenure.models.signals import COLUMNS, NEGLIGIBLE, Signals, build_matrix, interaction_weights

from conftest import make_workspace

PRODUCTS = ("p0", "p1", "p2")
RATINGS: tuple[Any, ...] = (1, 2, 3, 4, 5, 4.5, 0, 6, "x", None)  # 0, 6, "x" and a missing rating are ignored
SETTINGS = (
    Signals(),
    Signals(half_life_days=30),
    Signals(view=0.5, cart=2.0, purchase=4.0, rating_weight=3.0, half_life_days=7, window_days=30),
    Signals(window_days=60, rating_weight=0.0),
    Signals(view=1.0, cart=1.0, rating_weight=1.0),  # a view and a cart against a 1-star review cancel exactly
)


@dataclass(frozen=True)
class Shop:
    messages: list[dict[str, Any]]
    as_of: datetime
    zone: str
    signals: Signals


@st.composite
def shop_messages(draw: st.DrawFn) -> list[dict[str, Any]]:
    kinds = ["view", "view", "cart", "review", "order", "order", "refund", "cancel", "identify", "alias"]
    out: list[dict[str, Any]] = []
    orders: list[str] = []
    for i in range(draw(st.integers(1, 30))):
        kind = draw(st.sampled_from(kinds))
        msg: dict[str, Any] = {"messageId": f"m{i:02d}",
                               "timestamp": iso(at(draw(st.sampled_from(DAYS)), draw(st.sampled_from(MINUTES))))}
        if kind in ("identify", "alias"):
            user = draw(st.sampled_from([u for u in USERS if f"{u}-a" in OWNER]))
            link = {"anonymousId": f"{user}-a"} if kind == "identify" else {"previousId": f"{user}-a"}
            out.append(msg | {"type": kind, "userId": user} | link)
            continue
        who = draw(st.sampled_from(["user", "anon", "both"]))
        if who == "user":
            msg["userId"] = draw(st.sampled_from(USERS))
        elif who == "anon":
            msg["anonymousId"] = draw(st.sampled_from(sorted(OWNER)))
        else:
            owned = draw(st.sampled_from([a for a, u in OWNER.items() if u]))
            msg.update(userId=OWNER[owned], anonymousId=owned)
        product = draw(st.sampled_from([*PRODUCTS, None]))
        props: dict[str, Any] = {} if product is None else {"product_id": product}
        if kind in ("view", "cart"):
            msg.update(type="track", event="Product Viewed" if kind == "view" else "Product Added", properties=props)
        elif kind == "review":
            rating = draw(st.sampled_from(RATINGS))
            msg.update(type="track", event="Product Reviewed",
                       properties=props | ({} if rating is None else {"rating": rating}))
        elif kind == "order":
            lines = draw(st.lists(st.tuples(st.sampled_from([*PRODUCTS, None]), st.sampled_from([0, 1, 2, 3, None])),
                                  min_size=1, max_size=3))
            products = [{"price": 2.5} | ({"product_id": p} if p else {}) | ({"quantity": q} if q is not None else {})
                        for p, q in lines]
            orders.append(f"o{i}")
            msg.update(type="track", event="Order Completed",
                       properties={"order_id": f"o{i}", "revenue": 10.0, "products": products})
        elif orders:
            target = draw(st.sampled_from(orders))
            event = "Order Cancelled" if kind == "cancel" else "Order Refunded"
            msg.update(type="track", event=event, properties={"order_id": target})
        else:
            msg.update(type="track", event="Product Viewed", properties=props)
        out.append(msg)
    return out


@st.composite
def shops(draw: st.DrawFn) -> Shop:
    """``as_of`` is often a fact's time, or that plus the window, to put facts on both edges."""
    batch, signals = draw(shop_messages()), draw(st.sampled_from(SETTINGS))
    edge = ts_of(draw(st.sampled_from(batch)))
    as_of = draw(st.sampled_from([
        at(draw(st.sampled_from(DAYS)), draw(st.sampled_from(MINUTES))),
        edge,
        edge + timedelta(days=signals.window_days or 0),
    ]))
    return Shop(batch, as_of, draw(st.sampled_from(ZONES)), signals)


# --- the reference: plain Python over the messages -------------------------------------------------


def valid_rating(props: dict[str, Any]) -> float | None:
    value = props.get("rating")
    if isinstance(value, bool) or not isinstance(value, int | float) or not 1 <= value <= 5:
        return None
    return float(value)


def reference_weights(batch: list[dict[str, Any]], as_of: datetime, signals: Signals) -> pd.DataFrame:
    """Every counted fact as (person, item, time, kind, amount), then decayed sums per pair."""
    start = None if signals.window_days is None else as_of - timedelta(days=signals.window_days)

    def counts(ts: datetime) -> bool:
        return ts < as_of and (start is None or ts >= start)

    person = person_of(batch)
    facts: list[tuple[str, str, datetime, str, float]] = []
    reviews: dict[tuple[str, str], tuple[datetime, str, float]] = {}
    for m in batch:
        props, ts = m.get("properties", {}), ts_of(m)
        if not counts(ts) or props.get("product_id") is None:
            continue
        pair = (person[m["messageId"]], props["product_id"])
        if m.get("event") == "Product Viewed":
            facts.append((*pair, ts, "view", 1.0))
        elif m.get("event") == "Product Added":
            facts.append((*pair, ts, "cart", 1.0))
        elif m.get("event") == "Product Reviewed" and (rating := valid_rating(props)) is not None:
            reviews[pair] = max(reviews.get(pair, (ts, "", rating)), (ts, m["messageId"], rating))
    for (who, item), (ts, _, rating) in reviews.items():
        facts.append((who, item, ts, "rating", rating))
    for order in known_orders(batch, as_of):
        for line in order.lines:
            units = line.get("quantity", 1)
            if counts(order.at) and line.get("product_id") and units > 0:
                facts.append((order.person, line["product_id"], order.at, "purchase", float(units)))

    per_pair: dict[tuple[str, str], dict[str, Any]] = defaultdict(
        lambda: {"total": 0.0, "views": 0, "carts": 0, "purchases": 0, "rating": None, "last_at": None})
    for who, item, ts, kind, amount in facts:
        row = per_pair[who, item]
        score = {"view": signals.view, "cart": signals.cart, "purchase": signals.purchase * amount,
                 "rating": signals.rating_weight * (amount - 3)}[kind]
        if signals.half_life_days is not None:
            score *= 0.5 ** (days(as_of, ts) / signals.half_life_days)
        row["total"] += score
        row[{"view": "views", "cart": "carts", "purchase": "purchases"}.get(kind, "rating")] = (
            amount if kind == "rating" else row[f"{kind}s"] + int(amount))
        row["last_at"] = ts if row["last_at"] is None else max(row["last_at"], ts)
    rows = [{"person_id": who, "item_id": item, "weight": row["total"]} | {c: row[c] for c in COLUMNS[3:]}
            for (who, item), row in per_pair.items() if row["total"] > NEGLIGIBLE]
    return pd.DataFrame(rows, columns=list(COLUMNS)).sort_values(["person_id", "item_id"]).reset_index(drop=True)


def weights_of(ws: Workspace, as_of: datetime, signals: Signals) -> pd.DataFrame:
    frame = run(ws, lambda t: interaction_weights(t, as_of=as_of, signals=signals))
    return frame.sort_values(["person_id", "item_id"]).reset_index(drop=True)


def assert_matches_reference(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(actual.columns) == list(COLUMNS)
    assert list(zip(actual.person_id, actual.item_id, strict=True)) == list(
        zip(expected.person_id, expected.item_id, strict=True))
    assert actual.weight.to_numpy() == pytest.approx(expected.weight.to_numpy(), rel=1e-9, abs=1e-12)
    for column in ("views", "carts", "purchases"):
        assert actual[column].tolist() == expected[column].tolist(), column
    assert [None if pd.isna(r) else r for r in actual.rating] == [None if pd.isna(r) else r for r in expected.rating]
    assert [pd.Timestamp(x) for x in actual.last_at] == [pd.Timestamp(x) for x in expected.last_at]


# --- tests ----------------------------------------------------------------------------------------


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shop=shops())
def test_weights_match_a_plain_python_reference(shop: Shop, tmp_path_factory: pytest.TempPathFactory) -> None:
    ws = workspace(tmp_path_factory, shop.zone, shop.messages)
    try:
        actual = weights_of(ws, shop.as_of, shop.signals)
    finally:
        ws.close()
    assert_matches_reference(actual, reference_weights(shop.messages, shop.as_of, shop.signals))
    assert (actual.weight > 0).all() and actual.weight.dtype == np.float64


def test_a_hand_worked_history(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Weights worked out by hand, so the reference itself is checked too."""
    def track(i: int, day: int, event: str, props: dict[str, Any], who: dict[str, str]) -> dict[str, Any]:
        return {"type": "track", "messageId": f"h{i}", "timestamp": iso(at(day, 0)), "event": event,
                "properties": props} | who

    u0, anon = {"userId": "u0"}, {"anonymousId": "u0-a"}
    batch = [
        track(1, 0, "Product Viewed", {"product_id": "p1"}, anon),  # u0's once linked below
        track(2, 10, "Product Added", {"product_id": "p1"}, u0),
        track(3, 10, "Product Added", {"product_id": "p1"}, u0),
        track(4, 20, "Order Completed", {"order_id": "o1", "revenue": 9.0, "products": [
            {"product_id": "p1", "quantity": 2}, {"product_id": "p2"}, {"product_id": "p1", "quantity": 1}]}, u0),
        track(5, 20, "Order Completed", {"order_id": "o2", "revenue": 9.0, "products": [
            {"product_id": "p2", "quantity": 5}]}, u0),
        track(6, 21, "Order Cancelled", {"order_id": "o2"}, u0),
        track(7, 25, "Product Reviewed", {"product_id": "p2", "rating": 5}, u0),
        track(8, 26, "Product Reviewed", {"product_id": "p2", "rating": 1}, u0),  # the last rating wins...
        track(0, 26, "Product Reviewed", {"product_id": "p2", "rating": 2}, u0),  # ...ties by message id
        track(9, 30, "Product Viewed", {"product_id": "p0"}, u0),  # exactly at as_of: not yet known
        track(11, 5, "Product Viewed", {"product_id": "p1"}, u0),  # exactly at the 25-day window's start
        track(12, 5, "Product Reviewed", {"product_id": "p0", "rating": 5}, u0),  # likewise
        {"type": "identify", "messageId": "h10", "timestamp": iso(at(1, 0)), "userId": "u0", "anonymousId": "u0-a"},
    ]
    as_of = at(30, 0)
    ws = workspace(tmp_path_factory, "UTC", batch)
    try:
        plain = weights_of(ws, as_of, Signals())
        decayed = weights_of(ws, as_of, Signals(half_life_days=10, window_days=25, rating_weight=0.5))
    finally:
        ws.close()
    p1, p2 = plain.set_index("item_id").loc["p1"], plain.set_index("item_id").loc["p2"]
    assert list(plain.person_id) == ["u0"] * 3
    assert (p1.views, p1.carts, p1.purchases, p1.weight) == (2, 2, 3, 2 * 1 + 2 * 3 + 3 * 5)
    assert plain.set_index("item_id").loc["p0"].weight == 2 * (5 - 3)
    assert (p2.purchases, p2.rating, p2.weight) == (1, 1.0, 5 + 2 * (1 - 3))
    assert p2.last_at == pd.Timestamp(at(26, 0))
    # The 25-day window starts on day 5 (the first view is out, day 5 in, 2.5 half-lives old); the carts are
    # two half-lives old, the order one.
    window = decayed.set_index("item_id")
    assert window.loc["p1"].weight == pytest.approx(0.5**2.5 + 2 * 3 * 0.25 + 3 * 5 * 0.5, rel=1e-12)
    assert window.loc["p0"].weight == pytest.approx(0.5 * 2 * 0.5**2.5, rel=1e-12)
    assert window.loc["p2"].weight == pytest.approx(5 * 0.5 - 0.5 * 2 * 0.5 ** 0.4, rel=1e-12)
    assert_matches_reference(plain, reference_weights(batch, as_of, Signals()))


def test_negative_totals_are_dropped_not_negative(tmp_path_factory: pytest.TempPathFactory) -> None:
    batch = [{"type": "track", "messageId": "r1", "timestamp": iso(at(1, 0)), "userId": "u1",
              "event": "Product Reviewed", "properties": {"product_id": "p0", "rating": 1}},
             {"type": "track", "messageId": "r2", "timestamp": iso(at(1, 0)), "userId": "u1",
              "event": "Product Reviewed", "properties": {"product_id": "p1", "rating": 4}}]
    ws = workspace(tmp_path_factory, "UTC", batch)
    try:
        frame = weights_of(ws, at(2, 0), Signals())
    finally:
        ws.close()
    assert frame[["item_id", "weight", "rating"]].values.tolist() == [["p1", 2.0, 4.0]]


@pytest.mark.parametrize(
    ("field", "value"),
    [("view", -1.0), ("cart", float("nan")), ("purchase", True), ("rating_weight", "2"),
     ("half_life_days", 0), ("half_life_days", float("inf")), ("window_days", -30)],
)
def test_bad_settings_name_their_field(field: str, value: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        Signals(**{field: value})
    assert caught.value.field == field


def test_naive_as_of_is_rejected(tmp_path: Any) -> None:
    ws = make_workspace(tmp_path / "ws")
    try:
        with pytest.raises(ValidationError, match="as_of"):
            run(ws, lambda t: interaction_weights(t, as_of=datetime(2025, 4, 1), signals=Signals()))
    finally:
        ws.close()


def test_matrix_round_trip_puts_weights_in_their_cells() -> None:
    rng = np.random.default_rng(3)
    people = np.array([f"u{i}" for i in rng.permutation(40)])
    items = np.array([f"p{i:02d}" for i in rng.permutation(25)])
    cells = {(str(rng.choice(people)), str(rng.choice(items))) for _ in range(300)}
    frame = pd.DataFrame([(p, i, float(rng.uniform(0.1, 9))) for p, i in cells], columns=["person_id", "item_id", "weight"])
    m = build_matrix(frame.sample(frac=1.0, random_state=1))
    assert list(m.people) == sorted(frame.person_id.unique()) and list(m.items) == sorted(frame.item_id.unique())
    dense = m.matrix.toarray()
    assert dense[m.row_of(frame.person_id), m.column_of(frame.item_id)].tolist() == frame.weight.tolist()
    assert m.matrix.nnz == len(frame) and dense.sum() == pytest.approx(frame.weight.sum())
    assert m.people[m.row_of(["u7", "u3"])].tolist() == ["u7", "u3"]
    with pytest.raises(ValidationError, match="person_id"):
        m.row_of(["u3", "nobody"])
    with pytest.raises(ValidationError, match="item_id"):
        m.column_of(["zzz"])


@pytest.mark.parametrize(
    ("frame", "field"),
    [(pd.DataFrame({"person_id": ["a"], "item_id": ["x"]}), "frame"),
     (pd.DataFrame({"person_id": ["a", "a"], "item_id": ["x", "x"], "weight": [1.0, 2.0]}), "frame"),
     (pd.DataFrame({"person_id": ["a"], "item_id": ["x"], "weight": [-1.0]}), "weight"),
     (pd.DataFrame({"person_id": ["a"], "item_id": ["x"], "weight": [float("nan")]}), "weight"),
     (pd.DataFrame({"person_id": [None], "item_id": ["x"], "weight": [1.0]}), "person_id")],
)
def test_bad_frames_are_refused(frame: pd.DataFrame, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        build_matrix(frame)
    assert caught.value.field == field


def test_sample_shop_matrix_feeds_a_recommender(sample_shop: Workspace) -> None:
    from tenure.models.recommend_popularity import Popularity

    as_of = cutoff("2025-04-15", sample_shop.settings.timezone)
    frame = run(sample_shop, lambda t: interaction_weights(t, as_of=as_of, signals=Signals(half_life_days=30)))
    m = build_matrix(frame)
    assert m.matrix.nnz == len(frame) and m.matrix.sum() == pytest.approx(frame.weight.sum(), rel=1e-12)
    assert (frame.purchases > 0).any() and (frame.carts > 0).any() and frame.rating.notna().any()
    rows = m.row_of(m.people[:3])
    top, _ = Popularity().fit(m.matrix).recommend(m.matrix[rows], n=5)
    assert top.shape == (3, 5)


@pytest.mark.spark
def test_weights_agree_on_spark(sample_shop: Workspace) -> None:
    as_of = cutoff("2025-04-15", sample_shop.settings.timezone)
    signals = Signals(half_life_days=30, window_days=90)
    frame = assert_engines_agree(sample_shop, lambda t: interaction_weights(t, as_of=as_of, signals=signals),
                                 ["person_id", "item_id"])
    assert (frame.purchases > 0).any() and frame.rating.notna().any() and (frame.weight > 0).all()
