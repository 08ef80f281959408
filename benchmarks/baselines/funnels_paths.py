"""Funnels and paths as a data scientist would write them in pandas, to time against the Ibis versions.

Inputs are the engine's attributed ``events`` (and ``orders``, unused here) loaded into pandas
with UTC timestamps. The rules are those of ``tenure.analytics.funnels`` and ``paths``; the
only extra parameter is ``timezone``, the reporting zone the engine session supplies for
calendar periods. Property filters on text values compare strings only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from tenure.analytics.funnels import FunnelStep

KEY = ["person_id"]


def funnel(
    events: pd.DataFrame,
    orders: pd.DataFrame,
    *,
    steps: Sequence[FunnelStep],
    start: datetime,
    end: datetime,
    window: timedelta,
    order: str = "strict",
    by: str | None = None,
    period: str | None = None,
    timezone: str = "UTC",
) -> pd.DataFrame:
    """People per step, conversion, drop-off and median seconds from the previous step."""
    names = {step.event for step in steps}
    ev = events.loc[
        events.event.isin(names) & events.person_id.notna(),
        ["person_id", "message_id", "event", "properties", "timestamp"],
    ]
    ev = ev.sort_values(["timestamp", "message_id"]).reset_index(drop=True)
    props = ev.properties.map(lambda text: json.loads(text) if isinstance(text, str) else {}).astype(object)
    masks = [_matches(ev, props, step) for step in steps]

    in_range = (ev.timestamp >= pd.Timestamp(start)) & (ev.timestamp < pd.Timestamp(end))
    entry = ev[masks[0] & in_range].drop_duplicates("person_id")
    wide = entry[["person_id"]].assign(t1=entry.timestamp, m1=entry.message_id)
    groups: list[str] = []
    if period is not None:
        wide["period"] = _period(entry.timestamp, period, timezone)
        groups.append("period")
    if by is not None:
        wide[by] = _text(props.loc[entry.index].str.get(by)).fillna("(none)")
        groups.append(by)

    for k in range(2, len(steps) + 1):
        prev = 1 if order == "any" else k - 1
        anchor = wide.loc[wide[f"t{prev}"].notna(), ["person_id", "t1", f"t{prev}", f"m{prev}"]]
        anchor.columns = ["person_id", "_t1", "_prev", "_prev_id"]
        hits = ev.loc[masks[k - 1], ["person_id", "timestamp", "message_id"]].merge(anchor, on="person_id")
        later = (hits.timestamp > hits._prev) | ((hits.timestamp == hits._prev) & (hits.message_id > hits._prev_id))
        hits = hits[later & (hits.timestamp - hits._t1 <= window)].drop_duplicates("person_id")
        hits = hits.rename(columns={"timestamp": f"t{k}", "message_id": f"m{k}"})
        wide = wide.merge(hits[["person_id", f"t{k}", f"m{k}"]], on="person_id", how="left")

    done = wide.t1
    long = []
    for k in range(1, len(steps) + 1):
        reached = done if k == 1 else wide[f"t{k}"]
        now = reached.where(reached > done, done).where(reached.notna() & done.notna())
        gap = (now - done).dt.total_seconds() if k > 1 else pd.Series(np.nan, index=wide.index)
        long.append(wide[groups].assign(step=k, _done=now.notna(), _gap=gap.where(now.notna())))
        done = now
    stats = (
        pd.concat(long)
        .groupby([*groups, "step"], dropna=False)
        .agg(people=("_done", "sum"), median_seconds_from_previous=("_gap", "median"))
        .reset_index()
    )

    grid = pd.DataFrame({"step": range(1, len(steps) + 1), "step_name": [str(s) for s in steps]})
    if period is not None:
        days = pd.date_range(
            pd.Timestamp(start).tz_convert(timezone).normalize(),
            (pd.Timestamp(end) - pd.Timedelta(1, "us")).tz_convert(timezone),
            freq="D",
        )
        grid = grid.merge(pd.DataFrame({"period": _period(pd.Series(days), period, timezone).unique()}), how="cross")
    if by is not None:
        grid = grid.merge(wide[[by]].drop_duplicates(), how="cross")
    out = grid.merge(stats, on=[*groups, "step"], how="left").sort_values([*groups, "step"])
    out["people"] = out.people.fillna(0).astype("int64")
    grouped = out.groupby(groups if groups else np.zeros(len(out)), dropna=False).people
    first = grouped.transform("max")
    before = grouped.shift().fillna(out.people)
    out["conversion"] = out.people / first.replace(0, np.nan)
    out["step_conversion"] = out.people / before.replace(0, np.nan)
    out["drop_off"] = (before - out.people).astype("int64")
    columns = [
        *groups,
        "step",
        "step_name",
        "people",
        "conversion",
        "step_conversion",
        "drop_off",
        "median_seconds_from_previous",
    ]
    return out[columns].reset_index(drop=True)


def path_links(
    events: pd.DataFrame,
    orders: pd.DataFrame,
    *,
    event: str,
    direction: str = "next",
    depth: int = 3,
    top_n: int = 5,
    start: datetime,
    end: datetime,
    session_gap: timedelta = timedelta(minutes=30),
) -> pd.DataFrame:
    """Sankey links from (or to) ``event`` within sessions: step, source/target nodes and names, count."""
    ev = events.loc[events.event.notna() & events.person_id.notna(), ["person_id", "message_id", "event", "timestamp"]]
    ev = ev.sort_values(["person_id", "timestamp", "message_id"]).reset_index(drop=True)
    person = ev.groupby("person_id")
    ev["session"] = (person.timestamp.diff().isna() | (person.timestamp.diff() > session_gap)).cumsum()
    anchors = ev[(ev.event == event) & (ev.timestamp >= pd.Timestamp(start)) & (ev.timestamp < pd.Timestamp(end))]
    sign = 1 if direction == "next" else -1
    hops = []
    alive = pd.Series(True, index=anchors.index)
    for step in range(1, depth + 1):
        moved = ev.shift(-sign * step).loc[anchors.index]
        alive &= moved.session.eq(anchors.session)
        hops.append(
            pd.DataFrame(
                {"anchor": anchors.index[alive.to_numpy()], "step": step, "name": moved.event[alive].to_numpy()}
            )
        )
    hop = pd.concat(hops, ignore_index=True)

    counts = (
        hop.groupby(["step", "name"])
        .size()
        .rename("n")
        .reset_index()
        .sort_values(["step", "n", "name"], ascending=[True, False, True])
    )
    top = counts.groupby("step").head(top_n)[["step", "name"]].assign(_keep=True)
    hop = hop.merge(top, on=["step", "name"], how="left")
    hop["label"] = hop.name.where(hop._keep.notna(), "Other")

    length = hop.groupby("anchor").size().reindex(anchors.index, fill_value=0)
    origin = pd.DataFrame({"anchor": anchors.index, "step": 0, "label": event})
    short = length[length < depth]
    ends = pd.DataFrame({"anchor": short.index, "step": short.to_numpy() + 1, "label": "(end)"})
    path = pd.concat([origin, hop[["anchor", "step", "label"]], ends], ignore_index=True).sort_values(
        ["anchor", "step"]
    )
    path["source"] = path.groupby("anchor").label.shift()
    links = (
        path[path.step >= 1]
        .groupby(["step", "source", "label"])
        .size()
        .rename("count")
        .reset_index()
        .rename(columns={"label": "target"})
    )
    links["source_node"] = (links.step - 1).astype(str) + ":" + links.source
    links["target_node"] = links.step.astype(str) + ":" + links.target
    links = links.astype({"step": "int64", "count": "int64"})
    return links[["step", "source_node", "target_node", "source", "target", "count"]].reset_index(drop=True)


def path_nodes(links: pd.DataFrame) -> pd.DataFrame:
    """Sankey nodes: the anchor (step 0) with its outflow, every target with its inflow."""
    targets = links.groupby(["target_node", "step", "target"])["count"].sum().reset_index()
    targets.columns = ["node", "step", "name", "count"]
    first = links[links.step == 1].groupby(["source_node", "source"])["count"].sum().reset_index()
    first.columns = ["node", "name", "count"]
    nodes = pd.concat([first.assign(step=0), targets], ignore_index=True)
    return nodes[["node", "step", "name", "count"]].astype({"step": "int64", "count": "int64"})


def _matches(ev: pd.DataFrame, props: pd.Series, step: FunnelStep) -> pd.Series:
    mask = ev.event == step.event
    for key, wanted in step.where.items():
        raw = props.str.get(key)
        is_bool = raw.map(type).eq(bool)
        if isinstance(wanted, bool):
            mask &= is_bool & raw.eq(wanted)
        elif isinstance(wanted, int | float):
            mask &= pd.to_numeric(raw.where(~is_bool), errors="coerce").eq(float(wanted))
        else:
            mask &= raw.eq(wanted)
    return mask


def _text(raw: pd.Series) -> pd.Series:
    """Property values as the engines' JSON accessor returns them (booleans as true/false)."""
    is_bool = raw.map(type).eq(bool)
    return raw.where(~is_bool, raw.astype(str).str.lower()).where(raw.notna())


def _period(ts: pd.Series, period: str, timezone: str) -> pd.Series:
    day = ts.dt.tz_convert(timezone).dt.tz_localize(None).dt.normalize()
    if period == "week":
        day = day - pd.to_timedelta(day.dt.day_of_week, unit="D")
    elif period == "month":
        day = day - pd.to_timedelta(day.dt.day - 1, unit="D")
    return day.astype("datetime64[us]")
