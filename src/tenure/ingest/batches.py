"""Turn canonical records into lake batches (Arrow tables) and identity links.

Shared by the inbox flusher and the JSON-record path of the importer, so that a message
means the same thing whichever way it arrived.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import logging

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


def _json(value: Any) -> str | None:
    return orjson.dumps(value).decode() if value else None


def _ts(value: str | datetime | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


def row_hash(*parts: object) -> str:
    return hashlib.blake2b(orjson.dumps(parts, default=str), digest_size=16).hexdigest()


def build_batch(records: Sequence[dict[str, Any]], currencies: CurrencyTable, source: str) -> LakeBatch:
    """Events for every record; orders, items and adjustments for order events; trait rows."""
    events = {name: [] for name in EVENTS.schema.names}  # type: dict[str, list[Any]]
    orders: list[dict[str, Any]] = []
    lines: list[dict[str, Any]] = []
    adjustments: list[dict[str, Any]] = []
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
                    "row_hash": row_hash("identify", rec["message_id"]),
                }
            )
        if rec["type"] == "track":
            _add_order_rows(rec, timestamp, currencies, source, orders, lines, adjustments)
    tables = {
        "events": pa.table(events, schema=EVENTS.schema),
        "orders": pa.Table.from_pylist(orders, schema=ORDERS.schema),
        "order_items": pa.Table.from_pylist(lines, schema=ORDER_ITEMS.schema),
        "order_adjustments": pa.Table.from_pylist(adjustments, schema=ORDER_ADJUSTMENTS.schema),
        "users": pa.Table.from_pylist(users, schema=USERS.schema),
    }
    return LakeBatch(tables, links_from_records(records))


def _add_order_rows(
    rec: dict[str, Any],
    timestamp: datetime | None,
    currencies: CurrencyTable,
    source: str,
    orders: list[dict[str, Any]],
    lines: list[dict[str, Any]],
    adjustments: list[dict[str, Any]],
) -> None:
    try:
        facts = order_facts(rec.get("event"), rec.get("properties") or {}, currencies)
    except ValidationError as exc:  # e.g. a currency rate removed since the message was accepted
        log.warning("message %s kept as an event without order rows: %s", rec["message_id"], exc)
        return
    if facts is None:
        return
    if facts.kind != "completed":
        adjustments.append(
            {
                "message_id": rec["message_id"],
                "order_id": facts.order_id,
                "kind": facts.kind,
                "amount": facts.revenue,
                "timestamp": timestamp,
            }
        )
        return
    orders.append(
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
    for ln in facts.lines:
        lines.append(
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
        )
