"""Helpers for analytics tests: write Segment messages straight into a workspace, and run one
Ibis analysis on DuckDB and on Spark to compare the two."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import ibis.expr.types as ir
import pandas as pd

from tenure import Workspace
from tenure.ingest.flusher import write_records
from tenure.spec.messages import normalize_message
from tenure.store.engine import DuckDBEngine, Engine, LakeTables

Analysis = Callable[[LakeTables], ir.Table]


def ingest(ws: Workspace, messages: Iterable[dict[str, Any]]) -> None:
    """Store Segment messages as the collector would (identity links included), at once."""
    received = datetime(2100, 1, 1, tzinfo=UTC)  # after every test timestamp: no skew correction
    records = [normalize_message(m, received_at=received) for m in messages]
    if records:
        write_records(ws, records, source="test")


def open_engine(ws: Workspace, name: str) -> Engine:
    if name == "spark":
        from tenure.store.spark import SparkEngine

        return SparkEngine(ws.lake, ws.state, ws.settings.timezone, "local[2]")
    return DuckDBEngine(ws.lake, ws.state, ws.settings.timezone)


def run(ws: Workspace, analysis: Analysis, engine: str = "duckdb") -> pd.DataFrame:
    with open_engine(ws, engine) as e:
        return e.execute(analysis(e.tables()))


def assert_engines_agree(ws: Workspace, analysis: Analysis, sort_by: Sequence[str]) -> pd.DataFrame:
    """Run ``analysis`` on both engines; the frames must be equal (floats to 1e-9 relative)."""
    duck = run(ws, analysis, "duckdb").sort_values(list(sort_by)).reset_index(drop=True)
    spark = run(ws, analysis, "spark").sort_values(list(sort_by)).reset_index(drop=True)
    assert len(duck) > 0, "compare engines on data that produces rows"
    pd.testing.assert_frame_equal(duck, spark[duck.columns], check_exact=False, rtol=1e-9)
    return duck
