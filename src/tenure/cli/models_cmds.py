"""``tenure models …``: train, evaluate, list, show, score, promote and report models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from tenure.cli._common import WorkspaceOption, console, key_value_table, open_workspace, progress_bar
from tenure.cli.output import FormatOption, OutOption, emit
from tenure.models.registry import MODEL_NAMES, RECOMMENDATIONS
from tenure.workspace import Workspace

app = typer.Typer(
    help="Predictive models: churn risk, purchase propensity, customer lifetime value, recommendations.",
    no_args_is_help=True,
)

NamesArgument = Annotated[
    list[str] | None, typer.Argument(help=f"Models: {', '.join(MODEL_NAMES)} (default: all).", show_default=False)
]
VersionOption = Annotated[int | None, typer.Option("--version", help="A registry version (default: the active one).")]
AsOfOption = Annotated[str | None, typer.Option("--as-of", help="Use the data before this date (default: all of it).")]


@app.command()
def train(
    names: NamesArgument = None,
    as_of: AsOfOption = None,
    horizon: Annotated[int | None, typer.Option(help="Outcome horizon in days (default: from [models]).")] = None,
    cutoffs: Annotated[int | None, typer.Option(help="Training cutoffs (default: from [models]).")] = None,
    oracle: Annotated[
        Path | None, typer.Option(help="A sample shop folder: report its ground truth next to the model.")
    ] = None,
    workspace: WorkspaceOption = Path("."),
) -> None:
    """Train, backtest and register a new version of each model; print metrics next to baselines."""
    with open_workspace(workspace) as ws:
        for name in names or MODEL_NAMES:
            with progress_bar(f"training {name}") as update:
                info = ws.models.train(name, as_of=as_of, horizon_days=horizon, cutoffs=cutoffs, oracle=oracle,
                                       progress=update)
            console.print(f"[bold]{info.tag}[/bold] ({info.status}): {info.metrics['headline']}")
            show_comparison(ws, name, info.version)


@app.command()
def evaluate(name: str, version: VersionOption = None, workspace: WorkspaceOption = Path("."),
             fmt: FormatOption = "table", out: OutOption = None) -> None:
    """A version's backtest metrics next to the baselines (and the oracle when it was given)."""
    with open_workspace(workspace) as ws:
        table = ws.models.comparison(name, version)
        display = ranking_display(table) if name == RECOMMENDATIONS else None
        emit(table, fmt=fmt, out=out, title=f"{ws.models.get(name, version).tag}: backtest", display=display)
        if name in ("churn", "propensity") and fmt == "table":
            rolling = pd.DataFrame(ws.models.get(name, version).metrics["rolling"])
            emit(rolling, fmt="table", out=None, title="ROC-AUC by backtest cutoff (trained only on earlier windows)")


@app.command("list")
def list_models(workspace: WorkspaceOption = Path("."), fmt: FormatOption = "table", out: OutOption = None) -> None:
    """Every registered version with its status and headline metrics."""
    with open_workspace(workspace) as ws:
        emit(ws.models.list(), fmt=fmt, out=out, title="models")


@app.command()
def show(name: str, version: VersionOption = None, workspace: WorkspaceOption = Path(".")) -> None:
    """A version's window, parameters, features and importance."""
    with open_workspace(workspace) as ws:
        info = ws.models.get(name, version)
        console.print(key_value_table(info.tag, {
            "status": info.status, "trained at": info.trained_at, "window": f"{info.window_start} – {info.window_end}",
            "scored at": info.scored_at or "never", "headline": info.metrics["headline"],
            **{f"param {k}": v for k, v in info.params.items()}, "features": ", ".join(info.features),
        }))
        if "importance" in info.metrics:
            emit(pd.DataFrame(info.metrics["importance"]), fmt="table", out=None, title="feature importance (gain share)")


@app.command()
def score(names: NamesArgument = None, as_of: AsOfOption = None, workspace: WorkspaceOption = Path(".")) -> None:
    """Score everyone with the active versions and write the scores to their profiles."""
    with open_workspace(workspace) as ws:
        counts = ws.models.score(names, as_of=as_of)
        for name, count in counts.items():
            console.print(f"{ws.models.get(name).tag}: scored {count:,} people")
        if counts:
            ws.segments.refresh()


@app.command()
def promote(name: str, version: int, workspace: WorkspaceOption = Path(".")) -> None:
    """Make a version the active one (the one scoring uses)."""
    with open_workspace(workspace) as ws:
        console.print(f"{ws.models.promote(name, version).tag} is now active")


@app.command()
def report(
    names: NamesArgument = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="The HTML file to write.")] = Path("model-report.html"),
    workspace: WorkspaceOption = Path("."),
) -> None:
    """Write an HTML report with charts: ROC, calibration, lift, importance, CLV and holdout tracking."""
    from tenure.models.report import write_report

    with open_workspace(workspace) as ws:
        console.print(f"report written to {write_report(ws.models, out, names=names)}")


def show_comparison(ws: Workspace, name: str, version: int | None = None) -> None:
    """The backtest table of one model version, as the demo and `train` print it."""
    table = ws.models.comparison(name, version)
    if name == RECOMMENDATIONS:
        emit(table, fmt="table", out=None, title=f"{name}: algorithms vs popularity", display=ranking_display(table))
    else:
        emit(table, fmt="table", out=None, title=f"{name}: model vs baselines")


def ranking_display(evaluation: pd.DataFrame) -> pd.DataFrame:
    """The recommenders' evaluation narrowed for a terminal: test metrics, validation NDCG, the choice starred."""
    test = evaluation[evaluation["window"] == "test"].set_index("algorithm")
    validation = evaluation[evaluation["window"] == "validation"].set_index("algorithm")["ndcg"]
    shown = pd.DataFrame({
        "algorithm": [f"{name} *" if test.loc[name, "chosen"] else name for name in test.index],
        "ndcg (valid.)": validation.reindex(test.index).to_numpy(),
        **{column: test[column].to_numpy() for column in ("ndcg", "precision", "recall", "map", "coverage")},
        "pop. bias": test["popularity_bias"].to_numpy(),
    })
    return shown.round(3)
