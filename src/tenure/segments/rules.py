"""The segment rule language: parse YAML/JSON-shaped rules into checked, typed conditions.

Parsing checks everything a rule can get wrong (unknown keys, fields and operators, value
types, durations, dates, enum values) and names the place in the rule, so a rule that parses
compiles and runs. The grammar is documented in ``docs/segments.md``; compilation to Ibis lives
in ``tenure.segments.compile``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal

import yaml

from tenure.analytics.rfm import RFM_SEGMENTS
from tenure.analytics.stages import STAGES
from tenure.errors import ValidationError

ValueType = Literal["number", "string", "bool", "timestamp"]

# Person fields a rule can compare, with the type and the table that provides them.
FEATURE_FIELDS: dict[str, ValueType] = {
    "identified": "bool",
    "first_seen": "timestamp",
    "last_seen": "timestamp",
    "first_order_at": "timestamp",
    "last_order_at": "timestamp",
    **{
        name: "number"
        for name in (
            "tenure_days", "orders", "revenue", "aov", "recency_days", "ipt_mean_days", "ipt_std_days",
            "events_7d", "events_30d", "events_90d", "sessions_7d", "sessions_30d", "sessions_90d",
            "active_days", "top_category_share", "distinct_categories",
        )
    },
    "top_category": "string",
    "channel": "string",
    "country": "string",
}
RFM_FIELDS: dict[str, ValueType] = {"r_score": "number", "f_score": "number", "m_score": "number", "rfm_segment": "string"}
STAGE_FIELDS: dict[str, ValueType] = {"stage": "string"}
SCORE_FIELDS: dict[str, ValueType] = {
    name: "number" for name in ("churn_risk", "p_alive", "expected_orders_90d", "clv_365d", "propensity_30d")
}
FIELDS: dict[str, ValueType] = {**FEATURE_FIELDS, **RFM_FIELDS, **STAGE_FIELDS, **SCORE_FIELDS}
ENUMS: dict[str, tuple[str, ...]] = {"stage": STAGES, "rfm_segment": RFM_SEGMENTS}
LINE_PROPERTIES: dict[str, ValueType] = {
    "product_id": "string", "sku": "string", "category": "string", "name": "string", "brand": "string",
    "price": "number", "quantity": "number", "revenue": "number",
}

OPS_BY_TYPE: dict[ValueType, tuple[str, ...]] = {
    "number": ("eq", "ne", "gt", "gte", "lt", "lte", "between", "in", "not_in", "is_set", "is_not_set"),
    "string": ("eq", "ne", "in", "not_in", "contains", "starts_with", "is_set", "is_not_set"),
    "bool": ("eq", "ne", "is_set", "is_not_set"),
    "timestamp": ("eq", "ne", "gt", "gte", "lt", "lte", "between", "is_set", "is_not_set"),
}
ALL_OPS = tuple(dict.fromkeys(op for ops in OPS_BY_TYPE.values() for op in ops))
CONDITION_KEYS = ("all", "any", "not", "field", "trait", "event", "purchased", "segment")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_DURATION = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")
_RELATIVE = re.compile(r"^\s*(\d+)\s*([mhdw])\s+ago\s*$")


# -- dates ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DateSpec:
    """A date in a rule: absolute (a local date or an instant) or ``ago`` before ``as_of``."""

    absolute: date | datetime | None = None
    ago: timedelta | None = None
    today: bool = False


# -- conditions ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Compare:
    """``op`` and its parsed value; ``kind`` is the type the comparison runs in."""

    op: str
    kind: ValueType
    value: Any = None  # scalar, tuple for in/not_in/between, DateSpec(s) for timestamps


@dataclass(frozen=True, slots=True)
class All:
    parts: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    parts: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class Not:
    part: Condition


@dataclass(frozen=True, slots=True)
class FieldIs:
    name: str
    compare: Compare


@dataclass(frozen=True, slots=True)
class TraitIs:
    name: str
    compare: Compare


@dataclass(frozen=True, slots=True)
class PropertyIs:
    name: str
    compare: Compare


@dataclass(frozen=True, slots=True)
class Window:
    """``[since, until)``; either end may be open (then: all history / ``as_of``)."""

    since: DateSpec | None = None
    until: DateSpec | None = None


@dataclass(frozen=True, slots=True)
class Measure:
    """``count`` of matching rows, or ``sum`` of a numeric property, compared."""

    kind: Literal["count", "sum"]
    compare: Compare
    property: str | None = None


AT_LEAST_ONCE = Measure("count", Compare("gte", "number", 1))


@dataclass(frozen=True, slots=True)
class FollowUp:
    event: str
    within: timedelta
    where: tuple[PropertyIs, ...] = ()


@dataclass(frozen=True, slots=True)
class DidEvent:
    event: str
    where: tuple[PropertyIs, ...] = ()
    window: Window = Window()
    measure: Measure = AT_LEAST_ONCE
    not_followed_by: FollowUp | None = None


@dataclass(frozen=True, slots=True)
class Purchased:
    where: tuple[PropertyIs, ...] = ()
    window: Window = Window()
    measure: Measure = AT_LEAST_ONCE


@dataclass(frozen=True, slots=True)
class InSegment:
    name: str


Condition = All | AnyOf | Not | FieldIs | TraitIs | DidEvent | Purchased | InSegment


# -- entry points ----------------------------------------------------------------------------
def load_rule_text(text: str, path: str = "rule") -> object:
    """A rule from YAML or JSON text (JSON is YAML)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValidationError(path, f"is not valid YAML or JSON ({exc.__class__.__name__})") from exc


def parse_rule(obj: object, path: str = "rule") -> Condition:
    """A checked condition; ``ValidationError.field`` is the dotted path of the first problem."""
    if isinstance(obj, str):
        obj = load_rule_text(obj, path)
    node = _mapping(obj, path)
    keys = [k for k in CONDITION_KEYS if k in node]
    if len(keys) != 1:
        found = ", ".join(keys) if keys else "none"
        raise ValidationError(path, f"needs exactly one of {', '.join(CONDITION_KEYS)}; found {found}")
    key = keys[0]
    if key in ("all", "any"):
        _only(node, {key}, path)
        items = node[key]
        if not isinstance(items, list) or not items:
            raise ValidationError(f"{path}.{key}", "must be a non-empty list of conditions")
        parts = tuple(parse_rule(item, f"{path}.{key}[{i}]") for i, item in enumerate(items))
        return All(parts) if key == "all" else AnyOf(parts)
    if key == "not":
        _only(node, {"not"}, path)
        return Not(parse_rule(node["not"], f"{path}.not"))
    if key == "field":
        _only(node, {"field", "op", "value"}, path)
        name = _name(node["field"], f"{path}.field")
        if name not in FIELDS:
            raise ValidationError(f"{path}.field", f"unknown field {name!r}; fields are {', '.join(FIELDS)}")
        return FieldIs(name, _compare(node, path, FIELDS[name], enum=ENUMS.get(name), subject=name))
    if key == "trait":
        _only(node, {"trait", "op", "value"}, path)
        return TraitIs(_key(node["trait"], f"{path}.trait"), _compare(node, path, None))
    if key == "segment":
        _only(node, {"segment"}, path)
        return InSegment(_name(node["segment"], f"{path}.segment"))
    if key == "event":
        return _did_event(node, path)
    return _purchased(node, path)


def segment_references(condition: Condition) -> set[str]:
    """Names of the segments a condition refers to (directly)."""
    if isinstance(condition, All | AnyOf):
        return set().union(*(segment_references(p) for p in condition.parts))
    if isinstance(condition, Not):
        return segment_references(condition.part)
    return {condition.name} if isinstance(condition, InSegment) else set()


def fields_used(condition: Condition) -> set[str]:
    """Person fields a condition compares (directly)."""
    if isinstance(condition, All | AnyOf):
        return set().union(*(fields_used(p) for p in condition.parts))
    if isinstance(condition, Not):
        return fields_used(condition.part)
    return {condition.name} if isinstance(condition, FieldIs) else set()


def parse_duration(value: object, path: str) -> timedelta:
    match = _DURATION.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValidationError(path, f"{value!r} is not a duration like 30d, 12h, 2w or 90m")
    amount = int(match.group(1))
    if amount == 0:
        raise ValidationError(path, "must be longer than zero")
    return timedelta(**{_UNITS[match.group(2)]: amount})


def parse_date(value: object, path: str) -> DateSpec:
    """ISO date or timestamp, ``today``, or ``N{m,h,d,w} ago``."""
    if isinstance(value, datetime):
        return DateSpec(absolute=value)
    if isinstance(value, date):  # YAML reads bare 2025-06-01 as a date
        return DateSpec(absolute=value)
    if isinstance(value, str):
        text = value.strip()
        if text == "today":
            return DateSpec(today=True)
        relative = _RELATIVE.match(text)
        if relative:
            return DateSpec(ago=parse_duration(f"{relative.group(1)}{relative.group(2)}", path))
        try:
            return DateSpec(absolute=date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text))
        except ValueError:
            pass
    raise ValidationError(path, f"{value!r} is not a date (ISO date or timestamp, 'today', or like '30d ago')")


# -- parts ---------------------------------------------------------------------------------
def _did_event(node: Mapping[str, Any], path: str) -> DidEvent:
    _only(node, {"event", "where", "within", "since", "until", "count", "sum", "not_followed_by"}, path)
    follow = None
    if "not_followed_by" in node:
        fpath = f"{path}.not_followed_by"
        fnode = _mapping(node["not_followed_by"], fpath)
        _only(fnode, {"event", "within", "where"}, fpath)
        if "within" not in fnode:
            raise ValidationError(f"{fpath}.within", "is required: how long after the event to look")
        follow = FollowUp(
            _name(fnode.get("event"), f"{fpath}.event"),
            parse_duration(fnode["within"], f"{fpath}.within"),
            _filters(fnode.get("where", []), f"{fpath}.where", None),
        )
    return DidEvent(
        event=_name(node["event"], f"{path}.event"),
        where=_filters(node.get("where", []), f"{path}.where", None),
        window=_window(node, path),
        measure=_measure(node, path, None),
        not_followed_by=follow,
    )


def _purchased(node: Mapping[str, Any], path: str) -> Purchased:
    _only(node, {"purchased", "within", "since", "until", "count", "sum"}, path)
    return Purchased(
        where=_filters(node["purchased"], f"{path}.purchased", LINE_PROPERTIES),
        window=_window(node, path),
        measure=_measure(node, path, LINE_PROPERTIES),
    )


def _filters(items: object, path: str, known: Mapping[str, ValueType] | None) -> tuple[PropertyIs, ...]:
    if not isinstance(items, list):
        raise ValidationError(path, "must be a list of {property, op, value} filters")
    out = []
    for i, item in enumerate(items):
        ipath = f"{path}[{i}]"
        node = _mapping(item, ipath)
        _only(node, {"property", "op", "value"}, ipath)
        name = _property(node.get("property"), f"{ipath}.property", known)
        out.append(PropertyIs(name, _compare(node, ipath, known[name] if known else None)))
    return tuple(out)


def _property(value: object, path: str, known: Mapping[str, ValueType] | None) -> str:
    name = _key(value, path)
    if known is not None and name not in known:
        raise ValidationError(path, f"unknown property {name!r}; properties are {', '.join(known)}")
    return name


def _window(node: Mapping[str, Any], path: str) -> Window:
    since: DateSpec | None
    if "within" in node:
        if "since" in node:
            raise ValidationError(f"{path}.within", "give either within or since, not both")
        since = DateSpec(ago=parse_duration(node["within"], f"{path}.within"))
    else:
        since = parse_date(node["since"], f"{path}.since") if "since" in node else None
    until = parse_date(node["until"], f"{path}.until") if "until" in node else None
    return Window(since, until)


def _measure(node: Mapping[str, Any], path: str, known: Mapping[str, ValueType] | None) -> Measure:
    if "count" in node and "sum" in node:
        raise ValidationError(f"{path}.sum", "give either count or sum, not both")
    if "count" in node:
        cpath = f"{path}.count"
        cnode = _mapping(node["count"], cpath)
        _only(cnode, {"op", "value"}, cpath)
        return Measure("count", _compare(cnode, cpath, "number"))
    if "sum" in node:
        spath = f"{path}.sum"
        snode = _mapping(node["sum"], spath)
        _only(snode, {"property", "op", "value"}, spath)
        name = _property(snode.get("property"), f"{spath}.property", known)
        if known is not None and known[name] != "number":
            raise ValidationError(f"{spath}.property", f"{name!r} is not a number")
        return Measure("sum", _compare(snode, spath, "number"), name)
    return AT_LEAST_ONCE


def _compare(
    node: Mapping[str, Any], path: str, kind: ValueType | None, *, enum: Sequence[str] | None = None, subject: str = ""
) -> Compare:
    """Check ``op`` and ``value``; ``kind`` None means "typed by the value" (traits, properties)."""
    op = node.get("op")
    if op not in ALL_OPS:
        raise ValidationError(f"{path}.op", f"unknown op {op!r}; ops are {', '.join(ALL_OPS)}")
    vpath = f"{path}.value"
    if op in ("is_set", "is_not_set"):
        if "value" in node:
            raise ValidationError(vpath, f"{op} takes no value")
        return Compare(op, kind or "string")
    if "value" not in node:
        raise ValidationError(vpath, f"is required for {op}")
    raw = node["value"]
    if op in ("in", "not_in", "between"):
        if not isinstance(raw, list) or not raw:
            raise ValidationError(vpath, f"{op} needs a non-empty list")
        if op == "between" and len(raw) != 2:
            raise ValidationError(vpath, "between needs [low, high]")
        kind = kind or _kind_of(raw[0], vpath)
    else:
        kind = kind or _kind_of(raw, vpath)
    if op not in OPS_BY_TYPE[kind]:
        allowed = ", ".join(OPS_BY_TYPE[kind])
        where = f"{subject} is a {kind}" if subject else f"{kind} values"
        raise ValidationError(f"{path}.op", f"{op} does not apply: {where} (ops: {allowed})")
    if op not in ("in", "not_in", "between"):
        return Compare(op, kind, _value(raw, vpath, kind, enum, subject))
    parsed = tuple(_value(item, f"{vpath}[{i}]", kind, enum, subject) for i, item in enumerate(raw))
    if op == "between" and kind == "number" and parsed[0] > parsed[1]:
        raise ValidationError(vpath, "between needs low <= high")
    return Compare(op, kind, parsed)


def _value(raw: object, path: str, kind: ValueType, enum: Sequence[str] | None, subject: str) -> Any:
    if kind == "timestamp":
        return parse_date(raw, path)
    if kind == "number":
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise ValidationError(path, f"must be a number; got {raw!r}")
        return float(raw)
    if kind == "bool":
        if not isinstance(raw, bool):
            raise ValidationError(path, f"must be true or false; got {raw!r}")
        return raw
    if not isinstance(raw, str):
        raise ValidationError(path, f"must be a string; got {raw!r}")
    if enum is not None and raw not in enum:
        raise ValidationError(path, f"{subject} must be one of {', '.join(enum)}; got {raw!r}")
    return raw


def _kind_of(raw: object, path: str) -> ValueType:
    """The comparison type of a trait or property, from the value it is compared with."""
    if isinstance(raw, bool):
        return "bool"
    if isinstance(raw, int | float):
        return "number"
    if isinstance(raw, str):
        return "string"
    raise ValidationError(path, f"must be a string, number or boolean; got {raw!r}")


def _mapping(obj: object, path: str) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise ValidationError(path, f"must be a mapping (a condition); got {type(obj).__name__}")
    return obj


def _only(node: Mapping[str, Any], allowed: set[str], path: str) -> None:
    for key in node:
        if key not in allowed:
            raise ValidationError(f"{path}.{key}", f"unknown key here; expected {', '.join(sorted(allowed))}")


def _name(value: object, path: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(path, "must be a non-empty string")
    return value


def _key(value: object, path: str) -> str:
    """A trait or property name: letters, digits, ``_`` or ``-`` (it becomes a JSON path)."""
    name = _name(value, path)
    if not name.replace("_", "").replace("-", "").isalnum():
        raise ValidationError(path, f"{name!r} must be letters, digits, '_' or '-'")
    return name
