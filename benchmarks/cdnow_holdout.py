"""The BG/NBD holdout check of Fader, Hardie & Lee (2005) on the CDNOW sample, as a chart.

Fits BG/NBD on the 2,357 sample customers' weeks 1–39 and compares its predictions with weeks
40–78: cumulative repeat transactions week by week, and mean holdout purchases per customer by
calibration frequency. Prints both tables and writes ``docs/images/cdnow-holdout.png``.
Run with ``python benchmarks/cdnow_holdout.py [--out PATH]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from tenure.models.bgnbd import BetaGeo
from tenure.models.clv_holdout import cumulative_repeat_transactions, holdout_by_frequency, plot_holdout
from tenure.models.rfm_summary import calibration_and_holdout

ROOT = Path(__file__).resolve().parents[1]
CALIBRATION_END, OBSERVATION_END = "1997-09-30", "1998-06-30"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "cdnow-holdout.png")
    args = parser.parse_args()
    names = ["master_id", "sample_id", "date", "cds", "dollar_value"]
    tx = pd.read_csv(ROOT / "tests" / "data" / "cdnow" / "CDNOW_sample.txt", sep=r"\s+", header=None, names=names,
                     dtype={"date": str})
    tx["date"] = pd.to_datetime(tx["date"], format="%Y%m%d")
    split = calibration_and_holdout(tx, customer="sample_id", timestamp="date", calibration_end=CALIBRATION_END,
                                    observation_end=OBSERVATION_END)
    model = BetaGeo().fit(split)
    tracking = cumulative_repeat_transactions(model, tx, customer="sample_id", timestamp="date",
                                              calibration_end=CALIBRATION_END, observation_end=OBSERVATION_END)
    by_frequency = holdout_by_frequency(model, split)
    print(f"r={model.r_:.4f} alpha={model.alpha_:.4f} a={model.a_:.4f} b={model.b_:.4f} LL={model.log_likelihood_:.2f}")
    print(tracking.loc[[39, 52, 65, 78]].round(1).to_string())
    print(by_frequency.round(3).to_string())
    plot_holdout(tracking, by_frequency).savefig(args.out, dpi=100)
    print(f"chart: {args.out}")


if __name__ == "__main__":
    main()
