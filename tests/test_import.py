"""Bulk import: formats, mapping, coercion, quarantine, idempotence, identity, all kinds."""

from __future__ import annotations

import csv
import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tenure import Workspace
from tenure.errors import ValidationError
from tenure.ingest.importer import import_file

EVENTS = [
    {"message_id": "e1", "type": "page", "event": "Home", "user_id": None, "anonymous_id": "a1",
     "timestamp": "2025-03-01T10:00:00Z", "properties": {"path": "/"}},
    {"message_id": "e2", "type": "identify", "event": None, "user_id": "u1", "anonymous_id": "a1",
     "timestamp": "2025-03-01T10:05:00Z", "traits": {"email": "u1@example.com"}},
    {"message_id": "e3", "type": "track", "event": "Product Viewed", "user_id": "u1", "anonymous_id": None,
     "timestamp": "2025-03-01T10:06:00Z", "properties": {"product_id": "p1"}},
    {"message_id": "e4", "type": "track", "event": "Order Completed", "user_id": "u1", "anonymous_id": None,
     "timestamp": "2025-03-01T10:09:00Z",
     "properties": {"order_id": "o1", "currency": "EUR", "products": [{"product_id": "p1", "price": 10, "quantity": 3}]}},
    {"message_id": "e5", "type": "track", "event": "Product Viewed", "user_id": None, "anonymous_id": "a9",
     "timestamp": "2025-03-02T23:30:00Z", "properties": {"product_id": "p2"}},
]


def flat(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """JSON-valued columns as strings, the way CSV and Parquet exports hold them."""
    return [{k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in row.items()} for row in rows]


def write(path: Path, rows: list[dict[str, object]]) -> Path:
    name = path.name.removesuffix(".gz")
    if name.endswith(".jsonl"):
        text = "".join(json.dumps(r) + "\n" for r in rows)
        path.write_bytes(gzip.compress(text.encode()) if path.name.endswith(".gz") else text.encode())
    elif name.endswith(".csv"):
        frame = pd.DataFrame(flat(rows))
        frame.to_csv(path, index=False, compression="gzip" if path.name.endswith(".gz") else None)
    else:
        pq.write_table(pa.Table.from_pandas(pd.DataFrame(flat(rows)), preserve_index=False), path)
    return path


def lake(ws: Workspace, table: str) -> pd.DataFrame:
    engine = ws.engine()
    try:
        return getattr(engine.tables(), table).execute()
    finally:
        engine.close()


@pytest.mark.parametrize("name", ["e.csv", "e.csv.gz", "e.parquet", "e.jsonl", "e.jsonl.gz"])
def test_every_format_imports_the_same_facts(sqlite_workspace: Workspace, tmp_path: Path, name: str) -> None:
    summary = import_file(sqlite_workspace, write(tmp_path / name, EVENTS), "events")
    assert (summary.rows, summary.imported, summary.quarantined) == (5, 5, 0)
    events = lake(sqlite_workspace, "events").set_index("message_id")
    assert events.loc["e1", "person_id"] == "u1"  # the identify merged a1 into u1
    assert events.loc["e5", "person_id"] == "a9"
    assert events.loc["e5", "timestamp"] == datetime(2025, 3, 2, 23, 30, tzinfo=UTC)
    assert orjson.loads(events.loc["e3", "properties"]) == {"product_id": "p1"}
    orders = lake(sqlite_workspace, "orders")
    assert orders["revenue"].tolist() == pytest.approx([30 * sqlite_workspace.currencies.rate("EUR")])
    assert orjson.loads(lake(sqlite_workspace, "users")["traits"].iloc[0]) == {"email": "u1@example.com"}


def test_reimport_adds_nothing_and_an_overlapping_file_only_the_new_rows(workspace: Workspace, tmp_path: Path) -> None:
    first = write(tmp_path / "a.csv", EVENTS[:4])
    assert import_file(workspace, first, "events").imported == 4
    again = import_file(workspace, first, "events")
    assert (again.imported, again.duplicates) == (0, 4)
    overlap = import_file(workspace, write(tmp_path / "b.parquet", EVENTS[2:]), "events")
    assert (overlap.imported, overlap.duplicates) == (1, 2)
    assert sorted(lake(workspace, "events")["message_id"]) == ["e1", "e2", "e3", "e4", "e5"]
    assert len(lake(workspace, "orders")) == 1


def test_files_without_message_ids_are_deduplicated_by_content(sqlite_workspace: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "plain.csv"
    path.write_text("user_id,event,timestamp,plan\nu1,Signed Up,2025-01-01T00:00:00Z,pro\nu2,Signed Up,2025-01-01T00:00:00Z,free\n")
    assert import_file(sqlite_workspace, path, "events").imported == 2
    assert import_file(sqlite_workspace, path, "events").duplicates == 2
    props = sorted(lake(sqlite_workspace, "events")["properties"].map(orjson.loads), key=str)
    assert props == [{"plan": "free"}, {"plan": "pro"}]  # unmapped columns become properties


def test_quarantine_names_row_column_and_reason(workspace: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(
        "message_id,type,event,user_id,anonymous_id,timestamp,properties\n"
        "ok1,track,E,u1,,2025-01-01T00:00:00Z,\n"
        "b2,track,E,,,2025-01-01T00:00:00Z,\n"
        "b3,track,,u1,,2025-01-01T00:00:00Z,\n"
        "b4,track,E,u1,,yesterday,\n"
        "b5,track,E,u1,,1999-01-01T00:00:00Z,\n"
        "b6,track,E,u1,,2025-01-01T00:00:00Z,[1]\n"
        "b7,jump,E,u1,,2025-01-01T00:00:00Z,\n"
        'b8,track,Order Completed,u1,,2025-01-01T00:00:00Z,"{""order_id"": ""o"", ""revenue"": ""x""}"\n'
        "ok9,track,E,u1,,2025-01-01T00:00:01Z,\n"
        "b10,track,E,u1,,2999-01-01T00:00:00Z,\n"
    )
    summary = import_file(workspace, path, "events")
    assert (summary.imported, summary.quarantined) == (2, 8)
    assert summary.quarantine_file is not None
    with open(summary.quarantine_file) as handle:
        rejected = [(int(r["row"]), r["column"], r["reason"], r["message_id"]) for r in csv.DictReader(handle)]
    assert [(row, column, mid) for row, column, _, mid in rejected] == [
        (2, "user_id", "b2"), (3, "event", "b3"), (4, "timestamp", "b4"), (5, "timestamp", "b5"),
        (6, "properties", "b6"), (7, "type", "b7"), (8, "properties.revenue", "b8"), (10, "timestamp", "b10"),
    ]
    reasons = {mid: reason for _, _, reason, mid in rejected}
    assert "yesterday" in reasons["b4"] and "2000" in reasons["b5"] and "future" in reasons["b10"]
    assert sorted(lake(workspace, "events")["message_id"]) == ["ok1", "ok9"]


def test_mapping_flags_file_and_timezone(sqlite_workspace: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text("evt,customer,when,cart\nCart Viewed,c1,2025-07-01 09:00:00,3\n")
    mapping_file = tmp_path / "map.toml"
    mapping_file.write_text('event = "evt"\nuser_id = "customer"\n')
    from tenure.ingest.files import read_mapping_file

    mapping = read_mapping_file(mapping_file) | {"timestamp": "when"}
    import_file(sqlite_workspace, path, "events", mapping=mapping, timezone="America/New_York")
    row = lake(sqlite_workspace, "events").iloc[0]
    assert (row["event"], row["user_id"]) == ("Cart Viewed", "c1")
    assert row["timestamp"] == datetime(2025, 7, 1, 13, 0, tzinfo=UTC)  # EDT is UTC-4
    assert orjson.loads(row["properties"]) == {"cart": "3"}


def test_bad_mappings_and_files_are_clear_errors(sqlite_workspace: Workspace, tmp_path: Path) -> None:
    path = write(tmp_path / "e.csv", EVENTS)
    with pytest.raises(ValidationError, match="unknown target column"):
        import_file(sqlite_workspace, path, "events", mapping={"colour": "event"})
    with pytest.raises(ValidationError, match="not in the file"):
        import_file(sqlite_workspace, path, "events", mapping={"event": "nope"})
    with pytest.raises(ValidationError, match="does not exist"):
        import_file(sqlite_workspace, tmp_path / "missing.csv", "events")
    with pytest.raises(ValidationError, match="time zone"):
        import_file(sqlite_workspace, path, "events", timezone="Mars/Olympus")


def test_orders_file_with_lines(workspace: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text(
        "order_id,customer_id,created_at,currency,shipping,total,product_id,price,quantity\n"
        "o1,c1,2025-02-01T10:00:00Z,USD,5,45,p1,10,2\n"
        "o1,c1,2025-02-01T10:00:00Z,USD,5,45,p2,20,1\n"
        "o2,c2,2025-02-02T10:00:00Z,GBP,,,p3,7.5,2\n"
        "o3,c2,2025-02-03T10:00:00Z,USD,,,p1,ten,1\n"
    )
    summary = import_file(workspace, path, "orders")
    assert (summary.imported, summary.quarantined) == (2, 1)
    orders = lake(workspace, "orders").set_index("order_id")
    assert orders.loc["o1", "revenue"] == pytest.approx(40)  # total - shipping
    assert orders.loc["o2", "revenue"] == pytest.approx(15 * workspace.currencies.rate("GBP"))  # sum of lines
    items = lake(workspace, "order_items")
    assert sorted(zip(items["order_id"], items["product_id"], items["quantity"], strict=True)) == [("o1", "p1", 2), ("o1", "p2", 1), ("o2", "p3", 2)]
    assert import_file(workspace, path, "orders").imported == 0
    assert len(lake(workspace, "order_items")) == 3


def test_users_and_items(workspace: Workspace, tmp_path: Path) -> None:
    users = tmp_path / "users.csv"
    users.write_text("user_id,anonymous_id,email,plan\nu1,a1,u1@x.io,pro\n,a2,nobody@x.io,free\n")
    summary = import_file(workspace, users, "users")
    assert (summary.imported, summary.quarantined) == (1, 1)
    assert import_file(workspace, users, "users").duplicates == 1
    profile = lake(workspace, "users").iloc[0]
    assert orjson.loads(profile["traits"]) == {"email": "u1@x.io", "plan": "pro"}
    assert workspace.identity.person_of("a1") == "u1"

    items = tmp_path / "items.csv"
    items.write_text(
        "product_id,name,category,price,in_stock,updated_at,colour\n"
        "p1,Mug,Kitchen,9.5,true,2025-01-01T00:00:00Z,blue\n"
        "p1,Mug,Kitchen,8.0,true,2025-02-01T00:00:00Z,blue\n"
        "p2,Plate,Kitchen,cheap,false,2025-01-01T00:00:00Z,red\n"
    )
    summary = import_file(workspace, items, "items")
    assert (summary.imported, summary.quarantined) == (2, 1)
    got = lake(workspace, "items")
    assert got[["item_id", "price"]].values.tolist() == [["p1", 8.0]]  # the latest version wins
    assert orjson.loads(got["attributes"].iloc[0]) == {"colour": "blue"}
