"""KPIs against a brute-force reference written plainly over the ingested messages."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from analytics_support import assert_engines_agree, ingest, open_engine, run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.baselines import kpis as baseline
from tenure import Workspace
from tenure.analytics import kpis
from tenure.config import LifecycleSettings
from tenure.errors import ValidationError
from tenure.store.engine import LakeTables

from conftest import make_workspace

MICRO = timedelta(microseconds=1)
ZONES = ["UTC", "America/New_York", "Australia/Sydney"]
USERS = ["u0", "u1", "u2", "u3"]
ANONS = ["a0", "a1", "a2", "a3", "a4"]
BASE = date(2025, 3, 1)  # New York and Sydney change clocks in the weeks around it


# -- the reference ----------------------------------------------------------------------
@dataclass(frozen=True)
class Order:
    person: str
    order_id: str
    ts: datetime
    net: float


def _ts(message: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(message["timestamp"].replace("Z", "+00:00"))


def _people(messages: list[dict[str, Any]]) -> dict[str, str]:
    """Anonymous id -> user id, for every anonymous id seen with a user id (one user each here)."""
    return {m["anonymousId"]: m["userId"] for m in messages if "userId" in m and "anonymousId" in m}


def _person(message: dict[str, Any], people: dict[str, str]) -> str:
    return str(message.get("userId") or people.get(message["anonymousId"], message["anonymousId"]))


def _orders(messages: list[dict[str, Any]], people: dict[str, str], end: datetime) -> list[Order]:
    """Orders before ``end`` not cancelled before it, net of the refunds before it, in (time, id) order."""
    refunds: dict[str, list[float | None]] = defaultdict(list)
    cancelled: set[str] = set()
    for m in messages:
        if _ts(m) >= end:
            continue
        if m.get("event") == "Order Refunded":
            refunds[m["properties"]["order_id"]].append(m["properties"].get("revenue"))
        elif m.get("event") == "Order Cancelled":
            cancelled.add(m["properties"]["order_id"])
    out = []
    for m in messages:
        if m.get("event") != "Order Completed" or _ts(m) >= end:
            continue
        oid, revenue = m["properties"]["order_id"], m["properties"]["revenue"]
        if oid in cancelled:
            continue
        amounts = refunds[oid]
        net = 0.0 if None in amounts else max(revenue - sum(a for a in amounts if a is not None), 0.0)
        out.append(Order(_person(m, people), oid, _ts(m), net))
    return sorted(out, key=lambda o: (o.ts, o.order_id))


def _period_of(day: date, period: str) -> date:
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


class Reference:
    """Every KPI straight from its definition, one person and one day at a time."""

    def __init__(self, messages: list[dict[str, Any]], zone: str, start: datetime, end: datetime, churned_days: int):
        self.zone = ZoneInfo(zone)
        self.start, self.end, self.churn = start, end, timedelta(days=churned_days)
        people = _people(messages)
        known = [m for m in messages if _ts(m) < end]
        self.active: dict[date, set[str]] = defaultdict(set)
        self.first_seen: dict[str, datetime] = {}
        for m in known:
            person, ts = _person(m, people), _ts(m)
            self.active[self.day(ts)].add(person)
            self.first_seen[person] = min(ts, self.first_seen.get(person, ts))
        self.orders = _orders(messages, people, end)
        first, last = self.day(start), self.day(end - MICRO)
        self.days = [first + timedelta(days=i) for i in range((last - first).days + 1)]

    def day(self, ts: datetime) -> date:
        return ts.astimezone(self.zone).date()

    def midnight(self, day: date) -> datetime:
        return datetime.combine(day, time(), tzinfo=self.zone).astimezone(UTC)

    def audience(self, day: date, width: int) -> int:
        return len(set().union(*(self.active[day - timedelta(days=k)] for k in range(width))))

    def churned(self, person: str, at: datetime) -> bool | None:
        """None if no order before ``at``; else whether the last one is more than churned_days old."""
        before = [o.ts for o in self.orders if o.person == person and o.ts < at]
        return None if not before else max(before) + self.churn < at

    def daily(self) -> pd.DataFrame:
        rows = []
        for d in self.days:
            dau, wau, mau = len(self.active[d]), self.audience(d, 7), self.audience(d, 30)
            rows.append({"day": d, "dau": dau, "wau": wau, "mau": mau, "stickiness": dau / mau if mau else 0.0})
        return _frame(rows, "day")

    def kpis(self, period: str) -> pd.DataFrame:
        groups: dict[date, list[date]] = defaultdict(list)
        for d in self.days:
            groups[_period_of(d, period)].append(d)
        return _frame([self.period_row(key, days) for key, days in groups.items()], "period")

    def period_row(self, key: date, days: list[date]) -> dict[str, Any]:
        begin, stop = self.midnight(days[0]), min(self.midnight(days[-1] + timedelta(days=1)), self.end)
        active = set().union(*(self.active[d] for d in days))
        dau = sum(len(self.active[d]) for d in days) / len(days)
        mau = self.audience(days[-1], 30)
        new = [p for p, ts in self.first_seen.items() if self.day(ts) in days]
        placed = [o for o in self.orders if begin <= o.ts < stop]
        customers = {o.person for o in placed}
        firsts: dict[str, str] = {}
        for o in self.orders:  # in (time, id) order
            firsts.setdefault(o.person, o.order_id)
        repeaters = {o.person for o in placed if o.order_id != firsts[o.person]}
        buyers = {o.person for o in self.orders}
        at_risk = {p for p in buyers if self.churned(p, begin) is False}
        lapsed = {p for p in buyers if self.churned(p, begin) is True}
        churners = {
            o.person for o in self.orders
            if o.person in at_risk and begin <= o.ts + self.churn < stop and self.churned(o.person, o.ts + self.churn + MICRO)
        }
        revenue = sum((o.net for o in placed), 0.0)
        return {
            "period": key, "active_people": len(active), "dau": dau, "wau": self.audience(days[-1], 7), "mau": mau,
            "stickiness": dau / mau if mau else 0.0, "new_people": len(new), "returning_people": len(active) - len(new),
            "orders": len(placed), "revenue": revenue, "customers": len(customers),
            "arpu": revenue / len(active) if active else 0.0,
            "repeat_purchase_rate": len(repeaters) / len(customers) if customers else 0.0,
            "churn_rate": len(churners) / len(at_risk) if at_risk else 0.0,
            "reactivation_rate": len(lapsed & customers) / len(lapsed) if lapsed else 0.0,
        }


def _frame(rows: list[dict[str, Any]], date_column: str) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    frame[date_column] = pd.to_datetime(frame[date_column]).astype("datetime64[us]")
    for column in frame.columns:
        if pd.api.types.is_integer_dtype(frame[column]):
            frame[column] = frame[column].astype("int64")
        elif column != date_column:
            frame[column] = frame[column].astype("float64")
    return frame


# -- random shops -----------------------------------------------------------------------
def _stamp(zone: str, day: date, second: int) -> str:
    local = datetime.combine(day, time(), tzinfo=ZoneInfo(zone)).replace(tzinfo=None) + timedelta(seconds=second)
    return local.replace(tzinfo=ZoneInfo(zone)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _local(zone: str, day: date, hours: int) -> datetime:
    return datetime.combine(day, time(hours), tzinfo=ZoneInfo(zone)).astimezone(UTC)


@dataclass
class Scenario:
    zone: str
    start: datetime
    end: datetime
    period: str
    churned_days: int
    messages: list[dict[str, Any]]


seconds = st.one_of(st.sampled_from([0, 1, 86399]), st.integers(0, 86399))  # midnights are period boundaries
days = st.integers(-40, 75)


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    zone = draw(st.sampled_from(ZONES))
    messages: list[dict[str, Any]] = []

    def add(message: dict[str, Any], day: int, second: int) -> None:
        message.update(messageId=f"m{len(messages)}", timestamp=_stamp(zone, BASE + timedelta(days=day), second))
        messages.append(message)

    def who() -> dict[str, str]:
        name = draw(st.sampled_from(USERS + ANONS))
        return {"userId": name} if name in USERS else {"anonymousId": name}

    for anon in ANONS:  # links usually arrive after some anonymous activity
        owner = draw(st.sampled_from([None, *USERS]))
        if owner is not None:
            add({"type": "identify", "userId": owner, "anonymousId": anon}, draw(days), draw(seconds))
    for _ in range(draw(st.integers(0, 25))):
        add({"type": "track", "event": "Visited", **who()}, draw(days), draw(seconds))
    for n in range(draw(st.integers(0, 12))):
        sender, day, second = who(), draw(days), draw(seconds)
        revenue = draw(st.integers(1, 5000)) / 100
        add({"type": "track", "event": "Order Completed", **sender,
             "properties": {"order_id": f"o{n}", "revenue": revenue}}, day, second)
        adjustment = draw(st.sampled_from([None, None, "partial", "full", "cancel"]))
        later = day + draw(st.integers(0, 20))
        if adjustment == "partial":
            props = {"order_id": f"o{n}", "revenue": draw(st.integers(1, 6000)) / 100}
            add({"type": "track", "event": "Order Refunded", **sender, "properties": props}, later, 86399)
        elif adjustment is not None:
            name = "Order Refunded" if adjustment == "full" else "Order Cancelled"
            add({"type": "track", "event": name, **sender, "properties": {"order_id": f"o{n}"}}, later, 86399)
    first = BASE + timedelta(days=draw(st.integers(-5, 30)))
    last = first + timedelta(days=draw(st.integers(0, 40)))
    start = _local(zone, first, draw(st.sampled_from([0, 0, 5, 13])))
    end = _local(zone, last + timedelta(days=1), 0) - timedelta(hours=draw(st.sampled_from([0, 0, 7])))
    return Scenario(zone, start, end, draw(st.sampled_from(["day", "week", "month"])), draw(st.integers(2, 12)),
                    messages)


def _workspace(root: Path, zone: str, messages: Iterable[dict[str, Any]]) -> Workspace:
    make_workspace(root).close()
    text = (root / "tenure.toml").read_text()
    (root / "tenure.toml").write_text(text.replace('timezone = "UTC"', f'timezone = "{zone}"'))
    ws = Workspace(root)
    ingest(ws, messages)
    return ws


def _equal(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(actual, expected[list(actual.columns)], check_exact=False, rtol=1e-9, atol=1e-9)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=scenarios())
def test_kpis_and_daily_activity_match_the_reference(
    case: Scenario, tmp_path_factory: pytest.TempPathFactory
) -> None:
    ws = _workspace(tmp_path_factory.mktemp("kpis"), case.zone, case.messages)
    lifecycle = LifecycleSettings(churned_days=case.churned_days)
    with ws, open_engine(ws, "duckdb") as engine:  # one engine: opening one costs more than these queries
        t = engine.tables()
        found = engine.execute(kpis.kpis(t, start=case.start, end=case.end, period=case.period, lifecycle=lifecycle))
        daily = engine.execute(kpis.daily_activity(t, start=case.start, end=case.end))
        events = engine.execute(t.events.select("person_id", "timestamp", "message_id"))
        orders = engine.execute(t.orders.select("person_id", "order_id", "timestamp", "status", "revenue", "net_revenue"))
        adjustments = engine.execute(t.order_adjustments.select("order_id", "timestamp", "kind", "amount"))
    ref = Reference(case.messages, case.zone, case.start, case.end, case.churned_days)
    assert list(found.columns) == KPI_COLUMNS
    _equal(found, ref.kpis(case.period))
    _equal(daily, ref.daily())
    # The pandas baseline the benchmark times gives the same answers on the same tables.
    if len(events):
        window = {"start": case.start, "end": case.end}
        expected = baseline.kpis(events, orders, **window, period=case.period, lifecycle=lifecycle, timezone=case.zone,
                                 adjustments=adjustments)
        _equal(expected, found)
        _equal(baseline.daily_activity(events, orders, **window, timezone=case.zone), daily)


KPI_COLUMNS = [
    "period", "active_people", "dau", "wau", "mau", "stickiness", "new_people", "returning_people", "orders",
    "revenue", "customers", "arpu", "repeat_purchase_rate", "churn_rate", "reactivation_rate",
]


# -- hand-worked cases ------------------------------------------------------------------
NY = "America/New_York"


def _msg(i: int, zone: str, local: datetime, **fields: Any) -> dict[str, Any]:
    stamp = local.replace(tzinfo=ZoneInfo(zone)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"type": "track", "event": "Visited", "messageId": f"h{i}", "timestamp": stamp, **fields}


def _order(i: int, zone: str, local: datetime, who: str, revenue: float) -> dict[str, Any]:
    return _msg(i, zone, local, event="Order Completed", userId=who, properties={"order_id": f"o{i}", "revenue": revenue})


def test_anonymous_activity_before_identify_makes_the_person_new_then(tmp_path: Path) -> None:
    messages = [
        _msg(1, NY, datetime(2025, 3, 4, 9), anonymousId="anon"),  # week of 03-03, before any identify
        _msg(2, NY, datetime(2025, 3, 12, 9), type="identify", userId="alice", anonymousId="anon"),  # week 03-10
        _msg(3, NY, datetime(2025, 3, 12, 10), userId="bob"),
    ]
    ws = _workspace(tmp_path / "ws", NY, messages)
    start, end = _local(NY, date(2025, 3, 3), 0), _local(NY, date(2025, 3, 17), 0)
    found = run(ws, lambda t: kpis.kpis(t, start=start, end=end, period="week", lifecycle=LifecycleSettings()))
    ws.close()
    assert found.new_people.tolist() == [1, 1]  # alice (as "anon") in week one, bob in week two
    assert found.returning_people.tolist() == [0, 1]  # alice again, now identified
    assert found.active_people.tolist() == [1, 2]
    assert found.mau.tolist() == [1, 2] and found.wau.tolist() == [1, 2]
    _equal(found, Reference(messages, NY, start, end, 180).kpis("week"))


def test_churn_counts_exact_days_across_daylight_saving_and_reactivation(tmp_path: Path) -> None:
    # 10 days of 24 h after 03-06 23:30 EST is 03-17 00:30 EDT (clocks go forward on 03-09):
    # Carol churns in the week of 03-17, not in the week of 03-10.
    # Dan orders 03-03, churns 03-13 (week of 03-10), is churned at the start of week 03-17 and
    # orders again 03-20 (reactivated), then churns 03-30 (week of 03-24).
    messages = [
        _order(1, NY, datetime(2025, 3, 6, 23, 30), "carol", 10.0),
        _order(2, NY, datetime(2025, 3, 3, 0, 0), "dan", 20.0),
        _order(3, NY, datetime(2025, 3, 20, 12, 0), "dan", 30.0),
    ]
    ws = _workspace(tmp_path / "ws", NY, messages)
    start, end = _local(NY, date(2025, 3, 3), 0), _local(NY, date(2025, 3, 31), 0)
    lifecycle = LifecycleSettings(churned_days=10)
    found = run(ws, lambda t: kpis.kpis(t, start=start, end=end, period="week", lifecycle=lifecycle))
    ws.close()
    assert [d.date() for d in found.period] == [date(2025, 3, d) for d in (3, 10, 17, 24)]
    assert found.churn_rate.tolist() == [0.0, 0.5, 1.0, 1.0]  # at risk: none, both, carol, dan
    assert found.reactivation_rate.tolist() == [0.0, 0.0, 1.0, 0.0]  # churned at 03-17: dan only; at 03-24: carol
    assert found.repeat_purchase_rate.tolist() == [0.0, 0.0, 1.0, 0.0]
    assert found.orders.tolist() == [2, 0, 1, 0] and found.revenue.tolist() == [30.0, 0.0, 30.0, 0.0]
    _equal(found, Reference(messages, NY, start, end, 10).kpis("week"))


def test_empty_periods_are_zero_filled_and_facts_at_end_are_unknown(tmp_path: Path) -> None:
    zone = "Australia/Sydney"
    messages = [
        _order(1, zone, datetime(2025, 1, 31, 23, 59, 59), "erin", 5.0),  # the last second of January
        _msg(2, zone, datetime(2025, 3, 1, 0, 0), userId="erin"),  # the first second of March
        _order(3, zone, datetime(2025, 4, 1, 0, 0), "erin", 7.0),  # exactly at `end`: not known
    ]
    ws = _workspace(tmp_path / "ws", zone, messages)
    start, end = _local(zone, date(2025, 1, 1), 0), _local(zone, date(2025, 4, 1), 0)
    lifecycle = LifecycleSettings()
    found = run(ws, lambda t: kpis.kpis(t, start=start, end=end, period="month", lifecycle=lifecycle))
    daily = run(ws, lambda t: kpis.daily_activity(t, start=start, end=end))
    ws.close()
    assert [d.date() for d in found.period] == [date(2025, 1, 1), date(2025, 2, 1), date(2025, 3, 1)]
    assert found.active_people.tolist() == [1, 0, 1] and found.orders.tolist() == [1, 0, 0]
    assert found.new_people.tolist() == [1, 0, 0] and found.returning_people.tolist() == [0, 0, 1]
    february = found.loc[1]
    assert february[["dau", "wau", "revenue", "customers", "arpu", "churn_rate", "stickiness"]].sum() == 0
    assert february.mau == 1  # the 30 days ending 02-28 reach back to erin's 01-31
    assert found.dau.tolist() == pytest.approx([1 / 31, 0.0, 1 / 31])
    assert len(daily) == 31 + 28 + 31 and daily.dau.sum() == 2
    assert daily.set_index("day").mau.loc["2025-03-02"] == 1 and daily.set_index("day").mau.loc["2025-03-31"] == 0
    _equal(found, Reference(messages, zone, start, end, 180).kpis("month"))


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda t: kpis.kpis(t, start=datetime(2025, 1, 2, tzinfo=UTC), end=datetime(2025, 1, 1, tzinfo=UTC),
                             lifecycle=LifecycleSettings()), "start"),
        (lambda t: kpis.kpis(t, start=datetime(2025, 1, 1), end=datetime(2025, 2, 1, tzinfo=UTC),
                             lifecycle=LifecycleSettings()), "start"),
        (lambda t: kpis.kpis(t, start=datetime(2025, 1, 1, tzinfo=UTC), end=datetime(2025, 2, 1, tzinfo=UTC),
                             period="year", lifecycle=LifecycleSettings()), "period"),
        (lambda t: kpis.daily_activity(t, start=datetime(2025, 1, 1, tzinfo=UTC), end=datetime(2025, 1, 1, tzinfo=UTC)),
         "start"),
    ],
)
def test_bad_parameters_name_the_field(sqlite_workspace: Workspace, call: Any, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        run(sqlite_workspace, call)
    assert err.value.field == field


# -- engine parity ----------------------------------------------------------------------
SHOP_START, SHOP_END = datetime(2025, 1, 20, 6, tzinfo=UTC), datetime(2025, 5, 1, tzinfo=UTC)


@pytest.mark.spark
@pytest.mark.parametrize("period", ["week", "month"])
def test_kpis_agree_on_spark(sample_shop: Workspace, period: str) -> None:
    def query(t: LakeTables) -> Any:
        return kpis.kpis(t, start=SHOP_START, end=SHOP_END, period=period, lifecycle=LifecycleSettings(churned_days=30))

    frame = assert_engines_agree(sample_shop, query, ["period"])
    assert frame.orders.sum() > 0 and frame.churn_rate.gt(0).any() and frame.reactivation_rate.gt(0).any()


@pytest.mark.spark
def test_daily_activity_agrees_on_spark(sample_shop: Workspace) -> None:
    frame = assert_engines_agree(sample_shop, lambda t: kpis.daily_activity(t, start=SHOP_START, end=SHOP_END), ["day"])
    assert (frame.mau >= frame.wau).all() and (frame.wau >= frame.dau).all() and frame.dau.gt(0).all()
