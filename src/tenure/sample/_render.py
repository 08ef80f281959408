"""Render the numeric event table as Segment-style rows and stream them to Parquet or CSV.

Every JSON string is built once per page, item, cart, order, refund or review with Arrow's
vectorised string kernels and concatenated into one array; an event's ``properties`` is a
single ``take`` into it, so rendering costs a gather per chunk rather than a ``dumps`` per event.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from numpy.typing import NDArray

from tenure.sample._catalogue import BRANDS, CATEGORY_NAMES, Catalogue
from tenure.sample._events import (
    ADDED,
    ALIAS,
    CHECKOUT,
    IDENTIFY,
    ORDER,
    PAGE,
    REFUND,
    REVIEW,
    VIEWED,
    Carts,
    EventTable,
)
from tenure.sample._params import CHANNEL_CAMPAIGNS, CHANNELS
from tenure.sample._purchases import AfterSales, OrderBook

SITE = "https://shop.example.com"
GZIP_LEVEL = 3  # level 9 triples CSV write time for ~10% smaller files


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))

EVENTS_SCHEMA = pa.schema([
    ("message_id", pa.string()), ("type", pa.string()), ("event", pa.string()),
    ("user_id", pa.string()), ("anonymous_id", pa.string()), ("previous_id", pa.string()),
    ("timestamp", pa.timestamp("us", tz="UTC")), ("properties", pa.string()),
    ("traits", pa.string()), ("context", pa.string()),
])
KIND_TYPE = {PAGE: "page", IDENTIFY: "identify", ALIAS: "alias"}
KIND_EVENT = {VIEWED: "Product Viewed", ADDED: "Product Added", CHECKOUT: "Checkout Started",
              ORDER: "Order Completed", REFUND: "Order Refunded", REVIEW: "Product Reviewed"}


def _join(*parts: pa.Array | str) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def _text(values: NDArray[np.generic]) -> pa.Array:
    return pc.cast(pa.array(values), pa.string())


def _ids(prefix: str, values: NDArray[np.int64], width: int) -> pa.Array:
    return _join(prefix, pc.utf8_lpad(_text(values + 1), width=width, padding="0"))


def _money(values: NDArray[np.float64]) -> pa.Array:
    return _text(np.round(values, 2))


def _currency(eur: NDArray[np.bool_]) -> pa.Array:
    return pa.array(np.where(eur, "EUR", "USD"))


def _pages(cat: Catalogue) -> tuple[list[str], list[str]]:
    """Page JSON and page name of every page reference (fixed pages, then products)."""
    fixed = [("/", "Home", "Home")]
    fixed += [(f"/c/{c.lower()}", "Category", c) for c in CATEGORY_NAMES]
    fixed += [("/cart", "Cart", "Your cart"), ("/checkout", "Checkout", "Checkout")]
    fixed += [(f"/p/{i}", "Product", n) for i, n in zip(cat.item_id, cat.name, strict=True)]
    props = [_dumps({"url": SITE + path, "path": path, "title": f"{title} | Tenure Shop"})
             for path, _, title in fixed]
    return props, [name for _, name, _ in fixed]


def _item_fragments(cat: Catalogue) -> pa.Array:
    """``"product_id": ..., "price": ..., "currency": ...`` per item, USD block then EUR block."""
    out = []
    for currency, prices in (("USD", cat.price), ("EUR", cat.price_eur)):
        for i in range(cat.size):
            body = _dumps({
                "product_id": cat.item_id[i], "sku": f"SKU-{cat.item_id[i][1:]}",
                "category": CATEGORY_NAMES[cat.category[i]], "name": cat.name[i],
                "brand": BRANDS[cat.brand[i]], "price": round(float(prices[i]), 2), "currency": currency,
            })
            out.append(body[1:-1])
    return pa.array(out)


def _contexts() -> list[str]:
    """Context of acquisition-session events, one per channel, after the empty context."""
    out = ["{}"]
    for ch in CHANNELS:
        source, medium, name = CHANNEL_CAMPAIGNS[ch]
        campaign = {"source": source, "medium": medium} | ({"name": name} if name else {})
        query = f"?utm_source={source}&utm_medium={medium}" + (f"&utm_campaign={name}" if name else "")
        referrer = {"organic": "https://www.google.com/", "paid_search": "https://www.google.com/",
                    "social": "https://www.instagram.com/", "email": "",
                    "referral": "https://partner-blog.example.org/"}[ch]
        out.append(_dumps({"campaign": campaign,
                               "page": {"url": SITE + "/" + query, "path": "/", "referrer": referrer}}))
    return out


@dataclass(frozen=True, slots=True)
class Blocks:
    """All rendered strings, and where each event kind's block starts."""

    properties: pa.Array
    base: NDArray[np.int64]  # per kind
    page_event: NDArray[np.int64]  # per page reference: index into ``names``
    names: pa.Array


def render_blocks(cat: Catalogue, carts: Carts, book: OrderBook, after: AfterSales) -> Blocks:
    """Render every properties string the events can point at."""
    pages, page_names = _pages(cat)
    frag = _item_fragments(cat)
    n = cat.size
    viewed = _join("{", frag, ',"quantity":1}')
    add_frag = frag.take(pa.array(carts.add_item + n * carts.add_eur))
    added = _join('{"cart_id":"', _ids("c", carts.add_session, 8), '",', add_frag,
                  ',"quantity":', _text(carts.add_qty), "}")
    order_ids = _ids("o", np.arange(len(carts.checkout_session)), 8)
    checkout = _join('{"order_id":"', order_ids, '","cart_id":"', _ids("c", carts.checkout_session, 8),
                     '","value":', _money(carts.checkout_value), ',"currency":"',
                     _currency(carts.checkout_eur), '"}')
    n_lines = np.diff(book.offset)
    line_eur = np.repeat(book.eur, n_lines)
    lines = _join("{", frag.take(pa.array(book.item + n * line_eur)), ',"quantity":', _text(book.qty), "}")
    products = pc.binary_join(pa.ListArray.from_arrays(pa.array(book.offset, pa.int32()), lines), ",")
    oid = order_ids.take(pa.array(carts.order_checkout))
    order = _join('{"order_id":"', oid, '","revenue":', _money(book.revenue), ',"currency":"',
                  _currency(book.eur), '","products":[', products, "]}")
    refund = _join('{"order_id":"', oid.take(pa.array(after.refund_order)), '","revenue":',
                   _money(after.refund_amount), ',"currency":"', _currency(book.eur[after.refund_order]), '"}')
    review = _join('{"product_id":"', pa.array([cat.item_id[i] for i in after.review_item.tolist()],
                                               pa.string()),
                   '","rating":', _text(after.review_rating), "}")
    blocks = {PAGE: pa.array(pages), IDENTIFY: pa.array(["{}"]), ALIAS: pa.array(["{}"]),
              VIEWED: viewed, ADDED: added, CHECKOUT: checkout, ORDER: order, REFUND: refund,
              REVIEW: review}
    base = np.zeros(len(blocks), dtype=np.int64)
    offset = 0
    arrays = []
    for kind in sorted(blocks):
        base[kind] = offset
        offset += len(blocks[kind])
        arrays.append(blocks[kind].cast(pa.large_string()))
    names = sorted(set(page_names)) + list(KIND_EVENT.values())
    page_event = np.array([names.index(x) for x in page_names], dtype=np.int64)
    return Blocks(properties=pa.concat_arrays(arrays), base=base, page_event=page_event,
                  names=pa.array(names))


def _kind_lookup(mapping: dict[int, str], values: list[str]) -> NDArray[np.int64]:
    out = np.full(9, -1, dtype=np.int64)
    for kind, text in mapping.items():
        out[kind] = values.index(text)
    return out


def write_events(
    path: Path, fmt: str, ev: EventTable, blocks: Blocks, *, seed: int, user_ids: pa.Array,
    anon_ids: pa.Array, traits: pa.Array, channel: NDArray[np.int64],
    progress: Callable[[float], None], chunk: int = 1_000_000,
) -> None:
    """Stream the events in time order, one row group (or CSV batch) per chunk."""
    contexts = pa.array(_contexts())
    types = ["track", "page", "identify", "alias"]
    kind_type = np.zeros(9, dtype=np.int64)
    for k, text in KIND_TYPE.items():
        kind_type[k] = types.index(text)
    names = blocks.names.to_pylist()
    kind_event = _kind_lookup(KIND_EVENT, names)
    writer: pq.ParquetWriter | pacsv.CSVWriter
    sink = None
    if fmt == "parquet":
        writer = pq.ParquetWriter(path, EVENTS_SCHEMA, compression="zstd")
    else:
        sink = gzip.open(path, "wb", compresslevel=GZIP_LEVEL)
        csv_schema = EVENTS_SCHEMA.set(6, pa.field("timestamp", pa.string()))
        writer = pacsv.CSVWriter(sink, csv_schema)
    try:
        n = len(ev.ts)
        for lo in range(0, n, chunk):
            sl = slice(lo, min(n, lo + chunk))
            kind, ref, person = ev.kind[sl].astype(np.int64), ev.ref[sl], ev.person[sl]
            device, ident = ev.device[sl].astype(np.int64), ev.identified[sl]
            name = np.where(kind == PAGE, blocks.page_event[np.where(kind == PAGE, ref, 0)], kind_event[kind])
            anon = np.where(device >= 0, 2 * person + device, 0)
            is_alias = kind == ALIAS
            columns = {
                "message_id": _join(f"s{seed}-", _text(np.arange(sl.start, sl.stop))),
                "type": pa.array(types).take(pa.array(kind_type[kind])),
                "event": blocks.names.take(pa.array(name, mask=name < 0)),
                "user_id": user_ids.take(pa.array(person, mask=~ident)),
                "anonymous_id": anon_ids.take(pa.array(anon, mask=device < 0)),
                "previous_id": anon_ids.take(pa.array(2 * person + 1 - np.maximum(device, 0), mask=~is_alias)),
                "timestamp": pa.array(ev.ts[sl], pa.timestamp("us", tz="UTC")),
                "properties": blocks.properties.take(pa.array(blocks.base[kind] + ref)).cast(pa.string()),
                "traits": traits.take(pa.array(person, mask=kind != IDENTIFY)),
                "context": contexts.take(pa.array(np.where(ev.first[sl], channel[person] + 1, 0))),
            }
            if fmt != "parquet":
                columns["timestamp"] = pc.strftime(columns["timestamp"], format="%Y-%m-%dT%H:%M:%SZ")
            batch = pa.record_batch(list(columns.values()), names=list(columns))
            writer.write_batch(batch)
            progress(sl.stop / max(n, 1))
    finally:
        writer.close()
        if sink is not None:
            sink.close()
