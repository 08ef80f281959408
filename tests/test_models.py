"""The models capability end to end: training on a generated shop, registry, scoring, CLI, serve.

References: the generator's ground truth (the oracle, the true BG/NBD process), the
independently tested estimators applied by hand, and the segment engine reading the scores.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from tenure.cli import app
from tenure.errors import NotFoundError, ValidationError
from tenure.ingest.flusher import run_flusher
from tenure.models.bgnbd import BetaGeo
from tenure.models.outcomes import BGNBD, MODEL, ORACLE, RFM_LOGISTIC
from tenure.workspace import Workspace

from conftest import copy_workspace, make_workspace

# Both files read the session's trained shop: keep them on one xdist worker so it is built once.

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(trained_shop: Workspace) -> Workspace:
    return trained_shop


@pytest.fixture
def writable(trained: Workspace, tmp_path: Path) -> Iterator[Workspace]:
    ws = copy_workspace(trained, tmp_path / "ws")
    yield ws
    ws.close()


def test_the_churn_model_beats_both_baselines_in_the_backtest(trained: Workspace) -> None:
    backtest = trained.models.get("churn").metrics["backtest"]
    ours = backtest[MODEL]
    for baseline in (RFM_LOGISTIC, BGNBD):
        assert ours["roc_auc"] > backtest[baseline]["roc_auc"], baseline
        assert ours["brier"] < backtest[baseline]["brier"], baseline
    assert ours["lift_top"] > 1.2


def test_the_oracle_is_scored_on_the_same_people_and_ranks_well(trained: Workspace) -> None:
    """The generator's truth covers every customer and is far better than chance."""
    backtest = trained.models.get("churn").metrics["backtest"]
    oracle = backtest[ORACLE]
    assert oracle["coverage"] == 1.0
    assert oracle["examples"] == backtest[MODEL]["examples"]
    assert oracle["base_rate"] == backtest[MODEL]["base_rate"]
    assert oracle["roc_auc"] > 0.75
    assert ORACLE not in trained.models.get("propensity").metrics["backtest"]


def test_backtests_train_only_on_windows_that_ended_before_the_test_cutoff(trained: Workspace) -> None:
    fitted = trained.models.trained("churn")
    horizon = fitted.outcome.horizon
    assert len(fitted.backtests) >= 2
    for backtest in fitted.backtests:
        assert backtest.train_cutoffs
        assert all(c + horizon <= backtest.cutoff for c in backtest.train_cutoffs)
    assert fitted.headline.cutoff == max(fitted.cutoffs)


def test_churn_scores_cover_exactly_the_customers_and_equal_the_model_on_todays_features(trained: Workspace) -> None:
    scores = trained.models.score_table()
    churn = scores[scores["name"] == "churn_risk"].set_index("person_id")["value"]
    features = trained.features()
    customers = set(features.loc[features["orders"] > 0, "person_id"])
    assert set(churn.index) == customers
    fitted = trained.models.trained("churn")
    from tenure.models.dataset import FEATURES, model_features

    with trained.engine() as engine:
        t = engine.tables()
        today = engine.execute(model_features(t, as_of=trained.resolve_as_of(t, None))).set_index("person_id")
    expected = fitted.classifier.predict_proba(today.loc[sorted(customers), list(FEATURES)])[:, 1]
    np.testing.assert_allclose(churn.loc[sorted(customers)].to_numpy(), expected)
    assert set(scores["model_version"][scores["name"] == "churn_risk"]) == {"churn-v1"}


def test_churn_reasons_are_the_largest_contributions(trained: Workspace) -> None:
    person = trained.models.score_table().query("name == 'churn_risk'")["person_id"].iloc[0]
    stored = trained.models.scores(person)
    reasons = stored["churn_reasons"]["value"]
    assert len(reasons) == 3
    sizes = [abs(r["contribution"]) for r in reasons]
    assert sizes == sorted(sizes, reverse=True)
    fitted = trained.models.trained("churn")
    assert {r["feature"] for r in reasons} <= set(fitted.classifier.feature_names_in_)
    assert stored["churn_reasons"]["model_version"] == stored["churn_risk"]["model_version"] == "churn-v1"


def test_clv_scores_follow_the_bgnbd_formulas_from_each_customers_history(trained: Workspace) -> None:
    """p_alive and expected orders recomputed by hand from the features and the fitted parameters."""
    fitted = trained.models.trained("clv").model.transactions
    scores = trained.models.score_table().pivot(index="person_id", columns="name", values="value")
    with trained.engine() as engine:
        t = engine.tables()
        orders = trained.models._orders(engine, t, trained.resolve_as_of(t, None))
    orders = orders.groupby(["person_id", "day"], as_index=False)["value"].sum()
    last_day = orders["day"].max()
    per = orders.groupby("person_id")["day"].agg(["min", "max", "count"])
    x = (per["count"] - 1).to_numpy(dtype=float)
    t_x = (per["max"] - per["min"]).dt.days.to_numpy(dtype=float)
    big_t = (last_day - per["min"]).dt.days.to_numpy(dtype=float)
    r, alpha, a, b = fitted.r_, fitted.alpha_, fitted.a_, fitted.b_
    odds = (a / (b + x - 1)) * ((alpha + big_t) / (alpha + t_x)) ** (r + x)
    p_alive = np.where(x > 0, 1.0 / (1.0 + np.where(x > 0, odds, 0.0)), 1.0)
    np.testing.assert_allclose(scores.loc[per.index, "p_alive"].to_numpy(), p_alive, rtol=1e-6)
    check = BetaGeo()
    check.r_, check.alpha_, check.a_, check.b_ = r, alpha, a, b
    summary = pd.DataFrame({"frequency": x, "recency": t_x, "T": big_t}, index=per.index)
    np.testing.assert_allclose(
        scores.loc[per.index, "expected_orders_90d"].to_numpy(), check.conditional_expected_purchases(90, summary)
    )
    assert (scores.loc[per.index, "clv_365d"] > 0).all()


def test_segments_read_the_scores(writable: Workspace) -> None:
    info = writable.segments.create("at risk", {"field": "churn_risk", "op": "gte", "value": 0.5})
    scores = writable.models.score_table().query("name == 'churn_risk'")
    assert set(writable.segments.members("at risk")["person_id"]) == set(scores.loc[scores["value"] >= 0.5, "person_id"])
    assert info.size == (scores["value"] >= 0.5).sum()


def test_registry_versions_promotion_and_files(writable: Workspace) -> None:
    models = writable.models
    second = models.train("clv")
    assert (second.version, second.status) == (2, "candidate")
    assert models.get("clv").version == 1
    assert second.window_end == models.get("clv", 1).window_end
    models.promote("clv", 2)
    listing = models.list("clv").set_index("version")["status"].to_dict()
    assert listing == {2: "active", 1: "retired"}
    counts = models.score(["clv"])
    scores = models.score_table()
    assert set(scores.loc[scores["name"].isin(["p_alive", "clv_365d"]), "model_version"]) == {"clv-v2"}
    assert set(scores.loc[scores["name"] == "churn_risk", "model_version"]) == {"churn-v1"}
    assert counts["clv"] == scores["name"].eq("p_alive").sum()
    assert (writable.settings.root / "models" / "clv" / "v2.joblib").is_file()
    with pytest.raises(NotFoundError, match="version 9"):
        models.get("clv", 9)
    with pytest.raises(ValidationError, match="model"):
        models.train("lifetime")


def test_rescoring_replaces_the_previous_scores_atomically(writable: Workspace) -> None:
    before = writable.models.score_table()
    writable.models.score(["churn"])
    after = writable.models.score_table()
    assert len(after) == len(before)
    assert (after.groupby("name").size() == before.groupby("name").size()).all()


@pytest.mark.parametrize(
    ("setting", "field"),
    [("churn_horizon_days = 200", "horizon_days"), ("clv_holdout_days = 200", "holdout_days")],
)
def test_a_horizon_longer_than_the_history_is_refused(model_shop: Workspace, tmp_path: Path, setting: str, field: str) -> None:
    ws = copy_workspace(model_shop, tmp_path / "ws")
    key = setting.split(" = ")[0]
    toml = ws.settings.root / "tenure.toml"
    toml.write_text(toml.read_text().replace(f"{key} = 90", setting))
    ws = Workspace(ws.settings.root)
    with pytest.raises(ValidationError) as caught:
        ws.models.train("clv" if key.startswith("clv") else "churn")
    assert caught.value.field == field


def test_too_little_data_is_a_clear_error(tmp_path: Path) -> None:
    from analytics_support import ingest

    ws = make_workspace(tmp_path / "ws")
    with pytest.raises(ValidationError) as caught:
        ws.models.train("churn")
    assert caught.value.field == "events"
    messages = [
        {"type": "track", "event": "Order Completed", "userId": f"u{i}", "messageId": f"m{i}-{k}",
         "timestamp": f"2025-{1 + k:02d}-{1 + i:02d}T10:00:00Z", "properties": {"order_id": f"o{i}-{k}", "revenue": 10.0}}
        for i in range(12)
        for k in range(1 + i % 2)
    ] + [{"type": "track", "event": "Page Viewed", "userId": "u0", "messageId": "late", "timestamp": "2025-12-30T10:00:00Z"}]
    ingest(ws, messages)
    with pytest.raises(ValidationError) as caught:
        ws.models.train("churn")
    assert caught.value.field in ("examples", "label")
    with pytest.raises(ValidationError) as caught:
        ws.models.train("clv")
    assert caught.value.field == "orders"
    assert ws.models.list().empty


def test_cli_train_list_show_evaluate_score_promote(writable: Workspace) -> None:
    root = str(writable.settings.root)
    result = runner.invoke(app, ["models", "train", "clv", "-w", root])
    assert result.exit_code == 0, result.output
    assert "clv-v2" in result.output and "naive" in result.output
    listing = runner.invoke(app, ["models", "list", "-w", root, "--format", "json"])
    rows = json.loads(listing.stdout)
    assert {(r["name"], r["version"], r["status"]) for r in rows} == {
        (m, v, s) for m, v, s in writable.models.list()[["name", "version", "status"]].itertuples(index=False)
    }
    evaluated = runner.invoke(app, ["models", "evaluate", "churn", "-w", root, "--format", "json"])
    table = pd.DataFrame(json.loads(evaluated.stdout)).set_index("model")
    stored = writable.models.get("churn").metrics["backtest"]
    for model, metrics in stored.items():
        assert table.loc[model, "roc_auc"] == pytest.approx(metrics["roc_auc"])
    shown = runner.invoke(app, ["models", "show", "churn", "-w", root])
    assert "churn-v1" in shown.output and "feature importance" in shown.output
    assert runner.invoke(app, ["models", "promote", "clv", "2", "-w", root]).exit_code == 0
    scored = runner.invoke(app, ["models", "score", "clv", "-w", root])
    assert "clv-v2: scored" in scored.output
    assert set(writable.models.score_table().query("name == 'p_alive'")["model_version"]) == {"clv-v2"}
    bad = runner.invoke(app, ["models", "promote", "clv", "7", "-w", root])
    assert bad.exit_code == 1 and "version 7" in bad.output
    bad = runner.invoke(app, ["models", "train", "nonsense", "-w", root])
    assert bad.exit_code == 1 and "model" in bad.output


def test_serve_rescores_on_schedule(writable: Workspace) -> None:
    """The flusher loop re-scores with the active models every models.rescore_minutes."""
    toml = writable.settings.root / "tenure.toml"
    toml.write_text(toml.read_text().replace("rescore_minutes = 60.0", "rescore_minutes = 0.002"))
    ws = Workspace(writable.settings.root)
    first = ws.models.get("churn").scored_at
    stop = threading.Event()
    thread = threading.Thread(target=run_flusher, args=(ws, 0.05, stop), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 90
        while ws.models.get("churn").scored_at == first and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        stop.set()
        thread.join(60)
    assert ws.models.get("churn").scored_at != first
    assert ws.models.get("clv").scored_at != first


def test_the_profile_shows_the_scores_with_their_versions(trained: Workspace) -> None:
    from tenure.profiles import person_profile

    person = trained.models.score_table().query("name == 'churn_risk'")["person_id"].iloc[0]
    profile = person_profile(trained, person)
    assert profile.scores == trained.models.scores(person)
    shown = runner.invoke(app, ["profile", person, "-w", str(trained.settings.root)]).output
    assert f"{profile.scores['churn_risk']['value']:,.3f}" in shown and "(churn-v1)" in shown
    assert profile.scores["churn_reasons"]["value"][0]["feature"] in shown


def test_scoring_without_models_does_nothing(tmp_path: Path) -> None:
    """What serve's schedule does in a fresh workspace: no model, no events, no error."""
    ws = make_workspace(tmp_path / "ws")
    assert ws.models.score() == {}
    with pytest.raises(NotFoundError, match="tenure models train churn"):
        ws.models.score(["churn"])
