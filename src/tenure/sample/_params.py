"""Population parameters of the synthetic shop, kept in one frozen object so ground truth can echo them."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

CHANNELS: tuple[str, ...] = ("organic", "paid_search", "social", "email", "referral")
COUNTRIES: tuple[str, ...] = ("US", "GB", "CA", "AU", "DE", "FR", "NL", "ES", "IT", "IE")
EUR_COUNTRIES: frozenset[str] = frozenset({"DE", "FR", "NL", "ES", "IT", "IE"})

# Campaign context of a user's first session, by channel: (source, medium, campaign name).
CHANNEL_CAMPAIGNS: dict[str, tuple[str, str, str | None]] = {
    "organic": ("google", "organic", None),
    "paid_search": ("google", "cpc", "brand-search"),
    "social": ("instagram", "social", "spring-creators"),
    "email": ("newsletter", "email", "weekly-digest"),
    "referral": ("partner-blog", "referral", None),
}


@dataclass(frozen=True, slots=True)
class SampleParams:
    """Every knob of the generative process; the defaults are the documented sample shop.

    Time is measured in *operational days*: calendar time warped by the seasonal intensity
    (weekday, Nov/Dec peak, hour of day; mean 1 per day over a year), so a constant BG/NBD rate
    per operational day yields seasonal orders. ``lambda ~ Gamma(r, rate=alpha_c)`` with
    ``alpha_c = alpha / channel_rate_multiplier[c]``; ``p ~ Beta(a, b)``; spend per order
    ``z ~ Gamma(gg_p, rate=nu)`` with ``nu ~ Gamma(gg_q, rate=gg_gamma)`` (Fader-Hardie).
    """

    # BG/NBD (Fader, Hardie & Lee 2005), rates per operational day.
    r: float = 0.9
    alpha: float = 25.0
    a: float = 0.8
    b: float = 2.5
    # Gamma-Gamma spend (Fader & Hardie 2013), USD.
    gg_p: float = 6.0
    gg_q: float = 3.8
    gg_gamma: float = 15.0
    # Acquisition.
    channel_share: tuple[float, ...] = (0.40, 0.25, 0.15, 0.12, 0.08)
    channel_rate_multiplier: tuple[float, ...] = (1.0, 0.8, 0.6, 1.5, 1.2)
    channel_first_order: tuple[float, ...] = (0.62, 0.55, 0.45, 0.75, 0.70)
    country_share: tuple[float, ...] = (0.60, 0.14, 0.12, 0.09, 0.015, 0.012, 0.008, 0.007, 0.005, 0.003)
    growth_per_year: float = 0.7  # log-growth of the acquisition rate
    signup_rate: float = 0.85
    two_device_rate: float = 0.25
    alias_rate: float = 0.3  # of two-device users who sign up
    # Funnel: per-session step conversion rates.
    view_to_add: float = 0.30
    add_to_checkout: float = 0.50
    checkout_to_order: float = 0.70
    cycle_window_days: float = 30.0  # failed sessions of a purchase cycle happen this close to it
    # Orders and after-sales.
    mean_extra_lines: float = 0.5
    refund_rate: float = 0.03
    full_refund_share: float = 0.5
    review_rate: float = 0.08
    eur_usd: float = 1.08  # USD per EUR
    # Preferences.
    n_factors: int = 8
    factor_scale: float = 0.75

    def __post_init__(self) -> None:
        for name in ("view_to_add", "add_to_checkout", "checkout_to_order", "signup_rate",
                     "refund_rate", "review_rate", "two_device_rate", "alias_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability, got {value}")
        if len(self.channel_share) != len(CHANNELS) or len(self.country_share) != len(COUNTRIES):
            raise ValueError("channel_share and country_share must match CHANNELS and COUNTRIES")
        for name in ("r", "alpha", "a", "b", "gg_p", "gg_q", "gg_gamma"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")

    def channel_alpha(self) -> tuple[float, ...]:
        """The BG/NBD ``alpha`` of each channel (a faster channel has a smaller alpha)."""
        return tuple(self.alpha / m for m in self.channel_rate_multiplier)

    def order_rate(self) -> float:
        """Probability that a session which views a product ends in an order."""
        return self.view_to_add * self.add_to_checkout * self.checkout_to_order

    def failure_depths(self) -> tuple[float, float, float]:
        """Where a session that does not order stops: after view, after add, after checkout."""
        v, a, c = self.view_to_add, self.add_to_checkout, self.checkout_to_order
        raw = (1 - v, v * (1 - a), v * a * (1 - c))
        total = sum(raw)
        return (raw[0] / total, raw[1] / total, raw[2] / total)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["channels"] = list(CHANNELS)
        out["countries"] = list(COUNTRIES)
        out["channel_alpha"] = dict(zip(CHANNELS, self.channel_alpha(), strict=True))
        out["currencies"] = {"base": "USD", "rates_to_usd": {"USD": 1.0, "EUR": self.eur_usd}}
        out["eur_countries"] = sorted(EUR_COUNTRIES)
        return out
