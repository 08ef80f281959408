"""Recommendations end to end on a generated shop: the time-split choice, stored lists, filters, reasons,
similar items, the real-time blend and the interfaces, each checked against an independent reading of the data."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from tenure import ConfigError, Workspace
from tenure.cli.app import app
from tenure.clock import FrozenClock
from tenure.errors import NotFoundError, ValidationError
from tenure.ingest.flusher import flush_all
from tenure.ingest.importer import import_file
from tenure.models.recommend_evaluation import make_split
from tenure.models.recommend_live import JUST
from tenure.models.recommend_scoring import AGAIN, REASONS
from tenure.models.recommend_training import TrainedRecommender
from tenure.models.recommendations import PURCHASED
from tenure.models.report import write_report
from tenure.spec.messages import normalize_message
from tenure.store.state import inbox, person_details

from conftest import copy_workspace, make_workspace

runner = CliRunner()


@pytest.fixture(scope="module")
def shop(model_shop: Workspace, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    """The model shop with the recommender trained and everyone scored; tests only read it."""
    ws = copy_workspace(model_shop, tmp_path_factory.mktemp("recommended") / "ws")
    ws.models.train("recommendations")
    ws.models.score(["recommendations"])
    yield ws
    ws.close()


@pytest.fixture(scope="module")
def stored(shop: Workspace) -> dict[str, list[dict[str, Any]]]:
    with shop.state.read() as conn:
        rows = conn.execute(
            sa.select(person_details.c.person_id, person_details.c.value, person_details.c.model_version).where(
                person_details.c.name == "recommendations"
            )
        ).all()
    assert {version for _, _, version in rows} == {"recommendations-v1"}
    return {person: json.loads(value) for person, value, _ in rows}


@pytest.fixture(scope="module")
def lake(shop: Workspace) -> dict[str, pd.DataFrame]:
    """The shop's product facts read straight from the lake, independently of the signals query."""
    with shop.engine() as engine:
        t = engine.tables()
        events = engine.execute(t.events.select("person_id", "event", "properties", "timestamp"))
        orders = engine.execute(t.orders.select("order_id", "person_id"))
        lines = engine.execute(t.order_items.select("order_id", "product_id"))
        items = engine.execute(t.items)
    events["item_id"] = [orjson.loads(p).get("product_id") if p else None for p in events["properties"]]
    bought = lines.merge(orders, on="order_id")
    return {"events": events, "bought": bought, "items": items}


def trained(ws: Workspace) -> TrainedRecommender:
    fitted: TrainedRecommender = ws.models.trained("recommendations")
    return fitted


# -- the choice and the target -----------------------------------------------------------------
def test_the_algorithm_is_the_best_on_validation_and_beats_popularity_on_test(shop: Workspace) -> None:
    info = shop.models.get("recommendations")
    validation = pd.DataFrame(info.metrics["validation"])
    test = pd.DataFrame(info.metrics["test"]).set_index("algorithm")
    assert info.params["algorithm"] == validation.loc[validation["ndcg"].idxmax(), "algorithm"]
    assert set(validation["algorithm"]) == set(test.index) >= {"popularity", "als", "item_neighbours", "content", "hybrid"}
    chosen = test.loc[info.params["algorithm"], "ndcg"]
    assert chosen >= 1.5 * test.loc["popularity", "ndcg"]  # the target, on data the choice never saw
    assert info.metrics["ndcg_lift_over_popularity"] == pytest.approx(chosen / test.loc["popularity", "ndcg"])
    table = shop.models.comparison("recommendations")
    assert table.loc[table["chosen"], "algorithm"].unique().tolist() == [info.params["algorithm"]]


def test_split_relevance_matches_a_plain_reading() -> None:
    """Relevant = bought more units after the cut than before, on items known at the cut, minus past purchases."""
    cut = datetime(2025, 3, 1, tzinfo=UTC)
    before = pd.DataFrame({
        "person_id": ["a", "a", "b", "c"], "item_id": ["x", "y", "x", "z"], "weight": [1.0, 5.0, 3.0, 1.0],
        "purchases": [0, 1, 0, 0], "last_at": pd.to_datetime(["2025-02-27", "2025-01-01", "2025-02-01", "2025-02-28"]),
    })
    after = pd.DataFrame({
        "person_id": ["a", "a", "b", "c", "d", "d"], "item_id": ["x", "y", "x", "z", "x", "new"],
        "weight": [6.0, 10.0, 3.0, 6.0, 5.0, 5.0], "purchases": [1, 2, 0, 1, 1, 1],
        "last_at": pd.to_datetime(["2025-03-02"] * 6),
    })
    catalogue = pd.DataFrame({"item_id": ["x", "y", "z"], "name": ["X", "Y", "Z"], "category": ["c"] * 3,
                              "brand": ["b"] * 3, "price": [1.0, 2.0, 3.0], "description": [""] * 3})
    split = make_split(before, after, catalogue, cut=cut, trending_days=14, exclude_purchased=True)
    assert split.people.tolist() == ["a", "b", "c", "d"] and split.items.tolist() == ["x", "y", "z"]
    relevant = {(split.people[r], split.items[c]) for r, c in zip(*split.relevant.nonzero(), strict=True)}
    assert relevant == {("a", "x"), ("c", "z"), ("d", "x")}  # a's y was bought before; d's "new" is unknown at the cut
    assert split.unreachable == 1 and split.buyers == 3
    trending = {(split.people[r], split.items[c]) for r, c in zip(*split.recent.nonzero(), strict=True)}
    assert trending == {("a", "x"), ("c", "z")}  # active within 14 days of the cut
    kept = make_split(before, after, catalogue, cut=cut, trending_days=14, exclude_purchased=False)
    assert kept.relevant.nnz == 4  # consumables: a buying y again counts


# -- stored lists ------------------------------------------------------------------------------
def test_everyone_with_a_history_has_a_full_list_of_new_in_stock_items(
    shop: Workspace, stored: dict[str, list[dict[str, Any]]], lake: dict[str, pd.DataFrame]
) -> None:
    seen = lake["events"][lake["events"]["item_id"].notna() & lake["events"]["event"].isin(
        ["Product Viewed", "Product Added", "Product Reviewed"])]
    people = set(seen["person_id"]) | set(lake["bought"]["person_id"])
    assert set(stored) == people
    catalogue = lake["items"].set_index("item_id")
    out_of_stock = set(catalogue.index[~catalogue["in_stock"].astype(bool)])
    assert out_of_stock, "the sample shop has items out of stock"
    bought = lake["bought"].groupby("person_id")["product_id"].agg(set)
    for person, entries in stored.items():
        items = [e["item_id"] for e in entries]
        assert len(items) == shop.settings.recommendations.top_n == len(set(items))
        assert not set(items) & out_of_stock
        assert not set(items) & bought.get(person, set())
        for entry in entries:
            row = catalogue.loc[entry["item_id"]]
            assert (entry["name"], entry["category"], entry["price"]) == (row["name"], row["category"], row["price"])
        assert [e["score"] for e in entries] == sorted((e["score"] for e in entries), reverse=True)


def test_reasons_name_something_the_person_really_did(
    shop: Workspace, stored: dict[str, list[dict[str, Any]]], lake: dict[str, pd.DataFrame]
) -> None:
    events = lake["events"]
    did = {
        "because you viewed {}": events[events["event"] == "Product Viewed"],
        "because you added {} to your cart": events[events["event"] == "Product Added"],
        "because you reviewed {}": events[events["event"] == "Product Reviewed"],
        "because you bought {}": lake["bought"].rename(columns={"product_id": "item_id"}),
    }
    pairs = {template: set(zip(frame["person_id"], frame["item_id"], strict=True)) for template, frame in did.items()}
    names = lake["items"].set_index("item_id")["name"]
    explained = 0
    for person, entries in stored.items():
        for entry in entries:
            if entry["because"] is None:
                assert entry["reason"] == "matches your taste"
                continue
            explained += 1
            if entry["because"] == entry["item_id"]:
                assert entry["reason"] in AGAIN.values()
                continue
            template = next(t for t in REASONS.values() if entry["reason"] == t.format(names[entry["because"]]))
            assert (person, entry["because"]) in pairs[template]
    assert explained > 0.5 * sum(map(len, stored.values()))


def test_allowed_categories_and_consumables(shop: Workspace, tmp_path: Path, lake: dict[str, pd.DataFrame]) -> None:
    ws = copy_workspace(shop, tmp_path / "ws")
    ws.close()
    configure(tmp_path / "ws", allowed_categories='["Home", "Garden"]', exclude_purchased="false")
    with Workspace(tmp_path / "ws") as ws:
        ws.models.score(["recommendations"])
        categories = lake["items"].set_index("item_id")["category"]
        lists = {p: [e["item_id"] for e in v["value"]] for p, v in _all_details(ws, "recommendations").items()}
        assert set(categories[[i for items in lists.values() for i in items]]) <= {"Home", "Garden"}
        bought = lake["bought"].groupby("person_id")["product_id"].agg(set)
        assert any(set(items) & bought.get(person, set()) for person, items in lists.items())


def test_stock_changes_apply_at_the_next_scoring(shop: Workspace, tmp_path: Path) -> None:
    lists = {p: [e["item_id"] for e in v["value"]] for p, v in _all_details(shop, "recommendations").items()}
    favourite = pd.Series([i for items in lists.values() for i in items]).mode().iloc[0]
    ws = copy_workspace(shop, tmp_path / "ws")
    update = tmp_path / "items.csv"
    now = datetime.now(UTC).isoformat()  # later than the catalogue's import, so this version wins
    update.write_text(f"product_id,name,in_stock,updated_at\n{favourite},Sold out,false,{now}\n")
    assert import_file(ws, update, "items").imported == 1
    ws.models.score(["recommendations"])
    after = {p: [e["item_id"] for e in v["value"]] for p, v in _all_details(ws, "recommendations").items()}
    assert not any(favourite in items for items in after.values())
    assert sum(items == lists[p] for p, items in after.items()) > 0  # lists without it are unchanged
    ws.close()


def configure(root: Path, **values: str) -> None:
    """Set keys of the workspace's ``[recommendations]`` section (the template lists every key)."""
    path = root / "tenure.toml"
    lines = path.read_text().splitlines()
    start = lines.index("[recommendations]")
    for key, value in values.items():
        at = next(i for i in range(start, len(lines)) if lines[i].startswith(f"{key} ="))
        lines[at] = f"{key} = {value}"
    path.write_text("\n".join(lines) + "\n")


def _all_details(ws: Workspace, name: str) -> dict[str, dict[str, Any]]:
    with ws.state.read() as conn:
        rows = conn.execute(sa.select(person_details).where(person_details.c.name == name)).all()
    return {r.person_id: {"value": json.loads(r.value), "model_version": r.model_version} for r in rows}


# -- similar items -----------------------------------------------------------------------------
def test_similar_items_are_the_models_neighbours_with_details(shop: Workspace, lake: dict[str, pd.DataFrame]) -> None:
    model = trained(shop)
    item = str(lake["bought"]["product_id"].mode().iloc[0])
    similar = shop.recommendations.similar(item, n=5)
    column = model.column_of([item])[0]
    scores = model.model._item_scores(np.array([column]))[0]
    scores[column] = -np.inf
    assert similar["item_id"].tolist() == model.items[np.argsort(-scores, kind="stable")[:5]].tolist()
    assert item not in similar["item_id"].tolist()
    names = lake["items"].set_index("item_id")["name"]
    assert similar["name"].tolist() == names[similar["item_id"]].tolist()
    with pytest.raises(NotFoundError, match="nope"):
        shop.recommendations.similar("nope")


# -- real time ---------------------------------------------------------------------------------
def test_live_events_pull_in_similar_items_by_the_blend_formula(shop: Workspace, tmp_path: Path) -> None:
    model = trained(shop)
    person = next(iter(_all_details(shop, "recommendations")))
    _, end = shop.models.get("recommendations").window_start, shop.models.get("recommendations").window_end
    now = end + timedelta(hours=1)
    ws = copy_workspace(shop, tmp_path / "ws")
    ws.close()
    with Workspace(tmp_path / "ws", clock=FrozenClock(now)) as ws:
        before = ws.recommendations.for_person(person)
        assert before["source"].eq("stored").all()
        viewed = model.items[model.similar[0][0]]  # any item with neighbours
        user = ws.identity.identifiers_of(person)[0]
        _flush(ws, now, [("Product Viewed", viewed, now - timedelta(minutes=5)),
                         ("Product Viewed", model.items[1], now - timedelta(hours=3))])  # outside the 30 min window
        after = ws.recommendations.for_person(person, n=10)
        expected = _reference_blend(ws, model, person, viewed, age_minutes=5)
        assert after["item_id"].tolist() == expected[:10]
        live = after[after["source"] == "live"]
        assert len(live) and live["reason"].eq(JUST["view"].format(model.details["name"].iloc[model.column_of([viewed])[0]])).all()
        assert viewed not in after["item_id"].tolist()
        assert user  # the event was sent under one of the person's ids


def _flush(ws: Workspace, now: datetime, events: list[tuple[str, str, datetime]]) -> None:
    """Send product events through the inbox and the real flusher."""
    person_ids = ws.identity.identifiers_of(next(iter(_all_details(ws, "recommendations"))))
    messages = [
        {"type": "track", "messageId": f"live-{k}", "event": event, "userId": person_ids[0],
         "timestamp": at.isoformat(), "properties": {"product_id": item}}
        for k, (event, item, at) in enumerate(events)
    ]
    records = [normalize_message(m, received_at=now) for m in messages]
    with ws.state.begin() as conn:
        conn.execute(inbox.insert(), [{"received_at": now, "n_messages": len(records), "body": orjson.dumps(records)}])
    flush_all(ws)


def _reference_blend(ws: Workspace, model: TrainedRecommender, person: str, viewed: str, *, age_minutes: float) -> list[str]:
    """The blend written out per item: 0.5 × live/max(live) + 0.5 × (1 - rank/n), minus seen, bought and filtered."""
    settings = ws.settings.recommendations
    stored = _all_details(ws, "recommendations")[person]["value"]
    bought = set(_all_details(ws, PURCHASED).get(person, {"value": []})["value"])
    column = model.column_of([viewed])[0]
    fresh = 1 - age_minutes / settings.realtime_minutes
    live = {
        str(model.items[j]): max(s, 0.0) * settings.view_weight * fresh
        for j, s in zip(model.similar[column], model.similar_scores[column], strict=True) if j >= 0
    }
    top = max(live.values())
    score = {item: settings.live_weight * value / top for item, value in live.items()}
    for rank, entry in enumerate(stored):
        score[entry["item_id"]] = score.get(entry["item_id"], 0.0) + (1 - settings.live_weight) * (1 - rank / len(stored))
    in_stock = dict(zip(model.items, model.details["in_stock"].fillna(True), strict=True))
    allowed = {i: s for i, s in score.items() if i != viewed and i not in bought and in_stock[i] and s > 0}
    return sorted(allowed, key=lambda i: -allowed[i])


def test_people_without_history_get_popular_items(shop: Workspace) -> None:
    model = trained(shop)
    frame = shop.recommendations.for_person("someone-new", n=5)
    popular = model.items[np.argsort(-model.fallback.popularity_, kind="stable")]
    in_stock = model.details["in_stock"].fillna(True).to_numpy()[np.argsort(-model.fallback.popularity_, kind="stable")]
    assert frame["item_id"].tolist() == popular[in_stock][:5].tolist()
    assert frame["source"].eq("popular").all()


# -- interfaces and bad input --------------------------------------------------------------------
def test_report_section_shows_the_registry_numbers(shop: Workspace, tmp_path: Path) -> None:
    from test_model_report import number, parse

    report = parse(write_report(shop.models, tmp_path / "report.html", names=["recommendations"]))
    section = report.sections["recommendations"]
    assert section.charts["ranking"].startswith("data:image/png;base64,")
    evaluation = shop.models.comparison("recommendations")
    for window in ("validation", "test"):
        rows = section.tables[window].records()
        expected = evaluation[evaluation["window"] == window]
        for algorithm, ndcg, chosen in zip(expected["algorithm"], expected["ndcg"], expected["chosen"], strict=True):
            cell, _ = rows[f"{algorithm} (chosen)" if chosen else algorithm]["NDCG@k"]
            assert number(cell) == pytest.approx(ndcg, abs=5e-4)


def test_cli_matches_the_api(shop: Workspace) -> None:
    person = next(iter(_all_details(shop, "recommendations")))
    root = str(shop.settings.root)
    shown = runner.invoke(app, ["recommend", person, "-w", root, "--format", "json"])
    assert shown.exit_code == 0, shown.output
    assert [r["item_id"] for r in json.loads(shown.output)] == shop.recommendations.for_person(person)["item_id"].tolist()
    item = shop.recommendations.for_person(person)["item_id"].iloc[0]
    similar = runner.invoke(app, ["recommend", "--similar", item, "-n", "4", "-w", root, "--format", "json"])
    assert [r["item_id"] for r in json.loads(similar.output)] == shop.recommendations.similar(item, n=4)["item_id"].tolist()
    both = runner.invoke(app, ["recommend", person, "--similar", item, "-w", root])
    assert both.exit_code != 0 and "person" in both.output
    evaluated = runner.invoke(app, ["models", "evaluate", "recommendations", "-w", root, "--format", "json"])
    assert pd.DataFrame(json.loads(evaluated.output))["ndcg"].tolist() == pytest.approx(
        shop.models.comparison("recommendations")["ndcg"].tolist()
    )
    profile = runner.invoke(app, ["profile", person, "-w", root])
    assert profile.exit_code == 0 and "recommendations (recommendations-v1)" in profile.output


def test_training_from_the_cli_and_its_errors(sample_shop: Workspace, tmp_path: Path) -> None:
    ws = copy_workspace(sample_shop, tmp_path / "ws")
    with pytest.raises(NotFoundError):
        ws.recommendations.for_person("anyone")
    ws.close()
    configure(tmp_path / "ws", test_days="100")
    with Workspace(tmp_path / "ws") as ws, pytest.raises(ValidationError) as caught:
        ws.models.train("recommendations")
    assert caught.value.field == "recommendations.test_days"
    configure(tmp_path / "ws", test_days="20")
    result = runner.invoke(app, ["models", "train", "recommendations", "-w", str(tmp_path / "ws")])
    assert result.exit_code == 0, result.output
    assert "recommendations-v1" in result.output and "NDCG@10" in result.output


@pytest.mark.parametrize(
    ("key", "value"),
    [("live_weight", "1.5"), ("half_life_days", "-1"), ("allowed_categories", '"Home"'), ("top_n", "0")],
)
def test_bad_settings_name_the_key(tmp_path: Path, key: str, value: str) -> None:
    make_workspace(tmp_path / "ws").close()
    configure(tmp_path / "ws", **{key: value})
    with pytest.raises(ConfigError) as caught:
        Workspace(tmp_path / "ws")
    assert f"recommendations.{key}" in str(caught.value)
