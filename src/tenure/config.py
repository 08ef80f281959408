"""Workspace settings: read once from ``tenure.toml`` and the environment into a frozen object."""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tenure.errors import ConfigError, WorkspaceError

SETTINGS_FILE = "tenure.toml"
EngineName = Literal["duckdb", "spark"]


@dataclass(frozen=True, slots=True)
class LifecycleSettings:
    """The stage model's thresholds (``[lifecycle]``); days are whole days."""

    new_customer_days: int = 30
    loyal_min_orders: int = 4
    loyal_recency_days: int = 60
    at_risk_factor: float = 2.0
    at_risk_days: int = 60
    churned_days: int = 180


@dataclass(frozen=True, slots=True)
class ModelSettings:
    """How models are trained and scored (``[models]``)."""

    churn_horizon_days: int = 90
    churn_basis: str = "orders"
    propensity_horizon_days: int = 30
    cutoffs: int = 6
    min_history_days: int = 30
    clv_holdout_days: int = 90
    discount_rate: float = 0.10
    rescore_minutes: float = 60.0


@dataclass(frozen=True, slots=True)
class RecommendationSettings:
    """How recommendations are trained, filtered and served (``[recommendations]``)."""

    top_n: int = 10  # items stored per person
    k: int = 10  # the cut-off of the evaluation metrics (NDCG@k chooses the algorithm)
    test_days: int = 30  # each of the validation and test windows
    trending_days: float = 14.0  # "trending" ranks by the interactions of these last days
    view_weight: float = 1.0
    cart_weight: float = 3.0
    purchase_weight: float = 5.0
    rating_weight: float = 2.0
    half_life_days: float = 0.0  # 0: no time decay of signals
    als_factors: int = 64
    als_regularization: float = 10.0  # tuned on the sample shop; implicit's 0.01 overfits small shops
    als_iterations: int = 15
    exclude_purchased: bool = True  # False for consumables, which people buy again
    in_stock_only: bool = True
    allowed_categories: tuple[str, ...] = ()  # empty: every category
    realtime_minutes: float = 30.0  # how far back the real-time blend reads a person's events
    live_weight: float = 0.5  # share of the real-time part in the blended score

    @property
    def retention(self) -> timedelta:
        """How long recent product events are kept: twice the real-time window, at least an hour."""
        return max(2 * timedelta(minutes=self.realtime_minutes), timedelta(hours=1))


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a workspace is configured by; paths are absolute."""

    root: Path
    state_url: str = "sqlite:///state.db"
    lake_path: Path = Path("lake")
    compact_min_files: int = 8
    engine: EngineName = "duckdb"
    spark_master: str = "local[2]"
    timezone: str = "UTC"
    lifecycle: LifecycleSettings = field(default_factory=LifecycleSettings)
    rfm_bins: int = 5
    segments_live: bool = True
    segments_refresh_minutes: float = 15.0
    models: ModelSettings = field(default_factory=ModelSettings)
    recommendations: RecommendationSettings = field(default_factory=RecommendationSettings)
    collector_host: str = "127.0.0.1"
    collector_port: int = 8088
    max_future_seconds: int = 86400
    flush_interval_seconds: float = 1.0
    currency: str = "USD"
    currency_rates: Mapping[str, float] = field(default_factory=dict)

    @property
    def quarantine_path(self) -> Path:
        return self.root / "quarantine"


def default_settings_text() -> str:
    """The documented ``tenure.toml`` that ``tenure init`` writes."""
    return resources.files("tenure").joinpath("templates/tenure.toml").read_text()


def load_settings(root: Path, environ: Mapping[str, str] | None = None) -> Settings:
    """Read ``root/tenure.toml`` and environment overrides; fail fast naming the bad key."""
    env = os.environ if environ is None else environ
    root = root.resolve()
    path = root / SETTINGS_FILE
    if not path.is_file():
        raise WorkspaceError(f"{root} is not a Tenure workspace (no {SETTINGS_FILE}); run `tenure init`")
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(SETTINGS_FILE, str(exc)) from exc
    reader = _Reader(doc)
    state_url = env.get("TENURE_STATE_URL") or reader.get("state.url", str, "sqlite:///state.db")
    engine = env.get("TENURE_ENGINE") or reader.get("engine.name", str, "duckdb")
    if engine not in ("duckdb", "spark"):
        raise ConfigError("engine.name", f"must be 'duckdb' or 'spark', not {engine!r}")
    lake = Path(env.get("TENURE_LAKE") or reader.get("lake.path", str, "lake"))
    rates = reader.get("currency.rates", dict, {})
    for code, rate in rates.items():
        if not isinstance(rate, int | float) or isinstance(rate, bool) or rate <= 0:
            raise ConfigError(f"currency.rates.{code}", "must be a positive number")
    return Settings(
        root=root,
        state_url=_resolve_sqlite(state_url, root),
        lake_path=lake if lake.is_absolute() else root / lake,
        compact_min_files=reader.get("lake.compact_min_files", int, 8),
        engine=engine,  # type: ignore[arg-type]
        spark_master=reader.get("engine.spark_master", str, "local[2]"),
        timezone=_timezone(reader.get("analytics.timezone", str, "UTC")),
        lifecycle=_lifecycle(reader),
        rfm_bins=_positive(reader, "rfm.bins", 5),
        segments_live=reader.get("segments.live", bool, True),
        segments_refresh_minutes=_positive(reader, "segments.refresh_minutes", 15.0),
        models=_models(reader),
        recommendations=_recommendations(reader),
        collector_host=reader.get("collector.host", str, "127.0.0.1"),
        collector_port=reader.get("collector.port", int, 8088),
        max_future_seconds=reader.get("collector.max_future_seconds", int, 86400),
        flush_interval_seconds=float(reader.get("collector.flush_interval_seconds", (int, float), 1.0)),
        currency=reader.get("currency.base", str, "USD").upper(),
        currency_rates={str(k).upper(): float(v) for k, v in rates.items()},
    )


def _lifecycle(reader: _Reader) -> LifecycleSettings:
    return LifecycleSettings(**_positive_fields(reader, "lifecycle", LifecycleSettings()))


def _models(reader: _Reader) -> ModelSettings:
    defaults = ModelSettings()
    basis = reader.get("models.churn_basis", str, defaults.churn_basis)
    if basis not in ("orders", "activity"):
        raise ConfigError("models.churn_basis", f"must be 'orders' or 'activity', not {basis!r}")
    return ModelSettings(churn_basis=basis, **_positive_fields(reader, "models", defaults, skip=("churn_basis",)))


MAX_REALTIME_MINUTES = 1440.0  # the state DB keeps twice this of every product event


def _recommendations(reader: _Reader) -> RecommendationSettings:
    defaults = RecommendationSettings()
    special = ("half_life_days", "live_weight", "exclude_purchased", "in_stock_only", "allowed_categories")
    categories = reader.get("recommendations.allowed_categories", list, list(defaults.allowed_categories))
    if not all(isinstance(c, str) for c in categories):
        raise ConfigError("recommendations.allowed_categories", "must be a list of category names")
    half_life = reader.get("recommendations.half_life_days", (int, float), defaults.half_life_days)
    if not 0 <= half_life < math.inf:
        raise ConfigError("recommendations.half_life_days", "must be 0 (no decay) or a positive number of days")
    live_weight = reader.get("recommendations.live_weight", (int, float), defaults.live_weight)
    if not 0 <= live_weight <= 1:
        raise ConfigError("recommendations.live_weight", "must be between 0 and 1")
    settings = RecommendationSettings(
        **_positive_fields(reader, "recommendations", defaults, skip=special),
        half_life_days=float(half_life), live_weight=float(live_weight),
        exclude_purchased=reader.get("recommendations.exclude_purchased", bool, defaults.exclude_purchased),
        in_stock_only=reader.get("recommendations.in_stock_only", bool, defaults.in_stock_only),
        allowed_categories=tuple(categories),
    )
    if settings.realtime_minutes > MAX_REALTIME_MINUTES:
        raise ConfigError("recommendations.realtime_minutes", f"must be at most {MAX_REALTIME_MINUTES:g} (a day)")
    return settings


def _positive_fields(reader: _Reader, section: str, defaults: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The numeric fields of a settings dataclass read from ``[section]``, each checked positive."""
    return {
        f.name: _positive(reader, f"{section}.{f.name}", getattr(defaults, f.name))
        for f in fields(defaults)
        if f.name not in skip
    }


def _positive(reader: _Reader, key: str, default: int | float) -> Any:
    kind: type | tuple[type, ...] = (int, float) if isinstance(default, float) else int
    value = reader.get(key, kind, default)
    if not 0 < value < math.inf:  # TOML has nan and inf; neither is a usable setting
        raise ConfigError(key, "must be positive and finite")
    return type(default)(value)


def _timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError("analytics.timezone", f"{name!r} is not an IANA time zone such as 'Europe/Berlin'") from exc
    return name


def _resolve_sqlite(url: str, root: Path) -> str:
    """Make a relative ``sqlite:///file`` URL point inside the workspace."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != prefix + ":memory:":
        return prefix + str(root / url[len(prefix):])
    return url


class _Reader:
    """Typed access to dotted keys of a TOML document."""

    def __init__(self, doc: Mapping[str, Any]) -> None:
        self._doc = doc

    def get(self, key: str, kind: type | tuple[type, ...], default: Any) -> Any:
        node: Any = self._doc
        for part in key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return default
            node = node[part]
        if not isinstance(node, kind) or (isinstance(node, bool) and kind is not bool):
            names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            raise ConfigError(key, f"must be {names}, got {type(node).__name__}")
        return node
