"""``tenure stages|rfm|cohorts|funnel|paths|kpis``: the analytics, printed or saved.

Thin wrappers over the ``Workspace`` analytics methods; a table shows the view a person reads
(a distribution, a pivot), the file formats carry the full long-form result.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

import pandas as pd
import typer

from tenure.cli._common import WorkspaceOption, open_workspace
from tenure.cli.output import FormatOption, OutOption, emit
from tenure.errors import ValidationError

AsOfOption = Annotated[str | None, typer.Option("--as-of", help="Date (YYYY-MM-DD, whole day) or timestamp; default: the latest data.")]
StartOption = Annotated[str | None, typer.Option(help="First day (YYYY-MM-DD); default depends on the report.")]
EndOption = Annotated[str | None, typer.Option(help="Last day (YYYY-MM-DD); default: the day of the latest event.")]
PeriodOption = Annotated[Literal["day", "week", "month"], typer.Option(help="Calendar period (local days, Monday weeks).")]
_WINDOW = re.compile(r"^(\d+)([dhm])$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def stages(
    workspace: WorkspaceOption = Path("."),
    as_of: AsOfOption = None,
    people: Annotated[bool, typer.Option("--people", help="One row per person instead of the distribution.")] = False,
    history: Annotated[bool, typer.Option("--history", help="People per stage at the end of each day/week.")] = False,
    since: Annotated[str | None, typer.Option(help="Transition matrix from this date to --as-of.")] = None,
    start: StartOption = None,
    every: Annotated[Literal["day", "week"], typer.Option(help="Step of --history.")] = "week",
    fmt: FormatOption = "table",
    out: OutOption = None,
) -> None:
    """Lifecycle stages: the distribution now, per person, over time, or transitions."""
    with open_workspace(workspace) as ws:
        if history:
            flow = ws.stage_flow(start=start, end=as_of, every=every)
            pivot = flow.pivot_table(index="as_of", columns="stage", values="people", sort=False).reset_index()
            emit(flow, fmt=fmt, out=out, title=f"people per stage, every {every}", display=pivot)
        elif since is not None:
            moves = ws.stage_transitions(since, as_of)
            matrix = moves.pivot_table(index="from_stage", columns="to_stage", values="people", fill_value=0).reset_index()
            emit(moves, fmt=fmt, out=out, title=f"stage transitions since {since}", display=matrix)
        elif people:
            emit(ws.stages(as_of), fmt=fmt, out=out, title="lifecycle stage per person")
        else:
            emit(ws.stage_distribution(as_of), fmt=fmt, out=out, title="lifecycle stages")


def rfm(
    workspace: WorkspaceOption = Path("."),
    as_of: AsOfOption = None,
    people: Annotated[bool, typer.Option("--people", help="Scores per customer instead of the segment summary.")] = False,
    fmt: FormatOption = "table",
    out: OutOption = None,
) -> None:
    """RFM segments with their people and revenue share (or scores per customer)."""
    with open_workspace(workspace) as ws:
        if people:
            emit(ws.rfm(as_of), fmt=fmt, out=out, title="RFM scores")
        else:
            emit(ws.rfm_segments(as_of), fmt=fmt, out=out, title="RFM segments")


def cohorts(
    workspace: WorkspaceOption = Path("."),
    period: PeriodOption = "month",
    cohort_of: Annotated[
        Literal["first_seen", "first_order"], typer.Option(help="Acquisition = first event or first order.")
    ] = "first_seen",
    by: Annotated[str | None, typer.Option(help="Split cohorts by a person feature or trait, e.g. channel.")] = None,
    metric: Annotated[
        Literal["retention", "order_retention", "revenue_retention", "revenue_per_person", "cumulative_revenue_per_person"],
        typer.Option(help="What the table shows per cohort and period."),
    ] = "retention",
    as_of: AsOfOption = None,
    fmt: FormatOption = "table",
    out: OutOption = None,
) -> None:
    """Cohort retention matrix: rows are acquisition periods, columns periods since."""
    with open_workspace(workspace) as ws:
        table = ws.cohorts(period, cohort_of=cohort_of, by=by, as_of=as_of)
        emit(table, fmt=fmt, out=out, title=f"{metric.replace('_', ' ')} by {period} cohort", display=cohort_matrix(table, metric, by))


def funnel(
    steps: Annotated[list[str], typer.Argument(help='Steps in order, e.g. "Product Viewed[category=Books]".')],
    workspace: WorkspaceOption = Path("."),
    window: Annotated[str, typer.Option(help="Conversion window from the first step: 30m, 12h, 7d.")] = "7d",
    order: Annotated[Literal["strict", "any"], typer.Option(help="strict: steps in order; any: in any order.")] = "strict",
    by: Annotated[str | None, typer.Option(help="Break down by this property of the first step's event.")] = None,
    period: Annotated[Literal["day", "week", "month"] | None, typer.Option(help="Split by entry period.")] = None,
    start: StartOption = None,
    end: EndOption = None,
    fmt: FormatOption = "table",
    out: OutOption = None,
) -> None:
    """Conversion through ordered steps, with drop-off and time between steps."""
    with open_workspace(workspace) as ws:
        result = ws.funnel(steps, start=start, end=end, window=parse_window(window), order=order, by=by, period=period)
        emit(result, fmt=fmt, out=out, title=f"funnel ({order}, {window} window)")


def paths(
    event: Annotated[str, typer.Argument(help="The event to start from.")],
    workspace: WorkspaceOption = Path("."),
    direction: Annotated[Literal["next", "previous"], typer.Option(help="Follow what came after or before.")] = "next",
    depth: Annotated[int, typer.Option(help="Steps to follow.")] = 3,
    top: Annotated[int, typer.Option(help="Keep the top N events per step; the rest are 'Other'.")] = 5,
    nodes: Annotated[bool, typer.Option("--nodes", help="Sankey nodes instead of links.")] = False,
    start: StartOption = None,
    end: EndOption = None,
    fmt: FormatOption = "table",
    out: OutOption = None,
) -> None:
    """The most frequent paths after (or before) an event, as Sankey links or nodes."""
    with open_workspace(workspace) as ws:
        result = ws.paths(event, direction=direction, depth=depth, top_n=top, start=start, end=end, nodes=nodes)
        emit(result, fmt=fmt, out=out, title=f"paths {direction} from {event}")


def kpis(
    workspace: WorkspaceOption = Path("."),
    period: PeriodOption = "week",
    start: StartOption = None,
    end: EndOption = None,
    fmt: FormatOption = "table",
    out: OutOption = None,
) -> None:
    """Active people, stickiness, new vs returning, orders, revenue, ARPU and churn per period."""
    with open_workspace(workspace) as ws:
        emit(ws.kpis(period, start=start, end=end), fmt=fmt, out=out, title=f"KPIs per {period}")


def parse_window(text: str) -> timedelta:
    """``7d``, ``12h`` or ``30m`` as a timedelta."""
    match = _WINDOW.match(text.strip())
    if not match or int(match.group(1)) == 0:
        raise ValidationError("window", f"{text!r} must be a positive number followed by d, h or m, e.g. 7d")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def cohort_matrix(table: pd.DataFrame, metric: str, by: str | None) -> pd.DataFrame:
    """Cohorts down, periods since acquisition across; the cohort size next to each row."""
    index = ["cohort", *([by] if by else [])]
    sizes = table.groupby(index, sort=True)["cohort_size"].first()
    matrix = table.pivot_table(index=index, columns="period_index", values=metric, sort=True)
    matrix.columns = [f"+{column}" for column in matrix.columns]
    if metric.endswith("retention"):
        matrix = matrix.map(lambda value: "" if pd.isna(value) else f"{value:.0%}")
    return pd.concat([sizes.rename("people"), matrix], axis=1).reset_index()
