"""Maximum likelihood over log-parameters, shared by the BG/NBD and Gamma-Gamma fits.

Both models have a few positive parameters and a log-likelihood over many customers with few
distinct histories, so identical rows are merged into weights and L-BFGS-B runs on the
logarithms of the parameters (which keeps them positive without bounds).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy import optimize
from threadpoolctl import threadpool_limits

from tenure.errors import ConvergenceError
from tenure.models.rfm_summary import FloatArray

Objective = Callable[[FloatArray], tuple[float, FloatArray]]


def collapse(weights: FloatArray, *columns: FloatArray) -> tuple[FloatArray, ...]:
    """Merge identical rows of ``columns`` into unique rows and summed weights: (*columns, weights)."""
    frame = pd.DataFrame({f"c{i}": c for i, c in enumerate(columns)})
    frame["w"] = weights
    grouped = frame.groupby(list(frame.columns[:-1]), sort=True)["w"].sum()  # sorted: a fit never depends on row order
    grouped = grouped[grouped > 0]
    keys = grouped.index.to_frame(index=False)
    return tuple(keys[f"c{i}"].to_numpy(dtype=np.float64) for i in range(len(columns))) + (
        grouped.to_numpy(dtype=np.float64),
    )


def fit_log_parameters(objective: Objective, start: FloatArray, *, tol: float, max_iter: int) -> list[float]:
    """Minimise ``objective`` over log-parameters with L-BFGS-B; return the natural parameters.

    BLAS runs single-threaded here: the vectors are short, and waking BLAS threads for every
    dot product made the CDNOW fit 10-20x slower on a busy two-core machine. The line search
    may probe extreme parameters where the likelihood overflows; those probes are rejected by
    the optimiser, and the result is checked below, so their floating-point warnings are muted.

    When the line search stalls (L-BFGS-B's "ABNORMAL"), typically on a ridge where two
    parameters grow together (BG/NBD's a and b when every customer has the same dropout
    probability), one restart from where it stopped, with fresh curvature memory, settles it.
    """
    options = {"maxiter": max_iter, "gtol": tol, "ftol": 1e-14}
    with threadpool_limits(limits=1, user_api="blas"), np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        result = optimize.minimize(objective, start, jac=True, method="L-BFGS-B", options=options)
        if not result.success:
            result = optimize.minimize(objective, result.x, jac=True, method="L-BFGS-B", options=options)
    params = np.exp(result.x)
    if not result.success and not _converged(objective, result.x, tol):
        raise ConvergenceError(f"maximum likelihood did not converge: {result.message}")
    if not np.all(np.isfinite(params)):
        raise ConvergenceError(f"maximum likelihood diverged to parameters {params.tolist()}")
    return [float(v) for v in params]


def _converged(objective: Objective, log_params: FloatArray, tol: float) -> bool:
    """L-BFGS-B reports line-search stalls as failures; accept them when the gradient is tiny.

    The objective is the mean log-likelihood per customer, so a gradient under 1e-4 in the
    log-parameters moves it by less than a ten-thousandth per unit step: a ridge, not a failure.
    """
    value, grad = objective(log_params)
    return bool(np.isfinite(value) and np.max(np.abs(grad)) < max(tol, 1e-4))
