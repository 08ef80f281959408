"""BG/NBD: the beta-geometric / negative binomial model of repeat purchases.

Fader, Hardie & Lee (2005), "Counting Your Customers the Easy Way: An Alternative to the
Pareto/NBD Model", Marketing Science 24(2). While alive a customer buys at a Poisson rate
λ ~ Gamma(r, α); after each repeat purchase they drop out with probability p ~ Beta(a, b).
Time is in the unit of the summary (weeks for CDNOW).

The fit maximises the exact log-likelihood over log-parameters with L-BFGS-B and analytic
gradients, after collapsing customers with identical (frequency, recency, T) into weighted rows.
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
from tenure.models.rfm_summary import FloatArray, SummaryArrays, check_summary

MIN_CUSTOMERS = 10


class BetaGeo(BaseEstimator):  # type: ignore[misc]
    """BG/NBD repeat-purchase model, fitted by maximum likelihood.

    Parameters
    ----------
    penalizer : float
        L2 penalty on the natural parameters, added to the mean negative log-likelihood
        (``lifetimes``' ``penalizer_coef``); 0 gives the exact maximum-likelihood estimate.
    tol : float
        Convergence tolerance on the projected gradient of the mean log-likelihood.
    max_iter : int
        Maximum L-BFGS-B iterations.

    Attributes
    ----------
    r_, alpha_, a_, b_ : float
        Fitted parameters.
    log_likelihood_ : float
        Total log-likelihood at the optimum (the paper's convention: a sum over customers).
    n_customers_ : int
        Customers (total weight) the model was fitted on.

    Examples
    --------
    >>> model = BetaGeo().fit(summary)  # columns frequency, recency, T  # doctest: +SKIP
    >>> model.p_alive(summary)  # doctest: +SKIP
    """

    def __init__(self, *, penalizer: float = 0.0, tol: float = 1e-8, max_iter: int = 1000) -> None:
        self.penalizer = penalizer
        self.tol = tol
        self.max_iter = max_iter

    def fit(self, summary: pd.DataFrame, *, sample_weight: npt.ArrayLike | None = None) -> BetaGeo:
        """Fit on a summary (``frequency``, ``recency``, ``T``; optional ``weights`` column)."""
        data = check_summary(summary)
        weights = _weights(summary, sample_weight, len(data.frequency))
        if weights.sum() < MIN_CUSTOMERS:
            raise ValidationError("summary", f"too few customers to fit (need at least {MIN_CUSTOMERS})")
        if not np.any((data.frequency > 0) & (weights > 0)):
            raise ValidationError("frequency", "no customer has a repeat purchase; the model cannot be fitted")
        rows = Rows.build(*collapse(weights, data.frequency, data.recency, data.T))
        total = float(rows.weights.sum())

        def objective(log_params: FloatArray) -> tuple[float, FloatArray]:
            params = np.exp(log_params)
            ll, grad = rows_loglik_and_grad(params, rows)
            value = -ll / total + self.penalizer * float(np.sum(params**2))
            return value, (-grad / total + 2.0 * self.penalizer * params) * params

        r, alpha, a, b = fit_log_parameters(objective, np.zeros(4), tol=self.tol, max_iter=self.max_iter)
        self.r_, self.alpha_, self.a_, self.b_ = r, alpha, a, b
        self.log_likelihood_ = rows_loglik_and_grad(np.array([r, alpha, a, b]), rows)[0]
        self.n_customers_ = int(round(total))
        return self

    def predict(self, summary: pd.DataFrame, *, t: float = 1.0) -> FloatArray:
        """scikit-learn's ``predict``: expected repeat purchases in the next ``t`` time units."""
        return self.conditional_expected_purchases(t, summary)

    def p_alive(self, summary: pd.DataFrame) -> FloatArray:
        """Probability that each customer is still alive at ``T``."""
        d = self._check(summary)
        return 1.0 / (1.0 + self._dead_odds(d))

    def conditional_expected_purchases(self, t: float, summary: pd.DataFrame) -> FloatArray:
        """Expected repeat purchases of each customer in (T, T + t], given their history."""
        d = self._check(summary)
        t = _horizon(t)
        r, alpha, a, b = self._params()
        x, T = d.frequency, d.T
        hyp = special.hyp2f1(r + x, b + x, a + b + x - 1.0, t / (alpha + T + t))
        head = (a + b + x - 1.0) / (a - 1.0) * (1.0 - ((alpha + T) / (alpha + t + T)) ** (r + x) * hyp)
        out: FloatArray = head / (1.0 + self._dead_odds(d))
        return out

    def expected_purchases(self, t: npt.ArrayLike) -> FloatArray:
        """Unconditional expected repeat purchases of a new customer over ``t`` (vectorised)."""
        r, alpha, a, b = self._params()
        times = np.asarray(t, dtype=np.float64)
        if not np.all(np.isfinite(times)) or np.any(times < 0):
            raise ValidationError("t", "must be finite and not negative")
        hyp = special.hyp2f1(r, b, a + b - 1.0, times / (alpha + times))
        out: FloatArray = (a + b - 1.0) / (a - 1.0) * (1.0 - (alpha / (alpha + times)) ** r * hyp)
        return out

    def p_purchase_within(self, t: float, summary: pd.DataFrame) -> FloatArray:
        """Probability of at least one purchase in (T, T + t], given the history.

        A customer alive at T stays alive until their next purchase (dropout happens only after
        a purchase), and their rate given the history and being alive is Gamma(r + x, α + T), so
        P = P(alive) · (1 − ((α + T) / (α + T + t))^(r + x)). ``1 −`` this is the churn baseline.
        """
        d = self._check(summary)
        t = _horizon(t)
        r, alpha, _, _ = self._params()
        no_purchase = ((alpha + d.T) / (alpha + d.T + t)) ** (r + d.frequency)
        out: FloatArray = (1.0 - no_purchase) / (1.0 + self._dead_odds(d))
        return out

    def _dead_odds(self, d: SummaryArrays) -> FloatArray:
        """P(dead at T) / P(alive at T); 0 for customers without repeat purchases."""
        r, alpha, a, b = self._params()
        x = d.frequency
        repeat = x > 0
        odds = np.zeros_like(x)
        xr = x[repeat]
        odds[repeat] = a / (b + xr - 1.0) * ((alpha + d.T[repeat]) / (alpha + d.recency[repeat])) ** (r + xr)
        return odds

    def _params(self) -> tuple[float, float, float, float]:
        if not hasattr(self, "r_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted yet; call fit() first")
        return self.r_, self.alpha_, self.a_, self.b_

    def _check(self, summary: pd.DataFrame) -> SummaryArrays:
        self._params()
        return check_summary(summary)


@dataclass(frozen=True, slots=True)
class Rows:
    """Weighted (x, t_x, T) rows with each column's distinct values and the index into them.

    Frequencies, recencies and ages take few distinct values (whole purchases, whole days), so
    every special function and logarithm is evaluated once per distinct value and gathered.
    """

    weights: FloatArray
    x: FloatArray
    x_index: npt.NDArray[np.intp]
    t_x: FloatArray
    t_x_index: npt.NDArray[np.intp]
    T: FloatArray
    T_index: npt.NDArray[np.intp]

    @classmethod
    def build(cls, x: FloatArray, t_x: FloatArray, T: FloatArray, w: FloatArray) -> Rows:
        (ux, ix), (ut, it), (uT, iT) = (np.unique(c, return_inverse=True) for c in (x, t_x, T))
        return cls(w, ux, ix.ravel(), ut, it.ravel(), uT, iT.ravel())


def loglik_and_grad(
    params: FloatArray, x: FloatArray, t_x: FloatArray, T: FloatArray, w: FloatArray
) -> tuple[float, FloatArray]:
    """Weighted BG/NBD log-likelihood and its gradient in (r, α, a, b)."""
    return rows_loglik_and_grad(params, Rows.build(x, t_x, T, w))


def rows_loglik_and_grad(params: FloatArray, rows: Rows) -> tuple[float, FloatArray]:
    """log L = A1 + log(exp(A2) + [x > 0] exp(A3)), the paper's equation (6), by log-sum-exp."""
    r, alpha, a, b = (float(v) for v in params)
    ux, ix, w = rows.x, rows.x_index, rows.weights
    log_T, log_tx = np.log(alpha + rows.T), np.log(alpha + rows.t_x)
    inv_T, inv_tx = 1.0 / (alpha + rows.T), 1.0 / (alpha + rows.t_x)
    repeat = ux > 0
    uxm1 = np.where(repeat, ux - 1.0, 0.0)  # keeps betaln/digamma finite where A3 is unused
    base_beta = special.betaln(a, b)
    a1 = special.gammaln(r + ux) - special.gammaln(r) + r * np.log(alpha)
    beta2 = special.betaln(a, b + ux) - base_beta
    beta3 = np.where(repeat, special.betaln(a + 1.0, b + uxm1) - base_beta, -np.inf)
    rx = (r + ux)[ix]
    a2 = beta2[ix] - rx * log_T[rows.T_index]
    a3 = beta3[ix] - rx * log_tx[rows.t_x_index]
    peak = np.maximum(a2, a3)
    e2, e3 = np.exp(a2 - peak), np.exp(a3 - peak)
    total = e2 + e3
    ll = float(np.dot(w, a1[ix] + peak + np.log(total)))
    w2, w3 = w * e2 / total, w * e3 / total

    def by(index: npt.NDArray[np.intp], weights: FloatArray, size: int) -> FloatArray:
        """Σ weights per distinct value."""
        return np.asarray(np.bincount(index, weights, minlength=size), dtype=np.float64)

    wx, w2x, w3x = (by(ix, weights, len(ux)) for weights in (w, w2, w3))
    w2T = by(rows.T_index, w2 * rx, len(rows.T))  # Σ w2 (r+x) per distinct T
    w3t = by(rows.t_x_index, w3 * rx, len(rows.t_x))
    dg_abx = special.digamma(a + b + ux)
    d_base_a = special.digamma(a) - special.digamma(a + b)
    d_base_b = special.digamma(b) - special.digamma(a + b)
    grad = np.array(
        [
            np.dot(wx, special.digamma(r + ux) - special.digamma(r) + np.log(alpha))
            - np.dot(by(rows.T_index, w2, len(rows.T)), log_T)
            - np.dot(by(rows.t_x_index, w3, len(rows.t_x)), log_tx),
            r * w.sum() / alpha - np.dot(w2T, inv_T) - np.dot(w3t, inv_tx),
            np.dot(w2x, special.digamma(a) - dg_abx - d_base_a)
            + np.dot(w3x, special.digamma(a + 1.0) - dg_abx - d_base_a),
            np.dot(w2x, special.digamma(b + ux) - dg_abx - d_base_b)
            + np.dot(w3x, special.digamma(b + uxm1) - dg_abx - d_base_b),
        ]
    )
    return ll, grad


def _weights(summary: pd.DataFrame, sample_weight: npt.ArrayLike | None, n: int) -> FloatArray:
    if sample_weight is None and "weights" in summary.columns:
        sample_weight = summary["weights"].to_numpy()
    if sample_weight is None:
        return np.ones(n)
    field = "sample_weight" if "weights" not in summary.columns else "weights"
    weights = np.asarray(sample_weight, dtype=np.float64)
    if weights.shape != (n,):
        raise ValidationError(field, f"expected {n} weights, got shape {weights.shape}")
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise ValidationError(field, "must be finite and not negative")
    return weights


def _horizon(t: float) -> float:
    value = float(t)
    if not np.isfinite(value) or value < 0:
        raise ValidationError("t", "must be finite and not negative")
    return value
