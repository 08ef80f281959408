"""``ws.recommendations``: train, store and serve what to offer each person next.

Training (``tenure models train recommendations``) reads three point-in-time snapshots of the
interaction signals, chooses the algorithm on the validation split, reports it against
popularity on the test split, and registers the winner as ``recommendations`` in the model
registry. Scoring writes each person's top-N (with item details and a reason) to
``person_details`` under ``recommendations``, with the items they bought under
``purchased_items``, both tagged with the model version. ``for_person`` serves the stored list
blended with the person's events of the last minutes (``recent_item_events``); ``similar``
answers "customers also viewed".
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from tenure.errors import NotFoundError, ValidationError
from tenure.ingest.recent import recent_item_rows
from tenure.models.recommend_live import LiveInputs, blend
from tenure.models.recommend_scoring import recommend_everyone
from tenure.models.recommend_training import TrainedRecommender, allowed_mask, headline, train_recommender
from tenure.models.registry import RECOMMENDATIONS as NAME
from tenure.models.registry import ModelInfo
from tenure.models.signals import Signals, interaction_weights
from tenure.store.engine import LakeTables
from tenure.store.state import person_details

if TYPE_CHECKING:
    from tenure.workspace import Workspace

PURCHASED = "purchased_items"
Progress = Callable[[str, float], None]


def _quiet(stage: str, fraction: float) -> None:
    return None


class Recommendations:
    """The recommender of one workspace."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self._loaded: _Loaded | None = None  # the active version, reloaded when another one is promoted

    @property
    def signals(self) -> Signals:
        """The signal weights the settings give."""
        s = self.ws.settings.recommendations
        return Signals(
            view=s.view_weight, cart=s.cart_weight, purchase=s.purchase_weight, rating_weight=s.rating_weight,
            half_life_days=s.half_life_days or None,
        )

    # -- training and scoring ---------------------------------------------------------------
    def train(self, *, as_of: str | datetime | None = None, progress: Progress = _quiet) -> ModelInfo:
        """Evaluate every algorithm on time splits, register the best one fitted on everything."""
        settings = self.ws.settings.recommendations
        test = timedelta(days=settings.test_days)
        with self.ws.engine() as engine:
            t = engine.tables()
            start, end = self.ws.models.window(t, as_of)
            if end - 2 * test <= start:
                raise ValidationError(
                    "recommendations.test_days", f"{settings.test_days} days twice is more history than the data has"
                )
            cuts = (end - 2 * test, end - test, end)
            snapshots = []
            for k, cut in enumerate(cuts):
                progress(f"signals at {cut:%Y-%m-%d}", 0.1 * k / 3)
                snapshots.append(self._signals(engine, t, cut))
            catalogue = engine.execute(t.items.order_by("item_id"))
        trained = train_recommender(
            (snapshots[0], snapshots[1], snapshots[2]), cuts, catalogue, settings, progress
        )
        return self.ws.models.registry.save(
            NAME, trained, window=(start, end),
            params={
                "algorithm": trained.algorithm, "test_days": settings.test_days, "k": settings.k,
                "signals": asdict(self.signals),
                "model": {k: v for k, v in trained.model.get_params(deep=False).items() if _plain(v)},
            },
            metrics=headline(trained.validation, trained.test, trained.algorithm, settings.k),
            features=["views", "cart adds", "purchases", "ratings", "category", "brand", "price", "text"],
        )

    def score(self, *, as_of: str | datetime | None = None) -> int:
        """Store everyone's top-N with the active version; returns the number of people.

        The business filters read today's catalogue, so an item out of stock since training is
        dropped at the next scoring (the real-time blend uses the catalogue as of training).
        """
        loaded = self._active()
        settings = self.ws.settings.recommendations
        with self.ws.engine() as engine:
            t = engine.tables()
            _, end = self.ws.models.window(t, as_of)
            frame = self._signals(engine, t, end)
            catalogue = engine.execute(t.items.select("item_id", "category", "in_stock"))
        now = catalogue.drop_duplicates("item_id").set_index("item_id").reindex(loaded.trained.items)
        allowed = allowed_mask(now, in_stock_only=settings.in_stock_only, categories=settings.allowed_categories)
        lists = recommend_everyone(
            loaded.trained, frame, n=settings.top_n, exclude_purchased=settings.exclude_purchased, allowed_items=allowed,
        ).set_index("person_id")
        bought = frame[frame["purchases"] > 0].groupby("person_id")["item_id"].agg(lambda ids: json.dumps(sorted(ids)))
        details = lists.rename(columns={"recommendations": NAME})
        details[PURCHASED] = bought.reindex(details.index).fillna("[]")
        return self.ws.models.write_scores(loaded.info, pd.DataFrame(index=details.index), details)

    # -- serving ----------------------------------------------------------------------------
    def for_person(self, identifier: str, *, n: int | None = None, now: datetime | None = None) -> pd.DataFrame:
        """The person's recommendations now: rank, item details, score, reason and source.

        ``identifier`` is a person id or any id of theirs. The stored list is blended with their
        product events of the last ``realtime_minutes``; people without either get popular items.
        """
        settings = self.ws.settings.recommendations
        loaded = self._active()
        person, identifiers = self.ws.identity.resolve(identifier)
        at = now or self.ws.clock.now()
        window = timedelta(minutes=settings.realtime_minutes)
        with self.ws.state.read() as conn:
            rows = dict(
                conn.execute(
                    sa.select(person_details.c.name, person_details.c.value).where(
                        person_details.c.person_id == person, person_details.c.name.in_([NAME, PURCHASED])
                    )
                ).all()
            )
            recent = recent_item_rows(conn, identifiers, since=at - window)
        inputs = LiveInputs(json.loads(rows.get(NAME, "[]")), json.loads(rows.get(PURCHASED, "[]")), recent)
        signals = self.signals
        kinds = {"view": signals.view, "cart": signals.cart, "purchase": signals.purchase}
        return blend(
            loaded.trained, inputs, now=at, window=window, kind_weights=kinds, live_weight=settings.live_weight,
            n=n or settings.top_n, allowed=loaded.allowed,
        )

    def similar(self, item_id: str, *, n: int = 10) -> pd.DataFrame:
        """The ``n`` items most like ``item_id`` under the active model: rank, details, similarity."""
        trained = self._active().trained
        column = trained.column_of([item_id])[0]
        if column < 0:
            raise NotFoundError(f"item_id {item_id!r} is not in the catalogue the recommender was trained on")
        indices, scores = trained.model.similar_items(np.array([column]), n=n)
        keep = indices[0] >= 0
        rows = trained.item_rows(indices[0][keep])
        frame = pd.DataFrame(rows, columns=["item_id", "name", "category", "brand", "price"])
        frame.insert(0, "rank", np.arange(1, len(frame) + 1))
        frame["similarity"] = scores[0][keep]
        return frame

    def evaluation(self, version: int | None = None) -> pd.DataFrame:
        """Every algorithm's metrics on the validation and test windows, with the chosen one marked."""
        info = self.ws.models.registry.get(NAME, version)
        frames = [pd.DataFrame(info.metrics[stage]).assign(window=stage) for stage in ("validation", "test")]
        table = pd.concat(frames, ignore_index=True)
        table["chosen"] = table["algorithm"] == info.metrics["algorithm"]
        return table

    # -- internals --------------------------------------------------------------------------
    def _signals(self, engine: Any, t: LakeTables, as_of: datetime) -> pd.DataFrame:
        query = interaction_weights(t, as_of=as_of, signals=self.signals)
        return engine.execute(query.order_by(["person_id", "item_id"]))

    def _active(self) -> _Loaded:
        """The active version, loaded once: serving checks only its number per call."""
        version = self.ws.models.registry.active_version(NAME)
        if self._loaded is None or self._loaded.info.version != version:
            info = self.ws.models.registry.get(NAME)  # raises NotFoundError without an active version
            trained: TrainedRecommender = self.ws.models.registry.load(info)
            settings = self.ws.settings.recommendations
            allowed = trained.allowed(in_stock_only=settings.in_stock_only, categories=settings.allowed_categories)
            self._loaded = _Loaded(info, trained, allowed)
        return self._loaded


@dataclass(frozen=True, slots=True, eq=False)
class _Loaded:
    info: ModelInfo
    trained: TrainedRecommender
    allowed: np.ndarray | None  # the business filter over the model's items


def _plain(value: object) -> bool:
    """Whether a hyperparameter can go into the registry's JSON as it is."""
    return isinstance(value, str | int | float | bool) or value is None
