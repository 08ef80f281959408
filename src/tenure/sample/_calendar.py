"""Seasonal time warp: processes run in operational days, the calendar makes them seasonal.

A homogeneous process in operational time ``u`` becomes an inhomogeneous one in calendar time
``t`` through ``u = Lambda(t)``, the integral of an hourly intensity (weekday x Nov/Dec peak x
hour of day, mean 1 per day over a year). Models stay exact in ``u``; the data look real in ``t``.
Beyond the sampled period the intensity is taken as 1.
"""

from __future__ import annotations

from datetime import date

import numpy as np
from numpy.typing import NDArray

# Monday..Sunday: more shopping at the weekend.
WEEKDAY = np.array([0.93, 0.92, 0.95, 0.97, 1.03, 1.13, 1.07])
# Hour of day (UTC): quiet nights, evening peak.
HOURLY = np.array([0.45, 0.3, 0.2, 0.15, 0.15, 0.2, 0.35, 0.6, 0.85, 1.0, 1.1, 1.15,
                   1.2, 1.2, 1.2, 1.25, 1.3, 1.4, 1.55, 1.7, 1.75, 1.6, 1.2, 0.8])
PEAK_DAY_OF_YEAR = 336.0  # early December
PEAK_WIDTH_DAYS = 22.0
PEAK_HEIGHT = 0.6

US_PER_DAY = 86_400_000_000


def _yearly(day_of_year: NDArray[np.float64]) -> NDArray[np.float64]:
    bump = PEAK_HEIGHT * np.exp(-0.5 * ((day_of_year - PEAK_DAY_OF_YEAR) / PEAK_WIDTH_DAYS) ** 2)
    full_year = np.arange(365.0)
    norm = 1.0 + PEAK_HEIGHT * np.exp(-0.5 * ((full_year - PEAK_DAY_OF_YEAR) / PEAK_WIDTH_DAYS) ** 2)
    out: NDArray[np.float64] = (1.0 + bump) / norm.mean()
    return out


class Calendar:
    """Maps operational days to calendar days (float, from ``start``) and back."""

    def __init__(self, start: date, days: int) -> None:
        self.start = start
        self.days = days
        day_index = np.arange(days)
        ordinal = start.toordinal() + day_index
        weekday = WEEKDAY[(ordinal - 1) % 7] / WEEKDAY.mean()  # same as date.weekday()
        day_of_year = (ordinal - date(start.year, 1, 1).toordinal()) % 365
        per_day = weekday * _yearly(day_of_year.astype(np.float64))
        per_hour = (per_day[:, None] * (HOURLY / HOURLY.mean())[None, :]).ravel() / 24.0
        self._cal = np.arange(days * 24 + 1) / 24.0
        self._op = np.concatenate([[0.0], np.cumsum(per_hour)])
        self.op_end = float(self._op[-1])

    def to_calendar(self, op: NDArray[np.float64]) -> NDArray[np.float64]:
        """Calendar days since ``start`` for operational times (linear beyond the period)."""
        out: NDArray[np.float64] = np.interp(op, self._op, self._cal)
        beyond = op > self.op_end
        out[beyond] = self.days + (op[beyond] - self.op_end)
        return out

    def to_operational(self, cal: NDArray[np.float64]) -> NDArray[np.float64]:
        """Operational time of calendar days since ``start``."""
        out: NDArray[np.float64] = np.interp(cal, self._cal, self._op)
        beyond = cal > self.days
        out[beyond] = self.op_end + (cal[beyond] - self.days)
        return out

    def profile(self) -> dict[str, object]:
        """The seasonal profile, for ground truth."""
        return {
            "weekday_multipliers_mon_to_sun": (WEEKDAY / WEEKDAY.mean()).round(4).tolist(),
            "hourly_multipliers_utc": (HOURLY / HOURLY.mean()).round(4).tolist(),
            "yearly_peak": {"day_of_year": PEAK_DAY_OF_YEAR, "width_days": PEAK_WIDTH_DAYS,
                            "height": PEAK_HEIGHT},
            "operational_days_in_period": self.op_end,
        }
