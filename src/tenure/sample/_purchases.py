"""Who buys when (BG/NBD), what an order is worth (Gamma-Gamma) and what happens after."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tenure.sample._catalogue import Catalogue, preference
from tenure.sample._params import SampleParams
from tenure.sample._population import Population


@dataclass(frozen=True, slots=True)
class PurchaseHistory:
    """Orders (sorted by person, then time) and each person's BG/NBD outcome."""

    person: NDArray[np.int64]  # per order
    op: NDArray[np.float64]  # per order, operational day
    seq: NDArray[np.int64]  # per order, 0 = first order
    dropout_op: NDArray[np.float64]  # per person: time of the last purchase ever (nan: never bought)
    next_op: NDArray[np.float64]  # per person: first purchase after the period (nan: none)


def simulate_bgnbd(
    rng: np.random.Generator, lam: NDArray[np.float64], p_drop: NDArray[np.float64],
    t0: NDArray[np.float64], op_end: float,
) -> PurchaseHistory:
    """Simulate the BG/NBD process from each first order ``t0`` (nan: no first order).

    Repeat purchases arrive as a Poisson process of rate ``lam``; after each repeat purchase
    the person drops out with probability ``p`` (so the number of repeat purchases before
    dropping out is ``Geometric(p)``). The process is continued past the period just far
    enough to know the next purchase and the dropout time, which ground truth reports.
    """
    n = len(lam)
    buyers = np.flatnonzero(~np.isnan(t0))
    k_last = rng.geometric(p_drop[buyers])  # the repeat purchase after which they drop out
    rate = lam[buyers]
    t = t0[buyers].copy()
    dropout = np.full(len(buyers), np.nan)
    nxt = np.full(len(buyers), np.nan)
    persons, times, seqs = [buyers], [t.copy()], [np.zeros(len(buyers), dtype=np.int64)]
    active = np.arange(len(buyers))
    j = 0
    while active.size:
        j += 1
        t_new = t[active] + rng.exponential(1.0 / rate[active])
        inside = t_new < op_end
        out = active[~inside]
        nxt[out] = t_new[~inside]
        remaining = (k_last[out] - j).astype(np.float64)
        dropout[out] = t_new[~inside] + rng.gamma(np.maximum(remaining, 0.0), 1.0 / rate[out])
        ins = active[inside]
        t[ins] = t_new[inside]
        persons.append(buyers[ins])
        times.append(t_new[inside])
        seqs.append(np.full(len(ins), j, dtype=np.int64))
        stop = k_last[ins] == j
        dropout[ins[stop]] = t[ins[stop]]
        active = ins[~stop]
    person = np.concatenate(persons)
    op = np.concatenate(times)
    seq = np.concatenate(seqs)
    order = np.lexsort((seq, person))
    dropout_all = np.full(n, np.nan)
    dropout_all[buyers] = dropout
    next_all = np.full(n, np.nan)
    next_all[buyers] = nxt
    return PurchaseHistory(person=person[order], op=op[order], seq=seq[order],
                           dropout_op=dropout_all, next_op=next_all)


@dataclass(frozen=True, slots=True)
class OrderBook:
    """Order lines and amounts; line ``l`` of order ``o`` is ``line_*[offset[o] + l]``."""

    offset: NDArray[np.int64]  # len n_orders + 1
    item: NDArray[np.int64]
    qty: NDArray[np.int64]
    price: NDArray[np.float64]  # in the order's currency
    eur: NDArray[np.bool_]  # per order
    revenue: NDArray[np.float64]  # per order, in its currency, = sum(price * qty)
    revenue_usd: NDArray[np.float64]
    target_usd: NDArray[np.float64]  # the Gamma-Gamma spend draw the quantities aimed at


def price_orders(
    rng: np.random.Generator, pop: Population, cat: Catalogue, person: NDArray[np.int64],
    offset: NDArray[np.int64], item: NDArray[np.int64], params: SampleParams,
) -> OrderBook:
    """Set quantities so each order's value approximates its Gamma-Gamma spend draw.

    The spend ``z ~ Gamma(p, rate=nu_i)`` is split evenly over the lines and each quantity is
    rounded to the nearest whole unit (at least one), so realized revenue tracks ``z`` without
    inventing prices; revenue is what the lines add up to.
    """
    n_lines = np.diff(offset)
    z = rng.gamma(params.gg_p, 1.0 / pop.nu[person])
    line_order = np.repeat(np.arange(len(person)), n_lines)
    share = z[line_order] / n_lines[line_order]
    qty = np.clip(np.rint(share / cat.price[item]), 1, 12).astype(np.int64)
    eur = pop.eur[person]
    price = np.where(eur[line_order], cat.price_eur[item], cat.price[item])
    totals = np.bincount(line_order, weights=price * qty, minlength=len(person))
    revenue = np.asarray(np.round(totals, 2), dtype=np.float64)
    revenue_usd = np.where(eur, np.round(revenue * params.eur_usd, 2), revenue)
    return OrderBook(offset=offset, item=item, qty=qty, price=price, eur=eur, revenue=revenue,
                     revenue_usd=revenue_usd, target_usd=z)


@dataclass(frozen=True, slots=True)
class AfterSales:
    """Refunds (per refunded order) and reviews (per reviewed line)."""

    refund_order: NDArray[np.int64]
    refund_op: NDArray[np.float64]
    refund_amount: NDArray[np.float64]  # in the order's currency
    review_person: NDArray[np.int64]
    review_item: NDArray[np.int64]
    review_op: NDArray[np.float64]
    review_rating: NDArray[np.int64]


def after_sales(
    rng: np.random.Generator, pop: Population, cat: Catalogue, orders: PurchaseHistory,
    book: OrderBook, op_end: float, params: SampleParams,
) -> AfterSales:
    """Refund a few orders (full or partial) and review a few lines, inside the period only."""
    n_orders = len(orders.person)
    refunded = np.flatnonzero(rng.random(n_orders) < params.refund_rate)
    refund_op = orders.op[refunded] + rng.uniform(1.0, 30.0, len(refunded))
    full = rng.random(len(refunded)) < params.full_refund_share
    part = np.round(book.revenue[refunded] * rng.uniform(0.1, 0.9, len(refunded)), 2)
    amount = np.where(full, book.revenue[refunded], np.maximum(part, 0.01))
    keep = refund_op < op_end
    n_lines = np.diff(book.offset)
    line_order = np.repeat(np.arange(n_orders), n_lines)
    reviewed = np.flatnonzero(rng.random(len(book.item)) < params.review_rate)
    r_person = orders.person[line_order[reviewed]]
    r_item = book.item[reviewed]
    r_op = orders.op[line_order[reviewed]] + rng.uniform(3.0, 25.0, len(reviewed))
    pref = preference(cat, pop.factors, pop.affinity, r_person, r_item)
    zscore = (pref - pref.mean()) / (pref.std() + 1e-9) if len(pref) else pref
    rating = np.clip(np.rint(3.4 + 1.1 * zscore + rng.normal(0.0, 0.8, len(pref))), 1, 5)
    r_keep = r_op < op_end
    return AfterSales(
        refund_order=refunded[keep], refund_op=refund_op[keep], refund_amount=amount[keep],
        review_person=r_person[r_keep], review_item=r_item[r_keep], review_op=r_op[r_keep],
        review_rating=rating[r_keep].astype(np.int64),
    )
