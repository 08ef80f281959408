"""Synthetic online shop with known ground truth, for demos, tests and model validation.

``write_sample`` draws a shop from a documented generative process (BG/NBD purchases,
Gamma-Gamma spend, latent-factor preferences, a configured funnel, seasonality) and writes the
import files Tenure reads plus the truth they were drawn from, so that every model and report
can be checked against known answers.
"""

from __future__ import annotations

from tenure.sample._files import SampleFiles
from tenure.sample._params import SampleParams
from tenure.sample._shop import write_sample

__all__ = ["SampleFiles", "SampleParams", "write_sample"]
