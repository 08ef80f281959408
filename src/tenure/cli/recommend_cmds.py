"""``tenure recommend``: what to offer a person next, or the items like an item."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tenure.cli._common import WorkspaceOption, open_workspace
from tenure.cli.output import FormatOption, OutOption, emit
from tenure.errors import ValidationError

NARROW: tuple[str, ...] = ("rank", "item_id", "name", "price", "reason", "source")  # what fits a terminal


def recommend(
    person: Annotated[str | None, typer.Argument(help="A person id or any id of theirs.", show_default=False)] = None,
    similar: Annotated[
        str | None, typer.Option("--similar", help="Show the items most like this item id instead.", show_default=False)
    ] = None,
    n: Annotated[int | None, typer.Option("-n", help="How many items (default: [recommendations] top_n).")] = None,
    workspace: WorkspaceOption = Path("."),
    fmt: FormatOption = "table",
    out: OutOption = None,
) -> None:
    """A person's recommendations now (stored list + their last minutes), with reasons; or similar items."""
    with open_workspace(workspace) as ws:
        if (person is None) == (similar is None):
            raise ValidationError("person", "give a person, or --similar ITEM, but not both")
        if similar is not None:
            frame = ws.recommendations.similar(similar, n=n or ws.settings.recommendations.top_n)
            emit(frame, fmt=fmt, out=out, title=f"items like {similar}")
        else:
            assert person is not None
            frame = ws.recommendations.for_person(person, n=n)
            emit(frame, fmt=fmt, out=out, title=f"recommended for {person}", display=frame[list(NARROW)])
