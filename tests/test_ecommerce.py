"""The canonical revenue rule, currency conversion, refunds and cancellations."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenure import Workspace
from tenure.errors import ValidationError
from tenure.ingest.batches import build_batch
from tenure.spec import CurrencyTable, order_facts

RATES = CurrencyTable("USD", {"EUR": 1.1})
money = st.one_of(st.none(), st.floats(0, 1e5, allow_nan=False).map(lambda x: round(x, 2)))


@given(revenue=money, total=money, subtotal=money, shipping=money, tax=money,
       lines=st.lists(st.tuples(st.floats(0, 500).map(lambda x: round(x, 2)), st.integers(0, 5)), max_size=4))
def test_revenue_rule(revenue, total, subtotal, shipping, tax, lines) -> None:  # type: ignore[no-untyped-def]
    props = {"order_id": "o", "revenue": revenue, "total": total, "subtotal": subtotal, "shipping": shipping, "tax": tax}
    if lines:
        props["products"] = [{"product_id": f"p{i}", "price": p, "quantity": q} for i, (p, q) in enumerate(lines)]
    facts = order_facts("Order Completed", props, RATES)
    assert facts is not None
    if revenue is not None:
        expected = revenue
    elif total is not None:
        expected = total - (shipping or 0) - (tax or 0)
    elif subtotal is not None:
        expected = subtotal
    else:
        expected = sum(p * q for p, q in lines)
    assert facts.revenue == pytest.approx(expected)


def test_currency_is_converted_at_the_configured_rate() -> None:
    facts = order_facts("Order Completed", {"order_id": 7, "revenue": "10", "currency": "eur",
                                            "products": [{"price": 5, "quantity": 2}]}, RATES)
    assert facts is not None
    assert (facts.order_id, facts.currency, facts.revenue_original) == ("7", "EUR", 10.0)
    assert facts.revenue == pytest.approx(11.0) and facts.lines[0].price == pytest.approx(5.5)


@pytest.mark.parametrize(
    ("props", "field"),
    [
        ({"revenue": 1}, "properties.order_id"),
        ({"order_id": "o", "revenue": "ten"}, "properties.revenue"),
        ({"order_id": "o", "currency": "XYZ"}, "properties.currency"),
        ({"order_id": "o", "products": [{"price": 1, "quantity": -1}]}, "properties.products[0].quantity"),
        ({"order_id": "o", "products": [{"price": "x"}]}, "properties.products[0].price"),
        ({"order_id": "o", "products": "p1"}, "properties.products"),
    ],
)
def test_bad_orders_name_the_field(props: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        order_facts("Order Completed", props, RATES)
    assert info.value.field == field


def test_other_events_are_not_orders() -> None:
    assert order_facts("Product Viewed", {"order_id": "o"}, RATES) is None


def test_refunds_and_cancellations_adjust_net_revenue(sqlite_workspace: Workspace) -> None:
    at = datetime(2025, 3, 1, tzinfo=UTC).isoformat()

    def track(mid: str, event: str, props: dict[str, object]) -> dict[str, object]:
        return {"message_id": mid, "type": "track", "event": event, "user_id": "u", "timestamp": at, "properties": props}

    records = [
        track("1", "Order Completed", {"order_id": "a", "revenue": 100}),
        track("2", "Order Completed", {"order_id": "b", "revenue": 50, "currency": "EUR"}),
        track("3", "Order Completed", {"order_id": "c", "revenue": 80}),
        track("4", "Order Completed", {"order_id": "d", "revenue": 30}),
        track("5", "Order Refunded", {"order_id": "a", "revenue": 40}),
        track("6", "Order Refunded", {"order_id": "b"}),
        track("7", "Order Cancelled", {"order_id": "c"}),
    ]
    batch = build_batch(records, sqlite_workspace.currencies, "test")
    sqlite_workspace.lake.append(batch.tables)
    engine = sqlite_workspace.engine()
    got = engine.tables().orders.execute().set_index("order_id")
    engine.close()
    rate = sqlite_workspace.currencies.rate("EUR")
    assert got.loc["a", "net_revenue"] == pytest.approx(60) and got.loc["a", "status"] == "partially_refunded"
    assert got.loc["b", "revenue"] == pytest.approx(50 * rate)
    assert got.loc["b", "net_revenue"] == 0 and got.loc["b", "status"] == "refunded"
    assert got.loc["c", "net_revenue"] == 0 and got.loc["c", "status"] == "cancelled"
    assert got.loc["d", "net_revenue"] == pytest.approx(30) and got.loc["d", "status"] == "completed"
