"""Paths: what people do right after (or before) an event, as Sankey-ready links and nodes.

Rules:

* Only named events count (track events, and pages/screens with a name); identify, alias and
  group calls are not steps. A person's events are ordered by ``(timestamp, message_id)``.
* A session ends where two consecutive events are more than ``session_gap`` apart (a gap of
  exactly ``session_gap`` stays in the session). Paths never leave the anchor's session.
* Every occurrence of ``event`` in ``[start, end)`` is an anchor, and each anchor is one path;
  the events it follows may fall after ``end`` (or before ``start``).
* Step 0 is the anchor; step *s* is the *s*-th event after it (``"next"``) or before it
  (``"previous"``). Links go from step *s-1* to step *s*, so for ``"previous"`` the source is
  the event nearer the anchor.
* At each step the ``top_n`` most frequent names keep their name (ties by name) and the rest
  become ``"Other"``; a path shorter than ``depth`` gets one link to ``"(end)"``.
* Node ids are ``"<step>:<name>"`` so that a name at two steps is two Sankey nodes.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import ibis
import ibis.expr.types as ir

from tenure.analytics._time import check_range, instant, unix_micros
from tenure.errors import ValidationError
from tenure.store.engine import LakeTables

DIRECTIONS = ("next", "previous")
OTHER = "Other"
END = "(end)"
MAX_DEPTH = 20


def path_links(
    t: LakeTables,
    *,
    event: str,
    direction: str = "next",
    depth: int = 3,
    top_n: int = 5,
    start: datetime,
    end: datetime,
    session_gap: timedelta = timedelta(minutes=30),
) -> ir.Table:
    """Counted links between consecutive steps of the paths from (or to) ``event``.

    Columns: step, source_node, target_node, source, target, count.
    """
    _check(event, direction, depth, top_n, start, end, session_gap)
    events = _sessions(t.events, session_gap)
    steps = _labelled(_hops(events, event, start, end, direction, depth), event, top_n)
    moves = steps.filter(steps.step.notnull()).select("step", "source", target=steps.label)
    last = steps.filter(steps._last & (steps._length < depth))
    ends = last.select(step=last._length + 1, source=last.label.fill_null(event), target=ibis.literal(END))
    path = ibis.union(moves, ends, distinct=False)
    links = path.group_by("step", "source", "target").aggregate(count=ibis._.count().cast("int64"))
    out = links.select(
        "step",
        source_node=_node(links.step - 1, links.source),
        target_node=_node(links.step, links.target),
        source=links.source,
        target=links.target,
        count=links["count"],
    )
    return out.order_by(["step", ibis.desc("count"), "source", "target"])


def path_nodes(links: ir.Table) -> ir.Table:
    """Sankey nodes for ``path_links`` output: the anchor (step 0) and every target, with path counts."""
    count = links["count"]
    targets = links.group_by(node=links.target_node, step=links.step, name=links.target).aggregate(
        count=count.sum().cast("int64")
    )
    first = links.filter(links.step == 1)
    anchor = first.group_by(node=first.source_node, name=first.source).aggregate(
        count=first["count"].sum().cast("int64")
    )
    anchor = anchor.select("node", step=ibis.literal(0, "int64"), name=anchor.name, count=anchor["count"])
    nodes = ibis.union(anchor, targets.select("node", "step", "name", "count"), distinct=False)
    return nodes.order_by(["step", ibis.desc("count"), "name"])


def _check(
    event: str, direction: str, depth: int, top_n: int, start: datetime, end: datetime, session_gap: timedelta
) -> None:
    if not event:
        raise ValidationError("event", "must name an event")
    if direction not in DIRECTIONS:
        raise ValidationError("direction", f"must be one of {', '.join(DIRECTIONS)}; got {direction!r}")
    if not 1 <= depth <= MAX_DEPTH:
        raise ValidationError("depth", f"must be between 1 and {MAX_DEPTH}; got {depth}")
    if top_n < 1:
        raise ValidationError("top_n", f"must be at least 1; got {top_n}")
    check_range(start, end)
    if session_gap <= timedelta(0):
        raise ValidationError("session_gap", f"must be positive; got {session_gap}")


def _sessions(events: ir.Table, gap: timedelta) -> ir.Table:
    """Named events with their position and session number within the person's history."""
    named = events.filter(events.event.notnull(), events.person_id.notnull())
    named = named.select("person_id", "message_id", "event", at=named.timestamp, us=unix_micros(named.timestamp))
    order = [named.us, named.message_id]
    previous = named.us.lag().over(group_by=named.person_id, order_by=order)
    limit = gap // timedelta(microseconds=1)
    starts = ibis.cases((previous.isnull() | (named.us - previous > limit), 1), else_=0)
    named = named.mutate(pos=ibis.row_number().over(group_by=named.person_id, order_by=order), _starts=starts)
    running = ibis.window(group_by=named.person_id, order_by=named.pos, rows=(None, 0))
    return named.mutate(session=named._starts.sum().over(running)).drop("_starts")


def _hops(events: ir.Table, event: str, start: datetime, end: datetime, direction: str, depth: int) -> ir.Table:
    """One row per anchor and step (the event ``step`` positions away in the same session);
    an anchor with no such event keeps one row with a null step.

    The k-th neighbour is a ``lead``/``lag`` over the session, so the cost is events × depth
    rather than a join of every anchor with its whole session.
    """
    session = ibis.window(group_by=[events.person_id, events.session], order_by=events.pos)
    names = {
        f"_h{k}": (events.event.lead(k) if direction == "next" else events.event.lag(k)).over(session)
        for k in range(1, depth + 1)
    }
    anchors = events.mutate(**names)
    anchors = anchors.filter(anchors.event == event, anchors.at >= instant(start), anchors.at < instant(end))
    key = {"_a_person": anchors.person_id, "_a_pos": anchors.pos}
    parts = [
        anchors.filter(anchors[f"_h{k}"].notnull()).select(
            **key, step=ibis.literal(k, "int64"), name=anchors[f"_h{k}"]
        )
        for k in range(1, depth + 1)
    ]
    lonely = anchors.filter(anchors._h1.isnull()).select(**key, step=ibis.null("int64"), name=ibis.null("string"))
    return ibis.union(*parts, lonely, distinct=False)


def _labelled(hops: ir.Table, event: str, top_n: int) -> ir.Table:
    """Hops with ``label`` (the name if among the step's ``top_n`` most frequent, else "Other"),
    ``source`` (the previous step's label), the path's ``_length`` and whether a row is its ``_last``."""
    anchor = [hops._a_person, hops._a_pos]
    hops = hops.mutate(
        _n=hops.step.count().over(group_by=[hops.step, hops.name]),
        _length=hops.step.count().over(group_by=anchor).cast("int64"),
    )
    rank = ibis.dense_rank().over(group_by=hops.step, order_by=[ibis.desc(hops._n), hops.name])
    label = ibis.cases((hops.step.isnull(), ibis.null("string")), (rank < top_n, hops.name), else_=ibis.literal(OTHER))
    hops = hops.mutate(label=label)
    source = hops.label.lag().over(group_by=[hops._a_person, hops._a_pos], order_by=hops.step)
    last = hops.step.isnull() | (hops.step == hops._length)
    return hops.mutate(source=ibis.coalesce(source, ibis.literal(event)), _last=last)


def _node(step: ir.IntegerValue, name: ir.StringValue) -> ir.StringValue:
    result: ir.StringValue = step.cast("string").concat(":", name)
    return result
