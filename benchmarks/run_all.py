"""Run every benchmark one after the other (they each want both cores) and print markdown.

``make bench`` runs this. ``--quick`` uses small sizes (a smoke test of the benchmarks
themselves, not a measurement).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(title: str, argv: list[str]) -> str:
    print(f"running {title}: {' '.join(argv)}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=HERE.parent)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        return f"## {title}\n\n**failed** (exit {done.returncode}, {seconds:.0f} s):\n\n```\n{tail}\n```\n"
    return f"## {title}\n\n{done.stdout.strip()}\n\n(wall time {seconds:.0f} s)\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: check that the benchmarks run")
    parser.add_argument("--duration", type=float, help="collector seconds per server (default 30; quick 5)")
    parser.add_argument("--rows", type=int, help="import rows (default 5,000,000; quick 200,000)")
    parser.add_argument("--only", default="collector,import,sample,analytics,segments,clv,models,recommendations",
                        help="which benchmarks to run")
    args = parser.parse_args()
    duration = args.duration or (5 if args.quick else 30)
    rows = args.rows or (200_000 if args.quick else 5_000_000)
    only = {x.strip() for x in args.only.split(",")}
    sections = [
        f"# Tenure benchmarks ({date.today().isoformat()})",
        "",
        f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()} {platform.machine()}.",
        "",
    ]
    if "collector" in only:
        sections.append(run("Collector", [str(HERE / "bench_collector.py"), "--duration", str(duration)]))
    if "import" in only:
        argv = [str(HERE / "bench_import.py"), "--rows", str(rows)]
        if args.quick:
            argv += ["--link-users", "1000,2000"]
        sections.append(run("Import", argv))
    sample = HERE / "bench_sample.py"
    if "sample" in only and sample.exists():
        sections.append(run("Sample shop", [str(sample), *(["2000", "30"] if args.quick else [])]))
    if "analytics" in only:
        users = "2000" if args.quick else "20000,200000"
        argv = [str(HERE / "analytics.py"), "--users", users, "--days", "60", "--json", "/tmp/analytics-benchmark.json"]
        sections.append(run("Lifecycle analytics", argv))
    if "segments" in only:
        # The one-query-per-segment baseline takes seconds per segment: a subset, extrapolated.
        size = ["--users", "2000", "--baseline", "10"] if args.quick else ["--users", "200000", "--baseline", "10"]
        argv = [str(HERE / "segments.py"), *size, "--days", "60", "--json", "/tmp/segments-benchmark.json"]
        sections.append(run("Segments", argv))
    if "clv" in only:
        customers = "100000" if args.quick else "1000000"
        sections.append(run("CLV fits", [str(HERE / "clv.py"), "--customers", customers, "--repeat", "1" if args.quick else "3"]))
    if "models" in only:
        users = "3000" if args.quick else "200000"
        sections.append(run("Churn, propensity and CLV on a shop", [str(HERE / "models.py"), "--users", users]))
    if "recommendations" in only:
        argv = [str(HERE / "recommendations.py"), *(["--quick"] if args.quick else [])]
        sections.append(run("Recommendations", argv))
    print("\n".join(sections))


if __name__ == "__main__":
    main()
