"""The model registry: every trained model with its version, window, parameters and metrics.

Rows live in the state DB (so PostgreSQL deployments share them); the fitted objects are
joblib files under ``<workspace>/models/<name>/v<version>.joblib``, written before their row
is committed, so a listed model can always be loaded. Each name has at most one *active*
version, the one scoring uses; the first version of a name becomes active by itself, later
ones wait for ``promote`` so a worse model never replaces a better one unseen.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import joblib
import pandas as pd
import sqlalchemy as sa

from tenure.clock import Clock, as_utc
from tenure.errors import NotFoundError, ValidationError
from tenure.store.state import StateDB, models

Status = Literal["active", "candidate", "retired"]
RECOMMENDATIONS = "recommendations"
MODEL_NAMES: tuple[str, ...] = ("churn", "propensity", "clv", RECOMMENDATIONS)


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """One registry row."""

    name: str
    version: int
    status: Status
    trained_at: datetime
    window_start: datetime
    window_end: datetime
    params: dict[str, Any]
    metrics: dict[str, Any]
    features: list[str]
    artifact: str
    scored_at: datetime | None

    @property
    def tag(self) -> str:
        """``name-vN``: what scores on profiles record as their model version."""
        return f"{self.name}-v{self.version}"


class Registry:
    """Versions, promotion and artifacts of a workspace's models."""

    def __init__(self, state: StateDB, root: Path, clock: Clock) -> None:
        self.state = state
        self.folder = root / "models"
        self.clock = clock

    def save(
        self,
        name: str,
        fitted: object,
        *,
        window: tuple[datetime, datetime],
        params: dict[str, Any],
        metrics: dict[str, Any],
        features: list[str],
    ) -> ModelInfo:
        """Store a new version; it is active if the name has no active version yet."""
        check_name(name)
        with self.state.begin() as conn:
            latest = conn.execute(sa.select(sa.func.max(models.c.version)).where(models.c.name == name)).scalar()
            version = int(latest or 0) + 1
            active = conn.execute(
                sa.select(sa.func.count()).where(models.c.name == name, models.c.status == "active")
            ).scalar_one()
            artifact = f"{name}/v{version}.joblib"
            self._write(artifact, fitted)
            conn.execute(
                models.insert().values(
                    name=name,
                    version=version,
                    status="candidate" if active else "active",
                    trained_at=self.clock.now(),
                    window_start=window[0],
                    window_end=window[1],
                    params=json.dumps(params, default=str),
                    metrics=json.dumps(metrics),
                    features=json.dumps(features),
                    artifact=artifact,
                )
            )
        return self.get(name, version)

    def get(self, name: str, version: int | None = None) -> ModelInfo:
        """A version, or the active one."""
        check_name(name)
        query = sa.select(models).where(models.c.name == name)
        query = query.where(models.c.version == version) if version is not None else query.where(
            models.c.status == "active"
        )
        with self.state.read() as conn:
            row = conn.execute(query).mappings().first()
        if row is None:
            what = f"version {version} of model {name!r}" if version is not None else f"active {name!r} model"
            raise NotFoundError(f"there is no {what}; train one with `tenure models train {name}`")
        return _info(row)

    def active_version(self, name: str) -> int | None:
        """The active version's number: a cheap check before reusing an already loaded model."""
        query = sa.select(models.c.version).where(models.c.name == name, models.c.status == "active")
        with self.state.read() as conn:
            version = conn.execute(query).scalar()
        return None if version is None else int(version)

    def list(self, name: str | None = None) -> pd.DataFrame:
        """Every version (newest first) with its status, window and headline metrics."""
        query = sa.select(models).order_by(models.c.name, models.c.version.desc())
        if name is not None:
            check_name(name)
            query = query.where(models.c.name == name)
        with self.state.read() as conn:
            rows = [_info(r) for r in conn.execute(query).mappings()]
        return pd.DataFrame(
            [
                {
                    "name": i.name,
                    "version": i.version,
                    "status": i.status,
                    "trained_at": i.trained_at,
                    "window_start": i.window_start,
                    "window_end": i.window_end,
                    "headline": i.metrics.get("headline", ""),
                    "scored_at": i.scored_at,
                }
                for i in rows
            ],
            columns=["name", "version", "status", "trained_at", "window_start", "window_end", "headline", "scored_at"],
        )

    def promote(self, name: str, version: int) -> ModelInfo:
        """Make ``version`` the active one; the previously active version is retired."""
        self.get(name, version)
        with self.state.begin() as conn:
            conn.execute(
                models.update().where(models.c.name == name, models.c.status == "active").values(status="retired")
            )
            conn.execute(models.update().where(models.c.name == name, models.c.version == version).values(status="active"))
        return self.get(name, version)

    def mark_scored(self, info: ModelInfo, at: datetime) -> None:
        with self.state.begin() as conn:
            conn.execute(
                models.update().where(models.c.name == info.name, models.c.version == info.version).values(scored_at=at)
            )

    def load(self, info: ModelInfo) -> Any:
        path = self.folder / info.artifact
        if not path.exists():
            raise NotFoundError(f"model file {path} of {info.tag} is missing")
        return joblib.load(path)

    def _write(self, artifact: str, fitted: object) -> None:
        """Write to a temporary name, then rename: a crash never leaves half a model."""
        path = self.folder / artifact
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        joblib.dump(fitted, partial)
        os.replace(partial, path)


def check_name(name: str) -> None:
    if name not in MODEL_NAMES:
        raise ValidationError("model", f"must be one of {', '.join(MODEL_NAMES)}, not {name!r}")


def _info(row: Any) -> ModelInfo:
    return ModelInfo(
        name=row["name"],
        version=int(row["version"]),
        status=row["status"],
        trained_at=as_utc(row["trained_at"]),
        window_start=as_utc(row["window_start"]),
        window_end=as_utc(row["window_end"]),
        params=json.loads(row["params"]),
        metrics=json.loads(row["metrics"]),
        features=json.loads(row["features"]),
        artifact=row["artifact"],
        scored_at=as_utc(row["scored_at"]) if row["scored_at"] else None,
    )
