"""Benchmark: refreshing 50 saved segments (plus the 19 built-ins) together, and incrementally.

Generates a sample shop (``tenure.sample.write_sample``), imports it into a fresh workspace,
saves 50 rule segments drawn from templates covering the whole rule language (feature
thresholds, stage and RFM fields, traits, event counts and sums in windows, property filters,
cart abandoners with ``not_followed_by``, purchases by category with revenue sums, nested
``all``/``any``/``not`` and segment references) without computing them, then times:

* ``ws.segments.refresh()`` twice: the first one (everyone enters: many state writes) and a
  second one (steady state, no changes), each split into evaluation and state writes;
* ``ws.segments.evaluate(all 69 rules)`` alone: the one shared query;
* the naive baseline: one ``evaluate({name: rule})`` per segment (``--baseline N`` evaluates an
  evenly spaced subset of N segments, 23 by default, and extrapolates to all 69, saying so);
* an incremental import of ~1% more events (the latest rows, or with ``--increment random``
  rows drawn over the whole history, shifted one day later with new message and order ids),
  then ``ws.segments.refresh_people(their identifiers)`` and a full ``refresh()``.

Generation, import and the increment file are made in a child process, so the peak RSS reported
is the segments' own (and the increment's import). Prints a table and writes the results as
JSON. Events grow linearly with users (~54 per user over 60 days): ``--users 200000 --days 60``
gives ~10.8M events (the issue's target: refresh < 30 s); the defaults (~160k events) are a
smoke run of under 2 minutes.

Run with ``python benchmarks/segments.py [--users 3000] [--days 60] [--baseline 23] [--increment latest]
[--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: `benchmarks` importable

from benchmarks.analytics import prepare as prepare_shop  # noqa: E402
from tenure import Workspace  # noqa: E402
from tenure.ingest.importer import import_file  # noqa: E402
from tenure.segments.rules import parse_rule  # noqa: E402
from tenure.segments.service import RULE, RefreshResult, Segments, builtin_segments  # noqa: E402

Rule = dict[str, Any]
CATEGORIES = ("Apparel", "Shoes", "Beauty", "Home", "Kitchen", "Electronics", "Books", "Toys", "Sports",
              "Garden", "Grocery", "Pets")


def _f(name: str, op: str, value: Any = None) -> Rule:
    return {"field": name, "op": op, "value": value} if value is not None else {"field": name, "op": op}


def _count(op: str, value: float) -> Rule:
    return {"op": op, "value": value}


def saved_rules() -> dict[str, Rule]:
    """50 distinct rule segments from a dozen templates with varying thresholds and windows.

    Later rules may refer to earlier ones (and to built-ins), so they are saved in this order.
    """
    rules: dict[str, Rule] = {}
    # Feature thresholds (8).
    for value in (50, 150, 400):
        rules[f"revenue >= {value}"] = _f("revenue", "gte", value)
    for value in (2, 4):
        rules[f"orders >= {value}"] = _f("orders", "gte", value)
    rules["aov 40-120"] = _f("aov", "between", [40, 120])
    rules["engaged 30d"] = {"all": [_f("events_30d", "gte", 20), _f("sessions_30d", "gte", 3)]}
    rules["new this fortnight"] = _f("first_seen", "gte", "14d ago")
    # Stage and RFM fields (6).
    rules["slipping big spenders"] = {"all": [_f("stage", "in", ["At risk", "Churned"]), _f("revenue", "gte", 100)]}
    rules["new or reactivated"] = _f("stage", "in", ["New customer", "Reactivated"])
    rules["leads on the web"] = {"all": [_f("stage", "eq", "Lead"), _f("events_30d", "gte", 5)]}
    rules["rfm top"] = _f("rfm_segment", "in", ["Champions", "Loyal"])
    rules["rfm high r low f"] = {"all": [_f("r_score", "gte", 4), _f("f_score", "lte", 2)]}
    rules["rfm big spenders"] = _f("m_score", "eq", 5)
    # Traits (5).
    rules["country US"] = {"trait": "country", "op": "eq", "value": "US"}
    rules["country EU"] = {"trait": "country", "op": "in", "value": ["DE", "FR", "NL", "ES", "IT", "IE"]}
    rules["country GB or CA"] = {"trait": "country", "op": "in", "value": ["GB", "CA"]}
    rules["channel paid"] = {"trait": "channel", "op": "in", "value": ["paid_search", "social"]}
    rules["channel email or referral"] = {"trait": "channel", "op": "in", "value": ["email", "referral"]}
    # Event counts in windows (5).
    for days, n in ((7, 3), (30, 10), (90, 25)):
        rules[f"{n}+ views in {days}d"] = {"event": "Product Viewed", "within": f"{days}d", "count": _count("gte", n)}
    rules["2+ orders in 30d"] = {"event": "Order Completed", "within": "30d", "count": _count("gte", 2)}
    rules["no order in 60d"] = {"event": "Order Completed", "within": "60d", "count": _count("eq", 0)}
    # Event sums in windows (4).
    for days, value in ((14, 50), (30, 100), (60, 250), (90, 500)):
        rules[f"spent {value} in {days}d"] = {"event": "Order Completed", "within": f"{days}d",
                                              "sum": {"property": "revenue", "op": "gte", "value": value}}
    # Event property filters (5).
    for k, days in enumerate((7, 14, 30, 30, 60)):
        category = CATEGORIES[k]
        rules[f"viewed {category} in {days}d"] = {
            "event": "Product Viewed", "within": f"{days}d", "where": [{"property": "category", "op": "eq",
                                                                       "value": category}]}
    # Cart abandoners: added to cart, no order within the follow-up window (4).
    for days, follow in ((3, "1h"), (7, "1d"), (14, "2d"), (30, "3d")):
        rules[f"abandoned cart {days}d/{follow}"] = {
            "event": "Product Added", "within": f"{days}d", "not_followed_by": {"event": "Order Completed",
                                                                              "within": follow}}
    # Purchases: category lines, revenue sums, counts (5).
    for k, (days, value) in enumerate(((30, 20), (60, 40), (90, 60), (365, 100))):
        category = CATEGORIES[6 + k]
        rules[f"bought {category} {value}+ in {days}d"] = {
            "purchased": [{"property": "category", "op": "eq", "value": category}], "within": f"{days}d",
            "sum": {"property": "revenue", "op": "gte", "value": value}}
    rules["premium lines buyer"] = {"purchased": [{"property": "price", "op": "gte", "value": 60}],
                                    "count": _count("gte", 2)}
    # Nested all / any / not (4).
    rules["at risk, was engaged, not EU"] = {"all": [
        _f("stage", "eq", "At risk"),
        {"any": [_f("orders", "gte", 3), {"event": "Product Viewed", "within": "90d", "count": _count("gte", 10)}]},
        {"not": {"trait": "country", "op": "in", "value": ["DE", "FR", "NL", "ES", "IT", "IE"]}}]}
    rules["browsers who never bought"] = {"all": [
        {"event": "Product Viewed", "within": "30d", "count": _count("gte", 5)},
        {"not": {"purchased": []}}]}
    rules["win-back candidates"] = {"any": [
        {"all": [_f("recency_days", "gte", 30), _f("orders", "gte", 2)]},
        {"all": [_f("rfm_segment", "in", ["At risk", "Cannot lose them"]), {"not": _f("channel", "eq", "email")}]}]}
    rules["multi-category loyal"] = {"all": [
        _f("distinct_categories", "gte", 3),
        {"any": [_f("stage", "eq", "Loyal"), {"event": "Order Completed", "within": "90d",
                                                "sum": {"property": "revenue", "op": "gte", "value": 150}}]},
        {"not": {"event": "Order Refunded", "within": "90d"}}]}
    # Segment references (to saved rules and built-ins) (4).
    rules["slipping US big spenders"] = {"all": [{"segment": "slipping big spenders"}, {"segment": "country US"}]}
    rules["abandoners worth a mail"] = {"all": [{"segment": "abandoned cart 7d/1d"}, {"segment": "revenue >= 50"},
                                                {"not": {"segment": "channel email or referral"}}]}
    rules["champions without recent order"] = {"all": [{"segment": "RFM: Champions"},
                                                       {"not": {"segment": "2+ orders in 30d"}}]}
    rules["at risk stage or rfm"] = {"any": [{"segment": "Stage: At risk"}, {"segment": "RFM: At risk"},
                                             {"segment": "win-back candidates"}]}
    # Top up to 50 with more thresholds on other features.
    extra = [
        ("ipt under 20d", _f("ipt_mean_days", "lt", 20)),
        ("active 10+ days", _f("active_days", "gte", 10)),
        ("recent 7d sessions", _f("sessions_7d", "gte", 2)),
        ("focused on one category", _f("top_category_share", "gte", 0.8)),
        ("identified visitors", {"all": [_f("identified", "eq", True), _f("orders", "eq", 0)]}),
        ("top category Electronics", _f("top_category", "eq", "Electronics")),
        ("long tenure", _f("tenure_days", "gte", 45)),
        ("reviewers", {"event": "Product Reviewed", "within": "60d"}),
        ("checkout 2+ in 14d", {"event": "Checkout Started", "within": "14d", "count": _count("gte", 2)}),
    ]
    for name, rule in extra:
        if len(rules) >= 50:
            break
        rules[name] = rule
    assert len(rules) == 50, len(rules)
    return rules


def prepare(folder: Path, users: int, days: int, increment: str, seed: int) -> tuple[Path, set[str], dict[str, Any]]:
    """Generate the shop, import it into a fresh workspace and write the 1% increment (not imported).

    Returns the increment file and the identifiers it carries. Runs in a child process (see
    ``main``) so that the peak RSS measured in ``bench`` is the segments' own.
    """
    ws, info, files = prepare_shop(folder, users, days, seed)
    ws.close()
    path, rows, identifiers = more_events(files.events, folder / "more-events.parquet", 0.01, increment, seed + 1)
    info |= {"peak_rss_mb_prepare": peak_rss_mb(),
             "increment": {"how": increment, "rows": rows, "identifiers": len(identifiers)}}
    return path, identifiers, info


def more_events(events: Path, out: Path, share: float, how: str, seed: int) -> tuple[Path, int, set[str]]:
    """~``share`` of the events file's rows, one day later, with new message and order ids.

    ``how`` is ``latest`` (the latest rows: the next day's traffic, touching the people active
    lately) or ``random`` (rows drawn at random over the whole history: touches far more people).
    Returns the file, its rows and the user and anonymous ids the rows carry.
    """
    table = pq.read_table(events)
    if how == "latest":
        micros = table["timestamp"].cast(pa.int64()).to_numpy()
        keep = micros >= np.quantile(micros, 1 - share)
    else:
        keep = np.random.default_rng(seed).random(table.num_rows) < share
    picked = table.filter(pa.array(keep))
    shifted = pc.add(picked["timestamp"], pa.scalar(86_400_000_000, pa.duration("us")))
    picked = picked.set_column(picked.schema.get_field_index("timestamp"), "timestamp", shifted)
    ids = pc.binary_join_element_wise("inc-", picked["message_id"], "")
    picked = picked.set_column(picked.schema.get_field_index("message_id"), "message_id", ids)
    # Orders are keyed by order id: a copied order needs a new one (refunds follow the same rename).
    props = pc.replace_substring_regex(picked["properties"], r'"order_id":"([^"]+)"', r'"order_id":"\1-inc"')
    picked = picked.set_column(picked.schema.get_field_index("properties"), "properties", props)
    pq.write_table(picked, out)
    identifiers = {v for col in ("user_id", "anonymous_id") for v in picked[col].to_pylist() if v}
    return out, picked.num_rows, identifiers


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class WriteTimer:
    """Times the state writes of a refresh (``Segments._apply``) apart from the evaluation."""

    def __init__(self, segments: Segments) -> None:
        self.seconds = 0.0
        apply: Callable[..., RefreshResult] = segments._apply

        def timed(*args: Any, **kwargs: Any) -> RefreshResult:
            t0 = time.perf_counter()
            try:
                return apply(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0

        segments._apply = timed  # type: ignore[method-assign]

    def take(self) -> float:
        seconds, self.seconds = self.seconds, 0.0
        return seconds


def refresh_row(call: Callable[[], RefreshResult], timer: WriteTimer) -> dict[str, Any]:
    cpu = time.process_time()
    result = call()
    cpu = time.process_time() - cpu
    writes = timer.take()
    return {"seconds": result.seconds, "write_seconds": writes, "evaluate_seconds": result.seconds - writes,
            "cpu_seconds": cpu, "segments": result.segments, "people": result.people, "entered": result.entered,
            "exited": result.exited}


def bench(ws: Workspace, increment: Path, identifiers: set[str], baseline: int) -> dict[str, Any]:
    seg = ws.segments
    results: dict[str, Any] = {"peak_rss_mb_open": peak_rss_mb()}
    rules = saved_rules()
    for name, rule in rules.items():  # saved without computing them, so that refresh is timed alone
        parse_rule(rule, f"segments.{name}")
        seg._save(name, RULE, rule, "benchmark", replace=False)
    everything = {**builtin_segments(), **rules}
    results["segments"] = {"saved": len(rules), "builtin": len(builtin_segments())}
    timer = WriteTimer(seg)

    results["refresh_first"] = refresh_row(seg.refresh, timer)
    results["refresh_second"] = refresh_row(seg.refresh, timer)
    listed = seg.list()
    results["sizes"] = {str(n): int(s) for n, s in zip(listed["name"], listed["size"], strict=True)}
    results["peak_rss_mb_refresh"] = peak_rss_mb()

    t0, cpu = time.perf_counter(), time.process_time()
    flags = seg.evaluate(everything)
    results["evaluate_all"] = {"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - cpu,
                               "people": len(flags)}
    del flags

    names = list(everything)
    chosen = names if baseline >= len(names) else [names[int(i)] for i in np.linspace(0, len(names) - 1, baseline)]
    per: dict[str, float] = {}
    cpu = time.process_time()
    for name in chosen:
        t0 = time.perf_counter()
        seg.evaluate({name: everything[name]})
        per[name] = time.perf_counter() - t0
    measured, cpu = sum(per.values()), time.process_time() - cpu
    results["baseline"] = {"evaluated": len(chosen), "of": len(names), "measured_seconds": measured,
                           "cpu_seconds": cpu * len(names) / len(chosen),
                           "seconds": measured * len(names) / len(chosen), "extrapolated": len(chosen) < len(names),
                           "per_segment": per}
    results["peak_rss_mb_full"] = peak_rss_mb()

    t0 = time.perf_counter()
    summary = import_file(ws, increment, "events")
    results["increment"] = {"imported": summary.imported, "quarantined": summary.quarantined,
                            "people": len(ws.identity.persons_of(identifiers)),
                            "import_seconds": time.perf_counter() - t0}
    results["refresh_people"] = refresh_row(lambda: seg.refresh_people(identifiers), timer)
    results["refresh_after_increment"] = refresh_row(seg.refresh, timer)
    results["peak_rss_mb"] = peak_rss_mb()
    return results


def render(info: dict[str, Any], results: dict[str, Any]) -> Table:
    counts = results["segments"]
    table = Table(title=f"Segments ({counts['saved']} saved + {counts['builtin']} built-in) on {info['events']:,} "
                        f"events, {info['users']:,} users x {info['days']} days ({info['orders']:,} orders)")
    for column in ("step", "people", "entered", "exited", "evaluate s", "state writes s", "total s", "CPU s"):
        table.add_column(column, justify="left" if column == "step" else "right")

    def row(step: str, r: dict[str, Any]) -> None:
        table.add_row(step, f"{r['people']:,}", f"{r['entered']:,}", f"{r['exited']:,}", f"{r['evaluate_seconds']:.2f}",
                      f"{r['write_seconds']:.2f}", f"{r['seconds']:.2f}", f"{r['cpu_seconds']:.1f}")

    row("refresh(), first (everyone enters)", results["refresh_first"])
    row("refresh(), second (steady state)", results["refresh_second"])
    e = results["evaluate_all"]
    table.add_row("evaluate(all 69), one query", f"{e['people']:,}", "", "", f"{e['seconds']:.2f}", "",
                  f"{e['seconds']:.2f}", f"{e['cpu_seconds']:.1f}")
    b = results["baseline"]
    label = (f"baseline: evaluate() each ({b['evaluated']} of {b['of']}, extrapolated)"
             if b["extrapolated"] else f"baseline: evaluate() each of the {b['of']}")
    table.add_row(label, "", "", "", f"{b['seconds']:.2f}", "", f"{b['seconds']:.2f}", f"{b['cpu_seconds']:.1f}")
    table.add_row("  baseline / evaluate(all)", "", "", "", f"{b['seconds'] / e['seconds']:.1f}x", "", "",
                  f"{b['cpu_seconds'] / e['cpu_seconds']:.1f}x")
    inc = {**info["increment"], **results["increment"]}
    table.add_row(f"import +{inc['rows']:,} events (1%, {inc['how']})", f"{inc['people']:,}", "", "", "", "",
                  f"{inc['import_seconds']:.2f}", "")
    row("refresh_people(touched)", results["refresh_people"])
    row("refresh() after the import", results["refresh_after_increment"])
    table.caption = (
        f"peak RSS of the segment work: {results['peak_rss_mb_open']:.0f} MB after opening, "
        f"{results['peak_rss_mb_refresh']:.0f} MB after the refreshes, {results['peak_rss_mb_full']:.0f} MB after "
        f"the baseline, {results['peak_rss_mb']:.0f} MB at the end; generate {info['generate_seconds']:.1f} s, "
        f"import {info['import_seconds']:.1f} s and the increment file in a child process (peak RSS {info['peak_rss_mb_prepare']:.0f} MB); "
        "evaluate = refresh minus its state writes; CPU s = process CPU time, all threads")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=3000, help="sample shop users")
    parser.add_argument("--days", type=int, default=60, help="sample shop days")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline", type=int, default=23,
                        help="segments the one-query-each baseline evaluates (evenly spaced, extrapolated to all "
                             "69); 69 evaluates every one")
    parser.add_argument("--increment", choices=("latest", "random"), default="latest",
                        help="which 1%% of the events to import again a day later: the latest or random rows")
    parser.add_argument("--json", type=Path, default=Path("segments-benchmark.json"), help="where results go")
    args = parser.parse_args()
    console = Console(width=140)
    with tempfile.TemporaryDirectory() as tmp:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            job = pool.submit(prepare, Path(tmp), args.users, args.days, args.increment, args.seed)
            increment, identifiers, info = job.result()
        with Workspace(Path(tmp) / "ws") as ws:
            results = bench(ws, increment, identifiers, max(1, args.baseline))
    console.print(render(info, results))
    args.json.write_text(json.dumps({"sample": info, **results}, indent=2))


if __name__ == "__main__":
    main()
