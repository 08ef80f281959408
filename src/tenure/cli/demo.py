"""``tenure demo``: the whole pipeline on a generated shop, ending in a summary."""

from __future__ import annotations

from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer
import yaml

from tenure.cli._common import console, failing_cleanly, key_value_table, progress_bar
from tenure.cli.analytics_cmds import cohort_matrix
from tenure.cli.output import rich_table
from tenure.ingest.importer import import_file
from tenure.overview import workspace_overview
from tenure.profiles import person_profile
from tenure.segments.clustering import plot_projection
from tenure.spec.ecommerce import FUNNEL_EVENTS
from tenure.workspace import Workspace


def demo(
    directory: Annotated[Path, typer.Argument(help="Workspace folder to (re)create the demo in.")] = Path("demo-workspace"),
    users: Annotated[int, typer.Option(help="Users in the sample shop.")] = 5000,
    days: Annotated[int, typer.Option(help="Days of history.")] = 365,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
) -> None:
    """Generate the sample shop, import it into a workspace and summarise what Tenure sees."""
    from tenure.sample import write_sample

    with failing_cleanly(), Workspace.init(directory) as ws:
        with progress_bar("generating sample shop") as update:
            files = write_sample(directory / "sample", users=users, days=days, seed=seed, progress=update)
        for path, kind in ((files.items, "items"), (files.users, "users"), (files.events, "events")):
            with progress_bar(f"importing {kind}") as update:
                summary = import_file(ws, path, kind, progress=update)  # type: ignore[arg-type]
            console.print(
                f"imported {kind}: {summary.imported:,} new, {summary.duplicates:,} already there, "
                f"{summary.quarantined:,} quarantined"
            )
        ws.lake.compact(ws.settings.compact_min_files)
        overview = workspace_overview(ws)
        top = overview.pop("top_events")
        console.print(key_value_table("sample shop", overview))
        console.print(key_value_table("top events", {r["name"]: r["count"] for r in top}))
        merged = ws.engine().tables().identity_map
        example = merged.group_by("person_id").aggregate(n=merged.count()).order_by(lambda t: t.n.desc()).limit(1).execute()
        if not example.empty:
            p = person_profile(ws, str(example["person_id"].iloc[0]))
            console.print(
                key_value_table(
                    f"an example profile: {p.person_id}",
                    {"ids": ", ".join(p.identifiers), "events": p.events, "orders": p.orders, "revenue": p.revenue},
                )
            )
        _lifecycle_picture(ws)
        _models(ws, directory)
        _recommendations(ws)
        _saved_segments(ws, directory)
    console.print(f"workspace: [bold]{directory}[/bold] (try `tenure status -w {directory}`, `tenure kpis -w {directory}`)")


def _lifecycle_picture(ws: Workspace) -> None:
    """What a growth team looks at first: stages, RFM segments, cohorts and the purchase funnel."""
    console.print(rich_table(ws.stage_distribution(), "lifecycle stages (as of the latest data)"))
    segments = ws.rfm_segments()[["segment", "people", "people_share", "revenue", "revenue_share"]]
    console.print(rich_table(segments, "RFM segments"))
    cohorts = ws.cohorts("month", cohort_of="first_order")
    first_months = cohort_matrix(cohorts[cohorts.period_index <= 6], "order_retention", None)
    first_months["cohort"] = first_months["cohort"].dt.strftime("%Y-%m")
    console.print(rich_table(first_months, "repeat-order retention by first-order month (first 6 months)"))
    funnel = ws.funnel(list(FUNNEL_EVENTS), window=timedelta(days=7))
    console.print(rich_table(funnel, "purchase funnel, last 90 days (7-day window)"))


def _models(ws: Workspace, directory: Path) -> None:
    """Train every model with the generator's truth as the oracle, print them against baselines, score everyone."""
    from tenure.cli.models_cmds import show_comparison
    from tenure.models.registry import MODEL_NAMES
    from tenure.models.report import write_report

    for name in MODEL_NAMES:
        with progress_bar(f"training {name}") as update:
            info = ws.models.train(name, oracle=directory / "sample", progress=update)
        console.print(f"[bold]{info.tag}[/bold]: {info.metrics['headline']}")
        show_comparison(ws, name)
    counts = ws.models.score()
    console.print(f"scored: {', '.join(f'{n} {c:,} people' for n, c in counts.items())}")
    console.print(f"model report: {write_report(ws.models, directory / 'model-report.html')}")


def _recommendations(ws: Workspace) -> None:
    """An active shopper's recommendations with their reasons, and the items like their first suggestion.

    The shopper is, of the 50 most active, the one whose list is most often explained by
    another item they touched, so that the reasons are on show.
    """
    from tenure.cli.recommend_cmds import NARROW

    busiest = ws.features().sort_values(["events_90d", "person_id"], ascending=[False, True])["person_id"].head(50)
    lists = {p: ws.models.scores(p).get("recommendations", {}).get("value", []) for p in busiest}
    person = max(lists, key=lambda p: sum(e["because"] not in (None, e["item_id"]) for e in lists[p]))
    offered = ws.recommendations.for_person(person)
    console.print(rich_table(offered[list(NARROW)], f"recommended for {person}"))
    first = offered["item_id"].iloc[0]
    console.print(rich_table(ws.recommendations.similar(first, n=5), f"customers who liked {first} also liked"))


def _saved_segments(ws: Workspace, directory: Path) -> None:
    """Save the example segments and a behavioural clustering, then show who is in them."""
    examples = yaml.safe_load(resources.files("tenure").joinpath("templates/segments.yaml").read_text())
    with progress_bar("saving segments") as update:
        for done, example in enumerate(examples):
            update(example["name"], done / (len(examples) + 1))
            ws.segments.create(example["name"], example["rule"], description=example["description"], replace=True)
        update("clustering", len(examples) / (len(examples) + 1))
        clustering = ws.segments.create_clusters("behaviour", replace=True)
    saved = ws.segments.list()
    saved = saved[saved["kind"] != "builtin"][["name", "size", "description"]]
    console.print(rich_table(saved, "saved segments (kept up to date by `tenure serve`)"))
    chart = plot_projection(clustering, directory / "behaviour-clusters.png")
    console.print(f"behaviour clusters in 2-D: {chart}")
