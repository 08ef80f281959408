"""``tenure models report``: one self-contained HTML page on how far each model can be trusted.

The numbers come from the registry (what ``tenure models show`` prints), the charts from the
stored evaluation of the same version. The page is built as plain data (sections of facts,
tables and charts) and rendered by ``templates/model_report.html.j2``; charts are embedded as
base64 PNG, so the file can be mailed or archived with nothing else.
"""

from __future__ import annotations

import base64
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment
from matplotlib.figure import Figure

from tenure.errors import NotFoundError, ValidationError
from tenure.models.charts import (
    LABELS,
    calibration_chart,
    clv_distribution_chart,
    gains_chart,
    importance_chart,
    png,
    ranking_chart,
    roc_chart,
)
from tenure.models.clv_holdout import plot_holdout
from tenure.models.lifetime_value import TrainedLifetimeValue
from tenure.models.outcomes import BGNBD, MODEL, ORACLE, RFM_LOGISTIC, TrainedOutcome
from tenure.models.recommend_training import TrainedRecommender
from tenure.models.registry import MODEL_NAMES, ModelInfo

if TYPE_CHECKING:
    from tenure.models.service import Models

COMPARED = (MODEL, RFM_LOGISTIC, BGNBD, ORACLE)
CONTENDERS = (MODEL, RFM_LOGISTIC, BGNBD)  # the oracle is a ceiling, not a contender
# (metric key, column title, whether higher is better)
METRICS: tuple[tuple[str, str, bool], ...] = (
    ("roc_auc", "ROC-AUC", True),
    ("pr_auc", "PR-AUC", True),
    ("brier", "Brier score", False),
    ("lift_top", "Lift, top 10%", True),
    ("capture_top", "Capture, top 10%", True),
)
TITLES = {
    "churn": "Churn risk", "propensity": "Purchase propensity", "clv": "Customer lifetime value",
    "recommendations": "Recommendations",
}
# (metric key, column title) of the recommenders' evaluation tables
RANKING: tuple[tuple[str, str], ...] = (
    ("ndcg", "NDCG@k"), ("precision", "Precision@k"), ("recall", "Recall@k"), ("map", "MAP@k"),
    ("coverage", "Catalogue coverage"), ("popularity_bias", "Popularity bias"),
)


@dataclass(frozen=True, slots=True)
class Cell:
    text: str
    best: bool = False


@dataclass(frozen=True, slots=True)
class Table:
    key: str
    title: str
    explanation: str
    header: list[str]
    rows: list[list[Cell]]


@dataclass(frozen=True, slots=True)
class Chart:
    key: str
    title: str
    explanation: str
    png_base64: str


@dataclass(frozen=True, slots=True)
class Section:
    name: str
    title: str
    headline: str
    facts: list[tuple[str, str]]
    tables: list[Table] = field(default_factory=list)
    charts: list[Chart] = field(default_factory=list)


def write_report(models: Models, path: Path, *, names: Sequence[str] | None = None) -> Path:
    """Write the report on ``names`` (default: every model with an active version) to ``path``."""
    target = _check_path(Path(path))
    chosen = list(names) if names else _active_names(models)
    if not chosen:
        raise NotFoundError("there is no active model to report on; train one with `tenure models train <name>`")
    sections = [_section(models, name) for name in chosen]
    html = _template().render(sections=sections, generated_at=_when(models.ws.clock.now()))
    partial = target.with_name(f".{target.name}.partial")
    try:
        partial.write_text(html, encoding="utf-8")
        os.replace(partial, target)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise ValidationError("path", f"cannot write {target}: {exc.strerror or exc}") from exc
    return target


def _section(models: Models, name: str) -> Section:
    info = models.get(name)
    fitted = models.trained(name, info.version)
    if isinstance(fitted, TrainedLifetimeValue):
        return _clv_section(info, fitted)
    if isinstance(fitted, TrainedRecommender):
        return _recommendation_section(info, models.ws.recommendations.evaluation(info.version))
    return _outcome_section(info, fitted)


# -- recommendations ------------------------------------------------------------------------
def _recommendation_section(info: ModelInfo, evaluation: pd.DataFrame) -> Section:
    k = int(info.params["k"])
    tables = [
        Table(
            window, f"{window.capitalize()} window", explanation, ["Algorithm", *(title for _, title in RANKING)],
            [[Cell(f"{row['algorithm']}{' (chosen)' if row['chosen'] else ''}", bool(row["chosen"]))]
             + [Cell(_three(row[key])) for key, _ in RANKING]
             for row in evaluation[evaluation["window"] == window].to_dict(orient="records")],
        )
        for window, explanation in (
            ("validation", "Every algorithm fitted on the data before the validation window and scored on what people "
             "bought in it; the best NDCG is the one chosen."),
            ("test", "The same, one window later, on data the choice never saw: how the chosen algorithm compares "
             "with popularity. Coverage is the share of the catalogue anyone is shown; popularity bias is the mean "
             "popularity percentile of what is shown (0.5 is no bias)."),
        )
    ]
    return Section(
        name=info.name, title=TITLES[info.name], headline=info.metrics["headline"],
        facts=_registry_facts(info) + [("Algorithm", str(info.params["algorithm"])),
                                       ("Windows", f"{info.params['test_days']} days each")],
        tables=tables,
        charts=[_chart("ranking", f"NDCG@{k} per algorithm", ranking_chart(evaluation, k=k),
                       "How well each algorithm ranks the items people went on to buy, on both windows. "
                       "Popularity is the baseline every personalised model must beat.")],
    )


# -- outcome models (churn, propensity) -------------------------------------------------------
def _outcome_section(info: ModelInfo, fitted: TrainedOutcome) -> Section:
    params, metrics = info.params, info.metrics
    compared = [m for m in COMPARED if m in metrics["backtest"]]
    predictions = fitted.headline.predictions
    facts = _registry_facts(info) + [
        ("Predicts", _predicts(params)),
        ("Training cutoffs", ", ".join(_day(c) for c in params["cutoffs"])),
        ("Backtest cutoff", _day(metrics["backtest_cutoff"])),
        ("Training examples", f"{metrics['examples']:,}"),
    ]
    return Section(
        name=info.name,
        title=TITLES[info.name],
        headline=metrics["headline"],
        facts=facts,
        tables=[_metrics_table(metrics["backtest"], compared), _rolling_table(fitted)],
        charts=[
            _chart("roc", "ROC curve", roc_chart(predictions, compared),
                   "How well each model ranks people: the further a curve bows towards the top left, the better it "
                   "puts the people who did turn out positive above those who did not. The diagonal is a random "
                   "guess; the area under the curve is the ROC-AUC in the table."),
            _chart("calibration", "Calibration", calibration_chart(predictions, compared),
                   "Whether a score can be read as a probability: people are grouped by predicted probability "
                   "and each point shows how many of them really turned out positive. Points on the diagonal "
                   "mean that a score of 0.3 happens about 30% of the time, so thresholds in journeys mean "
                   "what they say."),
            _chart("gains", "Cumulative gains (lift)", gains_chart(predictions, compared),
                   "If you target the people with the highest scores first, this shows the share of all positives "
                   "you reach for each share of people contacted. The dot at the top 10% is the capture in the "
                   "table; lift is that capture divided by 10%, i.e. how many times better than picking at random."),
            _chart("importance", "Feature importance", importance_chart(fitted.importance),
                   "Which inputs the model relies on most overall (share of the total split gain)."
                   + (" Each person's own top reasons are stored on their profile as churn_reasons."
                      if info.name == "churn" else "")),
        ],
    )


def _predicts(params: dict[str, Any]) -> str:
    event = "an order" if params["target"] == "propensity" else (
        "no order" if params["basis"] == "orders" else "no activity"
    )
    return f"{event} in the {params['horizon_days']} days after a cutoff"


def _metrics_table(backtest: dict[str, dict[str, float]], compared: list[str]) -> Table:
    """Models as rows, metrics as columns; the best contender per column is marked (the oracle is a ceiling)."""
    contenders = [m for m in CONTENDERS if m in backtest]
    best = {key: (max if higher else min)(backtest[m][key] for m in contenders) for key, _, higher in METRICS}
    rows = [
        [Cell(LABELS[m])] + [_metric_cell(key, backtest[m][key], m in CONTENDERS and backtest[m][key] == best[key])
                             for key, *_ in METRICS]
        for m in compared
    ]
    head = backtest[MODEL]
    note = (
        f"Scored at the latest cutoff on {int(head['examples']):,} people, of whom {head['base_rate']:.1%} turned out "
        "positive, by models trained only on earlier periods. ROC-AUC and PR-AUC measure ranking (higher is "
        "better), the Brier score measures how close probabilities are to outcomes (lower is better), lift and "
        "capture measure what targeting the top 10% would reach. The best of the model and its baselines is in bold."
    )
    if ORACLE in backtest:
        note += (
            f" The oracle is the sample generator's truth: the probability given each person's true purchase rate "
            f"and dropout probability and their order history (it knows {backtest[ORACLE]['coverage']:.0%} of these "
            "people). It shows the gap to the best a model of orders alone could do; a model that also reads "
            "browsing can beat it."
        )
    return Table("metrics", "Model against baselines", note, ["Model"] + [title for _, title, _ in METRICS], rows)


def _rolling_table(fitted: TrainedOutcome) -> Table:
    rows = [
        [Cell(_day(b.cutoff)), Cell(str(len(b.train_cutoffs)))]
        + [Cell(_three(b.metrics[m]["roc_auc"]) if m in b.metrics else "–") for m in CONTENDERS]
        for b in fitted.backtests
    ]
    return Table(
        "rolling",
        "Rolling backtest (ROC-AUC)",
        "The same evaluation at earlier cutoffs, each model trained only on periods that had fully ended by then. "
        "Stable numbers mean the model is not just lucky on the latest period.",
        ["Cutoff", "Training cutoffs"] + [LABELS[m] for m in CONTENDERS],
        rows,
    )


# -- customer lifetime value -----------------------------------------------------------------
def _clv_section(info: ModelInfo, fitted: TrainedLifetimeValue) -> Section:
    metrics = info.metrics
    clv = fitted.values["clv_365d"]
    facts = _registry_facts(info) + [
        ("Holdout", f"the last {info.params['holdout_days']} days of orders"),
        ("Annual discount rate", f"{info.params['discount_rate']:.0%}"),
        ("Customers", f"{metrics['customers']:,}"),
    ]
    parameters = [
        ("r", "r", "BG/NBD: shape of how purchase rates vary between customers"),
        ("alpha", "α", "BG/NBD: scale of the purchase rates (in days)"),
        ("a", "a", "BG/NBD: dropout after a purchase, Beta shape a"),
        ("b", "b", "BG/NBD: dropout after a purchase, Beta shape b"),
        ("log_likelihood", "log-likelihood", "BG/NBD fit on the whole history"),
        ("p", "p", "Gamma-Gamma: shape of a customer's spend per order"),
        ("q", "q", "Gamma-Gamma: shape of how mean spend varies between customers"),
        ("gamma", "γ", "Gamma-Gamma: scale of how mean spend varies between customers"),
    ]
    holdout = [
        ("holdout_customers", "Customers in the check", _count),
        ("holdout_actual", "Repeat purchases in the holdout, actual", _count),
        ("holdout_predicted", "Repeat purchases in the holdout, predicted", _count),
        ("holdout_error", "Error of the total", _signed_percent),
        ("holdout_mae", "Mean absolute error per customer, BG/NBD", _three),
        ("holdout_mae_naive_rate", "… if each customer kept their past rate", _three),
        ("holdout_spend_mae", "Mean absolute error of spend per order, Gamma-Gamma", _three),
        ("holdout_spend_mae_population_mean", "… if everyone spent the average", _three),
    ]
    return Section(
        name=info.name,
        title=TITLES[info.name],
        headline=metrics["headline"],
        facts=facts,
        tables=[
            Table("parameters", "Fitted parameters",
                  "BG/NBD predicts how often a customer buys and whether they are still around; Gamma-Gamma "
                  "predicts how much they spend per order. Fitted by maximum likelihood on every customer's history.",
                  ["Parameter", "Value", "Meaning"],
                  [[Cell(label), Cell(_three(metrics[key])), Cell(meaning)] for key, label, meaning in parameters]),
            Table("holdout", "Holdout check",
                  f"The models were fitted without the last {metrics['holdout_days']} days of orders, asked to "
                  "predict them, and compared with what happened, next to naive forecasts they should beat.",
                  ["Measure", "Value"],
                  [[Cell(label), Cell(show(metrics[key]))] for key, label, show in holdout]),
        ],
        charts=[
            _chart("holdout", "Holdout tracking", plot_holdout(fitted.tracking, fitted.by_frequency),
                   "Left: repeat purchases of the customer cohort, week by week, actual against BG/NBD; the dotted "
                   "line is where the holdout starts, so the curve right of it is a true forecast. Right: for "
                   "customers grouped by how often they bought before the holdout, their mean purchases in it, "
                   "actual against predicted."),
            _chart("clv_distribution", "CLV distribution", clv_distribution_chart(clv),
                   f"Discounted value of each customer's next 365 days (mean {clv.mean():,.2f}, median "
                   f"{clv.median():,.2f}). A long right tail is normal: a few customers carry much of the value, "
                   "so the top 1% are gathered in the last bar to keep the rest readable."),
        ],
    )


# -- shared -------------------------------------------------------------------------------
def _registry_facts(info: ModelInfo) -> list[tuple[str, str]]:
    return [
        ("Version", f"{info.tag} ({info.status})"),
        ("Trained at", _when(info.trained_at)),
        ("Training window", f"{_when(info.window_start)} to {_when(info.window_end)}"),
        ("Last scored", _when(info.scored_at) if info.scored_at else "never"),
    ]


def _chart(key: str, title: str, figure: Figure, explanation: str) -> Chart:
    return Chart(key, title, explanation, base64.b64encode(png(figure)).decode("ascii"))


def _active_names(models: Models) -> list[str]:
    table = models.list()
    active = set(table.loc[table["status"] == "active", "name"])
    return [name for name in MODEL_NAMES if name in active]


def _check_path(path: Path) -> Path:
    """Fail before the slow part when the report could not be written anyway."""
    if path.is_dir():
        raise ValidationError("path", f"{path} is a folder; give a file name such as model-report.html")
    if not path.parent.is_dir():
        raise ValidationError("path", f"the folder {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise ValidationError("path", f"the folder {path.parent} is not writable")
    return path


def _template() -> Any:
    text = resources.files("tenure").joinpath("templates/model_report.html.j2").read_text(encoding="utf-8")
    return SandboxedEnvironment(autoescape=True, undefined=StrictUndefined).from_string(text)


def _metric_cell(key: str, value: float, best: bool) -> Cell:
    return Cell(_percent(value) if key == "capture_top" else _three(value), best)


def _three(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.3f}"


def _count(value: float) -> str:
    return f"{value:,.0f}"


def _percent(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.1%}"


def _signed_percent(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:+.1%}"


def _day(value: str | datetime) -> str:
    return (datetime.fromisoformat(value) if isinstance(value, str) else value).strftime("%Y-%m-%d")


def _when(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M %Z").strip()

