"""Benchmark: collector throughput (durable acknowledgements) against the HTTP + JSON ceiling.

Starts ``tenure serve`` on a fresh workspace and, from a separate client process, posts
Segment ``/v1/batch`` requests (100 track events each, ~200-byte properties, gzip off) over a
few concurrent keep-alive connections for ``--duration`` seconds. Counts only 200 answers,
which the collector sends after the batch is committed to the SQLite inbox. Then stops the
server (its shutdown flushes), runs ``tenure flush`` and checks that the lake holds exactly the
acknowledged events. The same client first runs against a trivial FastAPI/uvicorn endpoint that
parses the JSON and answers 200 without storing anything: the ceiling Tenure is compared to.

Run with ``python benchmarks/bench_collector.py [--duration 30] [--connections 8]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing as mp
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response

WRITE_KEY = "bench-write-key"
EVENTS = ("Product Viewed", "Product Added", "Products Searched", "Product List Viewed", "Checkout Started")
CATEGORIES = ("Outdoor > Tents", "Outdoor > Sleeping Bags", "Kitchen > Knives", "Garden > Tools", "Books > Travel")
BRANDS = ("Northway", "Fjellkit", "Acme", "Lumen", "Oakridge")


# -- the baseline server ------------------------------------------------------------------
def make_baseline_app() -> Any:
    """FastAPI app that parses the JSON batch and answers 200 without storing it."""
    import orjson

    app = FastAPI()

    @app.post("/v1/{endpoint}")
    async def collect(endpoint: str, request: Request) -> Response:
        payload = orjson.loads(await request.body())
        body = orjson.dumps({"success": True, "accepted": len(payload.get("batch") or [])})
        return Response(body, media_type="application/json")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def serve_baseline(port: int) -> None:
    import uvicorn

    uvicorn.run(make_baseline_app(), host="127.0.0.1", port=port, log_level="warning", loop="uvloop", http="httptools")


# -- the client (runs in its own process) -----------------------------------------------------
USERS = 200_000


def _event_pool(rng: random.Random, size: int = 1000) -> list[dict[str, Any]]:
    """Track-event templates; the sender fills in user, device and message ids per request."""
    pool = []
    for _ in range(size):
        n = rng.randrange(100_000)
        event = "Order Completed" if rng.random() < 0.01 else rng.choice(EVENTS)
        properties: dict[str, Any] = {
            "product_id": f"p-{n:05d}",
            "sku": f"SKU-{n:05d}-{rng.choice('SML')}",
            "category": rng.choice(CATEGORIES),
            "name": f"Trail item {n}",
            "brand": rng.choice(BRANDS),
            "price": round(rng.uniform(5, 400), 2),
            "quantity": rng.randint(1, 3),
            "currency": "EUR",
            "position": rng.randint(1, 24),
            "url": f"https://shop.example.com/p/{n:05d}",
        }
        pool.append(
            {
                "type": "track",
                "event": event,
                "properties": properties,
                "context": {"library": {"name": "analytics-python", "version": "2.3.3"}},
            }
        )
    return pool


async def _client_worker(
    host: str, port: int, worker: int, deadline: float, batch: int, run_id: str, anonymous: bool, out: dict[str, Any]
) -> None:
    import orjson

    rng = random.Random(worker)
    pool = _event_pool(rng)
    auth = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    head = (
        f"POST /v1/batch HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Basic {auth}\r\n"
        "Content-Type: application/json\r\nUser-Agent: tenure-bench\r\nContent-Length: "
    ).encode()
    reader, writer = await asyncio.open_connection(host, port)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    latencies: list[float] = out["latencies"]
    seq = 0
    while time.perf_counter() < deadline:
        start = (seq * batch) % len(pool)
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        items = []
        for i in range(batch):
            msg = pool[(start + i) % len(pool)]
            mid = f"{run_id}-{worker}-{seq}-{i}"
            msg["messageId"] = mid
            msg["timestamp"] = now
            user = int(rng.random() * USERS)
            msg["userId"] = f"u{user:06d}"
            if anonymous:  # the user's device id (a second device for 10% of users), as analytics.js sends
                msg["anonymousId"] = f"a-{user:06d}-{int(user % 10 == 0 and rng.random() < 0.5)}"
            if msg["event"] == "Order Completed":
                msg["properties"]["order_id"] = f"o-{mid}"
                msg["properties"]["revenue"] = msg["properties"]["price"]
            items.append(msg)
        body = orjson.dumps({"batch": items, "sentAt": now})
        t0 = time.perf_counter()
        writer.write(head + str(len(body)).encode() + b"\r\n\r\n" + body)
        header = await reader.readuntil(b"\r\n\r\n")
        status = int(header[9:12])
        length = 0
        for line in header.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if length:
            await reader.readexactly(length)
        latencies.append(time.perf_counter() - t0)
        seq += 1
        if status == 200:
            out["ok_requests"] += 1
            out["ok_events"] += batch
        else:
            out["failed"] += 1
            out.setdefault("statuses", {}).setdefault(status, 0)
            out["statuses"][status] += 1
    writer.close()


def _run_client(
    host: str, port: int, connections: int, duration: float, batch: int, run_id: str, anonymous: bool, queue: Any
) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    import resource

    out: dict[str, Any] = {"ok_requests": 0, "ok_events": 0, "failed": 0, "latencies": []}

    async def main() -> float:
        t0 = time.perf_counter()
        deadline = t0 + duration
        await asyncio.gather(
            *(_client_worker(host, port, w, deadline, batch, run_id, anonymous, out) for w in range(connections))
        )
        return time.perf_counter() - t0

    elapsed = asyncio.run(main())
    lat = sorted(out.pop("latencies"))
    usage = resource.getrusage(resource.RUSAGE_SELF)

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")

    out.update(
        elapsed=elapsed,
        events_per_s=out["ok_events"] / elapsed,
        requests_per_s=out["ok_requests"] / elapsed,
        p50_ms=pct(0.50),
        p99_ms=pct(0.99),
        max_ms=lat[-1] * 1000 if lat else float("nan"),
        client_cpu_s=usage.ru_utime + usage.ru_stime,
    )
    queue.put(out)


def run_client(
    port: int, connections: int, duration: float, batch: int, run_id: str, anonymous: bool = True
) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    args = ("127.0.0.1", port, connections, duration, batch, run_id, anonymous, queue)
    proc = ctx.Process(target=_run_client, args=args)
    proc.start()
    result = queue.get(timeout=duration + 120)
    proc.join()
    return result


# -- helpers ----------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not become healthy")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop(proc: subprocess.Popen[bytes], timeout: float = 300) -> float:
    t0 = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=timeout)
    return time.perf_counter() - t0


def lake_count(workspace: Path) -> tuple[int, int]:
    import duckdb

    from tenure import Workspace

    with Workspace(workspace) as ws:
        paths = list(ws.lake.snapshot().paths("events"))
    if not paths:
        return 0, 0
    con = duckdb.connect()
    total, distinct = con.execute("SELECT count(*), count(DISTINCT message_id) FROM read_parquet(?)", [paths]).fetchone()  # type: ignore[misc]
    return int(total), int(distinct)


# -- the two runs -----------------------------------------------------------------------
def bench_baseline(args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve-baseline", str(port)])
    try:
        wait_healthy(port, proc)
        cpu0 = cpu_seconds(proc.pid)
        result = run_client(port, args.connections, args.duration, args.batch, "base")
        result["server_cpu_s"] = cpu_seconds(proc.pid) - cpu0
    finally:
        stop(proc)
    return result


def bench_tenure(args: argparse.Namespace, root: Path, anonymous: bool) -> dict[str, Any]:
    ws = root / ("ws-anon" if anonymous else "ws-user")
    cli = [sys.executable, "-m", "tenure.cli"]
    subprocess.run([*cli, "init", str(ws), "--write-key", WRITE_KEY], check=True, capture_output=True)
    port = free_port()
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}  # FastAPI warns on every ORJSONResponse
    proc = subprocess.Popen([*cli, "serve", "-w", str(ws), "--host", "127.0.0.1", "--port", str(port)], env=env)
    try:
        wait_healthy(port, proc)
        cpu0 = cpu_seconds(proc.pid)
        result = run_client(port, args.connections, args.duration, args.batch, "tenure", anonymous)
        result["server_cpu_s"] = cpu_seconds(proc.pid) - cpu0
        with sqlite3.connect(ws / "state.db") as db:
            backlog = db.execute("SELECT count(*), coalesce(sum(n_messages), 0) FROM inbox").fetchone()
        result["inbox_backlog_events"] = int(backlog[1])
    finally:
        shutdown = stop(proc, timeout=args.shutdown_timeout)
    result["shutdown_s"] = shutdown
    t0 = time.perf_counter()
    subprocess.run([*cli, "flush", "-w", str(ws)], check=True, capture_output=True)
    result["final_flush_s"] = time.perf_counter() - t0
    total, distinct = lake_count(ws)
    result["lake_events"] = total
    result["lake_distinct"] = distinct
    result["durable"] = total == distinct == result["ok_events"]
    return result


VARIANTS = {
    "anon": ("tenure serve, userId + anonymousId", True),
    "user": ("tenure serve, userId only", False),
}


def markdown(base: dict[str, Any] | None, runs: dict[str, dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        f"Collector: {args.duration:.0f} s per server, {args.connections} keep-alive connections from one client "
        f"process (asyncio + uvloop, raw HTTP/1.1), batches of {args.batch} track events (~200-byte properties, "
        "200k users), gzip off. Server and client share the 2 cores.",
        "",
        "| server | events/s (200s) | requests/s | p50 ms | p99 ms | max ms | non-200 | server CPU s | client CPU s "
        "| vs baseline |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows = [("baseline: FastAPI, parse JSON, 200", base)] + [(VARIANTS[k][0], r) for k, r in runs.items()]
    for name, r in rows:
        if r is None:
            continue
        ratio = f"{r['events_per_s'] / base['events_per_s']:.2f}" if base else "-"
        lines.append(
            f"| {name} | {r['events_per_s']:,.0f} | {r['requests_per_s']:,.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} "
            f"| {r['max_ms']:,.0f} | {r['failed']} | {r['server_cpu_s']:.1f} | {r['client_cpu_s']:.1f} | {ratio} |"
        )
    lines += [
        "",
        "| durability check | " + " | ".join(VARIANTS[k][0] for k in runs) + " |",
        "|---|" + "---:|" * len(runs),
    ]
    checks = [
        ("events acknowledged (200)", lambda r: f"{r['ok_events']:,}"),
        ("inbox backlog when the client stopped", lambda r: f"{r['inbox_backlog_events']:,}"),
        ("server shutdown (SIGINT, includes its final flush) s", lambda r: f"{r['shutdown_s']:.1f}"),
        ("`tenure flush` afterwards s", lambda r: f"{r['final_flush_s']:.1f}"),
        ("events in the lake (rows / distinct ids)", lambda r: f"{r['lake_events']:,} / {r['lake_distinct']:,}"),
        ("lake == acknowledged", lambda r: "yes" if r["durable"] else "**NO**"),
    ]
    for label, fmt in checks:
        lines.append(f"| {label} | " + " | ".join(fmt(r) for r in runs.values()) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load per server (default 30)")
    parser.add_argument("--connections", type=int, default=8, help="concurrent keep-alive connections (default 8)")
    parser.add_argument("--batch", type=int, default=100, help="events per request (default 100)")
    parser.add_argument(
        "--variants", default="anon,user", help="tenure runs: anon (userId + anonymousId), user (userId only)"
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the FastAPI ceiling run")
    parser.add_argument("--shutdown-timeout", type=float, default=600, help="seconds to wait for the server to stop")
    parser.add_argument("--json", action="store_true", help="print the raw results as JSON too")
    parser.add_argument("--serve-baseline", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_baseline:
        serve_baseline(args.serve_baseline)
        return
    base = None if args.no_baseline else bench_baseline(args)
    runs = {}
    with tempfile.TemporaryDirectory(prefix="tenure-bench-") as tmp:
        for variant in [v.strip() for v in args.variants.split(",") if v.strip()]:
            runs[variant] = bench_tenure(args, Path(tmp), anonymous=VARIANTS[variant][1])
    if args.json:
        print(json.dumps({"baseline": base, **runs}, default=str), file=sys.stderr)
    print(markdown(base, runs, args))
    if not all(r["durable"] for r in runs.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
