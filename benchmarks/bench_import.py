"""Benchmark: bulk import of an events file against bare DuckDB reading the same file.

Generates an events file (default 5,000,000 rows; Parquet and the same rows as CSV) with the
columns Tenure's importer expects: message_id, type, event, user_id, anonymous_id, timestamp
(spread over one year), properties (a JSON object string of ~100 bytes). Then times, each in
a fresh process (so that peak RSS is per step):

* bare DuckDB: ``CREATE TABLE t AS SELECT * FROM read_parquet(file)`` / ``read_csv(file)`` (the
  baseline of the ratio), and for reference the same plus ``COPY`` to date-partitioned Parquet
  (what a lake write costs at the least);
* ``import_file`` into a fresh workspace (Parquet, then CSV);
* a re-import of the Parquet file into the same workspace (every row a duplicate);
* identity links: importing small files whose rows carry both user_id and anonymous_id, for
  a growing number of users, to show how the identity merge scales.

Rows carry either a user_id (80%) or, before login, only an anonymous_id (20%), so the big
file yields no identity links; links are measured separately (see above).

Run with ``python benchmarks/bench_import.py [--rows 5000000] [--formats parquet,csv]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

END = "2026-11-20 00:00:00+00"  # events span the year before this (the importer refuses the future)


def generate_sql(rows: int, users: int, linked: bool) -> str:
    """Deterministic pseudo-random events from hashes of the row number."""
    anon = (
        "'a-' || lpad(u::VARCHAR, 6, '0')"
        if linked
        else "CASE WHEN user_id IS NULL THEN 'a-' || lpad(u::VARCHAR, 6, '0') END"
    )
    return f"""
    WITH base AS (
        SELECT i,
               (hash(i, 1) % {users})::BIGINT AS u,
               (hash(i, 2) % 1000000) / 1e6 AS r_type,
               (hash(i, 3) % 1000000) / 1e6 AS r_event,
               (hash(i, 4) % 1000000) / 1e6 AS r_user,
               (hash(i, 5) % (365 * 86400000000::BIGINT))::BIGINT AS us_back,
               (hash(i, 6) % 100000)::BIGINT AS product,
               (hash(i, 7) % 40000) / 100.0 + 5 AS price,
               (hash(i, 8) % 3 + 1)::BIGINT AS qty
        FROM range({rows}) t(i)
    ), typed AS (
        SELECT *,
               CASE WHEN r_type < 0.02 THEN 'identify' WHEN r_type < 0.12 THEN 'page' ELSE 'track' END AS type,
               CASE WHEN r_type < 0.02 OR r_user < 0.8 THEN 'u' || lpad(u::VARCHAR, 6, '0') END AS user_id
        FROM base
    ), named AS (
        SELECT *,
               CASE type
                   WHEN 'identify' THEN NULL
                   WHEN 'page' THEN CASE WHEN r_event < 0.5 THEN 'Home' WHEN r_event < 0.8 THEN 'Category' ELSE 'Search' END
                   ELSE CASE WHEN r_event < 0.01 THEN 'Order Completed'
                             WHEN r_event < 0.50 THEN 'Product Viewed'
                             WHEN r_event < 0.65 THEN 'Product Added'
                             WHEN r_event < 0.80 THEN 'Products Searched'
                             WHEN r_event < 0.90 THEN 'Product List Viewed'
                             ELSE 'Checkout Started' END
               END AS event
        FROM typed
    )
    SELECT md5(i::VARCHAR) AS message_id, type, event, user_id, {anon} AS anonymous_id,
           TIMESTAMPTZ '{END}' - to_microseconds(us_back) AS timestamp,
           CASE
               WHEN type = 'identify' THEN NULL
               WHEN event = 'Order Completed' THEN json_object(
                   'order_id', 'o-' || md5(i::VARCHAR)[:12], 'revenue', round(price * qty, 2), 'currency', 'EUR',
                   'product_id', 'p-' || lpad(product::VARCHAR, 5, '0'), 'quantity', qty)::VARCHAR
               WHEN type = 'page' THEN json_object(
                   'path', '/' || lower(event) || '/' || product, 'title', event || ' | Northway Outfitters',
                   'referrer', 'https://www.example.com/')::VARCHAR
               ELSE json_object(
                   'product_id', 'p-' || lpad(product::VARCHAR, 5, '0'), 'category',
                   ['Outdoor > Tents', 'Kitchen > Knives', 'Garden > Tools', 'Books > Travel'][product % 4 + 1],
                   'price', price, 'currency', 'EUR', 'quantity', qty)::VARCHAR
           END AS properties
    FROM named
    """


def generate(folder: Path, rows: int, users: int, formats: list[str], linked: bool = False) -> dict[str, Any]:
    import duckdb

    t0 = time.perf_counter()
    con = duckdb.connect()
    con.execute(f"CREATE TABLE events AS {generate_sql(rows, users, linked)}")
    files = {}
    for fmt in formats:
        path = folder / f"events.{fmt}"
        option = "FORMAT parquet" if fmt == "parquet" else "FORMAT csv, HEADER true"
        con.execute(f"COPY events TO '{path}' ({option})")
        files[fmt] = str(path)
    avg_props = con.execute("SELECT avg(length(properties)) FROM events").fetchone()[0]  # type: ignore[index]
    con.close()
    return {
        "seconds": time.perf_counter() - t0,
        "files": files,
        "sizes_mb": {fmt: Path(p).stat().st_size / 1e6 for fmt, p in files.items()},
        "avg_properties_bytes": avg_props,
    }


# -- steps, each run in a fresh process ---------------------------------------------------
def step_bare(path: str, fmt: str, out: str | None = None) -> dict[str, Any]:
    """CREATE TABLE AS read_*; with ``out``, also write it as date-partitioned Parquet."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    reader = "read_parquet(?)" if fmt == "parquet" else "read_csv(?)"
    t0 = time.perf_counter()
    con.execute(f"CREATE TABLE t AS SELECT * FROM {reader}", [path])
    if out:
        con.execute(
            f"COPY (SELECT *, strftime(timestamp, '%Y-%m-%d') AS date FROM t) TO '{out}' "
            "(FORMAT parquet, PARTITION_BY (date))"
        )
    seconds = time.perf_counter() - t0
    rows = con.execute("SELECT count(*) FROM t").fetchone()[0]  # type: ignore[index]
    return {"seconds": seconds, "rows": rows}


def step_tenure(path: str, workspace: str) -> dict[str, Any]:
    from tenure import Workspace
    from tenure.ingest.importer import import_file

    with Workspace.init(workspace) as ws:
        t0 = time.perf_counter()
        summary = import_file(ws, Path(path), "events")
        seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "rows": summary.rows,
        "imported": summary.imported,
        "duplicates": summary.duplicates,
        "quarantined": summary.quarantined,
    }


def run_step(*argv: str, timeout: float | None = None) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--step", *argv], check=True, capture_output=True, text=True, timeout=timeout
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _step_main(argv: list[str]) -> None:
    kind, *rest = argv
    if kind == "bare":
        result = step_bare(rest[0], rest[1], rest[2] if len(rest) > 2 else None)
    else:
        result = step_tenure(rest[0], rest[1])
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def bench_links(folder: Path, sizes: list[int], timeout: float) -> list[dict[str, Any]]:
    """Import 50k-row files whose rows carry both ids: the identity merge of ``n`` new links."""
    out = []
    for users in sizes:
        sub = folder / f"links-{users}"
        sub.mkdir()
        gen = generate(sub, 50_000, users, ["parquet"], linked=True)
        try:
            result = run_step("tenure", gen["files"]["parquet"], str(sub / "ws"), timeout=timeout)
        except subprocess.TimeoutExpired:
            result = {"seconds": float("inf"), "rows": 50_000, "peak_rss_mb": float("nan")}
        result["users"] = users
        out.append(result)
    return out


def markdown(rows: int, gen: dict[str, Any], results: dict[str, dict[str, Any]], links: list[dict[str, Any]]) -> str:
    sizes = ", ".join(f"{fmt} {mb:,.0f} MB" for fmt, mb in gen["sizes_mb"].items())
    lines = [
        f"Import: {rows:,} events (generated in {gen['seconds']:.1f} s; {sizes}; properties "
        f"{gen['avg_properties_bytes']:.0f} bytes on average), 365 daily partitions, no identity links in the file.",
        "",
        "| step | seconds | rows/s | tenure / bare | peak RSS MB | result |",
        "|---|---:|---:|---:|---:|---|",
    ]
    labels = {
        "bare_parquet": "bare DuckDB: CREATE TABLE AS read_parquet",
        "bare_write_parquet": "bare DuckDB: the same, then COPY to date-partitioned Parquet",
        "tenure_parquet": "tenure import_file (Parquet, fresh workspace)",
        "reimport_parquet": "tenure re-import (Parquet, all duplicates)",
        "bare_csv": "bare DuckDB: CREATE TABLE AS read_csv",
        "tenure_csv": "tenure import_file (CSV, fresh workspace)",
    }
    for key, label in labels.items():
        r = results.get(key)
        if r is None:
            continue
        fmt = key.rsplit("_", 1)[1]
        bare = results.get(f"bare_{fmt}")
        ratio = f"**{bare['seconds'] / r['seconds']:.2f}**" if bare and not key.startswith("bare") else ""
        if key == "bare_write_parquet" and bare:
            ratio = f"({bare['seconds'] / r['seconds']:.2f})"
        detail = (
            f"{r['imported']:,} imported, {r['duplicates']:,} duplicates, {r['quarantined']:,} quarantined"
            if "imported" in r
            else f"{r['rows']:,} rows"
        )
        lines.append(
            f"| {label} | {r['seconds']:.1f} | {r['rows'] / r['seconds']:,.0f} | {ratio} | {r['peak_rss_mb']:,.0f} | {detail} |"
        )
    if links:
        lines += [
            "",
            "Identity links: 50,000-row Parquet files whose rows all carry user_id and anonymous_id "
            "(one new link per user), imported into a fresh workspace.",
            "",
            "| users = new links | import seconds | rows/s |",
            "|---:|---:|---:|",
        ]
        for r in links:
            lines.append(f"| {r['users']:,} | {r['seconds']:.1f} | {r['rows'] / r['seconds']:,.0f} |")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--step":
        _step_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000, help="rows in the events file (default 5,000,000)")
    parser.add_argument("--users", type=int, default=200_000, help="distinct users (default 200,000)")
    parser.add_argument("--formats", default="parquet,csv", help="parquet,csv (default both)")
    parser.add_argument("--no-reimport", action="store_true", help="skip the all-duplicates re-import")
    parser.add_argument(
        "--link-users", default="4000,8000,16000", help="identity-link runs: users per 50k-row file ('' to skip)"
    )
    parser.add_argument("--link-timeout", type=float, default=300, help="seconds before a link run is abandoned")
    parser.add_argument("--dir", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--json", action="store_true", help="print the raw results as JSON to stderr")
    args = parser.parse_args()
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    with tempfile.TemporaryDirectory(prefix="tenure-bench-import-", dir=args.dir) as tmp:
        folder = Path(tmp)
        gen = generate(folder, args.rows, args.users, formats)
        results: dict[str, dict[str, Any]] = {}
        for fmt in formats:
            path = gen["files"][fmt]
            results[f"bare_{fmt}"] = run_step("bare", path, fmt)
            if fmt == "parquet":
                results["bare_write_parquet"] = run_step("bare", path, fmt, str(folder / "bare-lake"))
            ws = str(folder / f"ws-{fmt}")
            results[f"tenure_{fmt}"] = run_step("tenure", path, ws)
            if fmt == "parquet" and not args.no_reimport:
                results["reimport_parquet"] = run_step("tenure", path, ws)
        links = bench_links(folder, [int(x) for x in args.link_users.split(",") if x.strip()], args.link_timeout)
    if args.json:
        print(json.dumps({"generate": gen, "results": results, "links": links}), file=sys.stderr)
    print(markdown(args.rows, gen, results, links))


if __name__ == "__main__":
    main()
