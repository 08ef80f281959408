"""The Spark engine: the same lake tables and analyses on PySpark.

Spark reads exactly the snapshot's files (never a folder listing, which could include files
not yet committed to the manifest). One SparkSession serves the whole process because a JVM
takes seconds to start; each engine registers its views under its own prefix so that engines
sharing the session do not see each other's tables.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from tenure.store.engine import DuckDBEngine, Engine
from tenure.store.lake import Lake, LakeSnapshot
from tenure.store.schemas import TABLES
from tenure.store.state import StateDB

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

_engine_numbers = itertools.count()


def spark_session(master: str, timezone: str) -> SparkSession:
    """The process's SparkSession, started on first use in the reporting time zone."""
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master(master)
        .appName("tenure")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.parquet.int96RebaseModeInRead", "CORRECTED")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    return session


class SparkEngine(Engine):
    """Ibis over PySpark; ``master`` is e.g. ``local[2]`` or ``spark://host:7077``."""

    name = "spark"

    def __init__(self, lake: Lake, state: StateDB, timezone: str = "UTC", master: str = "local[2]") -> None:
        super().__init__(lake, state, timezone)
        self.session = spark_session(master, timezone)
        self.con = ibis.pyspark.connect(self.session)
        # Ibis pins the session to UTC on connect; local calendar days need the reporting zone.
        self.session.conf.set("spark.sql.session.timeZone", timezone)
        self._prefix = f"_tenure{next(_engine_numbers)}_"
        self._views: list[str] = []

    def close(self) -> None:
        for view in self._views:
            self.session.catalog.dropTempView(view)
        self._views.clear()

    def _raw_table(self, name: str, snapshot: LakeSnapshot) -> ir.Table:
        paths = snapshot.paths(name)
        if not paths:
            return self._register(f"empty_{name}", self._empty(name))
        # Every file has the table's schema (store/schemas), so Spark need not merge footers,
        # which costs seconds per hundred files.
        reader = self.session.read
        if TABLES[name].by_date:
            reader = reader.option("basePath", str(self.lake.root / name))
        return self._view(f"lake_{name}", reader.parquet(*paths))

    def _register(self, name: str, data: pa.Table) -> ir.Table:
        schema = _spark_schema(data.schema)
        rows = data if data.num_rows else []  # Spark cannot take an empty Arrow table
        return self._view(name, self.session.createDataFrame(rows, schema=schema))

    def _users(self, observations: ir.Table, ids: ir.Table, snapshot: LakeSnapshot) -> ir.Table:
        """Merged traits, computed by DuckDB: Spark has no JSON merge, and the table is small."""
        with DuckDBEngine(self.lake, self.state, self.timezone) as duck:
            merged = duck.tables(snapshot).users.to_pyarrow()
        return self._register("users", merged.set_column(1, "user_ids", merged["user_ids"].cast(pa.list_(pa.string()))))

    def _view(self, name: str, frame: DataFrame) -> ir.Table:
        view = self._prefix + name
        frame.createOrReplaceTempView(view)
        self._views.append(view)
        return self.con.table(view)


def _spark_schema(schema: pa.Schema) -> StructType:
    """The Spark schema for an Arrow schema, so empty tables keep their column types."""
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(schema)
