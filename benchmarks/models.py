"""Benchmark: training and scoring churn, propensity and CLV on a large generated shop.

Generates a sample shop and imports it in a child process (so the peak RSS reported is the
models' own), then times ``ws.models.train(name)`` for each model, split into building the
point-in-time examples (one engine query per cutoff) and fitting (the backtests, the
baselines and the final model), and ``ws.models.score(name)`` (features at ``as_of``,
prediction, reasons, and writing the scores to the state DB). The CLV fit's speed against
``lifetimes`` is the separate ``benchmarks/clv.py``.

``--users 200000 --days 240`` is the issue's size (about 200k people with history); the
defaults are a smoke run of a few minutes. Run with
``python benchmarks/models.py [--users 20000] [--days 240] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: `benchmarks` importable

from benchmarks.analytics import prepare as prepare_shop  # noqa: E402
from tenure import Workspace  # noqa: E402

MODELS = ("churn", "propensity", "clv")


def _prepare(folder: Path, users: int, days: int, seed: int) -> dict[str, Any]:
    ws, info, _ = prepare_shop(folder, users, days, seed)
    toml = ws.settings.root / "tenure.toml"
    toml.write_text(toml.read_text().replace("churn_horizon_days = 90", "churn_horizon_days = 60"))
    ws.close()
    return info


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench(ws: Workspace, console: Console) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name in MODELS:
        marks: dict[str, float] = {}

        def mark(stage: str, fraction: float, marks: dict[str, float] = marks) -> None:
            marks.setdefault("fit" if stage.startswith("backtest") else stage, time.perf_counter())

        t0 = time.perf_counter()
        info = ws.models.train(name, progress=mark)
        t1 = time.perf_counter()
        counts = ws.models.score([name])
        t2 = time.perf_counter()
        fit_start = marks.get("fit", t0)
        results[name] = {
            "train_seconds": t1 - t0,
            "examples_seconds": fit_start - t0,
            "fit_seconds": t1 - fit_start,
            "score_seconds": t2 - t1,
            "scored": counts[name],
            "examples": info.metrics.get("examples", info.metrics.get("customers")),
            "headline": info.metrics["headline"],
            "peak_rss_mb": peak_rss_mb(),
        }
        r = results[name]
        console.print(f"{name}: trained in {r['train_seconds']:.1f} s ({r['examples_seconds']:.1f} s examples), "
                      f"scored {r['scored']:,} in {r['score_seconds']:.1f} s; {r['headline']}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=240)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory(prefix="tenure-models-bench-") as tmp:
        folder = Path(tmp)
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            info = pool.submit(_prepare, folder, args.users, args.days, args.seed).result()
        console.print(f"shop: {info['events']:,} events, {info['orders']:,} orders "
                      f"(generated in {info['generate_seconds']:.0f} s, imported in {info['import_seconds']:.0f} s)")
        with Workspace(folder / "ws") as ws:
            people = len(ws.features())
            results = {"shop": info | {"people": people}, "models": bench(ws, console)}
    table = Table(title=f"models on {people:,} people, {info['events']:,} events")
    for column in ("model", "examples", "build examples s", "fit s", "train s", "score s", "scored", "peak RSS MB"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for name, r in results["models"].items():
        table.add_row(name, f"{r['examples']:,}", f"{r['examples_seconds']:.1f}", f"{r['fit_seconds']:.1f}",
                      f"{r['train_seconds']:.1f}", f"{r['score_seconds']:.1f}", f"{r['scored']:,}", f"{r['peak_rss_mb']:.0f}")
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
