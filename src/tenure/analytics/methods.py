"""The analytics as ``Workspace`` methods: resolve dates, open the engine, return pandas.

Each method builds one Ibis expression from ``tenure.analytics`` and runs it on the engine the
settings choose (DuckDB or Spark). Dates left out default to the data: ``as_of`` is the end
of the local day of the latest event, so a workspace loaded with last year's history reports
on last year rather than on an empty today.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo

import ibis
import ibis.expr.types as ir
import pandas as pd

from tenure.analytics import cohorts as _cohorts
from tenure.analytics import features as _features
from tenure.analytics import funnels as _funnels
from tenure.analytics import kpis as _kpis
from tenure.analytics import paths as _paths
from tenure.analytics import rfm as _rfm
from tenure.analytics import stages as _stages
from tenure.analytics._json import json_field
from tenure.analytics._time import Period, check_period, cutoff, starting
from tenure.errors import ValidationError
from tenure.store.engine import Engine, LakeTables, utc_instant

if TYPE_CHECKING:
    from tenure.config import Settings

DateLike = datetime | date | str
Query = Callable[[LakeTables], ir.Table]
_PERIOD_DAYS = {"day": 1, "week": 7, "month": 31}


class AnalyticsMethods:
    """Mixed into ``Workspace``; needs ``settings`` and ``engine()``."""

    settings: Settings

    def engine(self) -> Engine:
        raise NotImplementedError

    # -- people -----------------------------------------------------------------------
    def features(self, as_of: DateLike | None = None) -> pd.DataFrame:
        """One row per person: activity, orders, revenue, recency, windows, traits (point-in-time)."""
        return self._run(lambda t: _features.person_features(t, as_of=self.resolve_as_of(t, as_of)), order_by="person_id")

    def stages(self, as_of: DateLike | None = None) -> pd.DataFrame:
        """Each person's lifecycle stage at ``as_of`` and the facts that decided it."""
        lifecycle = self.settings.lifecycle
        return self._run(
            lambda t: _stages.lifecycle_stages(t, as_of=self.resolve_as_of(t, as_of), lifecycle=lifecycle), order_by="person_id"
        )

    def stage_distribution(self, as_of: DateLike | None = None) -> pd.DataFrame:
        """People and share in each lifecycle stage at ``as_of``, every stage listed in order."""
        lifecycle = self.settings.lifecycle

        def query(t: LakeTables) -> ir.Table:
            people = _stages.lifecycle_stages(t, as_of=self.resolve_as_of(t, as_of), lifecycle=lifecycle)
            return _distribution(people, "stage", _stages.STAGES)

        return self._run(query)

    def stage_history(
        self, start: DateLike | None = None, end: DateLike | None = None, every: Literal["day", "week"] = "week"
    ) -> pd.DataFrame:
        """Every person's stage at the end of each day or week from ``start`` to ``end``."""
        lifecycle = self.settings.lifecycle
        return self._run(
            lambda t: _stages.stage_history(t, as_ofs=self._grid(t, start, end, every), lifecycle=lifecycle)
        )

    def stage_flow(
        self, start: DateLike | None = None, end: DateLike | None = None, every: Literal["day", "week"] = "week"
    ) -> pd.DataFrame:
        """How many people are in each stage at the end of each day or week."""
        lifecycle = self.settings.lifecycle
        return self._run(lambda t: _stages.stage_flow(t, as_ofs=self._grid(t, start, end, every), lifecycle=lifecycle))

    def stage_transitions(self, start: DateLike, end: DateLike | None = None) -> pd.DataFrame:
        """People moving from each stage at ``start`` to each stage at ``end``."""
        lifecycle = self.settings.lifecycle
        return self._run(
            lambda t: _stages.stage_transitions(
                t, start=self._cutoff(start), end=self.resolve_as_of(t, end), lifecycle=lifecycle
            )
        )

    # -- value ------------------------------------------------------------------------
    def rfm(self, as_of: DateLike | None = None) -> pd.DataFrame:
        """Recency, frequency and monetary scores and the named RFM segment of every customer."""
        bins = self.settings.rfm_bins
        return self._run(lambda t: _rfm.rfm_scores(t, as_of=self.resolve_as_of(t, as_of), bins=bins), order_by="person_id")

    def rfm_segments(self, as_of: DateLike | None = None) -> pd.DataFrame:
        """People and revenue share of each named RFM segment."""
        bins = self.settings.rfm_bins
        return self._run(lambda t: _rfm.rfm_segments(t, as_of=self.resolve_as_of(t, as_of), bins=bins))

    def cohorts(
        self,
        period: Period = "month",
        *,
        cohort_of: Literal["first_seen", "first_order"] = "first_seen",
        by: str | None = None,
        as_of: DateLike | None = None,
    ) -> pd.DataFrame:
        """Retention, orders and revenue per acquisition cohort and period since acquisition.

        ``by`` splits cohorts by a person feature (e.g. ``channel``) or any trait.
        """
        check_period(period)

        def query(t: LakeTables) -> ir.Table:
            cut = self.resolve_as_of(t, as_of)
            breakdown = None if by is None else _person_property(t, by, cut)
            return _cohorts.cohort_table(t, as_of=cut, period=period, cohort_of=cohort_of, breakdown=breakdown)

        return self._run(query)

    # -- behaviour --------------------------------------------------------------------
    def funnel(
        self,
        steps: Sequence[str | _funnels.FunnelStep],
        *,
        start: DateLike | None = None,
        end: DateLike | None = None,
        window: timedelta = timedelta(days=7),
        order: Literal["strict", "any"] = "strict",
        by: str | None = None,
        period: Period | None = None,
    ) -> pd.DataFrame:
        """Conversion through ordered steps (``"Product Viewed[category=Books]"`` filters a property)."""
        parsed = [s if isinstance(s, _funnels.FunnelStep) else _funnels.FunnelStep.parse(s) for s in steps]

        def query(t: LakeTables) -> ir.Table:
            first, last = self._range(t, start, end, default_days=90)
            return _funnels.funnel(
                t, parsed, start=first, end=last, window=window, order=order, by=by, period=period
            )

        return self._run(query)

    def paths(
        self,
        event: str,
        *,
        direction: Literal["next", "previous"] = "next",
        depth: int = 3,
        top_n: int = 5,
        start: DateLike | None = None,
        end: DateLike | None = None,
        nodes: bool = False,
    ) -> pd.DataFrame:
        """The most frequent events after (or before) ``event``, as Sankey links (or nodes)."""

        def query(t: LakeTables) -> ir.Table:
            first, last = self._range(t, start, end, default_days=90)
            links = _paths.path_links(
                t, event=event, direction=direction, depth=depth, top_n=top_n, start=first, end=last
            )
            return _paths.path_nodes(links) if nodes else links

        return self._run(query)

    def kpis(self, period: Period = "week", *, start: DateLike | None = None, end: DateLike | None = None) -> pd.DataFrame:
        """Active people, stickiness, new vs returning, orders, revenue, ARPU, churn per period."""
        check_period(period)
        lifecycle = self.settings.lifecycle

        def query(t: LakeTables) -> ir.Table:
            first, last = self._range(t, start, end, default_days=12 * _PERIOD_DAYS[period])
            return _kpis.kpis(t, start=first, end=last, period=period, lifecycle=lifecycle)

        return self._run(query)

    # -- plumbing ---------------------------------------------------------------------
    def _run(self, query: Query, order_by: str | None = None) -> pd.DataFrame:
        """Execute on a fresh engine; per-person results come sorted so repeated calls match."""
        with self.engine() as engine:
            expr = query(engine.tables())
            return engine.execute(expr.order_by(order_by) if order_by else expr)

    def _cutoff(self, value: DateLike) -> datetime:
        return cutoff(value, self.settings.timezone)

    def data_span(self, t: LakeTables) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
        """The earliest and latest event (None when there are none), read in one query."""
        events = t.events
        row = events.aggregate(lo=events.timestamp.min(), hi=events.timestamp.max()).execute().iloc[0]
        return utc_instant(row["lo"], self.settings.timezone), utc_instant(row["hi"], self.settings.timezone)

    def _local_day(self, stamp: pd.Timestamp) -> date:
        day: date = stamp.tz_convert(self.settings.timezone).date()
        return day

    def resolve_as_of(self, t: LakeTables, value: DateLike | None, latest: pd.Timestamp | None = None) -> datetime:
        """The given instant, or the end of the local day of the latest event."""
        if value is not None:
            return self._cutoff(value)
        latest = latest or self.data_span(t)[1]
        if latest is None:
            raise ValidationError("as_of", "the workspace has no events yet; give a date")
        return self._cutoff(self._local_day(latest))

    def _range(
        self, t: LakeTables, start: DateLike | None, end: DateLike | None, *, default_days: int
    ) -> tuple[datetime, datetime]:
        """[start, end) as instants; by default the last ``default_days``, not before the data."""
        earliest, latest = self.data_span(t) if start is None or end is None else (None, None)
        last = self.resolve_as_of(t, end, latest)
        if start is not None:
            first = starting(start, self.settings.timezone)
        else:
            first = last - timedelta(days=default_days)
            if earliest is not None:
                first = max(first, starting(self._local_day(earliest), self.settings.timezone))
        if first >= last:
            raise ValidationError("start", "must be before end")
        return first, last

    def _grid(
        self, t: LakeTables, start: DateLike | None, end: DateLike | None, every: Literal["day", "week"]
    ) -> list[datetime]:
        """Instants at the end of every ``every``-th local day, counting back from ``end``."""
        if every not in ("day", "week"):
            raise ValidationError("every", f"must be 'day' or 'week'; got {every!r}")
        step = timedelta(days=1 if every == "day" else 7)
        zone = ZoneInfo(self.settings.timezone)
        last_day = (self.resolve_as_of(t, end) - timedelta(microseconds=1)).astimezone(zone).date()
        first_day = (
            starting(start, self.settings.timezone).astimezone(zone).date() if start is not None else last_day - 12 * step
        )
        if first_day > last_day:
            raise ValidationError("start", "must not be after end")
        days = [last_day - i * step for i in range((last_day - first_day) // step + 1)]
        return [self._cutoff(day) for day in reversed(days)]


def _distribution(people: ir.Table, column: str, names: Sequence[str]) -> ir.Table:
    """Count people per value of ``column``, listing every name in ``names`` (zero if absent)."""
    counts = people.group_by(column).aggregate(people=people.count())
    order = ibis.memtable({column: list(names), "_order": list(range(len(names)))})
    joined = order.left_join(counts, order[column] == counts[column])
    filled = joined.select(order[column], joined._order, people=joined.people.fill_null(0).cast("int64"))
    total = filled.people.sum().over()
    share = ibis.cases((total > 0, filled.people.cast("float64") / total), else_=0.0)
    return filled.mutate(share=share).order_by("_order").drop("_order")


def _person_property(t: LakeTables, name: str, as_of: datetime) -> ir.Table:
    """``person_id`` and one property: a person feature if there is one by that name, else a trait."""
    people = _features.person_features(t, as_of=as_of)
    if name in people.columns and name != "person_id":
        return people.select("person_id", people[name].cast("string").name(name))
    users = t.users
    return users.select("person_id", json_field(users.traits, name).name(name))

