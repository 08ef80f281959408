"""The lake: deduplicating appends, manifest-only visibility, compaction under readers."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import duckdb
import pyarrow as pa
import pytest

from tenure import Workspace
from tenure.store.schemas import EVENTS

T0 = datetime(2025, 1, 30, 22, tzinfo=UTC)


def events(ids: list[int], hours: int = 1) -> pa.Table:
    rows = [
        {"message_id": f"m{i}", "type": "track", "event": "E", "user_id": f"u{i % 5}",
         "timestamp": T0 + timedelta(hours=i * hours), "properties": f'{{"i": {i}}}'}
        for i in ids
    ]
    return pa.Table.from_pylist(rows, schema=EVENTS.schema)


def lake_rows(ws: Workspace) -> list[tuple[str, str]]:
    snapshot = ws.lake.snapshot()
    if not snapshot.paths("events"):
        return []
    return sorted(
        duckdb.sql("SELECT message_id, properties FROM read_parquet(?)", params=[list(snapshot.paths("events"))]).fetchall()  # type: ignore[call-arg]
    )


def test_append_skips_keys_already_there_and_repeated_in_the_batch(workspace: Workspace) -> None:
    first = workspace.lake.append({"events": events(list(range(10)))})
    assert first.written["events"] == 10
    again = workspace.lake.append({"events": pa.concat_tables([events([3, 3, 10, 11]), events([11])])})
    assert again.written["events"] == 2 and again.duplicates["events"] == 3
    assert [m for m, _ in lake_rows(workspace)] == sorted(f"m{i}" for i in range(12))


def test_files_are_partitioned_by_utc_date(sqlite_workspace: Workspace) -> None:
    sqlite_workspace.lake.append({"events": events(list(range(6)))})  # 22:00 on the 30th onwards
    folders = {p.split("/")[-2] for p in sqlite_workspace.lake.snapshot().paths("events")}
    assert folders == {"date=2025-01-30", "date=2025-01-31"}


def test_files_not_in_the_manifest_are_invisible(sqlite_workspace: Workspace) -> None:
    ws = sqlite_workspace
    ws.lake.append({"events": events([1])})
    orphan = ws.lake.root / "events" / "date=2025-01-30" / "part-orphan.parquet"
    duckdb.sql("SELECT 1 AS x").write_parquet(str(orphan))
    engine = ws.engine()
    assert engine.tables().events.count().execute() == 1
    engine.close()


def test_compaction_keeps_every_row_and_old_snapshots_stay_readable(workspace: Workspace) -> None:
    for start in range(0, 40, 4):
        workspace.lake.append({"events": events(list(range(start, start + 4)), hours=0)})
    before = lake_rows(workspace)
    old_snapshot = workspace.lake.snapshot()
    assert len(old_snapshot.paths("events")) == 10
    assert workspace.lake.compact(min_files=4, grace=timedelta(minutes=5)) == 1
    assert len(workspace.lake.snapshot().paths("events")) == 1
    assert lake_rows(workspace) == before
    still = duckdb.sql("SELECT count(*) FROM read_parquet(?)", params=[list(old_snapshot.paths("events"))]).fetchone()  # type: ignore[call-arg]
    assert still == (40,)
    workspace.lake.compact(min_files=4, grace=timedelta(0))  # garbage past its grace is deleted
    assert not any(os.path.exists(p) for p in old_snapshot.paths("events"))
    with pytest.raises(duckdb.IOException):
        duckdb.sql("SELECT count(*) FROM read_parquet(?)", params=[list(old_snapshot.paths("events"))]).fetchone()  # type: ignore[call-arg]


def test_compaction_leaves_big_files_alone(sqlite_workspace: Workspace) -> None:
    ws = sqlite_workspace
    ws.lake.append({"events": events(list(range(100)), hours=0)})
    for start in range(100, 112, 3):
        ws.lake.append({"events": events(list(range(start, start + 3)), hours=0)})
    big = max(ws.lake.snapshot().paths("events"), key=lambda p: os.path.getsize(p))
    assert ws.lake.compact(min_files=4, big_file_rows=50) == 1
    after = ws.lake.snapshot().paths("events")
    assert len(after) == 2 and big in after
    assert len(lake_rows(ws)) == 112
