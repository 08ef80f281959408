"""What every command shares: the workspace option, the console, error rendering."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tenure.errors import TenureError
from tenure.workspace import Workspace

console = Console()
err_console = Console(stderr=True)

WorkspaceOption = Annotated[
    Path,
    typer.Option("--workspace", "-w", envvar="TENURE_WORKSPACE", help="Workspace folder.", show_default=True),
]


@contextmanager
def failing_cleanly() -> Iterator[None]:
    """Turn Tenure errors into a one-line message and exit code 1."""
    try:
        yield
    except TenureError as exc:
        err_console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(1) from None


@contextmanager
def open_workspace(path: Path) -> Iterator[Workspace]:
    """Open the workspace for one command, failing cleanly."""
    with failing_cleanly(), Workspace(path) as ws:
        yield ws


@contextmanager
def progress_bar(description: str) -> Iterator[Any]:
    """A rich progress bar driven by ``(stage, fraction)`` callbacks."""
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[stage]}"), TimeElapsedColumn(),
        console=err_console, transient=True,
    ) as bar:
        task = bar.add_task(description, total=1.0, stage="")

        def update(stage: str, fraction: float) -> None:
            bar.update(task, completed=fraction, stage=stage)

        yield update


def key_value_table(title: str, rows: Mapping[str, Any]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows.items():
        table.add_row(key.replace("_", " "), _fmt(value))
    return table


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
