"""Reads of a study straight from Optuna's SQL tables, so that a study of 10,000 trials answers in
milliseconds: the objective values (two columns) decide the front, the order and the page, and
user attributes are read only for the trials a response shows. Optuna's own ``get_trials`` loads
every attribute of every trial (seconds at that size).
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from optuna.trial import TrialState

from nas.optuna_internals import models  # Optuna's tables (why: nas.optuna_internals)

T, V, A = (
    models.TrialModel.__table__,
    models.TrialValueModel.__table__,
    models.TrialUserAttributeModel.__table__,
)


@dataclass(frozen=True)
class Row:
    """A trial as a page lists it (its figures are read from its attributes)."""

    trial_id: int
    number: int
    state: str
    started: datetime.datetime | None
    completed: datetime.datetime | None

    def duration_s(self) -> float | None:
        if self.started is None or self.completed is None:
            return None
        return round((self.completed - self.started).total_seconds(), 3)


@dataclass(frozen=True)
class Point:
    trial_id: int
    number: int
    top1: float
    latency: float


class StudyQueries:
    """Queries of study ``study_id`` whose objectives are ``objectives`` (nas's names)."""

    def __init__(self, engine: sa.Engine, study_id: int, objectives: list[str]) -> None:
        self.engine, self.study_id = engine, study_id
        self.acc = objectives.index("accuracy") if "accuracy" in objectives else None
        self.lat = objectives.index("latency") if "latency" in objectives else None

    def _scored(self) -> sa.Select:
        """(trial_id, number, top1, latency) of the COMPLETE trials."""
        va, vl = V.alias("va"), V.alias("vl")
        return (
            sa.select(T.c.trial_id, T.c.number, va.c.value.label("top1"), vl.c.value.label("latency"))
            .join(va, sa.and_(va.c.trial_id == T.c.trial_id, va.c.objective == self.acc))
            .join(vl, sa.and_(vl.c.trial_id == T.c.trial_id, vl.c.objective == self.lat))
            .where(T.c.study_id == self.study_id, T.c.state == TrialState.COMPLETE)
        )

    def points(self) -> list[Point]:
        if self.acc is None or self.lat is None:
            return []
        with self.engine.connect() as connection:
            return [Point(*row) for row in connection.execute(self._scored())]

    def version(self) -> tuple[int, int | None]:
        """(COMPLETE trials, the newest one's id): changes whenever the scored set changes."""
        query = sa.select(sa.func.count(), sa.func.max(T.c.trial_id)).where(
            T.c.study_id == self.study_id, T.c.state == TrialState.COMPLETE
        )
        with self.engine.connect() as connection:
            count, newest = connection.execute(query).one()
        return count, newest

    def states(self) -> dict[str, int]:
        query = sa.select(T.c.state, sa.func.count()).where(T.c.study_id == self.study_id).group_by(T.c.state)
        with self.engine.connect() as connection:
            return {str(getattr(state, "name", state)): n for state, n in connection.execute(query)}

    def page(
        self,
        state: str | None,
        min_latency: float | None,
        max_latency: float | None,
        sort: str,
        descending: bool,
        offset: int,
        limit: int,
        min_top1: float | None = None,
    ) -> tuple[int, list[Row]]:
        """(total, rows) of one page, filtered and sorted in SQL."""
        vl, va = V.alias("vl"), V.alias("va")
        duration = {  # (only the order matters)
            "sqlite": sa.func.julianday(T.c.datetime_complete) - sa.func.julianday(T.c.datetime_start),
            "postgresql": sa.extract("epoch", T.c.datetime_complete - T.c.datetime_start),
        }.get(self.engine.dialect.name, T.c.datetime_complete)
        query = sa.select(
            T.c.trial_id, T.c.number, T.c.state, T.c.datetime_start, T.c.datetime_complete
        ).where(T.c.study_id == self.study_id)
        if state is not None:
            query = query.where(T.c.state == TrialState[state])
        needs_latency = min_latency is not None or max_latency is not None or sort == "latency"
        if needs_latency and self.lat is not None:
            query = query.outerjoin(vl, sa.and_(vl.c.trial_id == T.c.trial_id, vl.c.objective == self.lat))
            if min_latency is not None:
                query = query.where(vl.c.value >= min_latency)
            if max_latency is not None:
                query = query.where(vl.c.value <= max_latency)
        if (sort == "top1" or min_top1 is not None) and self.acc is not None:
            query = query.outerjoin(va, sa.and_(va.c.trial_id == T.c.trial_id, va.c.objective == self.acc))
            if min_top1 is not None:
                query = query.where(va.c.value >= min_top1)
        key = {
            "number": T.c.number,
            "latency": vl.c.value,
            "top1": va.c.value,
            "state": T.c.state,
            "duration": duration,
        }[sort]
        if sort in ("top1", "latency") and (self.acc if sort == "top1" else self.lat) is None:
            key = T.c.number
        ordered = [key.desc().nulls_last() if descending else key.asc().nulls_last(), T.c.number]
        with self.engine.connect() as connection:
            total = connection.execute(sa.select(sa.func.count()).select_from(query.subquery())).scalar()
            rows = connection.execute(query.order_by(*ordered).offset(offset).limit(limit)).all()
        return total, [
            Row(
                r.trial_id,
                r.number,
                str(getattr(r.state, "name", r.state)),
                r.datetime_start,
                r.datetime_complete,
            )
            for r in rows
        ]

    def attrs(self, trial_ids: list[int], keys: tuple[str, ...] | None = None) -> dict[int, dict[str, Any]]:
        """User attributes of these trials only (``keys`` of them, or all)."""
        out: dict[int, dict[str, Any]] = {i: {} for i in trial_ids}
        if not trial_ids:
            return out
        query = sa.select(A.c.trial_id, A.c.key, A.c.value_json).where(A.c.trial_id.in_(trial_ids))
        if keys is not None:
            query = query.where(A.c.key.in_(keys))
        with self.engine.connect() as connection:
            for trial_id, key, value in connection.execute(query):
                out[trial_id][key] = json.loads(value)
        return out


def front_points(points: list[Point]) -> list[Point]:
    """The (top-1 max, latency min) Pareto front in O(n log n)."""
    front, best = [], float("-inf")
    for p in sorted(points, key=lambda p: (p.latency, -p.top1)):
        if p.top1 > best:
            front.append(p)
            best = p.top1
    return front


class FrontCache:
    """Each study's scored points and front, recomputed only when its version changes (a new
    completed trial): a request for an unchanged study of 10,000 trials costs one small query."""

    def __init__(self) -> None:
        self.entries: dict[int, tuple[tuple, list[Point], list[Point]]] = {}

    def get(self, q: StudyQueries) -> tuple[list[Point], list[Point]]:
        version = q.version()
        entry = self.entries.get(q.study_id)
        if entry is None or entry[0] != version:
            points = q.points()
            entry = (version, points, front_points(points))
            self.entries[q.study_id] = entry  # one assignment: safe across the server's threads
        return entry[1], entry[2]
