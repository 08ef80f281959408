"""``tenure identity``: inspect and undo merges."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from tenure.cli._common import WorkspaceOption, console, open_workspace

app = typer.Typer(help="Inspect and undo identity merges.", no_args_is_help=True)


@app.command("links")
def links(identifier: str, workspace: WorkspaceOption = Path(".")) -> None:
    """List the merges (links) of the person an id belongs to."""
    with open_workspace(workspace) as ws:
        person = ws.identity.person_of(identifier)
        table = Table(title=f"identity links of {person}")
        for column in ("id", "user side", "other", "kind", "message", "linked at", "active"):
            table.add_column(column)
        for link in ws.identity.links_of(person):
            table.add_row(
                str(link["id"]), str(link["id_a"]), str(link["id_b"]), str(link["kind"]), str(link["message_id"]),
                str(link["linked_at"]), "yes" if link["active"] else f"undone {link['unmerged_at']}",
            )
        console.print(table)


@app.command("unmerge")
def unmerge(
    link_id: Annotated[int, typer.Argument(help="Link id, from `tenure identity links`.")],
    workspace: WorkspaceOption = Path("."),
) -> None:
    """Undo one merge; history is re-attributed as if it never happened."""
    with open_workspace(workspace) as ws:
        persons = ws.identity.unmerge(link_id)
        console.print(f"link {link_id} undone; the ids now belong to: {', '.join(persons)}")
