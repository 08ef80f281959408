"""Gamma-Gamma model of spend per transaction, and discounted customer lifetime value.

Fader, Hardie & Lee (2005), "RFM and CLV: Using Iso-Value Curves for Customer Base Analysis",
Journal of Marketing Research 42(4), after Colombo & Jiang (1999); Fader & Hardie (2013),
"The Gamma-Gamma Model of Monetary Value". A customer's transaction values are
Gamma(p, ν) with ν ~ Gamma(q, γ) across customers, independent of the purchase process.
Money is in the unit of ``monetary_value`` (dollars for CDNOW).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import special
from sklearn.base import BaseEstimator

from tenure.errors import NotFittedError, ValidationError
from tenure.models._mle import collapse, fit_log_parameters
from tenure.models.bgnbd import MIN_CUSTOMERS, BetaGeo
from tenure.models.rfm_summary import FloatArray, check_summary


class GammaGamma(BaseEstimator):  # type: ignore[misc]
    """Gamma-Gamma spend model, fitted by maximum likelihood on the repeat buyers.

    Parameters
    ----------
    penalizer : float
        L2 penalty on (p, q, γ) added to the mean negative log-likelihood (``lifetimes``'
        ``penalizer_coef``); 0 gives the maximum-likelihood estimate.
    tol, max_iter :
        L-BFGS-B convergence tolerance and iteration limit.

    Attributes
    ----------
    p_, q_, v_ : float
        Fitted parameters (``v_`` is the paper's γ).
    log_likelihood_ : float
        Total log-likelihood of the repeat buyers' mean spends.
    n_customers_ : int
        Repeat buyers the model was fitted on.
    """

    def __init__(self, *, penalizer: float = 0.0, tol: float = 1e-8, max_iter: int = 1000) -> None:
        self.penalizer = penalizer
        self.tol = tol
        self.max_iter = max_iter

    def fit(self, summary: pd.DataFrame) -> GammaGamma:
        """Fit on the rows with ``frequency > 0`` (columns ``frequency``, ``monetary_value``)."""
        frequency, money = _check_money(summary)
        repeat = frequency > 0
        if repeat.sum() < MIN_CUSTOMERS:
            raise ValidationError("frequency", f"too few repeat buyers to fit (need at least {MIN_CUSTOMERS})")
        rows = SpendRows.build(*collapse(np.ones(int(repeat.sum())), frequency[repeat], money[repeat]))
        total = float(rows.w.sum())

        def objective(log_params: np.ndarray) -> tuple[float, np.ndarray]:
            params = np.exp(log_params)
            ll, grad = rows_loglik_and_grad(params, rows)
            value = -ll / total + self.penalizer * float(np.sum(params**2))
            return value, (-grad / total + 2.0 * self.penalizer * params) * params

        p, q, v = fit_log_parameters(objective, np.zeros(3), tol=self.tol, max_iter=self.max_iter)
        self.p_, self.q_, self.v_ = p, q, v
        self.log_likelihood_ = rows_loglik_and_grad(np.array([p, q, v]), rows)[0]
        self.n_customers_ = int(round(total))
        return self

    def predict(self, summary: pd.DataFrame) -> FloatArray:
        """scikit-learn's ``predict``: each customer's expected spend per future transaction."""
        return self.conditional_expected_average_profit(summary)

    def conditional_expected_average_profit(self, summary: pd.DataFrame) -> FloatArray:
        """Expected value of each customer's future transactions, given their repeat spends.

        A weighted mean of the population mean pγ/(q − 1) and the customer's own mean; for
        customers without repeat purchases it is the population mean. Needs q > 1.
        """
        p, q, v = self._params()
        x, m = _check_money(summary)
        if q <= 1.0:
            raise ValidationError("q_", "the population mean spend is infinite when q <= 1")
        out: FloatArray = p * (v + m * x) / (p * x + q - 1.0)
        return out

    def customer_lifetime_value(
        self,
        transactions_model: BetaGeo,
        summary: pd.DataFrame,
        *,
        horizon: int,
        discount_rate: float,
        time_unit_per_period: float = 1.0,
    ) -> FloatArray:
        """Discounted expected revenue of each customer over the next ``horizon`` periods.

        CLV = Σ_{k=1..horizon} m̂ · (E[Y(k·L)] − E[Y((k−1)·L)]) / (1 + d)^k, where E[Y(t)] is the
        BG/NBD conditional expectation, L = ``time_unit_per_period`` (model time units per period,
        e.g. 52/12 weeks per month for a weekly model) and d = ``discount_rate`` per period.
        Money is in the unit of ``monetary_value``.
        """
        if int(horizon) != horizon or horizon < 1:
            raise ValidationError("horizon", "must be a whole number of periods, at least 1")
        if not np.isfinite(discount_rate) or discount_rate <= -1.0:
            raise ValidationError("discount_rate", "must be a finite rate above -1")
        if not np.isfinite(time_unit_per_period) or time_unit_per_period <= 0:
            raise ValidationError("time_unit_per_period", "must be positive")
        spend = self.conditional_expected_average_profit(summary)
        periods = np.arange(int(horizon) + 1)
        expected = transactions_model.conditional_expected_purchases
        cumulative = np.column_stack(
            [np.zeros(len(spend))] + [expected(k * time_unit_per_period, summary) for k in periods[1:]]
        )
        discount = (1.0 + discount_rate) ** -periods[1:].astype(np.float64)
        out: FloatArray = spend * (np.diff(cumulative, axis=1) @ discount)
        return out

    def _params(self) -> tuple[float, float, float]:
        if not hasattr(self, "p_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted yet; call fit() first")
        return self.p_, self.q_, self.v_


@dataclass(frozen=True, slots=True)
class SpendRows:
    """Weighted (x, m) rows with what does not depend on the parameters computed once."""

    x: FloatArray
    m: FloatArray
    w: FloatArray
    ux: FloatArray  # distinct frequencies
    wx: FloatArray  # Σ w per distinct x
    wx_log_m: FloatArray  # Σ w ln m per distinct x
    w_log_m: float  # Σ w ln m
    index: npt.NDArray[np.intp]

    @classmethod
    def build(cls, x: FloatArray, m: FloatArray, w: FloatArray) -> SpendRows:
        ux, ix = np.unique(x, return_inverse=True)
        ix = ix.ravel()
        log_m = np.log(m)
        wx = np.bincount(ix, w, minlength=len(ux)).astype(np.float64)
        wx_log_m = np.bincount(ix, w * log_m, minlength=len(ux)).astype(np.float64)
        return cls(x, m, w, ux, wx, wx_log_m, float(np.dot(w, log_m)), ix)


def loglik_and_grad(params: FloatArray, x: FloatArray, m: FloatArray, w: FloatArray) -> tuple[float, FloatArray]:
    """Weighted log-likelihood of mean spends ``m`` over ``x`` transactions, and its gradient in (p, q, γ).

    The mean of x Gamma(p, ν) values is Gamma(px, νx); integrating ν ~ Gamma(q, γ) gives
    log L = lnΓ(px+q) − lnΓ(px) − lnΓ(q) + q ln γ + (px−1) ln m + px ln x − (px+q) ln(γ + mx).
    """
    return rows_loglik_and_grad(params, SpendRows.build(x, m, w))


def rows_loglik_and_grad(params: FloatArray, rows: SpendRows) -> tuple[float, FloatArray]:
    """``loglik_and_grad`` on prepared rows: terms in x alone are evaluated once per distinct x."""
    p, q, v = (float(t) for t in params)
    ux, wx, w = rows.ux, rows.wx, rows.w
    pux = p * ux
    log_mx = np.log(v + rows.m * rows.x)
    wx_log_mx = np.bincount(rows.index, w * log_mx, minlength=len(ux))
    gl, dg = special.gammaln(pux + q), special.digamma(pux + q)
    ll = (
        np.dot(wx, gl - special.gammaln(pux) - special.gammaln(q) + q * np.log(v) + pux * np.log(ux))
        + np.dot(pux, rows.wx_log_m) - rows.w_log_m - np.dot(pux + q, wx_log_mx)
    )
    grad = np.array(
        [
            np.dot(ux, wx * (dg - special.digamma(pux) + np.log(ux)) + rows.wx_log_m - wx_log_mx),
            np.dot(wx, dg - special.digamma(q) + np.log(v)) - w.dot(log_mx),
            q / v * w.sum() - np.dot(w, (p * rows.x + q) / (v + rows.m * rows.x)),
        ]
    )
    return float(ll), grad


def _check_money(summary: pd.DataFrame) -> tuple[FloatArray, FloatArray]:
    """Validated ``frequency`` and ``monetary_value``; recency and T are not needed for spend."""
    if isinstance(summary, pd.DataFrame):
        summary = summary.assign(**{name: 0.0 for name in ("recency", "T") if name not in summary.columns})
    data = check_summary(summary, monetary=True)
    assert data.monetary_value is not None  # asked for with monetary=True
    return data.frequency, data.monetary_value
