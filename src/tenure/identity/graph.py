"""The identity graph: links between identifiers, merged with union-find, undoable.

Each link is evidence that two identifiers are one person (an identify or track carrying
both a userId and an anonymousId, or an alias). A person is a connected component of active
links. Its canonical id is the *user side* of the component's earliest link (by event time,
then id), so the id is a known user id whenever there is one and does not depend on the order
in which evidence arrived: the incremental merge and a full rebuild agree.

Unmerging deactivates one link and splits its component again. Attribution happens at query
time through ``identity_map``, so history is re-attributed as if the merge never happened; the
link stays recorded (inactive), so the same evidence arriving again does not re-merge.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tenure.clock import Clock, SystemClock, as_utc
from tenure.errors import NotFoundError
from tenure.store.state import StateDB, identity_links, identity_map, in_chunks

_Candidate = tuple[tuple[datetime, str], str]  # ((linked_at, user side), canonical id)


@dataclass(frozen=True, slots=True)
class Link:
    """Evidence that ``user_side`` and ``other`` are one person."""

    user_side: str
    other: str
    kind: str
    message_id: str | None
    linked_at: datetime

    @property
    def rank(self) -> tuple[datetime, str]:
        return (self.linked_at, self.user_side)


def links_from_records(records: Iterable[dict[str, object]]) -> list[Link]:
    """The links a batch of canonical records carries."""
    out = []
    for rec in records:
        user_id = rec.get("user_id")
        other = rec.get("previous_id") if rec["type"] == "alias" else rec.get("anonymous_id")
        if user_id and other and user_id != other:
            out.append(
                Link(str(user_id), str(other), str(rec["type"]), rec.get("message_id"), _as_datetime(rec["timestamp"]))  # type: ignore[arg-type]
            )
    return out


def _as_datetime(value: object) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


class _UnionFind:
    """Disjoint sets with path halving and union by size: near-constant time per operation."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}
        self.size: dict[str, int] = {}

    def find(self, x: str) -> str:
        parent = self.parent
        if x not in parent:
            parent[x] = x
            self.size[x] = 1
            return x
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if self.size[ra] < self.size[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.size[ra] += self.size[rb]

    def components(self) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for x in list(self.parent):
            groups.setdefault(self.find(x), []).append(x)
        return groups


@dataclass(frozen=True, slots=True)
class MergePlan:
    """What recording some links changes: the new links and the identifiers' new persons."""

    links: tuple[Link, ...] = ()
    assignment: Mapping[str, str] = field(default_factory=dict)
    previous: Mapping[str, str] = field(default_factory=dict)


class IdentityGraph:
    """Reads and changes the identity graph in the state DB.

    Changes are made under ``lock`` (the lake's writer lock), so a merge can be planned with
    reads only and then applied in a short write transaction: the collector's inbox commits
    never wait behind the union-find.
    """

    def __init__(
        self, state: StateDB, clock: Clock | None = None, lock: Callable[[], AbstractContextManager[None]] | None = None
    ) -> None:
        self.state = state
        self.clock = clock or SystemClock()
        self.lock = lock or nullcontext

    # -- merging ---------------------------------------------------------------------------
    def plan(self, links: Sequence[Link]) -> MergePlan:
        """Work out what recording ``links`` changes; call under ``lock``, then ``apply``."""
        if not links:
            return MergePlan()
        with self.state.read() as conn:
            return self._plan(conn, links)

    def apply(self, conn: Connection, plan: MergePlan) -> None:
        """Write a plan inside the caller's transaction."""
        if plan.links:
            conn.execute(
                identity_links.insert(),
                [
                    {
                        "id_a": ln.user_side,
                        "id_b": ln.other,
                        "kind": ln.kind,
                        "message_id": ln.message_id,
                        "linked_at": ln.linked_at,
                        "active": True,
                    }
                    for ln in plan.links
                ],
            )
        _write_assignment(conn, plan.assignment, plan.previous)

    def add_links(self, conn: Connection, links: Sequence[Link]) -> int:
        """Plan and apply in the caller's transaction (for callers already holding ``lock``)."""
        plan = self._plan(conn, links)
        self.apply(conn, plan)
        return len(plan.links)

    def _plan(self, conn: Connection, links: Sequence[Link]) -> MergePlan:
        fresh = self._new_links(conn, links)
        if not fresh:
            return MergePlan()
        ids = {x for ln in fresh for x in (ln.user_side, ln.other)}
        persons = set(_map_of(conn, ids).values())
        members = _members_of(conn, persons)
        uf = _UnionFind()
        for identifier, person in members.items():
            uf.union(identifier, person)
        for ln in fresh:
            uf.union(ln.user_side, ln.other)
        best: dict[str, _Candidate] = {}
        candidates = [*_earliest_links(conn, persons), *((ln.rank, ln.user_side) for ln in fresh)]
        for candidate in candidates:
            root = uf.find(candidate[1])
            if root not in best or candidate < best[root]:
                best[root] = candidate
        assignment = {x: best[uf.find(x)][1] for x in uf.parent}
        return MergePlan(tuple(fresh), assignment, members)

    def _new_links(self, conn: Connection, links: Sequence[Link]) -> list[Link]:
        unique: dict[tuple[str, str], Link] = {}
        for ln in sorted(links, key=lambda ln: ln.rank):
            unique.setdefault((ln.user_side, ln.other), ln)
        known: set[tuple[str, str]] = set()
        for chunk in in_chunks({a for a, _ in unique}):
            rows = conn.execute(
                sa.select(identity_links.c.id_a, identity_links.c.id_b).where(identity_links.c.id_a.in_(chunk))
            )
            known.update((a, b) for a, b in rows)
        return [ln for pair, ln in unique.items() if pair not in known]

    # -- undoing ---------------------------------------------------------------------------
    def unmerge(self, link_id: int) -> list[str]:
        """Deactivate one link and split its person; returns the resulting person ids."""
        with self.lock(), self.state.begin() as conn:
            row = conn.execute(sa.select(identity_links).where(identity_links.c.id == link_id)).first()
            if row is None or not row.active:
                raise NotFoundError(f"no active identity link with id {link_id}")
            person = _map_of(conn, {row.id_a}).get(row.id_a, row.id_a)
            conn.execute(
                identity_links.update()
                .where(identity_links.c.id == link_id)
                .values(active=False, unmerged_at=self.clock.now())
            )
            members = _members_of(conn, {person})
            return self._recompute(conn, set(members), members)

    def rebuild(self) -> None:
        """Recompute the whole identity map from the active links."""
        with self.lock(), self.state.begin() as conn:
            members = dict(conn.execute(sa.select(identity_map.c.identifier, identity_map.c.person_id)).all())
            everyone = set(members)
            everyone.update(x for row in conn.execute(sa.select(identity_links.c.id_a, identity_links.c.id_b)) for x in row)
            self._recompute(conn, everyone, members)

    def _recompute(self, conn: Connection, ids: set[str], members: dict[str, str]) -> list[str]:
        """Re-derive the persons of ``ids`` from their active links alone."""
        links = _active_links_among(conn, ids)
        uf = _UnionFind()
        for identifier in ids:
            uf.find(identifier)
        for a, b, _ in links:
            uf.union(a, b)
        best: dict[str, _Candidate] = {}
        for a, _, at in links:
            root = uf.find(a)
            if root not in best or ((at, a), a) < best[root]:
                best[root] = ((at, a), a)
        # An identifier left without any active link is its own person and leaves the map.
        assignment = {x: best[uf.find(x)][1] for x in ids if uf.find(x) in best}
        gone = [x for x in ids if x not in assignment and x in members]
        _forget(conn, gone)
        _write_assignment(conn, assignment, members)
        return sorted({*assignment.values(), *(x for x in ids if x not in assignment)})

    # -- reading ---------------------------------------------------------------------------
    def person_of(self, identifier: str) -> str:
        with self.state.read() as conn:
            return _map_of(conn, {identifier}).get(identifier, identifier)

    def persons_of(self, identifiers: Iterable[str]) -> set[str]:
        """The canonical persons of many identifiers (an unlinked identifier is its own person)."""
        return set(self.person_map(identifiers).values())

    def person_map(self, identifiers: Iterable[str]) -> dict[str, str]:
        """Each identifier's canonical person (an unlinked identifier is its own person)."""
        ids = set(identifiers)
        with self.state.read() as conn:
            mapped = _map_of(conn, ids)
        return {i: mapped.get(i, i) for i in ids}

    def identifiers_of(self, person: str) -> list[str]:
        with self.state.read() as conn:
            return _identifiers(conn, person)

    def resolve(self, identifier: str) -> tuple[str, list[str]]:
        """The person of ``identifier`` and all their identifiers, in one read (for per-request paths)."""
        with self.state.read() as conn:
            person = _map_of(conn, {identifier}).get(identifier, identifier)
            return person, _identifiers(conn, person)

    def links_of(self, person: str) -> list[dict[str, object]]:
        """Every link (active or undone) touching the person's identifiers, oldest first."""
        ids = self.identifiers_of(person)
        with self.state.read() as conn:
            rows = conn.execute(
                sa.select(identity_links)
                .where(identity_links.c.id_a.in_(ids) | identity_links.c.id_b.in_(ids))
                .order_by(identity_links.c.linked_at, identity_links.c.id)
            ).mappings()
            return [dict(r) for r in rows]


def _identifiers(conn: Connection, person: str) -> list[str]:
    """A person's identifiers, sorted; an unlinked identifier is its own only one."""
    return sorted(_members_of(conn, {person})) or [person]


def _write_assignment(conn: Connection, assignment: Mapping[str, str], members: Mapping[str, str]) -> None:
    """Store identifier -> person for the identifiers whose person changed."""
    changed = [x for x, person in assignment.items() if members.get(x) != person]
    stale = [x for x in changed if x in members]
    _forget(conn, stale)
    if changed:
        conn.execute(identity_map.insert(), [{"identifier": x, "person_id": assignment[x]} for x in changed])


def _forget(conn: Connection, identifiers: Iterable[str]) -> None:
    for chunk in in_chunks(identifiers):
        conn.execute(identity_map.delete().where(identity_map.c.identifier.in_(chunk)))


def _earliest_links(conn: Connection, persons: set[str]) -> list[_Candidate]:
    """For each person, the earliest active link touching its canonical id (which is that
    component's earliest link, since the canonical id is its user side)."""
    best: dict[str, _Candidate] = {}
    for chunk in in_chunks(persons):
        rows = conn.execute(
            sa.select(identity_links.c.id_a, identity_links.c.id_b, identity_links.c.linked_at).where(
                identity_links.c.active & (identity_links.c.id_a.in_(chunk) | identity_links.c.id_b.in_(chunk))
            )
        )
        for a, b, at in rows:
            candidate = ((as_utc(at), a), a)
            for person in (a, b):
                if person in persons and (person not in best or candidate < best[person]):
                    best[person] = candidate
    return list(best.values())


def _map_where(conn: Connection, column: sa.Column[str], values: set[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for chunk in in_chunks(values):
        rows = conn.execute(sa.select(identity_map.c.identifier, identity_map.c.person_id).where(column.in_(chunk)))
        out.update(dict(rows.all()))
    return out


def _map_of(conn: Connection, ids: set[str]) -> dict[str, str]:
    """identifier -> person for those of ``ids`` that are linked."""
    return _map_where(conn, identity_map.c.identifier, ids)


def _members_of(conn: Connection, persons: set[str]) -> dict[str, str]:
    """identifier -> person for every identifier of ``persons``."""
    return _map_where(conn, identity_map.c.person_id, persons)


def _active_links_among(conn: Connection, ids: set[str]) -> list[tuple[str, str, datetime]]:
    out: list[tuple[str, str, datetime]] = []
    for chunk in in_chunks(ids):
        rows = conn.execute(
            sa.select(identity_links.c.id_a, identity_links.c.id_b, identity_links.c.linked_at).where(
                identity_links.c.active & identity_links.c.id_a.in_(chunk)
            )
        )
        out.extend((a, b, as_utc(at)) for a, b, at in rows if b in ids)
    return out

