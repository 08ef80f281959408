"""The generator's pipeline: draw the latent world, lay out behaviour, render and write files."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa

from tenure.sample._calendar import Calendar
from tenure.sample._catalogue import CATEGORY_NAMES, catalogue_size, make_catalogue, pick_items
from tenure.sample._events import ORDER, build_events, make_carts, order_lines
from tenure.sample._files import (
    SampleFiles,
    ground_truth_items,
    ground_truth_users,
    items_table,
    person_facts,
    users_table,
    write_params,
    write_table,
)
from tenure.sample._params import CHANNELS, COUNTRIES, SampleParams
from tenure.sample._population import make_population, names_and_emails, user_ids
from tenure.sample._purchases import after_sales, price_orders, simulate_bgnbd
from tenure.sample._render import render_blocks, write_events
from tenure.sample._sessions import first_visits, layout_sessions

log = logging.getLogger(__name__)
Progress = Callable[[str, float], None]


def _no_progress(stage: str, fraction: float) -> None:
    return None


def write_sample(
    out_dir: Path,
    *,
    users: int,
    days: int,
    seed: int = 0,
    start: date = date(2025, 1, 1),
    fmt: Literal["parquet", "csv"] = "parquet",
    progress: Progress | None = None,
    params: SampleParams | None = None,
) -> SampleFiles:
    """Generate a synthetic shop of ``users`` people over ``days`` days and write it to ``out_dir``.

    Writes ``events``, ``users`` and ``items`` (Parquet, or gzip CSV) and ``ground_truth/``
    (``users.parquet``, ``items.parquet``, ``params.json``). The same arguments always give
    byte-identical data. ``progress(stage, fraction)`` is called as stages complete.

    Examples
    --------
    >>> files = write_sample(Path("/tmp/shop"), users=1_000, days=90, seed=1)  # doctest: +SKIP
    >>> files.n_orders > 0  # doctest: +SKIP
    True
    """
    if users < 1 or days < 1:
        raise ValueError("users and days must be positive")
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"fmt must be 'parquet' or 'csv', got {fmt!r}")
    params = params or SampleParams()
    report = progress or _no_progress
    out_dir = Path(out_dir)
    (out_dir / "ground_truth").mkdir(parents=True, exist_ok=True)
    ext = "parquet" if fmt == "parquet" else "csv.gz"
    start_us = int(datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp()) * 1_000_000

    rng = np.random.default_rng(seed)
    cal = Calendar(start, days)
    cat = make_catalogue(rng, catalogue_size(users), params)
    pop = make_population(rng, users, cal.op_end, cat, params)
    report("population", 1.0)
    fv = first_visits(rng, pop, cal.op_end, params)
    hist = simulate_bgnbd(rng, pop.lam, pop.p_drop, fv.t_first, cal.op_end)
    sess = layout_sessions(rng, pop, fv, hist, cal.op_end, params)
    view_items = pick_items(rng, cat, pop.factors, pop.affinity, np.repeat(sess.person, sess.n_views))
    offset, items = order_lines(sess, view_items, len(hist.person))
    book = price_orders(rng, pop, cat, hist.person, offset, items, params)
    after = after_sales(rng, pop, cat, hist, book, cal.op_end, params)
    carts = make_carts(sess, pop, cat, view_items, book)
    report("behaviour", 1.0)
    ev = build_events(rng, sess, pop, cat, view_items, carts, hist, after, cal, start_us)
    blocks = render_blocks(cat, carts, book, after)
    report("events", 0.0)
    log.debug("sample: %d people, %d sessions, %d events", users, sess.size, len(ev.ts))

    uid = user_ids(users)
    names, emails = names_and_emails(pop)
    countries = [COUNTRIES[c] for c in pop.country.tolist()]
    channels = [CHANNELS[c] for c in pop.channel.tolist()]
    traits = pa.array([
        json.dumps({"email": e, "name": nm, "country": co, "channel": ch}, separators=(",", ":"))
        for e, nm, co, ch in zip(emails, names, countries, channels, strict=True)
    ])
    events_path = out_dir / f"events.{ext}"
    write_events(events_path, fmt, ev, blocks, seed=seed, user_ids=pa.array(uid),
                 anon_ids=pa.array(pop.anon_ids), traits=traits, channel=pop.channel,
                 progress=lambda f: report("events", f))

    facts = person_facts(ev, users, ORDER)
    users_path = out_dir / f"users.{ext}"
    items_path = out_dir / f"items.{ext}"
    write_table(users_table(pop, facts, uid, names, emails), users_path, fmt)
    write_table(items_table(cat), items_path, fmt)
    gt = out_dir / "ground_truth"
    write_table(ground_truth_users(pop, facts, ev, hist, book, after, cal, start_us, uid, params),
                gt / "users.parquet", "parquet")
    write_table(ground_truth_items(cat), gt / "items.parquet", "parquet")
    n_signed = int(facts.signed_up.sum())
    write_params(gt / "params.json", {
        "seed": seed, "start": start.isoformat(), "days": days, "users": users, "n_items": cat.size,
        "format": fmt, "population": params.as_dict(),
        "funnel": {"view_to_add": params.view_to_add, "add_to_checkout": params.add_to_checkout,
                   "checkout_to_order": params.checkout_to_order},
        "currency_rates_to_usd": {"USD": 1.0, "EUR": params.eur_usd},
        "seasonality": cal.profile(),
        "categories": list(CATEGORY_NAMES),
        "counts": {"events": len(ev.ts), "orders": len(hist.person), "sessions": sess.size,
                   "signed_up_users": n_signed, "refunds": len(after.refund_order),
                   "reviews": len(after.review_item)},
        "notes": _NOTES,
    })
    report("done", 1.0)
    return SampleFiles(
        events=events_path, users=users_path, items=items_path, ground_truth_users=gt / "users.parquet",
        ground_truth_items=gt / "items.parquet", ground_truth_params=gt / "params.json",
        n_events=len(ev.ts), n_orders=len(hist.person), n_users=n_signed, n_items=cat.size,
    )


_NOTES = {
    "time": "BG/NBD rates are per operational day: calendar time warped by the seasonal "
            "intensity in 'seasonality'; observation_op_days is T in those units.",
    "bgnbd": "First order at sign-up; repeat purchases Poisson(lambda); after each repeat "
             "purchase the person drops out with probability p. dropout_at is the last purchase "
             "ever (it may lie after the period; null if never bought or > 100 years away).",
    "alive_at_end": "null for people who never placed an order (their process never started).",
    "spend": "Each order aims at z ~ Gamma(gg_p, rate=nu); quantities are rounded so revenue "
             "= sum(price * quantity) approximates z. expected_order_value = gg_p / nu.",
    "funnel": "Within completed purchase cycles the session step rates equal the configured "
              "rates in expectation; sessions after a person's last order only ever fail.",
    "preferences": "Viewed items ~ softmax(popularity + user_factors . item_factors + "
                   "category affinity), sampled exactly; category_affinity is in the order of 'categories'.",
}
