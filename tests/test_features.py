"""Person features against a plain-Python reference on random little histories, and on Spark.

The histories mix anonymous and identified activity (each anonymous id belongs to one user
and is linked to them only if some identify, alias or two-id track says so), orders with
lines, partial and full refunds, cancellations, and instants on session and window
boundaries and exactly at ``as_of``. The reference reads the messages only.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from analytics_support import assert_engines_agree, ingest, run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tenure import Workspace
from tenure.analytics._time import cutoff
from tenure.analytics.features import person_features
from tenure.errors import ValidationError

from conftest import make_workspace

BASE = datetime(2025, 1, 1, tzinfo=UTC)
DAYS = (0, 1, 2, 7, 29, 30, 31, 60, 61, 89, 90, 120, 180, 181, 182, 240, 300)
MINUTES = (0, 15, 30, 45, 46, 300, 1439)  # 0->30 is one session, 15->46 two; 1439 crosses local dates
USERS = ("u0", "u1", "u2")
OWNER = {"u0-a": "u0", "u1-a": "u1", "x0": None, "x1": None}  # x* are never linked to anyone
ZONES = ("UTC", "America/New_York", "Asia/Kolkata")
MICROS_PER_DAY = 86_400_000_000
SLOW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@dataclass(frozen=True)
class History:
    messages: list[dict[str, Any]]
    as_of: datetime
    zone: str


def at(day: int, minute: int, seconds: int = 0) -> datetime:
    return BASE + timedelta(days=day, minutes=minute, seconds=seconds)


def iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


@st.composite
def messages(draw: st.DrawFn, max_size: int = 25, first: int = 0, order_ids: tuple[str, ...] = (),
             links: bool = True, start: datetime | None = None) -> list[dict[str, Any]]:
    """Random Segment messages; ``start`` puts them all at or after an instant."""
    kinds = ["track", "page", "order", "order", "refund", "cancel"] + (["identify", "alias"] if links else [])
    out: list[dict[str, Any]] = []
    orders = list(order_ids)
    for i in range(first, first + draw(st.integers(1, max_size))):
        kind = draw(st.sampled_from(kinds))
        user = draw(st.sampled_from(USERS))
        anon = draw(st.sampled_from(sorted(OWNER)))
        ts = at(draw(st.sampled_from(DAYS)), draw(st.sampled_from(MINUTES)))
        if start is not None:
            ts = start + (ts - BASE)
        msg: dict[str, Any] = {"messageId": f"m{i}", "timestamp": iso(ts)}
        if kind in ("identify", "alias"):
            user = draw(st.sampled_from([u for u in USERS if f"{u}-a" in OWNER]))
            mine = f"{user}-a"
            traits = {"channel": draw(st.sampled_from(["seo", "paid", "email"])), "country": draw(st.sampled_from(["AU", "DE"]))}
            msg["timestamp"] = iso(ts + timedelta(seconds=i))  # trait merges follow time: keep them apart
            if kind == "identify":
                msg.update(type="identify", userId=user, anonymousId=mine, traits=traits)
            else:
                msg.update(type="alias", userId=user, previousId=mine)
            out.append(msg)
            continue
        who = draw(st.sampled_from(["user", "anon", "both"] if links else ["user", "anon"]))
        if who == "user":
            msg["userId"] = user
        elif who == "anon":
            msg["anonymousId"] = anon
        else:
            owned = draw(st.sampled_from([a for a, u in OWNER.items() if u]))
            msg.update(userId=OWNER[owned], anonymousId=owned)
        if kind == "page":
            msg.update(type="page", name="Home")
        elif kind == "track":
            msg.update(type="track", event=draw(st.sampled_from(["Product Viewed", "Signed Up"])))
        elif kind == "order":
            lines = draw(st.lists(st.tuples(st.sampled_from(["A", "B", "C", None]), st.integers(0, 3)), max_size=3))
            products = [{"product_id": f"p{j}", "price": 2.5, "quantity": q, **({"category": c} if c else {})}
                        for j, (c, q) in enumerate(lines)]
            orders.append(f"o{i}")
            msg.update(type="track", event="Order Completed", properties={
                "order_id": f"o{i}", "revenue": draw(st.sampled_from([0.0, 5.5, 10.0, 99.99])), "products": products})
        elif orders:
            target = draw(st.sampled_from(orders))
            if kind == "cancel":
                msg.update(type="track", event="Order Cancelled", properties={"order_id": target})
            else:
                amount = draw(st.sampled_from([None, 3.0, 50.0]))
                props: dict[str, Any] = {"order_id": target} | ({"revenue": amount} if amount is not None else {})
                msg.update(type="track", event="Order Refunded", properties=props)
        else:
            msg.update(type="track", event="Signed Up")
        out.append(msg)
    return out


@st.composite
def histories(draw: st.DrawFn) -> History:
    return History(draw(messages()), at(draw(st.sampled_from(DAYS)), draw(st.sampled_from(MINUTES))),
                   draw(st.sampled_from(ZONES)))


def workspace(factory: pytest.TempPathFactory, zone: str, batch: list[dict[str, Any]]) -> Workspace:
    root = factory.mktemp("features") / "ws"
    make_workspace(root).close()
    toml = root / "tenure.toml"
    toml.write_text(toml.read_text().replace('timezone = "UTC"', f'timezone = "{zone}"'))
    ws = Workspace(root)
    ingest(ws, batch)
    return ws


# --- the reference: plain Python over the messages -------------------------------------------------


def ts_of(msg: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(msg["timestamp"])


def micros(ts: datetime) -> int:
    return (ts - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def days(later: datetime, earlier: datetime) -> float:
    return (micros(later) - micros(earlier)) / MICROS_PER_DAY


def person_of(batch: list[dict[str, Any]]) -> dict[str, str]:
    """Message id -> person: a user id, else the anonymous id's user if ever linked, else itself."""
    linked = {m.get("anonymousId") for m in batch if m.get("userId")} | {m.get("previousId") for m in batch}
    out = {}
    for m in batch:
        anon: str = m.get("anonymousId", "")
        owner = OWNER.get(anon) if anon in linked else None
        out[m["messageId"]] = m.get("userId") or owner or anon
    return out


@dataclass(frozen=True)
class Known:
    """An order as known at ``as_of``: its person, time, net revenue and lines."""

    order_id: str
    person: str
    at: datetime
    net: float
    lines: list[dict[str, Any]]


def known_orders(batch: list[dict[str, Any]], as_of: datetime) -> list[Known]:
    person = person_of(batch)
    adjustments: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for m in batch:
        if m.get("event") in ("Order Refunded", "Order Cancelled") and ts_of(m) < as_of:
            adjustments[m["properties"]["order_id"]].append(m)
    out = []
    for m in batch:
        if m.get("event") != "Order Completed" or ts_of(m) >= as_of:
            continue
        props = m["properties"]
        adj = adjustments[props["order_id"]]
        if any(a["event"] == "Order Cancelled" for a in adj):
            continue
        if any("revenue" not in a["properties"] for a in adj):
            net = 0.0
        else:
            net = max(props["revenue"] - sum(a["properties"]["revenue"] for a in adj), 0.0)
        out.append(Known(props["order_id"], person[m["messageId"]], ts_of(m), net, props["products"]))
    return out


def current_traits(batch: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    person = person_of(batch)
    traits: dict[str, dict[str, str]] = defaultdict(dict)
    for m in sorted((m for m in batch if m["type"] == "identify"), key=ts_of):
        traits[person[m["messageId"]]].update(m["traits"])
    return traits


def reference_features(batch: list[dict[str, Any]], as_of: datetime, zone: str) -> pd.DataFrame:
    person = person_of(batch)
    seen: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for m in batch:
        if ts_of(m) < as_of:
            seen[person[m["messageId"]]].append(m)
    bought: dict[str, list[Known]] = defaultdict(list)
    for order in known_orders(batch, as_of):
        bought[order.person].append(order)
    traits = current_traits(batch)
    rows = []
    for who, events in seen.items():
        times = sorted(ts_of(m) for m in events)
        orders = sorted(o.at for o in bought[who])
        revenue = sum(o.net for o in bought[who])
        gaps = [days(b, a) for a, b in zip(orders, orders[1:], strict=False)]
        starts = [t for i, t in enumerate(times) if i == 0 or t - times[i - 1] > timedelta(minutes=30)]
        units: dict[str, int] = defaultdict(int)
        for order in bought[who]:
            for line in order.lines:
                if line.get("category") and line["quantity"] > 0:
                    units[line["category"]] += line["quantity"]
        top = min(units, key=lambda c: (-units[c], c)) if units else None
        row: dict[str, Any] = {
            "person_id": who,
            "identified": any(m.get("userId") for m in events),
            "first_seen": times[0],
            "last_seen": times[-1],
            "first_order_at": orders[0] if orders else None,
            "last_order_at": orders[-1] if orders else None,
            "tenure_days": days(as_of, times[0]),
            "orders": len(orders),
            "revenue": revenue,
            "aov": revenue / len(orders) if orders else None,
            "recency_days": days(as_of, orders[-1]) if orders else None,
            "ipt_mean_days": days(orders[-1], orders[0]) / (len(orders) - 1) if len(orders) >= 2 else None,
            "ipt_std_days": statistics.pstdev(gaps) if len(orders) >= 3 else None,
            "active_days": len({t.astimezone(ZoneInfo(zone)).date() for t in times}),
            "top_category": top,
            "top_category_share": units[top] / sum(units.values()) if top else None,
            "distinct_categories": len(units),
            "channel": traits[who].get("channel"),
            "country": traits[who].get("country"),
        }
        for window in (7, 30, 90):
            since = as_of - timedelta(days=window)
            row[f"events_{window}d"] = sum(t >= since for t in times)
            row[f"sessions_{window}d"] = sum(t >= since for t in starts)
        rows.append(row)
    return pd.DataFrame(rows, columns=None if rows else ["person_id"])


def features_of(ws: Workspace, as_of: datetime) -> pd.DataFrame:
    return run(ws, lambda t: person_features(t, as_of=as_of)).sort_values("person_id").reset_index(drop=True)


def assert_matches_reference(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert sorted(actual.person_id) == sorted(expected.person_id)
    if expected.empty:
        return
    expected = expected.set_index("person_id").loc[actual.person_id].reset_index()
    for column in expected.columns:
        want, got = list(expected[column]), list(actual[column])
        for who, w, g in zip(expected.person_id, want, got, strict=True):
            if pd.isna(w):
                assert pd.isna(g), (column, who, g)
            elif isinstance(w, float):
                assert g == pytest.approx(w, rel=1e-9, abs=1e-9), (column, who, w, g)
            elif isinstance(w, datetime):
                assert pd.Timestamp(g) == pd.Timestamp(w), (column, who, w, g)
            else:
                assert g == w, (column, who, w, g)


# --- tests ----------------------------------------------------------------------------------------


@SLOW
@given(history=histories())
def test_features_match_a_plain_python_reference(history: History, tmp_path_factory: pytest.TempPathFactory) -> None:
    ws = workspace(tmp_path_factory, history.zone, history.messages)
    try:
        assert_matches_reference(features_of(ws, history.as_of),
                                 reference_features(history.messages, history.as_of, history.zone))
    finally:
        ws.close()


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_nothing_at_or_after_as_of_leaks_in(data: st.DataObject, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Later events, orders, refunds and cancellations (no new identity links) change nothing."""
    history = data.draw(histories())
    orders = tuple(m["properties"]["order_id"] for m in history.messages if m.get("event") == "Order Completed")
    later = data.draw(messages(max_size=15, first=1000, order_ids=orders, links=False, start=history.as_of))
    assert all(ts_of(m) >= history.as_of for m in later)
    before = workspace(tmp_path_factory, history.zone, history.messages)
    after = workspace(tmp_path_factory, history.zone, history.messages + later)
    try:
        pd.testing.assert_frame_equal(features_of(before, history.as_of), features_of(after, history.as_of))
    finally:
        before.close()
        after.close()


def test_anonymous_activity_before_identify_and_one_event_people(tmp_path_factory: pytest.TempPathFactory) -> None:
    batch: list[dict[str, Any]] = [
        {"type": "page", "name": "Home", "anonymousId": "u0-a", "timestamp": "2025-01-01T23:50:00Z", "messageId": "m1"},
        {"type": "page", "name": "Home", "anonymousId": "u0-a", "timestamp": "2025-01-02T00:10:00Z", "messageId": "m2"},
        {"type": "identify", "userId": "u0", "anonymousId": "u0-a", "timestamp": "2025-01-05T00:00:00Z",
         "messageId": "m3", "traits": {"channel": "seo"}},
        {"type": "track", "event": "Signed Up", "anonymousId": "x0", "timestamp": "2025-01-03T00:00:00Z", "messageId": "m4"},
    ]
    as_of = datetime(2025, 1, 4, tzinfo=UTC)  # before the identify: the person exists, not identified yet
    ws = workspace(tmp_path_factory, "America/New_York", batch)
    try:
        frame = features_of(ws, as_of).set_index("person_id")
        assert_matches_reference(frame.reset_index(), reference_features(batch, as_of, "America/New_York"))
    finally:
        ws.close()
    u0, x0 = frame.loc["u0"], frame.loc["x0"]
    assert not u0.identified and u0.first_seen == pd.Timestamp("2025-01-01T23:50:00Z")
    assert u0.active_days == 1 and u0.sessions_7d == 1 and u0.events_7d == 2 and u0.channel == "seo"  # one local day
    assert x0.events_90d == 1 and x0.sessions_90d == 1 and x0.orders == 0 and pd.isna(x0.recency_days)


def test_naive_as_of_is_rejected(sample_shop: Workspace) -> None:
    with pytest.raises(ValidationError, match="as_of"):
        run(sample_shop, lambda t: person_features(t, as_of=datetime(2025, 4, 1)))


@pytest.mark.spark
def test_person_features_agree_on_spark(sample_shop: Workspace) -> None:
    as_of = cutoff("2025-04-15", sample_shop.settings.timezone)
    frame = assert_engines_agree(sample_shop, lambda t: person_features(t, as_of=as_of), ["person_id"])
    assert (frame.orders > 0).any() and frame.sessions_90d.sum() > 0 and frame.top_category.notna().any()
