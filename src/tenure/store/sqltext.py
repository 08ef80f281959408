"""Quoting for the few places that must splice names into DuckDB SQL (COPY paths, file columns)."""

from __future__ import annotations

from pathlib import Path


def quote_identifier(name: str) -> str:
    """A DuckDB identifier, quoted so that any column name is safe."""
    return '"' + name.replace('"', '""') + '"'


def string_literal(text: str | Path) -> str:
    """A SQL string literal; for statements such as COPY that take no parameters."""
    return "'" + str(text).replace("'", "''") + "'"
