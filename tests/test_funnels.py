"""Funnels against a plain-Python reference on random shops, plus the edge cases by hand."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from analytics_support import assert_engines_agree, ingest, open_engine, run
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from benchmarks.baselines import funnels_paths as baseline
from tenure import Workspace
from tenure.analytics.funnels import FunnelStep, funnel
from tenure.errors import ValidationError
from tenure.spec.ecommerce import FUNNEL_EVENTS
from tenure.store.engine import LakeTables

from conftest import make_workspace

T0 = datetime(2025, 3, 1, tzinfo=UTC)
USERS = ["u1", "u2", "u3"]
ANONS = ["a1", "a2", "a3"]
KEYS = ["period", "cat", "flag", "step"]


def open_workspace(root: Path, timezone: str = "UTC") -> Workspace:
    make_workspace(root).close()
    toml = root / "tenure.toml"
    toml.write_text(toml.read_text().replace('timezone = "UTC"', f'timezone = "{timezone}"'))
    return Workspace(root)


def track(mid: str, name: str, at: datetime, *, user: str | None = None, anon: str | None = None,
          **props: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "track", "event": name, "timestamp": at.isoformat(), "messageId": mid,
                               "properties": props}
    if user:
        message["userId"] = user
    if anon:
        message["anonymousId"] = anon
    return message


# -- the reference --------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    person: str
    at: datetime
    mid: str
    name: str
    props: dict[str, Any]


def matches(event: Event, step: FunnelStep) -> bool:
    if event.name != step.event:
        return False
    for key, wanted in step.where.items():
        value = event.props.get(key)
        if isinstance(wanted, bool):
            ok = value is wanted
        elif isinstance(wanted, int | float):
            ok = isinstance(value, int | float) and not isinstance(value, bool) and float(value) == float(wanted)
        else:
            ok = value == wanted
        if not ok:
            return False
    return True


def local_period(at: datetime, period: str, timezone: str) -> date:
    day = at.astimezone(ZoneInfo(timezone)).date()
    if period == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1) if period == "month" else day


def reference(events: Sequence[Event], steps: Sequence[FunnelStep], start: datetime, end: datetime,
              window: timedelta, order: str, by: str | None, period: str | None, timezone: str) -> pd.DataFrame:
    """The funnel by the rules in the module docstring, one person at a time."""
    histories: dict[str, list[Event]] = defaultdict(list)
    for event in sorted(events, key=lambda e: (e.at, e.mid)):
        histories[event.person].append(event)
    reached: dict[tuple[Any, ...], list[list[datetime]]] = defaultdict(list)
    for history in histories.values():
        entry = next((e for e in history if matches(e, steps[0]) and start <= e.at < end), None)
        if entry is None:
            continue
        times, previous = [entry.at], entry
        for step in steps[1:]:
            after = entry if order == "any" else previous
            hit = next((e for e in history if (e.at, e.mid) > (after.at, after.mid) and matches(e, step)
                        and e.at - entry.at <= window), None)
            if hit is None:
                break
            times.append(max(times[-1], hit.at))
            previous = hit
        group: list[Any] = []
        if period:
            group.append(local_period(entry.at, period, timezone))
        if by:
            value = entry.props.get(by)
            group.append("(none)" if value is None else (str(value).lower() if isinstance(value, bool) else value))
        reached[tuple(group)].append(times)
    groups: list[tuple[Any, ...]] = [()]
    if period:
        last = end - timedelta(microseconds=1)
        days = (last.astimezone(ZoneInfo(timezone)).date() - start.astimezone(ZoneInfo(timezone)).date()).days
        first = start.astimezone(ZoneInfo(timezone)).date()
        periods = sorted({local_period(datetime.combine(first + timedelta(days=i), datetime.min.time(),
                                                        ZoneInfo(timezone)), period, timezone)
                          for i in range(days + 1)})
        groups = [(p,) for p in periods]
    if by:
        values = sorted({key[-1] for key in reached})
        groups = [(*g, v) for g in groups for v in values]
    rows = []
    for group in groups:
        people_by_person = reached.get(group, [])
        previous_people = None
        for k, step in enumerate(steps, start=1):
            done = [times for times in people_by_person if len(times) >= k]
            people = len(done)
            first_people = len(people_by_person)
            before = people if previous_people is None else previous_people
            gaps = [(times[k - 1] - times[k - 2]).total_seconds() for times in done] if k > 1 else []
            row: dict[str, Any] = {
                "step": k, "step_name": str(step), "people": people,
                "conversion": people / first_people if first_people else np.nan,
                "step_conversion": people / before if before else np.nan,
                "drop_off": before - people,
                "median_seconds_from_previous": statistics.median(gaps) if gaps else np.nan,
            }
            if period:
                row["period"] = pd.Timestamp(group[0])
            if by:
                row[by] = group[-1]
            rows.append(row)
            previous_people = people
    columns = [*(["period"] if period else []), *([by] if by else []), "step", "step_name", "people", "conversion",
               "step_conversion", "drop_off", "median_seconds_from_previous"]
    return pd.DataFrame(rows, columns=columns)


def assert_same(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    keys = [k for k in KEYS if k in expected.columns]
    assert sorted(actual.columns) == sorted(expected.columns)
    actual = actual.sort_values(keys).reset_index(drop=True)
    expected = expected.sort_values(keys).reset_index(drop=True)[actual.columns]
    for column in ("people", "drop_off", "step"):
        expected[column] = expected[column].astype("int64")
    if "period" in expected:
        expected["period"] = expected["period"].astype("datetime64[us]")
    pd.testing.assert_frame_equal(actual, expected, check_exact=False, rtol=1e-9, check_dtype=False)
    assert actual.people.dtype == "int64" and actual.drop_off.dtype == "int64"


# -- random shops ----------------------------------------------------------------------------

PROPS = st.fixed_dictionaries({}, optional={"cat": st.sampled_from(["x", "y"]),
                                            "price": st.sampled_from([5, 5.0, 7.5]), "flag": st.booleans()})
STEP = st.builds(FunnelStep, st.sampled_from(["A", "B", "C"]),
                 st.sampled_from([{}, {}, {"cat": "x"}, {"price": 5}, {"flag": True}, {"cat": "y", "flag": False}]))


@st.composite
def shops(draw: st.DrawFn) -> dict[str, Any]:
    """People (some only anonymous, some identified later) doing A/B/C on a 30-minute grid."""
    owner = {anon: draw(st.sampled_from([*USERS, None])) for anon in ANONS}
    n = draw(st.integers(0, 24))
    mids = draw(st.permutations(range(100, 100 + n + len(ANONS))))
    messages, events = [], []
    for i in range(n):
        actor = draw(st.sampled_from(USERS + ANONS))
        at = T0 + timedelta(minutes=30 * draw(st.integers(0, 8 * 48)))
        name, props = draw(st.sampled_from(["A", "B", "C"])), draw(PROPS)
        anon = actor in ANONS
        messages.append(track(f"m{mids[i]}", name, at, user=None if anon else actor, anon=actor if anon else None,
                              **props))
        events.append(Event(owner.get(actor) or actor, at, f"m{mids[i]}", name, props))
    for j, (anon, user) in enumerate(owner.items()):
        if user:
            at = T0 + timedelta(minutes=30 * draw(st.integers(0, 8 * 48)))
            kind = draw(st.sampled_from(["identify", "alias"]))
            link = {"userId": user, "anonymousId": anon} if kind == "identify" else {"userId": user, "previousId": anon}
            messages.append({"type": kind, "timestamp": at.isoformat(), "messageId": f"m{mids[n + j]}", **link})
    start = T0 + timedelta(hours=draw(st.integers(0, 72)))
    return {
        "messages": messages, "events": events,
        "steps": draw(st.lists(STEP, min_size=2, max_size=4)),
        "start": start, "end": start + timedelta(hours=draw(st.integers(1, 120))),
        "window": timedelta(minutes=draw(st.sampled_from([30, 60, 90, 600, 1440, 4320]))),
        "order": draw(st.sampled_from(["strict", "any"])),
        "by": draw(st.sampled_from([None, "cat", "flag"])),
        "period": draw(st.sampled_from([None, "day", "week"])),
        "timezone": draw(st.sampled_from(["UTC", "America/New_York", "Asia/Kolkata"])),
    }


@settings(max_examples=30, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shop=shops())
def test_funnel_and_its_pandas_baseline_match_the_reference(tmp_path_factory: pytest.TempPathFactory,
                                                            shop: dict[str, Any]) -> None:
    ws = open_workspace(tmp_path_factory.mktemp("funnel") / "ws", shop["timezone"])
    ingest(ws, shop["messages"])
    params = {k: shop[k] for k in ("start", "end", "window", "order", "by", "period")}
    expected = reference(shop["events"], shop["steps"], timezone=shop["timezone"], **params)
    with open_engine(ws, "duckdb") as engine:
        tables = engine.tables()
        assert_same(engine.execute(funnel(tables, shop["steps"], **params)), expected)
        events = engine.execute(tables.events)
    assert_same(baseline.funnel(events, events, steps=shop["steps"], timezone=shop["timezone"], **params), expected)
    ws.close()


# -- edge cases by hand ----------------------------------------------------------------------

AB = [FunnelStep("A"), FunnelStep("B")]


def funnel_of(ws: Workspace, steps: Sequence[FunnelStep] = AB, **params: Any) -> pd.DataFrame:
    params = {"start": T0, "end": T0 + timedelta(days=1), "window": timedelta(hours=1), **params}
    return run(ws, lambda t: funnel(t, steps, **params))


def people(frame: pd.DataFrame) -> list[int]:
    return [int(x) for x in frame.sort_values("step").people]


@pytest.fixture
def ws(tmp_path: Path) -> Any:
    workspace = open_workspace(tmp_path / "ws")
    yield workspace
    workspace.close()


def test_the_window_includes_its_last_instant(ws: Workspace) -> None:
    hour = timedelta(hours=1)
    ingest(ws, [track("m1", "A", T0, user="u1"), track("m2", "B", T0 + hour, user="u1"),
                track("m3", "A", T0, user="u2"), track("m4", "B", T0 + hour + timedelta(milliseconds=1), user="u2")])
    frame = funnel_of(ws, window=hour)
    assert people(frame) == [2, 1]
    assert frame.median_seconds_from_previous.iloc[1] == 3600.0


def test_ties_at_one_instant_follow_message_ids(ws: Workspace) -> None:
    # u1's B sorts after its A (m1 < m2) and counts; u2's B sorts before its A and does not.
    ingest(ws, [track("m1", "A", T0, user="u1"), track("m2", "B", T0, user="u1"),
                track("m4", "A", T0, user="u2"), track("m3", "B", T0, user="u2")])
    for order in ("strict", "any"):
        frame = funnel_of(ws, order=order)
        assert people(frame) == [2, 1]
        assert frame.median_seconds_from_previous.iloc[1] == 0.0
    # One event cannot be two consecutive steps of a strict funnel.
    assert people(funnel_of(ws, [FunnelStep("A"), FunnelStep("A")])) == [2, 0]


def test_entries_at_end_are_out_and_at_start_are_in(ws: Workspace) -> None:
    end = T0 + timedelta(days=1)
    ingest(ws, [track("m1", "A", T0, user="u1"), track("m2", "A", end, user="u2"),
                track("m3", "B", end + timedelta(minutes=1), user="u2"), track("m4", "B", end, user="u1")])
    assert people(funnel_of(ws, end=end, window=timedelta(days=2))) == [1, 1]


def test_a_person_with_one_event_enters_and_drops_off(ws: Workspace) -> None:
    ingest(ws, [track("m1", "A", T0 + timedelta(minutes=5), user="u1")])
    frame = funnel_of(ws)
    assert people(frame) == [1, 0]
    assert list(frame.drop_off) == [0, 1] and list(frame.conversion) == [1.0, 0.0]
    assert frame.median_seconds_from_previous.isna().all()


def test_anonymous_steps_before_identify_belong_to_the_person(ws: Workspace) -> None:
    minute = timedelta(minutes=1)
    ingest(ws, [track("m1", "A", T0, anon="anon-1"), track("m2", "B", T0 + minute, anon="anon-1"),
                {"type": "identify", "userId": "u1", "anonymousId": "anon-1", "timestamp": (T0 + 2 * minute).isoformat(),
                 "messageId": "m3"},
                track("m4", "C", T0 + 3 * minute, user="u1"),
                track("m5", "A", T0, anon="anon-2"),
                {"type": "alias", "userId": "u2", "previousId": "anon-2", "timestamp": T0.isoformat(), "messageId": "m6"},
                track("m7", "C", T0 + minute, user="u2")])
    frame = funnel_of(ws, [FunnelStep("A"), FunnelStep("B"), FunnelStep("C")], order="any")
    assert people(frame) == [2, 1, 1]
    assert list(frame.median_seconds_from_previous.iloc[1:]) == [60.0, 120.0]


def test_any_order_counts_steps_done_in_reverse(ws: Workspace) -> None:
    minute = timedelta(minutes=1)
    ingest(ws, [track("m1", "A", T0, user="u1"), track("m2", "C", T0 + minute, user="u1"),
                track("m3", "B", T0 + 3 * minute, user="u1")])
    steps = [FunnelStep("A"), FunnelStep("B"), FunnelStep("C")]
    assert people(funnel_of(ws, steps)) == [1, 1, 0]
    frame = funnel_of(ws, steps, order="any")
    assert people(frame) == [1, 1, 1]
    # Reaching C needs B too, which came last: no time passes between reaching B and C.
    assert list(frame.median_seconds_from_previous.iloc[1:]) == [180.0, 0.0]


def test_property_filters_and_breakdown(ws: Workspace) -> None:
    ingest(ws, [track("m1", "A", T0, user="u1", cat="Books"), track("m2", "B", T0, user="u1", price=10.0),
                track("m3", "A", T0, user="u2", cat="Games"), track("m4", "B", T0, user="u2", price=12),
                track("m5", "A", T0, user="u3")])
    steps = [FunnelStep.parse("A"), FunnelStep.parse("B[price=10]")]
    frame = funnel_of(ws, steps, by="cat").set_index(["cat", "step"])
    assert frame.people.to_dict() == {("(none)", 1): 1, ("(none)", 2): 0, ("Books", 1): 1, ("Books", 2): 1,
                                      ("Games", 1): 1, ("Games", 2): 0}
    assert set(frame.step_name) == {"A", "B[price=10]"}
    assert people(funnel_of(ws, [FunnelStep("A", {"cat": "Books"}), FunnelStep("B")])) == [1, 1]


def test_periods_are_local_weeks_and_empty_ones_show(tmp_path: Path) -> None:
    ws = open_workspace(tmp_path / "ws", "America/New_York")
    # Monday 2025-03-03 03:30 UTC is Sunday evening in New York: the week of 2025-02-24.
    monday = datetime(2025, 3, 3, 3, 30, tzinfo=UTC)
    ingest(ws, [track("m1", "A", monday, user="u1"), track("m2", "B", monday + timedelta(minutes=5), user="u1"),
                track("m3", "A", monday + timedelta(days=14), user="u2")])
    frame = funnel_of(ws, start=datetime(2025, 2, 25, tzinfo=UTC), end=datetime(2025, 3, 20, tzinfo=UTC),
                      period="week")
    by_week = frame.groupby(frame.period.dt.date).people.apply(list).to_dict()
    assert by_week == {date(2025, 2, 24): [1, 1], date(2025, 3, 3): [0, 0], date(2025, 3, 10): [1, 0],
                       date(2025, 3, 17): [0, 0]}
    assert frame[frame.period == pd.Timestamp(2025, 3, 3)].conversion.isna().all()
    ws.close()


def test_parse_reads_the_cli_syntax() -> None:
    assert FunnelStep.parse("Product Viewed") == FunnelStep("Product Viewed")
    parsed = FunnelStep.parse(" Product Viewed[category=Books, price=10,member=true, ratio=0.5] ")
    assert parsed == FunnelStep("Product Viewed", {"category": "Books", "price": 10, "member": True, "ratio": 0.5})
    assert FunnelStep.parse(str(parsed)) == parsed
    for bad in ("", "[a=b]", "A[b]", "A[=b]", "A[b=1", "A[b=1]x", "A[a b=1]", "A[a=1,a=2]"):
        with pytest.raises(ValidationError) as err:
            FunnelStep.parse(bad)
        assert err.value.field == "steps"


@pytest.mark.parametrize(("change", "field"), [
    ({"steps": AB[:1]}, "steps"), ({"window": timedelta(0)}, "window"), ({"order": "random"}, "order"),
    ({"period": "year"}, "period"), ({"by": "a.b"}, "by"), ({"by": "people"}, "by"), ({"end": T0}, "end"),
    ({"steps": [FunnelStep("A"), FunnelStep("B", {"x y": 1})]}, "steps"),
])
def test_bad_parameters_name_the_field(change: dict[str, Any], field: str) -> None:
    params: dict[str, Any] = {"steps": AB, "start": T0, "end": T0 + timedelta(days=1), "window": timedelta(hours=1),
                              **change}
    with pytest.raises(ValidationError) as err:
        funnel(None, **params)  # type: ignore[arg-type]
    assert err.value.field == field


# -- the sample shop -------------------------------------------------------------------------

PURCHASE = [FunnelStep(name) for name in FUNNEL_EVENTS]
SHOP = {"start": datetime(2025, 1, 1, tzinfo=UTC), "end": datetime(2025, 6, 1, tzinfo=UTC),
        "window": timedelta(days=7), "period": "week"}


@pytest.mark.spark
def test_engines_agree_on_the_purchase_funnel(sample_shop: Workspace) -> None:
    for order in ("strict", "any"):
        def query(t: LakeTables, order: str = order) -> Any:
            return funnel(t, PURCHASE, order=order, **SHOP)  # type: ignore[arg-type]
        frame = assert_engines_agree(sample_shop, query, ["period", "step"])
        assert frame.people.sum() > 0 and frame.median_seconds_from_previous.notna().any()
