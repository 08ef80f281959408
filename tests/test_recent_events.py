"""The recent-item-events table: written by the real flusher, exactly once, pruned, and queried per person."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from tenure import ConfigError, Workspace
from tenure.clock import FrozenClock
from tenure.config import RecommendationSettings, load_settings
from tenure.errors import ValidationError
from tenure.ingest.flusher import flush_all, flush_once
from tenure.ingest.importer import import_file
from tenure.ingest.recent import recent_item_events
from tenure.spec.messages import normalize_message
from tenure.store.state import inbox
from tenure.store.state import recent_item_events as table

from conftest import make_workspace

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
Row = tuple[str | None, str | None, str, str, datetime, str]


@pytest.fixture
def ws(tmp_path: Path, state_url: str) -> Iterator[Workspace]:
    make_workspace(tmp_path / "ws", state_url).close()
    with Workspace(tmp_path / "ws", clock=FrozenClock(NOW)) as workspace:
        yield workspace


def track(message_id: str, event: str, at: datetime, *, user: str | None = None, anon: str | None = None,
          **properties: Any) -> dict[str, Any]:
    return {"type": "track", "messageId": message_id, "event": event, "userId": user, "anonymousId": anon,
            "timestamp": at.isoformat(), "properties": properties}


def enqueue(ws: Workspace, *messages: dict[str, Any]) -> None:
    """Store one request in the inbox, as the collector does."""
    records = [normalize_message(m, received_at=NOW + timedelta(days=1)) for m in messages]
    with ws.state.begin() as conn:
        conn.execute(inbox.insert(), [{"received_at": NOW, "n_messages": len(records), "body": orjson.dumps(records)}])


def stored(ws: Workspace) -> list[Row]:
    with ws.state.read() as conn:
        rows = conn.execute(
            sa.select(table.c.user_id, table.c.anonymous_id, table.c.item_id, table.c.kind, table.c.at,
                      table.c.message_id)
        ).all()
    return by_key([(u, a, i, k, _utc(at), m) for u, a, i, k, at, m in rows])


def by_key(rows: list[Row]) -> list[Row]:
    """Rows ordered by message id, then item: unique, and free of ``None``."""
    return sorted(rows, key=lambda row: (row[5], row[2]))


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def reference(messages: list[dict[str, Any]], since: datetime) -> list[Row]:
    """Plain Python: the first message of each id, then the first order of each id, one row per product."""
    kinds = {"Product Viewed": "view", "Product Added": "cart"}
    rows: dict[tuple[str, str], Row] = {}
    seen_messages: set[str] = set()
    seen_orders: set[str] = set()
    for m in messages:
        at = datetime.fromisoformat(m["timestamp"])
        if m["messageId"] in seen_messages:
            continue
        seen_messages.add(m["messageId"])
        props = m["properties"]
        who = (m["userId"], m["anonymousId"])
        if m["event"] in kinds and props.get("product_id") is not None and at >= since:
            rows.setdefault((m["messageId"], str(props["product_id"])),
                            (*who, str(props["product_id"]), kinds[m["event"]], at, m["messageId"]))
        if m["event"] == "Order Completed" and props["order_id"] not in seen_orders:
            seen_orders.add(props["order_id"])
            for product in props.get("products", []):
                if at >= since and product.get("product_id") is not None and product.get("quantity", 1) > 0:
                    key = ("order:" + props["order_id"], str(product["product_id"]))
                    rows.setdefault(key, (*who, str(product["product_id"]), "purchase", at, m["messageId"]))
    return by_key(list(rows.values()))


def test_views_cart_adds_and_order_lines_become_rows(ws: Workspace) -> None:
    t = NOW - timedelta(minutes=5)
    messages = [
        track("m1", "Product Viewed", t, anon="a1", product_id="p1"),
        track("m2", "Product Added", t + timedelta(seconds=1), user="u1", anon="a1", product_id=7),
        track("m3", "Order Completed", t + timedelta(seconds=2), user="u1", order_id="o1", currency="USD",
              products=[{"product_id": "p1", "price": 5}, {"product_id": "p2", "quantity": 0},
                        {"sku": "no-id", "price": 1}, {"product_id": "p3", "quantity": 2, "price": 3}]),
        track("m4", "Product Reviewed", t, user="u1", product_id="p1", rating=5),
        track("m5", "Order Refunded", t, user="u1", order_id="o1", products=[{"product_id": "p1"}]),
        track("m6", "Product Viewed", t, user="u2"),  # no product id: nothing to recommend from
        {"type": "page", "messageId": "m7", "anonymousId": "a1", "timestamp": t.isoformat(), "name": "Home"},
    ]
    enqueue(ws, *messages)
    assert flush_once(ws).events == len(messages)
    assert stored(ws) == [
        (None, "a1", "p1", "view", t, "m1"),
        ("u1", "a1", "7", "cart", t + timedelta(seconds=1), "m2"),
        ("u1", None, "p1", "purchase", t + timedelta(seconds=2), "m3"),
        ("u1", None, "p3", "purchase", t + timedelta(seconds=2), "m3"),
    ] == reference(messages[:-1], NOW - timedelta(hours=1))


def test_random_batches_with_redeliveries_match_the_reference(ws: Workspace) -> None:
    rng = random.Random(6)
    messages = []
    for n in range(300):
        at = NOW - timedelta(minutes=rng.uniform(0, 120))
        who = {"user": rng.choice([None, "u1", "u2", "u3"]), "anon": rng.choice(["a1", "a2", "a3", "a4"])}
        event = rng.choice(["Product Viewed", "Product Added", "Order Completed", "Page"])
        if event == "Order Completed":
            products = [{"product_id": rng.choice(["p1", "p2", "p3", None]), "quantity": rng.choice([0, 1, 2]),
                         "price": 1.0} for _ in range(rng.randint(0, 3))]
            messages.append(track(f"m{n}", event, at, order_id=f"o{n}", products=products, **who))
        else:
            messages.append(track(f"m{n}", event, at, product_id=rng.choice(["p1", "p2", "p3", "p4"]), **who))
    sent = messages + rng.sample(messages, 60)  # retried requests carry the same message ids
    for start in range(0, len(sent), 45):
        enqueue(ws, *sent[start : start + 45])
    flush_all(ws)
    expected = reference(sent, NOW - timedelta(hours=1))
    assert len(expected) > 80 and {row[3] for row in expected} == {"view", "cart", "purchase"}
    assert stored(ws) == expected


def test_a_message_flushed_twice_gives_one_row(ws: Workspace) -> None:
    view = track("m1", "Product Viewed", NOW - timedelta(minutes=1), user="u1", product_id="p1")
    order = track("m2", "Order Completed", NOW, user="u1", order_id="o1", products=[{"product_id": "p2"}])
    enqueue(ws, view, view, order)  # a retry inside one batch
    flush_once(ws)
    enqueue(ws, view, order)  # redelivered after the first flush
    resent = dict(order, messageId="m3")  # the same order under a new message id: the lake keeps one
    enqueue(ws, resent)
    flush_all(ws)
    assert [(row[2], row[3]) for row in stored(ws)] == [("p1", "view"), ("p2", "purchase")]


def test_old_events_are_not_stored_and_old_rows_are_pruned(ws: Workspace) -> None:
    retention = ws.settings.recommendations.retention
    assert retention == timedelta(hours=1)
    enqueue(ws, track("old", "Product Viewed", NOW - retention - timedelta(seconds=1), user="u1", product_id="p1"),
          track("edge", "Product Viewed", NOW - retention, user="u1", product_id="p2"),
          track("new", "Product Viewed", NOW - timedelta(minutes=10), user="u1", product_id="p3"))
    flush_once(ws)
    assert [row[5] for row in stored(ws)] == ["edge", "new"]
    ws.clock.advance(timedelta(minutes=5))  # type: ignore[attr-defined]
    enqueue(ws, track("later", "Product Added", NOW + timedelta(minutes=5), user="u2", product_id="p4"))
    flush_once(ws)
    assert [row[5] for row in stored(ws)] == ["later", "new"]  # "edge" fell out of the window


def test_the_identifiers_of_a_merged_person_find_all_their_events(ws: Workspace) -> None:
    t = NOW - timedelta(minutes=20)
    enqueue(
        ws,
        track("m1", "Product Viewed", t, anon="a1", product_id="p1"),
        track("m2", "Product Viewed", t + timedelta(minutes=1), anon="a1", product_id="p2"),
        {"type": "identify", "messageId": "m3", "userId": "u1", "anonymousId": "a1",
         "timestamp": (t + timedelta(minutes=2)).isoformat(), "traits": {"email": "u1@example.com"}},
        track("m4", "Product Added", t + timedelta(minutes=3), user="u1", product_id="p2"),
        track("m5", "Product Viewed", t + timedelta(minutes=4), anon="a2", product_id="p9"),  # someone else
    )
    flush_once(ws)
    ids = ws.identity.identifiers_of(ws.identity.person_of("a1"))
    assert sorted(ids) == ["a1", "u1"]
    found = recent_item_events(ws.state, ids, since=t)
    assert list(found.columns) == ["item_id", "kind", "at"]
    assert str(found["at"].dtype).endswith("UTC]")
    assert list(found.itertuples(index=False, name=None)) == [
        ("p2", "cart", t + timedelta(minutes=3)),
        ("p2", "view", t + timedelta(minutes=1)),
        ("p1", "view", t),
    ]
    with ws.state.read() as conn:
        later = recent_item_events(conn, ids, since=(t + timedelta(seconds=30)).astimezone(timezone(timedelta(hours=2))))
    assert list(later["item_id"]) == ["p2", "p2"]
    assert recent_item_events(ws.state, ["nobody"], since=t).empty


def test_a_failed_commit_stores_no_rows(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    enqueue(ws, track("m1", "Product Viewed", NOW, user="u1", anon="a1", product_id="p1"))

    def fail(*_args: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(ws.identity, "apply", fail)
    with pytest.raises(RuntimeError):
        flush_once(ws)
    assert stored(ws) == [] and ws.lake.snapshot().paths("events") == ()
    monkeypatch.undo()
    assert flush_once(ws).events == 1  # the inbox kept the message: the retry stores it once
    assert [row[5] for row in stored(ws)] == ["m1"]


def test_imported_history_does_not_fill_the_table(ws: Workspace, tmp_path: Path) -> None:
    row = {"message_id": "i1", "type": "track", "event": "Product Viewed", "user_id": "u1", "anonymous_id": None,
           "timestamp": NOW.isoformat(), "properties": {"product_id": "p1"}}
    (tmp_path / "events.jsonl").write_text(json.dumps(row) + "\n")
    assert import_file(ws, tmp_path / "events.jsonl", "events").imported == 1
    assert stored(ws) == []


@pytest.mark.parametrize(("minutes", "retention"), [(30.0, 60), (10, 60), (45.0, 90), (1440, 2880)])
def test_retention_is_twice_the_window_and_at_least_an_hour(tmp_path: Path, minutes: float, retention: int) -> None:
    (tmp_path / "tenure.toml").write_text(f"[recommendations]\nrealtime_minutes = {minutes}\n")
    settings = load_settings(tmp_path, environ={}).recommendations
    assert settings == RecommendationSettings(realtime_minutes=float(minutes))
    assert settings.retention == timedelta(minutes=retention)


@pytest.mark.parametrize("value", ["0", "-5", '"soon"', "nan", "inf", "1441", "true"])
def test_bad_realtime_window_names_the_key(tmp_path: Path, value: str) -> None:
    (tmp_path / "tenure.toml").write_text(f"[recommendations]\nrealtime_minutes = {value}\n")
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path, environ={})
    assert info.value.key == "recommendations.realtime_minutes"


def test_the_query_rejects_bad_arguments(ws: Workspace) -> None:
    with pytest.raises(ValidationError) as info:
        recent_item_events(ws.state, ["u1"], since=datetime(2025, 6, 1))
    assert info.value.field == "since"
    with pytest.raises(ValidationError) as info:
        recent_item_events(ws.state, "u1", since=NOW)
    assert info.value.field == "identifiers"
