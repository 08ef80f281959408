"""Move the inbox into the lake in micro-batches, exactly once.

The lake files, the deletion of the flushed inbox rows and the new identity links commit in
one state transaction (see ``store.lake``); a crash at any point redoes or keeps the whole
micro-batch, never half of it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tenure.ingest.batches import build_batch
from tenure.store.state import inbox
from tenure.workspace import Workspace

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FlushResult:
    requests: int
    events: int
    duplicates: int


def flush_once(ws: Workspace, max_requests: int = 500) -> FlushResult:
    """Flush up to ``max_requests`` inbox rows (oldest first) into the lake."""
    with ws.state.read() as conn:
        rows = conn.execute(sa.select(inbox.c.id, inbox.c.body).order_by(inbox.c.id).limit(max_requests)).all()
    if not rows:
        return FlushResult(0, 0, 0)
    ids = [row.id for row in rows]
    records = [rec for row in rows for rec in orjson.loads(row.body)]
    batch = build_batch(records, ws.currencies, source="collector")

    def commit(conn: Connection) -> None:
        conn.execute(inbox.delete().where(inbox.c.id.in_(ids)))
        ws.identity.add_links(conn, batch.links)

    result = ws.lake.append(batch.tables, on_commit=commit)
    return FlushResult(len(rows), result.written.get("events", 0), result.duplicates.get("events", 0))


def flush_all(ws: Workspace) -> int:
    """Flush until the inbox is empty; returns the number of events written."""
    total = 0
    while (result := flush_once(ws)).requests:
        total += result.events
    return total


class Flusher(threading.Thread):
    """Background thread of ``tenure serve``: flush every interval, compact now and then."""

    def __init__(self, ws: Workspace, interval: float, compact_every: int = 60) -> None:
        super().__init__(name="tenure-flusher", daemon=True)
        self.ws = ws
        self.interval = interval
        self.compact_every = compact_every
        self._stop_event = threading.Event()

    def run(self) -> None:
        rounds = 0
        while not self._stop_event.is_set():
            try:
                flush_all(self.ws)
                rounds += 1
                if rounds % self.compact_every == 0:
                    self.ws.lake.compact(self.ws.settings.compact_min_files)
            except Exception:  # keep serving; the inbox keeps the data until a flush succeeds
                log.exception("flush failed; will retry")
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=30)
        flush_all(self.ws)
