"""Cohort tables against a plain-Python reference on random little shops."""

from __future__ import annotations

import sys
from collections import defaultdict
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import ibis.expr.types as ir
import pandas as pd
import pytest
from analytics_support import assert_engines_agree, ingest, run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rfm_cohorts_support import Shop, fresh_workspace, known_orders, shops

from tenure import Workspace
from tenure.analytics._json import json_field
from tenure.analytics._time import cutoff
from tenure.analytics.cohorts import cohort_table
from tenure.errors import ValidationError
from tenure.store.engine import LakeTables

from conftest import make_workspace

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from baselines import rfm_cohorts as baseline  # noqa: E402

EXAMPLES = settings(max_examples=35, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
MEASURES = ["cohort_size", "active_people", "retention", "ordering_people", "order_retention", "orders", "revenue",
            "revenue_retention", "revenue_per_person", "cumulative_revenue_per_person"]


def period_of(day: date, period: str) -> date:
    if period == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1) if period == "month" else day


def number(day: date, period: str) -> int:
    if period == "month":
        return day.year * 12 + day.month
    return day.toordinal() // (7 if period == "week" else 1)  # only ever given period starts (Mondays for weeks)


def channels(t: LakeTables) -> ir.Table:
    return t.users.select("person_id", channel=json_field(t.users.traits, "channel"))


def reference(shop: Shop, period: str, cohort_of: str, by_channel: bool) -> pd.DataFrame:
    events = [(person, at) for person, at in shop.events if at < shop.as_of]
    orders = list(known_orders(shop).values())
    acquired = [(p, at) for p, at in events] if cohort_of == "first_seen" else [(o.person, o.at) for o, _ in orders]
    first: dict[str, datetime] = {}
    for person, at in acquired:
        first[person] = min(at, first.get(person, at))

    def start(at: datetime) -> date:
        return period_of(shop.local(at), period)

    members: dict[tuple[date, str], set[str]] = defaultdict(set)
    for person, at in first.items():
        members[(start(at), shop.channels.get(person, "(none)") if by_channel else "")].add(person)
    last = number(start(shop.as_of - timedelta(microseconds=1)), period)
    rows = []
    for (cohort, channel), people in members.items():
        base, cumulative, first_revenue = number(cohort, period), 0.0, 0.0
        for index in range(last - base + 1):
            def here(at: datetime, index: int = index, base: int = base) -> bool:
                return number(start(at), period) - base == index
            active = {p for p, at in events if p in people and here(at)}
            placed = [(o, net) for o, net in orders if o.person in people and here(o.at)]
            revenue = sum(net for _, net in placed)
            cumulative += revenue
            first_revenue = revenue if index == 0 else first_revenue
            size = len(people)
            rows.append({
                "cohort": pd.Timestamp(cohort), **({"channel": channel} if by_channel else {}), "period_index": index,
                "cohort_size": size, "active_people": len(active), "retention": len(active) / size,
                "ordering_people": len({o.person for o, _ in placed}), "order_retention": len({o.person for o, _ in placed}) / size,
                "orders": len(placed), "revenue": revenue,
                "revenue_retention": revenue / first_revenue if first_revenue > 0 else float("nan"),
                "revenue_per_person": revenue / size,
                "cumulative_revenue_per_person": cumulative / size,
            })
    keys = ["cohort", *(["channel"] if by_channel else []), "period_index"]
    return pd.DataFrame(rows, columns=[*keys, *MEASURES])


def assert_same_table(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    keys = [c for c in ("cohort", "channel", "period_index") if c in expected.columns]
    assert list(actual.columns) == list(expected.columns)
    actual = actual.sort_values(keys).reset_index(drop=True)
    expected = expected.sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(actual, expected, check_dtype=False, check_exact=False, atol=1e-9)


@EXAMPLES
@given(
    shop=shops(),
    period=st.sampled_from(["day", "week", "month"]),
    cohort_of=st.sampled_from(["first_seen", "first_order"]),
    by_channel=st.booleans(),
)
def test_cohort_table_matches_the_reference(
    tmp_path_factory: pytest.TempPathFactory, shop: Shop, period: str, cohort_of: str, by_channel: bool
) -> None:
    ws = fresh_workspace(tmp_path_factory, shop)
    try:
        actual = run(ws, lambda t: cohort_table(t, as_of=shop.as_of, period=period, cohort_of=cohort_of,
                                                breakdown=channels(t) if by_channel else None))
    finally:
        ws.close()
    assert_same_table(actual, reference(shop, period, cohort_of, by_channel))


def new_york_shop(root: Path) -> Workspace:
    """u1 browses and buys as a guest on a Sunday evening in New York (Monday in UTC), then identifies."""
    make_workspace(root).close()
    (root / "tenure.toml").write_text((root / "tenure.toml").read_text().replace('timezone = "UTC"', 'timezone = "America/New_York"'))
    ws = Workspace(root)

    def msg(i: int, ts: str, ids: dict[str, str], **body: Any) -> dict[str, Any]:
        return {"messageId": f"m{i}", "timestamp": ts, **ids, **body}

    def order(i: int, ts: str, ids: dict[str, str], order_id: str, revenue: float) -> dict[str, Any]:
        return msg(i, ts, ids, type="track", event="Order Completed", properties={"order_id": order_id, "revenue": revenue})

    ingest(ws, [
        msg(1, "2025-03-03T03:30:00Z", {"anonymousId": "a1"}, type="page", name="Home"),  # Sun 22:30 EST
        order(2, "2025-03-03T04:00:00Z", {"anonymousId": "a1"}, "o1", 10.0),  # Sun 23:00 EST
        msg(3, "2025-03-03T15:00:00Z", {"userId": "u1", "anonymousId": "a1"}, type="identify", traits={"channel": "paid"}),
        order(4, "2025-03-17T04:00:00Z", {"userId": "u1"}, "o2", 25.0),  # Mon 00:00 EDT: a week boundary
        order(5, "2025-03-24T04:00:00Z", {"userId": "u1"}, "o3", 99.0),  # exactly as_of: unknown
        msg(6, "2025-03-10T12:00:00Z", {"userId": "u2"}, type="page", name="Home"),  # one event, no order
    ])
    return ws


def test_local_weeks_merged_identities_boundaries_and_empty_periods(tmp_path_factory: pytest.TempPathFactory) -> None:
    ws = new_york_shop(tmp_path_factory.mktemp("ny") / "ws")
    as_of = cutoff("2025-03-23", "America/New_York")
    try:
        buyers = run(ws, lambda t: cohort_table(t, as_of=as_of, period="week", cohort_of="first_order"))
        visitors = run(ws, lambda t: cohort_table(t, as_of=as_of, period="week", breakdown=channels(t)))
    finally:
        ws.close()
    buyers = buyers.sort_values("period_index")
    assert set(buyers.cohort) == {pd.Timestamp("2025-02-24")} and list(buyers.period_index) == [0, 1, 2, 3]
    assert list(buyers.active_people) == [1, 1, 0, 1] and list(buyers.orders) == [1, 0, 0, 1]
    assert list(buyers.revenue) == [10.0, 0.0, 0.0, 25.0]
    assert list(buyers.cumulative_revenue_per_person) == [10.0, 10.0, 10.0, 35.0]
    visitors = visitors.sort_values(["cohort", "period_index"]).reset_index(drop=True)
    assert list(zip(visitors.cohort.dt.date.astype(str), visitors.channel, visitors.period_index, strict=True)) == [
        ("2025-02-24", "paid", 0), ("2025-02-24", "paid", 1), ("2025-02-24", "paid", 2), ("2025-02-24", "paid", 3),
        ("2025-03-10", "(none)", 0), ("2025-03-10", "(none)", 1),
    ]
    assert list(visitors.retention) == [1.0, 1.0, 0.0, 1.0, 1.0, 0.0]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"period": "year"}, "period"), ({"cohort_of": "signup"}, "cohort_of"), ({"breakdown": "bad"}, "breakdown")],
)
def test_parameters_are_validated(tmp_path_factory: pytest.TempPathFactory, kwargs: dict[str, Any], field: str) -> None:
    ws = make_workspace(tmp_path_factory.mktemp("validate") / "ws")
    try:
        with ws.engine() as engine:
            t = engine.tables()
            if kwargs.get("breakdown") == "bad":
                kwargs = {"breakdown": t.users.select("person_id", "traits", "updated_at")}
            with pytest.raises(ValidationError) as info:
                cohort_table(t, as_of=datetime.fromisoformat("2025-01-01T00:00:00+00:00"), **kwargs)
            assert info.value.field == field
    finally:
        ws.close()


@pytest.mark.spark
def test_weekly_cohorts_by_channel_agree_on_spark(sample_shop: Workspace) -> None:
    as_of = cutoff("2025-04-20", sample_shop.settings.timezone)
    frame = assert_engines_agree(
        sample_shop,
        lambda t: cohort_table(t, as_of=as_of, period="week", breakdown=channels(t)),
        ["cohort", "channel", "period_index"],
    )
    assert frame.channel.nunique() > 2 and (frame.revenue > 0).any() and (frame.active_people == 0).any()


@pytest.mark.parametrize("shop", ["sample", "new_york"])
def test_pandas_baseline_gives_the_same_answer(
    sample_shop: Workspace, tmp_path_factory: pytest.TempPathFactory, shop: str
) -> None:
    ws = sample_shop if shop == "sample" else new_york_shop(tmp_path_factory.mktemp("ny") / "ws")
    zone = ws.settings.timezone
    as_of = cutoff("2025-04-20" if shop == "sample" else "2025-03-23", zone)
    events, orders = run(ws, lambda t: t.events), run(ws, lambda t: t.orders)
    adjustments, traits = run(ws, lambda t: t.order_adjustments), run(ws, channels)

    def query(period: str, cohort_of: str, by_channel: bool) -> Any:
        return lambda t: cohort_table(t, as_of=as_of, period=period, cohort_of=cohort_of,
                                      breakdown=channels(t) if by_channel else None)

    for period, cohort_of, by_channel in (("week", "first_seen", True), ("month", "first_order", False), ("day", "first_seen", False)):
        expected = run(ws, query(period, cohort_of, by_channel))
        mine = baseline.cohort_table(events, orders, as_of=as_of, period=period, cohort_of=cohort_of,
                                     breakdown=traits if by_channel else None, timezone=zone, adjustments=adjustments)
        assert_same_table(mine, expected)
    if shop == "new_york":
        ws.close()
