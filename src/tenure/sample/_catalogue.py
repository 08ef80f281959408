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
    pool_size: int,
) -> NDArray[np.int64]:
    """One item per entry of ``users``, drawn from softmax(popularity + u.v + affinity[category]).

    Sampling-importance-resampling: each person gets a pool of ``pool_size`` candidates drawn
    by popularity, weighted by ``exp(u.v + affinity)``; every draw picks from the pool by
    weight. This approaches the softmax target as the pool grows, costs O(people x pool)
    scoring instead of O(draws x catalogue), and makes people revisit favourite items.
    """
    n_people = len(user_factors)
    weights = np.exp(cat.popularity - cat.popularity.max())
    # An urn of 2**20 slots, filled in proportion to popularity: drawing is one gather.
    slots = np.floor(np.cumsum(weights) / weights.sum() * (1 << 20)).astype(np.int64)
    urn = np.repeat(np.arange(cat.size), np.diff(np.concatenate([[0], slots])))
    pool = urn[rng.integers(0, len(urn), (n_people, pool_size))]
    score = np.einsum("nk,nck->nc", user_factors, cat.factors[pool])
    score += np.take_along_axis(user_affinity, cat.category[pool], axis=1)
    w = np.exp(score - score.max(axis=1, keepdims=True))
    cdf = np.cumsum(w, axis=1)
    cdf /= cdf[:, -1:]
    cdf[:, -1] = 1.0
    # Person i's CDF shifted by i makes one increasing array: a draw is one searchsorted.
    flat = (cdf + np.arange(n_people)[:, None]).ravel()
    pos = np.searchsorted(flat, users + rng.random(len(users)), side="right")
    pos = np.minimum(pos, users * pool_size + pool_size - 1)
    return pool.ravel()[pos]


def preference(
    cat: Catalogue, user_factors: NDArray[np.float64], user_affinity: NDArray[np.float64],
    users: NDArray[np.int64], items: NDArray[np.int64],
) -> NDArray[np.float64]:
    """The preference term u.v + affinity of given (user, item) pairs, without popularity."""
    return np.einsum("nk,nk->n", user_factors[users], cat.factors[items]) + user_affinity[
        users, cat.category[items]
    ]
