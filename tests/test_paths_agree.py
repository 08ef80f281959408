"""A message means the same whether it came over HTTP or in a file."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tenure.ingest.batches import build_batch
from tenure.ingest.collector import parse_request
from tenure.ingest.importer import import_file

from conftest import make_workspace

T0 = datetime(2025, 4, 1, tzinfo=UTC)
ids = st.sampled_from(["u1", "u2", "a1", "a2", None])


@st.composite
def messages(draw: st.DrawFn) -> list[dict[str, object]]:
    out = []
    for n in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(["track", "identify", "page", "alias", "order"]))
        user, anon = draw(ids), draw(ids)
        base: dict[str, object] = {
            "messageId": f"m{n}",
            "timestamp": (T0 + timedelta(minutes=draw(st.integers(0, 5000)))).isoformat(),
            "userId": user,
            "anonymousId": anon or ("fallback" if user is None else None),
        }
        if kind == "track":
            base |= {"type": "track", "event": draw(st.sampled_from(["Product Viewed", "Signed Up"])), "properties": {"n": n}}
        elif kind == "identify":
            base |= {"type": "identify", "traits": {"plan": draw(st.sampled_from(["free", "pro"]))}}
        elif kind == "page":
            base |= {"type": "page", "name": "Home", "properties": {"path": "/"}}
        elif kind == "alias":
            base |= {"type": "alias", "previousId": draw(st.sampled_from(["a1", "a2", "old"])), "userId": user or "u3"}
        else:
            amount = draw(st.floats(0, 500).map(lambda x: round(x, 2)))
            base |= {"type": "track", "event": "Order Completed", "properties": {
                "order_id": f"o{n}", "currency": draw(st.sampled_from(["USD", "EUR"])),
                "products": [{"product_id": "p1", "price": amount, "quantity": draw(st.integers(0, 3))}]}}
        out.append({k: v for k, v in base.items() if v is not None})
    return out


def facts(ws_root: Path) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]], dict[str, str]]:
    from tenure import Workspace

    with Workspace(ws_root) as ws:
        engine = ws.engine()
        t = engine.tables()
        ev = t.events.execute()
        orders = t.orders.execute()
        engine.close()
    events = sorted(
        (r.message_id, r.type, r.event, r.person_id, r.timestamp, orjson.loads(r.properties) if isinstance(r.properties, str) else None)
        for r in ev.itertuples()
    )
    order_rows = sorted((r.order_id, r.person_id, round(r.revenue, 6)) for r in orders.itertuples())
    return events, order_rows, dict(zip(ev.message_id, ev.person_id, strict=True))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=messages())
def test_collector_and_importer_store_the_same_facts(tmp_path_factory: object, batch: list[dict[str, object]]) -> None:
    base = tmp_path_factory.mktemp("agree")  # type: ignore[attr-defined]
    http, files = make_workspace(base / "http"), make_workspace(base / "files")
    parsed = parse_request(orjson.dumps({"batch": batch}), endpoint="batch", received_at=T0 + timedelta(days=10),
                           currencies=http.currencies)
    assert not parsed.errors
    lake_batch = build_batch(parsed.records, http.currencies, "collector")

    def commit(conn: object) -> None:
        http.identity.add_links(conn, lake_batch.links)  # type: ignore[arg-type]

    http.lake.append(lake_batch.tables, on_commit=commit)
    jsonl = base / "batch.jsonl"
    jsonl.write_text("".join(json.dumps(m) + "\n" for m in batch))
    summary = import_file(files, jsonl, "events")
    assert summary.quarantined == 0
    http.close()
    files.close()
    assert facts(base / "http") == facts(base / "files")
