"""Identity resolution against a brute-force reference, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tenure import Workspace
from tenure.identity import Link
from tenure.store.state import identity_links, identity_map

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def link(user: str, other: str, minutes: int, kind: str = "identify") -> Link:
    return Link(user, other, kind, f"m-{user}-{other}", T0 + timedelta(minutes=minutes))


def add(ws: Workspace, *links: Link) -> None:
    with ws.state.begin() as conn:
        ws.identity.add_links(conn, list(links))


def mapping(ws: Workspace) -> dict[str, str]:
    with ws.state.read() as conn:
        return dict(conn.execute(sa.select(identity_map.c.identifier, identity_map.c.person_id)).all())


def reference(links: list[Link], active: set[tuple[str, str]] | None = None) -> dict[str, str]:
    """Connected components by repeated relabelling; canonical = user side of earliest link."""
    chosen = [ln for ln in links if active is None or (ln.user_side, ln.other) in active]
    label = {x: x for ln in chosen for x in (ln.user_side, ln.other)}
    changed = True
    while changed:
        changed = False
        for ln in chosen:
            low = min(label[ln.user_side], label[ln.other])
            for x in (ln.user_side, ln.other):
                if label[x] != low:
                    label[x], changed = low, True
    out = {}
    for root in set(label.values()):
        members = [x for x in label if label[x] == root]
        first = min((ln.rank, ln.user_side) for ln in chosen if ln.user_side in members)
        out.update({x: first[1] for x in members})
    return out


def test_identify_links_anonymous_devices_to_one_person(workspace: Workspace) -> None:
    add(workspace, link("u1", "phone", 5), link("u1", "laptop", 9))
    assert mapping(workspace) == {"u1": "u1", "phone": "u1", "laptop": "u1"}


def test_late_merge_joins_two_people_and_keeps_the_earliest(workspace: Workspace) -> None:
    add(workspace, link("u2", "a2", 10))
    add(workspace, link("u1", "a1", 5))
    add(workspace, link("u2", "u1", 20, kind="alias"))  # alias(previousId=u1, userId=u2)
    assert set(mapping(workspace).values()) == {"u1"}


def test_chain_of_aliases(workspace: Workspace) -> None:
    add(workspace, link("b", "a", 1, "alias"), link("c", "b", 2, "alias"), link("d", "c", 3, "alias"))
    assert mapping(workspace) == dict.fromkeys("abcd", "b")


def test_same_evidence_twice_adds_one_link(workspace: Workspace) -> None:
    add(workspace, link("u1", "a1", 5), link("u1", "a1", 6))
    add(workspace, link("u1", "a1", 7))
    with workspace.state.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(identity_links)).scalar() == 1


def test_unmerge_splits_and_is_not_undone_by_the_same_evidence(workspace: Workspace) -> None:
    add(workspace, link("u1", "phone", 5), link("u1", "shared-tablet", 6), link("u2", "shared-tablet", 7))
    assert set(mapping(workspace).values()) == {"u1"}
    bad = next(r for r in workspace.identity.links_of("u2") if r["id_a"] == "u2")
    persons = workspace.identity.unmerge(int(bad["id"]))
    assert persons == ["u1", "u2"]
    assert mapping(workspace) == {"u1": "u1", "phone": "u1", "shared-tablet": "u1"}
    add(workspace, link("u2", "shared-tablet", 30))
    assert workspace.identity.person_of("u2") == "u2"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    edges=st.lists(
        st.tuples(st.integers(0, 7), st.integers(0, 7), st.integers(0, 100)).filter(lambda e: e[0] != e[1]),
        min_size=1,
        max_size=14,
    ),
    split=st.integers(0, 5),
    undo=st.data(),
)
def test_incremental_merges_and_unmerges_match_brute_force(
    sqlite_workspace: Workspace, edges: list[tuple[int, int, int]], split: int, undo: st.DataObject
) -> None:
    ws = sqlite_workspace
    with ws.state.begin() as conn:
        conn.execute(identity_links.delete())
        conn.execute(identity_map.delete())
    links = list({(f"n{a}", f"n{b}"): link(f"n{a}", f"n{b}", m) for a, b, m in edges}.values())
    for start in range(0, len(links), max(split, 1)):  # arrive in several batches
        add(ws, *links[start : start + max(split, 1)])
    expected = {k: v for k, v in reference(links).items()}
    assert mapping(ws) == expected
    victim = undo.draw(st.sampled_from(links))
    link_id = next(r["id"] for r in ws.identity.links_of(victim.user_side) if (r["id_a"], r["id_b"]) == (victim.user_side, victim.other))
    ws.identity.unmerge(int(link_id))
    active = {(ln.user_side, ln.other) for ln in links} - {(victim.user_side, victim.other)}
    assert mapping(ws) == reference(links, active)
    ws.identity.rebuild()
    assert mapping(ws) == reference(links, active)
