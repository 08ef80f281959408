"""A workspace: settings, state DB, lake and clock, opened once and passed to capabilities."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

from tenure.analytics.methods import AnalyticsMethods
from tenure.clock import Clock, SystemClock
from tenure.config import SETTINGS_FILE, Settings, default_settings_text, load_settings
from tenure.errors import WorkspaceError
from tenure.identity import IdentityGraph
from tenure.keys import KeyRing
from tenure.models import Models, Recommendations
from tenure.segments import Segments
from tenure.spec.ecommerce import CurrencyTable
from tenure.store.engine import DuckDBEngine, Engine
from tenure.store.lake import Lake
from tenure.store.state import StateDB


class Workspace(AnalyticsMethods):
    """The handle every capability takes: ``Workspace(path)`` opens an initialised folder.

    The lifecycle analytics are methods (``ws.stages()``, ``ws.rfm()``, ``ws.cohorts()``, …)
    returning pandas DataFrames; see ``tenure.analytics.methods``.
    """

    def __init__(self, root: str | Path | None = None, *, clock: Clock | None = None) -> None:
        self.settings: Settings = load_settings(Path(root or os.environ.get("TENURE_WORKSPACE", ".")))
        self.clock = clock or SystemClock()
        self.state = StateDB(self.settings.state_url)
        self.lake = Lake(self.settings.lake_path, self.state)
        self.identity = IdentityGraph(self.state, self.clock, lock=self.lake.writer_lock)
        self.keys = KeyRing(self.state, self.clock)
        self.currencies = CurrencyTable(self.settings.currency, self.settings.currency_rates)

    @classmethod
    def init(cls, root: str | Path, *, clock: Clock | None = None) -> Workspace:
        """Create a workspace folder with a documented ``tenure.toml``; idempotent."""
        path = Path(root)
        path.mkdir(parents=True, exist_ok=True)
        settings_file = path / SETTINGS_FILE
        if not settings_file.exists():
            settings_file.write_text(default_settings_text())
        elif not settings_file.is_file():
            raise WorkspaceError(f"{settings_file} exists and is not a file")
        return cls(path, clock=clock)

    @cached_property
    def segments(self) -> Segments:
        """Saved segments, their live membership and changes (``tenure.segments``)."""
        return Segments(self)

    @cached_property
    def models(self) -> Models:
        """Churn, propensity and CLV models: training, registry and scores (``tenure.models``)."""
        return Models(self)

    @cached_property
    def recommendations(self) -> Recommendations:
        """What to offer each person next: training, stored lists, real-time blend (``tenure.models``)."""
        return Recommendations(self)

    def engine(self) -> Engine:
        """A fresh analytics engine (DuckDB or Spark, per ``engine.name``); close it after use."""
        if self.settings.engine == "spark":
            from tenure.store.spark import SparkEngine

            return SparkEngine(self.lake, self.state, self.settings.timezone, self.settings.spark_master)
        return DuckDBEngine(self.lake, self.state, self.settings.timezone)

    def close(self) -> None:
        self.state.dispose()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
