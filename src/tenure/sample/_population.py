"""The people: acquisition, identity and the latent parameters that drive their behaviour."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tenure.sample._catalogue import Catalogue
from tenure.sample._params import COUNTRIES, EUR_COUNTRIES, SampleParams

FIRST_NAMES = tuple(
    "Ada Alex Amir Anna Ben Carla Chen Dana Eli Emma Finn Grace Hana Ivan Jade Jonas Kai Lara "
    "Leo Lina Luca Maya Mia Nina Noah Omar Owen Priya Rosa Sam Sara Theo Uma Vera Yara Zoe".split()
)
LAST_NAMES = tuple(
    "Adams Baker Costa Diaz Evans Fischer Garcia Hughes Ito Jensen Kim Lopez Meyer Novak "
    "Okafor Patel Quinn Rossi Silva Smith Tanaka Umar Varga Walsh Weber Young Zhang".split()
)


@dataclass(frozen=True, slots=True)
class Population:
    """One row per person (signed up or not), as columns."""

    channel: NDArray[np.int64]
    country: NDArray[np.int64]
    eur: NDArray[np.bool_]
    acq_op: NDArray[np.float64]  # operational day of the first visit
    two_devices: NDArray[np.bool_]
    anon_ids: list[str]  # 2 per person: [2i] first device, [2i+1] second device (if any)
    wants_signup: NDArray[np.bool_]
    converts: NDArray[np.bool_]  # places a first order (when signing up inside the period)
    alias: NDArray[np.bool_]
    lam: NDArray[np.float64]  # BG/NBD purchase rate per operational day
    p_drop: NDArray[np.float64]
    nu: NDArray[np.float64]  # Gamma-Gamma spend rate parameter
    factors: NDArray[np.float64]
    affinity: NDArray[np.float64]  # (n, n_categories) category affinity
    first_name: NDArray[np.int64]
    last_name: NDArray[np.int64]

    @property
    def size(self) -> int:
        return len(self.channel)


def _acquisition(rng: np.random.Generator, n: int, op_end: float, growth_per_year: float) -> NDArray[np.float64]:
    """Acquisition times with an exponentially growing rate (inverse-CDF sampling)."""
    g = growth_per_year / 365.0
    u: NDArray[np.float64] = rng.random(n)
    if abs(g) < 1e-12:
        return u * op_end
    out: NDArray[np.float64] = np.log1p(u * np.expm1(g * op_end)) / g
    return out


def make_population(
    rng: np.random.Generator, n: int, op_end: float, cat: Catalogue, params: SampleParams
) -> Population:
    """Draw every person's acquisition, identity flags and latent parameters."""
    channel = rng.choice(len(params.channel_share), size=n, p=np.asarray(params.channel_share))
    country = rng.choice(len(COUNTRIES), size=n, p=np.asarray(params.country_share))
    eur_country = np.array([c in EUR_COUNTRIES for c in COUNTRIES])
    two = rng.random(n) < params.two_device_rate
    wants_signup = rng.random(n) < params.signup_rate
    converts = wants_signup & (rng.random(n) < np.asarray(params.channel_first_order)[channel])
    alias = two & wants_signup & (rng.random(n) < params.alias_rate)
    channel_alpha = np.asarray(params.channel_alpha())
    lam = rng.gamma(params.r, 1.0 / channel_alpha[channel])
    p_drop = rng.beta(params.a, params.b, n)
    nu = rng.gamma(params.gg_q, 1.0 / params.gg_gamma, n)
    factors = rng.normal(0.0, params.factor_scale, (n, params.n_factors))
    affinity = factors @ cat.category_centroids.T + rng.normal(0.0, 0.5, (n, len(cat.category_centroids)))
    raw = rng.bytes(16 * 2 * n)
    anon_ids = [str(uuid.UUID(bytes=raw[16 * j:16 * j + 16], version=4)) for j in range(2 * n)]
    return Population(
        channel=channel, country=country, eur=eur_country[country],
        acq_op=_acquisition(rng, n, op_end, params.growth_per_year),
        two_devices=two, anon_ids=anon_ids, wants_signup=wants_signup, converts=converts,
        alias=alias, lam=lam, p_drop=p_drop, nu=nu, factors=factors, affinity=affinity,
        first_name=rng.integers(0, len(FIRST_NAMES), n), last_name=rng.integers(0, len(LAST_NAMES), n),
    )


def user_ids(n: int) -> list[str]:
    """Stable account ids: ``u0000001`` ..."""
    return [f"u{i + 1:07d}" for i in range(n)]


def names_and_emails(pop: Population) -> tuple[list[str], list[str]]:
    """Display names and unique e-mail addresses (the person number keeps them unique)."""
    names, emails = [], []
    for i, (f, last) in enumerate(zip(pop.first_name.tolist(), pop.last_name.tolist(), strict=True)):
        first, family = FIRST_NAMES[f], LAST_NAMES[last]
        names.append(f"{first} {family}")
        emails.append(f"{first.lower()}.{family.lower()}{i + 1}@example.com")
    return names, emails
