"""``tenure segments …`` against the Python API on a copy of the sample shop."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from tenure import Workspace
from tenure.cli import app

runner = CliRunner()
AT_RISK_SPENDERS = """
description: spent 100+ and slipping away
rule:
  all:
    - {field: stage, op: in, value: [At risk, Churned]}
    - {field: revenue, op: gte, value: 100}
"""




def cli(ws: Workspace, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["segments", *args, "-w", str(ws.settings.root)], env={"COLUMNS": "200"})
    return result.exit_code, result.output


def test_create_from_a_file_then_list_show_members_export_delete(shop: Workspace, tmp_path: Path) -> None:
    rule_file = tmp_path / "at-risk.yaml"
    rule_file.write_text(AT_RISK_SPENDERS)
    code, out = cli(shop, "create", "at risk spenders", "--rule", str(rule_file))
    assert code == 0, out
    info = shop.segments.get("at risk spenders")
    assert info.description == "spent 100+ and slipping away"
    stages = shop.stages().set_index("person_id")
    revenue = shop.features().set_index("person_id")["revenue"]
    expected = {p for p in stages.index if stages.at[p, "stage"] in ("At risk", "Churned") and revenue[p] >= 100}
    assert set(shop.segments.members("at risk spenders")["person_id"]) == expected
    assert f"{len(expected):,} members" in out

    code, out = cli(shop, "list", "--format", "csv")
    listed = pd.read_csv(io.StringIO(out)).set_index("name")
    assert listed.at["at risk spenders", "size"] == len(expected)
    assert listed.at["Stage: Visitor", "kind"] == "builtin"

    code, out = cli(shop, "show", "at risk spenders")
    assert code == 0 and "At risk" in out and "size over time" in out

    code, out = cli(shop, "members", "at risk spenders", "--traits", "country", "--format", "json")
    rows = json.loads(out)
    traits = {r["person_id"]: r["country"] for r in rows}
    assert set(traits) == expected
    api = shop.segments.members("at risk spenders", traits=["country"]).set_index("person_id")["country"]
    assert traits == api.to_dict()

    for suffix in (".csv", ".parquet"):
        target = tmp_path / f"members{suffix}"
        code, out = cli(shop, "export", "at risk spenders", "--out", str(target), "--traits", "country,channel")
        assert code == 0, out
        frame = pd.read_csv(target) if suffix == ".csv" else pd.read_parquet(target)
        assert list(frame.columns) == ["person_id", "entered_at", "country", "channel"]
        assert set(frame["person_id"]) == expected

    code, out = cli(shop, "delete", "at risk spenders")
    assert code == 0
    assert "at risk spenders" not in set(shop.segments.list()["name"])


def test_preview_shows_size_and_a_sample_without_saving(shop: Workspace) -> None:
    code, out = cli(shop, "preview", "--where", '{"field": "orders", "op": "gte", "value": 3}', "--sample", "4")
    assert code == 0, out
    features = shop.features()
    size = int((features["orders"] >= 3).sum())
    assert f"{size:,} of {len(features):,} people" in out
    preview = shop.segments.preview({"field": "orders", "op": "gte", "value": 3}, sample=4)
    assert len(preview.sample) == 4 and set(preview.sample["person_id"]) <= set(features.loc[features["orders"] >= 3, "person_id"])
    assert all(p in out for p in preview.sample["person_id"])
    assert set(shop.segments.list()["kind"]) == {"builtin"}


def test_refresh_and_changes(shop: Workspace) -> None:
    code, out = cli(shop, "refresh")
    assert code == 0, out
    changes = shop.segments.changes()
    assert len(changes) == sum(shop.segments.list()["size"])  # a first refresh: everyone enters
    code, out = cli(shop, "changes", "Stage: Loyal", "--format", "csv", "--limit", "1000")
    frame = pd.read_csv(io.StringIO(out))
    assert set(frame["person_id"]) == set(shop.segments.members("Stage: Loyal")["person_id"])
    assert set(frame["change"]) == {"enter"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create", "x", "--where", "{field: stage, op: eq, value: at risk}"], "rule.value: stage must be one of"),
        (["create", "x", "--where", "{event: Signed Up, within: 30x}"], "rule.within: '30x' is not a duration"),
        (["create", "x", "--where", "{all: []}"], "rule.all: must be a non-empty list"),
        (["create", "x", "--where", "{field: orders, op: contains, value: 3}"], "rule.op: contains does not apply"),
        (["create", "x"], "either --rule FILE or --where TEXT"),
        (["preview", "--where", "{trait: plan, op: gt}"], "rule.value: is required for gt"),
        (["show", "nope"], "no segment named 'nope'"),
        (["export", "Stage: Lead", "--out", "x.xlsx"], "must end in .csv or .parquet"),
        (["delete", "Stage: Lead"], "built-in"),
    ],
)
def test_bad_input_names_the_place_and_reason(shop: Workspace, args: list[str], message: str) -> None:
    code, out = cli(shop, *args)
    assert code == 1
    assert message in " ".join(out.split())
