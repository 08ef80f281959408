"""Benchmark: every lifecycle analysis on DuckDB next to a hand-written pandas baseline.

Generates a sample shop (``tenure.sample.write_sample``), imports it into a fresh workspace
and times, on the same data:

* each analysis as an Ibis expression run by the DuckDB engine (build, compile and execute);
* all of them one after the other (one engine, as a report would run them);
* loading the engine's attributed tables into pandas once (the baselines' input);
* each pandas baseline in ``benchmarks/baselines/`` on those frames.

Prints a table (seconds, pandas/DuckDB ratio), the peak RSS after the DuckDB phase and after
the pandas phase, and writes the results as JSON. Events grow linearly with users (~54 per
user over 60 days, ~73 over 120): ``--users 200000 --days 60`` gives ~10.8M events; the
defaults (~220k events) are a smoke run of well under 2 minutes.

Run with ``python benchmarks/analytics.py [--users 3000] [--days 120] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import ibis.expr.types as ir
import pandas as pd
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: `benchmarks` importable

from benchmarks.baselines import funnels_paths as b_funnels  # noqa: E402
from benchmarks.baselines import kpis as b_kpis  # noqa: E402
from benchmarks.baselines import rfm_cohorts as b_rfm  # noqa: E402
from benchmarks.baselines import stages as b_stages  # noqa: E402
from tenure import Workspace  # noqa: E402
from tenure.analytics import cohorts, features, funnels, kpis, paths, rfm, stages  # noqa: E402
from tenure.analytics._time import cutoff  # noqa: E402
from tenure.ingest.importer import import_file  # noqa: E402
from tenure.sample import SampleFiles, write_sample  # noqa: E402
from tenure.spec.ecommerce import FUNNEL_EVENTS  # noqa: E402
from tenure.store.engine import LakeTables  # noqa: E402

Frames = dict[str, pd.DataFrame]


@dataclass(frozen=True)
class Analysis:
    """One analysis: its Ibis query and, when one exists, its pandas baseline."""

    name: str
    query: Callable[[LakeTables], ir.Table]
    baseline: Callable[[Frames], pd.DataFrame] | None


def analyses(ws: Workspace, as_of: datetime) -> list[Analysis]:
    """The analyses with the parameters a weekly report would use, ending at ``as_of``."""
    zone, life, bins = ws.settings.timezone, ws.settings.lifecycle, ws.settings.rfm_bins
    start = as_of - timedelta(days=90)
    weeks = [as_of - timedelta(weeks=k) for k in reversed(range(12))]
    steps = [funnels.FunnelStep(name) for name in FUNNEL_EVENTS]
    window = timedelta(days=7)
    return [
        Analysis("features", lambda t: features.person_features(t, as_of=as_of),
                 lambda f: b_stages.person_features(f["events"], f["orders"], as_of=as_of, adjustments=f["adjustments"],
                                                    order_items=f["order_items"], users=f["users"], timezone=zone)),
        Analysis("stages", lambda t: stages.lifecycle_stages(t, as_of=as_of, lifecycle=life),
                 lambda f: b_stages.lifecycle_stages(f["events"], f["orders"], as_of=as_of, lifecycle=life,
                                                     adjustments=f["adjustments"])),
        Analysis("stage_history weekly", lambda t: stages.stage_history(t, as_ofs=weeks, lifecycle=life), None),
        Analysis("rfm_scores", lambda t: rfm.rfm_scores(t, as_of=as_of, bins=bins),
                 lambda f: b_rfm.rfm_scores(f["events"], f["orders"], as_of=as_of, bins=bins,
                                            adjustments=f["adjustments"])),
        Analysis("rfm_segments", lambda t: rfm.rfm_segments(t, as_of=as_of, bins=bins),
                 lambda f: b_rfm.rfm_segments(f["events"], f["orders"], as_of=as_of, bins=bins,
                                              adjustments=f["adjustments"])),
        Analysis("cohort_table monthly", lambda t: cohorts.cohort_table(t, as_of=as_of, period="month"),
                 lambda f: b_rfm.cohort_table(f["events"], f["orders"], as_of=as_of, period="month", timezone=zone,
                                              adjustments=f["adjustments"])),
        Analysis("funnel", lambda t: funnels.funnel(t, steps, start=start, end=as_of, window=window),
                 lambda f: b_funnels.funnel(f["events"], f["orders"], steps=steps, start=start, end=as_of,
                                            window=window, timezone=zone)),
        Analysis("path_links", lambda t: paths.path_links(t, event="Product Added", start=start, end=as_of),
                 lambda f: b_funnels.path_links(f["events"], f["orders"], event="Product Added", start=start,
                                                end=as_of)),
        Analysis("kpis weekly", lambda t: kpis.kpis(t, start=start, end=as_of, period="week", lifecycle=life),
                 lambda f: b_kpis.kpis(f["events"], f["orders"], start=start, end=as_of, period="week",
                                       lifecycle=life, timezone=zone, adjustments=f["adjustments"])),
    ]


def prepare(folder: Path, users: int, days: int, seed: int) -> tuple[Workspace, dict[str, Any], SampleFiles]:
    """Generate the shop and import it into a fresh workspace (also the segments benchmark's start)."""
    t0 = time.perf_counter()
    files = write_sample(folder / "files", users=users, days=days, seed=seed)
    t1 = time.perf_counter()
    ws = Workspace.init(folder / "ws")
    for path, kind in ((files.items, "items"), (files.users, "users"), (files.events, "events")):
        import_file(ws, path, kind)  # type: ignore[arg-type]
    t2 = time.perf_counter()
    info = {"users": users, "days": days, "events": files.n_events, "orders": files.n_orders,
            "generate_seconds": t1 - t0, "import_seconds": t2 - t1}
    return ws, info, files


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def bench(ws: Workspace) -> dict[str, Any]:
    """Time every analysis on DuckDB, then load the tables into pandas and time the baselines."""
    results: dict[str, Any] = {"analyses": {}}
    with ws.engine() as engine:
        t = engine.tables()
        latest = pd.Timestamp(t.events.timestamp.max().execute())
        as_of = cutoff(latest.tz_convert(ws.settings.timezone).date(), ws.settings.timezone)
        todo = analyses(ws, as_of)
        for item in todo:
            t0 = time.perf_counter()
            rows = len(engine.execute(item.query(t)))
            results["analyses"][item.name] = {"duckdb_seconds": time.perf_counter() - t0, "rows": rows}
        t0 = time.perf_counter()
        for item in todo:
            engine.execute(item.query(t))
        results["all_duckdb_seconds"] = time.perf_counter() - t0
        results["peak_rss_mb_duckdb"] = peak_rss_mb()
        t0 = time.perf_counter()
        frames = {name: engine.execute(getattr(t, table)) for name, table in (
            ("events", "events"), ("orders", "orders"), ("adjustments", "order_adjustments"),
            ("order_items", "order_items"), ("users", "users"))}
        results["pandas_load_seconds"] = time.perf_counter() - t0
    results["as_of"] = as_of.isoformat()
    total = 0.0
    for item in todo:
        if item.baseline is None:
            continue
        t0 = time.perf_counter()
        rows = len(item.baseline(frames))
        seconds = time.perf_counter() - t0
        total += seconds
        results["analyses"][item.name].update(pandas_seconds=seconds, pandas_rows=rows)
    results["all_pandas_seconds"] = total
    results["peak_rss_mb_total"] = peak_rss_mb()
    return results


def render(info: dict[str, Any], results: dict[str, Any]) -> Table:
    table = Table(title=f"Analytics on {info['events']:,} events, {info['users']:,} users x {info['days']} days "
                        f"({info['orders']:,} orders)")
    for column in ("analysis", "rows", "DuckDB s", "pandas s", "pandas / DuckDB"):
        table.add_column(column, justify="left" if column == "analysis" else "right")

    def row(name: str, rows: str, duck: float, pandas: float | None) -> None:
        ratio = "-" if pandas is None else f"{pandas / duck:.1f}x"
        table.add_row(name, rows, f"{duck:.2f}", "-" if pandas is None else f"{pandas:.2f}", ratio)

    for name, r in results["analyses"].items():
        row(name, f"{r['rows']:,}", r["duckdb_seconds"], r.get("pandas_seconds"))
    with_baseline = [r for r in results["analyses"].values() if "pandas_seconds" in r]
    row("all, one after the other", "", results["all_duckdb_seconds"], None)
    row("  of which have a baseline", "", sum(r["duckdb_seconds"] for r in with_baseline),
        results["all_pandas_seconds"])
    table.add_row("load tables into pandas", "", "", f"{results['pandas_load_seconds']:.2f}", "")
    table.caption = (f"peak RSS: {results['peak_rss_mb_duckdb']:.0f} MB after DuckDB, "
                     f"{results['peak_rss_mb_total']:.0f} MB after pandas; generate {info['generate_seconds']:.1f} s, "
                     f"import {info['import_seconds']:.1f} s")
    return table


def growth(runs: list[tuple[dict[str, Any], dict[str, Any]]]) -> Table:
    """Time of all analyses together against events: linear growth keeps seconds per M events flat."""
    table = Table(title="Growth with data size (all analyses, DuckDB)")
    for column in ("events", "people", "all DuckDB s", "s per M events", "all pandas s (incl. load)"):
        table.add_column(column, justify="right")
    for info, results in runs:
        pandas_total = results["all_pandas_seconds"] + results["pandas_load_seconds"]
        table.add_row(f"{info['events']:,}", f"{info['users']:,}", f"{results['all_duckdb_seconds']:.1f}",
                      f"{results['all_duckdb_seconds'] / info['events'] * 1e6:.2f}", f"{pandas_total:.1f}")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", default="3000",
                        help="sample shop users; a comma list (e.g. 20000,200000) also reports growth with size")
    parser.add_argument("--days", type=int, default=120, help="sample shop days")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=Path("analytics-benchmark.json"), help="where results go")
    args = parser.parse_args()
    console = Console(width=120)
    runs = []
    for users in (int(u) for u in args.users.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            ws, info, _ = prepare(Path(tmp), users, args.days, args.seed)
            with ws:
                results = bench(ws)
        console.print(render(info, results))
        runs.append((info, results))
    if len(runs) > 1:
        console.print(growth(runs))
    args.json.write_text(json.dumps([{"sample": info, **results} for info, results in runs], indent=2))


if __name__ == "__main__":
    main()
