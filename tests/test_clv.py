"""Buy-till-you-die CLV models: BG/NBD, Gamma-Gamma, RFM summaries and the holdout check.

Known answers: Fader, Hardie & Lee (2005) on the CDNOW 1/10 sample, parameter recovery from
data simulated with known parameters, analytic gradients against finite differences, closed
forms against numeric integration over the posterior, summaries against a per-customer loop.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, special
from sklearn.base import clone

from tenure.errors import ConvergenceError, NotFittedError, ValidationError
from tenure.models import bgnbd, gamma_gamma
from tenure.models.bgnbd import BetaGeo
from tenure.models.clv_holdout import cumulative_repeat_transactions, holdout_by_frequency, plot_holdout
from tenure.models.gamma_gamma import GammaGamma
from tenure.models.rfm_summary import calibration_and_holdout, summary_from_transactions

CDNOW = Path(__file__).parent / "data" / "cdnow"
CAL_END, OBS_END = "1997-09-30", "1998-06-30"


def simulate_bgnbd(n: int, r: float, alpha: float, a: float, b: float, *, T: np.ndarray, seed: int) -> pd.DataFrame:
    """Draw BG/NBD summaries from known parameters (vectorised).

    While alive, purchases are Poisson(λ) in [0, T]; after each repeat purchase the customer drops
    out with probability p, so the purchases made before dropping out are K ~ Geometric(p) on
    {1, 2, …} and x = min(N(T), K). Given N(T) = n arrival times are uniform order statistics,
    so the x-th is T · Beta(x, n − x + 1).
    """
    rng = np.random.default_rng(seed)
    lam = rng.gamma(r, 1.0 / alpha, n)
    p = rng.beta(a, b, n)
    arrivals = rng.poisson(lam * T)
    x = np.minimum(arrivals, rng.geometric(p))
    recency = np.zeros(n)
    bought = x > 0
    recency[bought] = T[bought] * rng.beta(x[bought], arrivals[bought] - x[bought] + 1)
    return pd.DataFrame({"frequency": x.astype(np.float64), "recency": recency, "T": T})


def simulate_gamma_gamma(frequency: np.ndarray, p: float, q: float, v: float, *, seed: int) -> np.ndarray:
    """Mean repeat spend per customer: ν ~ Gamma(q, rate γ); a mean of x Gamma(p, rate ν) is Gamma(px, rate νx)."""
    rng = np.random.default_rng(seed)
    nu = rng.gamma(q, 1.0 / v, len(frequency))
    x = np.maximum(frequency, 1.0)
    return np.where(frequency > 0, rng.gamma(p * x, 1.0 / (nu * x)), 0.0)


def read_cdnow_sample() -> pd.DataFrame:
    names = ["master_id", "sample_id", "date", "cds", "dollar_value"]
    tx = pd.read_csv(CDNOW / "CDNOW_sample.txt", sep=r"\s+", header=None, names=names, dtype={"date": str})
    tx["date"] = pd.to_datetime(tx["date"], format="%Y%m%d")
    return tx


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    return read_cdnow_sample()


@pytest.fixture(scope="module")
def cdnow_summary(cdnow: pd.DataFrame) -> pd.DataFrame:
    return calibration_and_holdout(cdnow, customer="sample_id", timestamp="date", amount="dollar_value",
                                   calibration_end=CAL_END, observation_end=OBS_END)


@pytest.fixture(scope="module")
def cdnow_model(cdnow_summary: pd.DataFrame) -> BetaGeo:
    return BetaGeo().fit(cdnow_summary)


# --- CDNOW reproduction ---------------------------------------------------------------------


def test_cdnow_summary_matches_the_paper(cdnow_summary: pd.DataFrame) -> None:
    """2,357 customers; the paper's example customer (ID 1: x=2, t_x=30.43, T=38.86) and 946 repeat buyers."""
    assert len(cdnow_summary) == 2357
    first = cdnow_summary.loc[1]
    assert (first["frequency"], round(first["recency"], 2), round(first["T"], 2)) == (2, 30.43, 38.86)
    assert (cdnow_summary["frequency"] > 0).sum() == 946
    assert (cdnow_summary["duration_holdout"] == 39).all()


def test_bgnbd_reproduces_fader_hardie_lee_2005(cdnow_model: BetaGeo) -> None:
    """CDNOW_sample.txt, calibration weeks 1–39 (to 1997-09-30), days/7: the paper's Table/§5 estimates."""
    fitted = [cdnow_model.r_, cdnow_model.alpha_, cdnow_model.a_, cdnow_model.b_, cdnow_model.log_likelihood_]
    np.testing.assert_allclose(fitted, [0.243, 4.414, 0.793, 2.426, -9582.4], rtol=0.01)
    assert cdnow_model.log_likelihood_ == pytest.approx(-9582.4, abs=0.1)  # much tighter than 1%
    assert cdnow_model.n_customers_ == 2357


def test_bgnbd_headline_prediction(cdnow_model: BetaGeo) -> None:
    """Fader, Hardie & Lee (2005) §5 / Hardie's note: x=2, t_x=30.43, T=38.86 → 1.226 purchases in 39 weeks."""
    customer = pd.DataFrame({"frequency": [2.0], "recency": [30.43], "T": [38.86]})
    assert cdnow_model.conditional_expected_purchases(39, customer)[0] == pytest.approx(1.226, abs=5e-4)


def test_gamma_gamma_reproduces_fader_hardie(cdnow_summary: pd.DataFrame) -> None:
    """p = 6.25, q = 3.74, γ = 15.44 (Fader & Hardie 2013, "The Gamma-Gamma Model of Monetary Value").

    Data that reproduces them: the same CDNOW 2,357-customer sample and 39-week calibration as
    the BG/NBD; the 946 customers with repeat purchases; a customer's same-day transactions are
    one transaction whose value is their sum; ``monetary_value`` is the mean value of the repeat
    purchase days (the first purchase excluded), i.e. lifetimes' ``cdnow_customers_summary_with_transactions``.
    """
    model = GammaGamma().fit(cdnow_summary)
    np.testing.assert_allclose([model.p_, model.q_, model.v_], [6.25, 3.74, 15.44], rtol=0.01)
    assert model.n_customers_ == 946
    mean_spend = model.p_ * model.v_ / (model.q_ - 1.0)
    assert model.conditional_expected_average_profit(cdnow_summary.iloc[[2]])[0] == pytest.approx(mean_spend)


# --- parameter recovery ---------------------------------------------------------------------


def test_bgnbd_recovers_simulated_parameters() -> None:
    truth = (0.25, 4.0, 0.8, 2.5)
    T = np.random.default_rng(1).integers(1, 39 * 7, 20_000) / 7.0  # ages in whole days, like CDNOW
    model = BetaGeo().fit(simulate_bgnbd(20_000, *truth, T=T, seed=2))
    np.testing.assert_allclose([model.r_, model.alpha_, model.a_, model.b_], truth, rtol=0.15)


def test_gamma_gamma_recovers_simulated_parameters() -> None:
    truth = (6.0, 4.0, 15.0)
    frequency = np.random.default_rng(3).poisson(2.0, 20_000).astype(np.float64)
    money = simulate_gamma_gamma(frequency, *truth, seed=4)
    model = GammaGamma().fit(pd.DataFrame({"frequency": frequency, "monetary_value": money}))
    np.testing.assert_allclose([model.p_, model.q_, model.v_], truth, rtol=0.15)  # p and γ trade off
    assert model.p_ * model.v_ / (model.q_ - 1) == pytest.approx(6.0 * 15.0 / 3.0, rel=0.03)  # mean spend


# --- gradients and closed forms -------------------------------------------------------------


def _central_difference(f: Callable[[np.ndarray], float], point: np.ndarray) -> np.ndarray:
    """Central differences from scipy's forward ``approx_fprime`` taken with steps +h and −h."""
    step = 1e-5 * point
    return (optimize.approx_fprime(point, f, step) + optimize.approx_fprime(point, f, -step)) / 2.0


def test_analytic_gradients_match_finite_differences(cdnow_summary: pd.DataFrame) -> None:
    x, t_x, T = (cdnow_summary[c].to_numpy() for c in ("frequency", "recency", "T"))
    w = np.ones(len(x))
    for params in ([0.243, 4.414, 0.793, 2.426], [1.3, 0.7, 2.1, 0.6]):
        point = np.array(params)
        numeric = _central_difference(lambda p: bgnbd.loglik_and_grad(p, x, t_x, T, w)[0], point)
        np.testing.assert_allclose(bgnbd.loglik_and_grad(point, x, t_x, T, w)[1], numeric, rtol=1e-5, atol=1e-5)
    repeat = x > 0
    m = cdnow_summary["monetary_value"].to_numpy()[repeat]
    for params in ([6.25, 3.74, 15.44], [0.8, 2.5, 3.0]):
        point = np.array(params)
        numeric = _central_difference(lambda p: gamma_gamma.loglik_and_grad(p, x[repeat], m, w[repeat])[0], point)
        np.testing.assert_allclose(gamma_gamma.loglik_and_grad(point, x[repeat], m, w[repeat])[1], numeric,
                                   rtol=1e-5, atol=1e-5)


def _posterior_expectations(model: BetaGeo, x: float, t_x: float, T: float, t: float) -> tuple[float, ...]:
    """P(alive), E[Y(t)] and P(purchase in (T, T+t]) by numeric integration over the (λ, p) posterior.

    Prior Gamma(r, α) × Beta(a, b); likelihood (1−p)^x λ^x e^{−λT} (alive)
    + [x>0] p(1−p)^{x−1} λ^x e^{−λ t_x} (dropped out after the last purchase). Given alive with
    (λ, p): E[Y(t)] = (1 − e^{−λpt}) / p (the paper's eq. 7) and P(at least one purchase) =
    1 − e^{−λt}. Each term is integrated by a tensor Gauss rule whose weight is its own
    λ^c e^{−dλ} × p^e (1−p)^f kernel (generalised Laguerre × Jacobi), so the remaining integrands
    are smooth and the rules converge fast.
    """
    r, alpha, a, b = model.r_, model.alpha_, model.a_, model.b_

    def rule(lam_power: float, lam_rate: float, p_power: float, q_power: float) -> tuple[np.ndarray, ...]:
        mu, w_lam = special.roots_genlaguerre(120, lam_power)
        s, w_p = special.roots_jacobi(120, q_power, p_power)
        lam, p = mu[:, None] / lam_rate, (1.0 + s[None, :]) / 2.0
        weight = w_lam[:, None] * w_p[None, :] / lam_rate ** (lam_power + 1) / 2.0 ** (p_power + q_power + 1)
        return lam, p, weight

    def integrate(lam: np.ndarray, p: np.ndarray, weight: np.ndarray) -> tuple[float, float, float]:
        ones = np.ones_like(lam * p)
        return (float(np.sum(weight * ones)), float(np.sum(weight * -np.expm1(-lam * p * t) / p)),
                float(np.sum(weight * -np.expm1(-lam * t) * ones)))

    z_alive, expected, purchase = integrate(*rule(r + x - 1.0, alpha + T, a - 1.0, b + x - 1.0))
    z_dead = integrate(*rule(r + x - 1.0, alpha + t_x, a, b + x - 2.0))[0] if x > 0 else 0.0
    z = z_alive + z_dead
    return z_alive / z, expected / z, purchase / z


@pytest.mark.parametrize("x,t_x,T", [(0, 0.0, 30.0), (2, 30.43, 38.86), (5, 10.0, 38.0)])
def test_closed_forms_match_posterior_integration(cdnow_model: BetaGeo, x: int, t_x: float, T: float) -> None:
    customer = pd.DataFrame({"frequency": [float(x)], "recency": [t_x], "T": [T]})
    p_alive, expected, purchase = _posterior_expectations(cdnow_model, x, t_x, T, t=13.0)
    assert cdnow_model.p_alive(customer)[0] == pytest.approx(p_alive, rel=1e-6)
    assert cdnow_model.conditional_expected_purchases(13.0, customer)[0] == pytest.approx(expected, rel=1e-6)
    assert cdnow_model.p_purchase_within(13.0, customer)[0] == pytest.approx(purchase, rel=1e-6)


def test_unconditional_expectation_matches_simulation(cdnow_model: BetaGeo) -> None:
    m = cdnow_model
    sim = simulate_bgnbd(400_000, m.r_, m.alpha_, m.a_, m.b_, T=np.full(400_000, 52.0), seed=5)
    expected = m.expected_purchases(52.0)
    assert sim["frequency"].mean() == pytest.approx(float(expected), rel=0.02)
    assert m.conditional_expected_purchases(52.0, pd.DataFrame({"frequency": [0.0], "recency": [0.0], "T": [0.0]}))[
        0] == pytest.approx(float(expected), rel=1e-9)


def test_clv_discounts_period_increments(cdnow_model: BetaGeo, cdnow_summary: pd.DataFrame) -> None:
    spend_model = GammaGamma().fit(cdnow_summary)
    rows = cdnow_summary.iloc[:20]
    spend = spend_model.conditional_expected_average_profit(rows)
    weeks_per_month = 52.0 / 12.0
    clv = spend_model.customer_lifetime_value(cdnow_model, rows, horizon=12, discount_rate=0.01,
                                              time_unit_per_period=weeks_per_month)
    brute = np.zeros(len(rows))
    for k in range(1, 13):
        step = (cdnow_model.conditional_expected_purchases(k * weeks_per_month, rows)
                - cdnow_model.conditional_expected_purchases((k - 1) * weeks_per_month, rows))
        brute += spend * step / 1.01**k
    np.testing.assert_allclose(clv, brute, rtol=1e-12)
    undiscounted = spend_model.customer_lifetime_value(cdnow_model, rows, horizon=12, discount_rate=0.0,
                                                       time_unit_per_period=weeks_per_month)
    np.testing.assert_allclose(undiscounted, spend * cdnow_model.conditional_expected_purchases(52.0, rows))
    assert np.all(clv < undiscounted)


# --- estimator conventions ------------------------------------------------------------------


def test_estimator_conventions_and_weights(cdnow_summary: pd.DataFrame, cdnow_model: BetaGeo) -> None:
    with pytest.raises(NotFittedError):
        BetaGeo().p_alive(cdnow_summary)
    with pytest.raises(NotFittedError):
        GammaGamma().conditional_expected_average_profit(cdnow_summary)
    assert clone(BetaGeo(penalizer=0.1)).get_params() == {"penalizer": 0.1, "tol": 1e-8, "max_iter": 1000}
    np.testing.assert_array_equal(cdnow_model.predict(cdnow_summary, t=39.0),
                                  cdnow_model.conditional_expected_purchases(39.0, cdnow_summary))
    with pytest.raises(NotFittedError):
        GammaGamma().predict(cdnow_summary)
    collapsed = cdnow_summary.groupby(["frequency", "recency", "T"], as_index=False).size()
    weighted = BetaGeo().fit(collapsed.rename(columns={"size": "weights"}))
    assert len(collapsed) < len(cdnow_summary)
    np.testing.assert_allclose([weighted.r_, weighted.a_, weighted.log_likelihood_],
                               [cdnow_model.r_, cdnow_model.a_, cdnow_model.log_likelihood_], rtol=1e-5)
    by_argument = BetaGeo().fit(collapsed[["frequency", "recency", "T"]], sample_weight=collapsed["size"])
    assert by_argument.alpha_ == pytest.approx(weighted.alpha_, rel=1e-6)
    with pytest.raises(ConvergenceError):
        BetaGeo(max_iter=1).fit(cdnow_summary)


# --- RFM summaries --------------------------------------------------------------------------


def _random_transactions(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 400
    stamps = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 120 * 24, n), unit="h")
    return pd.DataFrame({"who": rng.choice(list("abcdefghijklmnopqrst"), n), "at": stamps,
                         "amount": rng.integers(1, 100, n).astype(float)})


def _brute_summary(tx: pd.DataFrame, start: pd.Timestamp | None, end: pd.Timestamp, unit: float) -> dict[str, tuple]:
    out = {}
    for who in sorted(set(tx["who"])):
        days: dict[pd.Timestamp, float] = {}
        for at, amount in zip(tx.loc[tx["who"] == who, "at"], tx.loc[tx["who"] == who, "amount"], strict=True):
            day = at.normalize()
            if day <= end:
                days[day] = days.get(day, 0.0) + amount
        if not days or (start is not None and min(days) > start):
            continue
        ordered = sorted(days)
        repeats = [days[d] for d in ordered[1:]]
        out[who] = (len(repeats), (ordered[-1] - ordered[0]).days / unit, (end - ordered[0]).days / unit,
                    sum(repeats) / len(repeats) if repeats else 0.0)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_summary_matches_a_per_customer_loop(seed: int) -> None:
    tx = _random_transactions(seed)
    end = pd.Timestamp("2024-03-31")
    got = summary_from_transactions(tx, customer="who", timestamp="at", amount="amount", observation_end=end,
                                    time_unit="D")
    brute = _brute_summary(tx, None, end, 1.0)
    assert list(got.index) == list(brute)
    np.testing.assert_allclose(got[["frequency", "recency", "T", "monetary_value"]].to_numpy(),
                               np.array(list(brute.values())))

    cal_end = pd.Timestamp("2024-02-29")
    split = calibration_and_holdout(tx, customer="who", timestamp="at", amount="amount", calibration_end=cal_end,
                                    observation_end=end, time_unit="W")
    cal = _brute_summary(tx, cal_end, cal_end, 7.0)
    assert list(split.index) == list(cal)
    np.testing.assert_allclose(split[["frequency", "recency", "T", "monetary_value"]].to_numpy(),
                               np.array(list(cal.values())))
    for who, row in split.iterrows():
        holdout = tx[(tx["who"] == who) & (tx["at"].dt.normalize() > cal_end) & (tx["at"].dt.normalize() <= end)]
        per_day = holdout.groupby(holdout["at"].dt.normalize())["amount"].sum()
        assert row["frequency_holdout"] == len(per_day)
        assert row["monetary_value_holdout"] == pytest.approx(per_day.mean() if len(per_day) else 0.0)
    assert (split["duration_holdout"] == 31 / 7).all()


# --- holdout tracking -----------------------------------------------------------------------


def test_holdout_tracking_on_cdnow(cdnow: pd.DataFrame, cdnow_summary: pd.DataFrame, cdnow_model: BetaGeo) -> None:
    track = cumulative_repeat_transactions(cdnow_model, cdnow, customer="sample_id", timestamp="date",
                                           calibration_end=CAL_END, observation_end=OBS_END)
    assert len(track) == 78 and track["holdout"].sum() == 39
    # Actual: a direct count of repeat purchase days ending each week since 1997-01-01.
    days = cdnow[["sample_id", "date"]].drop_duplicates()
    first = days.groupby("sample_id")["date"].transform("min")
    week = (days["date"] - pd.Timestamp("1997-01-01")).dt.days // 7 + 1
    direct = week[days["date"] > first].value_counts().sort_index().cumsum()
    np.testing.assert_array_equal(track["actual"].to_numpy(), direct.reindex(range(1, 79)).ffill().fillna(0).to_numpy())
    assert track.loc[39, "actual"] == cdnow_summary["frequency"].sum()
    assert track.loc[78, "actual"] == cdnow_summary["frequency"].sum() + cdnow_summary["frequency_holdout"].sum()
    # Predicted at the end of calibration: Σ E[X(T_i)] with each customer's calibration age.
    assert track.loc[39, "predicted"] == pytest.approx(cdnow_model.expected_purchases(cdnow_summary["T"]).sum())
    assert abs(track.loc[78, "predicted"] / track.loc[78, "actual"] - 1) < 0.05

    buckets = holdout_by_frequency(cdnow_model, cdnow_summary)
    assert list(buckets.index) == ["0", "1", "2", "3", "4", "5", "6", "7+"]
    assert buckets["customers"].sum() == 2357
    assert buckets.loc["0", "actual"] == pytest.approx(
        cdnow_summary.loc[cdnow_summary["frequency"] == 0, "frequency_holdout"].mean())
    expected_total = cdnow_model.conditional_expected_purchases(39, cdnow_summary).sum()
    assert (buckets["customers"] * buckets["predicted"]).sum() == pytest.approx(expected_total)
    assert buckets.loc["0", "predicted"] == pytest.approx(buckets.loc["0", "actual"], rel=0.1)

    figure = plot_holdout(track, buckets)
    left, right = figure.axes
    np.testing.assert_array_equal(left.lines[0].get_ydata(), track["actual"].to_numpy())
    assert len(right.patches) == 16


# --- bad input ------------------------------------------------------------------------------


def _summary(**changes: list[float]) -> pd.DataFrame:
    base = {"frequency": [0.0, 1.0, 2.0] * 5, "recency": [0.0, 5.0, 10.0] * 5, "T": [20.0] * 15,
            "monetary_value": [0.0, 10.0, 20.0] * 5}
    base.update({k: v * 5 for k, v in changes.items()})
    return pd.DataFrame(base)


@pytest.mark.parametrize(
    "frame,field",
    [
        (_summary(frequency=[-1.0, 1.0, 2.0]), "frequency"),
        (_summary(frequency=[0.0, 1.5, 2.0]), "frequency"),
        (_summary(recency=[0.0, float("nan"), 10.0]), "recency"),
        (_summary(T=[20.0, float("inf"), 20.0]), "T"),
        (_summary(recency=[0.0, 25.0, 10.0]), "recency"),
        (_summary(recency=[3.0, 5.0, 10.0]), "recency"),
        (_summary().drop(columns="T"), "T"),
        (_summary().head(9), "summary"),
        (_summary(frequency=[0.0, 0.0, 0.0], recency=[0.0, 0.0, 0.0]), "frequency"),
        (_summary().assign(weights=-1.0), "weights"),
    ],
)
def test_bgnbd_bad_input_names_the_field(frame: pd.DataFrame, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        BetaGeo().fit(frame)
    assert caught.value.field == field


@pytest.mark.parametrize(
    "frame,field",
    [
        (_summary(monetary_value=[0.0, 0.0, 20.0]), "monetary_value"),
        (_summary(monetary_value=[0.0, float("nan"), 20.0]), "monetary_value"),
        (_summary().drop(columns="monetary_value"), "monetary_value"),
        (_summary().head(12), "frequency"),
    ],
)
def test_gamma_gamma_bad_input_names_the_field(frame: pd.DataFrame, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        GammaGamma().fit(frame)
    assert caught.value.field == field


def test_prediction_and_summary_bad_input(cdnow_model: BetaGeo, cdnow_summary: pd.DataFrame) -> None:
    rows = cdnow_summary.head()
    cases = [
        (lambda: cdnow_model.conditional_expected_purchases(-1.0, rows), "t"),
        (lambda: cdnow_model.p_purchase_within(float("nan"), rows), "t"),
        (lambda: cdnow_model.expected_purchases([1.0, -2.0]), "t"),
        (lambda: cdnow_model.p_alive(rows.assign(recency=rows["T"] + 1)), "recency"),
        (lambda: GammaGamma().fit(cdnow_summary).customer_lifetime_value(cdnow_model, rows, horizon=0,
                                                                          discount_rate=0.01), "horizon"),
        (lambda: summary_from_transactions(pd.DataFrame({"c": [1], "d": ["x"]}), customer="c", timestamp="d",
                                           observation_end="2024-01-01"), "d"),
        (lambda: summary_from_transactions(pd.DataFrame({"c": [1], "d": ["2024-01-01"]}), customer="c",
                                           timestamp="when", observation_end="2024-01-01"), "when"),
        (lambda: summary_from_transactions(pd.DataFrame({"c": [1], "d": ["2024-01-01"], "v": [None]}), customer="c",
                                           timestamp="d", amount="v", observation_end="2024-02-01"), "v"),
        (lambda: summary_from_transactions(pd.DataFrame({"c": [1], "d": ["2024-01-01"]}), customer="c",
                                           timestamp="d", observation_end="2024-01-01", time_unit="M"), "time_unit"),
        (lambda: calibration_and_holdout(pd.DataFrame({"c": [1], "d": ["2024-01-01"]}), customer="c", timestamp="d",
                                         calibration_end="2024-02-01", observation_end="2024-01-01"),
         "observation_end"),
    ]
    for call, field in cases:
        with pytest.raises(ValidationError) as caught:
            call()
        assert caught.value.field == field
