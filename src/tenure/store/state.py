"""The state DB: tables, migrations and connections (SQLAlchemy Core; SQLite or PostgreSQL).

It holds what must change in place or be durable before an acknowledgement: the inbox of
accepted-but-not-flushed messages, the lake manifest, the identity graph, the API keys, saved
segments with their members and changes, the model registry and model scores, and the
last hour or so of each person's product events for real-time recommendations.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

metadata = sa.MetaData()

meta = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(256), nullable=False),
)

# One row per accepted request: the body is an orjson list of canonical records. Keeping
# request bodies whole (not one row per event) is what lets durability keep up with HTTP.
inbox = sa.Table(
    "inbox",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("n_messages", sa.Integer, nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
)

# The lake manifest: a lake file is visible to readers iff it is listed here.
lake_files = sa.Table(
    "lake_files",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("table_name", sa.String(32), nullable=False, index=True),
    sa.Column("partition", sa.String(32), nullable=False),
    sa.Column("path", sa.String(512), nullable=False, unique=True),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# Files dropped from the manifest (by compaction); deleted once no reader can still hold them.
lake_garbage = sa.Table(
    "lake_garbage",
    metadata,
    sa.Column("path", sa.String(512), primary_key=True),
    sa.Column("dropped_at", sa.DateTime(timezone=True), nullable=False),
)

# Evidence that two identifiers belong to one person. Unique per unordered pair, so the same
# evidence seen again after an unmerge does not re-link the pair.
identity_links = sa.Table(
    "identity_links",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("id_a", sa.String(256), nullable=False),
    sa.Column("id_b", sa.String(256), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("message_id", sa.String(128), nullable=True),
    sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, default=True),
    sa.Column("unmerged_at", sa.DateTime(timezone=True), nullable=True),
    sa.UniqueConstraint("id_a", "id_b", name="uq_identity_links_pair"),
)
sa.Index("ix_identity_links_b", identity_links.c.id_b)

# Identifier -> canonical person id, for identifiers that take part in at least one active link.
identity_map = sa.Table(
    "identity_map",
    metadata,
    sa.Column("identifier", sa.String(256), primary_key=True),
    sa.Column("person_id", sa.String(256), nullable=False, index=True),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key_hash", sa.String(128), nullable=False, unique=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("label", sa.String(128), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked", sa.Boolean, nullable=False, default=False),
)

# Saved segments: ``definition`` is JSON (a rule, or a cluster's clustering settings).
segments = sa.Table(
    "segments",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("definition", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("refreshed_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("size", sa.Integer, nullable=False, default=0),
)

# Current members of each segment.
segment_members = sa.Table(
    "segment_members",
    metadata,
    sa.Column("segment_id", sa.Integer, primary_key=True),
    sa.Column("person_id", sa.String(256), primary_key=True),
    sa.Column("entered_at", sa.DateTime(timezone=True), nullable=False),
)

# Every entry and exit, in the order they were detected: journeys read it from a cursor (id).
segment_changes = sa.Table(
    "segment_changes",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("segment_id", sa.Integer, nullable=False, index=True),
    sa.Column("person_id", sa.String(256), nullable=False),
    sa.Column("change", sa.String(8), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)

# Size after every refresh: the segment's size over time.
segment_sizes = sa.Table(
    "segment_sizes",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("segment_id", sa.Integer, nullable=False, index=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("entered", sa.Integer, nullable=False),
    sa.Column("exited", sa.Integer, nullable=False),
)

# Model scores on profiles (written by the models capability, read by segment rules).
person_scores = sa.Table(
    "person_scores",
    metadata,
    sa.Column("person_id", sa.String(256), primary_key=True),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("model_version", sa.String(64), nullable=False),
    sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
)

# Scores that are not one number (a churn risk's reasons, recommended items), as JSON.
person_details = sa.Table(
    "person_details",
    metadata,
    sa.Column("person_id", sa.String(256), primary_key=True),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("model_version", sa.String(64), nullable=False),
    sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
)

# The model registry: one row per trained model; the fitted object is a file in the workspace.
models = sa.Table(
    "models",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("trained_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
    sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
    sa.Column("params", sa.Text, nullable=False),
    sa.Column("metrics", sa.Text, nullable=False),
    sa.Column("features", sa.Text, nullable=False),
    sa.Column("artifact", sa.Text, nullable=False),
    sa.Column("scored_at", sa.DateTime(timezone=True), nullable=True),
)

# Recent product events (views, cart adds, order lines) of the last ``recommendations.retention``,
# written with each flush so that a real-time recommendation needs one indexed query, not the
# lake. Unique per (message, item) and per (order, item), as the lake's events and order lines
# are, so a redone flush or a re-sent order adds nothing.
recent_item_events = sa.Table(
    "recent_item_events",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.String(256), nullable=True),
    sa.Column("anonymous_id", sa.String(256), nullable=True),
    sa.Column("item_id", sa.String(256), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("message_id", sa.String(128), nullable=False),
    sa.Column("order_id", sa.String(256), nullable=True),
    sa.UniqueConstraint("message_id", "item_id", name="uq_recent_item_events_message"),
    sa.UniqueConstraint("order_id", "item_id", name="uq_recent_item_events_order"),
    sa.CheckConstraint("kind IN ('view', 'cart', 'purchase')", name="ck_recent_item_events_kind"),
)
sa.Index("ix_recent_item_events_user", recent_item_events.c.user_id, recent_item_events.c.at)
sa.Index("ix_recent_item_events_anonymous", recent_item_events.c.anonymous_id, recent_item_events.c.at)

SCHEMA_VERSION = 4
# Migration n takes the schema from version n-1 to n; version 1 is the initial create_all.
MIGRATIONS: dict[int, Callable[[Connection], None]] = {
    1: lambda conn: metadata.create_all(conn),
    2: lambda conn: metadata.create_all(
        conn, tables=[segments, segment_members, segment_changes, segment_sizes, person_scores], checkfirst=True
    ),
    3: lambda conn: metadata.create_all(conn, tables=[person_details, models], checkfirst=True),
    4: lambda conn: metadata.create_all(conn, tables=[recent_item_events], checkfirst=True),
}


IN_CHUNK = 900  # values per ``IN (...)``: under SQLite's bound-parameter limit


def in_chunks(values: Iterable[str]) -> Iterator[list[str]]:
    """Sorted slices of ``values`` small enough for one ``IN (...)``."""
    ordered = sorted(values)
    for start in range(0, len(ordered), IN_CHUNK):
        yield ordered[start : start + IN_CHUNK]


class StateDB:
    """A connection pool to the state DB with the schema migrated to ``SCHEMA_VERSION``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = _create_engine(url)
        self.migrate()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A write transaction: committed on exit, rolled back on error."""
        with self.engine.connect().execution_options(tenure_write=True) as conn, conn.begin():
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction: one consistent view of the state."""
        with self.engine.connect() as conn, conn.begin():
            yield conn

    def migrate(self) -> None:
        with self.begin() as conn:
            meta.create(conn, checkfirst=True)
            row = conn.execute(sa.select(meta.c.value).where(meta.c.key == "schema_version")).first()
            current = int(row[0]) if row else 0
            for version in range(current + 1, SCHEMA_VERSION + 1):
                MIGRATIONS[version](conn)
            if current < SCHEMA_VERSION:
                values = {"key": "schema_version", "value": str(SCHEMA_VERSION)}
                if row:
                    conn.execute(meta.update().where(meta.c.key == "schema_version").values(values))
                else:
                    conn.execute(meta.insert().values(values))

    def dispose(self) -> None:
        self.engine.dispose()


def _create_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        sa.event.listen(engine, "begin", _sqlite_begin)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return sa.create_engine(url, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    """WAL lets readers run beside the writer; synchronous=FULL makes a commit an fsync."""
    dbapi_conn.isolation_level = None  # let SQLAlchemy's "begin" hook issue BEGIN itself
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    # Writers take the lock at BEGIN so two of them queue on busy_timeout instead of failing
    # when a read lock cannot be upgraded.
    write = conn.get_execution_options().get("tenure_write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def bound_value(conn: Connection, column: sa.Column[Any], value: object) -> object:
    """``value`` as the driver receives it for ``column`` (e.g. SQLite's datetime text)."""
    process = column.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)  # the generic type has none
    return process(value) if process else value


def insert_many(
    conn: Connection,
    table: sa.Table,
    columns: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
    *,
    skip_duplicates: bool = False,
) -> None:
    """Rows already in driver form, through the driver's executemany.

    SQLAlchemy's per-row parameter processing was most of the time of a first segment refresh
    (one member and one change row per person and segment); the values here are bound once.
    With ``skip_duplicates`` a row that would violate a unique constraint is dropped (SQLite
    and PostgreSQL both read ``ON CONFLICT DO NOTHING``).
    """
    if not rows:
        return
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    names = ", ".join(columns)
    conflict = " ON CONFLICT DO NOTHING" if skip_duplicates else ""
    conn.exec_driver_sql(
        f"INSERT INTO {table.name} ({names}) VALUES ({', '.join([mark] * len(columns))}){conflict}", rows
    )
