"""RFM scores and segments against a plain-Python reference on random little shops."""

from __future__ import annotations

import sys
from collections import defaultdict
from datetime import UTC, datetime
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Any

import ibis
import pandas as pd
import pytest
from analytics_support import assert_engines_agree, ingest, run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rfm_cohorts_support import Shop, fresh_workspace, known_orders, shops

from tenure import Workspace
from tenure.analytics._time import cutoff
from tenure.analytics.rfm import RFM_SEGMENTS, _segment, rfm_scores, rfm_segments
from tenure.errors import ValidationError

from conftest import make_workspace

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from baselines import rfm_cohorts as baseline  # noqa: E402

EXAMPLES = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
BINS = st.sampled_from([2, 3, 5, 10])
SCORE_COLUMNS = ["person_id", "recency_days", "frequency", "monetary", "r_score", "f_score", "m_score", "rfm", "segment"]


def to_five(score: int, bins: int) -> int:
    return 1 + int(Fraction(4 * (score - 1), bins - 1) + Fraction(1, 2))


def segment_of(r: int, f: int, m: int) -> str:
    """The documented grid, written as the usual first-match rules on R and FM = (F + M) / 2."""
    fm = (f + m) / 2
    rules: list[tuple[bool, str]] = [
        (r >= 4 and fm >= 4, "Champions"),
        (r >= 3 and fm >= 3, "Loyal"),
        (r == 1 and fm >= 4, "Cannot lose them"),
        (r <= 2 and fm >= 3, "At risk"),
        (r == 5 and fm < 2, "New"),
        (r == 4 and fm < 2, "Promising"),
        (r >= 4, "Potential loyalist"),
        (r == 3 and fm < 2, "About to sleep"),
        (r == 3, "Need attention"),
        (r == 1 and fm < 2, "Lost"),
    ]
    return next((name for hit, name in rules if hit), "Hibernating")


def reference_scores(shop: Shop, bins: int) -> pd.DataFrame:
    per: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    for order, net in known_orders(shop).values():
        per[order.person].append((order.at, net))
    rows = {
        person: {"last": max(at for at, _ in facts), "frequency": len(facts),
                 "monetary": round(sum(net for _, net in facts), 2)}
        for person, facts in per.items()
    }

    def score(person: str, key: str) -> int:
        worse = sum(1 for other in rows.values() if other[key] < rows[person][key])
        return min(1 + worse * bins // max(len(rows) - 1, 1), bins)

    out = []
    for person, row in rows.items():
        r, f, m = score(person, "last"), score(person, "frequency"), score(person, "monetary")
        out.append({
            "person_id": person, "recency_days": (shop.as_of - row["last"]).total_seconds() / 86400,
            "frequency": row["frequency"], "monetary": row["monetary"], "r_score": r, "f_score": f, "m_score": m,
            "rfm": ("" if bins <= 9 else "-").join(str(s) for s in (r, f, m)),
            "segment": segment_of(to_five(r, bins), to_five(f, bins), to_five(m, bins)),
        })
    return pd.DataFrame(out, columns=SCORE_COLUMNS)


def reference_summary(scores: pd.DataFrame) -> pd.DataFrame:
    rows = []
    total_people, total_revenue = len(scores), float(scores.monetary.sum()) if len(scores) else 0.0
    for name in RFM_SEGMENTS:
        part = scores[scores.segment == name] if len(scores) else scores
        people, revenue = len(part), float(part.monetary.sum()) if len(part) else 0.0
        rows.append({
            "segment": name, "people": people, "people_share": people / total_people if total_people else 0.0,
            "revenue": revenue, "revenue_share": revenue / total_revenue if total_revenue > 0 else 0.0,
            "avg_recency_days": part.recency_days.mean() if people else None,
            "avg_frequency": part.frequency.mean() if people else None,
            "avg_monetary": part.monetary.mean() if people else None,
        })
    return pd.DataFrame(rows)


def assert_scores_equal(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    actual = actual.sort_values("person_id").reset_index(drop=True)
    expected = expected.sort_values("person_id").reset_index(drop=True)
    assert list(actual.person_id) == list(expected.person_id)
    for column in ("frequency", "r_score", "f_score", "m_score", "rfm", "segment"):
        assert list(actual[column]) == list(expected[column]), column
    for column in ("recency_days", "monetary"):
        assert actual[column].to_numpy() == pytest.approx(expected[column].to_numpy(), abs=1e-6), column


@EXAMPLES
@given(shop=shops(), bins=BINS)
def test_scores_and_segments_match_the_reference(tmp_path_factory: pytest.TempPathFactory, shop: Shop, bins: int) -> None:
    ws = fresh_workspace(tmp_path_factory, shop)
    try:
        actual = run(ws, lambda t: rfm_scores(t, as_of=shop.as_of, bins=bins))
    finally:
        ws.close()
    expected = reference_scores(shop, bins)
    assert_scores_equal(actual, expected)
    assert list(actual.columns) == SCORE_COLUMNS


@EXAMPLES
@given(shop=shops(max_people=6), bins=BINS)
def test_segment_summary_matches_the_reference(tmp_path_factory: pytest.TempPathFactory, shop: Shop, bins: int) -> None:
    ws = fresh_workspace(tmp_path_factory, shop)
    try:
        actual = run(ws, lambda t: rfm_segments(t, as_of=shop.as_of, bins=bins))
    finally:
        ws.close()
    expected = reference_summary(reference_scores(shop, bins))
    assert list(actual.segment) == list(RFM_SEGMENTS)
    assert list(actual.people) == list(expected.people)
    for column in ("people_share", "revenue", "revenue_share", "avg_recency_days", "avg_frequency", "avg_monetary"):
        got, want = actual[column].to_numpy(dtype=float), expected[column].to_numpy(dtype=float)
        assert got == pytest.approx(want, abs=1e-6, nan_ok=True), column


def test_the_grid_names_every_score_combination_as_documented(tmp_path_factory: pytest.TempPathFactory) -> None:
    combos = [(r, f, m) for r in range(1, 6) for f in range(1, 6) for m in range(1, 6)]
    table = ibis.memtable({"r": [c[0] for c in combos], "f": [c[1] for c in combos], "m": [c[2] for c in combos]})
    ws = make_workspace(tmp_path_factory.mktemp("grid") / "ws")
    try:
        frame = run(ws, lambda t: table.select("r", "f", "m", segment=_segment(table.r, table.f + table.m)))
    finally:
        ws.close()
    got = {(row.r, row.f, row.m): row.segment for row in frame.itertuples()}
    assert got == {c: segment_of(*c) for c in combos}
    assert set(got.values()) == set(RFM_SEGMENTS)


def test_point_in_time_orders_identities_and_ties(tmp_path_factory: pytest.TempPathFactory) -> None:
    ws = make_workspace(tmp_path_factory.mktemp("edges") / "ws")
    as_of = datetime(2025, 3, 1, tzinfo=UTC)

    def msg(i: int, ts: str, ids: dict[str, str], **body: Any) -> dict[str, Any]:
        return {"messageId": f"m{i}", "timestamp": ts, **ids, **body}

    def order(i: int, ts: str, ids: dict[str, str], order_id: str, revenue: float) -> dict[str, Any]:
        return msg(i, ts, ids, type="track", event="Order Completed", properties={"order_id": order_id, "revenue": revenue})

    ingest(ws, [
        # a guest order before the identify belongs to u1; u1's second order is exactly at as_of: unknown
        order(1, "2025-01-10T10:00:00Z", {"anonymousId": "a1"}, "o1", 30.0),
        msg(2, "2025-01-11T10:00:00Z", {"userId": "u1", "anonymousId": "a1"}, type="identify", traits={}),
        order(3, "2025-03-01T00:00:00Z", {"userId": "u1"}, "o2", 99.0),
        # u2: two orders, one partly refunded before as_of and refunded again after it
        order(4, "2025-02-01T00:00:00Z", {"userId": "u2"}, "o3", 50.0),
        order(5, "2025-02-20T00:00:00Z", {"userId": "u2"}, "o4", 10.0),
        msg(6, "2025-02-21T00:00:00Z", {"userId": "u2"}, type="track", event="Order Refunded",
            properties={"order_id": "o3", "revenue": 20.0}),
        msg(7, "2025-03-05T00:00:00Z", {"userId": "u2"}, type="track", event="Order Refunded",
            properties={"order_id": "o3"}),
        # u3: one order cancelled before as_of (not a customer); u4 ties u1 on everything but recency
        order(8, "2025-02-25T00:00:00Z", {"userId": "u3"}, "o5", 500.0),
        msg(9, "2025-02-26T00:00:00Z", {"userId": "u3"}, type="track", event="Order Cancelled", properties={"order_id": "o5"}),
        order(10, "2025-02-28T00:00:00Z", {"userId": "u4"}, "o6", 30.0),
    ])
    try:
        frame = run(ws, lambda t: rfm_scores(t, as_of=as_of, bins=5)).set_index("person_id").sort_index()
    finally:
        ws.close()
    assert sorted(frame.index) == ["u1", "u2", "u4"]
    assert frame.loc["u1", "recency_days"] == pytest.approx(50 - 10 / 24)
    assert list(frame.frequency) == [1, 2, 1] and list(frame.monetary) == [30.0, 40.0, 30.0]
    # three customers: worse counts 0, 1, 2 -> scores 1, 1 + floor(5/2) = 3, 5; ties share the lower score
    assert list(frame.r_score) == [1, 3, 5]
    assert list(frame.f_score) == [1, 5, 1] and list(frame.m_score) == [1, 5, 1]
    assert list(frame.segment) == ["Lost", "Loyal", "New"]


def test_bins_are_validated(tmp_path_factory: pytest.TempPathFactory) -> None:
    ws = make_workspace(tmp_path_factory.mktemp("bins") / "ws")
    try:
        with ws.engine() as engine:
            tables = engine.tables()
            for bad in (1, 0, 101):
                with pytest.raises(ValidationError) as info:
                    rfm_scores(tables, as_of=datetime(2025, 1, 1, tzinfo=UTC), bins=bad)
                assert info.value.field == "bins"
    finally:
        ws.close()


def test_no_customers_gives_every_segment_with_zeros(tmp_path_factory: pytest.TempPathFactory) -> None:
    ws = make_workspace(tmp_path_factory.mktemp("none") / "ws")
    ingest(ws, [{"type": "page", "name": "Home", "userId": "u1", "timestamp": "2025-01-01T00:00:00Z", "messageId": "m1"}])
    try:
        frame = run(ws, lambda t: rfm_segments(t, as_of=datetime(2025, 2, 1, tzinfo=UTC)))
    finally:
        ws.close()
    assert list(frame.segment) == list(RFM_SEGMENTS)
    assert (frame.people == 0).all() and (frame.people_share == 0).all() and (frame.revenue_share == 0).all()
    assert frame.avg_monetary.isna().all()


@pytest.mark.spark
def test_rfm_scores_agree_on_spark(sample_shop: Workspace) -> None:
    as_of = cutoff("2025-04-20", sample_shop.settings.timezone)
    frame = assert_engines_agree(sample_shop, lambda t: rfm_scores(t, as_of=as_of), ["person_id"])
    assert frame.segment.nunique() >= 5 and frame.r_score.nunique() == 5


@pytest.mark.spark
def test_rfm_segments_agree_on_spark(sample_shop: Workspace) -> None:
    as_of = cutoff("2025-04-20", sample_shop.settings.timezone)
    frame = assert_engines_agree(sample_shop, lambda t: rfm_segments(t, as_of=as_of), ["segment"])
    assert frame.people_share.sum() == pytest.approx(1.0) and frame.revenue_share.sum() == pytest.approx(1.0)


def test_pandas_baseline_gives_the_same_answer(sample_shop: Workspace) -> None:
    as_of = cutoff("2025-04-20", sample_shop.settings.timezone)
    events = run(sample_shop, lambda t: t.events)
    orders = run(sample_shop, lambda t: t.orders)
    adjustments = run(sample_shop, lambda t: t.order_adjustments)
    assert (adjustments.timestamp >= as_of).any() and (adjustments.timestamp < as_of).any()
    for bins in (5, 10):
        scores = run(sample_shop, partial(rfm_scores, as_of=as_of, bins=bins))
        assert_scores_equal(baseline.rfm_scores(events, orders, as_of=as_of, bins=bins, adjustments=adjustments), scores)
    summary = run(sample_shop, lambda t: rfm_segments(t, as_of=as_of))
    mine = baseline.rfm_segments(events, orders, as_of=as_of, adjustments=adjustments)
    pd.testing.assert_frame_equal(mine, summary, check_dtype=False, rtol=1e-9)
