"""The analytics engine: Ibis tables over one lake snapshot, attributed to canonical persons.

One ``Engine`` builds the same tables on any Ibis backend: the fact tables come from the
snapshot's Parquet files, state tables (the identity map) are handed over as Arrow tables
rather than attached through DuckDB's sqlite/postgres extensions, which would download at run
time. Analyses are Ibis expressions over these tables, so they run unchanged on DuckDB and on
Spark (``store.spark``). Both sessions run in the workspace's reporting time zone, so a
timestamp's ``date()`` and ``truncate()`` mean the local calendar day.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection
from dataclasses import dataclass

import ibis
import ibis.expr.types as ir
import pandas as pd
import pyarrow as pa
import sqlalchemy as sa
from ibis.backends import BaseBackend

from tenure.spec.ecommerce import FUNNEL_EVENTS
from tenure.store.lake import Lake, LakeSnapshot
from tenure.store.schemas import TABLES
from tenure.store.sqltext import string_literal
from tenure.store.state import StateDB, identity_map

IDENTITY_SCHEMA = pa.schema([("identifier", pa.string()), ("person_id", pa.string())])


@dataclass(frozen=True)
class LakeTables:
    """The engine's tables; every fact table carries ``person_id``."""

    events: ir.Table
    orders: ir.Table
    order_items: ir.Table
    order_adjustments: ir.Table
    users: ir.Table
    items: ir.Table
    identity_map: ir.Table


class Engine(ABC):
    """An Ibis backend over the lake; subclasses say how files and Arrow tables get in."""

    name: str
    con: BaseBackend

    def __init__(self, lake: Lake, state: StateDB, timezone: str) -> None:
        self.lake = lake
        self.state = state
        self.timezone = timezone

    def tables(self, snapshot: LakeSnapshot | None = None) -> LakeTables:
        snapshot = snapshot or self.lake.snapshot()
        raw = {name: self._raw_table(name, snapshot) for name in TABLES}
        ids = self._register("identity_map", self._identity_arrow())
        events = _with_funnel_step(_attribute(raw["events"], ids))
        orders = _attribute(raw["orders"], ids)
        return LakeTables(
            events=events,
            orders=_with_adjustments(orders, raw["order_adjustments"]),
            order_items=_attach_person(raw["order_items"], orders),
            order_adjustments=_attach_person(raw["order_adjustments"], orders),
            users=self._users(raw["users"], ids, snapshot),
            items=_latest_items(raw["items"]),
            identity_map=ids,
        )

    def execute(self, expr: ir.Table) -> pd.DataFrame:
        """Run ``expr`` and return a DataFrame that looks the same whichever engine ran it.

        Analyses return calendar periods as dates, which both engines hand back alike.
        """
        dates = [name for name, dtype in expr.schema().items() if dtype.is_date()]
        return normalise_frame(expr.to_pandas(), dates, self.timezone)

    def register(self, name: str, data: pa.Table) -> ir.Table:
        """Make an Arrow table queryable next to the lake tables (e.g. a reference list)."""
        return self._register(name, data)

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def _raw_table(self, name: str, snapshot: LakeSnapshot) -> ir.Table: ...

    @abstractmethod
    def _register(self, name: str, data: pa.Table) -> ir.Table: ...

    @abstractmethod
    def _users(self, observations: ir.Table, ids: ir.Table, snapshot: LakeSnapshot) -> ir.Table: ...

    def _empty(self, name: str) -> pa.Table:
        spec = TABLES[name]
        empty = spec.schema.empty_table()
        if spec.by_date:
            empty = empty.append_column("date", pa.array([], pa.date32()))
        return empty

    def _identity_arrow(self) -> pa.Table:
        with self.state.read() as conn:
            rows = conn.execute(sa.select(identity_map.c.identifier, identity_map.c.person_id)).all()
        return pa.table(
            {"identifier": [r[0] for r in rows], "person_id": [r[1] for r in rows]}, schema=IDENTITY_SCHEMA
        )

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DuckDBEngine(Engine):
    """Ibis over an in-process DuckDB; cheap to open, so open one per unit of work."""

    name = "duckdb"

    def __init__(self, lake: Lake, state: StateDB, timezone: str = "UTC") -> None:
        super().__init__(lake, state, timezone)
        self.con = ibis.duckdb.connect()
        self.con.raw_sql(f"SET TimeZone={string_literal(timezone)}")
        # Spark's names for functions Ibis does not make portable, so analyses use one name.
        self.con.raw_sql("CREATE OR REPLACE TEMP MACRO unix_micros(ts) AS epoch_us(ts)")
        self.con.raw_sql("CREATE OR REPLACE TEMP MACRO get_json_object(doc, path) AS json_extract_string(doc, path)")

    def close(self) -> None:
        self.con.disconnect()

    def _raw_table(self, name: str, snapshot: LakeSnapshot) -> ir.Table:
        paths = snapshot.paths(name)
        if not paths:
            return self._register(f"_empty_{name}", self._empty(name))
        options = {"union_by_name": True}
        if TABLES[name].by_date:
            options["hive_partitioning"] = True
        return self.con.read_parquet(list(paths), table_name=f"_lake_{name}", **options)

    def _register(self, name: str, data: pa.Table) -> ir.Table:
        return self.con.create_table(name, data, temp=True, overwrite=True)

    def _users(self, observations: ir.Table, ids: ir.Table, snapshot: LakeSnapshot) -> ir.Table:
        """One row per person: traits merged in time order (later values win, per key)."""
        attributed = _attribute(observations.mutate(anonymous_id=ibis.null(str)), ids)
        name = "_user_traits"
        self.con.create_view(name, attributed, overwrite=True)
        return self.con.sql(
            f"""
            SELECT person_id,
                   list_distinct(list(user_id)) AS user_ids,
                   list_reduce(list(traits ORDER BY "timestamp"),
                               (acc, x) -> json_merge_patch(acc, x))::VARCHAR AS traits,
                   max("timestamp") AS updated_at
            FROM {name} GROUP BY person_id
            """
        )


def utc_instant(value: object, timezone: str) -> pd.Timestamp | None:
    """A timestamp scalar from either engine as a UTC ``pd.Timestamp`` (None for null)."""
    if value is None or pd.isna(value):
        return None
    stamp = pd.Timestamp(value)
    if stamp.tz is None:
        stamp = stamp.tz_localize(timezone, ambiguous=True, nonexistent="shift_forward")
    return stamp.tz_convert("UTC")


def normalise_frame(frame: pd.DataFrame, dates: Collection[str], timezone: str) -> pd.DataFrame:
    """Give engine output one set of dtypes whichever engine ran it.

    Date columns become naive ``datetime64[us]`` at midnight; timestamps become UTC
    microseconds (naive ones are wall-clock times in the session's ``timezone``, which is how
    Spark returns them); integers without nulls become ``int64``.
    """
    out = frame.copy()
    for column in out.columns:
        values = out[column]
        if column in dates:
            out[column] = pd.to_datetime(values).dt.tz_localize(None).astype("datetime64[us]")
        elif pd.api.types.is_datetime64_any_dtype(values.dtype):
            if getattr(values.dt, "tz", None) is None:
                values = values.dt.tz_localize(timezone, ambiguous=True, nonexistent="shift_forward")
            out[column] = values.dt.tz_convert("UTC").astype("datetime64[us, UTC]")
        elif pd.api.types.is_integer_dtype(values.dtype) and not values.isna().any():
            out[column] = values.astype("int64")
    return out.reset_index(drop=True)


def _attribute(table: ir.Table, ids: ir.Table) -> ir.Table:
    """Add ``person_id``: a linked user id wins, then the raw user id, then the anonymous id."""
    by_user = ids.rename(_user_key="identifier", _user_person="person_id")
    by_anon = ids.rename(_anon_key="identifier", _anon_person="person_id")
    joined = table.left_join(by_user, table.user_id == by_user._user_key).left_join(
        by_anon, table.anonymous_id == by_anon._anon_key
    )
    person = ibis.coalesce(joined._user_person, joined.user_id, joined._anon_person, joined.anonymous_id)
    return joined.mutate(person_id=person).drop("_user_key", "_user_person", "_anon_key", "_anon_person")


def _with_funnel_step(events: ir.Table) -> ir.Table:
    """``funnel_step``: 1-4 for the e-commerce funnel events, null for anything else."""
    steps = [(events.event == name, position) for position, name in enumerate(FUNNEL_EVENTS, start=1)]
    return events.mutate(funnel_step=ibis.cases(*steps, else_=ibis.null("int8")))


def _attach_person(table: ir.Table, orders: ir.Table) -> ir.Table:
    owners = orders.select(_order_key=orders.order_id, person_id=orders.person_id)
    joined = table.left_join(owners, table.order_id == owners._order_key)
    return joined.drop("_order_key")


def _with_adjustments(orders: ir.Table, adjustments: ir.Table) -> ir.Table:
    """Apply refunds and cancellations: ``net_revenue`` and ``status`` per order."""
    refund = adjustments.kind == "refunded"
    summary = adjustments.group_by(_adj_order=adjustments.order_id).aggregate(
        _cancelled=(adjustments.kind == "cancelled").any(),
        _full_refund=(refund & adjustments.amount.isnull()).any(),
        refunded=ibis.cases((refund, adjustments.amount), else_=0.0).sum(),
    )
    joined = orders.left_join(summary, orders.order_id == summary._adj_order)
    refunded = joined.refunded.fill_null(0.0)
    voided = joined._cancelled.fill_null(False) | joined._full_refund.fill_null(False)
    net = ibis.cases((voided, 0.0), else_=ibis.greatest(joined.revenue - refunded, 0.0))
    status = ibis.cases(
        (joined._cancelled.fill_null(False), "cancelled"),
        (voided | (refunded >= joined.revenue) & (refunded > 0), "refunded"),
        (refunded > 0, "partially_refunded"),
        else_="completed",
    )
    return joined.mutate(refunded=refunded, net_revenue=net, status=status).drop(
        "_adj_order", "_cancelled", "_full_refund"
    )


def _latest_items(items: ir.Table) -> ir.Table:
    newest = ibis.row_number().over(group_by=items.item_id, order_by=ibis.desc(items.updated_at))
    return items.mutate(_rank=newest).filter(lambda t: t._rank == 0).drop("_rank", "row_hash")
