"""The sample shop's oracle against simulations of the generator's own process and against its files."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from numpy.typing import ArrayLike

from tenure.errors import ValidationError
from tenure.sample import SampleParams, write_sample
from tenure.sample._purchases import simulate_bgnbd
from tenure.sample._sessions import first_visits
from tenure.sample.oracle import first_order_delay_cdf, order_probability, p_alive_bgnbd, p_first_order

START = date(2025, 1, 1)
BEGIN = datetime(2025, 1, 1, tzinfo=UTC)
# The shop's window spans the December peak, where calendar and operational time differ most.
SHOP_START = date(2025, 5, 1)
CUTOFF = datetime(2025, 5, 1, tzinfo=UTC) + timedelta(days=200)
HORIZON = 60.0


def _close(observed: ArrayLike, predicted: ArrayLike, sigmas: float = 4.0) -> None:
    """Observed 0/1 outcomes average to the mean prediction within ``sigmas`` binomial errors."""
    y, p = np.asarray(observed, dtype=float), np.asarray(predicted, dtype=float)
    se = np.sqrt(np.sum(p * (1 - p))) / len(p)
    assert abs(y.mean() - p.mean()) <= sigmas * se + 1e-12, (y.mean(), p.mean(), se, len(p))


@pytest.mark.parametrize(("lam", "p", "t_cut", "h"), [
    (0.05, 0.3, 100.0, 30.0), (0.2, 0.1, 60.0, 20.0), (0.01, 0.6, 200.0, 60.0), (0.5, 0.5, 30.0, 5.0),
])
def test_buyers_match_simulated_bgnbd_histories(lam: float, p: float, t_cut: float, h: float) -> None:
    # Whole histories from the generator's own simulator; for any event A of the history up to
    # the cutoff, E[outcome; A] = E[oracle; A] exactly, so no binning approximation enters.
    n = 60_000
    rng = np.random.default_rng(int(lam * 1000 + p * 10))
    hist = simulate_bgnbd(rng, np.full(n, lam), np.full(n, p), np.zeros(n), t_cut + h)
    before = hist.op <= t_cut
    n_before = np.bincount(hist.person[before], minlength=n)
    t_last = np.zeros(n)
    np.maximum.at(t_last, hist.person[before], hist.op[before])
    in_window = np.bincount(hist.person[~before], minlength=n) > 0
    alive = hist.dropout_op > t_cut
    p_alive = p_alive_bgnbd(np.full(n, lam), np.full(n, p), n_before, t_last, t_cut)
    p_order = p_alive * -np.expm1(-lam * h)
    recent = t_cut - t_last < np.median(t_cut - t_last)
    groups = [n_before == 1, n_before == 2, (n_before >= 3) & recent, (n_before >= 3) & ~recent,
              (n_before >= 2) & recent, (n_before >= 2) & ~recent]
    for group in groups:
        if group.sum() < 200:
            continue
        _close(alive[group], p_alive[group])
        _close(in_window[group], p_order[group])


def test_first_orders_match_the_generators_first_visits() -> None:
    params = SampleParams()
    n, t_cut, h = 400_000, 40.0, 15.0
    rng = np.random.default_rng(5)
    p_convert = 0.5
    pop: Any = SimpleNamespace(size=n, converts=rng.random(n) < p_convert, acq_op=rng.uniform(0.0, t_cut, n))
    fv = first_visits(rng, pop, t_cut + h, params)
    t0 = fv.t_first_raw
    # The delay distribution itself, at a few points.
    delay = (t0 - pop.acq_op)[pop.converts]
    for d in (0.0, 0.5, 2.0, 5.0, 10.0, 30.0):
        cdf = first_order_delay_cdf(np.array([d]), order_rate=params.order_rate())[0]
        assert abs((delay <= d).mean() - cdf) < 4 * np.sqrt(cdf * (1 - cdf) / len(delay)) + 1e-9
    # Conditional on no order by the cutoff, by time since the first visit.
    waiting = ~(t0 <= t_cut)
    acq = pop.acq_op[waiting]
    p_order, p_pending = p_first_order(acq, t_cut, t_cut + h, np.full(len(acq), p_convert),
                                       order_rate=params.order_rate())
    outcome = (t0[waiting] > t_cut) & (t0[waiting] <= t_cut + h)
    pending = pop.converts[waiting]
    since = t_cut - acq
    for group in (since < 1, (since >= 1) & (since < 5), (since >= 5) & (since < 15), since >= 15):
        _close(outcome[group], p_order[group])
        _close(pending[group], p_pending[group])


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("oracle_shop")
    write_sample(out, users=5000, days=300, seed=21, start=SHOP_START)
    return out


@pytest.fixture(scope="module")
def scored(shop: Path) -> pd.DataFrame:
    """The oracle next to each known person's actual outcome and recency, read from the files."""
    oracle = order_probability(shop, cutoff=CUTOFF, horizon_days=HORIZON)
    events = pd.read_parquet(shop / "events.parquet", columns=["event", "user_id", "timestamp"])
    orders = events[events.event == "Order Completed"]
    window = orders[(orders.timestamp > CUTOFF) & (orders.timestamp <= CUTOFF + timedelta(days=HORIZON))]
    past = orders[orders.timestamp <= CUTOFF]
    truth = pd.read_parquet(shop / "ground_truth" / "users.parquet", columns=["user_id", "acquisition_at"])
    assert oracle.user_id.tolist() == truth.user_id.tolist()
    assert oracle.known.equals(truth.acquisition_at <= CUTOFF)
    counts = past.groupby("user_id").size().reindex(oracle.user_id, fill_value=0)
    assert (oracle.orders_before.to_numpy() == counts.to_numpy()).all()
    last = past.groupby("user_id").timestamp.max().reindex(oracle.user_id)
    out = oracle.assign(y=oracle.user_id.isin(window.user_id).to_numpy(),
                        recency=((CUTOFF - last).dt.total_seconds() / 86_400).to_numpy())
    return out[out.known].reset_index(drop=True)


def test_known_people_all_get_a_probability(scored: pd.DataFrame) -> None:
    assert scored.p_order.between(0, 1).all() and scored.p_alive.between(0, 1).all()
    assert (scored.p_order <= scored.p_alive + 1e-12).all()
    assert len(scored) > 2000 and scored.y.sum() > 300


def test_calibrated_on_the_generated_shop(scored: pd.DataFrame) -> None:
    _close(scored.y, scored.p_order, sigmas=3.0)
    buckets = pd.cut(scored.p_order, [0, 0.02, 0.1, 0.2, 0.35, 0.5, 0.7, 0.9, 1.0], include_lowest=True)
    for _, group in scored.groupby(buckets, observed=True):
        if len(group) >= 30:
            _close(group.y, group.p_order)
    for buyer in (True, False):
        group = scored[(scored.orders_before > 0) == buyer]
        _close(group.y, group.p_order)


def test_brier_beats_constant_and_recency_heuristics(scored: pd.DataFrame) -> None:
    y = scored.y.to_numpy(dtype=float)
    oracle = np.mean((scored.p_order - y) ** 2)
    constant = np.mean((y.mean() - y) ** 2)
    # The best step function of recency, fitted in-sample: deciles of days since the last order,
    # never-buyers as one more bucket.
    bucket = pd.qcut(scored.recency, 10, labels=False, duplicates="drop").fillna(-1)
    recency = np.mean((scored.y.groupby(bucket).transform("mean") - y) ** 2)
    assert oracle < 0.9 * recency < 0.9 * constant


def test_csv_sample_gives_the_same_probabilities(tmp_path: Path) -> None:
    write_sample(tmp_path / "p", users=400, days=90, seed=3)
    write_sample(tmp_path / "c", users=400, days=90, seed=3, fmt="csv")
    cutoff = BEGIN + timedelta(days=50)
    a = order_probability(tmp_path / "p", cutoff=cutoff, horizon_days=30)
    b = order_probability(tmp_path / "c", cutoff=cutoff, horizon_days=30)
    assert a.orders_before.sum() > 50
    pd.testing.assert_frame_equal(a, b, rtol=1e-5, atol=1e-8)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("oracle_small")
    write_sample(out, users=200, days=30, seed=4, start=START)
    return out


@pytest.mark.parametrize(("cutoff", "horizon", "field"), [
    (BEGIN - timedelta(days=1), 5.0, "cutoff"),
    (BEGIN, 5.0, "cutoff"),
    (BEGIN + timedelta(days=30), 5.0, "cutoff"),
    (datetime(2025, 1, 10), 5.0, "cutoff"),
    (BEGIN + timedelta(days=10), 0.0, "horizon_days"),
    (BEGIN + timedelta(days=10), -3.0, "horizon_days"),
    (BEGIN + timedelta(days=10), float("nan"), "horizon_days"),
    (BEGIN + timedelta(days=10), 20.5, "horizon_days"),
])
def test_rejects_a_window_outside_the_data(small: Path, cutoff: datetime, horizon: float, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        order_probability(small, cutoff=cutoff, horizon_days=horizon)
    assert err.value.field == field


def test_window_may_end_exactly_at_the_end_of_the_data(small: Path) -> None:
    out = order_probability(small, cutoff=BEGIN + timedelta(days=10), horizon_days=20.0)
    assert out.p_order[out.known].notna().all()


@pytest.mark.parametrize("missing", ["ground_truth/users.parquet", "ground_truth/params.json", "events.parquet"])
def test_rejects_a_folder_without_the_sample_files(small: Path, tmp_path: Path, missing: str) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(small, copy)
    (copy / missing).unlink()
    with pytest.raises(ValidationError) as err:
        order_probability(copy, cutoff=BEGIN + timedelta(days=10), horizon_days=5.0)
    assert err.value.field == "sample_dir" and missing.split("/")[-1] in err.value.reason


def test_first_orders_are_calibrated_on_a_young_busy_shop(tmp_path: Path) -> None:
    # Many recent first visits: the channel's conversion and the first-order delay dominate.
    write_sample(tmp_path, users=12_000, days=30, seed=8, start=START)
    cutoff = BEGIN + timedelta(days=15)
    oracle = order_probability(tmp_path, cutoff=cutoff, horizon_days=15)
    events = pd.read_parquet(tmp_path / "events.parquet", columns=["event", "user_id", "timestamp"])
    orders = events[(events.event == "Order Completed") & (events.timestamp > cutoff)]
    truth = pd.read_parquet(tmp_path / "ground_truth" / "users.parquet", columns=["acquisition_at"])
    waiting = oracle[oracle.known & (oracle.orders_before == 0)]
    y = waiting.user_id.isin(orders.user_id).to_numpy()
    days = ((cutoff - truth.acquisition_at[waiting.index]).dt.total_seconds() / 86_400).to_numpy()
    assert len(waiting) > 3000
    for group in (days < 1, (days >= 1) & (days < 3), (days >= 3) & (days < 8), days >= 8):
        _close(y[group], waiting.p_order[group])
