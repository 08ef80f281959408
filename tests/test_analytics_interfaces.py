"""The analytics through their interfaces: Workspace methods, the CLI's formats, the Spark setting."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from tenure import Workspace
from tenure.analytics.rfm import RFM_SEGMENTS
from tenure.analytics.stages import STAGES
from tenure.cli import app

runner = CliRunner()


def cli(ws: Workspace, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, [*args, "-w", str(ws.settings.root)], env={"COLUMNS": "60"})
    return result.exit_code, result.output


def latest_day(ws: Workspace) -> str:
    with ws.engine() as engine:
        latest = engine.tables().events.timestamp.max().execute()
    return str(pd.Timestamp(latest).tz_convert(ws.settings.timezone).date())


def test_dates_default_to_the_latest_data(sample_shop: Workspace) -> None:
    day = latest_day(sample_shop)
    assert sample_shop.stage_distribution().equals(sample_shop.stage_distribution(as_of=day))
    before = sample_shop.stage_distribution(as_of="2025-02-01")
    assert not before.equals(sample_shop.stage_distribution())
    assert list(before.stage) == list(STAGES) and before.share.sum() == pytest.approx(1.0)


def test_stage_distribution_counts_the_per_person_stages(sample_shop: Workspace) -> None:
    people = sample_shop.stages(as_of="2025-04-15")
    counts = people.stage.value_counts()
    distribution = sample_shop.stage_distribution(as_of="2025-04-15").set_index("stage")
    assert distribution.people.sum() == len(people)
    for stage in STAGES:
        assert distribution.people[stage] == counts.get(stage, 0)


def test_history_instants_are_local_day_ends_counting_back_from_end(sample_shop: Workspace) -> None:
    flow = sample_shop.stage_flow(start="2025-03-01", end="2025-04-30", every="week")
    instants = sorted(flow.as_of.unique())
    assert instants[-1] == pd.Timestamp("2025-05-01", tz="UTC")
    assert all(b - a == pd.Timedelta(days=7) for a, b in zip(instants, instants[1:], strict=False))
    assert instants[0] >= pd.Timestamp("2025-03-01", tz="UTC") and len(instants) == 9


@pytest.mark.parametrize(
    ("command", "method"),
    [
        (["stages"], lambda ws: ws.stage_distribution()),
        (["stages", "--people", "--as-of", "2025-04-01"], lambda ws: ws.stages("2025-04-01")),
        (["rfm"], lambda ws: ws.rfm_segments()),
        (["rfm", "--people"], lambda ws: ws.rfm()),
        (["cohorts", "--period", "week", "--by", "channel"], lambda ws: ws.cohorts("week", by="channel")),
        (["funnel", "Product Viewed", "Product Added", "--window", "2d"],
         lambda ws: ws.funnel(["Product Viewed", "Product Added"], window=timedelta(days=2))),
        (["paths", "Product Viewed", "--depth", "2"], lambda ws: ws.paths("Product Viewed", depth=2)),
        (["kpis", "--period", "month"], lambda ws: ws.kpis("month")),
    ],
)
def test_cli_csv_is_the_python_result(sample_shop: Workspace, command: list[str], method: object) -> None:
    code, output = cli(sample_shop, *command, "--format", "csv")
    assert code == 0, output
    expected = method(sample_shop)  # type: ignore[operator]
    printed = pd.read_csv(io.StringIO(output))
    assert list(printed.columns) == list(expected.columns)
    assert len(printed) == len(expected) > 0
    numeric = [c for c in expected.columns if pd.api.types.is_numeric_dtype(expected[c]) and expected[c].dtype != bool]
    pd.testing.assert_frame_equal(printed[numeric], expected[numeric].reset_index(drop=True), check_dtype=False, rtol=1e-6)


def test_json_parquet_and_table_outputs(sample_shop: Workspace, tmp_path: Path) -> None:
    expected = sample_shop.rfm_segments()
    code, output = cli(sample_shop, "rfm", "--format", "json")
    assert code == 0 and [row["segment"] for row in json.loads(output)] == list(expected.segment)
    code, output = cli(sample_shop, "rfm", "--out", str(tmp_path / "rfm.parquet"))
    assert code == 0, output
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "rfm.parquet"), expected)
    code, output = cli(sample_shop, "rfm")
    # The first column names the rows and is never squeezed, however narrow the terminal.
    assert code == 0 and all(name in output for name in RFM_SEGMENTS)
    code, output = cli(sample_shop, "cohorts", "--metric", "order_retention")
    assert code == 0 and "cohort" in output and "%" in output


@pytest.mark.parametrize(
    ("command", "field"),
    [
        (["funnel", "Product Viewed"], "steps"),
        (["funnel", "Product Viewed", "Product Added", "--window", "7x"], "window"),
        (["funnel", "Product Viewed[category", "Product Added"], "steps"),
        (["stages", "--as-of", "2025-13-01"], "as_of"),
        (["rfm", "--format", "parquet"], "out"),
        (["kpis", "--start", "2025-05-01", "--end", "2025-04-01"], "start"),
    ],
)
def test_bad_input_names_the_field(sample_shop: Workspace, command: list[str], field: str) -> None:
    code, output = cli(sample_shop, *command)
    assert code == 1 and field in output and "Traceback" not in output


def test_an_empty_workspace_asks_for_a_date(sqlite_workspace: Workspace) -> None:
    code, output = cli(sqlite_workspace, "stages")
    assert code == 1 and "as_of" in output


@pytest.mark.spark
def test_the_spark_setting_runs_the_same_analyses(sample_shop: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENURE_ENGINE", "spark")
    with Workspace(sample_shop.settings.root) as spark_ws:
        assert spark_ws.engine().name == "spark"
        as_of = datetime(2025, 5, 1, tzinfo=UTC)
        # Each analysis is compared on both engines in its own test file; here the setting and
        # the Workspace's date defaults (scalars from Spark) are what is checked.
        for call in (
            lambda ws: ws.stage_distribution(as_of),
            lambda ws: ws.funnel(["Product Viewed", "Order Completed"]),
        ):
            pd.testing.assert_frame_equal(call(spark_ws), call(sample_shop), check_exact=False, rtol=1e-9)
