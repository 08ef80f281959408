"""The unified customer profile: one person's ids, traits and activity, from the engine."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import ibis
import orjson
import pandas as pd

from tenure.errors import NotFoundError
from tenure.workspace import Workspace


@dataclass(frozen=True, slots=True)
class Profile:
    person_id: str
    identifiers: tuple[str, ...]
    traits: dict[str, Any]
    first_seen: datetime | None
    last_seen: datetime | None
    events: int
    orders: int
    revenue: float
    scores: dict[str, Any]  # model scores and reasons: name -> {"value", "model_version"}


def person_profile(ws: Workspace, identifier: str) -> Profile:
    """Look a person up by any of their ids (user id, anonymous id, alias)."""
    person = ws.identity.person_of(identifier)
    engine = ws.engine()
    try:
        tables = engine.tables()
        events = tables.events.filter(tables.events.person_id == person)
        activity = events.aggregate(
            n=events.count(), first=events.timestamp.min(), last=events.timestamp.max()
        ).execute().iloc[0]
        seen_ids = (
            events.select(ident=ibis.coalesce(events.user_id, events.anonymous_id))
            .union(events.filter(events.anonymous_id.notnull()).select(ident=events.anonymous_id))
            .distinct()
            .execute()["ident"]
        )
        orders = tables.orders.filter(tables.orders.person_id == person)
        spend = orders.aggregate(n=orders.count(), revenue=orders.net_revenue.sum()).execute().iloc[0]
        traits_row = tables.users.filter(tables.users.person_id == person).select("traits").execute()
    finally:
        engine.close()
    ids = set(ws.identity.identifiers_of(person)) | {str(x) for x in seen_ids if x}
    if int(activity["n"]) == 0 and int(spend["n"]) == 0 and traits_row.empty and ids == {person}:
        raise NotFoundError(f"no person with id {identifier!r}")
    return Profile(
        person_id=person,
        identifiers=tuple(sorted(ids)),
        traits=orjson.loads(traits_row["traits"].iloc[0]) if not traits_row.empty else {},
        first_seen=_dt(activity["first"]),
        last_seen=_dt(activity["last"]),
        events=int(activity["n"]),
        orders=int(spend["n"]),
        revenue=0.0 if pd.isna(spend["revenue"]) else float(spend["revenue"]),
        scores=ws.models.scores(person),
    )


def _dt(value: Any) -> datetime | None:
    return None if value is None or value != value else value.to_pydatetime()
