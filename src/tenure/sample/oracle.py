"""The best possible purchase prediction for a sample shop: the generator's own process, known parameters.

Churn and propensity models are reported next to this oracle so the gap to the best achievable
score is visible. It knows each person's true BG/NBD rate and dropout probability but, like any
model, sees the orders only up to the cutoff; the dropout itself stays latent.
"""

from __future__ import annotations

import json
import math
from dataclasses import fields
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from numpy.typing import NDArray
from scipy.special import expit, gammainc

from tenure.errors import ValidationError
from tenure.sample._calendar import US_PER_DAY, Calendar
from tenure.sample._params import SampleParams
from tenure.sample._sessions import FIRST_DELAY_SCALE, GAP

ORDER_EVENT = "Order Completed"
DELAY_TAIL = 1e-12  # first-order delay terms lighter than this are dropped
DELAY_GRID_STEP = 0.05  # operational days between points of the tabulated delay distribution
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def p_alive_bgnbd(
    lam: NDArray[np.float64], p_dropout: NDArray[np.float64], n_orders: NDArray[np.int64],
    t_last: NDArray[np.float64], t: float,
) -> NDArray[np.float64]:
    """P(alive at ``t``) of buyers with known BG/NBD ``lam`` and ``p_dropout`` (Fader, Hardie & Lee 2005).

    Dropout can only follow a repeat purchase, so a person with one order is alive; otherwise
    the last of ``n_orders - 1`` repeats at ``t_last`` was followed by survival (``1 - p``) and
    no purchase until ``t`` (``exp(-lam (t - t_last))``) against dropout (``p``). Times are
    operational days.
    """
    log_odds = np.log1p(-p_dropout) - np.log(p_dropout) - lam * (t - t_last)
    out: NDArray[np.float64] = np.where(n_orders > 1, expit(log_odds), 1.0)
    return out


def first_order_delay_cdf(d: NDArray[np.float64], *, order_rate: float) -> NDArray[np.float64]:
    """P(D <= d) for the operational days ``D`` from a converter's first visit to their first order.

    The generator draws ``G ~ NegativeBinomial(1, order_rate)`` failed sessions first; ``D = 0``
    when ``G = 0`` and ``D = GAP * G + Gamma(G, FIRST_DELAY_SCALE)`` otherwise. The mixture is
    summed until the remaining weight is below ``DELAY_TAIL``.
    """
    q = order_rate
    terms = math.ceil(math.log(DELAY_TAIL) / math.log1p(-q))
    out = np.full(d.shape, q)
    for k in range(1, terms + 1):
        out += q * (1.0 - q) ** k * gammainc(k, np.maximum(d - GAP * k, 0.0) / FIRST_DELAY_SCALE)
    result: NDArray[np.float64] = np.where(d >= 0.0, out, 0.0)
    return result


def p_first_order(
    acq: NDArray[np.float64], t: float, t_end: float, p_convert: NDArray[np.float64], *, order_rate: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """P(first order in (t, t_end]) and P(a first order is still to come), given none by ``t``.

    ``acq`` is each person's first visit (operational days, at most ``t``); ``p_convert`` the
    prior probability that they ever order. The delay distribution is tabulated once on a grid
    and interpolated, so the cost depends on the length of the period, not on the number of people.
    """
    grid = np.arange(0.0, float(np.max(t_end - acq, initial=0.0)) + 2 * DELAY_GRID_STEP, DELAY_GRID_STEP)
    cdf = first_order_delay_cdf(grid, order_rate=order_rate)
    f_now = np.interp(t - acq, grid, cdf)
    f_end = np.interp(t_end - acq, grid, cdf)
    none_yet = 1.0 - p_convert * f_now
    return p_convert * (f_end - f_now) / none_yet, p_convert * (1.0 - f_now) / none_yet


def order_probability(sample_dir: Path, *, cutoff: datetime, horizon_days: float) -> pd.DataFrame:
    """The oracle P(at least one order in ``(cutoff, cutoff + horizon_days]``) for every person of a sample.

    Parameters
    ----------
    sample_dir
        A folder written by ``write_sample``: its events file and ``ground_truth/``.
    cutoff
        Timezone-aware; strictly inside the generated period.
    horizon_days
        Calendar days, positive; the window must end inside the generated period.

    Returns
    -------
    pandas.DataFrame
        One row per row of ``ground_truth/users.parquet``, in its order: ``user_id``, ``known``
        (had an event by the cutoff), ``orders_before`` ("Order Completed" events at or before
        the cutoff), ``p_alive`` and ``p_order``.

    Notes
    -----
    The probability conditions on the person's true ``lambda_per_day`` and ``p_dropout``,
    their channel and first visit, and their order times up to the cutoff; nothing else (not
    their dropout time, sessions or sign-up). The calendar window is mapped to the operational
    time it spans, so seasonality is exact. Buyers: ``p_alive`` (:func:`p_alive_bgnbd`) times
    ``1 - exp(-lambda * window)``, since an alive person's next purchase comes before any
    dropout. People with no order yet: the first order lands in the window with the
    probability of :func:`p_first_order` (``p_convert = signup_rate * channel_first_order``),
    and ``p_alive`` is the probability that a first order is still to come. People unseen by
    the cutoff get NaN for both. Every order counts, refunded or not: the generator never
    cancels an order, and its refunds (an independent per-order coin, ``refund_rate``) do not
    affect purchasing.
    """
    truth_path = sample_dir / "ground_truth" / "users.parquet"
    if not truth_path.is_file():
        raise ValidationError("sample_dir", f"{truth_path} is missing: not a folder written by write_sample")
    meta, cal, params = _generator(sample_dir / "ground_truth" / "params.json")
    start_us, cutoff_us, end_us = _window(cal, cutoff, horizon_days)
    truth = pq.read_table(truth_path, columns=["user_id", "channel", "acquisition_at", "lambda_per_day", "p_dropout"])
    user_id = truth["user_id"].to_numpy(zero_copy_only=False)
    n = len(user_id)
    order_uid, order_us = _orders(sample_dir / f"events.{'parquet' if meta['format'] == 'parquet' else 'csv.gz'}")
    person = pd.Index(user_id).get_indexer(order_uid)
    if (person < 0).any():
        raise ValidationError("sample_dir", "the events file has orders by people missing from the ground truth")
    before = order_us <= cutoff_us
    orders_before = np.bincount(person[before], minlength=n)
    t_last = np.full(n, -np.inf)
    np.maximum.at(t_last, person[before], _op_days(cal, order_us[before], start_us))

    t_cut, t_end = (float(t) for t in _op_days(cal, np.array([cutoff_us, end_us]), start_us))
    lam = truth["lambda_per_day"].to_numpy()
    p_alive = np.full(n, np.nan)
    p_order = np.full(n, np.nan)
    buyer = orders_before > 0
    p_alive[buyer] = p_alive_bgnbd(lam[buyer], truth["p_dropout"].to_numpy()[buyer], orders_before[buyer],
                                   t_last[buyer], t_cut)
    p_order[buyer] = p_alive[buyer] * -np.expm1(-lam[buyer] * (t_end - t_cut))
    acq_us = truth["acquisition_at"].cast(pa.int64()).to_numpy()
    known = acq_us <= cutoff_us
    waiting = known & ~buyer
    channel = pd.Index(meta["population"]["channels"]).get_indexer(truth["channel"].to_numpy(zero_copy_only=False))
    p_convert = params.signup_rate * np.asarray(params.channel_first_order)[channel[waiting]]
    p_order[waiting], p_alive[waiting] = p_first_order(
        _op_days(cal, acq_us[waiting], start_us), t_cut, t_end, p_convert, order_rate=params.order_rate())
    return pd.DataFrame({"user_id": user_id, "known": known, "orders_before": orders_before.astype(np.int64),
                         "p_alive": p_alive, "p_order": p_order})


def _generator(path: Path) -> tuple[dict[str, Any], Calendar, SampleParams]:
    """The sample's params.json, its calendar and its generative parameters (lists back to tuples)."""
    if not path.is_file():
        raise ValidationError("sample_dir", f"{path} is missing: not a folder written by write_sample")
    meta = json.loads(path.read_text())
    try:
        cal = Calendar(date.fromisoformat(meta["start"]), int(meta["days"]))
        op_days = float(meta["seasonality"]["operational_days_in_period"])
        values = {f.name: meta["population"][f.name] for f in fields(SampleParams)}
    except KeyError as exc:
        raise ValidationError("sample_dir", f"params.json lacks {exc}") from exc
    if not math.isclose(cal.op_end, op_days, rel_tol=1e-9):
        raise ValidationError("sample_dir", "params.json's seasonality differs from this generator's calendar")
    converted: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    params = SampleParams(**converted)
    return meta, cal, params


def _window(cal: Calendar, cutoff: datetime, horizon_days: float) -> tuple[int, int, int]:
    """Microseconds since the epoch of the period start, the cutoff and the window end, checked."""
    begin = datetime(cal.start.year, cal.start.month, cal.start.day, tzinfo=UTC)
    end = begin + timedelta(days=cal.days)
    if cutoff.tzinfo is None:
        raise ValidationError("cutoff", "must be timezone-aware")
    if not begin < cutoff < end:
        raise ValidationError("cutoff", f"must lie strictly inside the generated period [{begin}, {end}]")
    if not math.isfinite(horizon_days) or horizon_days <= 0:
        raise ValidationError("horizon_days", f"must be a positive number of days, got {horizon_days}")
    window_end = cutoff + timedelta(days=horizon_days)
    if window_end > end:
        raise ValidationError("horizon_days", f"the window reaches past the end of the generated data ({end})")
    begin_us, cutoff_us, end_us = ((t - EPOCH) // timedelta(microseconds=1) for t in (begin, cutoff, window_end))
    return begin_us, cutoff_us, end_us


def _orders(path: Path) -> tuple[NDArray[Any], NDArray[np.int64]]:
    """User id and time (microseconds since the epoch) of every order in the events file."""
    if not path.is_file():
        raise ValidationError("sample_dir", f"{path} is missing: not a folder written by write_sample")
    if path.suffix == ".parquet":
        table = pq.read_table(path, columns=["user_id", "timestamp"], filters=[("event", "==", ORDER_EVENT)])
    else:
        options = pacsv.ConvertOptions(include_columns=["event", "user_id", "timestamp"],
                                       column_types={"timestamp": pa.timestamp("us", tz="UTC")})
        table = pacsv.read_csv(path, convert_options=options)
        table = table.filter(pc.equal(table["event"], ORDER_EVENT))
    return (table["user_id"].to_numpy(zero_copy_only=False),
            table["timestamp"].cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_numpy())


def _op_days(cal: Calendar, us: NDArray[np.int64], start_us: int) -> NDArray[np.float64]:
    return cal.to_operational((us - start_us) / US_PER_DAY)
