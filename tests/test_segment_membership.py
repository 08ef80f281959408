"""Saved segments: membership diffs across imports, people-scoped refresh, built-ins, scores, serve."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
from analytics_support import assert_engines_agree, ingest
from segment.analytics.client import Client

from tenure import Workspace
from tenure.errors import NotFoundError, ValidationError
from tenure.segments.compile import EvaluationContext, evaluate_segments
from tenure.segments.rules import parse_rule
from tenure.store.state import person_scores

from conftest import WRITE_KEY, make_workspace
from servers import Collector

T0 = datetime(2025, 3, 1, tzinfo=UTC)
TWICE_IN_30D = {"event": "Order Completed", "within": "30d", "count": {"op": "gte", "value": 2}}
BROWSED = {"event": "Product Viewed", "within": "7d"}




def order(user: str, day: int, order_id: str, total: float = 30.0) -> dict[str, Any]:
    return {"type": "track", "event": "Order Completed", "userId": user, "messageId": f"m-{order_id}",
            "timestamp": (T0 + timedelta(days=day)).isoformat(),
            "properties": {"order_id": order_id, "total": total, "revenue": total, "products": []}}


def view(user: str, day: int, n: int) -> dict[str, Any]:
    return {"type": "track", "event": "Product Viewed", "userId": user, "messageId": f"v-{user}-{day}-{n}",
            "timestamp": (T0 + timedelta(days=day)).isoformat(), "properties": {"product_id": "p1"}}


def members(ws: Workspace, name: str) -> set[str]:
    return set(ws.segments.members(name)["person_id"])


def test_refresh_records_exactly_the_set_differences_across_imports(sqlite_workspace: Workspace) -> None:
    ws = sqlite_workspace
    ingest(ws, [order("a", 0, "a1"), order("a", 5, "a2"), order("b", 1, "b1"), view("c", -5, 0)])
    ws.segments.create("repeat buyers", TWICE_IN_30D)
    ws.segments.create("browsers", BROWSED)
    assert members(ws, "repeat buyers") == {"a"}
    assert members(ws, "browsers") == set()  # c viewed 10 days before the end of day 5
    first = ws.segments.changes()

    # More data: b buys again (enters), a's orders fall out of the 30-day window (exits), c browses.
    ingest(ws, [order("b", 40, "b2"), order("b", 41, "b3"), view("c", 39, 1), view("d", 41, 2)])
    before = {n: members(ws, n) for n in ("repeat buyers", "browsers")}
    result = ws.segments.refresh()
    after = {n: members(ws, n) for n in before}
    assert after == {"repeat buyers": {"b"}, "browsers": {"c", "d"}}

    new = ws.segments.changes(after_id=int(first["id"].max()))
    for name in before:
        rows = new[new["segment"] == name]
        assert set(rows.loc[rows["change"] == "enter", "person_id"]) == after[name] - before[name]
        assert set(rows.loc[rows["change"] == "exit", "person_id"]) == before[name] - after[name]
        sizes = ws.segments.sizes(name)
        assert sizes["size"].iloc[-1] == len(after[name]) == ws.segments.get(name).size
        assert sizes["entered"].iloc[-1] == len(after[name] - before[name])
    assert result.entered >= 3 and result.exited >= 1

    # A refresh with nothing new changes nothing and still records the size.
    again = ws.segments.refresh()
    assert (again.entered, again.exited) == (0, 0)
    assert len(ws.segments.sizes("browsers")) == 3


def test_members_match_a_fresh_evaluation_after_each_import(shop: Workspace) -> None:
    rules = {"buyers 30d": TWICE_IN_30D, "high value": {"field": "revenue", "op": "gte", "value": 150}}
    for name, rule in rules.items():
        shop.segments.create(name, rule)
    ingest(shop, [order(f"late-{i}", 151, f"late-{i}-{j}", 200.0) for i in range(3) for j in range(2)])
    shop.segments.refresh()
    fresh = shop.segments.evaluate(rules)
    for name in rules:
        assert members(shop, name) == set(fresh.loc[fresh[name], "person_id"])
    assert {"late-0", "late-1", "late-2"} <= members(shop, "buyers 30d") & members(shop, "high value")


def test_refresh_people_updates_only_those_people_and_skips_population_segments(shop: Workspace) -> None:
    shop.segments.create("buyers 30d", TWICE_IN_30D)
    champions_before = members(shop, "RFM: Champions")
    changes_before = shop.segments.changes()
    last = int(changes_before["id"].max()) if len(changes_before) else 0

    outsider = "someone-else"
    ingest(shop, [order("fresh", 150, "f1"), order("fresh", 150, "f2"), order(outsider, 150, "o1"),
                  order(outsider, 150, "o2")])
    result = shop.segments.refresh_people(["fresh"])
    assert result.people == 1
    assert "fresh" in members(shop, "buyers 30d")
    assert outsider not in members(shop, "buyers 30d")  # not touched, waits for the full refresh
    assert "RFM: Champions" not in result.sizes  # quantile-based: only the full refresh moves it
    assert members(shop, "RFM: Champions") == champions_before
    assert "Stage: New customer" in result.sizes
    new = shop.segments.changes(after_id=last)
    assert set(new["person_id"]) == {"fresh"}

    # The people-scoped answer equals what a full evaluation says for that person.
    full = shop.segments.evaluate({"b": TWICE_IN_30D, "s": {"field": "stage", "op": "eq", "value": "New customer"}})
    row = full.set_index("person_id").loc["fresh"]
    assert bool(row["b"]) and bool(row["s"]) == ("fresh" in members(shop, "Stage: New customer"))


def test_builtin_segments_mirror_stages_and_rfm(shop: Workspace) -> None:
    shop.segments.refresh()
    stages = shop.stages()
    for stage, people in stages.groupby("stage"):
        assert members(shop, f"Stage: {stage}") == set(people["person_id"])
    rfm = shop.rfm()
    for segment, people in rfm.groupby("segment"):
        assert members(shop, f"RFM: {segment}") == set(people["person_id"])
    with pytest.raises(ValidationError, match="built-in"):
        shop.segments.delete("Stage: Lead")


def test_rules_can_use_model_scores_once_written(shop: Workspace) -> None:
    rule = {"field": "churn_risk", "op": "gte", "value": 0.5}
    unscored = shop.segments.evaluate({"risky": rule, "unscored": {"field": "churn_risk", "op": "is_not_set"}})
    assert not unscored["risky"].any() and unscored["unscored"].all()
    people = list(shop.features()["person_id"][:6])
    now = datetime.now(UTC)
    with shop.state.begin() as conn:
        conn.execute(sa.insert(person_scores), [
            {"person_id": p, "name": "churn_risk", "value": i / 5, "model_version": "t1", "scored_at": now}
            for i, p in enumerate(people)
        ])
    flags = shop.segments.evaluate({"risky": rule})
    assert set(flags.loc[flags["risky"], "person_id"]) == {p for i, p in enumerate(people) if i / 5 >= 0.5}


def test_references_deletion_and_names(shop: Workspace) -> None:
    shop.segments.create("big", {"field": "revenue", "op": "gte", "value": 100})
    shop.segments.create("big browsers", {"all": [{"segment": "big"}, {"event": "Product Viewed"}]})
    with pytest.raises(ValidationError, match="used by big browsers"):
        shop.segments.delete("big")
    with pytest.raises(ValidationError, match="refers to itself"):
        shop.segments.create("big", {"segment": "big browsers"}, replace=True)
    with pytest.raises(ValidationError, match="exists"):
        shop.segments.create("big", {"field": "orders", "op": "gte", "value": 1})
    with pytest.raises(ValidationError) as bad:
        shop.segments.create("typo", {"all": [{"field": "revenu", "op": "gte", "value": 1}]})
    assert bad.value.field == "rule.all[0].field"
    with pytest.raises(NotFoundError):
        shop.segments.members("typo")
    shop.segments.delete("big browsers")
    shop.segments.delete("big")
    assert "big" not in set(shop.segments.list()["name"])


def test_cluster_segments_partition_people_and_stay_stable(shop: Workspace) -> None:
    result = shop.segments.create_clusters("behaviour", algorithm="kmeans", k=3)
    names = [f"behaviour #{c}" for c in range(3)]
    sets = [members(shop, n) for n in names]
    assert sum(map(len, sets)) == len(set().union(*sets)) == len(result.labels)
    for name in names:
        assert shop.segments.get(name).description  # the suggested name and what sets it apart
    rule_on_cluster = {"all": [{"segment": "behaviour #0"}, {"field": "orders", "op": "gte", "value": 1}]}
    flags = shop.segments.evaluate({"x": rule_on_cluster})
    orders = shop.features().set_index("person_id")["orders"]
    assert set(flags.loc[flags["x"], "person_id"]) == {p for p in sets[0] if orders[p] >= 1}
    # Refitting on unchanged data keeps every person in their cluster: no changes at all.
    again = shop.segments.refresh([names[0]])
    assert (again.entered, again.exited) == (0, 0)


@pytest.mark.slow
def test_serve_moves_a_person_into_a_segment_within_seconds(shop: Workspace) -> None:
    shop.segments.create("wishlisters", {"event": "Product Added to Wishlist", "within": "30d"})
    assert "live-1" not in members(shop, "wishlisters")
    with Collector(shop.settings.root) as server:
        client = Client(WRITE_KEY, host=server.url, sync_mode=True, max_retries=2)
        latest = pd.Timestamp(shop.features()["last_seen"].max()).to_pydatetime()
        client.track(user_id="live-1", event="Product Added to Wishlist", properties={"product_id": "p9"},
                     timestamp=latest)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "live-1" not in members(shop, "wishlisters"):
            time.sleep(0.3)
    changes = shop.segments.changes("wishlisters")
    assert changes[["person_id", "change"]].to_dict("records")[-1] == {"person_id": "live-1", "change": "enter"}


def test_segments_are_kept_on_postgres_too(workspace: Workspace) -> None:
    ingest(workspace, [order("a", 0, "a1"), order("a", 2, "a2"), order("b", 1, "b1")])
    workspace.segments.create("repeat buyers", TWICE_IN_30D)
    ingest(workspace, [order("b", 3, "b2")])
    workspace.segments.refresh()
    assert members(workspace, "repeat buyers") == {"a", "b"}
    assert list(workspace.segments.sizes("repeat buyers")["size"]) == [1, 2]


def test_refresh_of_an_empty_workspace_is_a_no_op(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "empty")
    result = ws.segments.refresh()
    assert (result.segments, result.entered) == (0, 0)
    assert ws.segments.list()["size"].sum() == 0


EVERY_KIND = {
    "stage": {"field": "stage", "op": "in", "value": ["Active", "Loyal", "At risk"]},
    "rfm": {"any": [{"field": "rfm_segment", "op": "eq", "value": "Champions"}, {"field": "m_score", "op": "gte", "value": 4}]},
    "dates": {"field": "first_seen", "op": "between", "value": ["2025-02-01", "30d ago"]},
    "trait": {"not": {"trait": "country", "op": "in", "value": ["US", "DE"]}},
    "abandoners": {"event": "Product Added", "within": "14d", "where": [{"property": "price", "op": "gt", "value": 10}],
                   "not_followed_by": {"event": "Order Completed", "within": "1d"}},
    "big basket": {"event": "Order Completed", "sum": {"property": "revenue", "op": "gt", "value": 80}},
    "books": {"purchased": [{"property": "category", "op": "starts_with", "value": "B"}], "within": "90d",
              "count": {"op": "lt", "value": 2}},
    "ref": {"all": [{"segment": "stage"}, {"not": {"segment": "books"}}]},
}


@pytest.mark.spark
def test_rules_give_the_same_members_on_spark(sample_shop: Workspace) -> None:
    rules = {name: parse_rule(rule) for name, rule in EVERY_KIND.items()}
    ctx = EvaluationContext(as_of=datetime(2025, 5, 31, tzinfo=UTC), timezone=sample_shop.settings.timezone,
                            lifecycle=sample_shop.settings.lifecycle)
    flags = assert_engines_agree(sample_shop, lambda t: evaluate_segments(t, rules, ctx), ["person_id"])
    counts = flags.drop(columns="person_id").sum()
    assert (counts > 0).all() and (counts < len(flags)).all(), counts  # every rule splits the shop


def test_people_scoped_refresh_evaluates_at_the_same_instant_as_a_full_one(sqlite_workspace: Workspace) -> None:
    ws = sqlite_workspace
    ingest(ws, [view("busy", 30, 0)])
    ws.segments.create("browsers", BROWSED)
    ingest(ws, [view("quiet", 10, 0)])  # an old event arriving late: 20 days before the latest data
    ws.segments.refresh_people(["quiet"])
    assert members(ws, "browsers") == {"busy"}  # "last 7 days" ends at the latest data, not at quiet's
