"""Point-in-time training data: no feature uses a fact from after its cutoff, labels and traits
match a plain-Python reading of the messages, and the backtest never trains on an unfinished window.

Each random shop is ingested three times into one workspace under different id prefixes (so one
query serves all three): ``A`` with every message, ``B`` with only the messages before the cutoff,
``C`` with every later fact perturbed (revenues doubled, traits changed, every order cancelled and
every person active exactly at the cutoff). Identity links are all made before the cutoff, because
the identity graph is the one current input (``test_identity_graph_is_the_one_current_input``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from analytics_support import ingest, run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_features import days, iso, known_orders, person_of, ts_of

from tenure import Workspace
from tenure.errors import ValidationError
from tenure.models.classifier import OutcomeClassifier
from tenure.models.dataset import (
    CATEGORICAL_FEATURES,
    FEATURES,
    NUMERIC_FEATURES,
    Outcome,
    examples,
    model_features,
    training_cutoffs,
    traits_as_of,
)
from tenure.models.outcomes import train_outcome

from conftest import make_workspace

BASE = datetime(2025, 1, 1, tzinfo=UTC)
USERS = ("u0", "u1", "u2")
OWNED = {"u0-a": "u0", "u1-a": "u1"}  # the anonymous ids test_features.person_of links to users
ANONYMOUS = ("u0-a", "u1-a", "x0", "x1")  # x* are never linked
OFFSETS = (-120, -91, -90, -31, -30, -8, -7, -1, 0, 6, 7, 29, 30, 31)  # days from the cutoff
MINUTES = (0, 20, 1439)  # with OFFSETS: exactly at the cutoff, a minute before it, on window ends
OUTCOMES = [Outcome(*spec) for h in (7, 30) for spec in (("churn", h), ("churn", h, "activity"), ("propensity", h))]
SHOPS = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
Message = dict[str, Any]


# --- random shops ---------------------------------------------------------------------------------


@st.composite
def shops(draw: st.DrawFn) -> tuple[list[Message], datetime]:
    """Messages around a cutoff; identity links (identify with an anonymous id, alias, two-id
    events) only before it, later identify calls carry a user id alone."""
    cutoff = BASE + timedelta(days=draw(st.sampled_from([120, 150])))
    out: list[Message] = []
    orders: list[str] = []
    for i in range(draw(st.integers(1, 30))):
        ts = cutoff + timedelta(days=draw(st.sampled_from(OFFSETS)), minutes=draw(st.sampled_from(MINUTES)))
        before = ts < cutoff
        kinds = ["track", "page", "order", "order", "refund", "cancel", "identify"] + (["alias"] if before else [])
        kind = draw(st.sampled_from(kinds))
        user = draw(st.sampled_from(USERS))
        msg: Message = {"messageId": f"m{i}", "timestamp": iso(ts)}
        if kind in ("identify", "alias"):
            mine = draw(st.sampled_from([None, *(a for a, u in OWNED.items() if u == user)])) if before else None
            if kind == "alias":
                mine = mine or next((a for a, u in OWNED.items() if u == user), None)
                if mine is None:
                    kind, msg["userId"] = "identify", user
            if kind == "identify":
                traits = {name: draw(st.sampled_from([*values, None, "absent"])) for name, values in
                          (("channel", ("seo", "paid", "email")), ("country", ("AU", "DE")))}
                msg.update(type="identify", userId=user, traits={k: v for k, v in traits.items() if v != "absent"})
                msg["timestamp"] = iso(ts + timedelta(seconds=i))  # the latest trait value is unambiguous
                if mine:
                    msg["anonymousId"] = mine
            else:
                msg.update(type="alias", userId=user, previousId=mine)
            out.append(msg)
            continue
        who = draw(st.sampled_from(["user", "anon", "both"] if before else ["user", "anon"]))
        if who == "both":
            anon = draw(st.sampled_from(sorted(OWNED)))
            msg.update(userId=OWNED[anon], anonymousId=anon)
        elif who == "user":
            msg["userId"] = user
        else:
            msg["anonymousId"] = draw(st.sampled_from(ANONYMOUS))
        if kind == "order":
            lines = draw(st.lists(st.tuples(st.sampled_from(["A", "B", None]), st.integers(0, 2)), max_size=2))
            orders.append(f"o{i}")
            msg.update(type="track", event="Order Completed", properties={
                "order_id": f"o{i}", "revenue": draw(st.sampled_from([0.0, 5.5, 99.99])),
                "products": [{"product_id": f"p{j}", "price": 1.0, "quantity": q, **({"category": c} if c else {})}
                             for j, (c, q) in enumerate(lines)]})
        elif kind in ("refund", "cancel") and orders:
            target = draw(st.sampled_from(orders))
            amount = draw(st.sampled_from([None, 3.0, 50.0]))
            event = "Order Cancelled" if kind == "cancel" else "Order Refunded"
            props = {"order_id": target} | ({"revenue": amount} if kind == "refund" and amount is not None else {})
            msg.update(type="track", event=event, properties=props)
        elif kind == "page":
            msg.update(type="page", name="Home")
        else:
            msg.update(type="track", event=draw(st.sampled_from(["Product Viewed", "Signed Up"])))
        out.append(msg)
    return out, cutoff


def perturbed(batch: list[Message], cutoff: datetime) -> list[Message]:
    """The same shop with every fact from the cutoff on changed, and more of them, none linking ids."""
    out = [m for m in batch if ts_of(m) < cutoff]
    for m in batch:
        if ts_of(m) < cutoff:
            continue
        m = {**m, "properties": dict(m.get("properties", {}))}
        if "revenue" in m["properties"]:
            m["properties"]["revenue"] = 2 * m["properties"]["revenue"] + 1
        if m["type"] == "identify":
            m["traits"] = {"channel": "later", "country": "ZZ"}
        out.append(m)
    at = iso(cutoff)
    ids = [("userId", u) for u in USERS] + [("anonymousId", a) for a in ANONYMOUS]
    out += [{"type": "page", "name": "Later", key: value, "messageId": f"late-{value}", "timestamp": at}
            for key, value in ids]
    out += [{"type": "identify", "userId": u, "traits": {"channel": "cut", "country": "CU"},
             "messageId": f"late-id-{u}", "timestamp": at} for u in USERS]
    orders = [m["properties"]["order_id"] for m in batch if m.get("event") == "Order Completed"]
    out += [{"type": "track", "event": "Order Cancelled", "userId": "u0", "properties": {"order_id": o},
             "messageId": f"late-cancel-{o}", "timestamp": at} for o in orders]
    return out


def tagged(batch: list[Message], shop: str) -> list[Message]:
    """The messages with every id prefixed, so that several shops share one workspace."""
    out = []
    for m in batch:
        m = {**m, "messageId": f"{shop}_{m['messageId']}"}
        for key in ("userId", "anonymousId", "previousId"):
            if m.get(key):
                m[key] = f"{shop}_{m[key]}"
        if "order_id" in m.get("properties", {}):
            m["properties"] = {**m["properties"], "order_id": f"{shop}_{m['properties']['order_id']}"}
        out.append(m)
    return out


@pytest.fixture
def shop_workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[dict[str, list[Message]]], Workspace]]:
    opened: list[Workspace] = []

    def build(batches: dict[str, list[Message]]) -> Workspace:
        root = tmp_path_factory.mktemp("model-data") / "ws"
        make_workspace(root).close()
        ws = Workspace(root)
        opened.append(ws)
        ingest(ws, [m for shop, batch in batches.items() for m in tagged(batch, shop)])
        return ws

    yield build
    for ws in opened:
        ws.close()


def shop_rows(frame: pd.DataFrame, shop: str) -> pd.DataFrame:
    """One shop's rows, ids without the prefix, in person order."""
    rows = frame[frame.person_id.str.startswith(f"{shop}_")].copy()
    rows["person_id"] = rows.person_id.str.removeprefix(f"{shop}_")
    return rows.sort_values("person_id").reset_index(drop=True)


# --- the reference: plain Python over the messages ---------------------------------------------------


def reference_traits(batch: list[Message], as_of: datetime) -> dict[str, dict[str, str]]:
    """Per person, each trait's latest non-null value among identify calls before ``as_of``."""
    person = person_of(batch)
    latest: dict[str, dict[str, tuple[datetime, str]]] = defaultdict(dict)
    for m in batch:
        if m["type"] != "identify" or ts_of(m) >= as_of:
            continue
        for name, value in m["traits"].items():
            have = latest[person[m["messageId"]]].get(name)
            if value is not None and (have is None or ts_of(m) > have[0]):
                latest[person[m["messageId"]]][name] = (ts_of(m), value)
    return {who: {name: value for name, (_, value) in traits.items()} for who, traits in latest.items()}


def reference_examples(batch: list[Message], outcome: Outcome, cutoff: datetime) -> pd.DataFrame:
    """Population, label and the point-in-time columns ``model_features`` adds, from the messages."""
    person = person_of(batch)
    end = cutoff + outcome.horizon
    seen: dict[str, list[datetime]] = defaultdict(list)
    for m in batch:
        if ts_of(m) < cutoff:
            seen[person[m["messageId"]]].append(ts_of(m))
    bought: dict[str, list[datetime]] = defaultdict(list)
    for order in known_orders(batch, cutoff):
        bought[order.person].append(order.at)
    if outcome.basis == "activity":
        acted = {person[m["messageId"]] for m in batch if cutoff <= ts_of(m) < end}
    else:
        acted = {o.person for o in known_orders(batch, end) if o.at >= cutoff}
    identified = {person[m["messageId"]] for m in batch if m.get("userId") and ts_of(m) < cutoff}
    traits = reference_traits(batch, cutoff)
    rows = []
    for who, times in seen.items():
        if outcome.customers_only and not bought[who]:
            continue
        rows.append({
            "person_id": who,
            "label": int((who in acted) != (outcome.target == "churn")),
            "days_since_last_seen": days(cutoff, max(times)),
            "days_since_first_order": days(cutoff, min(bought[who])) if bought[who] else None,
            "orders": len(bought[who]),
            "identified": int(who in identified),
            "channel": traits.get(who, {}).get("channel"),
            "country": traits.get(who, {}).get("country"),
        })
    columns = ["person_id", "label", "days_since_last_seen", "days_since_first_order", "orders", "identified",
               "channel", "country"]
    return pd.DataFrame(rows, columns=columns).sort_values("person_id").reset_index(drop=True)


def assert_same_values(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(actual.person_id) == list(expected.person_id)
    for column in expected.columns:
        for who, want, got in zip(expected.person_id, expected[column], actual[column], strict=True):
            if pd.isna(want):
                assert pd.isna(got), (column, who, got)
            elif isinstance(want, float):
                assert got == pytest.approx(want, rel=1e-12), (column, who, want, got)
            else:
                assert got == want, (column, who, want, got)


# --- no leakage, and the right labels ------------------------------------------------------------------


@SHOPS
@given(shop=shops(), outcome=st.sampled_from(OUTCOMES))
def test_examples_use_nothing_from_after_the_cutoff(
    shop: tuple[list[Message], datetime], outcome: Outcome, shop_workspace: Callable[..., Workspace]
) -> None:
    batch, cutoff = shop
    before = [m for m in batch if ts_of(m) < cutoff]
    ws = shop_workspace({"A": batch, "B": before, "C": perturbed(batch, cutoff)})
    frame = run(ws, lambda t: examples(t, outcome, cutoff=cutoff))
    assert list(frame.columns) == ["person_id", *FEATURES, "label"]
    complete = shop_rows(frame, "A")
    features = complete.drop(columns="label")
    pd.testing.assert_frame_equal(shop_rows(frame, "B").drop(columns="label"), features)
    pd.testing.assert_frame_equal(shop_rows(frame, "C").drop(columns="label"), features)
    expected = reference_examples(batch, outcome, cutoff)
    assert_same_values(complete[expected.columns], expected)


def test_traits_are_the_latest_non_null_values_before_the_cutoff(shop_workspace: Callable[..., Workspace]) -> None:
    cutoff = datetime(2025, 3, 1, tzinfo=UTC)

    def identify(user: str, ts: str, **traits: str | None) -> Message:
        return {"type": "identify", "userId": user, "traits": traits, "timestamp": ts, "messageId": f"{user}{ts}"}

    batch = [
        identify("u0", "2025-01-01T00:00:00Z", channel="seo", country="AU"),
        identify("u0", "2025-02-01T00:00:00Z", channel="paid"),
        identify("u0", "2025-02-27T00:00:00Z", channel=None, country=None),  # null does not erase
        identify("u0", "2025-03-01T00:00:00Z", channel="later", country="DE"),  # exactly at the cutoff
        identify("u1", "2025-03-02T00:00:00Z", channel="seo"),  # only after the cutoff
        {"type": "page", "name": "Home", "userId": "u1", "timestamp": "2025-01-05T00:00:00Z", "messageId": "p1"},
    ]
    ws = shop_workspace({"S": batch})
    traits = shop_rows(run(ws, lambda t: traits_as_of(t, as_of=cutoff)), "S")
    assert traits.to_dict("records") == [{"person_id": "u0", "channel": "paid", "country": "AU"}]
    assert reference_traits(batch, cutoff) == {"u0": {"channel": "paid", "country": "AU"}}
    features = shop_rows(run(ws, lambda t: model_features(t, as_of=cutoff)), "S").set_index("person_id")
    assert (features.loc["u0", "channel"], features.loc["u0", "country"]) == ("paid", "AU")
    assert features.loc["u1", ["channel", "country"]].isna().all()  # seen, but identified with traits later


def test_identity_graph_is_the_one_current_input(shop_workspace: Callable[..., Workspace]) -> None:
    """An alias made after the cutoff already merges earlier anonymous activity into the user:
    the person id, and so which row the activity lands on, is today's; its contents are not."""
    cutoff = datetime(2025, 3, 1, tzinfo=UTC)
    anonymous = {"type": "page", "name": "Home", "anonymousId": "u0-a", "timestamp": "2025-02-20T00:00:00Z",
                 "messageId": "p1"}
    link = {"type": "identify", "userId": "u0", "anonymousId": "u0-a", "traits": {"channel": "seo"},
            "timestamp": "2025-03-05T00:00:00Z", "messageId": "i1"}
    ws = shop_workspace({"L": [anonymous, link], "N": [anonymous]})
    frame = run(ws, lambda t: model_features(t, as_of=cutoff))
    linked, unlinked = shop_rows(frame, "L"), shop_rows(frame, "N")
    assert list(linked.person_id) == ["u0"] and list(unlinked.person_id) == ["u0-a"]
    pd.testing.assert_frame_equal(linked.drop(columns="person_id"), unlinked.drop(columns="person_id"))
    assert linked.identified.tolist() == [0] and linked.channel.isna().all() and linked.events_30d.tolist() == [1]


# --- training cutoffs and the outcome spec -----------------------------------------------------------------


def reference_cutoffs(start: datetime, end: datetime, horizon: timedelta, count: int, step: timedelta,
                      min_history: timedelta) -> list[datetime]:
    """Brute force: walk back from the end, keep cutoffs whose window fits and whose history is long enough."""
    out = []
    c = end - horizon
    for _ in range(count):
        if c - start >= min_history:
            out.append(c)
        c -= step
    return out


@settings(max_examples=200, deadline=None)
@given(span=st.integers(1, 400), horizon=st.integers(1, 90), count=st.integers(2, 8), step=st.integers(1, 60),
       history=st.integers(0, 120))
def test_training_cutoffs_match_a_brute_force_walk(span: int, horizon: int, count: int, step: int,
                                                   history: int) -> None:
    """A backtest needs a training window that ended by the latest cutoff: two horizons after the history."""
    start = datetime(2025, 1, 1, tzinfo=UTC)
    end, h, s, m = start + timedelta(days=span), timedelta(days=horizon), timedelta(days=step), timedelta(days=history)
    if span < 2 * horizon + history:
        with pytest.raises(ValidationError) as caught:
            training_cutoffs(start=start, end=end, horizon=h, count=count, step=s, min_history=m)
        assert caught.value.field == "horizon_days" and str(2 * horizon + history) in caught.value.reason
        return
    got = training_cutoffs(start=start, end=end, horizon=h, count=count, step=s, min_history=m)
    assert got == reference_cutoffs(start, end, h, count, s, m)
    assert got[0] == end - h and all(c + h <= end and c - start >= m for c in got)


def test_training_cutoffs_edges() -> None:
    start, day = datetime(2025, 1, 1, tzinfo=UTC), timedelta(days=1)
    exact = training_cutoffs(start=start, end=start + 70 * day, horizon=30 * day, count=5, step=30 * day,
                             min_history=10 * day)
    assert exact == [start + 40 * day, start + 10 * day]  # the earliest has exactly min_history before it
    cases: list[tuple[dict[str, Any], str]] = [({"count": 1}, "cutoffs"), ({"step": timedelta(0)}, "step_days"),
                          ({"step": -day}, "step_days"), ({"end": start + 69 * day}, "horizon_days")]
    for kwargs, field in cases:
        args: dict[str, Any] = {"start": start, "end": start + 70 * day, "horizon": 30 * day, "count": 2,
                                "step": day, "min_history": 10 * day} | kwargs
        with pytest.raises(ValidationError) as caught:
            training_cutoffs(**args)
        assert caught.value.field == field


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"target": "revenue"}, "target"), ({"basis": "clicks"}, "basis"), ({"horizon_days": 0}, "horizon_days"),
    ({"horizon_days": True}, "horizon_days"), ({"horizon_days": 7.5}, "horizon_days"),
])
def test_outcome_rejects_bad_specs(kwargs: dict[str, Any], field: str) -> None:
    spec: dict[str, Any] = {"target": "churn", "horizon_days": 30} | kwargs
    with pytest.raises(ValidationError) as caught:
        Outcome(**spec)
    assert caught.value.field == field


# --- the backtest trains only on finished windows ------------------------------------------------------------


def buy_till_you_die(rng: np.random.Generator, age: float) -> tuple[int, float]:
    """Orders and the time of the last one (days from the first) for one BG/NBD customer."""
    rate, dropout, t, last, repeats = rng.gamma(0.5, 1 / 20), rng.beta(1.0, 2.5), 0.0, 0.0, 0
    while rng.uniform() > dropout:  # alive after each purchase
        t += rng.exponential(1 / rate)
        if t > age:
            break
        last, repeats = t, repeats + 1
    return repeats + 1, last


def example_frame(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """Synthetic examples whose order history a BG/NBD fits: 80 % customers, the rest never ordered."""
    frame = pd.DataFrame({name: rng.uniform(0, 10, n) for name in NUMERIC_FEATURES})
    age = rng.uniform(30, 400, n)
    history = [buy_till_you_die(rng, a) for a in age]
    buyer = rng.uniform(size=n) < 0.8
    orders = np.where(buyer, [h[0] for h in history], 0)
    since_last = np.where(buyer, age - np.array([h[1] for h in history]), np.nan)
    frame = frame.assign(orders=orders, revenue=20.0 * orders, days_since_first_order=np.where(buyer, age, np.nan),
                         recency_days=since_last, days_since_last_seen=np.where(buyer, since_last, age) / 2)
    for name in CATEGORICAL_FEATURES:
        frame[name] = rng.choice(np.array(["a", "b", None], dtype=object), n)
    p = 1 / (1 + np.exp(-(np.nan_to_num(since_last, nan=200.0) / 100 - 1.5 - orders / 3)))
    frame["label"] = (rng.uniform(size=n) < p).astype(np.int64)
    frame.insert(0, "person_id", [f"p{i}" for i in range(n)])
    return frame


@settings(max_examples=8, deadline=None)
@given(offsets=st.sets(st.integers(0, 12).map(lambda k: 15 * k), min_size=2, max_size=5),
       horizon=st.sampled_from([15, 30, 60]))
def test_backtests_train_only_on_windows_that_ended(offsets: set[int], horizon: int,
                                                    monkeypatch_fits: list[tuple[set[Any], int]]) -> None:
    monkeypatch_fits.clear()
    start = datetime(2025, 1, 1, tzinfo=UTC)
    frames = {start + timedelta(days=d): example_frame(np.random.default_rng(d), 120) for d in offsets}
    outcome = Outcome("churn", horizon)
    template = OutcomeClassifier(n_estimators=10, num_leaves=4, min_child_samples=5)
    cutoffs = sorted(frames, reverse=True)
    testable = [c for c in cutoffs if any(e + outcome.horizon <= c for e in cutoffs)]
    if not testable:
        with pytest.raises(ValidationError) as caught:
            train_outcome(frames, outcome, classifier=template)
        assert caught.value.field == "cutoffs"
        return
    trained = train_outcome(frames, outcome, classifier=template)
    assert [b.cutoff for b in trained.backtests] == testable and trained.headline.cutoff == testable[0]
    assert len(monkeypatch_fits) == len(testable) + 1  # one model per backtest, then the refit
    for backtest, (seen, rows) in zip(trained.backtests, monkeypatch_fits, strict=False):
        assert all(c + outcome.horizon <= backtest.cutoff for c in backtest.train_cutoffs)
        assert seen == set(backtest.train_cutoffs) == {c for c in cutoffs if c + outcome.horizon <= backtest.cutoff}
        assert rows == sum(len(frames[c]) for c in seen)
        assert backtest.predictions.person_id.tolist() == frames[backtest.cutoff].person_id.tolist()
    assert monkeypatch_fits[-1] == (set(cutoffs), sum(len(f) for f in frames.values()))
    assert trained.cutoffs == cutoffs and trained.classifier.get_params() == template.get_params()


@pytest.fixture(scope="module")
def monkeypatch_fits() -> Iterator[list[tuple[set[Any], int]]]:
    """Record the cutoffs (groups) and row count every ``OutcomeClassifier.fit`` in ``train_outcome`` sees."""
    calls: list[tuple[set[Any], int]] = []
    original = OutcomeClassifier.fit

    def spy(self: OutcomeClassifier, X: pd.DataFrame, y: Any, groups: Any = None) -> OutcomeClassifier:
        calls.append(({pd.Timestamp(g).to_pydatetime() for g in groups}, len(X)))
        return original(self, X, y, groups)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(OutcomeClassifier, "fit", spy)  # the class train_outcome clones
        yield calls


def test_a_baseline_that_cannot_be_fitted_is_left_out_and_the_report_still_renders(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """BG/NBD may not converge on the few customers of an early cutoff: the model still trains."""
    from tenure.errors import ConvergenceError
    from tenure.models import baselines
    from tenure.models.charts import LABELS
    from tenure.models.outcomes import BGNBD, MODEL, RFM_LOGISTIC
    from tenure.models.report import _metrics_table, _rolling_table

    start = datetime(2025, 1, 1, tzinfo=UTC)
    frames = {start + timedelta(days=d): example_frame(np.random.default_rng(d), 150) for d in (0, 30, 60)}

    def fail(self: Any, features: pd.DataFrame, ordered: Any) -> Any:
        raise ConvergenceError("maximum likelihood did not converge: ABNORMAL")

    monkeypatch.setattr(baselines.BuyTillYouDieBaseline, "fit", fail)
    trained = train_outcome(frames, Outcome("churn", 30), classifier=OutcomeClassifier(n_estimators=10))
    for backtest in trained.backtests:
        assert set(backtest.metrics) == {MODEL, RFM_LOGISTIC} and BGNBD not in backtest.predictions
    table = _metrics_table(trained.headline.metrics, [MODEL, RFM_LOGISTIC])
    assert [row[0].text for row in table.rows] == [LABELS[MODEL], LABELS[RFM_LOGISTIC]]
    assert all(row[-1].text == "–" for row in _rolling_table(trained).rows)
