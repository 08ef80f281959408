"""Lifecycle stages, their history, transitions and flow against a plain-Python reference.

The random histories are those of ``test_features`` (merged identities, refunds and
cancellations, instants on threshold boundaries and at ``as_of``); the thresholds are random
too, so each rule gets exercised at its edges. The reference applies the documented rules to
the messages directly.
"""

from __future__ import annotations

import sys
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from analytics_support import assert_engines_agree, open_engine, run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_features import DAYS, MINUTES, ZONES, at, days, known_orders, messages, person_of, ts_of, workspace

from tenure import Workspace
from tenure.analytics._time import cutoff
from tenure.analytics.features import person_features
from tenure.analytics.stages import NEW, STAGES, lifecycle_stages, stage_flow, stage_history, stage_transitions
from tenure.config import LifecycleSettings
from tenure.errors import ValidationError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from baselines import stages as baseline  # type: ignore[import-not-found]  # noqa: E402

EXAMPLES = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
ON_GRID = st.builds(at, st.sampled_from(DAYS), st.sampled_from(MINUTES))
SETTINGS = st.builds(
    LifecycleSettings,
    new_customer_days=st.sampled_from([1, 30, 60]),
    loyal_min_orders=st.integers(2, 4),
    loyal_recency_days=st.sampled_from([30, 60, 120]),
    at_risk_factor=st.sampled_from([1.0, 1.5, 2.0]),
    at_risk_days=st.sampled_from([29, 60, 90]),
    churned_days=st.sampled_from([60, 90, 180]),
)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[datetime], LifecycleSettings]:
    """A history, thresholds, and instants; some sit exactly a threshold after an order, to test the edges."""
    batch, lifecycle = draw(messages()), draw(SETTINGS)
    placed = [ts_of(m) for m in batch if m.get("event") == "Order Completed"]
    edges = [0, lifecycle.new_customer_days, lifecycle.at_risk_days, lifecycle.loyal_recency_days, lifecycle.churned_days]
    near = st.builds(lambda ts, d: ts + timedelta(days=d), st.sampled_from(placed), st.sampled_from(edges))
    instants = draw(st.lists(st.one_of(ON_GRID, near) if placed else ON_GRID, min_size=1, max_size=4, unique=True))
    return batch, instants, lifecycle


INPUTS = ["identified", "orders", "first_order_at", "last_order_at", "recency_days", "first_order_days",
          "ipt_mean_days", "last_gap_days"]


def reference_stages(batch: list[dict[str, Any]], as_of: datetime, s: LifecycleSettings) -> dict[str, dict[str, Any]]:
    """Person -> stage and inputs, by the rules of the ``stages`` module docstring."""
    person = person_of(batch)
    identified: dict[str, bool] = defaultdict(bool)
    for m in batch:
        if ts_of(m) < as_of:
            identified[person[m["messageId"]]] |= bool(m.get("userId"))
    bought: dict[str, list[datetime]] = defaultdict(list)
    for order in known_orders(batch, as_of):
        bought[order.person].append(order.at)
    out = {}
    for who, named in identified.items():
        times = sorted(bought[who])
        n = len(times)
        row: dict[str, Any] = dict.fromkeys(INPUTS[2:])
        row.update(identified=named, orders=n)
        if n:
            row.update(first_order_at=times[0], last_order_at=times[-1], recency_days=days(as_of, times[-1]),
                       first_order_days=days(as_of, times[0]))
        if n >= 2:
            row.update(ipt_mean_days=days(times[-1], times[0]) / (n - 1), last_gap_days=days(times[-1], times[-2]))
        recency, ipt, gap = row["recency_days"], row["ipt_mean_days"], row["last_gap_days"]
        if n == 0:
            stage = "Lead" if named else "Visitor"
        elif recency > s.churned_days:
            stage = "Churned"
        elif row["first_order_days"] <= s.new_customer_days:
            stage = "New customer"
        elif (n >= 2 and recency > ipt * s.at_risk_factor) or (n == 1 and recency > s.at_risk_days):
            stage = "At risk"
        elif gap is not None and gap > s.churned_days:
            stage = "Reactivated"
        elif n >= s.loyal_min_orders and recency <= s.loyal_recency_days:
            stage = "Loyal"
        else:
            stage = "Active"
        out[who] = {"stage": stage, **row}
    return out


def assert_row(actual: pd.Series, expected: dict[str, Any], who: str) -> None:
    for column, want in expected.items():
        got = actual[column]
        if want is None:
            assert pd.isna(got), (who, column, got)
        elif isinstance(want, float):
            assert got == pytest.approx(want, rel=1e-12), (who, column, want, got)
        elif isinstance(want, datetime):
            assert pd.Timestamp(got) == pd.Timestamp(want), (who, column, want, got)
        else:
            assert got == want, (who, column, want, got)


@EXAMPLES
@given(scenario=scenarios(), zone=st.sampled_from(ZONES))
def test_stages_and_history_match_the_rules(scenario: tuple[list[dict[str, Any]], list[datetime], LifecycleSettings],
                                            zone: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    batch, instants, lifecycle = scenario
    ws = workspace(tmp_path_factory, zone, batch)
    try:
        now = run(ws, lambda t: lifecycle_stages(t, as_of=instants[0], lifecycle=lifecycle))
        history = run(ws, lambda t: stage_history(t, as_ofs=instants, lifecycle=lifecycle))
    finally:
        ws.close()
    expected = reference_stages(batch, instants[0], lifecycle)
    assert sorted(now.person_id) == sorted(expected)
    for _, row in now.iterrows():
        assert_row(row, expected[row.person_id], row.person_id)
    assert list(history.columns) == ["as_of", "person_id", "stage"]
    for instant in instants:
        got = history[history.as_of == pd.Timestamp(instant)]
        assert dict(zip(got.person_id, got.stage, strict=True)) == {
            who: row["stage"] for who, row in reference_stages(batch, instant, lifecycle).items()
        }
    assert len(history) == sum(len(reference_stages(batch, i, lifecycle)) for i in instants)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scenario=scenarios())
def test_flow_and_transitions_count_the_reference_stages(
    scenario: tuple[list[dict[str, Any]], list[datetime], LifecycleSettings], tmp_path_factory: pytest.TempPathFactory
) -> None:
    batch, instants, lifecycle = scenario
    start, end = min(instants), max(instants) + timedelta(days=1)
    ws = workspace(tmp_path_factory, "UTC", batch)
    try:
        flow = run(ws, lambda t: stage_flow(t, as_ofs=instants, lifecycle=lifecycle))
        moves = run(ws, lambda t: stage_transitions(t, start=start, end=end, lifecycle=lifecycle))
    finally:
        ws.close()
    assert list(flow.columns) == ["as_of", "stage", "people"]
    assert list(flow.as_of) == [pd.Timestamp(i) for i in sorted(instants) for _ in STAGES]
    assert list(flow.stage) == list(STAGES) * len(instants)
    for instant in sorted(instants):
        counts = Counter(row["stage"] for row in reference_stages(batch, instant, lifecycle).values())
        assert list(flow[flow.as_of == pd.Timestamp(instant)].people) == [counts[s] for s in STAGES]
    before = {who: row["stage"] for who, row in reference_stages(batch, start, lifecycle).items()}
    after = {who: row["stage"] for who, row in reference_stages(batch, end, lifecycle).items()}
    pairs = Counter((before.get(who, NEW), stage) for who, stage in after.items())
    assert list(zip(moves.from_stage, moves.to_stage, strict=True)) == [(f, s) for f in (NEW, *STAGES) for s in STAGES]
    assert list(moves.people) == [pairs[(f, s)] for f, s in zip(moves.from_stage, moves.to_stage, strict=True)]


def test_stage_inputs_agree_with_person_features(sample_shop: Workspace) -> None:
    as_of = cutoff("2025-04-15", sample_shop.settings.timezone)
    stages = run(sample_shop, lambda t: lifecycle_stages(t, as_of=as_of, lifecycle=LifecycleSettings()))
    features = run(sample_shop, lambda t: person_features(t, as_of=as_of))
    joined = stages.merge(features, on="person_id", suffixes=("", "_f"), validate="one_to_one")
    assert len(joined) == len(stages) == len(features)
    for column in ("identified", "orders", "first_order_at", "last_order_at", "recency_days", "ipt_mean_days"):
        pd.testing.assert_series_equal(joined[column], joined[f"{column}_f"], check_names=False)
    assert set(stages.stage) <= set(STAGES) and stages.stage.nunique() >= 4


def test_pandas_baselines_give_the_same_answer(sample_shop: Workspace) -> None:
    zone = sample_shop.settings.timezone
    as_of = cutoff("2025-04-15", zone)
    with open_engine(sample_shop, "duckdb") as engine:
        t = engine.tables()
        events, orders, adjustments, items, users = (
            engine.execute(table) for table in (t.events, t.orders, t.order_adjustments, t.order_items, t.users)
        )
        features = engine.execute(person_features(t, as_of=as_of))
        stages = engine.execute(lifecycle_stages(t, as_of=as_of, lifecycle=LifecycleSettings()))
    mine = baseline.person_features(events, orders, as_of=as_of, adjustments=adjustments, order_items=items,
                                    users=users, timezone=zone)
    pd.testing.assert_frame_equal(mine.sort_values("person_id").reset_index(drop=True),
                                  features.sort_values("person_id").reset_index(drop=True),
                                  check_dtype=False, rtol=1e-9)
    mine = baseline.lifecycle_stages(events, orders, as_of=as_of, lifecycle=LifecycleSettings(), adjustments=adjustments)
    pd.testing.assert_frame_equal(mine.sort_values("person_id").reset_index(drop=True),
                                  stages.sort_values("person_id").reset_index(drop=True),
                                  check_dtype=False, rtol=1e-9)


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda t: lifecycle_stages(t, as_of=datetime(2025, 1, 1), lifecycle=LifecycleSettings()), "as_of"),
        (lambda t: stage_history(t, as_ofs=[], lifecycle=LifecycleSettings()), "as_ofs"),
        (lambda t: stage_flow(t, as_ofs=[datetime(2025, 1, 1)], lifecycle=LifecycleSettings()), "as_ofs"),
        (lambda t: stage_transitions(t, start=at(5, 0), end=at(5, 0), lifecycle=LifecycleSettings()), "end"),
        (lambda t: lifecycle_stages(t, as_of=at(5, 0), lifecycle=LifecycleSettings(churned_days=0)),
         "lifecycle.churned_days"),
    ],
)
def test_bad_parameters_name_the_parameter(sample_shop: Workspace, call: Any, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        run(sample_shop, call)
    assert info.value.field == field


@pytest.mark.spark
def test_lifecycle_stages_agree_on_spark(sample_shop: Workspace) -> None:
    as_of = cutoff("2025-04-15", sample_shop.settings.timezone)
    frame = assert_engines_agree(
        sample_shop, lambda t: lifecycle_stages(t, as_of=as_of, lifecycle=LifecycleSettings()), ["person_id"]
    )
    assert frame.stage.nunique() >= 4


@pytest.mark.spark
def test_stage_history_flow_and_transitions_agree_on_spark(sample_shop: Workspace) -> None:
    zone = sample_shop.settings.timezone
    weeks = [cutoff("2025-03-02", zone) + timedelta(weeks=k) for k in range(4)]
    lifecycle = LifecycleSettings()
    assert_engines_agree(sample_shop, lambda t: stage_history(t, as_ofs=weeks, lifecycle=lifecycle),
                         ["as_of", "person_id"])
    assert_engines_agree(sample_shop, lambda t: stage_flow(t, as_ofs=weeks, lifecycle=lifecycle), ["as_of", "stage"])
    moves = assert_engines_agree(
        sample_shop, lambda t: stage_transitions(t, start=weeks[0], end=weeks[-1], lifecycle=lifecycle),
        ["from_stage", "to_stage"],
    )
    assert moves.people.sum() > 0
