"""The Parquet lake: append with deduplication, consistent snapshots, compaction.

Files are Hive-partitioned by event date (``events/date=2025-01-31/part-<uuid>.parquet``). A
file is visible only once it is listed in the state DB's ``lake_files`` manifest, and a write
lists its files in the same state transaction as its other effects (deleting flushed inbox
rows, recording identity links). So a crash before that commit leaves only unlisted orphans,
and a crash after it leaves nothing to redo: every fact lands exactly once. Writers take an
exclusive file lock, so the collector's flusher and an importer can run side by side.
"""

from __future__ import annotations

import fcntl
import os
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tenure.store.schemas import TABLES, TableSpec
from tenure.store.sqltext import string_literal
from tenure.store.state import StateDB, lake_files, lake_garbage

# Retries of one message can straddle midnight (skew correction uses the server's clock), so
# duplicates of an event are looked for in its own date partition and the ones either side.
EVENT_DEDUP_WINDOW = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class LakeSnapshot:
    """The files of each table at one moment; readers query exactly these."""

    files: Mapping[str, tuple[str, ...]]

    def paths(self, table: str) -> tuple[str, ...]:
        return self.files.get(table, ())


@dataclass
class AppendResult:
    """Rows written and rows dropped as duplicates, per table."""

    written: dict[str, int] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)


class Lake:
    """Append-only Parquet tables under ``root``, listed in the state DB."""

    def __init__(self, root: Path, state: StateDB) -> None:
        self.root = root
        self.state = state
        self._held = threading.local()
        root.mkdir(parents=True, exist_ok=True)

    # -- reading -------------------------------------------------------------------------
    def snapshot(self) -> LakeSnapshot:
        with self.state.read() as conn:
            rows = conn.execute(sa.select(lake_files.c.table_name, lake_files.c.path).order_by(lake_files.c.id))
            files: dict[str, list[str]] = {}
            for table_name, path in rows:
                files.setdefault(table_name, []).append(str(self.root / path))
        return LakeSnapshot({name: tuple(paths) for name, paths in files.items()})

    # -- writing -------------------------------------------------------------------------
    @contextmanager
    def writer_lock(self) -> Iterator[None]:
        """Exclusive lock across processes for everything that changes the lake or identities.

        Re-entrant within a thread, so a caller can hold it around an ``append``.
        """
        if getattr(self._held, "depth", 0):
            self._held.depth += 1
            try:
                yield
            finally:
                self._held.depth -= 1
            return
        with open(self.root / ".lock", "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            self._held.depth = 1
            try:
                yield
            finally:
                self._held.depth = 0
                fcntl.flock(handle, fcntl.LOCK_UN)

    def append(
        self,
        batches: Mapping[str, pa.Table],
        *,
        on_commit: Callable[[Connection], None] | None = None,
    ) -> AppendResult:
        """Write new facts from Arrow tables, skipping those already in the lake."""
        con = _duckdb()
        try:
            names = {}
            for table, batch in batches.items():
                spec = TABLES[table]
                names[table] = f"_batch_{table}"
                con.register(names[table], batch.select(spec.schema.names).cast(spec.schema))
            return self.append_from(con, names, on_commit=on_commit)
        finally:
            con.close()

    def append_from(
        self,
        con: duckdb.DuckDBPyConnection,
        relations: Mapping[str, str],
        *,
        on_commit: Callable[[Connection], None] | None = None,
    ) -> AppendResult:
        """Write new facts from relations (by name) of ``con`` whose columns follow the schemas.

        Rows whose key is already in the lake, or repeated in the batch, are skipped; the new
        files and ``on_commit``'s changes are committed in one state transaction.
        """
        result = AppendResult()
        con.execute("SET preserve_insertion_order=false")
        with self.writer_lock():
            snapshot = self.snapshot()
            written: list[dict[str, object]] = []
            for table, relation in relations.items():
                spec = TABLES[table]
                files, n_new, n_in = self._write_new_rows(con, spec, relation, snapshot)
                written.extend(files)
                result.written[table] = n_new
                result.duplicates[table] = n_in - n_new
            with self.state.begin() as conn:
                if written:
                    conn.execute(lake_files.insert(), written)
                if on_commit is not None:
                    on_commit(conn)
        return result

    def _write_new_rows(
        self, con: duckdb.DuckDBPyConnection, spec: TableSpec, relation: str, snapshot: LakeSnapshot
    ) -> tuple[list[dict[str, object]], int, int]:
        n_in = con.execute(f"SELECT count(*) FROM {relation}").fetchone()[0]  # type: ignore[index]
        if n_in == 0:
            return [], 0, 0
        keys = ", ".join(spec.key)
        existing = self._existing_files(con, spec, relation, snapshot)
        if existing:
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE existing AS SELECT DISTINCT {keys} FROM read_parquet(?, union_by_name=true)",
                [list(existing)],
            )
            not_existing = f"WHERE NOT EXISTS (SELECT 1 FROM existing e WHERE {_key_match(spec)})"
        else:
            not_existing = ""
        date_col = ", strftime(timezone('UTC', b.timestamp), '%Y-%m-%d') AS date" if spec.by_date else ""
        columns = ", ".join(f"b.{c}" for c in spec.schema.names)
        fresh = f"SELECT {columns}{date_col} FROM {relation} b {not_existing}"
        distinct = con.execute(f"SELECT count(*) FROM (SELECT DISTINCT {keys} FROM {relation})").fetchone()[0]  # type: ignore[index]
        if distinct < n_in:  # the window is costly, so only pay for it when the batch repeats keys
            fresh += f" QUALIFY row_number() OVER (PARTITION BY {', '.join('b.' + k for k in spec.key)}) = 1"
        target = self.root / spec.name
        target.mkdir(parents=True, exist_ok=True)
        if spec.by_date:
            copy = (
                f"COPY ({fresh}) TO {string_literal(target)} (FORMAT parquet, PARTITION_BY (date), "
                "FILENAME_PATTERN 'part-{uuid}', RETURN_FILES true, OVERWRITE_OR_IGNORE true)"
            )
        else:
            copy = f"COPY ({fresh}) TO {string_literal(target / f'part-{uuid.uuid4()}.parquet')} (FORMAT parquet, RETURN_FILES true)"
        n_rows, paths = con.execute(copy).fetchone()  # type: ignore[misc]
        now = datetime.now(UTC)
        records = []
        for path in paths or []:
            rows = pq.read_metadata(path).num_rows
            if rows == 0:
                os.unlink(path)
                continue
            rel = Path(path).relative_to(self.root)
            records.append(
                {
                    "table_name": spec.name,
                    "partition": _partition_of(rel),
                    "path": str(rel),
                    "rows": rows,
                    "created_at": now,
                }
            )
        return records, int(n_rows), int(n_in)

    def _existing_files(
        self, con: duckdb.DuckDBPyConnection, spec: TableSpec, relation: str, snapshot: LakeSnapshot
    ) -> list[str]:
        paths = snapshot.paths(spec.name)
        if spec.name != "events" or not paths:
            return list(paths)
        low, high = con.execute(f"SELECT min(timezone('UTC', timestamp))::DATE, max(timezone('UTC', timestamp))::DATE FROM {relation}").fetchone()  # type: ignore[misc]
        low, high = low - EVENT_DEDUP_WINDOW, high + EVENT_DEDUP_WINDOW
        return [p for p in paths if low <= _partition_date(p) <= high]

    # -- maintenance ---------------------------------------------------------------------
    def compact(
        self, min_files: int = 8, grace: timedelta = timedelta(minutes=10), big_file_rows: int = 2_000_000
    ) -> int:
        """Merge the small files of partitions holding at least ``min_files`` of them.

        Files of ``big_file_rows`` rows or more are left alone, so a partition that keeps
        receiving micro-batches is not rewritten whole every time. Replaced files stay on disk
        for ``grace`` so that readers holding an older snapshot can finish. Returns the number
        of partitions compacted.
        """
        done = 0
        small = lake_files.c.rows < big_file_rows
        with self.writer_lock():
            with self.state.read() as conn:
                groups = conn.execute(
                    sa.select(lake_files.c.table_name, lake_files.c.partition)
                    .where(small)
                    .group_by(lake_files.c.table_name, lake_files.c.partition)
                    .having(sa.func.count() >= min_files)
                ).all()
            con = _duckdb()
            try:
                for table_name, partition in groups:
                    self._compact_partition(con, table_name, partition, small)
                    done += 1
            finally:
                con.close()
            self._collect_garbage(grace)
        return done

    def _compact_partition(
        self, con: duckdb.DuckDBPyConnection, table_name: str, partition: str, small: sa.ColumnElement[bool]
    ) -> None:
        with self.state.read() as conn:
            old = conn.execute(
                sa.select(lake_files.c.id, lake_files.c.path).where(
                    (lake_files.c.table_name == table_name) & (lake_files.c.partition == partition) & small
                )
            ).all()
        folder = self.root / table_name / (f"date={partition}" if partition else "")
        new_path = folder / f"part-{uuid.uuid4()}.parquet"
        sources = [str(self.root / path) for _, path in old]
        con.execute(
            f"COPY (SELECT * FROM read_parquet(?, union_by_name=true, hive_partitioning=false)) TO {string_literal(new_path)} (FORMAT parquet)",
            [sources],
        )
        now = datetime.now(UTC)
        with self.state.begin() as conn:
            conn.execute(lake_files.delete().where(lake_files.c.id.in_([i for i, _ in old])))
            conn.execute(
                lake_files.insert().values(
                    table_name=table_name,
                    partition=partition,
                    path=str(new_path.relative_to(self.root)),
                    rows=pq.read_metadata(new_path).num_rows,
                    created_at=now,
                )
            )
            conn.execute(lake_garbage.insert(), [{"path": path, "dropped_at": now} for _, path in old])

    def _collect_garbage(self, grace: timedelta) -> None:
        cutoff = datetime.now(UTC) - grace
        with self.state.begin() as conn:
            rows = conn.execute(sa.select(lake_garbage.c.path).where(lake_garbage.c.dropped_at <= cutoff)).all()
            for (path,) in rows:
                (self.root / path).unlink(missing_ok=True)
            if rows:
                conn.execute(lake_garbage.delete().where(lake_garbage.c.path.in_([p for (p,) in rows])))


def _duckdb() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    con.execute("SET preserve_insertion_order=false")  # lets partitioned writes run in parallel
    return con


def _key_match(spec: TableSpec) -> str:
    return " AND ".join(f"e.{k} = b.{k}" for k in spec.key)


def _partition_of(rel: Path) -> str:
    for part in rel.parts:
        if part.startswith("date="):
            return part[len("date=") :]
    return ""


def _partition_date(path: str) -> date:
    return date.fromisoformat(_partition_of(Path(path)))
