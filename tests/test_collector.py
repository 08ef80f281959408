"""The HTTP collector end to end: the real Segment client, bad input, gzip, limits, kill -9."""

from __future__ import annotations

import base64
import gzip
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from segment.analytics.client import Client

from tenure import Workspace

from conftest import WRITE_KEY, make_workspace
from servers import Collector

pytestmark = pytest.mark.slow
AUTH = (WRITE_KEY, "")


def fast_flushing(root: Path, state_url: str | None = None) -> Path:
    ws = make_workspace(root, state_url)
    ws.close()
    toml = root / "tenure.toml"
    toml.write_text(toml.read_text().replace("flush_interval_seconds = 1.0", "flush_interval_seconds = 0.2"))
    return root


def lake_message_ids(root: Path) -> list[str]:
    with Workspace(root) as ws:
        engine = ws.engine()
        ids = engine.tables().events.message_id.execute().tolist()
        engine.close()
    return ids


def wait_for_ids(root: Path, expected: set[str], timeout: float = 30) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        ids = lake_message_ids(root)
        if expected <= set(ids) or time.monotonic() > deadline:
            return ids
        time.sleep(0.3)


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[Collector]:
    with Collector(fast_flushing(tmp_path / "ws")) as server:
        yield server


def test_official_segment_client_events_arrive_once(tmp_path: Path, state_url: str) -> None:
    root = fast_flushing(tmp_path / "ws", state_url)
    with Collector(root) as server:
        client = Client(WRITE_KEY, host=server.url, sync_mode=True, gzip=True, max_retries=2)
        sent = [
            client.page(anonymous_id="anon-1", name="Home", properties={"path": "/"}),
            client.identify("user-1", {"email": "ada@example.com", "plan": "pro"}, anonymous_id="anon-1"),
            client.track("user-1", "Product Viewed", {"product_id": "p1", "price": 9.5}),
            client.track("user-1", "Order Completed", {"order_id": "o-1", "revenue": 42.0, "currency": "EUR",
                                                        "products": [{"product_id": "p1", "price": 21, "quantity": 2}]}),
            client.screen("user-1", "Settings"),
            client.group("user-1", "acme", {"plan": "team"}),
            client.alias("anon-2", "user-1"),
        ]
        client.flush()
        assert all(ok for ok, _ in sent)
        expected = {msg["messageId"] for _, msg in sent}
        assert sorted(wait_for_ids(root, expected)) == sorted(expected)
        with Workspace(root) as ws:
            engine = ws.engine()
            t = engine.tables()
            persons = set(t.events.person_id.execute())
            order = t.orders.execute().iloc[0]
            traits = orjson.loads(t.users.execute()["traits"].iloc[0])
            engine.close()
            assert persons == {"user-1"}  # anon-1 by identify, anon-2 by alias
            assert order["revenue"] == pytest.approx(42.0 * ws.currencies.rate("EUR"))
            assert traits == {"email": "ada@example.com", "plan": "pro"}


def test_retried_batches_are_deduplicated(collector: Collector) -> None:
    batch = {"batch": [{"type": "track", "event": "E", "userId": "u", "messageId": f"r{i}"} for i in range(50)]}
    for _ in range(3):
        assert httpx.post(collector.url + "/v1/batch", json=batch, auth=AUTH).status_code == 200
    ids = wait_for_ids(collector.workspace, {f"r{i}" for i in range(50)})
    assert sorted(ids) == sorted(f"r{i}" for i in range(50))


@pytest.mark.parametrize(
    ("endpoint", "body", "status", "field"),
    [
        ("track", b"{not json", 400, "body"),
        ("track", b"[1, 2]", 400, "body"),
        ("track", orjson.dumps({"event": "E"}), 400, "userId"),
        ("track", orjson.dumps({"userId": "u", "event": 5}), 400, "event"),
        ("identify", orjson.dumps({"userId": "u", "traits": "vip"}), 400, "traits"),
        ("track", orjson.dumps({"userId": "u", "event": "E", "timestamp": "2999-01-01T00:00:00Z"}), 400, "timestamp"),
        ("track", orjson.dumps({"userId": "u", "event": "E", "timestamp": "1990-01-01T00:00:00Z"}), 400, "timestamp"),
        ("track", orjson.dumps({"userId": "u", "event": "E", "properties": {"x": "y" * 40_000}}), 400, "body"),
        ("batch", orjson.dumps({"batch": [{"type": "track", "userId": "u", "event": "E"}] * 2501}), 400, "batch"),
        ("batch", orjson.dumps({"batch": "nope"}), 400, "batch"),
        ("track", orjson.dumps({"userId": "u", "event": "Order Completed", "properties": {"order_id": "o", "revenue": "lots"}}),
         400, "properties.revenue"),
    ],
)
def test_bad_input_gets_a_4xx_naming_the_field(collector: Collector, endpoint: str, body: bytes, status: int, field: str) -> None:
    answer = httpx.post(f"{collector.url}/v1/{endpoint}", content=body, auth=AUTH,
                        headers={"content-type": "application/json"})
    assert answer.status_code == status
    assert answer.json()["error"]["field"] == field
    assert httpx.get(collector.url + "/health").status_code == 200


def test_oversized_batch_is_rejected(collector: Collector) -> None:
    big = {"batch": [{"type": "track", "userId": "u", "event": "E", "properties": {"pad": "x" * 20_000}}] * 30}
    answer = httpx.post(collector.url + "/v1/batch", json=big, auth=AUTH)
    assert answer.status_code == 400 and answer.json()["error"]["field"] == "body"


def test_write_key_is_required_and_checked(collector: Collector) -> None:
    msg = {"userId": "u", "event": "E"}
    assert httpx.post(collector.url + "/v1/track", json=msg).status_code == 401
    assert httpx.post(collector.url + "/v1/track", json=msg, auth=("wrong", "")).status_code == 401
    assert httpx.post(collector.url + "/v1/track", json={**msg, "writeKey": WRITE_KEY}).status_code == 200
    without_colon = {"Authorization": "Basic " + base64.b64encode(WRITE_KEY.encode()).decode()}
    assert httpx.post(collector.url + "/v1/track", json=msg, headers=without_colon).status_code == 200


def test_a_batch_keeps_its_good_messages_and_reports_the_bad(collector: Collector) -> None:
    batch = {
        "batch": [
            {"type": "track", "userId": "u", "event": "Good", "messageId": "g1"},
            {"type": "track", "event": "No ids", "messageId": "b1"},
            {"type": "alias", "previousId": "a", "userId": "u", "messageId": "g2"},
            {"type": "track", "userId": "u", "messageId": "b2"},
        ],
        "context": {"library": {"name": "curl"}},
    }
    body = gzip.compress(orjson.dumps(batch))
    answer = httpx.post(collector.url + "/v1/import", content=body, auth=AUTH,
                        headers={"content-encoding": "gzip", "content-type": "application/json"})
    assert answer.status_code == 200
    assert answer.json()["accepted"] == 2
    assert [(r["index"], r["field"]) for r in answer.json()["rejected"]] == [(1, "userId"), (3, "event")]
    assert sorted(wait_for_ids(collector.workspace, {"g1", "g2"})) == ["g1", "g2"]


SENDER = r"""
import sys, httpx, orjson
url, key, prefix, out = sys.argv[1:5]
acked = open(out, "a")
with httpx.Client(auth=(key, ""), timeout=5) as client:
    for n in range(100000):
        batch = [{"type": "track", "userId": f"u{i % 7}", "event": "Tick", "messageId": f"{prefix}-{n}-{i}"} for i in range(100)]
        try:
            ok = client.post(url + "/v1/batch", content=orjson.dumps({"batch": batch})).status_code == 200
        except httpx.TransportError:
            break
        if ok:
            acked.write(f"{prefix}-{n}\n"); acked.flush()
"""


def test_kill_9_mid_ingestion_loses_no_acknowledged_event(tmp_path: Path) -> None:
    root = fast_flushing(tmp_path / "ws")
    acked_file = tmp_path / "acked.txt"
    server = Collector(root).start()
    sender = subprocess.Popen([sys.executable, "-c", SENDER, server.url, WRITE_KEY, uuid.uuid4().hex[:6], str(acked_file)])
    time.sleep(3)
    server.kill()
    sender.wait(timeout=30)
    acked = acked_file.read_text().split()
    assert len(acked) > 20, "the sender should have had batches acknowledged before the kill"
    expected = {f"{batch}-{i}" for batch in acked for i in range(100)}
    with Collector(root, port=server.port) as again:  # restart: the inbox is flushed
        ids = wait_for_ids(root, expected, timeout=60)
        resent = {"batch": [{"type": "track", "userId": "u0", "event": "Tick", "messageId": f"{acked[0]}-{i}"} for i in range(100)]}
        assert httpx.post(again.url + "/v1/batch", json=resent, auth=AUTH).status_code == 200
        time.sleep(1)
        ids = lake_message_ids(root)
    assert expected <= set(ids)
    assert len(ids) == len(set(ids)), "an event landed twice"


def test_import_works_while_the_server_runs(collector: Collector, tmp_path: Path) -> None:
    csv = tmp_path / "events.csv"
    csv.write_text("message_id,user_id,event,timestamp\n" + "".join(f"f{i},u{i},Imported,2025-02-01T00:00:{i:02d}Z\n" for i in range(30)))
    batch = {"batch": [{"type": "track", "userId": "u", "event": "Live", "messageId": f"live{i}"} for i in range(100)]}
    importer = subprocess.Popen([sys.executable, "-m", "tenure.cli", "import", str(csv), "-w", str(collector.workspace)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for _ in range(10):
        assert httpx.post(collector.url + "/v1/batch", json=batch, auth=AUTH).status_code == 200
    assert importer.wait(timeout=60) == 0, importer.stderr.read()  # type: ignore[union-attr]
    expected = {f"f{i}" for i in range(30)} | {f"live{i}" for i in range(100)}
    assert sorted(wait_for_ids(collector.workspace, expected)) == sorted(expected)
