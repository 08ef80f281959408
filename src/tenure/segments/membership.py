"""Segment membership in the state DB: current members, and writing one refresh's difference.

A refresh's difference is written as three kinds of rows in the caller's transaction: members
added or removed, one ``enter``/``exit`` change per person that moved, and the new size. The
rows are many on a first refresh (a member and a change per person and segment), so they go
through the driver's ``executemany`` with values bound once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tenure.store.state import (
    bound_value,
    in_chunks,
    insert_many,
    segment_changes,
    segment_members,
    segment_sizes,
    segments,
)


def current_members(conn: Connection, ids: Sequence[int], people: Sequence[str] | None) -> dict[int, list[str]]:
    """Members of each segment in ``ids``: everyone, or only ``people`` (read in chunks)."""
    query = sa.select(segment_members.c.segment_id, segment_members.c.person_id).where(
        segment_members.c.segment_id.in_(ids)
    )
    rows: list[Any] = []
    if people is None:
        rows = list(conn.execute(query).all())
    else:
        for chunk in in_chunks(people):
            rows.extend(conn.execute(query.where(segment_members.c.person_id.in_(chunk))).all())
    out: dict[int, list[str]] = {}
    for segment_id, person_id in rows:
        out.setdefault(segment_id, []).append(person_id)
    return out


def write_diff(conn: Connection, segment_id: int, entered: pd.Index, exited: pd.Index, now: datetime, *,
               full: bool, size: int) -> int:
    """Members, changes and size of one segment; returns the size after the change.

    ``full`` says the refresh covered everyone, so ``size`` is the new size; otherwise the
    stored members are counted.
    """
    entered_ids, exited_ids = entered.tolist(), exited.tolist()
    for chunk in in_chunks(exited_ids):
        conn.execute(segment_members.delete().where(
            segment_members.c.segment_id == segment_id, segment_members.c.person_id.in_(chunk)))
    stamp = bound_value(conn, segment_members.c.entered_at, now)
    insert_many(conn, segment_members, ["segment_id", "person_id", "entered_at"],
                 [(segment_id, p, stamp) for p in entered_ids])
    changes = [(segment_id, p, "enter", stamp) for p in entered_ids]
    changes += [(segment_id, p, "exit", stamp) for p in exited_ids]
    insert_many(conn, segment_changes, ["segment_id", "person_id", "change", "at"], changes)
    if not full:
        size = conn.execute(sa.select(sa.func.count()).where(segment_members.c.segment_id == segment_id)).scalar_one()
    if full or changes:
        conn.execute(segment_sizes.insert().values(segment_id=segment_id, at=now, size=size,
                                                   entered=len(entered), exited=len(exited)))
    conn.execute(segments.update().where(segments.c.id == segment_id).values(size=size, refreshed_at=now))
    return int(size)
