"""``tenure segments …``: create, inspect, preview, export and refresh segments."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from tenure.cli._common import WorkspaceOption, console, key_value_table, open_workspace
from tenure.cli.output import FormatOption, OutOption, emit
from tenure.errors import ValidationError
from tenure.segments.rules import load_rule_text

app = typer.Typer(help="Segments: rule, built-in and cluster segments with live membership.", no_args_is_help=True)

RuleFileOption = Annotated[Path | None, typer.Option("--rule", help="YAML/JSON file with a rule (or {rule, description}).")]
WhereOption = Annotated[str | None, typer.Option("--where", help="The rule inline, as YAML or JSON.")]
TraitsOption = Annotated[str | None, typer.Option(help="Comma-separated traits to add as columns, e.g. email,plan.")]
AsOfOption = Annotated[str | None, typer.Option("--as-of", help="Evaluate at this date (default: the latest data).")]


@app.command()
def create(
    name: Annotated[str, typer.Argument(help="The segment's name.")],
    rule_file: RuleFileOption = None,
    where: WhereOption = None,
    description: Annotated[str | None, typer.Option(help="What the segment is for.")] = None,
    replace: Annotated[bool, typer.Option(help="Overwrite a rule segment of the same name.")] = False,
    cluster: Annotated[str | None, typer.Option(help="Cluster people instead: kmeans, gmm, agglomerative, dbscan.")] = None,
    k: Annotated[int | None, typer.Option(help="Number of clusters (default: chosen automatically).")] = None,
    chart: Annotated[Path | None, typer.Option(help="With --cluster: save the 2-D projection as a PNG.")] = None,
    workspace: WorkspaceOption = Path("."),
) -> None:
    """Save a segment and compute its members."""
    with open_workspace(workspace) as ws:
        if cluster is not None:
            result = ws.segments.create_clusters(name, algorithm=cluster, k=k)
            emit(result.profiles.drop(columns=[c for c in result.profiles.columns if c.startswith("mean_")]),
                 fmt="table", out=None, title=f"{name}: {result.k} clusters ({cluster})")
            if chart is not None:
                from tenure.segments.clustering import plot_projection

                console.print(f"projection saved to {plot_projection(result, chart)}")
            return
        rule, text_description = _rule_from(rule_file, where)
        info = ws.segments.create(name, rule, description=description or text_description, replace=replace)
        console.print(f"segment [bold]{info.name}[/bold] saved: {info.size:,} members")


@app.command("list")
def list_segments(workspace: WorkspaceOption = Path("."), fmt: FormatOption = "table", out: OutOption = None) -> None:
    """Every segment with its kind and current size."""
    with open_workspace(workspace) as ws:
        emit(ws.segments.list(), fmt=fmt, out=out, title="segments")


@app.command()
def show(name: str, workspace: WorkspaceOption = Path(".")) -> None:
    """A segment's definition, size history and (for clusters) profile."""
    with open_workspace(workspace) as ws:
        info = ws.segments.get(name)
        definition = dict(info.definition)
        profile = definition.pop("profile", None)
        console.print(key_value_table(f"segment {info.name}", {
            "kind": info.kind, "description": info.description, "size": info.size,
            "created": info.created_at, "refreshed": info.refreshed_at or "never",
        }))
        console.print(yaml.safe_dump(definition, sort_keys=False, allow_unicode=True).rstrip())
        if profile:
            console.print(key_value_table("cluster profile", profile))
        emit(ws.segments.sizes(name).tail(12), fmt="table", out=None, title="size over time")


@app.command()
def preview(
    rule_file: RuleFileOption = None,
    where: WhereOption = None,
    sample: Annotated[int, typer.Option(help="How many members to show.")] = 10,
    traits: TraitsOption = None,
    as_of: AsOfOption = None,
    workspace: WorkspaceOption = Path("."),
) -> None:
    """Size and a sample of the people a rule selects, without saving it."""
    with open_workspace(workspace) as ws:
        rule, _ = _rule_from(rule_file, where)
        result = ws.segments.preview(rule, as_of=as_of, sample=sample, traits=_traits(traits))
        console.print(f"{result.size:,} of {result.population:,} people ({result.share:.1%})")
        emit(result.sample, fmt="table", out=None, title="sample")


@app.command()
def members(
    name: str,
    traits: TraitsOption = None,
    workspace: WorkspaceOption = Path("."),
    fmt: FormatOption = "table",
    out: OutOption = None,
) -> None:
    """Current members, when they entered, and chosen traits."""
    with open_workspace(workspace) as ws:
        emit(ws.segments.members(name, traits=_traits(traits)), fmt=fmt, out=out, title=f"members of {name}")


@app.command()
def export(
    name: str,
    out: Annotated[Path, typer.Option("--out", "-o", help="A .csv or .parquet file.")],
    traits: TraitsOption = None,
    workspace: WorkspaceOption = Path("."),
) -> None:
    """Write the members with chosen traits to CSV or Parquet."""
    with open_workspace(workspace) as ws:
        rows = ws.segments.export(name, out, traits=_traits(traits))
        console.print(f"wrote {rows:,} members to {out}")


@app.command()
def delete(name: str, workspace: WorkspaceOption = Path(".")) -> None:
    """Delete a segment with its members and history (built-ins cannot be deleted)."""
    with open_workspace(workspace) as ws:
        ws.segments.delete(name)
        console.print(f"segment {name} deleted")


@app.command()
def refresh(
    names: Annotated[list[str] | None, typer.Argument(help="Segments to refresh (default: all).")] = None,
    as_of: AsOfOption = None,
    workspace: WorkspaceOption = Path("."),
) -> None:
    """Recompute membership now and record who entered and left."""
    with open_workspace(workspace) as ws:
        result = ws.segments.refresh(names or None, as_of=as_of)
        console.print(key_value_table("refresh", {
            "segments": result.segments, "people": result.people, "entered": result.entered,
            "exited": result.exited, "seconds": round(result.seconds, 2),
        }))


@app.command()
def changes(
    name: Annotated[str | None, typer.Argument(help="One segment (default: all).")] = None,
    after: Annotated[int, typer.Option(help="Only changes with a larger id (a reader's cursor).")] = 0,
    limit: Annotated[int | None, typer.Option(help="At most this many.")] = 100,
    workspace: WorkspaceOption = Path("."),
    fmt: FormatOption = "table",
    out: OutOption = None,
) -> None:
    """Entries and exits in the order they happened."""
    with open_workspace(workspace) as ws:
        emit(ws.segments.changes(name, after_id=after, limit=limit), fmt=fmt, out=out, title="segment changes")


def _rule_from(rule_file: Path | None, where: str | None) -> tuple[Any, str]:
    """The rule (and a description, if the file has one) from --rule FILE or --where TEXT."""
    if (rule_file is None) == (where is None):
        raise ValidationError("rule", "give the rule with either --rule FILE or --where TEXT")
    if rule_file is not None:
        try:
            text = rule_file.read_text()
        except OSError as exc:
            raise ValidationError("rule", f"cannot read {rule_file}: {exc.strerror}") from exc
    else:
        text = where or ""
    loaded = load_rule_text(text)
    if isinstance(loaded, dict) and "rule" in loaded:
        return loaded["rule"], str(loaded.get("description", ""))
    return loaded, ""


def _traits(traits: str | None) -> list[str]:
    return [t.strip() for t in traits.split(",") if t.strip()] if traits else []
