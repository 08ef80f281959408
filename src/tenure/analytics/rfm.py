"""Recency, frequency and monetary scores per customer, and the named RFM segments.

Scores rank customers against each other as known at ``as_of``. Equal values always get equal
scores: a customer's score is ``1 + floor(bins * worse / (customers - 1))`` (at most ``bins``),
where ``worse`` counts the customers with a strictly worse value (an earlier last order, fewer
orders, less net revenue). That is ``percent_rank`` bucketing, computed exactly on integers,
so both engines agree; a lone customer scores 1.
"""

from __future__ import annotations

from datetime import datetime

import ibis
import ibis.expr.types as ir

from tenure.analytics._orders import orders_as_of
from tenure.analytics._time import days_between, instant
from tenure.errors import ValidationError
from tenure.store.engine import LakeTables

RFM_SEGMENTS: tuple[str, ...] = (
    "Champions",
    "Loyal",
    "Potential loyalist",
    "New",
    "Promising",
    "Need attention",
    "About to sleep",
    "At risk",
    "Cannot lose them",
    "Hibernating",
    "Lost",
)

# The R x (F+M)/2 grid on the 1-5 scale; columns are bands of FM = (F + M) / 2.
#            FM 1-1.5        FM 2-2.5              FM 3-3.5   FM 4-5
SEGMENT_GRID: dict[int, tuple[str, str, str, str]] = {
    5: ("New", "Potential loyalist", "Loyal", "Champions"),
    4: ("Promising", "Potential loyalist", "Loyal", "Champions"),
    3: ("About to sleep", "Need attention", "Loyal", "Loyal"),
    2: ("Hibernating", "Hibernating", "At risk", "At risk"),
    1: ("Lost", "Hibernating", "At risk", "Cannot lose them"),
}
MONEY_DIGITS = 6  # monetary is rounded before ranking so that summation order cannot split ties


def rfm_scores(t: LakeTables, *, as_of: datetime, bins: int = 5) -> ir.Table:
    """One row per customer (an order before ``as_of``): R, F, M values, scores and segment.

    Columns: person_id, recency_days (``as_of`` minus the last order), frequency (orders),
    monetary (net revenue, refunds before ``as_of`` only), r_score, f_score, m_score
    (1..``bins``, higher is better), rfm (e.g. ``"545"``; scores joined by ``-`` when
    ``bins`` > 9), segment.

    The segment comes from R and FM = (F + M) / 2, both on a 1-5 scale (scores of other
    ``bins`` are mapped linearly, ``1 + round(4 * (s - 1) / (bins - 1))``, halves up)::

        R \\ FM   1-1.5           2-2.5               3-3.5    4-5
        5        New             Potential loyalist  Loyal    Champions
        4        Promising       Potential loyalist  Loyal    Champions
        3        About to sleep  Need attention      Loyal    Loyal
        2        Hibernating     Hibernating         At risk  At risk
        1        Lost            Hibernating         At risk  Cannot lose them
    """
    _check_bins(bins)
    known = orders_as_of(t, as_of=as_of)
    per = known.group_by("person_id").aggregate(
        _last=known.timestamp.max(),
        frequency=known.order_id.count().cast("int64"),
        monetary=known.net_revenue.sum().round(MONEY_DIGITS).cast("float64"),
    )
    customers = per.person_id.count().over(ibis.window())
    scored = per.mutate(
        recency_days=days_between(instant(as_of), per._last),
        r_score=_score(per._last, customers, bins),
        f_score=_score(per.frequency, customers, bins),
        m_score=_score(per.monetary, customers, bins),
    )
    separator = "" if bins <= 9 else "-"
    rfm = ibis.literal(separator).join(
        [scored.r_score.cast("string"), scored.f_score.cast("string"), scored.m_score.cast("string")]
    )
    r5, f5, m5 = (_to_five(score, bins) for score in (scored.r_score, scored.f_score, scored.m_score))
    return scored.select(
        "person_id", "recency_days", "frequency", "monetary", "r_score", "f_score", "m_score",
        rfm=rfm, segment=_segment(r5, f5 + m5),
    )


def rfm_segments(t: LakeTables, *, as_of: datetime, bins: int = 5) -> ir.Table:
    """People and revenue of each named segment, all 11 in ``RFM_SEGMENTS`` order.

    Columns: segment, people, people_share, revenue, revenue_share, avg_recency_days,
    avg_frequency, avg_monetary. Empty segments have 0 people and revenue and null averages;
    shares are 0 when there are no customers (or no revenue).
    """
    scores = rfm_scores(t, as_of=as_of, bins=bins)
    per = scores.group_by("segment").aggregate(
        people=scores.person_id.count().cast("int64"),
        revenue=scores.monetary.sum(),
        avg_recency_days=scores.recency_days.mean(),
        avg_frequency=scores.frequency.mean().cast("float64"),
        avg_monetary=scores.monetary.mean(),
    )
    names = ibis.memtable({"_name": list(RFM_SEGMENTS), "_position": list(range(len(RFM_SEGMENTS)))})
    joined = names.left_join(per, names._name == per.segment)
    people = joined.people.fill_null(0).cast("int64")
    revenue = joined.revenue.fill_null(0.0).cast("float64")
    all_people = people.sum().over(ibis.window())
    all_revenue = revenue.sum().over(ibis.window())
    out = joined.select(
        joined._position,
        segment=joined._name,
        people=people,
        people_share=_share(people.cast("float64"), all_people.cast("float64")),
        revenue=revenue,
        revenue_share=_share(revenue, all_revenue),
        avg_recency_days=joined.avg_recency_days.cast("float64"),
        avg_frequency=joined.avg_frequency.cast("float64"),
        avg_monetary=joined.avg_monetary.cast("float64"),
    )
    return out.order_by("_position").drop("_position")


def _check_bins(bins: int) -> None:
    if isinstance(bins, bool) or not isinstance(bins, int) or not 2 <= bins <= 100:
        raise ValidationError("bins", f"must be an integer from 2 to 100; got {bins!r}")


def _score(value: ir.Column, customers: ir.IntegerValue, bins: int) -> ir.IntegerValue:
    """``1 + floor(bins * worse / (customers - 1))``, capped at ``bins``; ``rank()`` counts the worse."""
    worse = ibis.rank().over(order_by=value)
    bucket = (worse * bins / ibis.greatest(customers - 1, 1)).floor().cast("int64") + 1
    result: ir.IntegerValue = ibis.least(bucket, bins)
    return result


def _to_five(score: ir.IntegerValue, bins: int) -> ir.IntegerValue:
    if bins == 5:
        return score
    mapping = [(score == s, 1 + (8 * (s - 1) + bins - 1) // (2 * (bins - 1))) for s in range(1, bins + 1)]
    result: ir.IntegerValue = ibis.cases(*mapping, else_=1)
    return result


def _segment(r5: ir.IntegerValue, fm_sum: ir.IntegerValue) -> ir.StringValue:
    """The grid cell of R and F + M (2-10; bands 2-3, 4-5, 6-7, 8-10)."""
    band = ibis.cases((fm_sum <= 3, 0), (fm_sum <= 5, 1), (fm_sum <= 7, 2), else_=3)
    cells = [((r5 == r) & (band == b), name) for r, row in SEGMENT_GRID.items() for b, name in enumerate(row)]
    result: ir.StringValue = ibis.cases(*cells, else_=ibis.null("string"))
    return result


def _share(part: ir.FloatingValue, whole: ir.FloatingValue) -> ir.FloatingValue:
    result: ir.FloatingValue = ibis.cases((whole > 0, part / whole), else_=0.0)
    return result
