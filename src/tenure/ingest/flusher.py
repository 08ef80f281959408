"""Move the inbox into the lake in micro-batches, exactly once.

The lake files, the deletion of the flushed inbox rows, the new identity links and the recent
product events (``ingest.recent``) commit in one state transaction (see ``store.lake``); a
crash at any point redoes or keeps the whole micro-batch, never half of it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tenure.ingest.batches import build_batch
from tenure.ingest.recent import recent_rows, store_recent
from tenure.store.lake import AppendResult
from tenure.store.state import inbox
from tenure.workspace import Workspace

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FlushResult:
    requests: int
    events: int
    duplicates: int
    identifiers: frozenset[str] = frozenset()  # user and anonymous ids the flushed messages carry


def flush_once(ws: Workspace, max_requests: int = 500) -> FlushResult:
    """Flush up to ``max_requests`` inbox rows (oldest first) into the lake."""
    with ws.state.read() as conn:
        rows = conn.execute(sa.select(inbox.c.id, inbox.c.body).order_by(inbox.c.id).limit(max_requests)).all()
    if not rows:
        return FlushResult(0, 0, 0)
    ids = [row.id for row in rows]
    records = [rec for row in rows for rec in orjson.loads(row.body)]
    written = write_records(
        ws, records, source="collector", on_commit=lambda conn: conn.execute(inbox.delete().where(inbox.c.id.in_(ids)))
    )
    identifiers = frozenset(
        value for rec in records for value in (rec.get("user_id"), rec.get("anonymous_id")) if isinstance(value, str)
    )
    return FlushResult(len(rows), written.written.get("events", 0), written.duplicates.get("events", 0), identifiers)


def write_records(
    ws: Workspace,
    records: Sequence[dict[str, Any]],
    *,
    source: str,
    on_commit: Callable[[Connection], object] | None = None,
) -> AppendResult:
    """Write normalised messages to the lake with their identity links and recent product events, in one commit."""
    batch = build_batch(records, ws.currencies, source=source)
    since = ws.clock.now() - ws.settings.recommendations.retention
    recent = recent_rows(batch.tables, since=since)
    with ws.lake.writer_lock():
        plan = ws.identity.plan(batch.links)

        def commit(conn: Connection) -> None:
            if on_commit is not None:
                on_commit(conn)
            store_recent(conn, recent, since=since)
            ws.identity.apply(conn, plan)

        return ws.lake.append(batch.tables, on_commit=commit)


def flush_all(ws: Workspace) -> FlushResult:
    """Flush until the inbox is empty; returns the totals and every identifier touched."""
    requests = events = duplicates = 0
    identifiers: set[str] = set()
    while (result := flush_once(ws)).requests:
        requests += result.requests
        events += result.events
        duplicates += result.duplicates
        identifiers |= result.identifiers
    return FlushResult(requests, events, duplicates, frozenset(identifiers))


def run_flusher(ws: Workspace, interval: float, stop: threading.Event, compact_every: int = 60) -> None:
    """Flush every ``interval`` seconds, keep segments live, compact now and then, until ``stop``.

    After each flush the people the new messages touched are re-evaluated in every
    person-local segment; all segments are recomputed every ``segments.refresh_minutes``,
    and everyone is re-scored with the active models every ``models.rescore_minutes``
    (before that refresh, so segments on scores follow).
    Errors are logged and retried: the inbox keeps the data until a flush succeeds. A last
    flush runs after ``stop`` so that a clean shutdown leaves the inbox empty.
    """
    rounds = 0
    full_every = ws.settings.segments_refresh_minutes * 60
    score_every = ws.settings.models.rescore_minutes * 60
    last_full = last_score = time.monotonic()
    while not stop.is_set():
        try:
            flushed = flush_all(ws)
            if ws.settings.segments_live and flushed.identifiers:
                ws.segments.refresh_people(flushed.identifiers)
            rescore = time.monotonic() - last_score >= score_every
            if rescore:
                last_score = time.monotonic()
                ws.models.score()
            if rescore or time.monotonic() - last_full >= full_every:
                last_full = time.monotonic()
                ws.segments.refresh()
            rounds += 1
            if rounds % compact_every == 0:
                ws.lake.compact(ws.settings.compact_min_files)
        except Exception:
            log.exception("flush failed; will retry")
        stop.wait(interval)
    flush_all(ws)


def watch_parent(parent_pid: int, stop: threading.Event, interval: float = 0.5) -> threading.Thread:
    """Set ``stop`` when the parent process dies (even by kill -9), so no flusher is orphaned."""

    def check() -> None:
        while not stop.wait(interval):
            if os.getppid() != parent_pid:
                stop.set()

    thread = threading.Thread(target=check, name="tenure-parent-watch", daemon=True)
    thread.start()
    return thread
