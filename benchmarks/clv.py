"""Benchmark: BG/NBD + Gamma-Gamma maximum-likelihood fits, Tenure next to lifetimes and pymc-marketing.

Data sets: the full CDNOW log (23,570 customers, weeks, observed to 1998-06-30) from
``tests/data/cdnow``, and ``--customers`` synthetic customers (1,000,000 by default) drawn from
known parameters (ages in whole days, as in a real shop). On each, in the same run, times the
BG/NBD and Gamma-Gamma fits of ``tenure.models`` and of the references, and reports seconds
(best of ``--repeat``), the ratio ours/theirs, the total log-likelihoods and the largest
relative parameter difference. References:

* ``lifetimes`` 0.11.3 ``BetaGeoFitter`` / ``GammaGammaFitter`` in this interpreter;
* ``pymc-marketing`` ``BetaGeoModel`` / ``GammaGammaModel`` MAP fits, run by the interpreter in
  ``--pymc-python`` (default ``.venv-bench/bin/python``: it needs its own environment), in a
  subprocess of this script (``--as-pymc-reference``), whose pytensor compilation is excluded
  from the timed fit as far as the library allows (a warm-up fit on a small subset first).

A reference that is not importable is skipped with the reason printed.

Run with ``python benchmarks/clv.py [--customers 1000000] [--repeat 3] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: `tests` importable for the simulator

TRUTH_BG = (0.25, 4.0, 0.8, 2.5)
TRUTH_GG = (6.0, 4.0, 15.0)
Result = dict[str, Any]


def cdnow_master() -> pd.DataFrame:
    from tenure.models.rfm_summary import summary_from_transactions

    tx = pd.read_csv(ROOT / "tests" / "data" / "cdnow" / "CDNOW_master.txt", sep=r"\s+", dtype={"date": str})
    tx["date"] = pd.to_datetime(tx["date"], format="%Y%m%d")
    return summary_from_transactions(tx, customer="customer_id", timestamp="date", amount="dollar_value",
                                     observation_end="1998-06-30")


def synthetic(n: int) -> pd.DataFrame:
    from tests.test_clv import simulate_bgnbd, simulate_gamma_gamma

    T = np.random.default_rng(11).integers(1, 78 * 7, n) / 7.0
    summary = simulate_bgnbd(n, *TRUTH_BG, T=T, seed=12)
    summary["recency"] = np.round(summary["recency"] * 7.0) / 7.0  # purchase days, like a real log
    summary["monetary_value"] = np.round(simulate_gamma_gamma(summary["frequency"].to_numpy(), *TRUTH_GG, seed=13), 2)
    return summary


def repeat_buyers(summary: pd.DataFrame) -> pd.DataFrame:
    """The Gamma-Gamma fit's rows: repeat buyers with positive spend (one CDNOW customer's repeats are all $0)."""
    return summary[(summary["frequency"] > 0) & (summary["monetary_value"] > 0)]


def best_of(repeat: int, fit: Callable[[], Any]) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fit()
        times.append(time.perf_counter() - t0)
    return min(times), out


def ours(summary: pd.DataFrame, repeat: int) -> Result:
    from tenure.models.bgnbd import BetaGeo
    from tenure.models.gamma_gamma import GammaGamma

    bg_s, bg = best_of(repeat, lambda: BetaGeo().fit(summary))
    gg_s, gg = best_of(repeat, lambda: GammaGamma().fit(repeat_buyers(summary)))
    return {"bg_s": bg_s, "bg": [bg.r_, bg.alpha_, bg.a_, bg.b_], "bg_ll": bg.log_likelihood_,
            "gg_s": gg_s, "gg": [gg.p_, gg.q_, gg.v_], "gg_ll": gg.log_likelihood_}


def lifetimes_reference(summary: pd.DataFrame, repeat: int) -> Result:
    from lifetimes import BetaGeoFitter, GammaGammaFitter

    repeaters = repeat_buyers(summary)
    bg_s, bg = best_of(repeat, lambda: BetaGeoFitter().fit(summary["frequency"], summary["recency"], summary["T"]))
    gg_s, gg = best_of(repeat, lambda: GammaGammaFitter().fit(repeaters["frequency"], repeaters["monetary_value"]))
    return {"bg_s": bg_s, "bg": [float(bg.params_[k]) for k in ("r", "alpha", "a", "b")],
            "gg_s": gg_s, "gg": [float(gg.params_[k]) for k in ("p", "q", "v")]}


def pymc_reference(summary: pd.DataFrame, repeat: int) -> Result:
    """pymc-marketing MAP fits (flat priors would be its ML; we keep its defaults' likelihood, MAP method)."""
    from pymc_marketing.clv import BetaGeoModel, GammaGammaModel

    data = summary.reset_index(drop=True).assign(customer_id=lambda d: np.arange(len(d)))
    repeaters = repeat_buyers(data)

    def fit_bg(frame: pd.DataFrame) -> Any:
        model = BetaGeoModel(data=frame[["customer_id", "frequency", "recency", "T"]])
        model.fit(method="map", progressbar=False)
        return model

    def fit_gg(frame: pd.DataFrame) -> Any:
        model = GammaGammaModel(data=frame[["customer_id", "frequency", "monetary_value"]])
        model.fit(method="map", progressbar=False)
        return model

    fit_bg(data.head(2000))  # compile once outside the timing
    fit_gg(repeaters.head(2000))
    bg_s, bg = best_of(repeat, lambda: fit_bg(data))
    gg_s, gg = best_of(repeat, lambda: fit_gg(repeaters))

    def params(model: Any, names: tuple[str, ...]) -> list[float]:
        posterior = getattr(model.fit_result, "posterior", model.fit_result)  # MAP: a Dataset, else InferenceData
        return [float(posterior[name].values.ravel()[0]) for name in names]

    return {"bg_s": bg_s, "bg": params(bg, ("r", "alpha", "a", "b")), "gg_s": gg_s, "gg": params(gg, ("p", "q", "v"))}


def run_pymc(summary: pd.DataFrame, repeat: int, python: Path) -> Result:
    if not python.exists():
        raise RuntimeError(f"{python} does not exist (python -m venv .venv-bench; pip install pymc-marketing)")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "summary.npz"
        np.savez(path, **{name: summary[name].to_numpy() for name in ("frequency", "recency", "T", "monetary_value")})
        done = subprocess.run([str(python), __file__, "--as-pymc-reference", str(path), "--repeat", str(repeat)],
                              capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}")
    result: Result = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def log_likelihoods(summary: pd.DataFrame, result: Result) -> tuple[float, float]:
    """Total log-likelihoods of a result's parameters on the data, by one formula for every library."""
    from tenure.models import bgnbd, gamma_gamma

    x, t_x, T = (summary[c].to_numpy() for c in ("frequency", "recency", "T"))
    spend = repeat_buyers(summary)
    bg = bgnbd.loglik_and_grad(np.array(result["bg"]), x, t_x, T, np.ones(len(x)))[0]
    gg = gamma_gamma.loglik_and_grad(np.array(result["gg"]), spend["frequency"].to_numpy(),
                                     spend["monetary_value"].to_numpy(), np.ones(len(spend)))[0]
    return bg, gg


def max_rel_diff(a: list[float], b: list[float]) -> float:
    return float(np.max(np.abs(np.asarray(a) / np.asarray(b) - 1.0)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000, help="synthetic customers")
    parser.add_argument("--repeat", type=int, default=3, help="timed fits per library and data set (best kept)")
    parser.add_argument("--pymc-python", type=Path, default=ROOT / ".venv-bench" / "bin" / "python")
    parser.add_argument("--skip", default="", help="comma-separated references to skip: lifetimes,pymc")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--as-pymc-reference", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.as_pymc_reference:
        with np.load(args.as_pymc_reference) as arrays:
            summary = pd.DataFrame({name: arrays[name] for name in arrays.files})
        print(json.dumps(pymc_reference(summary, args.repeat)))
        return

    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    datasets = {"CDNOW master": cdnow_master(), f"synthetic {args.customers:,}": synthetic(args.customers)}
    references: dict[str, Callable[[pd.DataFrame], Result]] = {
        "lifetimes 0.11.3": lambda s: lifetimes_reference(s, args.repeat),
        "pymc-marketing MAP": lambda s: run_pymc(s, max(1, args.repeat // 3), args.pymc_python),
    }
    rows, skipped, results = [], [], {}
    for name, summary in datasets.items():
        mine = ours(summary, args.repeat)
        results[name] = {"tenure": mine, "customers": len(summary)}
        rows.append((name, len(summary), "tenure", mine, None))
        for ref, run in references.items():
            if ref.split()[0].split("-")[0] in skip:
                continue
            try:
                theirs = run(summary)
            except Exception as exc:  # a missing or broken reference is reported, not fatal
                skipped.append(f"{ref} on {name}: {type(exc).__name__}: {exc}")
                continue
            theirs["bg_ll"], theirs["gg_ll"] = log_likelihoods(summary, theirs)
            results[name][ref] = theirs
            rows.append((name, len(summary), ref, theirs, mine))
    print_table(rows, skipped)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def print_table(rows: list[tuple[str, int, str, Result, Result | None]], skipped: list[str]) -> None:
    print("| data | customers | library | BG/NBD s | ours/theirs | BG/NBD LL | GG s | ours/theirs | GG LL "
          "| max rel. param diff BG / GG |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, n, library, res, mine in rows:
        bg_ratio = f"{mine['bg_s'] / res['bg_s']:.2f}×" if mine else ""
        gg_ratio = f"{mine['gg_s'] / res['gg_s']:.2f}×" if mine else ""
        diff = f"{max_rel_diff(mine['bg'], res['bg']):.1e} / {max_rel_diff(mine['gg'], res['gg']):.1e}" if mine else ""
        bg_ll, gg_ll = f"{res['bg_ll']:.2f}", f"{res['gg_ll']:.2f}"
        print(f"| {name} | {n:,} | {library} | {res['bg_s']:.3f} | {bg_ratio} | {bg_ll} | {res['gg_s']:.3f} "
              f"| {gg_ratio} | {gg_ll} | {diff} |")
    for name, n, library, res, _ in rows:
        if library == "tenure":
            bg = ", ".join(f"{k}={v:.4g}" for k, v in zip(("r", "α", "a", "b"), res["bg"], strict=True))
            gg = ", ".join(f"{k}={v:.4g}" for k, v in zip(("p", "q", "γ"), res["gg"], strict=True))
            print(f"\n{name} ({n:,} customers), tenure: BG/NBD {bg}; Gamma-Gamma {gg}")
    if rows and rows[-1][0].startswith("synthetic"):
        print(f"\nSynthetic truth: BG/NBD r, α, a, b = {TRUTH_BG}; Gamma-Gamma p, q, γ = {TRUTH_GG}.")
    for reason in skipped:
        print(f"\nskipped {reason}")


if __name__ == "__main__":
    main()
