"""The SQL of the importer: fixed templates over quoted identifiers, never user text.

Every statement works on the table ``raw`` (the file as loaded) and builds ``mapped``: one row
per input row in Tenure's columns, with ``_row`` (1-based row number) and ``_column`` /
``_reason`` naming the first problem found (both null for a good row).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from tenure.spec.messages import MESSAGE_TYPES
from tenure.store.sqltext import quote_identifier as quote
from tenure.store.sqltext import string_literal as literal

TARGETS: Mapping[str, tuple[str, ...]] = {
    "events": (
        "message_id", "type", "event", "name", "user_id", "anonymous_id", "previous_id", "group_id",
        "timestamp", "properties", "traits", "context",
    ),
    "orders": (
        "order_id", "user_id", "anonymous_id", "timestamp", "currency", "revenue", "total", "subtotal",
        "shipping", "tax", "discount", "coupon", "product_id", "sku", "category", "name", "brand",
        "price", "quantity",
    ),
    "users": ("user_id", "anonymous_id", "timestamp", "traits"),
    "items": (
        "item_id", "name", "category", "brand", "price", "description", "in_stock", "updated_at", "attributes",
    ),
}
_NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "FLOAT", "DOUBLE", "DECIMAL", "UBIGINT", "UINTEGER")
_ORDER_AMOUNTS = ("revenue", "total", "subtotal", "shipping", "tax", "discount", "price")
_JSON_OBJECT = "(json_valid({c}) AND ltrim({c})[1] = '{{')"


class _Columns:
    """SQL expressions reading target columns out of ``raw`` according to the mapping."""

    def __init__(self, mapping: Mapping[str, str], types: Mapping[str, str]) -> None:
        self.mapping = mapping
        self.types = types

    def source(self, target: str) -> str | None:
        return self.mapping.get(target)

    def _as_text(self, src: str) -> str:
        # JSON Lines columns arrive as JSON values: a string must lose its quotes.
        if self.types.get(src) == "JSON":
            return f"json_extract_string({quote(src)}, '$')"
        return f"CAST({quote(src)} AS VARCHAR)"

    def text(self, target: str) -> str:
        src = self.source(target)
        return "NULL::VARCHAR" if src is None else f"NULLIF(trim({self._as_text(src)}), '')"

    def number(self, target: str, kind: str = "DOUBLE") -> str:
        return f"TRY_CAST({self.text(target)} AS {kind})"

    def timestamp(self, target: str) -> str:
        src = self.source(target)
        if src is None:
            return "NULL::TIMESTAMPTZ"
        col, kind = quote(src), self.types.get(src, "VARCHAR")
        if kind.startswith(_NUMERIC):  # epoch seconds, or milliseconds when that large
            return f"to_timestamp(CASE WHEN {col} > 1e11 THEN {col} / 1000 ELSE {col} END)"
        if kind.startswith(("TIMESTAMP", "DATE")):  # typed already; without a zone, in the session's
            return f"CAST({col} AS TIMESTAMPTZ)"
        return f"TRY_CAST({self._as_text(src)} AS TIMESTAMPTZ)"

    def timestamp_text(self, target: str) -> str:
        """The raw value, for error messages; typed columns only need to say whether it is there."""
        src = self.source(target)
        if src is not None and self.types.get(src, "VARCHAR").startswith(("TIMESTAMP", "DATE", *_NUMERIC)):
            return f"CASE WHEN {quote(src)} IS NOT NULL THEN 'typed' END"
        return self.text(target)

    def json(self, target: str, *, extras: bool) -> str:
        """A JSON object column; with ``extras`` and no such column, the unmapped columns."""
        src = self.source(target)
        if src is not None:
            if self.types.get(src, "VARCHAR") == "VARCHAR":
                return f"NULLIF(trim({quote(src)}), '')"
            return f"NULLIF(to_json({quote(src)})::VARCHAR, 'null')"
        rest = [c for c in self.types if c not in set(self.mapping.values())]
        if not extras or not rest:
            return "NULL::VARCHAR"
        return "to_json(struct_pack(" + ", ".join(f"{quote(c)} := {quote(c)}" for c in rest) + "))::VARCHAR"


def _checked(select: str, checks: list[tuple[str, str, str]]) -> str:
    """Wrap ``select`` (rows in a CTE or table) with ``_column`` and ``_reason`` of the first
    failing (column, condition, reason) check. ``select`` must end in ``{check}`` (a column).

    Conditions are evaluated once into a check number; names and reasons only for failures.
    """
    first = " ".join(f"WHEN {cond} THEN {n}" for n, (_, cond, _) in enumerate(checks))
    column = " ".join(f"WHEN {n} THEN {literal(col)}" for n, (col, _, _) in enumerate(checks))
    reason = " ".join(f"WHEN {n} THEN {why}" for n, (_, _, why) in enumerate(checks))
    inner = select.format(check=f"CASE {first} END AS _check")
    return f"SELECT *, CASE _check {column} END AS _column, CASE _check {reason} END AS _reason FROM ({inner})"


def _timestamp_checks(column: str, latest: datetime, *, required: bool) -> list[tuple[str, str, str]]:
    out = []
    if required:
        out.append((column, f"_{column}_text IS NULL", "'is required'"))
    out += [
        (column, f"_{column}_text IS NOT NULL AND {column} IS NULL", f"'cannot read ' || _{column}_text || ' as a timestamp'"),
        (column, f"{column} < TIMESTAMPTZ '2000-01-01 00:00:00+00'", "'is before 2000-01-01'"),
        (column, f"{column} > TIMESTAMPTZ {literal(latest.isoformat())}", "'is too far in the future'"),
    ]
    return out


def _json_checks(*columns: str) -> list[tuple[str, str, str]]:
    return [(c, f"{c} IS NOT NULL AND NOT {_JSON_OBJECT.format(c=c)}", "'must be a JSON object'") for c in columns]


def _id_checks() -> list[tuple[str, str, str]]:
    return [("user_id", "user_id IS NULL AND anonymous_id IS NULL", "'one of user_id or anonymous_id is required'")]


def mapped_table(kind: str, mapping: Mapping[str, str], types: Mapping[str, str], latest: datetime) -> str:
    cols = _Columns(mapping, types)
    return {"events": _events, "orders": _orders, "users": _users, "items": _items}[kind](cols, latest)


_EVENT_COLUMNS = """SELECT _row, message_id, type, event, user_id, anonymous_id, previous_id, group_id, timestamp,
       properties, traits, context, _timestamp_text, {check} FROM h"""


def _events(c: _Columns, latest: datetime) -> str:
    types = ", ".join(literal(t) for t in MESSAGE_TYPES)
    checks = [
        *_timestamp_checks("timestamp", latest, required=True),
        *_id_checks(),
        ("type", f"type NOT IN ({types})", f"'must be one of {', '.join(MESSAGE_TYPES)}; got ' || type"),
        ("event", "type = 'track' AND event IS NULL", "'is required for track'"),
        ("previous_id", "type = 'alias' AND previous_id IS NULL", "'is required for alias'"),
        ("user_id", "type = 'alias' AND user_id IS NULL", "'is required for alias'"),
        ("group_id", "type = 'group' AND group_id IS NULL", "'is required for group'"),
        *_json_checks("properties", "traits", "context"),
        ("message_id", "length(message_id) > 100", "'must be at most 100 characters'"),
    ]
    hashed = "concat_ws(chr(31), type, event, user_id, anonymous_id, previous_id, epoch_us(timestamp), properties, traits)"
    return f"""
    CREATE OR REPLACE TABLE mapped AS
    WITH m AS (
        SELECT rowid + 1 AS _row, {c.text('message_id')} AS _message_id,
               coalesce(lower({c.text('type')}), 'track') AS type,
               coalesce({c.text('event')}, {c.text('name')}) AS event,  -- track's event, page/screen's name
               {c.text('user_id')} AS user_id, {c.text('anonymous_id')} AS anonymous_id,
               {c.text('previous_id')} AS previous_id, {c.text('group_id')} AS group_id,
               {c.timestamp_text('timestamp')} AS _timestamp_text, {c.timestamp('timestamp')} AS timestamp,
               {c.json('properties', extras=True)} AS properties, {c.json('traits', extras=False)} AS traits,
               {c.json('context', extras=False)} AS context
        FROM raw
    ), h AS (SELECT *, CASE WHEN _message_id IS NULL THEN 'h-' || md5({hashed}) ELSE _message_id END AS message_id FROM m)
    {_checked(_EVENT_COLUMNS, checks)}
    """


def _orders(c: _Columns, latest: datetime) -> str:
    """Order rows (one per order, or one per order line) become ``Order Completed`` events."""
    amounts = ", ".join(f"{c.number(a)} AS {a}, {c.text(a)} AS _{a}_text" for a in _ORDER_AMOUNTS)
    checks = [
        ("order_id", "order_id IS NULL", "'is required'"),
        *_timestamp_checks("timestamp", latest, required=True),
        *_id_checks(),
        *[(a, f"_{a}_text IS NOT NULL AND {a} IS NULL", f"'must be a number, got ' || _{a}_text") for a in _ORDER_AMOUNTS],
        ("quantity", "_quantity_text IS NOT NULL AND (quantity IS NULL OR quantity < 0)", "'must be a non-negative integer'"),
    ]
    text_fields = ("order_id", "user_id", "anonymous_id", "currency", "coupon", "product_id", "sku", "category", "name", "brand")
    line = ", ".join(f"{literal(f)}, {f}" for f in ("product_id", "sku", "category", "name", "brand", "price", "quantity"))
    order = ", ".join(
        f"{literal(f)}, any_value({f})" for f in ("currency", "coupon", "revenue", "total", "subtotal", "shipping", "tax", "discount")
    )
    return f"""
    CREATE OR REPLACE TABLE mapped AS
    WITH r AS (
        SELECT rowid + 1 AS _row, {', '.join(f'{c.text(f)} AS {f}' for f in text_fields)},
               {c.timestamp_text('timestamp')} AS _timestamp_text, {c.timestamp('timestamp')} AS timestamp,
               {amounts}, {c.number('quantity', 'BIGINT')} AS quantity, {c.text('quantity')} AS _quantity_text
        FROM raw
    ), checked AS ({_checked("SELECT *, {check} FROM r", checks)}),
    grouped AS (
        SELECT min(_row) AS _row, order_id, any_value(user_id) AS user_id, any_value(anonymous_id) AS anonymous_id,
               min(timestamp) AS timestamp, any_value(_timestamp_text) AS _timestamp_text,
               json_merge_patch(
                   json_object('order_id', order_id, {order}),
                   CASE WHEN count(product_id) > 0 THEN json_object('products',
                        to_json(list(json_object({line}) ORDER BY _row) FILTER (WHERE product_id IS NOT NULL)))
                   ELSE '{{}}'::JSON END
               )::VARCHAR AS properties
        FROM checked WHERE _column IS NULL GROUP BY order_id
    )
    SELECT _row, 'order-' || order_id AS message_id, 'track' AS type, 'Order Completed' AS event, user_id,
           anonymous_id, NULL::VARCHAR AS previous_id, NULL::VARCHAR AS group_id, timestamp, properties,
           NULL::VARCHAR AS traits, NULL::VARCHAR AS context, _timestamp_text,
           NULL::VARCHAR AS _column, NULL::VARCHAR AS _reason
    FROM grouped
    UNION ALL
    SELECT _row, NULL, NULL, NULL, user_id, anonymous_id, NULL, NULL, timestamp, NULL, NULL, NULL,
           _timestamp_text, _column, _reason
    FROM checked WHERE _column IS NOT NULL
    """


def _users(c: _Columns, latest: datetime) -> str:
    checks = [
        ("user_id", "user_id IS NULL", "'is required'"),
        *_timestamp_checks("timestamp", latest, required=False),
        *_json_checks("traits"),
    ]
    return f"""
    CREATE OR REPLACE TABLE mapped AS
    WITH m AS (
        SELECT rowid + 1 AS _row, {c.text('user_id')} AS user_id, {c.text('anonymous_id')} AS anonymous_id,
               {c.timestamp_text('timestamp')} AS _timestamp_text, {c.timestamp('timestamp')} AS timestamp,
               {c.json('traits', extras=True)} AS traits
        FROM raw
    )
    {_checked("SELECT *, {check} FROM m", checks)}
    """


def _items(c: _Columns, latest: datetime) -> str:
    checks = [
        ("item_id", "item_id IS NULL", "'is required'"),
        ("price", "_price_text IS NOT NULL AND price IS NULL", "'must be a number, got ' || _price_text"),
        ("in_stock", "_in_stock_text IS NOT NULL AND in_stock IS NULL", "'must be true or false, got ' || _in_stock_text"),
        *_timestamp_checks("updated_at", latest, required=False),
        *_json_checks("attributes"),
    ]
    texts = ", ".join(f"{c.text(f)} AS {f}" for f in ("item_id", "name", "category", "brand", "description"))
    return f"""
    CREATE OR REPLACE TABLE mapped AS
    WITH m AS (
        SELECT rowid + 1 AS _row, {texts},
               {c.number('price')} AS price, {c.text('price')} AS _price_text,
               {c.number('in_stock', 'BOOLEAN')} AS in_stock, {c.text('in_stock')} AS _in_stock_text,
               {c.timestamp_text('updated_at')} AS _updated_at_text, {c.timestamp('updated_at')} AS updated_at,
               {c.json('attributes', extras=True)} AS attributes
        FROM raw
    )
    {_checked("SELECT *, {check} FROM m", checks)}
    """


def dimension_output(kind: str, source: str, now: datetime) -> str:
    """``_out``: the good rows of a users or items file, keyed by a hash of their content."""
    stamp = f"TIMESTAMPTZ {literal(now.isoformat())}"
    if kind == "users":
        return f"""
        CREATE OR REPLACE TEMP TABLE _out AS
        SELECT user_id, anonymous_id, coalesce(timestamp, {stamp}) AS timestamp, coalesce(traits, '{{}}') AS traits,
               {literal(source)} AS source, md5(concat_ws(chr(31), user_id, traits)) AS row_hash,
               'import' AS type, NULL::VARCHAR AS previous_id, NULL::VARCHAR AS message_id
        FROM mapped WHERE _column IS NULL
        """
    hashed = "concat_ws(chr(31), item_id, name, category, brand, price, description, in_stock, attributes)"
    return f"""
    CREATE OR REPLACE TEMP TABLE _out AS
    SELECT item_id, name, category, brand, price, description, in_stock, attributes,
           coalesce(updated_at, {stamp}) AS updated_at, md5({hashed}) AS row_hash
    FROM mapped WHERE _column IS NULL
    """


def events_output(source: str) -> str:
    return f"""
    CREATE OR REPLACE TEMP VIEW _events_out AS
    SELECT message_id, type, event, user_id, anonymous_id, previous_id, group_id, timestamp,
           NULL::TIMESTAMPTZ AS received_at, properties, traits, context, {literal(source)} AS source
    FROM mapped WHERE _column IS NULL
    """


def identify_output(source: str) -> str:
    return f"""
    CREATE OR REPLACE TEMP VIEW _users_out AS
    SELECT coalesce(user_id, anonymous_id) AS user_id, timestamp, traits, {literal(source)} AS source,
           md5('identify:' || message_id) AS row_hash
    FROM _events_out WHERE type = 'identify' AND traits IS NOT NULL AND traits <> '{{}}'
    """


def order_events() -> str:
    return """
    SELECT _row, message_id, event, user_id, anonymous_id, timestamp, properties
    FROM mapped WHERE _column IS NULL AND type = 'track' AND event IN (SELECT unnest(?))
    """


def links(relation: str) -> str:
    """Distinct (user id, other id) pairs with their earliest evidence."""
    return f"""
    SELECT user_id, other, arg_min(type, timestamp), arg_min(message_id, timestamp), min(timestamp)
    FROM (SELECT user_id, CASE WHEN type = 'alias' THEN previous_id ELSE anonymous_id END AS other,
                 type, message_id, timestamp FROM {relation})
    WHERE user_id IS NOT NULL AND other IS NOT NULL AND other <> user_id
    GROUP BY user_id, other
    """


def rejections() -> str:
    return "SELECT _row, _column, _reason FROM mapped WHERE _column IS NOT NULL"
