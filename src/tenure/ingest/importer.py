"""Bulk import of events, orders, users and items from CSV, Parquet and JSON Lines files.

The file is loaded into an in-process DuckDB, mapped onto Tenure's columns, coerced and
validated there (vectorised: one pass of SQL, not a Python loop over rows), and written to
the lake through the same deduplicating append as the collector. Bad rows go to a quarantine
CSV with their row number, the column at fault and the reason. Importing the same rows twice
adds nothing: events are keyed by message id (a content hash when the file has none), orders
by order id, users and items by the hash of their content.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import duckdb
import orjson
from sqlalchemy.engine import Connection

from tenure.errors import ValidationError
from tenure.identity import Link
from tenure.ingest import _import_sql as sql
from tenure.ingest.batches import OrderRows
from tenure.ingest.files import (
    FileFormat,
    detect_format,
    load_raw,
    resolve_mapping,
    write_quarantine,
)
from tenure.spec.ecommerce import ORDER_EVENTS
from tenure.store.lake import AppendResult
from tenure.workspace import Workspace

ImportKind = Literal["events", "orders", "users", "items"]
Progress = Callable[[str, float], None]


@dataclass(frozen=True, slots=True)
class ImportSummary:
    kind: ImportKind
    rows: int
    imported: int
    duplicates: int
    quarantined: int
    quarantine_file: Path | None


def import_file(
    ws: Workspace,
    path: Path,
    kind: ImportKind,
    *,
    mapping: Mapping[str, str] | None = None,
    fmt: FileFormat | None = None,
    timezone: str = "UTC",
    progress: Progress | None = None,
) -> ImportSummary:
    """Import one file of ``kind``; see the module docstring for the guarantees."""
    report = progress or (lambda _stage, _fraction: None)
    con = duckdb.connect()
    try:
        try:
            con.execute("SET TimeZone = ?", [timezone])
        except duckdb.Error:
            raise ValidationError("timezone", f"unknown time zone {timezone!r}") from None
        report("reading", 0.0)
        columns = load_raw(con, path, fmt or detect_format(path))
        types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE raw)").fetchall())
        rows = con.execute("SELECT count(*) FROM raw").fetchone()[0]  # type: ignore[index]
        resolved = resolve_mapping(columns, sql.TARGETS[kind], mapping or {})
        report("validating", 0.2)
        job = _Job(ws, con, kind, resolved, types, source=f"import:{path.name}")
        result = job.run(report)
        report("quarantine", 0.9)
        stamp = ws.clock.now().strftime("%Y%m%dT%H%M%S%f")
        quarantine = ws.settings.quarantine_path / f"{path.name}.{stamp}.rejected.csv"
        n_bad = write_quarantine(con, quarantine, sql.rejections())
        report("done", 1.0)
        return ImportSummary(
            kind=kind,
            rows=int(rows),
            imported=result[0],
            duplicates=result[1],
            quarantined=n_bad,
            quarantine_file=quarantine if n_bad else None,
        )
    finally:
        con.close()


class _Job:
    """One import: mapping, validation and the write, on one DuckDB connection."""

    def __init__(
        self,
        ws: Workspace,
        con: duckdb.DuckDBPyConnection,
        kind: ImportKind,
        mapping: dict[str, str],
        types: dict[str, str],
        source: str,
    ) -> None:
        self.ws, self.con, self.kind, self.mapping, self.types, self.source = ws, con, kind, mapping, types, source

    def run(self, report: Progress) -> tuple[int, int]:
        now = self.ws.clock.now()
        latest = now + timedelta(seconds=self.ws.settings.max_future_seconds)
        self.con.execute(sql.mapped_table(self.kind, self.mapping, self.types, latest))
        if self.kind in ("events", "orders"):
            return self._events(report)
        self.con.execute(sql.dimension_output(self.kind, self.source, now))
        links = self._links("_out") if self.kind == "users" else []
        report("writing", 0.6)
        result = self._append({self.kind: "_out"}, links)
        return result.written[self.kind], result.duplicates[self.kind]

    def _events(self, report: Progress) -> tuple[int, int]:
        orders = self._order_rows()
        self.con.execute(sql.events_output(self.source))
        self.con.execute(sql.identify_output(self.source))
        links = self._links("_events_out")
        for name, table in orders.tables().items():
            self.con.register(f"_{name}_out", table)
        report("writing", 0.6)
        outputs = {
            "events": "_events_out",
            "orders": "_orders_out",
            "order_items": "_order_items_out",
            "order_adjustments": "_order_adjustments_out",
            "users": "_users_out",
        }
        result = self._append(outputs, links)
        return result.written["events"], result.duplicates["events"]

    def _order_rows(self) -> OrderRows:
        """Order events go through the same e-commerce mapping as collected ones."""
        rows = OrderRows()
        found = self.con.execute(sql.order_events(), [list(ORDER_EVENTS)]).fetchall()
        bad: list[tuple[str, str, int]] = []
        for row, message_id, event, user_id, anonymous_id, timestamp, properties in found:
            rec: dict[str, Any] = {
                "message_id": message_id,
                "event": event,
                "user_id": user_id,
                "anonymous_id": anonymous_id,
                "properties": orjson.loads(properties) if properties else {},
            }
            try:
                rows.add(rec, timestamp, self.ws.currencies, self.source)
            except ValidationError as exc:
                bad.append((exc.field, exc.reason, row))
        if bad:  # the whole row is rejected, as the collector rejects the whole message
            self.con.executemany("UPDATE mapped SET _column = ?, _reason = ? WHERE _row = ?", bad)
        return rows

    def _links(self, relation: str) -> list[Link]:
        found = self.con.execute(sql.links(relation)).fetchall()
        return [Link(user, other, kind, message_id, at) for user, other, kind, message_id, at in found]

    def _append(self, outputs: dict[str, str], links: list[Link]) -> AppendResult:
        """Write the outputs and merge identities, the union-find planned outside the write transaction."""
        with self.ws.lake.writer_lock():
            plan = self.ws.identity.plan(links)

            def commit(conn: Connection) -> None:
                self.ws.identity.apply(conn, plan)

            return self.ws.lake.append_from(self.con, outputs, on_commit=commit)

