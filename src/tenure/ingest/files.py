"""Reading import files into DuckDB, mapping their columns, and writing quarantine files."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import duckdb
import orjson

from tenure.errors import ValidationError
from tenure.store.sqltext import string_literal

FileFormat = Literal["csv", "parquet", "jsonl"]

# Column names other tools export, accepted without a mapping.
ALIASES: Mapping[str, tuple[str, ...]] = {
    "message_id": ("messageId", "message_id", "event_id", "id"),
    "user_id": ("userId", "user_id", "customer_id"),
    "anonymous_id": ("anonymousId", "anonymous_id", "device_id"),
    "previous_id": ("previousId", "previous_id"),
    "group_id": ("groupId", "group_id"),
    "event": ("event", "event_name"),
    "timestamp": ("timestamp", "originalTimestamp", "event_time", "time", "created_at", "date"),
    "item_id": ("item_id", "product_id", "sku"),
    "order_id": ("order_id", "orderId"),
}


def detect_format(path: Path) -> FileFormat:
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".parquet") or name.endswith(".pq"):
        return "parquet"
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if name.endswith((".csv", ".tsv", ".txt")):
        return "csv"
    raise ValidationError("file", f"cannot tell the format of {path.name}; use --format csv|parquet|jsonl")


def load_raw(con: duckdb.DuckDBPyConnection, path: Path, fmt: FileFormat) -> list[str]:
    """Load the file into table ``raw`` (file order kept in ``rowid``); returns its columns."""
    if not path.is_file():
        raise ValidationError("file", f"{path} does not exist")
    readers = {
        "csv": "read_csv(?, all_varchar=true, header=true)",
        "parquet": "read_parquet(?)",
        "jsonl": "read_json(?, format='newline_delimited', maximum_depth=1)",  # nested objects stay JSON
    }
    try:
        con.execute(f"CREATE OR REPLACE TABLE raw AS SELECT * FROM {readers[fmt]}", [str(path)])
    except duckdb.Error as exc:
        raise ValidationError("file", f"cannot read {path.name} as {fmt}: {exc}") from None
    return [row[0] for row in con.execute("SELECT column_name FROM (DESCRIBE raw)").fetchall()]


def resolve_mapping(columns: list[str], targets: tuple[str, ...], given: Mapping[str, str]) -> dict[str, str]:
    """Target column -> file column: explicit mapping first, then the exact name, then aliases."""
    unknown = [t for t in given if t not in targets]
    if unknown:
        raise ValidationError("mapping", f"unknown target column(s) {', '.join(unknown)}; expected {', '.join(targets)}")
    missing = [c for c in given.values() if c not in columns]
    if missing:
        raise ValidationError("mapping", f"column(s) {', '.join(missing)} not in the file (it has {', '.join(columns)})")
    out = dict(given)
    taken = set(out.values())
    for target in targets:
        if target in out:
            continue
        for candidate in (target, *ALIASES.get(target, ())):
            if candidate in columns and candidate not in taken:
                out[target] = candidate
                taken.add(candidate)
                break
    return out


def read_mapping_file(path: Path) -> dict[str, str]:
    """A mapping file is TOML or JSON: ``{target = "file column"}``."""
    try:
        text = path.read_text()
        doc = orjson.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (OSError, ValueError) as exc:
        raise ValidationError("mapping_file", f"cannot read {path}: {exc}") from None
    if not isinstance(doc, dict) or not all(isinstance(v, str) for v in doc.values()):
        raise ValidationError("mapping_file", "must map target column names to file column names")
    return dict(doc)


def parse_mapping_flags(flags: list[str]) -> dict[str, str]:
    out = {}
    for flag in flags:
        target, sep, column = flag.partition("=")
        if not sep or not target or not column:
            raise ValidationError("--map", f"{flag!r} must look like target=column")
        out[target.strip()] = column.strip()
    return out


def write_quarantine(con: duckdb.DuckDBPyConnection, out: Path, sql_rejections: str) -> int:
    """Write rejected rows (row number, column, reason, original values) as CSV; returns count.

    ``sql_rejections`` is a query over ``raw`` yielding ``_row, _column, _reason``.
    """
    con.execute(f"CREATE OR REPLACE TEMP TABLE _rejected AS {sql_rejections}")
    count = con.execute("SELECT count(*) FROM _rejected").fetchone()[0]  # type: ignore[index]
    if count:
        out.parent.mkdir(parents=True, exist_ok=True)
        con.execute(
            f"""COPY (SELECT j._row AS "row", j._column AS "column", j._reason AS reason, r.*
                      FROM _rejected j JOIN raw r ON r.rowid + 1 = j._row ORDER BY j._row)
                TO {string_literal(out)} (FORMAT csv, HEADER true)"""
        )
    return int(count)
