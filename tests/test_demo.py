"""The demo pipeline end to end, checked against the sample shop's ground truth."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from tenure import Workspace
from tenure.cli import app

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo") / "ws"
    result = CliRunner().invoke(app, ["demo", str(root), "--users", "1500", "--days", "240", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "sample shop" in result.output and "an example profile" in result.output
    (root.parent / "demo-output.txt").write_text(result.output)
    return root


def test_the_demo_shows_the_lifecycle_picture_it_computed(demo: Path) -> None:
    output = (demo.parent / "demo-output.txt").read_text()
    stage_part, _, rest = output.partition("RFM segments")
    segment_part, _, _ = rest.partition("repeat-order retention")

    def first_numbers(text: str) -> dict[str, int]:
        cells = [line.split("│") for line in text.splitlines() if line.count("│") > 2]
        return {c[1].strip(): int(c[2].strip().replace(",", "")) for c in cells if c[2].strip()}

    stage_rows, segment_rows = first_numbers(stage_part.partition("lifecycle stages")[2]), first_numbers(segment_part)
    with Workspace(demo) as ws:
        stages = ws.stage_distribution()
        segments = ws.rfm_segments()
        funnel = ws.funnel(["Product Viewed", "Product Added", "Checkout Started", "Order Completed"])
    assert stage_rows == dict(zip(stages.stage, stages.people, strict=True))
    assert segment_rows == dict(zip(segments.segment, segments.people, strict=True))
    assert funnel.people.iloc[0] > funnel.people.iloc[-1] > 0
    assert "repeat-order retention" in output and "purchase funnel" in output


def test_orders_and_revenue_match_the_ground_truth(demo: Path) -> None:
    truth = pd.read_parquet(demo / "sample" / "ground_truth" / "users.parquet")
    with Workspace(demo) as ws:
        engine = ws.engine()
        orders = engine.tables().orders.execute()
        engine.close()
    assert len(orders) == truth["n_orders"].sum()
    assert orders["revenue"].sum() == pytest.approx(truth["revenue_usd"].sum(), abs=0.01 * len(orders))
    assert orders["net_revenue"].sum() == pytest.approx(
        truth["revenue_usd"].sum() - truth["refunded_usd"].sum(), abs=0.01 * len(orders)
    )
    per_person = orders.groupby("person_id").size()
    buyers = truth[truth["n_orders"] > 0].set_index("user_id")["n_orders"]
    assert per_person.sort_index().to_dict() == buyers.sort_index().to_dict()


def test_identity_resolution_never_merges_two_people_and_resolves_every_login(demo: Path) -> None:
    truth = pd.read_parquet(demo / "sample" / "ground_truth" / "users.parquet")
    owner = {anon: user for user, anons in zip(truth["user_id"], truth["anonymous_ids"], strict=True) for anon in anons}
    owner.update({user: user for user in truth["user_id"]})
    with Workspace(demo) as ws:
        engine = ws.engine()
        events = engine.tables().events.select("person_id", "user_id", "anonymous_id").execute()
        engine.close()
    events["true_person"] = events["user_id"].fillna(events["anonymous_id"]).map(owner)
    assert events["true_person"].notna().all()
    owners_per_person = events.groupby("person_id")["true_person"].nunique()
    assert (owners_per_person == 1).all(), "a resolved person spans two real people"
    signed_up = set(truth.loc[truth["signed_up"], "user_id"])
    logged_in = events[events["user_id"].notna()]
    assert (logged_in["person_id"] == logged_in["user_id"]).all()
    linked_devices = events[events["anonymous_id"].isin(set(events.loc[events["user_id"].notna(), "anonymous_id"]))]
    assert (linked_devices["person_id"] == linked_devices["true_person"]).all()
    assert signed_up <= set(events["person_id"])  # every sign-up is its own resolved person


def test_the_demo_saves_useful_segments_and_prints_their_sizes(demo: Path) -> None:
    output = (demo.parent / "demo-output.txt").read_text()
    table = output.partition("saved segments")[2]
    printed = {c[1].strip(): int(c[2].strip().replace(",", ""))
               for c in (line.split("│") for line in table.splitlines() if line.count("│") > 2) if c[2].strip()}
    with Workspace(demo) as ws:
        saved = ws.segments.list().set_index("name")
        features = ws.features().set_index("person_id")
        abandoners = set(ws.segments.members("cart abandoners last 7 days")["person_id"])
        fresh = ws.segments.evaluate({"a": {"event": "Product Added", "within": "7d"}}).set_index("person_id")["a"]
    for name in ("high value at risk", "cart abandoners last 7 days", "new customers without second order",
                 "valuable customers likely to churn"):
        assert printed[name] == saved.at[name, "size"] > 0
    clusters = [n for n in saved.index if n.startswith("behaviour #")]
    assert len(clusters) >= 2 and sum(printed[n] for n in clusters) == len(features)
    assert abandoners <= set(fresh[fresh].index)  # abandoners did add to cart in the last 7 days
    assert (demo / "behaviour-clusters.png").stat().st_size > 10_000


def test_the_demo_trains_every_model_and_prints_it_next_to_the_baselines(demo: Path) -> None:
    """Each model's printed table is its registry's backtest, oracle included; everyone is scored."""
    output = (demo.parent / "demo-output.txt").read_text()
    with Workspace(demo) as ws:
        for name in ("churn", "propensity"):
            table = output.partition(f"{name}: model vs baselines")[2].partition("\n\n")[0]
            printed = {c[1].strip(): float(c[2]) for c in (line.split("│") for line in table.splitlines())
                       if len(c) > 3 and c[2].strip()}
            stored = ws.models.comparison(name).set_index("model")["roc_auc"]
            assert set(printed) == {"gradient_boosting", "rfm_logistic", "bgnbd", "oracle"}
            assert printed == {model: round(value, 2) for model, value in stored.items()}
        assert "clv-v1" in output and (demo / "model-report.html").stat().st_size > 50_000
        scored = ws.models.score_table().groupby("name")["person_id"].nunique()
        customers = (ws.features()["orders"] > 0).sum()
    assert scored["churn_risk"] == scored["clv_365d"] == customers


def test_the_demo_prints_the_recommenders_against_popularity(demo: Path) -> None:
    """The printed table is the registry's test window; the chosen one is starred and beats popularity."""
    output = (demo.parent / "demo-output.txt").read_text()
    table = output.partition("recommendations: algorithms vs popularity")[2].partition("└")[0]
    printed = {c[1].strip(): float(c[3]) for c in (line.split("│") for line in table.splitlines())
               if len(c) > 3 and c[3].strip()}
    with Workspace(demo) as ws:
        evaluation = ws.models.comparison("recommendations")
        test = evaluation[evaluation["window"] == "test"]
        chosen = str(test.loc[test["chosen"], "algorithm"].iloc[0])
        expected = zip(test["algorithm"], test["ndcg"], strict=True)
        assert printed == {f"{a} *" if a == chosen else a: round(v, 2) for a, v in expected}
        assert printed[f"{chosen} *"] > printed["popularity"]
        assert "recommended for" in output and "also liked" in output
