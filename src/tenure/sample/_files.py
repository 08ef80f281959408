"""The users, items and ground-truth files that accompany the events."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from numpy.typing import NDArray

from tenure.sample._calendar import US_PER_DAY, Calendar
from tenure.sample._catalogue import BRANDS, CATEGORY_NAMES, Catalogue
from tenure.sample._events import ALIAS, IDENTIFY, EventTable
from tenure.sample._params import CHANNELS, COUNTRIES, SampleParams
from tenure.sample._population import Population
from tenure.sample._purchases import AfterSales, OrderBook, PurchaseHistory

TS = pa.timestamp("us", tz="UTC")
FAR_FUTURE_DAYS = 36_500.0  # dropout times further out than this are reported as null


@dataclass(frozen=True, slots=True)
class SampleFiles:
    """Where ``write_sample`` put each file, and how much it wrote."""

    events: Path
    users: Path
    items: Path
    ground_truth_users: Path
    ground_truth_items: Path
    ground_truth_params: Path
    n_events: int
    n_orders: int
    n_users: int  # rows of the users file: people who signed up
    n_items: int


def write_table(table: pa.Table, path: Path, fmt: str) -> None:
    """Parquet as is; CSV gzip-compressed with ISO-8601 ``Z`` timestamps."""
    if fmt == "parquet":
        pq.write_table(table, path, compression="zstd")
        return
    for i, field in enumerate(table.schema):
        if pa.types.is_timestamp(field.type):
            text = pc.strftime(table.column(i), format="%Y-%m-%dT%H:%M:%SZ")
            table = table.set_column(i, pa.field(field.name, pa.string()), text)
    with gzip.open(path, "wb", compresslevel=3) as sink:
        pacsv.write_csv(table, sink)


def items_table(cat: Catalogue) -> pa.Table:
    return pa.table({
        "item_id": pa.array(cat.item_id, pa.string()),
        "name": pa.array(cat.name, pa.string()),
        "category": pa.array([CATEGORY_NAMES[c] for c in cat.category.tolist()], pa.string()),
        "brand": pa.array([BRANDS[b] for b in cat.brand.tolist()], pa.string()),
        "price": pa.array(cat.price, pa.float64()),
        "description": pa.array(cat.description, pa.string()),
        "in_stock": pa.array(cat.in_stock, pa.bool_()),
    })


def _ts(values: NDArray[np.int64], valid: NDArray[np.bool_]) -> pa.Array:
    return pa.array(np.where(valid, values, 0), TS, mask=~valid)


def _factors(values: NDArray[np.float64]) -> pa.Array:
    n, k = values.shape
    flat = pa.array(values.ravel().astype(np.float32))
    return pa.FixedSizeListArray.from_arrays(flat, k).cast(pa.list_(pa.float32()))


@dataclass(frozen=True, slots=True)
class PersonFacts:
    """Per-person facts read back from the rendered events, so ground truth matches the files."""

    acquisition_us: NDArray[np.int64]
    signup_us: NDArray[np.int64]
    signed_up: NDArray[np.bool_]
    first_order_us: NDArray[np.int64]
    last_order_us: NDArray[np.int64]


def person_facts(ev: EventTable, n: int, order_kind: int) -> PersonFacts:
    first_idx = np.full(n, -1, dtype=np.int64)
    persons, idx = np.unique(ev.person, return_index=True)
    first_idx[persons] = idx
    acquisition = np.where(first_idx >= 0, ev.ts[np.maximum(first_idx, 0)], 0)
    signup = np.zeros(n, dtype=np.int64)
    signed = np.zeros(n, dtype=bool)
    is_idf = ev.kind == IDENTIFY
    signup[ev.person[is_idf]] = ev.ts[is_idf]
    signed[ev.person[is_idf]] = True
    first_order = np.zeros(n, dtype=np.int64)
    is_order = np.flatnonzero(ev.kind == order_kind)
    p_ord, i_ord = np.unique(ev.person[is_order], return_index=True)
    first_order[p_ord] = ev.ts[is_order[i_ord]]
    last_order = np.zeros(n, dtype=np.int64)
    last_order[ev.person[is_order]] = ev.ts[is_order]  # time-sorted: the last write wins
    return PersonFacts(acquisition_us=acquisition, signup_us=signup, signed_up=signed,
                       first_order_us=first_order, last_order_us=last_order)


def users_table(pop: Population, facts: PersonFacts, uid: list[str], names: list[str], emails: list[str]) -> pa.Table:
    who = np.flatnonzero(facts.signed_up)
    return pa.table({
        "user_id": pa.array([uid[i] for i in who.tolist()], pa.string()),
        "email": pa.array([emails[i] for i in who.tolist()], pa.string()),
        "name": pa.array([names[i] for i in who.tolist()], pa.string()),
        "country": pa.array([COUNTRIES[c] for c in pop.country[who].tolist()], pa.string()),
        "channel": pa.array([CHANNELS[c] for c in pop.channel[who].tolist()], pa.string()),
        "signup_at": pa.array(facts.signup_us[who], TS),
    })


def ground_truth_users(
    pop: Population, facts: PersonFacts, ev: EventTable, hist: PurchaseHistory, book: OrderBook,
    after: AfterSales, cal: Calendar, start_us: int, uid: list[str], params: SampleParams,
) -> pa.Table:
    """One row per person, including those who never signed up (keyed by their anonymous id)."""
    n = pop.size
    used = np.zeros((n, 2), dtype=bool)  # ids seen in events, as anonymous_id or alias previous_id
    has = ev.device >= 0
    used[ev.person[has], ev.device[has]] = True
    alias = ev.kind == ALIAS
    used[ev.person[alias], 1 - ev.device[alias]] = True
    anon_lists = [[pop.anon_ids[2 * i + d] for d in (0, 1) if used[i, d]] for i in range(n)]
    signed = facts.signed_up
    user_id = [uid[i] if signed[i] else pop.anon_ids[2 * i] for i in range(n)]
    n_orders = np.bincount(hist.person, minlength=n)
    revenue = np.bincount(hist.person, weights=book.revenue_usd, minlength=n)
    eur = book.eur[after.refund_order]
    refund_usd = np.where(eur, np.round(after.refund_amount * params.eur_usd, 2), after.refund_amount)
    refunded = np.bincount(hist.person[after.refund_order], weights=refund_usd, minlength=n)
    buyer = n_orders > 0
    drop_days = cal.to_calendar(np.where(buyer, hist.dropout_op, 0.0))
    drop_ok = buyer & np.isfinite(drop_days) & (drop_days < cal.days + FAR_FUTURE_DAYS)
    drop_us = start_us + np.rint(np.where(drop_ok, drop_days, 0.0) * US_PER_DAY).astype(np.int64)
    alive = np.where(buyer, hist.dropout_op >= cal.op_end, False)
    dropped = buyer & ~alive  # their last purchase is in the files: report its exact time
    drop_us = np.where(dropped, facts.last_order_us, drop_us)
    first_op = np.zeros(n)
    first_op[hist.person[hist.seq == 0]] = hist.op[hist.seq == 0]
    return pa.table({
        "user_id": pa.array(user_id, pa.string()),
        "signed_up": pa.array(signed),
        "anonymous_ids": pa.array(anon_lists, pa.list_(pa.string())),
        "acquisition_at": pa.array(facts.acquisition_us, TS),
        "signup_at": _ts(facts.signup_us, signed),
        "channel": pa.array([CHANNELS[c] for c in pop.channel.tolist()], pa.string()),
        "country": pa.array([COUNTRIES[c] for c in pop.country.tolist()], pa.string()),
        "lambda_per_day": pa.array(pop.lam),
        "p_dropout": pa.array(pop.p_drop),
        "first_order_at": _ts(facts.first_order_us, buyer),
        "dropout_at": _ts(drop_us, drop_ok),
        "alive_at_end": pa.array(alive, mask=~buyer),
        "observation_op_days": pa.array(np.where(buyer, cal.op_end - first_op, 0.0), mask=~buyer),
        "spend_nu": pa.array(pop.nu),
        "expected_order_value": pa.array(params.gg_p / pop.nu),
        "n_orders": pa.array(n_orders.astype(np.int64)),
        "revenue_usd": pa.array(np.round(revenue, 2)),
        "refunded_usd": pa.array(np.round(refunded, 2)),
        "user_factors": _factors(pop.factors),
        "category_affinity": _factors(pop.affinity),
    })


def ground_truth_items(cat: Catalogue) -> pa.Table:
    return pa.table({
        "item_id": pa.array(cat.item_id, pa.string()),
        "category": pa.array([CATEGORY_NAMES[c] for c in cat.category.tolist()], pa.string()),
        "popularity": pa.array(cat.popularity),
        "factors": _factors(cat.factors),
    })


def write_params(path: Path, payload: dict[str, Any]) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
