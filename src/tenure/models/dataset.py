"""Point-in-time training examples: features known at a cutoff, the outcome in the H days after.

A model that learns from features computed with later data looks brilliant in a backtest and
fails in production, so everything here is computed from facts with ``timestamp < cutoff``:
the person features (see ``analytics.features``) and, unlike the analytics, the traits too,
read from the identify calls made before the cutoff rather than the merged ``users`` table.
The only current input is the identity graph (who is the same person), by design.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import ibis
import ibis.expr.types as ir

from tenure.analytics._json import json_field
from tenure.analytics._orders import orders_as_of
from tenure.analytics._time import days_between, instant
from tenure.analytics.features import person_features
from tenure.errors import ValidationError
from tenure.store.engine import LakeTables

Target = Literal["churn", "propensity"]
Basis = Literal["orders", "activity"]

NUMERIC_FEATURES: tuple[str, ...] = (
    "tenure_days",
    "days_since_last_seen",
    "days_since_first_order",
    "orders",
    "revenue",
    "aov",
    "recency_days",
    "ipt_mean_days",
    "ipt_std_days",
    "events_7d",
    "events_30d",
    "events_90d",
    "sessions_7d",
    "sessions_30d",
    "sessions_90d",
    "active_days",
    "top_category_share",
    "distinct_categories",
    "identified",
)
CATEGORICAL_FEATURES: tuple[str, ...] = ("channel", "country", "top_category")
FEATURES: tuple[str, ...] = NUMERIC_FEATURES + CATEGORICAL_FEATURES
TRAITS: tuple[str, ...] = ("channel", "country")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a model predicts, for whom.

    ``churn``: the person has no order (``basis="orders"``) or no activity at all
    (``"activity"``) in the ``horizon_days`` after the cutoff; customers with an order before
    the cutoff (or, for activity, everyone seen) are the population.
    ``propensity``: the person places an order in the horizon; everyone seen is the population.
    """

    target: Target
    horizon_days: int
    basis: Basis = "orders"

    def __post_init__(self) -> None:
        if self.target not in ("churn", "propensity"):
            raise ValidationError("target", f"must be churn or propensity, not {self.target!r}")
        if self.basis not in ("orders", "activity"):
            raise ValidationError("basis", f"must be orders or activity, not {self.basis!r}")
        if isinstance(self.horizon_days, bool) or not isinstance(self.horizon_days, int) or self.horizon_days < 1:
            raise ValidationError("horizon_days", f"must be a whole number of days >= 1, not {self.horizon_days!r}")

    @property
    def horizon(self) -> timedelta:
        return timedelta(days=self.horizon_days)

    @property
    def customers_only(self) -> bool:
        return self.target == "churn" and self.basis == "orders"


def model_features(t: LakeTables, *, as_of: datetime) -> ir.Table:
    """The model's inputs per person seen before ``as_of``: person features + point-in-time traits."""
    cut = instant(as_of)
    people = person_features(t, as_of=as_of).drop(*TRAITS)
    traits = traits_as_of(t, as_of=as_of)
    joined = people.left_join(traits, "person_id").drop("person_id_right")
    return joined.mutate(
        days_since_last_seen=days_between(cut, joined.last_seen),
        days_since_first_order=days_between(cut, joined.first_order_at),
        identified=joined.identified.cast("int64"),
    ).select("person_id", *FEATURES)


def traits_as_of(t: LakeTables, *, as_of: datetime) -> ir.Table:
    """Each trait's latest value among the identify calls made before ``as_of``."""
    e = t.events
    calls = e.filter(e.type == "identify", e.timestamp < instant(as_of), e.person_id.notnull())
    values = calls.mutate(**{name: json_field(calls.traits, name) for name in TRAITS})
    return values.group_by("person_id").aggregate(
        **{name: values[name].argmax(values.timestamp, where=values[name].notnull()) for name in TRAITS}
    )


def outcome_happened(t: LakeTables, outcome: Outcome, *, start: datetime) -> ir.Table:
    """People with an order (or, for activity churn, any event or order) in ``[start, start + H)``.

    Orders count as known at the end of the window: one cancelled within it did not happen.
    """
    end = start + outcome.horizon
    lo = instant(start)
    if outcome.basis == "activity" and outcome.target == "churn":
        parts = [
            table.filter(table.timestamp >= lo, table.timestamp < instant(end), table.person_id.notnull()).select(
                "person_id"
            )
            for table in (t.events, t.orders)
        ]
        hits = parts[0].union(parts[1], distinct=False)
    else:
        known = orders_as_of(t, as_of=end)
        hits = known.filter(known.timestamp >= lo).select("person_id")
    return hits.distinct().mutate(happened=ibis.literal(True))


def examples(t: LakeTables, outcome: Outcome, *, cutoff: datetime) -> ir.Table:
    """One row per person in the population at ``cutoff``: features and ``label``.

    ``label`` is 1 for the predicted class: churned for churn, ordered for propensity.
    """
    features = model_features(t, as_of=cutoff)
    if outcome.customers_only:
        features = features.filter(features.orders > 0)
    happened = outcome_happened(t, outcome, start=cutoff)
    joined = features.left_join(happened, "person_id").drop("person_id_right")
    did = joined.happened.fill_null(False)
    label = ~did if outcome.target == "churn" else did
    return joined.mutate(label=label.cast("int64")).drop("happened")


def training_cutoffs(
    *, start: datetime, end: datetime, horizon: timedelta, count: int, step: timedelta, min_history: timedelta
) -> list[datetime]:
    """Up to ``count`` cutoffs, latest first, each with its whole horizon inside ``[start, end)``.

    The latest is ``end - horizon``; the others step back by ``step`` while at least
    ``min_history`` of data precedes them. A backtest at the latest cutoff needs a training
    cutoff whose window ended by then, so the data must span two horizons plus the history.
    """
    if count < 2:
        raise ValidationError("cutoffs", f"must be at least 2 (one to test on, one to train on), not {count}")
    if step <= timedelta(0):
        raise ValidationError("step_days", "must be positive")
    latest = end - horizon
    if latest - horizon - start < min_history:
        raise ValidationError(
            "horizon_days",
            f"the data spans {(end - start).days} days, but a backtest of a {horizon.days}-day horizon needs "
            f"{(2 * horizon + min_history).days}: two horizons after {min_history.days} days of history",
        )
    return [c for c in (latest - k * step for k in range(count)) if c - start >= min_history]
