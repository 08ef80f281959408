"""Saved segments and their live membership: ``ws.segments``.

A refresh evaluates segments (all together, in one query) and writes the difference with the
stored members in one state transaction: the new members, an ``enter``/``exit`` change per
person that moved, and the size. Journeys read the changes in id order, so each change is
seen once. Two refreshes:

* ``refresh()`` recomputes every segment over everyone (on a schedule in ``tenure serve`` and
  after imports); it also refits clusterings and is the only one that moves people out of
  segments as time passes ("in the last 7 days");
* ``refresh_people(ids)`` re-evaluates only the people some new events touched, within seconds
  of ingestion. It skips segments that depend on the whole population (RFM scores are
  quantiles, clusters are fitted on everyone); those wait for the full refresh.
"""

from __future__ import annotations

import builtins
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import ibis.expr.types as ir
import pandas as pd
import pyarrow as pa
import sqlalchemy as sa

from tenure.analytics._json import json_field
from tenure.analytics.rfm import RFM_SEGMENTS
from tenure.analytics.stages import STAGES
from tenure.errors import NotFoundError, ValidationError
from tenure.segments.compile import EvaluationContext, check_references, evaluate_segments
from tenure.segments.membership import current_members, write_diff
from tenure.segments.rules import (
    RFM_FIELDS,
    Condition,
    fields_used,
    load_rule_text,
    parse_rule,
    segment_references,
)
from tenure.store.engine import Engine, LakeTables
from tenure.store.state import person_scores, segment_changes, segment_members, segment_sizes, segments

if TYPE_CHECKING:
    from tenure.segments.clustering import Clustering
    from tenure.workspace import Workspace

RuleLike = Mapping[str, Any] | str
BUILTIN = "builtin"
RULE = "rule"
CLUSTER = "cluster"


def builtin_segments() -> dict[str, dict[str, Any]]:
    """One segment per lifecycle stage and per named RFM segment."""
    stages = {f"Stage: {s}": {"field": "stage", "op": "eq", "value": s} for s in STAGES}
    rfm = {f"RFM: {s}": {"field": "rfm_segment", "op": "eq", "value": s} for s in RFM_SEGMENTS}
    return {**stages, **rfm}


@dataclass(frozen=True)
class SegmentInfo:
    name: str
    kind: str
    description: str
    definition: dict[str, Any]
    created_at: datetime
    refreshed_at: datetime | None
    size: int
    id: int = field(repr=False, default=0)


@dataclass(frozen=True)
class Preview:
    """What a rule would select now, before it is saved."""

    size: int
    population: int
    sample: pd.DataFrame

    @property
    def share(self) -> float:
        return self.size / self.population if self.population else 0.0


@dataclass(frozen=True)
class RefreshResult:
    segments: int
    people: int  # people evaluated
    entered: int
    exited: int
    seconds: float
    sizes: dict[str, int]


class Segments:
    """Create, evaluate, refresh and read segments of one workspace."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self._ensure_builtins()

    # -- definitions ---------------------------------------------------------------------
    def create(self, name: str, rule: RuleLike, *, description: str = "", replace: bool = False) -> SegmentInfo:
        """Save a rule segment (checked first) and compute its members."""
        loaded = load_rule_text(rule) if isinstance(rule, str) else rule
        condition = parse_rule(loaded)  # so ``loaded`` is a mapping from here on
        self._check_name(name, replace)
        definitions = self._definitions()
        definitions.pop(name, None)
        self._context_check({name: condition}, definitions)
        self._save(name, RULE, cast(Mapping[str, Any], loaded), description, replace)
        self.refresh([name])
        return self.get(name)

    def create_clusters(
        self,
        name: str,
        *,
        algorithm: str = "kmeans",
        k: int | None = None,
        columns: Sequence[str] | None = None,
        seed: int = 0,
        as_of: datetime | str | None = None,
        replace: bool = False,
    ) -> Clustering:
        """Cluster everyone on their features and save one segment per cluster (``NAME #0`` …).

        ``replace`` deletes an earlier clustering of that name (its segments and history) first.
        """
        from tenure.segments.clustering import DEFAULT_FEATURES, fit_clusters

        existing = [i.name for i in self._infos(kind=CLUSTER) if i.definition.get("clustering") == name]
        if existing and not replace:
            raise ValidationError("name", f"a clustering named {name!r} exists; replace it or delete its segments")
        used = list(columns or DEFAULT_FEATURES)
        result = fit_clusters(self.ws.features(as_of), algorithm=algorithm, k=k, columns=used, seed=seed)
        settings = {"clustering": name, "algorithm": algorithm, "columns": used, "seed": seed, "k": result.k}
        for segment in existing:  # only now that the new fit has succeeded
            self.delete(segment)
        self._write_clusters(settings, result)
        return result

    def list(self) -> pd.DataFrame:
        """Every segment: name, kind, size, description, created and refreshed times."""
        rows = [
            {"name": i.name, "kind": i.kind, "size": i.size, "description": i.description,
             "created_at": i.created_at, "refreshed_at": i.refreshed_at}
            for i in self._infos()
        ]
        return pd.DataFrame(rows, columns=["name", "kind", "size", "description", "created_at", "refreshed_at"])

    def get(self, name: str) -> SegmentInfo:
        infos = self._infos(name=name)
        if not infos:
            raise NotFoundError(f"no segment named {name!r}")
        return infos[0]

    def delete(self, name: str) -> None:
        """Remove a segment, its members, changes and size history; built-ins stay."""
        info = self.get(name)
        if info.kind == BUILTIN:
            raise ValidationError("name", f"{name!r} is a built-in segment and cannot be deleted")
        users = [other.name for other in self._infos(kind=RULE)
                 if name in segment_references(parse_rule(other.definition))]
        if users:
            raise ValidationError("name", f"{name!r} is used by {', '.join(users)}; change or delete those first")
        with self.ws.state.begin() as conn:
            for table in (segment_members, segment_changes, segment_sizes):
                conn.execute(table.delete().where(table.c.segment_id == info.id))
            conn.execute(segments.delete().where(segments.c.id == info.id))

    # -- evaluation ----------------------------------------------------------------------
    def evaluate(self, rules: Mapping[str, RuleLike | Condition], *, as_of: datetime | str | None = None) -> pd.DataFrame:
        """Membership of unsaved rules: ``person_id`` and one bool column per rule name.

        ``segment: NAME`` may refer to saved segments or to other rules of this call.
        """
        parsed = {name: _parsed(rule, f"rules.{name}") for name, rule in rules.items()}
        definitions = {n: c for n, c in self._definitions().items() if n not in parsed}
        self._context_check(parsed, definitions)  # before any engine work
        with self.ws.engine() as engine:
            t = engine.tables()
            ctx = self._context(engine, t, as_of, definitions)
            return _named(engine.execute(evaluate_segments(t, parsed, ctx).order_by("person_id")), list(parsed))

    def preview(self, rule: RuleLike, *, as_of: datetime | str | None = None, sample: int = 10,
                traits: Sequence[str] = ()) -> Preview:
        """Size, population and a sample of the people a rule selects, without saving it."""
        flags = self.evaluate({"preview": parse_rule(rule)}, as_of=as_of)
        chosen = flags.loc[flags["preview"], ["person_id"]]
        picked = chosen.sample(n=min(sample, len(chosen)), random_state=0).sort_values("person_id")
        return Preview(int(len(chosen)), int(len(flags)), self._with_traits(picked["person_id"], traits))

    def members(self, name: str, *, traits: Sequence[str] = ()) -> pd.DataFrame:
        """Current members (person_id, entered_at) with the chosen traits, by person_id."""
        info = self.get(name)
        with self.ws.state.read() as conn:
            rows = conn.execute(
                sa.select(segment_members.c.person_id, segment_members.c.entered_at)
                .where(segment_members.c.segment_id == info.id).order_by(segment_members.c.person_id)
            ).all()
        frame = pd.DataFrame(rows, columns=["person_id", "entered_at"])
        frame["entered_at"] = pd.to_datetime(frame["entered_at"], utc=True)
        if not traits:
            return frame
        return frame.merge(self._with_traits(frame["person_id"], traits), on="person_id", how="left")

    def export(self, name: str, path: str | Path, *, traits: Sequence[str] = ()) -> int:
        """Write the members (with traits) to CSV or Parquet, by the file's suffix; returns rows."""
        target = Path(path)
        if target.suffix not in (".csv", ".parquet"):
            raise ValidationError("out", f"must end in .csv or .parquet; got {target.name!r}")
        frame = self.members(name, traits=traits)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.suffix == ".csv":
            frame.to_csv(target, index=False)
        else:
            frame.to_parquet(target, index=False)
        return len(frame)

    def changes(self, name: str | None = None, *, after_id: int = 0, limit: int | None = None) -> pd.DataFrame:
        """Entries and exits in the order they happened (``id`` is the cursor for readers)."""
        query = (
            sa.select(segment_changes.c.id, segments.c.name.label("segment"), segment_changes.c.person_id,
                      segment_changes.c.change, segment_changes.c.at)
            .join(segments, segments.c.id == segment_changes.c.segment_id)
            .where(segment_changes.c.id > after_id).order_by(segment_changes.c.id)
        )
        if name is not None:
            query = query.where(segment_changes.c.segment_id == self.get(name).id)
        if limit is not None:
            query = query.limit(limit)
        with self.ws.state.read() as conn:
            rows = conn.execute(query).all()
        frame = pd.DataFrame(rows, columns=["id", "segment", "person_id", "change", "at"])
        frame["at"] = pd.to_datetime(frame["at"], utc=True)
        return frame

    def sizes(self, name: str) -> pd.DataFrame:
        """The segment's size after each refresh: at, size, entered, exited."""
        info = self.get(name)
        with self.ws.state.read() as conn:
            rows = conn.execute(
                sa.select(segment_sizes.c.at, segment_sizes.c.size, segment_sizes.c.entered, segment_sizes.c.exited)
                .where(segment_sizes.c.segment_id == info.id).order_by(segment_sizes.c.id)
            ).all()
        frame = pd.DataFrame(rows, columns=["at", "size", "entered", "exited"])
        frame["at"] = pd.to_datetime(frame["at"], utc=True)
        return frame

    # -- refresh -------------------------------------------------------------------------
    def refresh(self, names: Iterable[str] | None = None, *, as_of: datetime | str | None = None) -> RefreshResult:
        """Recompute segments (all when ``names`` is None) over everyone and record the changes."""
        started = time.perf_counter()
        if as_of is None and not self.ws.lake.snapshot().paths("events"):
            return _combine([], 0.0)  # nothing to evaluate yet
        infos = self._infos() if names is None else [self.get(n) for n in names]
        results = []
        clusterings = {i.definition["clustering"] for i in infos if i.kind == CLUSTER}
        for clustering in sorted(clusterings):
            results.append(self._refit(clustering, as_of))
        rules = {i.name: i for i in infos if i.kind != CLUSTER}
        if rules:
            with self.ws.engine() as engine:
                t = engine.tables()
                ctx = self._context(engine, t, as_of, self._definitions())
                parsed = {n: ctx.definitions[n] for n in rules}
                flags = _named(engine.execute(evaluate_segments(t, parsed, ctx)), list(parsed))
            results.append(self._apply(flags, {n: i.id for n, i in rules.items()}, people=None))
        return _combine(results, time.perf_counter() - started)

    def refresh_people(self, identifiers: Iterable[str], *, as_of: datetime | str | None = None) -> RefreshResult:
        """Re-evaluate the people behind ``identifiers`` in every person-local segment."""
        started = time.perf_counter()
        people = sorted(self.ws.identity.persons_of(identifiers))
        definitions = self._definitions()
        local = {i.name: i.id for i in self._infos() if i.kind != CLUSTER and self._is_local(i.name, definitions)}
        if not people or not local:
            return _combine([], time.perf_counter() - started)
        with self.ws.engine() as engine:
            chosen = engine.register("_refresh_people", pa.table({"person_id": pa.array(people, pa.string())}))
            everyone = engine.tables()
            t = _restrict(everyone, chosen)
            ctx = self._context(engine, everyone, as_of, definitions)  # the same as_of as a full refresh
            flags = _named(engine.execute(evaluate_segments(t, {n: definitions[n] for n in local}, ctx)), list(local))
        return _combine([self._apply(flags, local, people=people)], time.perf_counter() - started)

    # -- internals -----------------------------------------------------------------------
    def _context(self, engine: Engine, t: LakeTables, as_of: datetime | str | None,
                 definitions: Mapping[str, Condition]) -> EvaluationContext:
        settings = self.ws.settings
        return EvaluationContext(
            as_of=self.ws.resolve_as_of(t, as_of),
            timezone=settings.timezone,
            lifecycle=settings.lifecycle,
            rfm_bins=settings.rfm_bins,
            definitions=definitions,
            stored=self._stored(engine),
            scores=self._scores(engine),
        )

    def _context_check(self, rules: Mapping[str, Condition], definitions: Mapping[str, Condition]) -> None:
        check_references(rules, definitions, {i.name for i in self._infos(kind=CLUSTER)})

    def _definitions(self) -> dict[str, Condition]:
        """Every saved rule and built-in segment, parsed."""
        return {i.name: parse_rule(i.definition, f"segments.{i.name}") for i in self._infos() if i.kind != CLUSTER}

    def _is_local(self, name: str, definitions: Mapping[str, Condition], seen: frozenset[str] = frozenset()) -> bool:
        """True if the segment depends on each person alone (no RFM quantiles, no clusters)."""
        rule = definitions.get(name)
        if rule is None or name in seen:
            return False
        if fields_used(rule) & RFM_FIELDS.keys():
            return False
        return all(self._is_local(ref, definitions, seen | {name}) for ref in segment_references(rule))

    def _stored(self, engine: Engine) -> dict[str, ir.Table]:
        """Current members of cluster segments, for rules that refer to them."""
        infos = self._infos(kind=CLUSTER)
        if not infos:
            return {}
        with self.ws.state.read() as conn:
            rows = conn.execute(
                sa.select(segment_members.c.segment_id, segment_members.c.person_id)
                .where(segment_members.c.segment_id.in_([i.id for i in infos]))
            ).all()
        table = engine.register("_cluster_members", pa.table({
            "segment_id": pa.array([r[0] for r in rows], pa.int64()),
            "person_id": pa.array([r[1] for r in rows], pa.string()),
        }))
        return {i.name: table.filter(table.segment_id == i.id).select("person_id") for i in infos}

    def _scores(self, engine: Engine) -> ir.Table | None:
        with self.ws.state.read() as conn:
            rows = conn.execute(sa.select(person_scores.c.person_id, person_scores.c.name, person_scores.c.value)).all()
        if not rows:
            return None
        return engine.register("_person_scores", pa.table({
            "person_id": pa.array([r[0] for r in rows], pa.string()),
            "name": pa.array([r[1] for r in rows], pa.string()),
            "value": pa.array([r[2] for r in rows], pa.float64()),
        }))

    def _apply(self, flags: pd.DataFrame, ids: Mapping[str, int], *, people: Sequence[str] | None) -> RefreshResult:
        """Write the new membership of each segment; ``people`` limits the diff to those people."""
        now = self.ws.clock.now()
        entered_total = exited_total = 0
        sizes: dict[str, int] = {}
        with self.ws.state.begin() as conn:
            current = current_members(conn, list(ids.values()), people)
            for name, segment_id in ids.items():
                new = pd.Index(flags.loc[flags[name].to_numpy(dtype=bool), "person_id"])
                old = pd.Index(current.get(segment_id, []))
                entered, exited = new.difference(old), old.difference(new)
                size = write_diff(conn, segment_id, entered, exited, now, full=people is None, size=len(new))
                sizes[name] = size
                entered_total += len(entered)
                exited_total += len(exited)
        return RefreshResult(len(ids), len(flags), entered_total, exited_total, 0.0, sizes)

    def _refit(self, clustering: str, as_of: datetime | str | None) -> RefreshResult:
        """Refit a clustering, numbering clusters to match the current members, and write it."""
        from tenure.segments.clustering import fit_clusters

        infos = [i for i in self._infos(kind=CLUSTER) if i.definition["clustering"] == clustering]
        settings = dict(infos[0].definition)
        previous = pd.concat(
            [self.members(i.name)[["person_id"]].assign(cluster=i.definition["cluster"]) for i in infos],
            ignore_index=True,
        )
        result = fit_clusters(self.ws.features(as_of), algorithm=settings["algorithm"],
                              k=None if settings["algorithm"] == "dbscan" else settings["k"],
                              columns=settings["columns"], previous=previous, seed=settings["seed"])
        return self._write_clusters(settings, result)

    def _write_clusters(self, settings: Mapping[str, Any], result: Clustering) -> RefreshResult:
        """One segment per cluster (created when new), then their memberships."""
        profiles = result.profiles.set_index("cluster")
        ids: dict[str, int] = {}
        for cluster, profile in profiles.iterrows():
            if int(cluster) < 0:  # DBSCAN's noise is no segment
                continue
            name = f"{settings['clustering']} #{int(cluster)}"
            definition = {**settings, "cluster": int(cluster), "profile": _jsonable(profile.to_dict())}
            description = f"{profile['name']} ({profile['distinguishing']})"
            ids[name] = self._save(name, CLUSTER, definition, description, replace=True)
        labels = result.labels
        flags = pd.DataFrame({"person_id": labels["person_id"]})
        for name in ids:
            cluster = int(name.rsplit("#", 1)[1])
            flags[name] = (labels["cluster"] == cluster).to_numpy()
        return self._apply(flags, ids, people=None)

    def _save(self, name: str, kind: str, definition: Mapping[str, Any], description: str, replace: bool) -> int:
        values = {"kind": kind, "definition": json.dumps(definition, default=str), "description": description}
        with self.ws.state.begin() as conn:
            existing = conn.execute(sa.select(segments.c.id).where(segments.c.name == name)).scalar()
            if existing is not None and replace:
                conn.execute(segments.update().where(segments.c.id == existing).values(values))
                return int(existing)
            insert = segments.insert().values(name=name, created_at=self.ws.clock.now(), size=0, **values)
            return int(conn.execute(insert.returning(segments.c.id)).scalar_one())

    def _check_name(self, name: str, replace: bool) -> None:
        if not name.strip():
            raise ValidationError("name", "must not be empty")
        existing = self._infos(name=name)
        if existing and (not replace or existing[0].kind != RULE):
            raise ValidationError("name", f"a {existing[0].kind} segment named {name!r} exists")

    def _infos(self, *, name: str | None = None, kind: str | None = None) -> builtins.list[SegmentInfo]:
        query = sa.select(segments).order_by(segments.c.id)
        if name is not None:
            query = query.where(segments.c.name == name)
        if kind is not None:
            query = query.where(segments.c.kind == kind)
        with self.ws.state.read() as conn:
            rows = conn.execute(query).all()
        return [
            SegmentInfo(r.name, r.kind, r.description, json.loads(r.definition), r.created_at, r.refreshed_at, r.size, r.id)
            for r in rows
        ]

    def _ensure_builtins(self) -> None:
        with self.ws.state.read() as conn:
            have = set(conn.execute(sa.select(segments.c.name).where(segments.c.kind == BUILTIN)).scalars())
        missing = {n: d for n, d in builtin_segments().items() if n not in have}
        if missing:
            with self.ws.state.begin() as conn:
                taken = set(conn.execute(sa.select(segments.c.name)).scalars())
                rows = [{"name": n, "kind": BUILTIN, "definition": json.dumps(d), "description": "built-in",
                         "created_at": self.ws.clock.now(), "size": 0} for n, d in missing.items() if n not in taken]
                if rows:
                    conn.execute(segments.insert(), rows)

    def _with_traits(self, person_ids: pd.Series, traits: Sequence[str]) -> pd.DataFrame:
        """``person_id`` plus one column per trait (current merged traits)."""
        frame = pd.DataFrame({"person_id": person_ids.astype(str).to_numpy()})
        if not traits:
            return frame
        with self.ws.engine() as engine:
            chosen = engine.register("_chosen", pa.table({"person_id": pa.array(frame["person_id"], pa.string())}))
            users = engine.tables().users
            values = users.select("person_id", **{f"t{i}": json_field(users.traits, n) for i, n in enumerate(traits)})
            joined = chosen.left_join(values, "person_id").drop("person_id_right")
            out = engine.execute(joined.order_by("person_id"))
        return out.rename(columns={f"t{i}": n for i, n in enumerate(traits)})


def _parsed(rule: RuleLike | Condition, path: str) -> Condition:
    return rule if isinstance(rule, Condition) else parse_rule(rule, path)


def _restrict(t: LakeTables, people: ir.Table) -> LakeTables:
    """The lake tables cut down to some persons (for re-evaluating just them)."""
    ids = people.person_id

    def only(table: ir.Table) -> ir.Table:
        return table.filter(table.person_id.isin(ids))

    return replace(t, events=only(t.events), orders=only(t.orders), order_items=only(t.order_items),
                   order_adjustments=only(t.order_adjustments), users=only(t.users))


def _named(flags: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    out = flags.rename(columns={f"s{i}": n for i, n in enumerate(names)})
    for name in names:
        out[name] = out[name].astype(bool)
    return out


def _combine(results: Sequence[RefreshResult], seconds: float) -> RefreshResult:
    sizes: dict[str, int] = {}
    for r in results:
        sizes.update(r.sizes)
    return RefreshResult(sum(r.segments for r in results), max((r.people for r in results), default=0),
                         sum(r.entered for r in results), sum(r.exited for r in results), seconds, sizes)


def _jsonable(values: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k): (v.item() if hasattr(v, "item") else v) for k, v in values.items()}
