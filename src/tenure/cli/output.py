"""Printing or saving a result frame: a rich table for people, CSV/JSON/Parquet for tools."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal

import pandas as pd
import typer
from rich.table import Table

from tenure.cli._common import console
from tenure.errors import ValidationError

Format = Literal["table", "csv", "json", "parquet"]
FormatOption = Annotated[
    Format, typer.Option("--format", "-f", help="table (default), csv, json or parquet; --out FILE picks it by suffix.")
]
OutOption = Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file instead of the terminal.")]
_SUFFIXES: dict[str, Format] = {".csv": "csv", ".json": "json", ".parquet": "parquet"}
# Columns holding a fraction, shown as percentages in tables.
_FRACTION_WORDS = ("rate", "share", "retention", "conversion", "stickiness")


def emit(frame: pd.DataFrame, *, fmt: Format, out: Path | None, title: str, display: pd.DataFrame | None = None) -> None:
    """Write ``frame`` as ``fmt``; a table shows ``display`` (e.g. a pivot) when given."""
    if fmt == "table" and out is not None:
        fmt = _SUFFIXES.get(out.suffix.lower(), "csv")
    if fmt == "table":
        console.print(rich_table(display if display is not None else frame, title))
    elif fmt == "csv":
        text = frame.to_csv(index=False)
        _write_text(text, out)
    elif fmt == "json":
        text = frame.to_json(orient="records", date_format="iso", indent=1) or "[]"
        _write_text(text + "\n", out)
    elif out is None:
        raise ValidationError("out", "parquet output needs --out FILE")
    else:
        frame.to_parquet(out, index=False)
    if out is not None:
        console.print(f"wrote {len(frame):,} rows to {out}")


def rich_table(frame: pd.DataFrame, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for position, column in enumerate(frame.columns):
        numeric = pd.api.types.is_numeric_dtype(frame[column].dtype)
        # The first column names the row (a stage, a cohort): never squeeze it.
        header = str(column).replace("seconds_", "time_").replace("_", " ")
        table.add_column(header, justify="right" if numeric else "left", no_wrap=position == 0)
    for row in frame.itertuples(index=False):
        table.add_row(*(_cell(value, str(column)) for value, column in zip(row, frame.columns, strict=True)))
    return table


def _cell(value: object, column: str) -> str:
    if value is None or (not isinstance(value, list | tuple) and pd.isna(value)):
        return ""
    if isinstance(value, pd.Timestamp):
        return str(value.strftime("%Y-%m-%d" if value.tz is None else "%Y-%m-%d %H:%M"))
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if "seconds" in column:
            return _duration(value)
        if any(word in column for word in _FRACTION_WORDS):
            return f"{value:.1%}"
        return f"{value:,.2f}"
    return str(value)


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def _write_text(text: str, out: Path | None) -> None:
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text)
