"""The e-commerce mapping: which Segment events are orders, and what an order is worth.

Canonical revenue rule (one rule, used everywhere):
    revenue  = properties.revenue                       if given
             = total - shipping - tax                   else, if total is given
             = subtotal                                 else, if subtotal is given
             = sum(products[].price * quantity)         else, if products are given
             = 0                                        otherwise
It is converted into the workspace currency at the configured rate. ``Order Refunded``
subtracts its own amount (same rule; with none of the fields it refunds the whole order) and
``Order Cancelled`` zeroes the order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from tenure.errors import ValidationError

ORDER_EVENTS: Mapping[str, Literal["completed", "refunded", "cancelled"]] = {
    "Order Completed": "completed",
    "Order Refunded": "refunded",
    "Order Cancelled": "cancelled",
}
FUNNEL_EVENTS = ("Product Viewed", "Product Added", "Checkout Started", "Order Completed")
_AMOUNT_FIELDS = ("revenue", "total", "subtotal", "shipping", "tax", "discount")


@dataclass(frozen=True, slots=True)
class OrderLine:
    line: int
    product_id: str | None
    sku: str | None
    category: str | None
    name: str | None
    brand: str | None
    price: float
    quantity: int


@dataclass(frozen=True, slots=True)
class OrderFacts:
    """An order event reduced to the facts the ``orders`` tables hold; amounts in base currency."""

    kind: Literal["completed", "refunded", "cancelled"]
    order_id: str
    currency: str
    revenue: float | None
    revenue_original: float | None
    subtotal: float | None
    total: float | None
    shipping: float | None
    tax: float | None
    discount: float | None
    coupon: str | None
    lines: tuple[OrderLine, ...]


@dataclass(frozen=True, slots=True)
class CurrencyTable:
    base: str
    rates: Mapping[str, float]

    def rate(self, code: str) -> float:
        if code == self.base:
            return 1.0
        try:
            return self.rates[code]
        except KeyError:
            raise ValidationError(
                "properties.currency", f"no conversion rate from {code} to {self.base} is configured"
            ) from None


def order_facts(event: str | None, properties: Mapping[str, Any], currencies: CurrencyTable) -> OrderFacts | None:
    """Return the order facts of an order event, ``None`` for any other event."""
    kind = ORDER_EVENTS.get(event or "")
    if kind is None:
        return None
    order_id = properties.get("order_id")
    if isinstance(order_id, int) and not isinstance(order_id, bool):
        order_id = str(order_id)
    if not isinstance(order_id, str) or not order_id:
        raise ValidationError("properties.order_id", f"is required for {event!r} and must be a string")
    currency = properties.get("currency") or currencies.base
    if not isinstance(currency, str):
        raise ValidationError("properties.currency", "must be an ISO 4217 code string")
    currency = currency.upper()
    rate = currencies.rate(currency)
    amounts = {name: _amount(properties, name) for name in _AMOUNT_FIELDS}
    lines = _lines(properties.get("products"))
    original = _canonical_revenue(amounts, lines, refund=kind != "completed")
    if kind == "cancelled":
        original = None

    def convert(value: float | None) -> float | None:
        return None if value is None else value * rate

    coupon = properties.get("coupon")
    return OrderFacts(
        kind=kind,
        order_id=order_id,
        currency=currency,
        revenue=convert(original),
        revenue_original=original,
        subtotal=convert(amounts["subtotal"]),
        total=convert(amounts["total"]),
        shipping=convert(amounts["shipping"]),
        tax=convert(amounts["tax"]),
        discount=convert(amounts["discount"]),
        coupon=coupon if isinstance(coupon, str) else None,
        lines=tuple(
            OrderLine(ln.line, ln.product_id, ln.sku, ln.category, ln.name, ln.brand, ln.price * rate, ln.quantity)
            for ln in lines
        ),
    )


def _canonical_revenue(amounts: Mapping[str, float | None], lines: tuple[OrderLine, ...], *, refund: bool) -> float | None:
    if amounts["revenue"] is not None:
        return amounts["revenue"]
    if amounts["total"] is not None:
        return amounts["total"] - (amounts["shipping"] or 0.0) - (amounts["tax"] or 0.0)
    if amounts["subtotal"] is not None:
        return amounts["subtotal"]
    if lines:
        return sum(ln.price * ln.quantity for ln in lines)
    return None if refund else 0.0


def _amount(properties: Mapping[str, Any], name: str, prefix: str = "properties") -> float | None:
    value = properties.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ValidationError(f"{prefix}.{name}", f"must be a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise ValidationError(f"{prefix}.{name}", f"must be a number, got {type(value).__name__}")
    return float(value)


def _lines(products: Any) -> tuple[OrderLine, ...]:
    if products is None:
        return ()
    if not isinstance(products, list):
        raise ValidationError("properties.products", "must be a list of objects")
    out = []
    for i, product in enumerate(products):
        where = f"properties.products[{i}]"
        if not isinstance(product, dict):
            raise ValidationError(where, "must be an object")
        quantity = product.get("quantity", 1)
        if isinstance(quantity, float) and quantity.is_integer():
            quantity = int(quantity)
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 0:
            raise ValidationError(f"{where}.quantity", "must be a non-negative integer")
        out.append(
            OrderLine(
                line=i,
                product_id=_text(product.get("product_id")),
                sku=_text(product.get("sku")),
                category=_text(product.get("category")),
                name=_text(product.get("name")),
                brand=_text(product.get("brand")),
                price=_amount(product, "price", where) or 0.0,
                quantity=quantity,
            )
        )
    return tuple(out)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
