"""Sessions become events: a numeric table (kind + reference) that the renderer turns into JSON.

Keeping events numeric until the very end is what makes 10M events cheap: sorting and
clipping move integers, and every string is built once per item, order or cart and then
gathered by index.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tenure.sample._calendar import US_PER_DAY, Calendar
from tenure.sample._catalogue import Catalogue
from tenure.sample._population import Population
from tenure.sample._purchases import AfterSales, OrderBook, PurchaseHistory
from tenure.sample._sessions import Sessions, group_cumsum

PAGE, IDENTIFY, ALIAS, VIEWED, ADDED, CHECKOUT, ORDER, REFUND, REVIEW = range(9)
# Page references: fixed pages first, then one product page per item.
HOME, CART_PAGE, CHECKOUT_PAGE, FIXED_PAGES = 0, 13, 14, 15
US_PER_S = 1_000_000


@dataclass(frozen=True, slots=True)
class Carts:
    """Product Added events and Checkout Started carts (a checkout that completes is an order)."""

    add_session: NDArray[np.int64]
    add_item: NDArray[np.int64]
    add_qty: NDArray[np.int64]
    add_eur: NDArray[np.bool_]
    checkout_session: NDArray[np.int64]
    checkout_value: NDArray[np.float64]
    checkout_eur: NDArray[np.bool_]
    order_checkout: NDArray[np.int64]  # per order: its checkout's index (the order id)


@dataclass(frozen=True, slots=True)
class EventTable:
    """Events sorted by time; ``ref`` indexes the rendered block of the event's ``kind``."""

    ts: NDArray[np.int64]  # microseconds since the epoch, UTC
    person: NDArray[np.int64]
    kind: NDArray[np.int8]
    ref: NDArray[np.int64]
    device: NDArray[np.int8]  # -1: server-side event without an anonymous id
    identified: NDArray[np.bool_]
    first: NDArray[np.bool_]  # part of the acquisition session: carries campaign context


def order_lines(sess: Sessions, view_items: NDArray[np.int64], n_orders: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Offsets and items of the order lines: an order holds the first products its session viewed."""
    view_off = np.cumsum(sess.n_views) - sess.n_views
    s_of_order = np.empty(n_orders, dtype=np.int64)
    has = sess.order >= 0
    s_of_order[sess.order[has]] = np.flatnonzero(has)
    n_lines = sess.n_adds[s_of_order]
    offset = np.concatenate([[0], np.cumsum(n_lines)])
    within = np.arange(offset[-1]) - np.repeat(offset[:-1], n_lines)
    items = view_items[np.repeat(view_off[s_of_order], n_lines) + within]
    return offset, items


def make_carts(sess: Sessions, pop: Population, cat: Catalogue, view_items: NDArray[np.int64], book: OrderBook) -> Carts:
    """Adds take the first viewed products; ordered carts use the order's quantities."""
    view_off = np.cumsum(sess.n_views) - sess.n_views
    add_session = np.repeat(np.arange(sess.size), sess.n_adds)
    k = np.arange(len(add_session)) - np.repeat(np.cumsum(sess.n_adds) - sess.n_adds, sess.n_adds)
    item = view_items[view_off[add_session] + k]
    qty = np.ones(len(add_session), dtype=np.int64)
    order = sess.order[add_session]
    ordered = order >= 0
    qty[ordered] = book.qty[book.offset[order[ordered]] + k[ordered]]
    eur = pop.eur[sess.person[add_session]]
    price = np.where(eur, cat.price_eur[item], cat.price[item])
    checkout_session = np.flatnonzero(sess.depth >= 3)
    ordinal = np.full(sess.size, -1, dtype=np.int64)
    ordinal[checkout_session] = np.arange(len(checkout_session))
    in_checkout = ordinal[add_session] >= 0
    value = np.bincount(ordinal[add_session][in_checkout], weights=(price * qty)[in_checkout],
                        minlength=len(checkout_session))
    has = sess.order >= 0
    order_checkout = np.empty(int(has.sum()), dtype=np.int64)
    order_checkout[sess.order[has]] = ordinal[has]
    return Carts(add_session=add_session, add_item=item, add_qty=qty, add_eur=eur,
                 checkout_session=checkout_session, checkout_value=np.round(value, 2),
                 checkout_eur=pop.eur[sess.person[checkout_session]], order_checkout=order_checkout)


def build_events(
    rng: np.random.Generator, sess: Sessions, pop: Population, cat: Catalogue,
    view_items: NDArray[np.int64], carts: Carts, hist: PurchaseHistory, after: AfterSales,
    cal: Calendar, start_us: int,
) -> EventTable:
    """Expand sessions into ordered events, time them, and append refunds and reviews."""
    d, v, a = sess.depth, sess.n_views, sess.n_adds
    idf = sess.signup.astype(np.int64)
    ali = (sess.signup & pop.alias[sess.person]).astype(np.int64)
    count = 1 + idf + ali + 2 * v + (d >= 2) * (a + 1) + (d >= 3) * 2 + (d == 4)
    sid = np.repeat(np.arange(sess.size), count)
    pos = np.arange(len(sid)) - np.repeat(np.cumsum(count) - count, count)
    b = (1 + idf + ali)[sid]
    b2 = b + 2 * v[sid]
    b3 = b2 + np.where(d[sid] >= 2, a[sid] + 1, 0)
    view_off = (np.cumsum(v) - v)[sid]
    add_off = (np.cumsum(a) - a)[sid]
    in_views = (pos >= b) & (pos < b2)
    view_k = np.where(in_views, (pos - b) // 2, 0)
    item = view_items[view_off + view_k]
    eur = pop.eur[sess.person][sid]
    checkout_ord = np.full(sess.size, -1, dtype=np.int64)
    checkout_ord[carts.checkout_session] = np.arange(len(carts.checkout_session))

    landing = np.where(rng.random(sess.size) < 0.5, HOME,
                       1 + cat.category[view_items[np.cumsum(v) - v]])
    kind = np.full(len(sid), PAGE, dtype=np.int8)
    ref = landing[sid].astype(np.int64)
    is_idf = (idf[sid] == 1) & (pos == 1)
    is_ali = (ali[sid] == 1) & (pos == 2)
    kind[is_idf], ref[is_idf] = IDENTIFY, 0
    kind[is_ali], ref[is_ali] = ALIAS, 0
    product_page = in_views & ((pos - b) % 2 == 0)
    ref[product_page] = FIXED_PAGES + item[product_page]
    viewed = in_views & ((pos - b) % 2 == 1)
    kind[viewed] = VIEWED
    ref[viewed] = item[viewed] + cat.size * eur[viewed]
    added = (d[sid] >= 2) & (pos >= b2) & (pos < b2 + a[sid])
    kind[added] = ADDED
    ref[added] = add_off[added] + pos[added] - b2[added]
    ref[(d[sid] >= 2) & (pos == b2 + a[sid])] = CART_PAGE
    ref[(d[sid] >= 3) & (pos == b3)] = CHECKOUT_PAGE
    checkout = (d[sid] >= 3) & (pos == b3 + 1)
    kind[checkout] = CHECKOUT
    ref[checkout] = checkout_ord[sid[checkout]]
    ordered = (d[sid] == 4) & (pos == b3 + 2)
    kind[ordered] = ORDER
    ref[ordered] = sess.order[sid[ordered]]

    # Time: sessions start at their calendar time; events follow seconds to minutes apart.
    end_us = start_us + cal.days * US_PER_DAY
    s_start = start_us + np.rint(cal.to_calendar(sess.op) * US_PER_DAY).astype(np.int64)
    step = np.where(pos == 0, 0, np.rint((4.0 + rng.exponential(35.0, len(sid))) * US_PER_S)).astype(np.int64)
    offset = group_cumsum(step, count)
    s_last = s_start + offset[np.cumsum(count) - 1]
    late = s_last >= end_us
    s_start[late] -= s_last[late] - end_us + rng.integers(US_PER_S, 600 * US_PER_S, int(late.sum()))
    ts = s_start[sid] + offset
    identified = sess.identified[sid] & ~(sess.signup[sid] & (pos == 0))

    # Server-side events: refunds and reviews, a few seconds past their operational time.
    r_ts = start_us + np.rint(cal.to_calendar(after.refund_op) * US_PER_DAY).astype(np.int64)
    v_ts = start_us + np.rint(cal.to_calendar(after.review_op) * US_PER_DAY).astype(np.int64)
    n_r, n_v = len(r_ts), len(v_ts)
    all_ts = np.concatenate([ts, np.minimum(r_ts, end_us - 1), np.minimum(v_ts, end_us - 1)])
    order = np.argsort(all_ts, kind="stable")
    person = np.concatenate([sess.person[sid], hist.person[after.refund_order], after.review_person])
    return EventTable(
        ts=all_ts[order],
        person=person[order],
        kind=np.concatenate([kind, np.full(n_r, REFUND, np.int8), np.full(n_v, REVIEW, np.int8)])[order],
        ref=np.concatenate([ref, np.arange(n_r), np.arange(n_v)])[order],
        device=np.concatenate([sess.device[sid].astype(np.int8), np.full(n_r + n_v, -1, np.int8)])[order],
        identified=np.concatenate([identified, np.ones(n_r + n_v, dtype=bool)])[order],
        first=np.concatenate([sess.first[sid], np.zeros(n_r + n_v, dtype=bool)])[order],
    )
