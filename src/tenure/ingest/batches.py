"""Turn canonical records into lake batches (Arrow tables) and identity links.

Shared by the inbox flusher and the importer, so that a message means the same thing
whichever way it arrived.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import pyarrow as pa

from tenure.errors import ValidationError
from tenure.identity import Link, links_from_records
from tenure.spec.ecommerce import CurrencyTable, order_facts
from tenure.store.schemas import EVENTS, ORDER_ADJUSTMENTS, ORDER_ITEMS, ORDERS, USERS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LakeBatch:
    tables: dict[str, pa.Table]
    links: list[Link]


def identify_hash(message_id: str) -> str:
    """Key of the trait row an identify message yields; the importer computes the same in SQL."""
    return hashlib.md5(f"identify:{message_id}".encode()).hexdigest()


@dataclass
class OrderRows:
    """Accumulates the ``orders``, ``order_items`` and ``order_adjustments`` rows of order events."""

    orders: list[dict[str, Any]] = field(default_factory=list)
    lines: list[dict[str, Any]] = field(default_factory=list)
    adjustments: list[dict[str, Any]] = field(default_factory=list)

    def add(self, rec: dict[str, Any], timestamp: datetime, currencies: CurrencyTable, source: str) -> None:
        """Add the rows of one track record; raises ``ValidationError`` for a malformed order."""
        facts = order_facts(rec.get("event"), rec.get("properties") or {}, currencies)
        if facts is None:
            return
        if facts.kind != "completed":
            self.adjustments.append(
                {
                    "message_id": rec["message_id"],
                    "order_id": facts.order_id,
                    "kind": facts.kind,
                    "amount": facts.revenue,
                    "timestamp": timestamp,
                }
            )
            return
        self.orders.append(
            {
                "order_id": facts.order_id,
                "message_id": rec["message_id"],
                "user_id": rec.get("user_id"),
                "anonymous_id": rec.get("anonymous_id"),
                "timestamp": timestamp,
                "currency": facts.currency,
                "revenue": facts.revenue,
                "revenue_original": facts.revenue_original,
                "subtotal": facts.subtotal,
                "total": facts.total,
                "shipping": facts.shipping,
                "tax": facts.tax,
                "discount": facts.discount,
                "coupon": facts.coupon,
                "source": source,
            }
        )
        self.lines.extend(
            {
                "order_id": facts.order_id,
                "line": ln.line,
                "timestamp": timestamp,
                "product_id": ln.product_id,
                "sku": ln.sku,
                "category": ln.category,
                "name": ln.name,
                "brand": ln.brand,
                "price": ln.price,
                "quantity": ln.quantity,
            }
            for ln in facts.lines
        )

    def tables(self) -> dict[str, pa.Table]:
        return {
            "orders": pa.Table.from_pylist(self.orders, schema=ORDERS.schema),
            "order_items": pa.Table.from_pylist(self.lines, schema=ORDER_ITEMS.schema),
            "order_adjustments": pa.Table.from_pylist(self.adjustments, schema=ORDER_ADJUSTMENTS.schema),
        }


def _json(value: Any) -> str | None:
    return orjson.dumps(value).decode() if value else None


def _ts(value: str | datetime | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


def build_batch(records: Sequence[dict[str, Any]], currencies: CurrencyTable, source: str) -> LakeBatch:
    """Events for every record; order rows for order events; trait rows for identify calls."""
    events: dict[str, list[Any]] = {name: [] for name in EVENTS.schema.names}
    orders = OrderRows()
    users: list[dict[str, Any]] = []
    for rec in records:
        timestamp = _ts(rec["timestamp"])
        for name in ("message_id", "type", "event", "user_id", "anonymous_id", "previous_id", "group_id"):
            events[name].append(rec.get(name))
        events["timestamp"].append(timestamp)
        events["received_at"].append(_ts(rec.get("received_at")))
        events["properties"].append(_json(rec.get("properties")))
        events["traits"].append(_json(rec.get("traits")))
        events["context"].append(_json(rec.get("context")))
        events["source"].append(source)
        if rec["type"] == "identify" and rec.get("traits"):
            users.append(
                {
                    "user_id": rec.get("user_id") or rec.get("anonymous_id"),
                    "timestamp": timestamp,
                    "traits": _json(rec["traits"]),
                    "source": source,
                    "row_hash": identify_hash(rec["message_id"]),
                }
            )
        if rec["type"] == "track" and timestamp is not None:
            try:
                orders.add(rec, timestamp, currencies, source)
            except ValidationError as exc:  # e.g. a currency rate removed since it was accepted
                log.warning("message %s kept as an event without order rows: %s", rec["message_id"], exc)
    tables = {
        "events": pa.table(events, schema=EVENTS.schema),
        **orders.tables(),
        "users": pa.Table.from_pylist(users, schema=USERS.schema),
    }
    return LakeBatch(tables, links_from_records(records))
