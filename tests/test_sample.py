"""The sample shop against its own ground truth and against closed-form references."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.special import hyp2f1
from scipy.stats import spearmanr

import tenure.sample
from tenure.sample import SampleFiles, SampleParams, write_sample

START = date(2025, 1, 1)
SEED = 7
EVENT_COLUMNS = ["message_id", "type", "event", "user_id", "anonymous_id", "previous_id",
                 "timestamp", "properties", "traits", "context"]


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> SampleFiles:
    return write_sample(tmp_path_factory.mktemp("shop"), users=5000, days=150, seed=SEED, start=START)


@pytest.fixture(scope="module")
def events(shop: SampleFiles) -> pd.DataFrame:
    return pd.read_parquet(shop.events)


@pytest.fixture(scope="module")
def truth(shop: SampleFiles) -> pd.DataFrame:
    return pd.read_parquet(shop.ground_truth_users)


@pytest.fixture(scope="module")
def params(shop: SampleFiles) -> dict[str, object]:
    return json.loads(shop.ground_truth_params.read_text())


@pytest.fixture(scope="module")
def person_of(events: pd.DataFrame, truth: pd.DataFrame) -> pd.Series:
    """Person number of every event, via the true user id or the true anonymous ids."""
    by_user = {u: i for i, u in enumerate(truth.user_id)}
    by_anon = {a: i for i, ids in enumerate(truth.anonymous_ids) for a in ids}
    from_user = events.user_id.map(by_user)
    from_anon = events.anonymous_id.map(by_anon)
    return from_user.fillna(from_anon).astype("int64")


def test_exports_are_pinned() -> None:
    assert tenure.sample.__all__ == ["SampleFiles", "SampleParams", "write_sample"]


def test_same_seed_same_files_other_seed_other_files(tmp_path: Path) -> None:
    a = write_sample(tmp_path / "a", users=300, days=40, seed=3)
    b = write_sample(tmp_path / "b", users=300, days=40, seed=3)
    c = write_sample(tmp_path / "c", users=300, days=40, seed=4)
    for name in ("events", "users", "items", "ground_truth_users"):
        assert pq.read_table(getattr(a, name)).equals(pq.read_table(getattr(b, name))), name
    assert a.ground_truth_params.read_text() == b.ground_truth_params.read_text()
    assert not pq.read_table(a.events).equals(pq.read_table(c.events))


def test_file_schemas(shop: SampleFiles, events: pd.DataFrame) -> None:
    schema = pq.read_schema(shop.events)
    assert schema.names == EVENT_COLUMNS
    assert schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert set(events.type) == {"track", "identify", "page", "alias"}
    assert events.message_id.is_unique and events.message_id.iloc[0] == f"s{SEED}-0"
    assert pq.read_schema(shop.users).names == ["user_id", "email", "name", "country", "channel", "signup_at"]
    items = pd.read_parquet(shop.items)
    assert list(items.columns) == ["item_id", "name", "category", "brand", "price", "description", "in_stock"]
    assert len(items) == shop.n_items == 200 and items.item_id.is_unique
    assert items.in_stock.dtype == bool and (items.price > 0).all()
    assert items.category.nunique() == 12
    gt = pq.read_schema(shop.ground_truth_users)
    assert gt.field("anonymous_ids").type == pa.list_(pa.string())
    assert gt.field("user_factors").type == pa.list_(pa.float32())
    for col in ("user_id", "acquisition_at", "channel", "signed_up", "lambda_per_day", "p_dropout",
                "dropout_at", "alive_at_end", "spend_nu", "expected_order_value", "n_orders", "revenue_usd"):
        assert col in gt.names
    assert len(pd.read_parquet(shop.users)) == shop.n_users
    assert (events.type == "track").sum() + (events.type != "track").sum() == shop.n_events
    for text in events.properties.sample(2000, random_state=0):
        assert isinstance(json.loads(text), dict)


def test_timestamps_sorted_and_inside_the_period(events: pd.DataFrame, truth: pd.DataFrame) -> None:
    ts = events.timestamp
    assert ts.is_monotonic_increasing
    lo = pd.Timestamp(datetime(2025, 1, 1, tzinfo=UTC))
    assert ts.min() >= lo and ts.max() < lo + timedelta(days=150)
    assert (truth.acquisition_at >= lo).all()


def _orders(events: pd.DataFrame) -> pd.DataFrame:
    rows = events[events.event == "Order Completed"]
    props = [json.loads(p) for p in rows.properties]
    return pd.DataFrame({
        "user_id": rows.user_id.to_numpy(), "timestamp": rows.timestamp.to_numpy(),
        "order_id": [p["order_id"] for p in props], "revenue": [p["revenue"] for p in props],
        "currency": [p["currency"] for p in props],
        "lines": [sum(x["price"] * x["quantity"] for x in p["products"]) for p in props],
        "n_lines": [len(p["products"]) for p in props],
    })


def test_order_revenue_is_the_sum_of_its_lines(events: pd.DataFrame) -> None:
    orders = _orders(events)
    assert len(orders) > 2000 and orders.order_id.is_unique
    np.testing.assert_allclose(orders.revenue, orders.lines, atol=0.006)
    assert orders.user_id.notna().all()
    eur = (orders.currency == "EUR").mean()
    assert set(orders.currency) == {"USD", "EUR"} and 0.02 < eur < 0.09


def test_orders_per_user_and_revenue_match_ground_truth(events: pd.DataFrame, truth: pd.DataFrame,
                                                        params: dict[str, object]) -> None:
    orders = _orders(events)
    counts = orders.groupby("user_id").size()
    expected = truth.set_index("user_id").n_orders
    assert counts.reindex(expected.index, fill_value=0).equals(expected)
    rate = params["currency_rates_to_usd"]["EUR"]  # type: ignore[index]
    usd = np.where(orders.currency == "EUR", (orders.revenue * rate).round(2), orders.revenue)
    revenue = pd.Series(usd, index=orders.user_id).groupby(level=0).sum()
    np.testing.assert_allclose(revenue.reindex(expected.index, fill_value=0), truth.set_index("user_id").revenue_usd,
                               atol=0.02)
    first = orders.groupby("user_id").timestamp.min()
    acq = truth.set_index("user_id").acquisition_at.reindex(first.index)
    assert (first.to_numpy() >= acq.to_numpy()).all()


def test_refunds_point_at_earlier_orders(events: pd.DataFrame) -> None:
    orders = _orders(events).set_index("order_id")
    refunds = events[events.event == "Order Refunded"]
    assert 0.01 < len(refunds) / len(orders) < 0.05
    for row in refunds.itertuples():
        p = json.loads(row.properties)
        order = orders.loc[p["order_id"]]
        assert order.user_id == row.user_id and order.timestamp < row.timestamp
        assert 0 < p["revenue"] <= order.revenue + 1e-9 and p["currency"] == order.currency


def test_anonymous_events_precede_identify_which_links_the_ids(events: pd.DataFrame, truth: pd.DataFrame,
                                                               person_of: pd.Series) -> None:
    identify = events[events.type == "identify"]
    assert identify.user_id.is_unique and identify.anonymous_id.notna().all()
    signed = truth[truth.signed_up]
    assert set(identify.user_id) == set(signed.user_id)
    anon_of = dict(zip(truth.user_id, truth.anonymous_ids, strict=True))
    assert all(a in anon_of[u] for u, a in zip(identify.user_id, identify.anonymous_id, strict=True))
    traits = json.loads(identify.traits.iloc[0])
    assert set(traits) == {"email", "name", "country", "channel"}
    signup = pd.Series(identify.timestamp.to_numpy(), index=person_of[identify.index].to_numpy())
    anonymous = events.user_id.isna()
    anon_person = person_of[anonymous]
    known = anon_person.isin(signup.index)
    before = events.timestamp[anonymous][known].to_numpy() < signup.reindex(anon_person[known]).to_numpy()
    assert before.all()
    after_signup = events.timestamp.to_numpy() > signup.reindex(person_of).to_numpy()
    assert events.user_id[after_signup].notna().all()
    never = ~truth.signed_up
    assert never.any() and (truth.user_id[never] == truth.anonymous_ids[never].str[0]).all()
    aliases = events[events.type == "alias"]
    assert len(aliases) > 0
    assert all(p in anon_of[u] for u, p in zip(aliases.user_id, aliases.previous_id, strict=True))


def test_first_session_carries_the_channel_campaign(events: pd.DataFrame, truth: pd.DataFrame,
                                                    person_of: pd.Series) -> None:
    first = events.groupby(person_of).head(1)
    ctx = [json.loads(c) for c in first.context]
    mediums = pd.Series([c["campaign"]["medium"] for c in ctx], index=person_of[first.index].to_numpy())
    expected = {"organic": "organic", "paid_search": "cpc", "social": "social", "email": "email",
                "referral": "referral"}
    assert (mediums.sort_index().to_numpy() == truth.channel.map(expected).to_numpy()[mediums.sort_index().index]).all()


def test_funnel_step_rates_match_configuration_within_purchase_cycles(
    events: pd.DataFrame, person_of: pd.Series, params: dict[str, object]
) -> None:
    df = pd.DataFrame({"person": person_of.to_numpy(), "ts": events.timestamp.to_numpy(),
                       "event": events.event.to_numpy()})
    df = df[df.event.isin(["Product Viewed", "Product Added", "Checkout Started", "Order Completed",
                           "Home", "Category", "Product", "Cart", "Checkout"])]
    df = df.sort_values(["person", "ts"], kind="stable")
    gap = df.ts.diff() > pd.Timedelta(minutes=30)
    df["session"] = (gap | (df.person != df.person.shift())).cumsum()
    last_order = df[df.event == "Order Completed"].groupby("person").ts.max()
    df = df[df.ts <= df.person.map(last_order)]  # completed cycles only
    flags = pd.DataFrame({name: (df.event == name).to_numpy() for name in
                          ("Product Viewed", "Product Added", "Checkout Started", "Order Completed")})
    steps = flags.groupby(df.session.to_numpy()).any()
    viewed, added = steps["Product Viewed"], steps["Product Added"]
    checkout, ordered = steps["Checkout Started"], steps["Order Completed"]
    funnel = params["funnel"]
    for num, den, rate in ((added, viewed, funnel["view_to_add"]),  # type: ignore[index]
                           (checkout, added, funnel["add_to_checkout"]),  # type: ignore[index]
                           (ordered, checkout, funnel["checkout_to_order"])):  # type: ignore[index]
        n = int(den.sum())
        observed = (num & den).sum() / n
        tolerance = 4 * np.sqrt(rate * (1 - rate) / n) + 0.01
        assert abs(observed - rate) < tolerance, (observed, rate, n)


def _expected_repeat(t: np.ndarray, r: float, alpha: np.ndarray, a: float, b: float) -> np.ndarray:
    """E[X(t)] of the BG/NBD model (Fader, Hardie & Lee 2005, eq. 9)."""
    z = t / (alpha + t)
    return (a + b - 1) / (a - 1) * (1 - (alpha / (alpha + t)) ** r * hyp2f1(r, b, a + b - 1, z))


def test_repeat_purchases_follow_the_bgnbd_expectation(truth: pd.DataFrame, params: dict[str, object]) -> None:
    pop = params["population"]
    buyers = truth[truth.n_orders > 0]
    assert len(buyers) > 1800
    alpha = buyers.channel.map(pop["channel_alpha"]).to_numpy()  # type: ignore[index]
    expected = _expected_repeat(buyers.observation_op_days.to_numpy(), pop["r"], alpha, pop["a"], pop["b"])  # type: ignore[index]
    repeat = buyers.n_orders.to_numpy() - 1
    se = repeat.std(ddof=1) / np.sqrt(len(repeat))
    assert abs(repeat.mean() - expected.mean()) < 4 * se, (repeat.mean(), expected.mean(), se)
    # Zero repeat purchases: P(X(t)=0) = (alpha/(alpha+t))^r for each person.
    p0 = (alpha / (alpha + buyers.observation_op_days.to_numpy())) ** pop["r"]  # type: ignore[index]
    assert abs((repeat == 0).mean() - p0.mean()) < 4 * np.sqrt(p0.mean() * (1 - p0.mean()) / len(p0))


def test_latent_parameters_have_their_population_moments(truth: pd.DataFrame, params: dict[str, object]) -> None:
    pop = params["population"]
    scaled = truth.lambda_per_day * truth.channel.map(pop["channel_alpha"])  # type: ignore[index]
    assert abs(scaled.mean() - pop["r"]) < 4 * np.sqrt(pop["r"] / len(truth))  # type: ignore[index]
    mean_p = pop["a"] / (pop["a"] + pop["b"])  # type: ignore[index]
    assert abs(truth.p_dropout.mean() - mean_p) < 0.015
    shares = truth.channel.value_counts(normalize=True)
    for ch, share in zip(pop["channels"], pop["channel_share"], strict=True):  # type: ignore[index]
        assert abs(shares[ch] - share) < 0.03


def test_dropout_and_alive_flags_agree(truth: pd.DataFrame) -> None:
    end = pd.Timestamp(datetime(2025, 1, 1, tzinfo=UTC)) + timedelta(days=150)
    buyers = truth[truth.n_orders > 0]
    assert truth.alive_at_end[truth.n_orders == 0].isna().all()
    dead = buyers[~buyers.alive_at_end.astype(bool)]
    assert (dead.dropout_at < end).all() and (dead.dropout_at >= dead.first_order_at).all()
    assert ((dead.dropout_at > dead.first_order_at) == (dead.n_orders > 1)).all()
    alive = buyers[buyers.alive_at_end.astype(bool)]
    assert ((alive.dropout_at >= end) | alive.dropout_at.isna()).all()
    assert 0.2 < buyers.alive_at_end.astype(bool).mean() < 0.95


def test_behaviour_follows_latent_preferences(events: pd.DataFrame, shop: SampleFiles,
                                              person_of: pd.Series) -> None:
    truth = pd.read_parquet(shop.ground_truth_users)
    items = pd.read_parquet(shop.ground_truth_items)
    categories = json.loads(shop.ground_truth_params.read_text())["categories"]
    u = np.stack(truth.user_factors.to_numpy())
    aff = np.stack(truth.category_affinity.to_numpy())
    v = np.stack(items.factors.to_numpy())
    item_index = {x: i for i, x in enumerate(items.item_id)}
    cat_index = items.category.map({c: i for i, c in enumerate(categories)}).to_numpy()

    def pref(people: np.ndarray, its: np.ndarray) -> np.ndarray:
        return (u[people] * v[its]).sum(axis=1) + aff[people, cat_index[its]]

    views = events[events.event == "Product Viewed"]
    who = person_of[views.index].to_numpy()
    its = np.array([item_index[json.loads(p)["product_id"]] for p in views.properties[:20000]])
    rng = np.random.default_rng(0)
    random_items = rng.integers(0, len(items), len(its))
    assert pref(who[:len(its)], its).mean() > pref(who[:len(its)], random_items).mean() + 0.5
    reviews = events[events.event == "Product Reviewed"]
    assert len(reviews) > 100
    rated = [json.loads(p) for p in reviews.properties]
    ratings = np.array([r["rating"] for r in rated])
    assert set(ratings) <= {1, 2, 3, 4, 5}
    r_pref = pref(person_of[reviews.index].to_numpy(), np.array([item_index[r["product_id"]] for r in rated]))
    assert spearmanr(r_pref, ratings).statistic > 0.3


def test_order_values_track_the_gamma_gamma_spend(truth: pd.DataFrame) -> None:
    frequent = truth[truth.n_orders >= 3]
    mean_value = frequent.revenue_usd / frequent.n_orders
    assert spearmanr(mean_value, frequent.expected_order_value).statistic > 0.3


def test_weekends_and_december_are_busier(tmp_path: Path) -> None:
    files = write_sample(tmp_path, users=1500, days=365, seed=11, params=SampleParams(growth_per_year=0.0))
    events = pd.read_parquet(files.events, columns=["event", "timestamp"])
    orders = events[events.event == "Order Completed"]
    assert (orders.timestamp.dt.month == 12).sum() > 1.25 * (orders.timestamp.dt.month == 6).sum()
    landings = events[events.event.isin(["Home", "Category"])]  # one per session
    weekend = (landings.timestamp.dt.day_of_week >= 5).mean()
    assert weekend > 2 / 7 + 0.015, weekend


def test_csv_output_matches_parquet_content(tmp_path: Path) -> None:
    pq_files = write_sample(tmp_path / "p", users=200, days=30, seed=5)
    csv_files = write_sample(tmp_path / "c", users=200, days=30, seed=5, fmt="csv")
    assert csv_files.events.name == "events.csv.gz"
    from_csv = pd.read_csv(csv_files.events, dtype=str, keep_default_na=False)
    from_pq = pd.read_parquet(pq_files.events)
    assert list(from_csv.columns) == EVENT_COLUMNS and len(from_csv) == len(from_pq)
    assert from_csv.timestamp.str.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z").all()
    parsed = pd.to_datetime(from_csv.timestamp, utc=True)
    assert (parsed.to_numpy() == from_pq.timestamp.to_numpy()).all()
    assert (from_csv.properties == from_pq.properties).all()
    users = pd.read_csv(csv_files.users)
    assert list(users.columns) == ["user_id", "email", "name", "country", "channel", "signup_at"]


def test_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_sample(tmp_path, users=0, days=10)
    with pytest.raises(ValueError):
        write_sample(tmp_path, users=10, days=10, fmt="xlsx")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        SampleParams(view_to_add=1.5)
