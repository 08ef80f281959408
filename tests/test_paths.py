"""Paths against a plain-Python reference on random sessions, plus the edge cases by hand."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from analytics_support import assert_engines_agree, ingest, open_engine, run
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from benchmarks.baselines import funnels_paths as baseline
from tenure import Workspace
from tenure.analytics.paths import path_links, path_nodes
from tenure.errors import ValidationError
from tenure.store.engine import LakeTables

from conftest import make_workspace

T0 = datetime(2025, 3, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
USERS = ["u1", "u2"]
ANONS = ["a1", "a2"]
LINK_KEYS = ["step", "source", "target"]
NODE_KEYS = ["step", "name"]


@dataclass(frozen=True)
class Event:
    person: str
    at: datetime
    mid: str
    name: str


def reference_paths(events: Sequence[Event], event: str, direction: str, depth: int, start: datetime, end: datetime,
                    gap: timedelta) -> list[list[str]]:
    """For every anchor, the names of up to ``depth`` events after (before) it in its session."""
    histories: dict[str, list[Event]] = defaultdict(list)
    for e in sorted(events, key=lambda e: (e.at, e.mid)):
        histories[e.person].append(e)
    move = 1 if direction == "next" else -1
    paths = []
    for history in histories.values():
        for i, anchor in enumerate(history):
            if anchor.name != event or not start <= anchor.at < end:
                continue
            names, j = [], i
            while len(names) < depth and 0 <= j + move < len(history) and abs(history[j + move].at - history[j].at) <= gap:
                j += move
                names.append(history[j].name)
            paths.append(names)
    return paths


def reference_links(paths: list[list[str]], event: str, depth: int, top_n: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Links and nodes: top names per step, the rest "Other", one "(end)" for short paths."""
    kept = []
    for step in range(depth):
        counts = Counter(p[step] for p in paths if len(p) > step)
        kept.append({name for name, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top_n]})
    links: Counter[tuple[int, str, str]] = Counter()
    nodes: Counter[tuple[int, str]] = Counter()
    for path in paths:
        labels = [name if name in kept[s] else "Other" for s, name in enumerate(path)]
        if len(labels) < depth:
            labels.append("(end)")
        nodes[(0, event)] += 1
        for s, target in enumerate(labels, start=1):
            links[(s, event if s == 1 else labels[s - 2], target)] += 1
            nodes[(s, target)] += 1
    link_frame = pd.DataFrame(
        [{"step": s, "source_node": f"{s - 1}:{a}", "target_node": f"{s}:{b}", "source": a, "target": b, "count": n}
         for (s, a, b), n in links.items()],
        columns=["step", "source_node", "target_node", "source", "target", "count"])
    node_frame = pd.DataFrame([{"node": f"{s}:{name}", "step": s, "name": name, "count": n}
                               for (s, name), n in nodes.items()], columns=["node", "step", "name", "count"])
    return link_frame, node_frame


def assert_same(actual: pd.DataFrame, expected: pd.DataFrame, keys: list[str]) -> None:
    assert list(actual.columns) == list(expected.columns)
    actual = actual.sort_values(keys).reset_index(drop=True)
    expected = expected.sort_values(keys).reset_index(drop=True).astype({"step": "int64", "count": "int64"})
    pd.testing.assert_frame_equal(actual, expected, check_dtype=False)
    assert actual["count"].dtype == "int64" and actual["step"].dtype == "int64"


def open_workspace(root: Path) -> Workspace:
    return make_workspace(root)


def named(kind: str, mid: str, name: str | None, at: datetime, *, user: str | None = None,
          anon: str | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"type": kind, "timestamp": at.isoformat(), "messageId": mid}
    message["event" if kind == "track" else "name"] = name
    if user:
        message["userId"] = user
    if anon:
        message["anonymousId"] = anon
    return message


# -- random sessions -------------------------------------------------------------------------


@st.composite
def histories(draw: st.DrawFn) -> dict[str, Any]:
    """A few people's track and page events on a 10-minute grid, some anonymous until identified."""
    owner = {anon: draw(st.sampled_from([*USERS, None])) for anon in ANONS}
    n = draw(st.integers(0, 30))
    mids = draw(st.permutations(range(100, 100 + n + len(ANONS))))
    messages, events = [], []
    for i in range(n):
        actor = draw(st.sampled_from(USERS + ANONS))
        at = T0 + 10 * MINUTE * draw(st.integers(0, 30))
        kind = draw(st.sampled_from(["track", "track", "page", "screen"]))
        name = draw(st.sampled_from(["A", "A", "B", "C", "D", "E"] + ([None] if kind != "track" else [])))
        anon = actor in ANONS
        messages.append(named(kind, f"m{mids[i]}", name, at, user=None if anon else actor, anon=actor if anon else None))
        if name is not None:
            events.append(Event(owner.get(actor) or actor, at, f"m{mids[i]}", name))
    for j, (anon, user) in enumerate(owner.items()):
        if user:
            at = T0 + 10 * MINUTE * draw(st.integers(0, 30))
            messages.append({"type": "identify", "userId": user, "anonymousId": anon, "timestamp": at.isoformat(),
                             "messageId": f"m{mids[n + j]}"})
    start = T0 + 10 * MINUTE * draw(st.integers(0, 20))
    return {
        "messages": messages, "events": events, "event": draw(st.sampled_from(["A", "B"])),
        "direction": draw(st.sampled_from(["next", "previous"])), "depth": draw(st.integers(1, 4)),
        "top_n": draw(st.integers(1, 3)), "start": start, "end": start + 10 * MINUTE * draw(st.integers(1, 20)),
        "session_gap": 10 * MINUTE * draw(st.integers(1, 4)),
    }


@settings(max_examples=30, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=histories())
def test_links_nodes_and_the_pandas_baseline_match_the_reference(tmp_path_factory: pytest.TempPathFactory,
                                                                 case: dict[str, Any]) -> None:
    ws = open_workspace(tmp_path_factory.mktemp("paths") / "ws")
    ingest(ws, case["messages"])
    params = {k: case[k] for k in ("event", "direction", "depth", "top_n", "start", "end", "session_gap")}
    paths = reference_paths(case["events"], case["event"], case["direction"], case["depth"], case["start"],
                            case["end"], case["session_gap"])
    links, nodes = reference_links(paths, case["event"], case["depth"], case["top_n"])
    with open_engine(ws, "duckdb") as engine:
        tables = engine.tables()
        assert_same(engine.execute(path_links(tables, **params)), links, LINK_KEYS)
        assert_same(engine.execute(path_nodes(path_links(tables, **params))), nodes, NODE_KEYS)
        events = engine.execute(tables.events)
    got = baseline.path_links(events, events, **params)
    assert_same(got, links, LINK_KEYS)
    assert_same(baseline.path_nodes(got), nodes, NODE_KEYS)
    ws.close()


# -- edge cases by hand ----------------------------------------------------------------------


@pytest.fixture
def ws(tmp_path: Path) -> Any:
    workspace = open_workspace(tmp_path / "ws")
    yield workspace
    workspace.close()


def links_of(ws: Workspace, **params: Any) -> dict[tuple[int, str, str], int]:
    params = {"event": "A", "start": T0, "end": T0 + timedelta(days=1), **params}
    frame = run(ws, lambda t: path_links(t, **params))
    assert (frame.source_node == (frame.step - 1).astype(str) + ":" + frame.source).all()
    assert (frame.target_node == frame.step.astype(str) + ":" + frame.target).all()
    return {(int(r.step), r.source, r.target): int(r.count) for r in frame.itertuples()}


def test_a_gap_of_exactly_session_gap_stays_in_the_session(ws: Workspace) -> None:
    gap = timedelta(minutes=30)
    ingest(ws, [named("track", "m1", "A", T0, user="u1"), named("track", "m2", "B", T0 + gap, user="u1"),
                named("track", "m3", "C", T0 + 2 * gap + timedelta(milliseconds=1), user="u1")])
    assert links_of(ws, depth=3) == {(1, "A", "B"): 1, (2, "B", "(end)"): 1}
    assert links_of(ws, depth=3, direction="previous") == {(1, "A", "(end)"): 1}
    assert links_of(ws, event="C", depth=2, direction="previous") == {(1, "C", "(end)"): 1}


def test_top_n_folds_the_rest_into_other_and_short_paths_end_once(ws: Workspace) -> None:
    # Three anchors: A→B→C, A→B, A→D→B. Step 1: B twice, D once; step 2: B and C once each.
    messages, n = [], 0
    for person, names in (("u1", "ABC"), ("u2", "AB"), ("u3", "ADB")):
        for i, name in enumerate(names):
            n += 1
            messages.append(named("track", f"m{n:02d}", name, T0 + i * MINUTE, user=person))
    ingest(ws, messages)
    assert links_of(ws, depth=3, top_n=1) == {
        (1, "A", "B"): 2, (1, "A", "Other"): 1,
        (2, "B", "Other"): 1, (2, "B", "(end)"): 1, (2, "Other", "B"): 1,  # B beats C on the tie by name
        (3, "Other", "(end)"): 1, (3, "B", "(end)"): 1,
    }
    assert links_of(ws, depth=1, direction="previous") == {(1, "A", "(end)"): 3}
    nodes = run(ws, lambda t: path_nodes(path_links(t, event="A", depth=2, top_n=1, start=T0, end=T0 + MINUTE)))
    assert {(r.node, r.step, r.name): r.count for r in nodes.itertuples()} == {
        ("0:A", 0, "A"): 3, ("1:B", 1, "B"): 2, ("1:Other", 1, "Other"): 1,
        ("2:Other", 2, "Other"): 1, ("2:B", 2, "B"): 1, ("2:(end)", 2, "(end)"): 1,
    }


def test_ties_in_time_follow_message_ids_and_unnamed_calls_are_skipped(ws: Workspace) -> None:
    ingest(ws, [named("track", "m2", "B", T0, user="u1"), named("track", "m1", "A", T0, user="u1"),
                named("page", "m3", None, T0 + MINUTE, user="u1"),
                {"type": "identify", "userId": "u1", "timestamp": (T0 + MINUTE).isoformat(), "messageId": "m4"},
                named("screen", "m5", "Home", T0 + 2 * MINUTE, user="u1")])
    assert links_of(ws, depth=2) == {(1, "A", "B"): 1, (2, "B", "Home"): 1}


def test_anonymous_events_before_identify_join_the_path(ws: Workspace) -> None:
    ingest(ws, [named("track", "m1", "Landing", T0, anon="anon-1"), named("track", "m2", "A", T0 + MINUTE, anon="anon-1"),
                {"type": "identify", "userId": "u1", "anonymousId": "anon-1",
                 "timestamp": (T0 + 2 * MINUTE).isoformat(), "messageId": "m3"},
                named("track", "m4", "Buy", T0 + 3 * MINUTE, user="u1")])
    assert links_of(ws, depth=1) == {(1, "A", "Buy"): 1}
    assert links_of(ws, depth=1, direction="previous") == {(1, "A", "Landing"): 1}


def test_anchors_at_end_are_out_but_later_steps_are_in(ws: Workspace) -> None:
    end = T0 + timedelta(hours=1)
    ingest(ws, [named("track", "m1", "A", T0, user="u1"), named("track", "m2", "B", end, user="u2"),
                named("track", "m3", "A", end, user="u2"), named("track", "m4", "C", end + MINUTE, user="u2"),
                named("track", "m5", "B", end - MINUTE, user="u3"), named("track", "m6", "C", end, user="u3")])
    assert links_of(ws, depth=1, end=end) == {(1, "A", "(end)"): 1}
    assert links_of(ws, event="B", depth=1, end=end) == {(1, "B", "C"): 1}


@pytest.mark.parametrize(("change", "field"), [
    ({"event": ""}, "event"), ({"direction": "sideways"}, "direction"), ({"depth": 0}, "depth"),
    ({"depth": 21}, "depth"), ({"top_n": 0}, "top_n"), ({"end": T0}, "end"), ({"session_gap": timedelta(0)}, "session_gap"),
])
def test_bad_parameters_name_the_field(change: dict[str, Any], field: str) -> None:
    params: dict[str, Any] = {"event": "A", "start": T0, "end": T0 + timedelta(days=1), **change}
    with pytest.raises(ValidationError) as err:
        path_links(None, **params)  # type: ignore[arg-type]
    assert err.value.field == field


# -- the sample shop -------------------------------------------------------------------------

SHOP = {"event": "Product Viewed", "start": datetime(2025, 1, 1, tzinfo=UTC), "end": datetime(2025, 6, 1, tzinfo=UTC)}


@pytest.mark.spark
def test_engines_agree_on_path_links(sample_shop: Workspace) -> None:
    def query(t: LakeTables) -> Any:
        return path_links(t, **SHOP)  # type: ignore[arg-type]
    frame = assert_engines_agree(sample_shop, query, LINK_KEYS)
    assert (frame.target == "Other").any() and (frame.target == "(end)").any()


@pytest.mark.spark
def test_engines_agree_on_path_nodes(sample_shop: Workspace) -> None:
    frame = assert_engines_agree(sample_shop, lambda t: path_nodes(path_links(t, **SHOP)), NODE_KEYS)  # type: ignore[arg-type]
    assert frame[frame.step == 0].name.tolist() == ["Product Viewed"]
