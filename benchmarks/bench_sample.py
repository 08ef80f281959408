"""Benchmark: generate the 100k-user, 365-day sample shop and print a markdown table row.

Run with ``python benchmarks/bench_sample.py [users] [days]``.
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

from tenure.sample import write_sample


def main() -> None:
    users = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    days = int(sys.argv[2]) if len(sys.argv) > 2 else 365
    fmt = sys.argv[3] if len(sys.argv) > 3 else "parquet"
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        files = write_sample(Path(tmp), users=users, days=days, seed=0, fmt=fmt)  # type: ignore[arg-type]
        seconds = time.perf_counter() - t0
        size_mb = files.events.stat().st_size / 1e6
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print("| users | days | format | seconds | events | orders | events file MB | peak RSS MB |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|")
    print(f"| {users:,} | {days} | {fmt} | {seconds:.1f} | {files.n_events:,} | {files.n_orders:,} "
          f"| {size_mb:.0f} | {peak_mb:.0f} |")


if __name__ == "__main__":
    main()
