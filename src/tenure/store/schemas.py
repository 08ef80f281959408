"""Arrow schemas of the lake tables, and how each is keyed and partitioned.

Every writer (collector flusher, file importer) produces batches in exactly these schemas, so
readers never have to reconcile shapes. JSON-valued columns (properties, traits, context) are
strings holding a JSON object.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True, slots=True)
class TableSpec:
    """A lake table: its schema, the columns that identify a fact, and whether it is by date."""

    name: str
    schema: pa.Schema
    key: tuple[str, ...]
    by_date: bool = True


EVENTS = TableSpec(
    "events",
    pa.schema(
        [
            ("message_id", pa.string()),
            ("type", pa.string()),
            ("event", pa.string()),
            ("user_id", pa.string()),
            ("anonymous_id", pa.string()),
            ("previous_id", pa.string()),
            ("group_id", pa.string()),
            ("timestamp", TS),
            ("received_at", TS),
            ("properties", pa.string()),
            ("traits", pa.string()),
            ("context", pa.string()),
            ("source", pa.string()),
        ]
    ),
    key=("message_id",),
)

ORDERS = TableSpec(
    "orders",
    pa.schema(
        [
            ("order_id", pa.string()),
            ("message_id", pa.string()),
            ("user_id", pa.string()),
            ("anonymous_id", pa.string()),
            ("timestamp", TS),
            ("currency", pa.string()),
            ("revenue", pa.float64()),
            ("revenue_original", pa.float64()),
            ("subtotal", pa.float64()),
            ("total", pa.float64()),
            ("shipping", pa.float64()),
            ("tax", pa.float64()),
            ("discount", pa.float64()),
            ("coupon", pa.string()),
            ("source", pa.string()),
        ]
    ),
    key=("order_id",),
)

ORDER_ITEMS = TableSpec(
    "order_items",
    pa.schema(
        [
            ("order_id", pa.string()),
            ("line", pa.int32()),
            ("timestamp", TS),
            ("product_id", pa.string()),
            ("sku", pa.string()),
            ("category", pa.string()),
            ("name", pa.string()),
            ("brand", pa.string()),
            ("price", pa.float64()),
            ("quantity", pa.int64()),
        ]
    ),
    key=("order_id", "line"),
)

# Refunds and cancellations; amount is in base currency, null meaning "the whole order".
ORDER_ADJUSTMENTS = TableSpec(
    "order_adjustments",
    pa.schema(
        [
            ("message_id", pa.string()),
            ("order_id", pa.string()),
            ("kind", pa.string()),
            ("amount", pa.float64()),
            ("timestamp", TS),
        ]
    ),
    key=("message_id",),
)

# Trait observations (identify calls and imported user rows); the engine merges them per person.
USERS = TableSpec(
    "users",
    pa.schema(
        [
            ("user_id", pa.string()),
            ("timestamp", TS),
            ("traits", pa.string()),
            ("source", pa.string()),
            ("row_hash", pa.string()),
        ]
    ),
    key=("row_hash",),
    by_date=False,
)

ITEMS = TableSpec(
    "items",
    pa.schema(
        [
            ("item_id", pa.string()),
            ("name", pa.string()),
            ("category", pa.string()),
            ("brand", pa.string()),
            ("price", pa.float64()),
            ("description", pa.string()),
            ("in_stock", pa.bool_()),
            ("attributes", pa.string()),
            ("updated_at", TS),
            ("row_hash", pa.string()),
        ]
    ),
    key=("row_hash",),
    by_date=False,
)

TABLES: dict[str, TableSpec] = {
    spec.name: spec for spec in (EVENTS, ORDERS, ORDER_ITEMS, ORDER_ADJUSTMENTS, USERS, ITEMS)
}
