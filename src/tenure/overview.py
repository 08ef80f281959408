"""Headline numbers of a workspace, for ``tenure status`` and the demo summary."""

from __future__ import annotations

from typing import Any

from tenure.workspace import Workspace


def workspace_overview(ws: Workspace, top_events: int = 8) -> dict[str, Any]:
    """Counts of events, people, orders and revenue, and the most frequent events."""
    engine = ws.engine()
    try:
        t = engine.tables()
        ev = t.events
        totals = ev.aggregate(
            events=ev.count(),
            people=ev.person_id.nunique(),
            identified=ev.user_id.nunique(),
            first=ev.timestamp.min(),
            last=ev.timestamp.max(),
        ).execute().iloc[0]
        orders = t.orders.aggregate(
            orders=t.orders.count(),
            buyers=t.orders.person_id.nunique(),
            gross=t.orders.revenue.sum(),
            net=t.orders.net_revenue.sum(),
            refunded_orders=(t.orders.status != "completed").sum(),
        ).execute().iloc[0]
        named = ev.mutate(name=ev.event.fill_null(ev.type))
        top = named.group_by("name").aggregate(count=named.count()).order_by(lambda x: x["count"].desc()).limit(top_events)
        merged = t.identity_map.person_id.nunique().execute()
        return {
            "events": int(totals["events"]),
            "people": int(totals["people"]),
            "identified_users": int(totals["identified"]),
            "merged_people": int(merged),
            "first_event": totals["first"],
            "last_event": totals["last"],
            "orders": int(orders["orders"]),
            "buyers": int(orders["buyers"]),
            "gross_revenue": float(orders["gross"] or 0.0),
            "net_revenue": float(orders["net"] or 0.0),
            "refunded_or_cancelled_orders": int(orders["refunded_orders"] or 0),
            "items": int(t.items.count().execute()),
            "top_events": top.execute().to_dict("records"),
        }
    finally:
        engine.close()
