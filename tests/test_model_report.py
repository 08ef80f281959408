"""The HTML model report: self-contained, complete, and showing exactly the registry's numbers; its charts' data."""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import roc_curve

from tenure import Workspace
from tenure.errors import NotFoundError, ValidationError
from tenure.models.charts import (
    calibration_chart,
    clv_distribution_chart,
    gains_chart,
    importance_chart,
    roc_chart,
)
from tenure.models.report import write_report

from conftest import make_workspace

# Both files read the session's trained shop: keep them on one xdist worker so it is built once.

OUTCOME_CHARTS = ["roc", "calibration", "gains", "importance"]
ROW_LABELS = {
    "Gradient boosting (this model)": "gradient_boosting",
    "RFM logistic (baseline)": "rfm_logistic",
    "BG/NBD (baseline)": "bgnbd",
    "Oracle (generator's truth)": "oracle",
}
COLUMNS = {"ROC-AUC": "roc_auc", "PR-AUC": "pr_auc", "Brier score": "brier", "Lift, top 10%": "lift_top",
           "Capture, top 10%": "capture_top"}


# -- a parsed report ---------------------------------------------------------------------------
@dataclass
class ParsedTable:
    header: list[str] = field(default_factory=list)
    rows: list[list[tuple[str, bool]]] = field(default_factory=list)  # (text, marked best)

    def records(self) -> dict[str, dict[str, tuple[str, bool]]]:
        """Rows keyed by their first cell, cells keyed by column title."""
        return {row[0][0]: dict(zip(self.header[1:], row[1:], strict=True)) for row in self.rows}


@dataclass
class ParsedSection:
    facts: dict[str, str] = field(default_factory=dict)
    tables: dict[str, ParsedTable] = field(default_factory=dict)
    charts: dict[str, str] = field(default_factory=dict)  # key -> img src


class ReportParser(HTMLParser):
    """Collects sections, their facts, tables and chart images, and every tag used."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: dict[str, ParsedSection] = {}
        self.tags: set[str] = set()
        self.links: list[str] = []
        self._section: ParsedSection | None = None
        self._table: ParsedTable | None = None
        self._chart: str | None = None
        self._text: list[str] | None = None
        self._best = False
        self._dt: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.add(tag)
        self.links += [v for k, v in attrs if k in ("href", "src") and v]
        if tag == "section":
            self._section = self.sections.setdefault(str(a["data-model"]), ParsedSection())
        elif tag == "table" and self._section is not None:
            self._table = self._section.tables.setdefault(str(a["data-table"]), ParsedTable())
        elif tag == "tr" and self._table is not None:
            self._row: list[tuple[str, bool]] = []
        elif tag in ("td", "th", "dt", "dd"):
            self._text, self._best = [], a.get("class") == "best"
        elif tag == "figure" and self._section is not None:
            self._chart = a["data-chart"]
        elif tag == "img" and self._chart is not None and self._section is not None:
            self._section.charts[self._chart] = str(a["src"])

    def handle_endtag(self, tag: str) -> None:
        text = "".join(self._text or []).strip()
        if tag == "th" and self._table is not None:
            self._table.header.append(text)
        elif tag == "td" and self._table is not None:
            self._row.append((text, self._best))
        elif tag == "tr" and self._table is not None and self._row:
            self._table.rows.append(self._row)
            self._row = []
        elif tag == "table":
            self._table = None
        elif tag == "figure":
            self._chart = None
        elif tag == "dt":
            self._dt = text
        elif tag == "dd" and self._section is not None and self._dt is not None:
            self._section.facts[self._dt] = text
        elif tag == "section":
            self._section = None
        if tag in ("td", "th", "dt", "dd"):
            self._text = None

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)


def parse(path: Path) -> ReportParser:
    parser = ReportParser()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    return parser


def number(text: str) -> float:
    """A cell's value: ``0.812``, ``1,480``, ``18.0%``, ``-5.8%``."""
    clean = text.replace(",", "")
    return float(clean[:-1]) / 100 if clean.endswith("%") else float(clean)


def shown_as(text: str, value: float) -> bool:
    """Whether ``text`` is ``value`` rounded to the digits the text shows."""
    decimals = len(text.rstrip("%").split(".")[1]) if "." in text else 0
    scale = 100 if text.endswith("%") else 1
    return math.isclose(number(text) * scale, round(value * scale, decimals), abs_tol=10 ** -(decimals + 3))


# -- a small trained shop ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(trained_shop: Workspace) -> Workspace:
    """Churn trained with the generator's oracle, propensity without, and CLV (conftest)."""
    return trained_shop


@pytest.fixture(scope="module")
def report(trained: Workspace, tmp_path_factory: pytest.TempPathFactory) -> ReportParser:
    path = tmp_path_factory.mktemp("report") / "model-report.html"
    assert write_report(trained.models, path) == path
    return parse(path)


def test_one_section_per_active_model_with_every_chart(report: ReportParser) -> None:
    assert list(report.sections) == ["churn", "propensity", "clv"]
    for name in ("churn", "propensity"):
        assert list(report.sections[name].charts) == OUTCOME_CHARTS
        assert list(report.sections[name].tables) == ["metrics", "rolling"]
    assert list(report.sections["clv"].charts) == ["holdout", "clv_distribution"]
    assert list(report.sections["clv"].tables) == ["parameters", "holdout"]


def test_self_contained_and_every_image_is_a_png(report: ReportParser) -> None:
    assert not report.tags & {"script", "link", "iframe", "object"}
    assert all(link.startswith(("#", "data:image/png;base64,")) for link in report.links)
    sources = [src for section in report.sections.values() for src in section.charts.values()]
    assert len(sources) == 10
    for src in sources:
        data = base64.b64decode(src.removeprefix("data:image/png;base64,"), validate=True)
        with Image.open(io.BytesIO(data)) as image:
            assert image.format == "PNG"
            assert image.width > 300 and image.height > 200
            image.verify()


@pytest.mark.parametrize("name", ["churn", "propensity"])
def test_metrics_table_shows_the_registry_metrics_and_marks_the_best(
    trained: Workspace, report: ReportParser, name: str
) -> None:
    stored = trained.models.get(name).metrics["backtest"]
    table = report.sections[name].tables["metrics"]
    rows = {ROW_LABELS[label]: cells for label, cells in table.records().items()}
    assert set(rows) == set(stored)
    for model, cells in rows.items():
        assert {COLUMNS[c] for c in cells} == set(COLUMNS.values())
        for column, (text, _) in cells.items():
            assert shown_as(text, stored[model][COLUMNS[column]]), (model, column, text)
    contenders = [m for m in stored if m != "oracle"]
    for column, key in COLUMNS.items():
        pick = min if key == "brier" else max
        best = pick(stored[m][key] for m in contenders)
        marked = {m for m, cells in rows.items() if cells[column][1]}
        assert marked == {m for m in contenders if stored[m][key] == best}, column


def test_oracle_column_only_for_the_model_trained_with_it(trained: Workspace, report: ReportParser) -> None:
    assert "oracle" in trained.models.get("churn").metrics["backtest"]
    assert "oracle" not in trained.models.get("propensity").metrics["backtest"]
    assert "Oracle (generator's truth)" in report.sections["churn"].tables["metrics"].records()
    assert "Oracle (generator's truth)" not in report.sections["propensity"].tables["metrics"].records()


@pytest.mark.parametrize("name", ["churn", "propensity"])
def test_rolling_backtest_and_registry_facts(trained: Workspace, report: ReportParser, name: str) -> None:
    info = trained.models.get(name)
    section = report.sections[name]
    rolling = section.tables["rolling"].records()
    stored = {r["cutoff"][:10]: r["roc_auc"] for r in info.metrics["rolling"]}
    assert list(rolling) == list(stored)
    for cutoff, cells in rolling.items():
        assert shown_as(cells["Gradient boosting (this model)"][0], stored[cutoff])
    assert section.facts["Version"] == f"{name}-v{info.version} (active)"
    assert section.facts["Training cutoffs"] == ", ".join(c[:10] for c in info.params["cutoffs"])
    assert section.facts["Trained at"].startswith(info.trained_at.strftime("%Y-%m-%d %H:%M"))
    assert section.facts["Training window"].startswith(info.window_start.strftime("%Y-%m-%d"))
    assert str(info.params["horizon_days"]) in section.facts["Predicts"]
    assert number(section.facts["Training examples"]) == info.metrics["examples"]


def test_clv_parameters_and_holdout_numbers(trained: Workspace, report: ReportParser) -> None:
    metrics = trained.models.get("clv").metrics
    section = report.sections["clv"]
    parameters = section.tables["parameters"].records()
    names = {"r": "r", "α": "alpha", "a": "a", "b": "b", "log-likelihood": "log_likelihood", "p": "p", "q": "q",
             "γ": "gamma"}
    assert set(parameters) == set(names)
    for label, key in names.items():
        assert shown_as(parameters[label]["Value"][0], metrics[key]), label
    holdout = section.tables["holdout"].records()
    assert shown_as(holdout["Repeat purchases in the holdout, actual"]["Value"][0], metrics["holdout_actual"])
    assert shown_as(holdout["Repeat purchases in the holdout, predicted"]["Value"][0], metrics["holdout_predicted"])
    assert shown_as(holdout["Error of the total"]["Value"][0], metrics["holdout_error"])
    assert number(section.facts["Customers"]) == metrics["customers"]


def test_names_choose_the_sections(trained: Workspace, tmp_path: Path) -> None:
    path = write_report(trained.models, tmp_path / "clv.html", names=["clv"])
    assert list(parse(path).sections) == ["clv"]


def test_bad_input_names_what_is_wrong(trained: Workspace, tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as unknown:
        write_report(trained.models, tmp_path / "r.html", names=["lifetime"])
    assert unknown.value.field == "model"
    with pytest.raises(ValidationError) as missing_folder:
        write_report(trained.models, tmp_path / "nowhere" / "r.html")
    assert missing_folder.value.field == "path"
    with pytest.raises(ValidationError) as folder:
        write_report(trained.models, tmp_path)
    assert folder.value.field == "path"
    assert not list(tmp_path.iterdir())


def test_no_active_model_is_not_found(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "empty")
    try:
        with pytest.raises(NotFoundError, match="no active model"):
            write_report(ws.models, tmp_path / "r.html")
        with pytest.raises(NotFoundError, match="churn"):
            write_report(ws.models, tmp_path / "r.html", names=["churn"])
    finally:
        ws.close()
    assert not (tmp_path / "r.html").exists()


# -- chart data on hand-made examples -----------------------------------------------------------
@pytest.fixture
def predictions() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    label = np.array([0, 1] * 20)
    model = np.clip(0.3 * label + rng.uniform(0, 0.7, 40), 0, 1)
    oracle = np.where(np.arange(40) % 5 == 0, np.nan, rng.uniform(0, 1, 40))
    return pd.DataFrame({"label": label, "gradient_boosting": model, "oracle": oracle})


def test_roc_lines_are_sklearns_curves(predictions: pd.DataFrame) -> None:
    lines = roc_chart(predictions, ["gradient_boosting", "oracle"]).axes[0].lines
    known = predictions[predictions["oracle"].notna()]
    pairs = [(predictions["label"], predictions["gradient_boosting"]), (known["label"], known["oracle"])]
    for line, (y, p) in zip(lines[:2], pairs, strict=True):
        fpr, tpr, _ = roc_curve(y, p)
        np.testing.assert_allclose(line.get_xdata(), fpr)
        np.testing.assert_allclose(line.get_ydata(), tpr)
    assert list(lines[2].get_xydata().ravel()) == [0, 0, 1, 1]  # the chance diagonal


def test_calibration_points_are_equal_count_bin_means(predictions: pd.DataFrame) -> None:
    line = calibration_chart(predictions, ["gradient_boosting"], bins=4).axes[0].lines[0]
    ordered = predictions.sort_values("gradient_boosting")
    bins = np.repeat(np.arange(4), 10)  # 40 distinct scores: four bins of ten
    np.testing.assert_allclose(line.get_xdata(), ordered["gradient_boosting"].groupby(bins).mean())
    np.testing.assert_allclose(line.get_ydata(), ordered["label"].groupby(bins).mean())


def test_gains_curve_and_top_mark_by_brute_force(predictions: pd.DataFrame) -> None:
    curve, mark = gains_chart(predictions, ["gradient_boosting"]).axes[0].lines[:2]
    labels = predictions.sort_values("gradient_boosting", ascending=False)["label"].to_numpy()
    shares = np.arange(1, 21) / 20
    captured = [labels[: math.ceil(s * 40)].sum() / labels.sum() for s in shares]
    np.testing.assert_allclose(curve.get_xdata(), np.r_[0, shares])
    np.testing.assert_allclose(curve.get_ydata(), np.r_[0, captured])
    np.testing.assert_allclose(mark.get_xydata(), [[0.1, labels[:4].sum() / labels.sum()]])


def test_importance_shows_the_top_fifteen_largest_first() -> None:
    importance = pd.DataFrame({"feature": [f"f{k}" for k in range(20)], "gain_share": np.arange(20) / 190})
    axes = importance_chart(importance).axes[0]
    assert [t.get_text() for t in axes.get_yticklabels()] == [f"f{k}" for k in range(19, 4, -1)]
    np.testing.assert_allclose([bar.get_width() for bar in axes.patches], np.arange(19, 4, -1) / 190)


def test_clv_histogram_counts_everyone_and_clips_the_top_percent() -> None:
    values = pd.Series(np.r_[np.linspace(0, 99, 199), 10_000.0])  # one huge customer among 200
    bars = clv_distribution_chart(values).axes[0].patches
    heights = np.array([bar.get_height() for bar in bars])
    assert heights.sum() == 200
    right = bars[-1].get_x() + bars[-1].get_width()
    assert right == pytest.approx(np.percentile(values, 99))
    assert right < 100
    assert heights[-1] == (values >= bars[-1].get_x()).sum()
    with pytest.raises(ValidationError) as bad:
        clv_distribution_chart(pd.Series([1.0, np.inf]))
    assert bad.value.field == "clv"


def test_a_model_without_predictions_is_named(predictions: pd.DataFrame) -> None:
    with pytest.raises(ValidationError) as missing:
        roc_chart(predictions, ["bgnbd"])
    assert missing.value.field == "models"
