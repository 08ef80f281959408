"""The product catalogue: names, prices and the latent factors that drive preferences."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tenure.sample._params import SampleParams

# category: (median price in USD, nouns, description words)
CATEGORIES: dict[str, tuple[float, tuple[str, ...], tuple[str, ...]]] = {
    "Apparel": (20.0, ("T-Shirt", "Hoodie", "Jacket", "Dress", "Jeans", "Sweater"),
                ("cotton", "soft", "relaxed", "fit", "breathable", "layering", "everyday")),
    "Shoes": (35.0, ("Sneaker", "Boot", "Sandal", "Loafer", "Runner", "Slipper"),
              ("cushioned", "leather", "grip", "lightweight", "waterproof", "sole")),
    "Beauty": (10.0, ("Serum", "Lipstick", "Cleanser", "Moisturiser", "Mask", "Palette"),
               ("hydrating", "vegan", "fragrance-free", "glow", "gentle", "skin")),
    "Home": (16.0, ("Candle", "Cushion", "Throw", "Vase", "Frame", "Lamp"),
             ("cosy", "handmade", "ceramic", "linen", "minimal", "decor")),
    "Kitchen": (14.0, ("Mug", "Skillet", "Knife", "Kettle", "Board", "Grinder"),
                ("stainless", "nonstick", "dishwasher-safe", "chef", "durable", "cast")),
    "Electronics": (45.0, ("Headphones", "Charger", "Speaker", "Cable", "Mouse", "Keyboard"),
                    ("wireless", "bluetooth", "fast", "usb-c", "battery", "noise-cancelling")),
    "Books": (9.0, ("Novel", "Cookbook", "Guide", "Memoir", "Atlas", "Anthology"),
              ("bestselling", "paperback", "illustrated", "classic", "edition", "author")),
    "Toys": (12.0, ("Puzzle", "Plush", "Blocks", "Kite", "Robot", "Boardgame"),
             ("kids", "educational", "colourful", "family", "safe", "creative")),
    "Sports": (22.0, ("Yoga Mat", "Bottle", "Dumbbell", "Band", "Ball", "Backpack"),
               ("training", "outdoor", "grip", "insulated", "recovery", "performance")),
    "Garden": (15.0, ("Planter", "Seeds", "Trowel", "Hose", "Lantern", "Gloves"),
               ("organic", "weatherproof", "garden", "patio", "green", "sturdy")),
    "Grocery": (4.0, ("Coffee", "Tea", "Granola", "Chocolate", "Olive Oil", "Honey"),
                ("fair-trade", "roasted", "single-origin", "sweet", "pantry", "fresh")),
    "Pets": (9.0, ("Treats", "Leash", "Bed", "Toy", "Bowl", "Brush"),
             ("dog", "cat", "chew", "comfortable", "natural", "washable")),
}
ADJECTIVES = ("Classic", "Urban", "Nordic", "Essential", "Premium", "Everyday", "Pro", "Mini",
              "Vintage", "Eco", "Studio", "Signature", "Lite", "Max", "Original", "Coastal")
BRANDS = tuple(
    "Acme Alder Arlo Basil Birch Bolt Cedar Cobalt Dune Ember Fable Fern Forge Gala Grove Haven "
    "Juniper Kestrel Lark Linden Loom Maple Marlow Nimbus Oak Orbit Pike Quill Reed Sable Sage "
    "Slate Sorrel Tide Umber Vale Willow Wren Yarrow Zephyr".split()
)


@dataclass(frozen=True, slots=True)
class Catalogue:
    """Items as columns; ``factors`` and ``popularity`` are the latent truth."""

    item_id: list[str]
    name: list[str]
    category: NDArray[np.int64]  # index into CATEGORY_NAMES
    brand: NDArray[np.int64]  # index into BRANDS
    price: NDArray[np.float64]  # USD, 2 decimals
    price_eur: NDArray[np.float64]
    description: list[str]
    in_stock: NDArray[np.bool_]
    factors: NDArray[np.float64]  # (n_items, k)
    popularity: NDArray[np.float64]  # log-popularity
    category_centroids: NDArray[np.float64]  # (n_categories, k)

    @property
    def size(self) -> int:
        return len(self.item_id)


CATEGORY_NAMES: tuple[str, ...] = tuple(CATEGORIES)


def catalogue_size(users: int) -> int:
    """About one item per 50 users, at least 200 and at most 20,000."""
    return int(min(20_000, max(200, users // 50)))


def make_catalogue(rng: np.random.Generator, n_items: int, params: SampleParams) -> Catalogue:
    """Draw the catalogue; item factors cluster around their category's centroid."""
    n_cat, k = len(CATEGORY_NAMES), params.n_factors
    cat_weights = rng.dirichlet(np.full(n_cat, 4.0))
    category = rng.choice(n_cat, size=n_items, p=cat_weights)
    brand = rng.integers(0, len(BRANDS), n_items)
    medians = np.array([CATEGORIES[c][0] for c in CATEGORY_NAMES])
    price = np.round(medians[category] * rng.lognormal(0.0, 0.45, n_items), 2)
    price = np.maximum(price, 0.99)
    price_eur = np.maximum(np.round(price / params.eur_usd, 2), 0.01)
    centroids = rng.normal(0.0, params.factor_scale, (n_cat, k))
    factors = 0.8 * centroids[category] + rng.normal(0.0, 0.6 * params.factor_scale, (n_items, k))
    popularity = rng.normal(0.0, 1.0, n_items)
    in_stock = rng.random(n_items) > 0.06
    adjective = rng.integers(0, len(ADJECTIVES), n_items)
    noun = rng.integers(0, 6, n_items)
    words = rng.integers(0, 6, (n_items, 4))
    item_id, names, descriptions = [], [], []
    for i in range(n_items):  # 20k at most: cheap, and clearer than string arithmetic
        cat = CATEGORY_NAMES[category[i]]
        _, nouns, vocab = CATEGORIES[cat]
        item_id.append(f"p{i + 1:05d}")
        names.append(f"{BRANDS[brand[i]]} {ADJECTIVES[adjective[i]]} {nouns[noun[i]]}")
        picked = [vocab[w] for w in words[i]]
        descriptions.append(f"{picked[0].capitalize()} {nouns[noun[i]].lower()}: "
                            f"{picked[1]}, {picked[2]} and {picked[3]}.")
    return Catalogue(
        item_id=item_id, name=names, category=category, brand=brand, price=price,
        price_eur=price_eur, description=descriptions, in_stock=in_stock, factors=factors,
        popularity=popularity, category_centroids=centroids,
    )


def pick_items(
    rng: np.random.Generator,
    cat: Catalogue,
    user_factors: NDArray[np.float64],
    user_affinity: NDArray[np.float64],
    users: NDArray[np.int64],
    cells_per_chunk: int = 8_000_000,
) -> NDArray[np.int64]:
    """One item per entry of ``users``, drawn exactly from softmax(popularity + u.v + affinity).

    People are scored against the whole catalogue a block at a time with one matrix product
    (affinity and popularity ride along as extra columns); the block's unnormalised weights
    are cumulated as one flat array, in which person ``i`` owns one interval, so all of the
    block's draws are a single ``searchsorted``.
    """
    order = np.argsort(users, kind="stable")
    sorted_users = users[order]
    out = np.empty(len(users), dtype=np.int64)
    n_people, n_items = len(user_factors), cat.size
    n_cat = user_affinity.shape[1]
    left = np.hstack([user_factors, user_affinity, np.ones((n_people, 1))]).astype(np.float32)
    right = np.hstack([cat.factors, np.eye(n_cat)[cat.category], cat.popularity[:, None]])
    right = np.ascontiguousarray(right.T.astype(np.float32))
    block = max(1, cells_per_chunk // n_items)
    bounds = np.searchsorted(sorted_users, np.arange(0, n_people + block, block))
    for b, p0 in enumerate(range(0, n_people, block)):
        lo, hi = bounds[b], bounds[b + 1]
        if lo == hi:
            continue
        weight = left[p0:p0 + block] @ right
        top = float(weight.max())
        if top > 60.0:  # keep exp() finite in float32
            weight -= top - 60.0
        np.exp(weight, out=weight)
        cum = np.cumsum(weight.ravel(), dtype=np.float64)
        row_end = cum[n_items - 1::n_items]
        row_start = np.concatenate([[0.0], row_end[:-1]])
        who = sorted_users[lo:hi] - p0
        target = row_start[who] + rng.random(hi - lo) * (row_end[who] - row_start[who])
        pos = np.searchsorted(cum, target, side="right")
        pos = np.clip(pos, who * n_items, who * n_items + n_items - 1)
        out[order[lo:hi]] = pos - who * n_items
    return out


def preference(
    cat: Catalogue, user_factors: NDArray[np.float64], user_affinity: NDArray[np.float64],
    users: NDArray[np.int64], items: NDArray[np.int64],
) -> NDArray[np.float64]:
    """The preference term u.v + affinity of given (user, item) pairs, without popularity."""
    out: NDArray[np.float64] = np.einsum("nk,nk->n", user_factors[users], cat.factors[items])
    return out + user_affinity[users, cat.category[items]]
