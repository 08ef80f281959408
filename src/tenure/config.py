"""Workspace settings: read once from ``tenure.toml`` and the environment into a frozen object."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
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
        collector_host=reader.get("collector.host", str, "127.0.0.1"),
        collector_port=reader.get("collector.port", int, 8088),
        max_future_seconds=reader.get("collector.max_future_seconds", int, 86400),
        flush_interval_seconds=float(reader.get("collector.flush_interval_seconds", (int, float), 1.0)),
        currency=reader.get("currency.base", str, "USD").upper(),
        currency_rates={str(k).upper(): float(v) for k, v in rates.items()},
    )


def _lifecycle(reader: _Reader) -> LifecycleSettings:
    defaults = LifecycleSettings()
    values = {
        f.name: _positive(reader, f"lifecycle.{f.name}", getattr(defaults, f.name)) for f in fields(LifecycleSettings)
    }
    return LifecycleSettings(**values)


def _models(reader: _Reader) -> ModelSettings:
    defaults = ModelSettings()
    basis = reader.get("models.churn_basis", str, defaults.churn_basis)
    if basis not in ("orders", "activity"):
        raise ConfigError("models.churn_basis", f"must be 'orders' or 'activity', not {basis!r}")
    values = {
        f.name: _positive(reader, f"models.{f.name}", getattr(defaults, f.name))
        for f in fields(ModelSettings)
        if f.name != "churn_basis"
    }
    return ModelSettings(churn_basis=basis, **values)


def _positive(reader: _Reader, key: str, default: int | float) -> Any:
    kind: type | tuple[type, ...] = (int, float) if isinstance(default, float) else int
    value = reader.get(key, kind, default)
    if value <= 0:
        raise ConfigError(key, "must be positive")
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
