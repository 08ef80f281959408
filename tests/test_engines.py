"""The engine layer: both engines see the same attributed tables, in the reporting time zone."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from analytics_support import assert_engines_agree, ingest, run

from tenure import Workspace
from tenure.analytics._json import json_field
from tenure.analytics._time import cutoff, days_between, instant, period_start
from tenure.store.engine import LakeTables

from conftest import make_workspace

pytestmark = pytest.mark.spark


def test_engines_agree_on_every_table_of_the_sample_shop(sample_shop: Workspace) -> None:
    for name, key in (("events", ["message_id"]), ("orders", ["order_id"]), ("order_items", ["order_id", "line"]),
                      ("users", ["person_id"]), ("items", ["item_id"])):
        def table(t: LakeTables, name: str = name) -> object:
            frame = getattr(t, name)
            return frame.drop(*[c for c in ("user_ids",) if c in frame.columns])
        frame = assert_engines_agree(sample_shop, table, key)  # type: ignore[arg-type]
        assert frame[key[0]].notna().all()


def test_periods_and_durations_are_local_and_agree(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    make_workspace(root).close()
    (root / "tenure.toml").write_text((root / "tenure.toml").read_text().replace('timezone = "UTC"', 'timezone = "America/New_York"'))
    ws = Workspace(root)
    # 03:30 UTC on a Monday is still Sunday evening in New York: the week is the previous one.
    stamps = ["2025-03-03T03:30:00Z", "2025-03-03T05:30:00Z", "2025-03-31T23:59:59.999Z", "2025-11-02T05:30:00Z"]
    ingest(ws, [{"type": "track", "event": "Visited", "userId": f"u{i}", "timestamp": ts, "messageId": f"m{i}"}
                for i, ts in enumerate(stamps)])
    as_of = cutoff(date(2025, 12, 31), "America/New_York")

    def periods(t: LakeTables) -> object:
        e = t.events
        return e.select(
            "message_id", day=period_start(e.timestamp, "day"), week=period_start(e.timestamp, "week"),
            month=period_start(e.timestamp, "month"), age=days_between(instant(as_of), e.timestamp),
        )
    frame = assert_engines_agree(ws, periods, ["message_id"])  # type: ignore[arg-type]
    assert [d.date() for d in frame.day] == [date(2025, 3, 2), date(2025, 3, 3), date(2025, 3, 31), date(2025, 11, 2)]
    assert [d.date() for d in frame.week] == [date(2025, 2, 24), date(2025, 3, 3), date(2025, 3, 31), date(2025, 10, 27)]
    assert [d.date() for d in frame.month] == [date(2025, 3, 1), date(2025, 3, 1), date(2025, 3, 1), date(2025, 11, 1)]
    # 2026-01-01 05:00 UTC minus 2025-11-02 05:30 UTC is 59 days 23.5 hours.
    assert frame.age.iloc[3] == pytest.approx(59 + 23.5 / 24)
    assert run(ws, lambda t: t.events.count().as_table()).iloc[0, 0] == 4
    ws.close()


def test_json_fields_read_alike_on_both_engines(sample_shop: Workspace) -> None:
    def fields(t: LakeTables) -> object:
        e = t.events.filter(t.events.event == "Product Viewed")
        return e.select("message_id", category=json_field(e.properties, "category"),
                        price=json_field(e.properties, "price").cast("float64"), absent=json_field(e.properties, "nope"))
    frame = assert_engines_agree(sample_shop, fields, ["message_id"])  # type: ignore[arg-type]
    assert frame.category.notna().all() and frame.absent.isna().all() and (frame.price > 0).all()
