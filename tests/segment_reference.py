"""A plain-Python reading of the segment rule language in docs/segments.md.

``reference_segments`` decides, for every person, whether each rule holds, working from the
Segment messages a test ingested: boolean logic, missing values, dates (absolute, ``today``,
``N{m,h,d,w} ago``), windows, the property typing rule, counts and sums, ``not_followed_by``,
order lines (``revenue`` = price x quantity, cancelled orders left out) and segment references
are all computed here by hand, and so is the population. Only the person fields (features,
lifecycle stage, RFM), which are verified against their own references elsewhere, come from
the analytics.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
from test_features import person_of, ts_of

from tenure import Workspace
from tenure.analytics.features import person_features
from tenure.analytics.rfm import rfm_scores
from tenure.analytics.stages import lifecycle_stages

UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
TIMESTAMP_FIELDS = ("first_seen", "last_seen", "first_order_at", "last_order_at")
NUMBER_FIELDS = (
    "tenure_days", "recency_days", "orders", "revenue", "aov", "ipt_mean_days", "ipt_std_days",
    "events_7d", "events_30d", "events_90d", "sessions_7d", "sessions_30d", "sessions_90d", "active_days",
    "top_category_share", "distinct_categories", "r_score", "f_score", "m_score",
)
STRING_FIELDS = ("top_category", "channel", "country", "stage", "rfm_segment")
MODEL_FIELDS = ("churn_risk", "p_alive", "expected_orders_90d", "clv_365d", "propensity_30d")
DEFAULT_COUNT: Mapping[str, Any] = {"op": "gte", "value": 1}
BUILTIN_SEGMENTS = {"Stage: ": "stage", "RFM: ": "rfm_segment"}
_RELATIVE = re.compile(r"(\d+)([mhdw]) ago")
_DURATION = re.compile(r"(\d+)([mhdw])")


@dataclass(frozen=True)
class Event:
    name: str
    at: datetime
    properties: Mapping[str, Any]


@dataclass(frozen=True)
class Purchase:
    """A completed order placed before ``as_of`` and not cancelled before it."""

    at: datetime
    lines: tuple[Mapping[str, Any], ...]


def duration(text: str) -> timedelta:
    number, unit = _DURATION.fullmatch(text).groups()  # type: ignore[union-attr]
    return int(number) * UNITS[unit]


def instant(text: str, *, as_of: datetime, zone: str) -> datetime:
    """A rule date: ISO date (local midnight), ISO timestamp, ``today`` or ``N{m,h,d,w} ago``."""
    if text == "today":  # as_of is exclusive: at local midnight, "today" is the day that just ended
        day = (as_of - timedelta(microseconds=1)).astimezone(ZoneInfo(zone)).date()
        return datetime.combine(day, time(), tzinfo=ZoneInfo(zone)).astimezone(UTC)
    relative = _RELATIVE.fullmatch(text)
    if relative:
        return as_of - int(relative.group(1)) * UNITS[relative.group(2)]
    if len(text) == 10:
        return datetime.combine(date.fromisoformat(text), time(), tzinfo=ZoneInfo(zone)).astimezone(UTC)
    parsed = datetime.fromisoformat(text)
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=ZoneInfo(zone))).astimezone(UTC)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def typed(raw: Any, value: Any) -> Any:
    """A trait or property as the rule value's type sees it; None when missing or of another type.

    A number (or list of numbers) compares numbers only, a boolean compares booleans only, and
    anything else compares the raw JSON value as text (``30`` reads ``"30"``, ``true`` ``"true"``).
    """
    if raw is None:
        return None
    sample = value[0] if isinstance(value, list) and value else value
    if isinstance(sample, bool):
        return raw if isinstance(raw, bool) else None
    if is_number(sample):
        return float(raw) if is_number(raw) else None
    if sample is None:  # is_set / is_not_set
        return raw
    return raw if isinstance(raw, str) else json.dumps(raw)


def holds(op: str, actual: Any, value: Any) -> bool:
    """One comparison; a missing ``actual`` satisfies nothing but ``is_not_set``."""
    if op == "is_set":
        return actual is not None
    if op == "is_not_set":
        return actual is None
    if actual is None:
        return False
    if op == "eq":
        return bool(actual == value)
    if op == "ne":
        return bool(actual != value)
    if op == "gt":
        return bool(actual > value)
    if op == "gte":
        return bool(actual >= value)
    if op == "lt":
        return bool(actual < value)
    if op == "lte":
        return bool(actual <= value)
    if op == "between":
        return bool(value[0] <= actual <= value[1])
    if op == "in":
        return actual in value
    if op == "not_in":
        return actual not in value
    if op == "contains":
        return value in actual
    if op == "starts_with":
        return bool(actual.startswith(value))
    raise AssertionError(f"the reference does not know op {op!r}")


def numbers(value: Any) -> Any:
    return [float(v) for v in value] if isinstance(value, list) else None if value is None else float(value)


def property_filter(item: Mapping[str, Any], spec: Mapping[str, Any]) -> bool:
    """A ``{property, op, value}`` filter on an event's properties or an order line (trait typing rule)."""
    value = spec.get("value")
    actual = typed(item.get(spec["property"]), value)
    return holds(spec["op"], actual, numbers(value) if _numeric(value) else value)


def _numeric(value: Any) -> bool:
    sample = value[0] if isinstance(value, list) and value else value
    return is_number(sample)


def compare_number(spec: Mapping[str, Any], amount: float) -> bool:
    return holds(spec["op"], float(amount), numbers(spec.get("value")))


class Reference:
    """Membership of every known person, computed from the messages and the person fields."""

    def __init__(self, messages: Sequence[dict[str, Any]], fields: pd.DataFrame | None, *, as_of: datetime,
                 zone: str) -> None:
        self.as_of = as_of
        self.zone = zone
        person = person_of(list(messages))
        # the population: everyone with an event or order (orders are events too) before as_of
        self.people: list[str] = sorted({person[m["messageId"]] for m in messages if ts_of(m) < as_of})
        self.fields = {row["person_id"]: row for row in _records(fields)} if fields is not None else {}
        self.events: dict[str, list[Event]] = defaultdict(list)
        self.traits: dict[str, dict[str, Any]] = defaultdict(dict)
        self.purchases: dict[str, list[Purchase]] = defaultdict(list)
        for m in sorted(messages, key=ts_of):
            who = person[m["messageId"]]
            if m["type"] == "identify" and m.get("userId"):  # traits are current: every identify call
                self.traits[who].update(m.get("traits") or {})
            if ts_of(m) < as_of and m["type"] == "track":
                self.events[who].append(Event(m["event"], ts_of(m), m.get("properties") or {}))
        cancelled = {m["properties"]["order_id"] for m in messages
                     if m.get("event") == "Order Cancelled" and ts_of(m) < as_of}
        for m in messages:
            props = m.get("properties") or {}
            if m.get("event") == "Order Completed" and ts_of(m) < as_of and props["order_id"] not in cancelled:
                lines = tuple(_line(p) for p in props.get("products") or [])
                self.purchases[person[m["messageId"]]].append(Purchase(ts_of(m), lines))

    def evaluate(self, rules: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
        """Like ``ws.segments.evaluate``: person_id, then one bool column per rule."""
        members: dict[str, set[str]] = {}
        for name, rule in rules.items():
            members[name] = self.members(rule, members)
        frame = pd.DataFrame({"person_id": self.people})
        for name in rules:
            frame[name] = [who in members[name] for who in self.people]
        return frame

    def members(self, cond: Mapping[str, Any], segments: Mapping[str, set[str]]) -> set[str]:
        everyone = set(self.people)
        if "all" in cond:
            out = set(everyone)
            for part in cond["all"]:
                out &= self.members(part, segments)
            return out
        if "any" in cond:
            out = set()
            for part in cond["any"]:
                out |= self.members(part, segments)
            return out
        if "not" in cond:
            return everyone - self.members(cond["not"], segments)
        if "segment" in cond:
            return self._segment(cond["segment"], segments)
        if "field" in cond:
            return {who for who in self.people if self._field(who, cond)}
        if "trait" in cond:
            return {who for who in self.people if property_filter(self.traits.get(who, {}), {**cond, "property": cond["trait"]})}
        if "event" in cond:
            return {who for who in self.people if self._event(who, cond)}
        if "purchased" in cond:
            return {who for who in self.people if self._purchased(who, cond)}
        raise AssertionError(f"the reference does not know condition {cond!r}")

    # -- conditions -------------------------------------------------------------------------
    def _segment(self, name: str, segments: Mapping[str, set[str]]) -> set[str]:
        """Another rule of the call, or a built-in segment (``Stage: …``, ``RFM: …``)."""
        if name in segments:
            return set(segments[name])
        for prefix, field in BUILTIN_SEGMENTS.items():
            if name.startswith(prefix):
                return {who for who in self.people if self.fields.get(who, {}).get(field) == name[len(prefix):]}
        raise AssertionError(f"the reference does not know segment {name!r}")

    def _field(self, who: str, cond: Mapping[str, Any]) -> bool:
        name, op, value = cond["field"], cond["op"], cond.get("value")
        actual = self.fields.get(who, {}).get(name)
        if name in TIMESTAMP_FIELDS and value is not None:
            value = [self._date(v) for v in value] if isinstance(value, list) else self._date(value)
        elif (name in NUMBER_FIELDS or name in MODEL_FIELDS) and value is not None:
            value = numbers(value)
            actual = None if actual is None else float(actual)
        return holds(op, actual, value)

    def _window(self, cond: Mapping[str, Any]) -> tuple[datetime, datetime]:
        """[start, end) of a window, never reaching ``as_of``."""
        start, end = datetime(1970, 1, 1, tzinfo=UTC), self.as_of
        if "within" in cond:
            start = self.as_of - duration(cond["within"])
        if "since" in cond:
            start = self._date(cond["since"])
        if "until" in cond:
            end = min(end, self._date(cond["until"]))
        return start, end

    def _event(self, who: str, cond: Mapping[str, Any]) -> bool:
        start, end = self._window(cond)
        mine = self.events.get(who, [])
        kept = [e for e in mine if e.name == cond["event"] and start <= e.at < end
                and all(property_filter(e.properties, f) for f in cond.get("where", []))]
        follow = cond.get("not_followed_by")
        if follow is not None:
            gap = duration(follow["within"])
            later = [e for e in mine if e.name == follow["event"]
                     and all(property_filter(e.properties, f) for f in follow.get("where", []))]
            # counted once the window has passed (t + gap <= as_of) and nothing followed in (t, t + gap]
            kept = [e for e in kept if e.at + gap <= self.as_of and not any(e.at < f.at <= e.at + gap for f in later)]
        if "sum" in cond:
            total = sum(float(e.properties.get(cond["sum"]["property"])) for e in kept
                        if is_number(e.properties.get(cond["sum"]["property"])))
            return compare_number(cond["sum"], total)
        return compare_number(cond.get("count", DEFAULT_COUNT), len(kept))

    def _purchased(self, who: str, cond: Mapping[str, Any]) -> bool:
        start, end = self._window(cond)
        matching = [[line for line in order.lines if all(property_filter(line, f) for f in cond["purchased"])]
                    for order in self.purchases.get(who, []) if start <= order.at < end]
        if "sum" in cond:
            prop = cond["sum"]["property"]
            total = sum(float(line[prop]) for lines in matching for line in lines if is_number(line.get(prop)))
            return compare_number(cond["sum"], total)
        return compare_number(cond.get("count", DEFAULT_COUNT), sum(1 for lines in matching if lines))

    def _date(self, text: str) -> datetime:
        return instant(text, as_of=self.as_of, zone=self.zone)


def _line(product: Mapping[str, Any]) -> dict[str, Any]:
    """An order line as the e-commerce mapping stores it, plus ``revenue`` = price x quantity."""
    price = float(product.get("price") or 0.0)
    quantity = int(product.get("quantity", 1))
    return {
        **{key: _text(product.get(key)) for key in ("product_id", "sku", "category", "name", "brand")},
        "price": price, "quantity": quantity, "revenue": price * quantity,
    }


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for row in frame.to_dict("records"):
        clean: dict[str, Any] = {}
        for key, value in row.items():
            if value is None or (not isinstance(value, str | list) and pd.isna(value)):
                clean[key] = None
            elif isinstance(value, pd.Timestamp):
                clean[key] = value.to_pydatetime().astimezone(UTC)
            elif hasattr(value, "item"):  # numpy scalars
                clean[key] = value.item()
            else:
                clean[key] = value
        out.append(clean)
    return out


def fields_used(cond: Any) -> set[str]:
    """Every ``field: NAME`` in a condition, however deeply nested (built-in segments need theirs)."""
    if isinstance(cond, list):
        return set().union(*(fields_used(c) for c in cond))
    if not isinstance(cond, Mapping):
        return set()
    own = {cond["field"]} if "field" in cond else set()
    for prefix, field in BUILTIN_SEGMENTS.items():
        if str(cond.get("segment", "")).startswith(prefix):
            own.add(field)
    return own.union(*(fields_used(cond[key]) for key in ("all", "any", "not") if key in cond))


def person_fields(ws: Workspace, as_of: datetime, names: set[str]) -> pd.DataFrame | None:
    """The analytics' features, stage and RFM of every person, as far as ``names`` need them.

    The same functions as ``ws.features``, ``ws.stages`` and ``ws.rfm``, run on one engine; model
    scores are missing for everyone (no model has scored anyone in these tests).
    """
    rfm_names = {"r_score", "f_score", "m_score", "rfm_segment"}
    features = names - rfm_names - {"stage"} - set(MODEL_FIELDS)
    if not names:
        return None
    frames = []
    with ws.engine() as engine:
        t = engine.tables()
        if features:
            frames.append(engine.execute(person_features(t, as_of=as_of)))
        if "stage" in names:
            stages = lifecycle_stages(t, as_of=as_of, lifecycle=ws.settings.lifecycle).select("person_id", "stage")
            frames.append(engine.execute(stages))
        if names & rfm_names:
            rfm = rfm_scores(t, as_of=as_of, bins=ws.settings.rfm_bins)
            frames.append(engine.execute(rfm.select("person_id", "r_score", "f_score", "m_score", rfm_segment="segment")))
    out = frames[0] if frames else pd.DataFrame({"person_id": pd.Series([], dtype=object)})
    for frame in frames[1:]:
        out = out.merge(frame, on="person_id", how="outer")  # RFM has customers only
    for name in MODEL_FIELDS:
        out[name] = None
    return out


def reference_segments(ws: Workspace, messages: Sequence[dict[str, Any]], rules: Mapping[str, Mapping[str, Any]],
                       *, as_of: datetime) -> pd.DataFrame:
    """What ``ws.segments.evaluate(rules, as_of=as_of)`` must return for these ingested messages."""
    fields = person_fields(ws, as_of, fields_used(list(rules.values())))
    return Reference(messages, fields, as_of=as_of, zone=ws.settings.timezone).evaluate(rules)
