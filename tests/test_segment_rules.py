"""Compiled segment rules against a plain-Python reference, hand-picked edge cases, and rule errors.

Random little shops (anonymous and identified activity, events whose properties mix strings,
numbers and booleans, orders with lines, refunds and cancellations, traits of every type) are
evaluated against random rules that use every condition kind and op of docs/segments.md; the
reference (tests/segment_reference.py) reads the messages only, plus the person fields the
analytics compute. Then the edges the docs spell out, and the errors a rule can have.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from analytics_support import ingest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from segment_reference import NUMBER_FIELDS, TIMESTAMP_FIELDS, reference_segments
from test_features import DAYS, MINUTES, OWNER, USERS, at, iso

from tenure import Workspace
from tenure.analytics.rfm import RFM_SEGMENTS
from tenure.analytics.stages import STAGES
from tenure.errors import ValidationError
from tenure.segments.rules import parse_rule

from conftest import make_workspace

ZONES = ("UTC", "America/New_York")
# No shrinking: an example costs a second or two, so shrinking would take minutes; a failure
# prints the rule, the person, and what each side said.
RANDOM = settings(max_examples=25, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
                  suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# --- random shops ---------------------------------------------------------------------------------

EVENT_PROPERTIES = {
    "Product Viewed": ("category", "price"),
    "Product Added": ("category", "price", "quantity", "coupon", "revenue"),
    "Signed Up": ("plan", "trial"),
}
PROPERTY_VALUES: dict[str, list[Any]] = {
    "category": ["Books", "Games", "Garden", "books", 7],
    "price": [0, 2.5, 10, 99.75, "cheap", True],
    "quantity": [1, 2, 3],
    "coupon": [True, False, "SAVE10"],
    "plan": ["free", "pro", "Pro Plus"],
    "trial": [True, False],
    "revenue": [2.5, 10, "n/a"],
}
TRAIT_VALUES: dict[str, list[Any]] = {
    "plan": ["free", "pro", "Pro Plus"],
    "age": [17, 30, 45.5, "unknown"],
    "vip": [True, False, "yes"],
    "channel": ["seo", "paid", "email"],
    "country": ["AU", "DE", "US"],
}
LINE_VALUES: dict[str, list[Any]] = {
    "product_id": ["p0", "p1", "p2"],
    "sku": ["S-0", "S-1"],
    "category": ["Books", "Games", "Garden"],
    "name": ["Atlas", "Go board"],
    "brand": ["Acme", "Zen"],
    "price": [0.5, 2.5, 10, 99.75],
    "quantity": [1, 2, 3],
}


@dataclass(frozen=True)
class Shop:
    messages: list[dict[str, Any]]
    as_of: datetime
    zone: str


def some(draw: st.DrawFn, values: dict[str, list[Any]], keys: tuple[str, ...] | None = None) -> dict[str, Any]:
    """A random subset of ``keys``, each with a random value of its pool."""
    out = {}
    for key in keys or tuple(values):
        value = draw(st.sampled_from([*values[key], None]))
        if value is not None:
            out[key] = value
    return out


PEOPLE = (*USERS, "u3", "u4", "u5")  # u2..u5 never link to an anonymous id
STRANGERS = (*sorted(OWNER), "x2")  # x0, x1, x2 are never linked to anyone


@st.composite
def shops(draw: st.DrawFn, max_size: int = 50) -> Shop:
    """Messages whose timestamps are distinct but often whole days and minutes apart."""
    used: set[datetime] = set()
    orders: list[str] = []
    out: list[dict[str, Any]] = []
    kinds = ["track", "track", "track", "page", "order", "order", "refund", "cancel", "identify", "identify", "alias"]
    for i in range(draw(st.integers(15, max_size))):
        kind = draw(st.sampled_from(kinds))
        ts = at(draw(st.sampled_from(DAYS)), draw(st.sampled_from(MINUTES)))
        while ts in used:  # a tie would make "followed by" and trait merges ambiguous
            ts += timedelta(seconds=1)
        used.add(ts)
        msg: dict[str, Any] = {"messageId": f"m{i}", "timestamp": iso(ts)}
        if kind == "identify":
            user = draw(st.sampled_from(PEOPLE))
            mine = {"anonymousId": f"{user}-a"} if f"{user}-a" in OWNER else {}
            msg.update(type="identify", userId=user, traits=some(draw, TRAIT_VALUES), **mine)
            out.append(msg)
            continue
        if kind == "alias":
            user = draw(st.sampled_from([u for u in USERS if f"{u}-a" in OWNER]))
            msg.update(type="alias", userId=user, previousId=f"{user}-a")
            out.append(msg)
            continue
        who = draw(st.sampled_from(["user", "anon", "both"]))
        if who == "user":
            msg["userId"] = draw(st.sampled_from(PEOPLE))
        elif who == "anon":
            msg["anonymousId"] = draw(st.sampled_from(STRANGERS))
        else:
            owned = draw(st.sampled_from([a for a, u in OWNER.items() if u]))
            msg.update(userId=OWNER[owned], anonymousId=owned)
        if kind == "page":
            msg.update(type="page", name="Home")
        elif kind == "track":
            event = draw(st.sampled_from(sorted(EVENT_PROPERTIES)))
            msg.update(type="track", event=event, properties=some(draw, PROPERTY_VALUES, EVENT_PROPERTIES[event]))
        elif kind == "order":
            products = [{"product_id": f"p{j}", **some(draw, LINE_VALUES, ("sku", "category", "brand")),
                         "name": draw(st.sampled_from(LINE_VALUES["name"])),
                         "price": draw(st.sampled_from(LINE_VALUES["price"])),
                         "quantity": draw(st.sampled_from(LINE_VALUES["quantity"]))}
                        for j in range(draw(st.integers(0, 3)))]
            orders.append(f"o{i}")
            msg.update(type="track", event="Order Completed", properties={
                "order_id": f"o{i}", "revenue": draw(st.sampled_from([0.0, 5.5, 10.0, 99.75])),
                "products": products, **some(draw, PROPERTY_VALUES, ("coupon",))})
        elif orders:
            target = draw(st.sampled_from(orders))
            if kind == "cancel":
                msg.update(type="track", event="Order Cancelled", properties={"order_id": target})
            else:
                amount = draw(st.sampled_from([None, 3.0, 50.0]))
                msg.update(type="track", event="Order Refunded",
                           properties={"order_id": target} | ({"revenue": amount} if amount is not None else {}))
        else:
            msg.update(type="track", event="Signed Up", properties={})
        out.append(msg)
    as_of = at(draw(st.sampled_from(DAYS[7:])), draw(st.sampled_from(MINUTES)))  # from day 60: some history
    return Shop(out, as_of, draw(st.sampled_from(ZONES)))


# --- random rules ---------------------------------------------------------------------------------

NUMBERS = [0, 1, 2, 3, 5, 5.5, 10, 30, 45.5, 90, 99.75]
DATES = ["2025-01-01", "2025-01-02", "2025-01-31", "2025-03-09", "2025-03-10", "2025-06-30", "2025-10-28"]
TIMESTAMPS = ["2025-01-01T00:30:00Z", "2025-03-09T06:30:00-05:00", "2025-03-10T04:00:00+00:00", "2025-07-20T23:59:00Z"]
AGO = ["26w ago", "90d ago", "60d ago", "30d ago", "2w ago", "7d ago", "1d ago", "12h ago", "45m ago"]  # oldest first
DURATIONS = ["30m", "12h", "1d", "7d", "30d", "2w", "60d", "90d", "26w", "52w"]
STRINGS = {
    "top_category": ["Books", "Games", "Garden", "B"],
    "channel": ["seo", "paid", "email"],
    "country": ["AU", "DE", "US"],
}
PIECES = ["o", "G", "s", "e", "pa", "A", "Bo"]
VALUE_STRINGS = ["Books", "books", "Games", "Garden", "cheap", "SAVE10", "free", "pro", "Pro Plus", "unknown", "yes",
                 "seo", "DE", "7", "30", "true", "n/a"]
OPS = {
    "number": ["eq", "ne", "gt", "gte", "lt", "lte", "between", "in", "not_in", "is_set", "is_not_set"],
    "timestamp": ["gt", "gte", "lt", "lte", "between", "is_set", "is_not_set"],  # eq/ne: test_timestamps_take_eq_and_ne
    "string": ["eq", "ne", "in", "not_in", "contains", "starts_with", "is_set", "is_not_set"],
    "enum": ["eq", "ne", "in", "not_in", "is_set", "is_not_set"],
    "bool": ["eq", "ne", "is_set", "is_not_set"],
}
COUNT_OPS = ["eq", "ne", "gt", "gte", "lt", "lte", "between", "in", "not_in"]
EVENTS = ["Product Viewed", "Product Added", "Signed Up", "Order Completed", "Order Cancelled", "Email Unsubscribed"]


@st.composite
def comparison(draw: st.DrawFn, kind: str, pool: list[Any], ops: list[str] | None = None) -> dict[str, Any]:
    """``{op, value}`` for a value of ``kind`` drawn from ``pool``."""
    op = draw(st.sampled_from(ops or OPS[kind]))
    if op in ("is_set", "is_not_set"):
        return {"op": op}
    if op == "between":
        if kind == "timestamp" and draw(st.booleans()):
            low, high = sorted(draw(st.lists(st.sampled_from(AGO), min_size=2, max_size=2)), key=AGO.index)
        else:
            low, high = sorted(draw(st.lists(st.sampled_from(pool), min_size=2, max_size=2)))
        return {"op": op, "value": [low, high]}
    if op in ("in", "not_in"):
        return {"op": op, "value": draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3, unique=True))}
    if op in ("contains", "starts_with"):
        return {"op": op, "value": draw(st.sampled_from(PIECES))}
    if kind == "timestamp":
        return {"op": op, "value": draw(st.sampled_from([*pool, *TIMESTAMPS, *AGO, "today"]))}
    return {"op": op, "value": draw(st.sampled_from(pool))}


ANY_TYPE = {"number": [0, 1, 2, 2.5, 3, 7, 10, 17, 30, 45.5, 99.75], "string": VALUE_STRINGS, "bool": [True, False]}


def kind_of(value: Any) -> str:
    return "bool" if isinstance(value, bool) else "number" if isinstance(value, int | float) else "string"


@st.composite
def typed_comparison(draw: st.DrawFn, own: list[Any] | tuple[()] = ()) -> dict[str, Any]:
    """A trait or property comparison whose value type decides how the property is read.

    Mostly a value of one of the types the property takes (``own``), so that people differ; else any.
    """
    if own and draw(st.integers(0, 3)):
        kind = kind_of(draw(st.sampled_from(own)))
        pool = [v for v in own if kind_of(v) == kind]
        if kind == "number":
            pool += [1, 5, 20]
    else:
        kind = draw(st.sampled_from(sorted(ANY_TYPE)))
        pool = ANY_TYPE[kind]
    return draw(comparison(kind, pool))


@st.composite
def field_condition(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["number", "timestamp", "string", "stage", "rfm", "bool"]))
    if kind == "number":
        name = draw(st.sampled_from(NUMBER_FIELDS))
        return {"field": name, **draw(comparison("number", [1, 2, 3, 4, 5] if name.endswith("_score") else NUMBERS))}
    if kind == "timestamp":
        return {"field": draw(st.sampled_from(TIMESTAMP_FIELDS)), **draw(comparison("timestamp", DATES))}
    if kind == "string":
        name = draw(st.sampled_from(sorted(STRINGS)))
        return {"field": name, **draw(comparison("string", STRINGS[name]))}
    if kind == "stage":
        return {"field": "stage", **draw(comparison("enum", list(STAGES)))}
    if kind == "rfm":
        return {"field": "rfm_segment", **draw(comparison("enum", list(RFM_SEGMENTS)))}
    return {"field": "identified", **draw(comparison("bool", [True, False]))}


@st.composite
def window(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["none", "none", "within", "since", "until", "both"]))
    starts = [*DATES, *TIMESTAMPS, *AGO, "today"]
    if kind == "within":
        return {"within": draw(st.sampled_from(DURATIONS))}
    if kind == "since":
        return {"since": draw(st.sampled_from(starts))}
    if kind == "until":
        return {"until": draw(st.sampled_from(starts))}
    if kind == "both":
        since, until = sorted(draw(st.lists(st.sampled_from(AGO), min_size=2, max_size=2, unique=True)), key=AGO.index)
        return {"since": since, "until": until}
    return {}


@st.composite
def measure(draw: st.DrawFn, sums: list[str], pool: list[Any]) -> dict[str, Any]:
    """Nothing (count >= 1), a count or a sum."""
    kind = draw(st.sampled_from(["none", "count", "sum"]))
    if kind == "count":
        return {"count": draw(comparison("number", [0, 1, 2, 3], COUNT_OPS))}
    if kind == "sum":
        return {"sum": {"property": draw(st.sampled_from(sums)), **draw(comparison("number", pool, COUNT_OPS))}}
    return {}


@st.composite
def property_filter(draw: st.DrawFn) -> dict[str, Any]:
    name = draw(st.sampled_from([*PROPERTY_VALUES, "order_id", "missing"]))
    return {"property": name, **draw(typed_comparison(PROPERTY_VALUES.get(name, ())))}


SUMMABLE = {"Order Completed": ["revenue"], "Product Added": ["revenue", "price", "quantity"], "Product Viewed": ["price"]}


@st.composite
def event_condition(draw: st.DrawFn) -> dict[str, Any]:
    cond: dict[str, Any] = {"event": draw(st.sampled_from([*SUMMABLE, *SUMMABLE, *EVENTS]))}
    where = draw(st.lists(property_filter(), max_size=2)) if draw(st.booleans()) else []
    if where:
        cond["where"] = where
    cond |= draw(window())
    sums = SUMMABLE.get(cond["event"], []) if draw(st.integers(0, 3)) else []
    cond |= draw(measure(sums or ["revenue", "price", "quantity", "category", "coupon"], [0, 2.5, 5, 10, 20, 100]))
    if draw(st.integers(0, 2)) == 0:
        follow: dict[str, Any] = {"event": draw(st.sampled_from(EVENTS)), "within": draw(st.sampled_from(DURATIONS))}
        where = draw(st.lists(property_filter(), max_size=1))
        if where:
            follow["where"] = where
        cond["not_followed_by"] = follow
    return cond


@st.composite
def line_filter(draw: st.DrawFn) -> dict[str, Any]:
    name = draw(st.sampled_from([*LINE_VALUES, "revenue"]))
    if name in ("price", "quantity", "revenue"):
        pool = [2.5, 5, 10, 20, 30, 99.75, 199.5] if name == "revenue" else LINE_VALUES[name]
        return {"property": name, **draw(comparison("number", pool))}
    return {"property": name, **draw(comparison("string", LINE_VALUES[name]))}


@st.composite
def purchased_condition(draw: st.DrawFn) -> dict[str, Any]:
    cond: dict[str, Any] = {"purchased": draw(st.lists(line_filter(), max_size=2))}
    cond |= draw(window())
    cond |= draw(measure(["revenue", "price", "quantity"], [0, 2.5, 5, 10, 20, 100, 199.5]))
    return cond


@st.composite
def condition(draw: st.DrawFn, earlier: tuple[str, ...], depth: int = 0) -> dict[str, Any]:
    """Any condition; all/any/not nest up to three levels; segments refer to ``earlier`` rules or built-ins."""
    kinds = ["field", "field", "trait", "event", "event", "purchased", "segment"]
    if depth < 3:
        kinds += ["all", "any", "not"]
    kind = draw(st.sampled_from(kinds))
    if kind in ("all", "any"):
        return {kind: draw(st.lists(condition(earlier, depth + 1), min_size=1, max_size=3))}
    if kind == "not":
        return {"not": draw(condition(earlier, depth + 1))}
    if kind == "segment":
        builtin = draw(st.sampled_from([f"Stage: {s}" for s in STAGES] + [f"RFM: {s}" for s in RFM_SEGMENTS]))
        return {"segment": draw(st.sampled_from([*earlier, *earlier, builtin]))}  # earlier may be empty
    if kind == "trait":
        name = draw(st.sampled_from([*TRAIT_VALUES, "nickname"]))
        return {"trait": name, **draw(typed_comparison(TRAIT_VALUES.get(name, ())))}
    if kind == "event":
        return draw(event_condition())
    if kind == "purchased":
        return draw(purchased_condition())
    return draw(field_condition())


@st.composite
def rule_sets(draw: st.DrawFn) -> dict[str, dict[str, Any]]:
    rules: dict[str, dict[str, Any]] = {}
    for i in range(draw(st.integers(1, 5))):
        rules[f"r{i}"] = draw(condition(tuple(rules)))
    return rules


# --- helpers --------------------------------------------------------------------------------------


def open_shop(factory: pytest.TempPathFactory, zone: str, messages: list[dict[str, Any]]) -> Workspace:
    root = factory.mktemp("segments") / "ws"
    make_workspace(root).close()
    toml = root / "tenure.toml"
    toml.write_text(toml.read_text().replace('timezone = "UTC"', f'timezone = "{zone}"'))
    ws = Workspace(root)
    assert ws.settings.timezone == zone
    ingest(ws, messages)
    return ws


def assert_same_members(ws: Workspace, messages: list[dict[str, Any]], rules: dict[str, dict[str, Any]],
                        as_of: datetime) -> pd.DataFrame:
    """The compiled membership equals the reference for every person and rule; returns it."""
    got = ws.segments.evaluate(rules, as_of=as_of)
    want = reference_segments(ws, messages, rules, as_of=as_of)
    assert list(got.columns) == ["person_id", *rules]
    assert list(got.person_id) == list(want.person_id)
    wrong = [(name, who, w, bool(g)) for name in rules
             for who, w, g in zip(want.person_id, want[name], got[name], strict=True) if bool(g) != w]
    assert not wrong, "\n".join(f"rule {name} = {rules[name]!r}: person {who} expected {w}, got {g}"
                                for name, who, w, g in wrong)
    return got


def members(frame: pd.DataFrame, rule: str) -> set[str]:
    return set(frame.person_id[frame[rule].astype(bool)])


def message(i: int, who: str, when: datetime, event: str | None = None, **extra: Any) -> dict[str, Any]:
    """A track (or, without ``event``, page) message of user ``who``."""
    msg: dict[str, Any] = {"messageId": f"h{i}", "userId": who, "timestamp": iso(when)}
    if event is None:
        return msg | {"type": "page", "name": "Home"} | extra
    return msg | {"type": "track", "event": event, "properties": {}} | extra


def identify(i: int, who: str, when: datetime, **traits: Any) -> dict[str, Any]:
    return {"messageId": f"h{i}", "type": "identify", "userId": who, "timestamp": iso(when), "traits": traits}


def order(i: int, who: str, when: datetime, order_id: str, *lines: tuple[str, float, int]) -> dict[str, Any]:
    products = [{"product_id": f"p{j}", "category": c, "price": p, "quantity": q} for j, (c, p, q) in enumerate(lines)]
    revenue = sum(p * q for _, p, q in lines)
    return message(i, who, when, "Order Completed", properties={"order_id": order_id, "revenue": revenue, "products": products})


# --- the reference, on random shops ---------------------------------------------------------------


@RANDOM
@given(shop=shops(), rules=rule_sets())
def test_compiled_rules_match_the_reference(shop: Shop, rules: dict[str, dict[str, Any]],
                                            tmp_path_factory: pytest.TempPathFactory) -> None:
    ws = open_shop(tmp_path_factory, shop.zone, shop.messages)
    try:
        assert_same_members(ws, shop.messages, rules, shop.as_of)
    finally:
        ws.close()


# --- edges the docs spell out ---------------------------------------------------------------------

AS_OF = datetime(2025, 3, 10, 12, tzinfo=UTC)


def test_missing_values_satisfy_no_comparison(tmp_path_factory: pytest.TempPathFactory) -> None:
    batch = [
        identify(1, "a", AS_OF - timedelta(days=9), country="US", plan="pro", age=30),
        identify(2, "b", AS_OF - timedelta(days=8), country="DE", age="unknown"),
        identify(3, "c", AS_OF - timedelta(days=7), plan="free", age=17),
        {"messageId": "h4", "type": "track", "event": "Signed Up", "anonymousId": "x0", "timestamp": iso(AS_OF - timedelta(days=1))},
    ]
    rules: dict[str, dict[str, Any]] = {
        "eq": {"field": "country", "op": "eq", "value": "US"},
        "ne": {"field": "country", "op": "ne", "value": "US"},
        "not_in": {"field": "country", "op": "not_in", "value": ["US"]},
        "unset": {"field": "country", "op": "is_not_set"},
        "not_eq": {"not": {"field": "country", "op": "eq", "value": "US"}},
        "plan_ne": {"trait": "plan", "op": "ne", "value": "pro"},
        "age_ne": {"trait": "age", "op": "ne", "value": 30},  # b's "unknown" is not a number
        "age_not_in": {"trait": "age", "op": "not_in", "value": [30, 45.5]},
        "age_unset": {"trait": "age", "op": "is_not_set"},
        "not_age_ne": {"not": {"trait": "age", "op": "ne", "value": 30}},
        "top_ne": {"field": "top_category", "op": "ne", "value": "Books"},  # nobody ordered
        "rfm_ne": {"field": "rfm_segment", "op": "ne", "value": "Champions"},
        "not_rfm": {"not": {"field": "rfm_segment", "op": "eq", "value": "Champions"}},
        "recency_not_between": {"not": {"field": "recency_days", "op": "between", "value": [0, 10]}},
    }
    ws = open_shop(tmp_path_factory, "UTC", batch)
    try:
        got = assert_same_members(ws, batch, rules, AS_OF)
    finally:
        ws.close()
    everyone = {"a", "b", "c", "x0"}
    assert members(got, "eq") == {"a"} and members(got, "ne") == {"b"} and members(got, "not_in") == {"b"}
    assert members(got, "unset") == {"c", "x0"} and members(got, "not_eq") == {"b", "c", "x0"}
    assert members(got, "plan_ne") == {"c"} and members(got, "age_ne") == {"c"} and members(got, "age_not_in") == {"c"}
    assert members(got, "age_unset") == {"x0"} and members(got, "not_age_ne") == {"a", "b", "x0"}
    assert members(got, "top_ne") == set() and members(got, "rfm_ne") == set()
    assert members(got, "not_rfm") == everyone and members(got, "recency_not_between") == everyone


def test_the_value_type_decides_how_traits_and_properties_are_read(tmp_path_factory: pytest.TempPathFactory) -> None:
    """docs: a number value reads numbers only, a boolean value the trait's true/false, anything else text.

    Like a trait that is not a number, a trait that is not a boolean ("yes") matches no boolean
    comparison, ``ne`` included.
    """
    day = timedelta(days=1)
    batch = [
        identify(1, "a", AS_OF - 5 * day, vip=True, age=30, plan="pro"),
        identify(2, "b", AS_OF - 5 * day, vip="yes", age="unknown", plan="free"),
        identify(3, "c", AS_OF - 5 * day, vip=False, age=45.5),
        message(4, "a", AS_OF - day, "Product Added", properties={"coupon": True}),
        message(5, "b", AS_OF - day, "Product Added", properties={"coupon": "SAVE10"}),
        message(6, "c", AS_OF - day, "Product Added", properties={"coupon": False}),
    ]
    rules: dict[str, dict[str, Any]] = {
        "vip": {"trait": "vip", "op": "eq", "value": True},
        "not_vip": {"trait": "vip", "op": "ne", "value": True},
        "vip_not_false": {"trait": "vip", "op": "ne", "value": False},
        "older": {"trait": "age", "op": "gt", "value": 20},
        "age_ne": {"trait": "age", "op": "ne", "value": 30},
        "age_text": {"trait": "age", "op": "eq", "value": "30"},
        "age_starts": {"trait": "age", "op": "starts_with", "value": "4"},
        "coupon": {"event": "Product Added", "where": [{"property": "coupon", "op": "eq", "value": True}]},
        "no_coupon": {"event": "Product Added", "where": [{"property": "coupon", "op": "ne", "value": True}]},
        "coupon_code": {"event": "Product Added", "where": [{"property": "coupon", "op": "in", "value": ["SAVE10", "X"]}]},
    }
    ws = open_shop(tmp_path_factory, "UTC", batch)
    try:
        got = assert_same_members(ws, batch, rules, AS_OF)
    finally:
        ws.close()
    assert members(got, "vip") == {"a"} and members(got, "not_vip") == {"c"} and members(got, "vip_not_false") == {"a"}
    assert members(got, "older") == {"a", "c"} and members(got, "age_ne") == {"c"}
    assert members(got, "age_text") == {"a"} and members(got, "age_starts") == {"c"}
    assert members(got, "coupon") == {"a"} and members(got, "no_coupon") == {"c"} and members(got, "coupon_code") == {"b"}


def test_counts_that_include_zero_include_people_who_never_did_it(tmp_path_factory: pytest.TempPathFactory) -> None:
    day = timedelta(days=1)
    batch = [
        message(1, "a", AS_OF - 3 * day, "Product Added", properties={"category": "Books"}),
        message(2, "a", AS_OF - 2 * day, "Product Added", properties={"category": "Games"}),
        message(3, "b", AS_OF - 2 * day, "Product Added", properties={"category": "Books"}),
        message(4, "c", AS_OF - 2 * day),
        order(5, "b", AS_OF - day, "o1", ("Books", 2.5, 1)),
    ]
    added = {"event": "Product Added"}
    rules: dict[str, dict[str, Any]] = {
        "eq0": added | {"count": {"op": "eq", "value": 0}},
        "lt2": added | {"count": {"op": "lt", "value": 2}},
        "lte0_books": added | {"where": [{"property": "category", "op": "eq", "value": "Books"}],
                               "count": {"op": "lte", "value": 0}},
        "between01": added | {"count": {"op": "between", "value": [0, 1]}},
        "not_in2": added | {"count": {"op": "not_in", "value": [2]}},
        "ne2": added | {"count": {"op": "ne", "value": 2}},
        "never": {"event": "Email Unsubscribed", "count": {"op": "eq", "value": 0}},
        "never_recent": added | {"within": "1d", "count": {"op": "lt", "value": 1}},
        "no_purchase": {"purchased": [], "count": {"op": "eq", "value": 0}},
        "default": added,
    }
    ws = open_shop(tmp_path_factory, "UTC", batch)
    try:
        got = assert_same_members(ws, batch, rules, AS_OF)
    finally:
        ws.close()
    assert members(got, "eq0") == {"c"} and members(got, "lt2") == {"b", "c"} and members(got, "lte0_books") == {"c"}
    assert members(got, "between01") == {"b", "c"} and members(got, "not_in2") == {"b", "c"}
    assert members(got, "ne2") == {"b", "c"} and members(got, "never") == {"a", "b", "c"}
    assert members(got, "never_recent") == {"a", "b", "c"} and members(got, "no_purchase") == {"a", "c"}
    assert members(got, "default") == {"a", "b"}


def test_not_followed_by_waits_for_the_follow_up_window(tmp_path_factory: pytest.TempPathFactory) -> None:
    """docs: no follow-up f with t < f <= t + within (f before as_of); counted once t + within <= as_of."""
    hour, day = timedelta(hours=1), timedelta(days=1)
    batch = [
        message(1, "fresh", AS_OF - hour, "Product Added"),  # an hour ago: not abandoned yet
        message(2, "gone", AS_OF - 3 * day, "Product Added"),
        message(3, "bought", AS_OF - 3 * day, "Product Added"),
        order(4, "bought", AS_OF - 3 * day + 2 * hour, "o1", ("Books", 2.5, 1)),
        message(5, "late", AS_OF - 3 * day, "Product Added"),
        order(6, "late", AS_OF - 3 * day + 25 * hour, "o2", ("Books", 2.5, 1)),  # after the 1d window
        message(7, "just", AS_OF - day - timedelta(seconds=1), "Product Added"),  # window passed a second ago
        message(8, "other", AS_OF - 3 * day, "Product Added"),
        order(9, "someone", AS_OF - 3 * day + hour, "o3", ("Books", 2.5, 1)),  # another person's order
        message(10, "books", AS_OF - 3 * day, "Product Added"),
        order(11, "books", AS_OF - 3 * day + hour, "o4", ("Games", 2.5, 1)),
        message(12, "edge", AS_OF - day, "Product Added"),  # its window ends exactly at as_of: counted
        message(13, "on_time", AS_OF - 3 * day, "Product Added"),
        order(14, "on_time", AS_OF - 2 * day, "o5", ("Books", 2.5, 1)),  # exactly 1d later: within 1d
    ]
    abandoned = {"event": "Product Added", "not_followed_by": {"event": "Order Completed", "within": "1d"}}
    rules: dict[str, dict[str, Any]] = {
        "abandoned": abandoned,
        "not_abandoned": abandoned | {"count": {"op": "eq", "value": 0}},
        "abandoned_paid": {"event": "Product Added", "not_followed_by": {
            "event": "Order Completed", "within": "1d",
            "where": [{"property": "revenue", "op": "gte", "value": 10}]}},
    }
    ws = open_shop(tmp_path_factory, "UTC", batch)
    try:
        got = assert_same_members(ws, batch, rules, AS_OF)
    finally:
        ws.close()
    assert members(got, "abandoned") == {"gone", "late", "just", "other", "edge"}
    assert members(got, "not_abandoned") == {"fresh", "bought", "someone", "books", "on_time"}
    assert members(got, "abandoned_paid") == {"gone", "bought", "late", "just", "other", "books", "on_time", "edge"}


def test_window_bounds_as_of_excluded_start_included(tmp_path_factory: pytest.TempPathFactory) -> None:
    week, tick = timedelta(days=7), timedelta(microseconds=1)
    batch = [
        message(1, "now", AS_OF - week, "Product Viewed"),
        message(2, "now", AS_OF, "Signed Up"),  # at as_of: not known yet
        message(3, "edge", AS_OF - week, "Signed Up"),
        message(4, "before", AS_OF - week - tick, "Signed Up"),
        message(5, "until", AS_OF - timedelta(days=1), "Signed Up"),
        message(6, "until_in", AS_OF - timedelta(days=1) - tick, "Signed Up"),
    ]
    signed = {"event": "Signed Up"}
    rules: dict[str, dict[str, Any]] = {
        "ever": signed,
        "within": signed | {"within": "7d"},
        "since": signed | {"since": "7d ago"},
        "since_ts": signed | {"since": iso(AS_OF - week)},
        "until": signed | {"until": "1d ago"},
        "slice": signed | {"since": "1w ago", "until": "24h ago"},
        "seen_since": {"field": "last_seen", "op": "gte", "value": "168h ago"},
    }
    ws = open_shop(tmp_path_factory, "UTC", batch)
    try:
        got = assert_same_members(ws, batch, rules, AS_OF)
    finally:
        ws.close()
    assert members(got, "ever") == {"edge", "before", "until", "until_in"}
    assert members(got, "within") == members(got, "since") == members(got, "since_ts") == {"edge", "until", "until_in"}
    assert members(got, "until") == {"edge", "before", "until_in"} and members(got, "slice") == {"edge", "until_in"}
    assert members(got, "seen_since") == {"now", "edge", "until", "until_in"}


def test_dates_and_windows_across_a_daylight_saving_change(tmp_path_factory: pytest.TempPathFactory) -> None:
    """New York moved to EDT on 2025-03-09: a day is still 24 hours, dates start at local midnight."""
    day = timedelta(days=1)
    batch = [
        message(1, "exact", AS_OF - day, "Signed Up"),  # 2025-03-09T12:00Z
        message(2, "early", AS_OF - day - timedelta(seconds=1), "Signed Up"),
        message(3, "today", datetime(2025, 3, 10, 4, tzinfo=UTC), "Signed Up"),  # local midnight (EDT)
        message(4, "yesterday", datetime(2025, 3, 10, 3, 59, 59, tzinfo=UTC), "Signed Up"),
        message(5, "sunday", datetime(2025, 3, 9, 5, tzinfo=UTC), "Signed Up"),  # local midnight (EST)
        message(6, "saturday", datetime(2025, 3, 9, 4, 59, 59, tzinfo=UTC), "Signed Up"),
    ]
    signed = {"event": "Signed Up"}
    rules: dict[str, dict[str, Any]] = {
        "within": signed | {"within": "1d"},
        "ago": signed | {"since": "1d ago"},
        "hours": signed | {"since": "24h ago"},
        "today": signed | {"since": "today"},
        "date": signed | {"since": "2025-03-09"},
        "before_today": signed | {"until": "today", "since": "2025-03-09"},
        "first_seen": {"field": "first_seen", "op": "between", "value": ["2025-03-09", "2025-03-10"]},
    }
    ws = open_shop(tmp_path_factory, "America/New_York", batch)
    try:
        got = assert_same_members(ws, batch, rules, AS_OF)
    finally:
        ws.close()
    assert members(got, "within") == members(got, "ago") == members(got, "hours") == {"exact", "today", "yesterday"}
    assert members(got, "today") == {"today"}
    assert members(got, "date") == {"exact", "early", "today", "yesterday", "sunday"}
    assert members(got, "before_today") == {"exact", "early", "yesterday", "sunday"}
    assert members(got, "first_seen") == {"exact", "early", "today", "yesterday", "sunday"}  # both ends included


def test_today_at_a_local_midnight_as_of_is_the_day_that_ended(tmp_path_factory: pytest.TempPathFactory) -> None:
    """``as_of`` is exclusive, so ``as_of`` = 2025-03-10 00:00 New York (a date 2025-03-09) has "today" = 03-09."""
    as_of = datetime(2025, 3, 10, 4, tzinfo=UTC)
    batch = [
        message(1, "start", datetime(2025, 3, 9, 5, tzinfo=UTC), "Signed Up"),  # 03-09 00:00 EST
        message(2, "before", datetime(2025, 3, 9, 4, 59, 59, tzinfo=UTC), "Signed Up"),
        message(3, "late", as_of - timedelta(seconds=1), "Signed Up"),
    ]
    rules: dict[str, dict[str, Any]] = {
        "today": {"event": "Signed Up", "since": "today"},
        "earlier": {"event": "Signed Up", "until": "today"},
        "seen_today": {"field": "first_seen", "op": "gte", "value": "today"},
    }
    ws = open_shop(tmp_path_factory, "America/New_York", batch)
    try:
        got = assert_same_members(ws, batch, rules, as_of)
    finally:
        ws.close()
    assert members(got, "today") == members(got, "seen_today") == {"start", "late"} and members(got, "earlier") == {"before"}


def test_sums_skip_properties_that_are_not_numbers(tmp_path_factory: pytest.TempPathFactory) -> None:
    day = timedelta(days=1)
    batch = [
        message(1, "a", AS_OF - 3 * day, "Product Added", properties={"revenue": 2.5}),
        message(2, "a", AS_OF - 2 * day, "Product Added", properties={"revenue": "n/a"}),
        message(3, "a", AS_OF - day, "Product Added", properties={"revenue": True}),
        message(4, "b", AS_OF - 2 * day, "Product Added", properties={"revenue": "lots"}),
        message(5, "b", AS_OF - day, "Product Added", properties={"revenue": "many"}),
        message(6, "c", AS_OF - day),
        message(7, "d", AS_OF - 2 * day, "Product Added", properties={"revenue": 4}),
        message(8, "d", AS_OF - day, "Product Added", properties={"revenue": 3.5}),
    ]
    added = {"event": "Product Added"}
    rules: dict[str, dict[str, Any]] = {
        "gt2": added | {"sum": {"property": "revenue", "op": "gt", "value": 2}},
        "gte3": added | {"sum": {"property": "revenue", "op": "gte", "value": 3}},
        "eq7_5": added | {"sum": {"property": "revenue", "op": "eq", "value": 7.5}},
        "lt1": added | {"sum": {"property": "revenue", "op": "lt", "value": 1}},
        "category": added | {"sum": {"property": "category", "op": "gt", "value": 0}},
    }
    ws = open_shop(tmp_path_factory, "UTC", batch)
    try:
        got = assert_same_members(ws, batch, rules, AS_OF)
    finally:
        ws.close()
    assert members(got, "gt2") == {"a", "d"} and members(got, "gte3") == {"d"} and members(got, "eq7_5") == {"d"}
    assert members(got, "lt1") == {"b", "c"} and members(got, "category") == set()


def test_purchases_read_lines_and_leave_out_cancelled_orders(tmp_path_factory: pytest.TempPathFactory) -> None:
    day = timedelta(days=1)
    batch = [
        order(1, "a", AS_OF - 9 * day, "o1", ("Books", 10, 3), ("Games", 2.5, 1)),
        order(2, "a", AS_OF - 5 * day, "o2", ("Books", 99.75, 1)),
        message(3, "a", AS_OF - 4 * day, "Order Cancelled", properties={"order_id": "o2"}),
        order(4, "b", AS_OF - 8 * day, "o3", ("Books", 2.5, 2)),
        message(5, "b", AS_OF + day, "Order Cancelled", properties={"order_id": "o3"}),  # after as_of
        message(6, "c", AS_OF - day),
        order(7, "c", AS_OF, "o4", ("Books", 99.75, 2)),  # at as_of
        order(8, "d", AS_OF - 6 * day, "o5", ("Garden", 10, 1)),
        message(9, "d", AS_OF - 5 * day, "Order Refunded", properties={"order_id": "o5"}),  # refunds do not remove lines
    ]
    books = [{"property": "category", "op": "eq", "value": "Books"}]
    rules: dict[str, dict[str, Any]] = {
        "any": {"purchased": []},
        "books": {"purchased": books},
        "books_gt_25": {"purchased": books, "sum": {"property": "revenue", "op": "gt", "value": 25}},
        "line_30": {"purchased": [{"property": "revenue", "op": "gte", "value": 30}]},
        "two_books": {"purchased": books, "count": {"op": "gte", "value": 2}},
        "none": {"purchased": [], "count": {"op": "eq", "value": 0}},
        "recent": {"purchased": [], "within": "7d"},
        "units": {"purchased": [], "sum": {"property": "quantity", "op": "eq", "value": 4}},
    }
    ws = open_shop(tmp_path_factory, "UTC", batch)
    try:
        got = assert_same_members(ws, batch, rules, AS_OF)
    finally:
        ws.close()
    assert members(got, "any") == {"a", "b", "d"} and members(got, "books") == {"a", "b"}
    assert members(got, "books_gt_25") == {"a"} and members(got, "line_30") == {"a"}
    assert members(got, "two_books") == set() and members(got, "none") == {"c"}
    assert members(got, "recent") == {"d"} and members(got, "units") == {"a"}


def test_segment_references_evaluate_in_the_same_call(tmp_path_factory: pytest.TempPathFactory) -> None:
    day = timedelta(days=1)
    batch = [
        order(1, "a", AS_OF - 40 * day, "o1", ("Books", 10, 1)),
        order(2, "b", AS_OF - 2 * day, "o2", ("Books", 10, 1)),
        message(3, "b", AS_OF - day, "Product Viewed"),
        message(4, "c", AS_OF - day, "Product Viewed"),
    ]
    rules: dict[str, dict[str, Any]] = {
        "buyers": {"purchased": []},
        "lapsed": {"all": [{"segment": "buyers"}, {"not": {"event": "Product Viewed", "within": "7d"}}]},
        "others": {"not": {"any": [{"segment": "lapsed"}, {"segment": "buyers"}]}},
        "new": {"segment": "Stage: New customer"},  # built-in segments are rules too
        "lead_or_lapsed": {"any": [{"segment": "Stage: Lead"}, {"segment": "lapsed"}]},
    }
    ws = open_shop(tmp_path_factory, "UTC", batch)
    try:
        got = assert_same_members(ws, batch, rules, AS_OF)
    finally:
        ws.close()
    assert members(got, "buyers") == {"a", "b"} and members(got, "lapsed") == {"a"} and members(got, "others") == {"c"}
    assert members(got, "new") == {"b"} and members(got, "lead_or_lapsed") == {"a", "c"}


def test_timestamps_take_eq_and_ne(tmp_path_factory: pytest.TempPathFactory) -> None:
    """docs: eq and ne take one value of every type, timestamps included."""
    batch = [message(1, "a", datetime(2025, 3, 1, tzinfo=UTC)), message(2, "b", datetime(2025, 3, 2, tzinfo=UTC))]
    rules: dict[str, dict[str, Any]] = {
        "eq": {"field": "first_seen", "op": "eq", "value": "2025-03-01"},
        "ne": {"field": "first_seen", "op": "ne", "value": "2025-03-01T00:00:00Z"},
        "ne_missing": {"field": "last_order_at", "op": "ne", "value": "2025-03-01"},
    }
    ws = open_shop(tmp_path_factory, "UTC", batch)
    try:
        got = assert_same_members(ws, batch, rules, AS_OF)
    finally:
        ws.close()
    assert members(got, "eq") == {"a"} and members(got, "ne") == {"b"} and members(got, "ne_missing") == set()


def test_model_scores_are_missing_until_a_model_scores_people(tmp_path_factory: pytest.TempPathFactory) -> None:
    """docs: model scores exist "once a model has scored the person"; before that they are missing values."""
    batch = [order(1, "a", AS_OF - timedelta(days=3), "o1", ("Books", 10, 1)), message(2, "b", AS_OF - timedelta(days=1))]
    rules: dict[str, dict[str, Any]] = {
        "scored": {"field": "churn_risk", "op": "is_set"},
        "risky": {"field": "p_alive", "op": "lt", "value": 0.5},
        "unscored": {"field": "clv_365d", "op": "is_not_set"},
        "not_likely": {"not": {"field": "propensity_30d", "op": "gte", "value": 0.5}},
    }
    ws = open_shop(tmp_path_factory, "UTC", batch)
    try:
        got = assert_same_members(ws, batch, rules, AS_OF)
    finally:
        ws.close()
    assert members(got, "scored") == members(got, "risky") == set()
    assert members(got, "unscored") == members(got, "not_likely") == {"a", "b"}


# --- rule errors ----------------------------------------------------------------------------------

ORDERS = {"field": "orders", "op": "gte", "value": 1}
BAD_RULES: list[tuple[str, object, str, str]] = [
    # (what, rule, the field of the error, a pattern its reason must match)
    ("unknown key", {"all": [ORDERS, {"field": "revenue", "op": "gt", "value": 1, "colour": "red"}]},
     "rule.all[1].colour", r"unknown key"),
    ("unknown key in an event", {"event": "Signed Up", "windw": "7d"}, "rule.windw", r"unknown key.*within"),
    ("two condition keys", {"any": [{"field": "orders", "op": "gte", "value": 1, "event": "Signed Up"}]},
     "rule.any[0]", r"(?=.*\bfield\b)(?=.*\bevent\b)"),
    ("no condition key", {"not": {"op": "eq", "value": 1}}, "rule.not", r"all|any|field|event"),
    ("unknown field", {"not": {"field": "revnue", "op": "gt", "value": 1}}, "rule.not.field", r"revnue"),
    ("unknown op", {"all": [ORDERS, {"field": "orders", "op": "greater", "value": 1}]}, "rule.all[1].op", r"greater"),
    ("op not for numbers", {"field": "revenue", "op": "contains", "value": "1"}, "rule.op", r"contains"),
    ("op not for strings", {"any": [ORDERS, {"field": "country", "op": "gt", "value": "DE"}]}, "rule.any[1].op", r"\bgt\b"),
    ("op not for a bool", {"field": "identified", "op": "in", "value": [True]}, "rule.op", r"\bin\b"),
    ("op not for a string trait", {"trait": "plan", "op": "gte", "value": "pro"}, "rule.op", r"gte"),
    ("op not for a count", {"event": "Signed Up", "count": {"op": "contains", "value": "1"}}, "rule.count.op",
     r"contains"),
    ("wrong value type", {"not": {"field": "revenue", "op": "gt", "value": "lots"}}, "rule.not.value",
     r"number|numeric"),
    ("bool field, number value", {"field": "identified", "op": "eq", "value": 1}, "rule.value", r"bool|true"),
    ("missing value", {"field": "revenue", "op": "gt"}, "rule.value", r"value|required|missing"),
    ("empty in list", {"field": "country", "op": "in", "value": []}, "rule.value", r"empty|at least one"),
    ("bad duration", {"any": [{"event": "Signed Up", "within": "30x"}]}, "rule.any[0].within", r"30x"),
    ("bad follow-up duration", {"event": "Product Added", "not_followed_by": {"event": "Order Completed", "within": "1 day"}},
     "rule.not_followed_by.within", r"1 day"),
    ("bad date", {"field": "first_seen", "op": "gt", "value": "last tuesday"}, "rule.value", r"last tuesday"),
    ("bad since", {"not": {"event": "Signed Up", "since": "2025-13-01"}}, "rule.not.since", r"2025-13-01"),
    ("bad relative date", {"purchased": [], "since": "3y ago"}, "rule.since", r"3y ago"),
    ("empty all", {"all": []}, "rule.all", r"empty|at least one"),
    ("empty any", {"not": {"any": []}}, "rule.not.any", r"empty|at least one"),
    ("not a mapping", {"all": [ORDERS, "orders > 1"]}, "rule.all[1]", r"mapping|object|dict"),
    ("rule not a mapping", ["orders > 1"], "rule", r"mapping|object|dict"),
    ("between with one value", {"field": "revenue", "op": "between", "value": [10]}, "rule.value",
     r"two|\b2\b|pair|\[low, high\]"),
    ("stage value", {"all": [ORDERS, {"field": "stage", "op": "eq", "value": "at risk"}]}, "rule.all[1].value",
     r"(?=.*Visitor)(?=.*at risk)"),
    ("stage list value", {"field": "stage", "op": "in", "value": ["Lead", "Whale"]}, "rule.value[1]", r"Whale"),
    ("rfm segment value", {"field": "rfm_segment", "op": "eq", "value": "Champion"}, "rule.value",
     r"(?=.*Champions)(?=.*Champion\b)"),
    ("bad where filter", {"event": "Product Added", "where": [{"property": "category", "op": "eq"}]},
     "rule.where[0].value", r"value|required|missing"),
    ("unknown line property", {"purchased": [{"property": "colour", "op": "eq", "value": "red"}]},
     "rule.purchased[0].property", r"colour"),
    ("purchased not a list", {"purchased": {"property": "category", "op": "eq", "value": "Books"}}, "rule.purchased",
     r"list"),
]


@pytest.mark.parametrize(("rule", "field", "reason"), [case[1:] for case in BAD_RULES], ids=[c[0] for c in BAD_RULES])
def test_bad_rules_name_the_place_and_the_reason(rule: object, field: str, reason: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_rule(rule)
    assert caught.value.field == field, str(caught.value)
    assert re.search(reason, caught.value.reason, re.IGNORECASE), str(caught.value)


@pytest.fixture
def engineless(sqlite_workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """A workspace whose engine must not be opened: errors come before anything runs."""

    def engine() -> None:
        raise AssertionError("the engine was opened before the rules were checked")

    monkeypatch.setattr(sqlite_workspace, "engine", engine)
    return sqlite_workspace


@pytest.mark.parametrize("rule", [case[1] for case in BAD_RULES], ids=[c[0] for c in BAD_RULES])
def test_evaluate_refuses_bad_rules_before_running(engineless: Workspace, rule: object) -> None:
    with pytest.raises(ValidationError) as parsed:
        parse_rule(rule)
    with pytest.raises(ValidationError) as caught:
        engineless.segments.evaluate({"ok": ORDERS, "x": rule}, as_of=AS_OF)  # type: ignore[dict-item]
    assert caught.value.reason == parsed.value.reason
    assert caught.value.field.endswith(parsed.value.field.removeprefix("rule")), str(caught.value)


CYCLES = {
    "two": {"alpha": {"segment": "beta"}, "beta": {"segment": "alpha"}},
    "itself": {"alpha": {"not": {"segment": "alpha"}}},
    "three": {"alpha": {"all": [ORDERS, {"segment": "gamma"}]}, "beta": {"segment": "alpha"},
              "gamma": {"any": [{"event": "Signed Up"}, {"not": {"segment": "beta"}}]}},
}


@pytest.mark.parametrize("rules", list(CYCLES.values()), ids=list(CYCLES))
def test_cycles_are_refused_by_name(sqlite_workspace: Workspace, rules: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as caught:
        sqlite_workspace.segments.evaluate(rules, as_of=AS_OF)
    text = str(caught.value)
    assert re.search(r"cycle|circular|itself", text, re.IGNORECASE), text
    assert all(name in text for name in rules), text


def test_unknown_segment_references_are_refused(sqlite_workspace: Workspace) -> None:
    with pytest.raises(ValidationError, match="nope"):
        sqlite_workspace.segments.evaluate({"x": {"all": [ORDERS, {"segment": "nope"}]}}, as_of=AS_OF)


@pytest.mark.parametrize("rules", [*CYCLES.values(), {"x": {"segment": "nope"}}], ids=[*CYCLES, "unknown"])
def test_reference_errors_come_before_anything_runs(engineless: Workspace, rules: dict[str, Any]) -> None:
    """docs: "A rule is checked completely before anything runs" -- segment references included."""
    with pytest.raises(ValidationError):
        engineless.segments.evaluate(rules, as_of=AS_OF)
