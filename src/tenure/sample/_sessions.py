"""Browsing sessions: when people visit, how deep into the funnel they get, and when they sign up.

Funnel sessions are laid out so that the configured step rates hold exactly in expectation:
every order ends a *purchase cycle* of independent sessions, each of which converts with
probability ``q = view_to_add * add_to_checkout * checkout_to_order``; the sessions that failed
before it number ``NegativeBinomial(1, q)`` and stop at the step they failed at. Cycles that
the period cuts off (the next order lies beyond it, the person dropped out or never bought)
contribute only failed sessions, as a real funnel report would see.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from tenure.sample._params import SampleParams
from tenure.sample._population import Population
from tenure.sample._purchases import PurchaseHistory

Num = TypeVar("Num", np.int64, np.float64)
GAP = 0.15  # minimum operational days between two session starts of one person in a cycle
FIRST_DELAY_SCALE = 0.6  # operational days per failed session before a first order (Gamma scale)


@dataclass(frozen=True, slots=True)
class FirstVisits:
    """The first purchase cycle of people who intend to buy: failures, then the first order."""

    n_failed: NDArray[np.int64]  # failed sessions before the first order (0 if none planned)
    t_first: NDArray[np.float64]  # operational time of first order = sign-up; nan if none in period
    t_first_raw: NDArray[np.float64]  # the same, even when it falls after the period


def first_visits(rng: np.random.Generator, pop: Population, op_end: float, params: SampleParams) -> FirstVisits:
    """Buyers browse anonymously, then sign up and order in the same session."""
    n = pop.size
    g0 = np.where(pop.converts, rng.negative_binomial(1, params.order_rate(), n), 0)
    delay = np.where(g0 > 0, GAP * g0 + rng.gamma(np.maximum(g0, 1), FIRST_DELAY_SCALE), 0.0)
    raw = np.where(pop.converts, pop.acq_op + delay, np.nan)
    first = np.where(raw < op_end, raw, np.nan)
    return FirstVisits(n_failed=g0.astype(np.int64), t_first=first, t_first_raw=raw)


@dataclass(frozen=True, slots=True)
class Sessions:
    """One row per session, sorted by person then time."""

    person: NDArray[np.int64]
    op: NDArray[np.float64]
    depth: NDArray[np.int64]  # 1 viewed, 2 added, 3 checkout started, 4 ordered
    n_views: NDArray[np.int64]
    n_adds: NDArray[np.int64]
    order: NDArray[np.int64]  # index into the orders for depth 4, else -1
    first: NDArray[np.bool_]  # the acquisition session
    signup: NDArray[np.bool_]  # identify happens in this session
    identified: NDArray[np.bool_]  # on or after sign-up: events carry the user id
    device: NDArray[np.int64]  # 0 or 1
    signup_op: NDArray[np.float64]  # per person; nan if not signed up in the period

    @property
    def size(self) -> int:
        return len(self.person)


def _spread(
    rng: np.random.Generator, counts: NDArray[np.int64], lo: NDArray[np.float64],
    hi: NDArray[np.float64], gap: float,
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Place ``counts[g]`` sorted points in ``(lo[g], hi[g])`` at least ``gap`` apart when possible.

    Sorted uniforms come from normalised cumulative exponential spacings, so there is no sort.
    """
    counts = np.maximum(counts, 0)
    m = counts + 1
    grp = np.repeat(np.arange(len(counts)), m)
    e = rng.exponential(size=int(m.sum()))
    cs = np.cumsum(e)
    ends = np.cumsum(m) - 1
    starts = ends - counts
    before = cs[starts] - e[starts]
    within = cs - before[grp]
    frac = within / within[ends][grp]
    rank = np.arange(len(grp)) - starts[grp] + 1
    keep = rank <= counts[grp]
    grp, frac, rank = grp[keep], frac[keep], rank[keep]
    width = np.maximum(hi - lo, 0.0)
    g = np.minimum(gap, width / (counts + 1))
    pos = lo[grp] + g[grp] * rank + frac * (width[grp] - (counts[grp] + 1) * g[grp])
    return grp, pos


def group_cumsum(values: NDArray[Num], counts: NDArray[np.int64]) -> NDArray[Num]:
    """Cumulative sums restarting at each group of ``counts`` consecutive values."""
    cum: NDArray[Num] = np.cumsum(values)
    ends = np.cumsum(counts)
    before = np.concatenate([np.zeros(1, dtype=cum.dtype), cum])[ends - counts]  # sums before each group
    out: NDArray[Num] = cum - np.repeat(before, counts)
    return out


def _failures(rng: np.random.Generator, n: int, params: SampleParams) -> tuple[NDArray[np.int64], ...]:
    """Depth, views and adds of ``n`` sessions that did not order."""
    depth = rng.choice(3, size=n, p=np.asarray(params.failure_depths())) + 1
    views = 1 + rng.poisson(0.8, n)
    adds = np.where(depth >= 2, 1 + rng.binomial(views - 1, 0.3), 0)
    return depth, views, adds


def layout_sessions(
    rng: np.random.Generator, pop: Population, fv: FirstVisits, hist: PurchaseHistory,
    op_end: float, params: SampleParams,
) -> Sessions:
    """Lay out every session of every person inside the period."""
    q = params.order_rate()
    window = params.cycle_window_days
    n = pop.size
    parts: list[dict[str, NDArray[np.generic]]] = []

    def add(person: NDArray[np.int64], op: NDArray[np.float64], **cols: NDArray[np.generic]) -> None:
        keep = op < op_end
        parts.append({"person": person[keep], "op": op[keep], **{k: v[keep] for k, v in cols.items()}})

    # Orders: the session that converts ends each cycle; the first one is also the sign-up.
    n_ord = len(hist.person)
    lines = np.minimum(1 + rng.poisson(params.mean_extra_lines, n_ord), 6)
    add(hist.person, hist.op, depth=np.full(n_ord, 4), n_views=lines + rng.poisson(0.7, n_ord),
        n_adds=lines, order=np.arange(n_ord), first=(hist.seq == 0) & (fv.n_failed[hist.person] == 0),
        signup=hist.seq == 0)

    # Failed sessions of each cycle. First cycle: the landing session, then the rest until t0.
    def failed(person: NDArray[np.int64], op: NDArray[np.float64], first: NDArray[np.bool_] | None = None) -> None:
        depth, views, adds = _failures(rng, len(person), params)
        fl = np.zeros(len(person), dtype=bool) if first is None else first
        add(person, op, depth=depth, n_views=views, n_adds=adds, order=np.full(len(person), -1),
            first=fl, signup=np.zeros(len(person), dtype=bool))

    conv = np.flatnonzero(fv.n_failed > 0)
    failed(conv, pop.acq_op[conv], np.ones(len(conv), dtype=bool))
    grp, pos = _spread(rng, fv.n_failed[conv] - 1, pop.acq_op[conv], fv.t_first_raw[conv], GAP)
    failed(conv[grp], pos)
    rep = np.flatnonzero(hist.seq > 0)
    g = rng.negative_binomial(1, q, len(rep))
    hi = hist.op[rep]
    lo = np.maximum(hist.op[rep - 1], hi - window)
    grp, pos = _spread(rng, g, lo, hi, GAP)
    failed(hist.person[rep][grp], pos)

    # Cut-off cycles: alive buyers browse towards the next order, dropped ones fade away.
    last = np.full(n, np.nan)
    last[hist.person] = hist.op  # sorted by person then time: the last write wins
    alive = np.flatnonzero(~np.isnan(hist.next_op))
    g = rng.negative_binomial(1, q, len(alive))
    hi = hist.next_op[alive]
    grp, pos = _spread(rng, g, np.maximum(last[alive], hi - window), hi, GAP)
    failed(alive[grp], pos)
    gone = np.flatnonzero(hist.dropout_op < op_end)
    m = rng.poisson(1.5, len(gone))
    who = np.repeat(gone, m)
    cum = group_cumsum(GAP + rng.exponential(15.0, len(who)), m)
    failed(who, hist.dropout_op[who] + cum)

    # People who never place a first order: a few visits that thin out.
    never = np.flatnonzero(~pop.converts)
    f = 1 + rng.poisson(2.0, len(never))
    who = np.repeat(never, f)
    rank = np.arange(len(who)) - np.repeat(np.cumsum(f) - f, f)
    steps = np.where(rank == 0, 0.0, GAP + rng.exponential(12.0, len(who)))
    cum = group_cumsum(steps, f)
    signup_rank = np.repeat(rng.integers(0, f), f)
    depth, views, adds = _failures(rng, len(who), params)
    add(who, pop.acq_op[who] + cum, depth=depth, n_views=views, n_adds=adds,
        order=np.full(len(who), -1), first=rank == 0,
        signup=pop.wants_signup[who] & (rank == signup_rank))

    cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = np.lexsort((cols["op"], cols["person"]))
    cols = {k: v[order] for k, v in cols.items()}
    person, op = cols["person"], cols["op"]
    signup_op = np.full(n, np.nan)
    signup_op[person[cols["signup"]]] = op[cols["signup"]]
    with np.errstate(invalid="ignore"):
        identified = op >= signup_op[person]
    second = pop.two_devices[person] & ~cols["first"] & (rng.random(len(person)) < 0.3)
    return Sessions(
        person=person, op=op, depth=cols["depth"], n_views=cols["n_views"], n_adds=cols["n_adds"],
        order=cols["order"], first=cols["first"], signup=cols["signup"], identified=identified,
        device=second.astype(np.int64), signup_op=signup_op,
    )
