"""Random little shops for the RFM and cohort tests, and the plain-Python facts they imply.

A shop is a list of Segment messages (anonymous visits before an identify, guest orders,
refunds and cancellations, instants on local period boundaries and at ``as_of``) plus the
facts a reader of those messages would derive by hand: who each message belongs to, the
orders and their adjustments. The references in the tests work from these facts only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from analytics_support import ingest
from hypothesis import strategies as st

from tenure import Workspace

from conftest import make_workspace

ZONES = ("UTC", "America/New_York", "Australia/Sydney")
FIRST_DAY = date(2024, 12, 28)  # a Saturday, so early days cross a week and a month boundary


@dataclass(frozen=True)
class Order:
    order_id: str
    person: str
    at: datetime
    revenue: float


@dataclass(frozen=True)
class Adjustment:
    order_id: str
    kind: str  # "refunded" | "cancelled"
    amount: float | None
    at: datetime


@dataclass
class Shop:
    timezone: str
    as_of: datetime
    messages: list[dict[str, Any]] = field(default_factory=list)
    events: list[tuple[str, datetime]] = field(default_factory=list)  # (person, timestamp) of every message
    orders: list[Order] = field(default_factory=list)
    adjustments: list[Adjustment] = field(default_factory=list)
    channels: dict[str, str] = field(default_factory=dict)  # person -> channel trait

    def local(self, at: datetime) -> date:
        return at.astimezone(ZoneInfo(self.timezone)).date()

    def workspace(self, root: Path) -> Workspace:
        make_workspace(root).close()
        settings = root / "tenure.toml"
        settings.write_text(settings.read_text().replace('timezone = "UTC"', f'timezone = "{self.timezone}"'))
        ws = Workspace(root)
        ingest(ws, self.messages)
        return ws


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@st.composite
def shops(draw: st.DrawFn, max_people: int = 5) -> Shop:
    """A shop whose instants often sit on local midnights, period starts, and ``as_of`` itself."""
    zone_name = draw(st.sampled_from(ZONES))
    zone = ZoneInfo(zone_name)

    def midnight(day: int) -> datetime:
        return datetime.combine(FIRST_DAY + timedelta(days=day), time(), tzinfo=zone).astimezone(UTC)

    as_of = midnight(draw(st.integers(10, 70))) + draw(
        st.sampled_from([timedelta(0), timedelta(hours=13, minutes=7)])
    )

    def instant() -> datetime:
        kind = draw(st.sampled_from(["midnight", "day_end", "minute", "as_of"]))
        day = draw(st.sampled_from([4, 9, 11, 35, 37, 63]) | st.integers(0, 75))
        if kind == "as_of":
            return as_of
        if kind == "midnight":
            return midnight(day)
        if kind == "day_end":
            return midnight(day + 1) - timedelta(milliseconds=1)
        return midnight(day) + timedelta(minutes=draw(st.integers(0, 24 * 60 - 1)))

    shop = Shop(zone_name, as_of)
    counter = iter(range(10**6))

    def send(person: str, at: datetime, ids: dict[str, str], **body: Any) -> None:
        shop.messages.append({"messageId": f"m{next(counter)}", "timestamp": iso(at), **ids, **body})
        shop.events.append((person, at))

    for i in range(draw(st.integers(1, max_people))):
        user, anon = f"u{i}", f"a{i}"
        identified = draw(st.booleans())
        anon_person = user if identified else anon
        if identified:
            channel = draw(st.sampled_from([None, "paid", "organic"]))
            if channel is not None:
                shop.channels[user] = channel
            traits = {} if channel is None else {"channel": channel}
            send(user, instant(), {"userId": user, "anonymousId": anon}, type="identify", traits=traits)
        for _ in range(draw(st.integers(0, 3))):
            as_anon = draw(st.booleans())
            ids = {"anonymousId": anon} if as_anon else {"userId": user}
            send(anon_person if as_anon else user, instant(), ids, type="page", name="Home")
        for k in range(draw(st.integers(0, 3))):
            as_anon = draw(st.booleans())
            person, ids = (anon_person, {"anonymousId": anon}) if as_anon else (user, {"userId": user})
            order = Order(f"o{i}_{k}", person, instant(), draw(_cents(0, 40000)))
            shop.orders.append(order)
            props = {"order_id": order.order_id, "revenue": order.revenue}
            send(person, order.at, ids, type="track", event="Order Completed", properties=props)
            adjustment = draw(st.sampled_from([None, None, "refund", "full_refund", "cancel"]))
            if adjustment is None:
                continue
            at = instant()
            kind = "cancelled" if adjustment == "cancel" else "refunded"
            amount = draw(_cents(0, 45000)) if adjustment == "refund" else None
            event = "Order Cancelled" if kind == "cancelled" else "Order Refunded"
            refund_props: dict[str, Any] = {"order_id": order.order_id}
            if amount is not None:
                refund_props["revenue"] = amount
            send(person, at, ids, type="track", event=event, properties=refund_props)
            shop.adjustments.append(Adjustment(order.order_id, kind, amount, at))
    return shop


def _cents(low: int, high: int) -> st.SearchStrategy[float]:
    """Money in cents, often a repeated amount so that scores tie."""
    return (st.sampled_from([0, 1999, 2500]) | st.integers(low, high)).map(lambda c: c / 100)


def known_orders(shop: Shop) -> dict[str, tuple[Order, float]]:
    """Orders placed before as_of and not cancelled by then, with the net revenue known at as_of."""
    out: dict[str, tuple[Order, float]] = {}
    for order in shop.orders:
        if order.at >= shop.as_of:
            continue
        adjustments = [a for a in shop.adjustments if a.order_id == order.order_id and a.at < shop.as_of]
        if any(a.kind == "cancelled" for a in adjustments):
            continue
        refunds = [a for a in adjustments if a.kind == "refunded"]
        if any(a.amount is None for a in refunds):
            net = 0.0
        else:
            net = max(order.revenue - sum(a.amount or 0.0 for a in refunds), 0.0)
        out[order.order_id] = (order, net)
    return out


def fresh_workspace(factory: pytest.TempPathFactory, shop: Shop) -> Workspace:
    return shop.workspace(factory.mktemp("shop") / "ws")
