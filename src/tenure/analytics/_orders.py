"""Orders as they were known at an instant: the shared starting point of every revenue figure.

The engine's ``orders.net_revenue`` reflects every refund ever recorded; point-in-time
analyses (features, stages, RFM, cohorts, KPIs) must not see refunds made after ``as_of``.
"""

from __future__ import annotations

from datetime import datetime

import ibis
import ibis.expr.types as ir

from tenure.analytics._time import instant
from tenure.store.engine import LakeTables


def orders_as_of(t: LakeTables, *, as_of: datetime) -> ir.Table:
    """Orders placed before ``as_of`` and not cancelled by then, with ``net_revenue`` as known then.

    ``orders.net_revenue`` reflects every adjustment, including later ones; this applies only
    adjustments made before ``as_of``, by the engine's rule: a cancellation or a refund without
    an amount voids the order, refunds with amounts reduce it down to zero at most.
    Columns: order_id, person_id, timestamp, net_revenue.
    """
    cut = instant(as_of)
    adj = t.order_adjustments.filter(t.order_adjustments.timestamp < cut)
    refund = adj.kind == "refunded"
    summary = adj.group_by(_order=adj.order_id).aggregate(
        _cancelled=(adj.kind == "cancelled").any(),
        _voided=(refund & adj.amount.isnull()).any(),
        _refunded=ibis.cases((refund, adj.amount), else_=0.0).sum(),
    )
    orders = t.orders.filter(t.orders.timestamp < cut, t.orders.person_id.notnull())
    joined = orders.left_join(summary, orders.order_id == summary._order)
    joined = joined.filter(~joined._cancelled.fill_null(False))
    net = ibis.cases(
        (joined._voided.fill_null(False), 0.0),
        else_=ibis.greatest(joined.revenue - joined._refunded.fill_null(0.0), 0.0),
    )
    return joined.select("order_id", "person_id", "timestamp", net_revenue=net.cast("float64"))
