"""``ws.models``: train, register, promote and score the workspace's predictive models.

Four models, by registry name: ``churn`` (no order, or no activity, in the churn horizon),
``propensity`` (an order in the propensity horizon), ``clv`` (BG/NBD + Gamma-Gamma) and
``recommendations`` (trained and served by ``ws.recommendations``).
Scoring writes, per person and with the model version: ``churn_risk`` and ``churn_reasons``;
``propensity_<H>d``; ``p_alive``, ``expected_orders_90d``, ``clv_365d`` (customers only: a
person with no order has no purchase history for BG/NBD, so no score rather than a guess).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from tenure.analytics._orders import orders_as_of
from tenure.errors import ValidationError
from tenure.models.dataset import FEATURES, Outcome, examples, model_features, training_cutoffs
from tenure.models.lifetime_value import TrainedLifetimeValue, fit_lifetime_value
from tenure.models.outcomes import BGNBD, MODEL, RFM_LOGISTIC, TrainedOutcome, train_outcome
from tenure.models.recommend_training import TrainedRecommender
from tenure.models.registry import MODEL_NAMES, RECOMMENDATIONS, ModelInfo, Registry, check_name
from tenure.models.rfm_summary import summary_from_transactions
from tenure.store.engine import LakeTables
from tenure.store.state import bound_value, insert_many, person_details, person_scores

if TYPE_CHECKING:
    from tenure.workspace import Workspace

REASONS = 3
Trained = TrainedOutcome | TrainedLifetimeValue | TrainedRecommender
Progress = Callable[[str, float], None]
COMPARED: tuple[str, ...] = ("roc_auc", "pr_auc", "brier", "lift_top", "capture_top")
CLV_COMPARED: tuple[tuple[str, str, str], ...] = (
    ("repeat purchases in holdout, mean abs. error per customer", "holdout_mae", "holdout_mae_naive_rate"),
    ("spend per purchase in holdout, mean abs. error", "holdout_spend_mae", "holdout_spend_mae_population_mean"),
)


def _quiet(stage: str, fraction: float) -> None:
    return None


class Models:
    """The predictive models of one workspace."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.registry = Registry(ws.state, ws.settings.root, ws.clock)

    # -- training -------------------------------------------------------------------------
    def outcome(self, name: str) -> Outcome:
        """The churn or propensity definition the settings give."""
        settings = self.ws.settings.models
        if name == "churn":
            return Outcome("churn", settings.churn_horizon_days, settings.churn_basis)  # type: ignore[arg-type]
        if name == "propensity":
            return Outcome("propensity", settings.propensity_horizon_days)
        raise ValidationError("model", f"{name!r} is not an outcome model (churn or propensity)")

    def train(
        self,
        name: str,
        *,
        as_of: str | datetime | None = None,
        horizon_days: int | None = None,
        cutoffs: int | None = None,
        oracle: Path | None = None,
        progress: Progress = _quiet,
    ) -> ModelInfo:
        """Train, backtest and register a new version of ``name``; returns its registry entry.

        ``oracle`` is a sample shop's folder: its ground truth is scored next to the model.
        """
        check_name(name)
        if name == RECOMMENDATIONS:
            return self.ws.recommendations.train(as_of=as_of, progress=progress)
        settings = self.ws.settings.models
        with self.ws.engine() as engine:
            t = engine.tables()
            start, end = self.window(t, as_of)
            if name == "clv":
                progress("fitting BG/NBD and Gamma-Gamma", 0.2)
                clv = self._train_clv(engine, t, end)
                return self.registry.save(
                    "clv", clv, window=(start, end),
                    params={"holdout_days": settings.clv_holdout_days, "discount_rate": settings.discount_rate},
                    metrics=clv.metrics, features=["frequency", "recency", "T", "monetary_value"],
                )
            outcome = self.outcome(name)
            if horizon_days is not None:
                outcome = Outcome(outcome.target, horizon_days, outcome.basis)
            chosen = training_cutoffs(
                start=start, end=end, horizon=outcome.horizon, count=cutoffs or settings.cutoffs,
                step=timedelta(days=max(7, outcome.horizon_days // 3)),
                min_history=timedelta(days=settings.min_history_days),
            )
            frames = {}
            for k, cutoff in enumerate(chosen):
                progress(f"examples at {cutoff:%Y-%m-%d}", 0.5 * k / len(chosen))
                frames[cutoff] = engine.execute(examples(t, outcome, cutoff=cutoff).order_by("person_id"))
        truth = self._oracle(oracle, chosen[0], outcome.horizon_days) if oracle is not None else None
        progress("backtest and training", 0.5)
        trained = train_outcome(frames, outcome, oracle=truth)
        return self.registry.save(
            name, trained, window=(start, end),
            params={
                "target": outcome.target, "basis": outcome.basis, "horizon_days": outcome.horizon_days,
                "cutoffs": [c.isoformat() for c in trained.cutoffs], **trained.classifier.get_params(),
            },
            metrics=_outcome_metrics(trained), features=list(FEATURES),
        )

    def trained(self, name: str, version: int | None = None) -> Trained:
        """The fitted object of a version (the active one by default), with its evaluation."""
        fitted: Trained = self.registry.load(self.registry.get(name, version))
        return fitted

    def comparison(self, name: str, version: int | None = None) -> pd.DataFrame:
        """The backtest metrics of a version next to its baselines (and the oracle, if scored).

        For CLV: the holdout errors next to the naive forecasts (past rate, population mean spend);
        for recommendations: every algorithm on the validation and test windows.
        """
        if name == RECOMMENDATIONS:
            return self.ws.recommendations.evaluation(version)
        metrics = self.registry.get(name, version).metrics
        if name == "clv":
            return pd.DataFrame(
                [{"measure": label, "bg_nbd_gamma_gamma": metrics[ours], "naive": metrics[naive]}
                 for label, ours, naive in CLV_COMPARED]
            )
        rows = [{"model": model, **{k: scores[k] for k in COMPARED}} for model, scores in metrics["backtest"].items()]
        return pd.DataFrame(rows, columns=["model", *COMPARED])

    def list(self, name: str | None = None) -> pd.DataFrame:
        return self.registry.list(name)

    def get(self, name: str, version: int | None = None) -> ModelInfo:
        return self.registry.get(name, version)

    def promote(self, name: str, version: int) -> ModelInfo:
        return self.registry.promote(name, version)

    # -- scoring --------------------------------------------------------------------------
    def score(self, names: Sequence[str] | None = None, *, as_of: str | datetime | None = None) -> dict[str, int]:
        """Score everyone with the active version of each model; returns people scored per model.

        Models without an active version are skipped when ``names`` is not given.
        """
        wanted = list(names) if names else [n for n in MODEL_NAMES if self._has_active(n)]
        counts: dict[str, int] = {}
        if RECOMMENDATIONS in wanted:
            wanted.remove(RECOMMENDATIONS)
            counts[RECOMMENDATIONS] = self.ws.recommendations.score(as_of=as_of)
        infos = [self.registry.get(n) for n in wanted]
        if not infos:
            return counts
        with self.ws.engine() as engine:
            t = engine.tables()
            _, end = self.window(t, as_of)
            features = (
                engine.execute(model_features(t, as_of=end).order_by("person_id"))
                if any(i.name != "clv" for i in infos)
                else None
            )
            orders = self._orders(engine, t, end) if any(i.name == "clv" for i in infos) else None
        for info in infos:
            fitted = self.registry.load(info)
            if isinstance(fitted, TrainedLifetimeValue):
                assert orders is not None
                values, details = _clv_scores(fitted, orders, self._last_day(end)), None
            else:
                assert features is not None
                values, details = _outcome_scores(fitted, features)
            counts[info.name] = self.write_scores(info, values, details)
        return counts

    def scores(self, person_id: str) -> dict[str, Any]:
        """A person's stored scores and reasons with the model versions that made them."""
        with self.ws.state.read() as conn:
            numbers = conn.execute(
                sa.select(person_scores.c.name, person_scores.c.value, person_scores.c.model_version).where(
                    person_scores.c.person_id == person_id
                )
            ).all()
            texts = conn.execute(
                sa.select(person_details.c.name, person_details.c.value, person_details.c.model_version).where(
                    person_details.c.person_id == person_id
                )
            ).all()
        out: dict[str, Any] = {n: {"value": v, "model_version": m} for n, v, m in numbers}
        out |= {n: {"value": json.loads(v), "model_version": m} for n, v, m in texts}
        return out

    def score_table(self) -> pd.DataFrame:
        """Every stored numeric score: person_id, name, value, model_version, scored_at."""
        with self.ws.state.read() as conn:
            rows = conn.execute(sa.select(person_scores)).all()
        return pd.DataFrame(rows, columns=["person_id", "name", "value", "model_version", "scored_at"])

    # -- internals ------------------------------------------------------------------------
    def window(self, t: LakeTables, as_of: str | datetime | None) -> tuple[datetime, datetime]:
        """(first event, the resolved ``as_of``): the span a model may learn from."""
        first, latest = self.ws.data_span(t)
        if first is None:
            raise ValidationError("events", "the workspace has no events to train on")
        return first.to_pydatetime(), self.ws.resolve_as_of(t, as_of, latest)

    def _train_clv(self, engine: Any, t: LakeTables, end: datetime) -> TrainedLifetimeValue:
        settings = self.ws.settings.models
        orders = self._orders(engine, t, end)
        return fit_lifetime_value(
            orders, observation_end=self._last_day(end), holdout_days=settings.clv_holdout_days, annual_discount_rate=settings.discount_rate
        )

    def _orders(self, engine: Any, t: LakeTables, end: datetime) -> pd.DataFrame:
        """Orders known at ``end`` as (person_id, local day, net value)."""
        known = orders_as_of(t, as_of=end)
        ordered = known.order_by(["person_id", "timestamp", "order_id"])  # the same input, the same fit
        frame = engine.execute(ordered.select("person_id", "timestamp", value=ordered.net_revenue))
        stamps = pd.to_datetime(frame["timestamp"], utc=True).dt.tz_convert(self.ws.settings.timezone)
        return pd.DataFrame(
            {"person_id": frame["person_id"], "day": stamps.dt.tz_localize(None).dt.normalize(), "value": frame["value"]}
        )

    def _last_day(self, end: datetime) -> pd.Timestamp:
        """The local day of the last instant before ``end``: the last day of known orders."""
        last = pd.Timestamp(end) - pd.Timedelta(microseconds=1)
        return last.tz_convert(self.ws.settings.timezone).tz_localize(None).normalize()

    def _oracle(self, sample_dir: Path, cutoff: datetime, horizon_days: int) -> pd.DataFrame:
        """The generator's truth at ``cutoff``, keyed by person."""
        from tenure.sample.oracle import order_probability

        truth = order_probability(sample_dir, cutoff=cutoff, horizon_days=horizon_days)
        persons = self.ws.identity.person_map(truth["user_id"])
        return pd.DataFrame({"person_id": truth["user_id"].map(persons), "p_order": truth["p_order"]})

    def _has_active(self, name: str) -> bool:
        return bool((self.registry.list(name)["status"] == "active").any())

    def write_scores(self, info: ModelInfo, values: pd.DataFrame, details: pd.DataFrame | None) -> int:
        """Replace the model's scores in one transaction: readers see the old or the new set."""
        now = self.ws.clock.now()
        tag = info.tag
        with self.ws.state.begin() as conn:
            stamp = bound_value(conn, person_scores.c.scored_at, now)
            for name in values.columns:
                conn.execute(person_scores.delete().where(person_scores.c.name == name))
                column = values[name]
                column = column[np.isfinite(column.to_numpy(dtype=np.float64))]
                insert_many(conn, person_scores, ["person_id", "name", "value", "model_version", "scored_at"],
                            [(p, name, float(v), tag, stamp) for p, v in column.items()])
            if details is not None:
                for name in details.columns:
                    conn.execute(person_details.delete().where(person_details.c.name == name))
                    insert_many(conn, person_details, ["person_id", "name", "value", "model_version", "scored_at"],
                                [(p, name, v, tag, stamp) for p, v in details[name].items()])
        self.registry.mark_scored(info, now)
        return len(values)


def _outcome_scores(trained: TrainedOutcome, features: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    people = features.set_index("person_id")
    if trained.outcome.customers_only:
        people = people[people["orders"] > 0]
    probability = trained.classifier.predict_proba(people[list(FEATURES)])[:, 1]
    if trained.outcome.target == "propensity":
        return pd.DataFrame({f"propensity_{trained.outcome.horizon_days}d": probability}, index=people.index), None
    reasons = trained.classifier.reasons(people[list(FEATURES)], top=REASONS)
    ranks = range(1, REASONS + 1)
    names = reasons[[f"feature_{k}" for k in ranks]].to_numpy()
    sizes = reasons[[f"contribution_{k}" for k in ranks]].to_numpy(dtype=np.float64).round(4)
    texts = [
        json.dumps([{"feature": f, "contribution": float(c)} for f, c in zip(row_names, row_sizes, strict=True)])
        for row_names, row_sizes in zip(names, sizes, strict=True)
    ]
    return (
        pd.DataFrame({"churn_risk": probability}, index=people.index),
        pd.DataFrame({"churn_reasons": texts}, index=people.index),
    )


def _clv_scores(trained: TrainedLifetimeValue, orders: pd.DataFrame, last_day: pd.Timestamp) -> pd.DataFrame:
    summary = summary_from_transactions(
        orders, customer="person_id", timestamp="day", amount="value", observation_end=last_day, time_unit="D"
    )
    return trained.model.score(summary)


def _outcome_metrics(trained: TrainedOutcome) -> dict[str, Any]:
    head = trained.headline
    ours = head.metrics[MODEL]
    baselines = ", ".join(
        f"{label} {head.metrics[name]['roc_auc']:.3f}"
        for name, label in ((RFM_LOGISTIC, "RFM logistic"), (BGNBD, "BG/NBD"))
        if name in head.metrics
    )
    return {
        "headline": (
            f"ROC-AUC {ours['roc_auc']:.3f} ({baselines}), Brier {ours['brier']:.3f}, lift@10% {ours['lift_top']:.2f}"
        ),
        "backtest_cutoff": head.cutoff.isoformat(),
        "backtest": head.metrics,
        "rolling": [{"cutoff": b.cutoff.isoformat(), "roc_auc": b.metrics[MODEL]["roc_auc"]} for b in trained.backtests],
        "examples": trained.summary["examples"],
        "importance": trained.importance.head(10).to_dict(orient="records"),
    }

