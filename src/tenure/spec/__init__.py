"""The Segment Spec as Tenure accepts it: message validation and the e-commerce mapping."""

from tenure.spec.ecommerce import CurrencyTable, OrderFacts, order_facts
from tenure.spec.messages import MESSAGE_TYPES, Limits, normalize_message, parse_timestamp

__all__ = ["MESSAGE_TYPES", "CurrencyTable", "Limits", "OrderFacts", "normalize_message", "order_facts", "parse_timestamp"]
