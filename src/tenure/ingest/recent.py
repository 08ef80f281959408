"""The recent-item-events table: each person's product events of the last hour or so.

Real-time recommendations read what a person just viewed, added or bought, and the lake is
too slow to query per request. So every flush also stores its product events in a small
indexed state-DB table, in the same commit as the lake files (a crash keeps or loses both),
and prunes what is older than ``recommendations.retention``. Messages already older than that
are never stored, so a replayed backlog does not fill the table.

Rows are unique per (message, item) and per (order, item), as the lake's events (keyed by
message id) and order lines (keyed by order id) are: a redone flush or an order sent again
under a new message id adds nothing. Purchases are the completed orders' lines with a product
id and units, as the signals count them. The table only knows the orders of its own window:
an order id the lake has from before it, sent again with a recent timestamp, gets rows here
though the lake drops it (the person did buy the items, only earlier).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tenure.analytics._time import check_instant
from tenure.clock import as_utc
from tenure.errors import ValidationError
from tenure.models.signals import CART_EVENT, VIEW_EVENT
from tenure.store.state import StateDB, bound_value, in_chunks, insert_many
from tenure.store.state import recent_item_events as table

RecentRow = tuple[str | None, str | None, str, str, datetime, str, str | None]
COLUMNS = ("user_id", "anonymous_id", "item_id", "kind", "at", "message_id", "order_id")
_EVENT_KINDS = {VIEW_EVENT: "view", CART_EVENT: "cart"}


def recent_rows(tables: Mapping[str, pa.Table], *, since: datetime) -> list[RecentRow]:
    """The rows (in ``COLUMNS`` order) of a lake batch's product events at or after ``since``."""
    check_instant(since, "since")
    at_least = pa.scalar(since, type=pa.timestamp("us", tz="UTC"))
    events = tables["events"]
    product = pc.is_in(events["event"], pa.array(list(_EVENT_KINDS)))
    events = events.filter(pc.and_(product, pc.greater_equal(events["timestamp"], at_least)))
    rows: list[RecentRow] = [
        (user, anon, item, _EVENT_KINDS[event], at, message, None)
        for user, anon, properties, event, at, message in _tuples(
            events, ("user_id", "anonymous_id", "properties", "event", "timestamp", "message_id")
        )
        if (item := _item_id(properties)) is not None
    ]
    orders = tables["orders"].filter(pc.greater_equal(tables["orders"]["timestamp"], at_least))
    if orders.num_rows:  # purchases: units > 0 of a known product, as the signals count them
        lines = tables["order_items"]
        lines = lines.filter(pc.and_(pc.is_valid(lines["product_id"]), pc.greater(pc.fill_null(lines["quantity"], 1), 0)))
        buyers = orders.select(["order_id", "message_id", "user_id", "anonymous_id", "timestamp"])
        bought = lines.select(["order_id", "product_id"]).join(buyers, "order_id", join_type="inner")
        rows.extend(
            (user, anon, item, "purchase", at, message, order)
            for user, anon, item, at, message, order in _tuples(
                bought, ("user_id", "anonymous_id", "product_id", "timestamp", "message_id", "order_id")
            )
        )
    return rows


def store_recent(conn: Connection, rows: Sequence[RecentRow], *, since: datetime) -> None:
    """Delete rows older than ``since`` and add ``rows``, skipping any already stored."""
    check_instant(since, "since")
    conn.execute(table.delete().where(table.c.at < since.astimezone(UTC)))
    at = table.c.at
    bound = [(*row[:4], bound_value(conn, at, row[4].astimezone(UTC)), *row[5:]) for row in rows]
    insert_many(conn, table, COLUMNS, bound, skip_duplicates=True)


def recent_item_events(
    source: Connection | StateDB, identifiers: Sequence[str], *, since: datetime
) -> pd.DataFrame:
    """Item events of any of ``identifiers`` at or after ``since``: item_id, kind, at (UTC), newest first.

    ``identifiers`` are one person's user and anonymous ids (``IdentityGraph.identifiers_of``).
    """
    found = recent_item_rows(source, identifiers, since=since)
    frame = pd.DataFrame.from_records(found, columns=["item_id", "kind", "at"])
    frame["at"] = pd.to_datetime(frame["at"], utc=True)
    return frame.astype({"item_id": "str", "kind": "str"})


def recent_item_rows(
    source: Connection | StateDB, identifiers: Sequence[str], *, since: datetime
) -> list[tuple[str, str, datetime]]:
    """``recent_item_events`` as plain (item_id, kind, at) tuples: for the per-request path,
    where building a DataFrame of a dozen rows would cost more than the query."""
    if isinstance(identifiers, str) or not all(isinstance(x, str) for x in identifiers):
        raise ValidationError("identifiers", "must be a sequence of identifier strings")
    check_instant(since, "since")
    if isinstance(source, StateDB):
        with source.read() as conn:
            return recent_item_rows(conn, identifiers, since=since)
    found: list[Any] = []
    for chunk in in_chunks(set(identifiers)):
        query = sa.select(table.c.item_id, table.c.kind, table.c.at, table.c.id).where(
            (table.c.user_id.in_(chunk) | table.c.anonymous_id.in_(chunk)) & (table.c.at >= since.astimezone(UTC))
        )
        found.extend(source.execute(query))
    found.sort(key=lambda row: (row.at, row.id), reverse=True)
    return [(row.item_id, row.kind, as_utc(row.at)) for row in found]  # SQLite hands back naive UTC


def _tuples(table: pa.Table, names: Sequence[str]) -> Iterator[tuple[Any, ...]]:
    """The rows of ``names``: converting column by column is several times faster than by row."""
    return zip(*(table[name].to_pylist() for name in names), strict=True)


def _item_id(properties: str | None) -> str | None:
    """``properties.product_id`` as text, as the lake's order lines and the signals read it."""
    value = orjson.loads(properties).get("product_id") if properties else None
    return None if value is None or value == "" else str(value)
