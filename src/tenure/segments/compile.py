"""Compile parsed rules into one Ibis query that says, per person, which segments they are in.

Many segments are evaluated together because they share their inputs: the person features,
stages and RFM scores are joined once, and every event condition of every rule becomes one
conditional aggregate of a single pass over the events (likewise purchases). A rule then is a
boolean expression over that wide per-person table. Leaves treat a missing value as "does not
hold" (``fill_null(False)``), so ``not`` means "everyone else".
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import ibis
import ibis.expr.types as ir

from tenure.analytics._json import json_field
from tenure.analytics._orders import orders_as_of
from tenure.analytics._time import check_instant, instant, starting, unix_micros
from tenure.analytics.features import known_activity, person_features
from tenure.analytics.rfm import rfm_scores
from tenure.analytics.stages import lifecycle_stages
from tenure.config import LifecycleSettings
from tenure.errors import ValidationError
from tenure.segments.rules import (
    FEATURE_FIELDS,
    RFM_FIELDS,
    SCORE_FIELDS,
    All,
    AnyOf,
    Compare,
    Condition,
    DateSpec,
    DidEvent,
    FieldIs,
    InSegment,
    Measure,
    Not,
    PropertyIs,
    Purchased,
    TraitIs,
    Window,
    segment_references,
)
from tenure.store.engine import LakeTables

Predicate = Callable[[ir.Table], ir.BooleanValue]


@dataclass(frozen=True)
class EvaluationContext:
    """What rules are evaluated against.

    ``definitions`` resolves ``segment: NAME`` to a rule (inlined); ``stored`` resolves it to a
    table of current members (``person_id``), for segments that are not rules (clusters).
    ``scores`` holds model scores as (person_id, name, value) rows.
    """

    as_of: datetime
    timezone: str
    lifecycle: LifecycleSettings
    rfm_bins: int = 5
    definitions: Mapping[str, Condition] = field(default_factory=dict)
    stored: Mapping[str, ir.Table] = field(default_factory=dict)
    scores: ir.Table | None = None


def check_references(
    rules: Mapping[str, Condition], definitions: Mapping[str, Condition], stored: Collection[str]
) -> None:
    """Every ``segment:`` reference resolves (to a rule or a ``stored`` segment), without cycles."""
    known = {**definitions, **rules}

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if name in trail:
            cycle = " -> ".join((*trail[trail.index(name):], name))
            raise ValidationError(f"segments.{trail[0]}", f"refers to itself: {cycle}")
        rule = known.get(name)
        if rule is None:
            if name in stored:
                return
            raise ValidationError(f"segments.{trail[-1]}", f"refers to unknown segment {name!r}")
        for ref in sorted(segment_references(rule)):
            visit(ref, (*trail, name))

    for name in rules:
        visit(name, ())


def evaluate_segments(t: LakeTables, rules: Mapping[str, Condition], ctx: EvaluationContext) -> ir.Table:
    """``person_id`` and one boolean column ``s0, s1, …`` per rule (in ``rules`` order).

    One row per person with an event or order before ``as_of``. Columns are positional so that
    any segment name works on every engine; the caller maps them back to names.
    """
    check_instant(ctx.as_of, "as_of")
    check_references(rules, ctx.definitions, ctx.stored.keys())
    compiler = _Compiler(t, ctx, {**ctx.definitions, **rules})
    predicates = [compiler.condition(rule) for rule in rules.values()]
    wide = compiler.wide_table()
    return wide.select("person_id", **{f"s{i}": pred(wide) for i, pred in enumerate(predicates)})


class _Compiler:
    """Walks conditions, noting the inputs they need, and returns predicates over the wide table."""

    def __init__(self, t: LakeTables, ctx: EvaluationContext, definitions: Mapping[str, Condition]) -> None:
        self.t = t
        self.ctx = ctx
        self.definitions = definitions
        self.cut = instant(ctx.as_of)
        self.fields: set[str] = set()
        self.traits: set[str] = set()
        self.event_measures: list[tuple[DidEvent, str]] = []
        self.purchase_measures: list[tuple[Purchased, str]] = []
        self.sequences: list[tuple[DidEvent, str]] = []
        self.stored: dict[str, str] = {}
        self.inlined: dict[str, Predicate] = {}

    # -- conditions -> predicates --------------------------------------------------------
    def condition(self, c: Condition) -> Predicate:
        if isinstance(c, All | AnyOf):
            parts = [self.condition(p) for p in c.parts]
            if isinstance(c, All):
                return lambda w: _reduce(parts, w, lambda a, b: a & b)
            return lambda w: _reduce(parts, w, lambda a, b: a | b)
        if isinstance(c, Not):
            inner = self.condition(c.part)
            return lambda w: ~inner(w)
        if isinstance(c, FieldIs):
            self.fields.add(c.name)
            column = f"f_{c.name}"
            return lambda w: self.compare(w[column], c.compare)
        if isinstance(c, TraitIs):
            self.traits.add(c.name)
            column = f"t_{c.name}"
            return lambda w: self.compare_json(w[column], c.compare)
        if isinstance(c, DidEvent):
            column = self._column()
            (self.sequences if c.not_followed_by else self.event_measures).append((c, column))
            return self._measured(column, c.measure)
        if isinstance(c, Purchased):
            column = self._column()
            self.purchase_measures.append((c, column))
            return self._measured(column, c.measure)
        return self._segment(c)

    def _column(self) -> str:
        return f"m{len(self.event_measures) + len(self.purchase_measures) + len(self.sequences)}"

    def _measured(self, column: str, measure: Measure) -> Predicate:
        # A person without matching rows has a count (and sum) of zero.
        return lambda w: self.compare(w[column].fill_null(0).cast("float64"), measure.compare)

    def _segment(self, c: InSegment) -> Predicate:
        rule = self.definitions.get(c.name)
        if rule is None:
            column = self.stored.setdefault(c.name, f"g{len(self.stored)}")
            return lambda w: w[column].notnull()
        if c.name not in self.inlined:
            self.inlined[c.name] = self.condition(rule)
        return self.inlined[c.name]

    # -- comparisons ---------------------------------------------------------------------
    def compare(self, value: ir.Value, cmp: Compare) -> ir.BooleanValue:
        """``value op cmp.value``; null values make the comparison false."""
        if cmp.op == "is_set":
            return value.notnull()
        if cmp.op == "is_not_set":
            return value.isnull()
        target = cmp.value
        if cmp.kind == "timestamp":
            target = tuple(map(self.instant, target)) if isinstance(target, tuple) else self.instant(target)
        result = _apply(value, cmp.op, target)
        return result.fill_null(False)

    def compare_json(self, raw: ir.StringValue, cmp: Compare) -> ir.BooleanValue:
        """A JSON field (trait or property), read in the type of the value it is compared with."""
        if cmp.kind == "number":
            return self.compare(raw.try_cast("float64"), cmp)
        if cmp.kind == "bool" and cmp.op in ("eq", "ne"):
            # Only a JSON boolean is a boolean: "yes" is neither true nor false.
            as_text = self.compare(raw, Compare(cmp.op, "string", "true" if cmp.value else "false"))
            return as_text & raw.isin(["true", "false"]).fill_null(False)
        return self.compare(raw, cmp)

    def instant(self, spec: DateSpec) -> ir.TimestampScalar:
        return instant(resolve_date(spec, self.ctx.as_of, self.ctx.timezone))

    def in_window(self, ts: ir.TimestampValue, window: Window) -> ir.BooleanValue:
        cond = ts < self.cut
        if window.since is not None:
            cond &= ts >= self.instant(window.since)
        if window.until is not None:
            cond &= ts < self.instant(window.until)
        return cond

    def filters(self, table: ir.Table, where: tuple[PropertyIs, ...], column: str | None) -> ir.BooleanValue:
        """Every filter on a JSON ``column`` of ``table`` (or on its typed columns when None)."""
        cond: ir.BooleanValue = ibis.literal(True)
        for f in where:
            if column is None:
                cond &= self.compare(table[f.name], f.compare)
            else:
                cond &= self.compare_json(json_field(table[column], f.name), f.compare)
        return cond

    # -- the wide per-person table -------------------------------------------------------
    def wide_table(self) -> ir.Table:
        wide = self._base()
        for part in self._parts():
            wide = wide.left_join(part, "person_id").drop("person_id_right")
        return wide

    def _base(self) -> ir.Table:
        features = sorted(self.fields & FEATURE_FIELDS.keys())
        if features:
            people = person_features(self.t, as_of=self.ctx.as_of)
            return people.select("person_id", **{f"f_{n}": people[n] for n in features})
        return known_activity(self.t, cut=self.cut).select("person_id").distinct()

    def _parts(self) -> list[ir.Table]:
        t, ctx = self.t, self.ctx
        parts = []
        if "stage" in self.fields:
            stages = lifecycle_stages(t, as_of=ctx.as_of, lifecycle=ctx.lifecycle)
            parts.append(stages.select("person_id", f_stage="stage"))
        rfm = sorted(self.fields & RFM_FIELDS.keys())
        if rfm:
            scores = rfm_scores(t, as_of=ctx.as_of, bins=ctx.rfm_bins).rename(rfm_segment="segment")
            parts.append(scores.select("person_id", **{f"f_{n}": scores[n].cast("float64") if n != "rfm_segment" else scores[n] for n in rfm}))
        models = sorted(self.fields & SCORE_FIELDS.keys())
        if models:
            parts.append(self._model_scores(models))
        if self.traits:
            users = t.users
            parts.append(users.select("person_id", **{f"t_{n}": json_field(users.traits, n) for n in sorted(self.traits)}))
        if self.event_measures:
            parts.append(self._event_aggregates())
        parts.extend(self._sequence(c, column) for c, column in self.sequences)
        if self.purchase_measures:
            parts.append(self._purchase_aggregates())
        for name, column in self.stored.items():
            members = ctx.stored[name]
            parts.append(members.select("person_id", **{column: ibis.literal(True)}).distinct())
        return parts

    def _model_scores(self, names: list[str]) -> ir.Table:
        scores = self.ctx.scores
        if scores is None:  # nobody is scored yet: every score is missing
            scores = ibis.memtable({"person_id": [], "name": [], "value": []},
                                   schema={"person_id": "string", "name": "string", "value": "float64"})
        return scores.group_by("person_id").aggregate(
            **{f"f_{n}": scores.value.max(where=scores.name == n).cast("float64") for n in names}
        )

    def _event_aggregates(self) -> ir.Table:
        """Every plain event condition as a conditional aggregate of one pass over the events."""
        e = self.t.events
        names = sorted({c.event for c, _ in self.event_measures})
        e = e.filter(e.person_id.notnull(), e.timestamp < self.cut, e.event.isin(names))
        return e.group_by("person_id").aggregate(
            **{column: self._aggregate(e, c, self.in_window(e.timestamp, c.window) & (e.event == c.event)
                                       & self.filters(e, c.where, "properties"), count=e.message_id.count)
               for c, column in self.event_measures}
        )

    def _aggregate(self, rows: ir.Table, c: DidEvent | Purchased, where: ir.BooleanValue,
                   count: Callable[..., ir.IntegerScalar]) -> ir.NumericScalar:
        if c.measure.kind == "count":
            return count(where=where)
        assert c.measure.property is not None
        amount = self._number(rows, c, c.measure.property)
        return amount.sum(where=where)

    def _number(self, rows: ir.Table, c: DidEvent | Purchased, name: str) -> ir.FloatingValue:
        if isinstance(c, Purchased):
            return rows[name].cast("float64")
        return json_field(rows.properties, name).try_cast("float64")

    def _sequence(self, c: DidEvent, column: str) -> ir.Table:
        """Anchor events not followed by the follow-up within its duration, then measured.

        The join is on the person alone, with the time condition as a filter afterwards (a
        range condition in the join would make DuckDB fall back to a nested-loop join).
        """
        assert c.not_followed_by is not None
        follow = c.not_followed_by
        span = int(follow.within / timedelta(microseconds=1))
        e = self.t.events.filter(self.t.events.person_id.notnull())
        anchors = e.filter(
            e.event == c.event,
            self.in_window(e.timestamp, c.window),
            unix_micros(e.timestamp) + span <= unix_micros(self.cut),
            self.filters(e, c.where, "properties"),
        )
        nexts = e.filter(e.event == follow.event, e.timestamp < self.cut, self.filters(e, follow.where, "properties"))
        nexts = nexts.select(_f_person="person_id", _f_at=unix_micros(nexts.timestamp))
        firsts = anchors.select("message_id", "person_id", _a_at=unix_micros(anchors.timestamp))
        pairs = firsts.inner_join(nexts, firsts.person_id == nexts._f_person)
        followed = pairs.filter(pairs._f_at > pairs._a_at, pairs._f_at <= pairs._a_at + span).select(
            _followed="message_id"
        ).distinct()
        kept = anchors.anti_join(followed, anchors.message_id == followed._followed)
        return kept.group_by("person_id").aggregate(
            **{column: self._aggregate(kept, c, ibis.literal(True), count=kept.message_id.count)}
        )

    def _purchase_aggregates(self) -> ir.Table:
        """Every purchase condition as a conditional aggregate over order lines known at ``as_of``."""
        known = orders_as_of(self.t, as_of=self.ctx.as_of).select(_order="order_id", person_id="person_id",
                                                                  _at="timestamp")
        lines = self.t.order_items.drop("person_id", "timestamp")
        lines = lines.inner_join(known, lines.order_id == known._order)
        lines = lines.mutate(revenue=lines.price * lines.quantity)
        return lines.group_by("person_id").aggregate(
            **{column: self._aggregate(lines, c, self.in_window(lines._at, c.window) & self.filters(lines, c.where, None),
                                       count=lines.order_id.nunique)
               for c, column in self.purchase_measures}
        )


def resolve_date(spec: DateSpec, as_of: datetime, timezone: str) -> datetime:
    """The UTC instant of a rule date: dates start at local midnight, ``ago`` counts back from ``as_of``."""
    if spec.ago is not None:
        return as_of - spec.ago
    if spec.today:
        last_day = (as_of - timedelta(microseconds=1)).astimezone(ZoneInfo(timezone)).date()
        return datetime.combine(last_day, time(), tzinfo=ZoneInfo(timezone)).astimezone(UTC)
    assert spec.absolute is not None
    return starting(spec.absolute, timezone)


def _apply(value: Any, op: str, target: Any) -> ir.BooleanValue:
    """``value op target`` for an Ibis column (typed loosely: ops differ per column type)."""
    if op == "eq":
        return value == target
    if op == "ne":
        return value != target
    if op == "gt":
        return value > target
    if op == "gte":
        return value >= target
    if op == "lt":
        return value < target
    if op == "lte":
        return value <= target
    if op == "between":
        low, high = target
        return (value >= low) & (value <= high)
    if op == "in":
        return value.isin(list(target))
    if op == "not_in":
        return value.notin(list(target))
    if op == "contains":
        return value.contains(target)
    return value.startswith(target)


def _reduce(parts: list[Predicate], w: ir.Table, combine: Callable[[ir.BooleanValue, ir.BooleanValue], ir.BooleanValue]) -> ir.BooleanValue:
    result = parts[0](w)
    for part in parts[1:]:
        result = combine(result, part(w))
    return result
