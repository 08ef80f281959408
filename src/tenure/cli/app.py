"""Top-level ``tenure`` commands."""

from __future__ import annotations

import signal
import threading
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from tenure.cli import analytics_cmds, identity_cmds, models_cmds, recommend_cmds, segments_cmds
from tenure.cli._common import (
    WorkspaceOption,
    console,
    failing_cleanly,
    key_value_table,
    open_workspace,
    progress_bar,
)
from tenure.cli.demo import demo
from tenure.ingest.files import parse_mapping_flags, read_mapping_file
from tenure.ingest.flusher import flush_all, run_flusher, watch_parent
from tenure.ingest.importer import import_file
from tenure.overview import workspace_overview
from tenure.profiles import person_profile
from tenure.workspace import Workspace

app = typer.Typer(help="Tenure: user lifecycle management.", no_args_is_help=True, pretty_exceptions_enable=False)
app.add_typer(identity_cmds.app, name="identity")
app.add_typer(segments_cmds.app, name="segments")
app.add_typer(models_cmds.app, name="models")
app.command("demo")(demo)
app.command("recommend")(recommend_cmds.recommend)
for command in (analytics_cmds.stages, analytics_cmds.rfm, analytics_cmds.cohorts, analytics_cmds.funnel,
                analytics_cmds.paths, analytics_cmds.kpis):
    app.command()(command)


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder to create the workspace in.")] = Path("."),
    write_key: Annotated[str | None, typer.Option(help="Use this write key instead of a random one.")] = None,
) -> None:
    """Create a workspace: tenure.toml, the state DB, the lake, and a write key."""
    with failing_cleanly(), Workspace.init(directory) as ws:
        key = ws.keys.create("write", "default", key=write_key)
        console.print(f"workspace ready at [bold]{ws.settings.root}[/bold]")
        console.print(f"write key: [bold]{key}[/bold] (shown once; send it as the Basic auth user name)")


@app.command("keys")
def create_key(
    label: Annotated[str, typer.Option(help="What the key is for.")] = "default",
    workspace: WorkspaceOption = Path("."),
) -> None:
    """Create another write key."""
    with open_workspace(workspace) as ws:
        console.print(ws.keys.create("write", label))


@app.command()
def serve(
    workspace: WorkspaceOption = Path("."),
    host: Annotated[str | None, typer.Option(help="Interface (default from tenure.toml).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from tenure.toml).")] = None,
    flusher: Annotated[bool, typer.Option(help="Also run the flusher (off when one runs elsewhere).")] = True,
) -> None:
    """Run the collector (Segment-compatible /v1 API) and the flusher."""
    import uvicorn

    from tenure.api import create_app

    with open_workspace(workspace) as ws:
        settings = ws.settings
    uvicorn.run(
        create_app(settings.root, flush=flusher),
        host=host or settings.collector_host,
        port=port or settings.collector_port,
        log_level="warning",
        loop="uvloop",
        http="httptools",
    )


@app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(help="CSV, Parquet or JSON Lines file (optionally .gz).")],
    kind: Annotated[str, typer.Option(help="events | orders | users | items")] = "events",
    map_: Annotated[list[str] | None, typer.Option("--map", help="target=column; repeatable.")] = None,
    mapping_file: Annotated[Path | None, typer.Option(help="TOML/JSON file of target = column.")] = None,
    fmt: Annotated[str | None, typer.Option("--format", help="csv | parquet | jsonl (default: by suffix)")] = None,
    timezone: Annotated[str, typer.Option(help="Zone of timestamps without an offset.")] = "UTC",
    refresh: Annotated[bool, typer.Option(help="Recompute every segment afterwards.")] = True,
    workspace: WorkspaceOption = Path("."),
) -> None:
    """Import a file; bad rows go to a quarantine file, re-imports add nothing; segments follow."""
    if kind not in ("events", "orders", "users", "items"):
        raise typer.BadParameter(f"must be events, orders, users or items, not {kind!r}", param_hint="--kind")
    if fmt not in (None, "csv", "parquet", "jsonl"):
        raise typer.BadParameter(f"must be csv, parquet or jsonl, not {fmt!r}", param_hint="--format")
    with open_workspace(workspace) as ws:
        mapping = read_mapping_file(mapping_file) if mapping_file else {}
        mapping.update(parse_mapping_flags(map_ or []))
        with progress_bar(f"importing {file.name}") as update:
            summary = import_file(
                ws, file, kind, mapping=mapping, fmt=fmt, timezone=timezone, progress=update  # type: ignore[arg-type]
            )
        rows: dict[str, object] = {
            "rows read": summary.rows,
            "imported": summary.imported,
            "duplicates": summary.duplicates,
            "quarantined": summary.quarantined,
        }
        if summary.quarantine_file:
            rows["quarantine file"] = str(summary.quarantine_file)
        console.print(key_value_table(f"import of {file.name} ({kind})", rows))
        if refresh and summary.imported:
            result = ws.segments.refresh()
            console.print(f"segments refreshed: {result.entered:,} entries, {result.exited:,} exits")


@app.command()
def flush(
    follow: Annotated[bool, typer.Option(help="Keep flushing until stopped (SIGTERM or Ctrl-C).")] = False,
    parent_pid: Annotated[int | None, typer.Option(help="With --follow: stop when this process dies.")] = None,
    workspace: WorkspaceOption = Path("."),
) -> None:
    """Move the inbox into the lake: once, or continuously with --follow."""
    with open_workspace(workspace) as ws:
        if not follow:
            console.print(f"{flush_all(ws).events:,} events flushed")
            return
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        if parent_pid is not None:
            watch_parent(parent_pid, stop)
        run_flusher(ws, ws.settings.flush_interval_seconds, stop)


@app.command()
def compact(
    min_files: Annotated[int | None, typer.Option(help="Compact partitions with at least this many files.")] = None,
    workspace: WorkspaceOption = Path("."),
) -> None:
    """Merge small lake files."""
    with open_workspace(workspace) as ws:
        done = ws.lake.compact(min_files or ws.settings.compact_min_files)
        console.print(f"{done} partitions compacted")


@app.command()
def status(workspace: WorkspaceOption = Path(".")) -> None:
    """Headline numbers of the workspace."""
    with open_workspace(workspace) as ws:
        overview = workspace_overview(ws)
        top = overview.pop("top_events")
        console.print(key_value_table("workspace", overview))
        console.print(key_value_table("top events", {r["name"]: r["count"] for r in top}))


@app.command()
def profile(identifier: str, workspace: WorkspaceOption = Path(".")) -> None:
    """Show one person: ids, traits, first/last seen, events, orders, revenue."""
    with open_workspace(workspace) as ws:
        p = person_profile(ws, identifier)
        console.print(
            key_value_table(
                f"person {p.person_id}",
                {
                    "ids": ", ".join(p.identifiers),
                    "first seen": p.first_seen,
                    "last seen": p.last_seen,
                    "events": p.events,
                    "orders": p.orders,
                    "revenue": p.revenue,
                    **{f"trait {k}": v for k, v in sorted(p.traits.items())},
                    **{f"{k} ({v['model_version']})": _score_text(v["value"]) for k, v in sorted(p.scores.items())},
                },
            )
        )


def _score_text(value: Any) -> str:
    """A score as a number; lists as reasons (``feature (+0.42)``), item names or ids."""
    if isinstance(value, list):
        return ", ".join(_entry_text(entry) for entry in value)
    return f"{value:,.3f}"


def _entry_text(entry: Any) -> str:
    if isinstance(entry, dict) and "feature" in entry:
        return f"{entry['feature']} ({entry['contribution']:+.2f})"
    if isinstance(entry, dict):
        return str(entry.get("name") or entry["item_id"])
    return str(entry)


@app.command()
def sample(
    out: Annotated[Path, typer.Option(help="Folder for the generated files.")] = Path("sample-shop"),
    users: Annotated[int, typer.Option(help="Number of users.")] = 5000,
    days: Annotated[int, typer.Option(help="Days of history.")] = 365,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same shop.")] = 0,
    start: Annotated[str, typer.Option(help="First day (YYYY-MM-DD).")] = "2025-01-01",
    fmt: Annotated[str, typer.Option("--format", help="parquet | csv")] = "parquet",
) -> None:
    """Generate a synthetic shop (import files plus ground truth)."""
    from tenure.sample import write_sample

    chosen: Literal["parquet", "csv"] = "csv" if fmt == "csv" else "parquet"
    with failing_cleanly(), progress_bar("generating sample shop") as update:
        files = write_sample(out, users=users, days=days, seed=seed, start=date.fromisoformat(start), fmt=chosen, progress=update)
    console.print(f"sample shop written to [bold]{out}[/bold]: {files.n_events:,} events, {files.n_orders:,} orders")


def main() -> None:
    app()

