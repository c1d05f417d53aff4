"""Studies and their trials: lists, pages, the chart's columns, the front, retrained results."""

from __future__ import annotations

import contextlib
import csv
import io
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi import Path as PathParam
from fastapi.responses import StreamingResponse

from nas.records import STUDY_ATTR, RunRecord, TrialAttr, TrialFigures
from web.models import MAX_ID, Baseline, Points, Retrained, RetrainedOut, StudyOut, TrialOut, TrialPage
from web.queries import Row, StudyQueries
from web.service import Reader, Served, Service

router = APIRouter(prefix="/api/studies", tags=["studies"])

SUMMARY_KEYS = TrialFigures.KEYS
CSV_LIMIT = 200_000  # trials in one CSV download
Id = Annotated[int, PathParam(ge=0, le=MAX_ID)]
Latency = Annotated[float | None, Query(allow_inf_nan=False)]
State = Literal["COMPLETE", "RUNNING", "FAIL", "PRUNED", "WAITING"]
Sort = Literal["number", "top1", "latency", "state", "duration"]


def trial_out(
    number: int, state: str, a: dict[str, Any], row: Row | None = None, arch: bool = False
) -> TrialOut:
    figures = TrialFigures.from_attrs(a)
    return TrialOut(
        number=number,
        state=state,
        top1=figures.top1,
        latency=figures.latency,
        summary=figures.summary,
        params=figures.params,
        flops=figures.flops,
        arch=a.get(TrialAttr.ARCH) if arch else None,
        fail_reason=figures.fail_reason,
        started=row.started.isoformat() if row is not None and row.started else None,
        duration_s=row.duration_s() if row is not None else None,
    )


def front_out(s: Service, q: StudyQueries) -> list[TrialOut]:
    front = s.fronts.get(q)[1]
    attrs = q.attrs([p.trial_id for p in front], SUMMARY_KEYS)
    return [trial_out(p.number, "COMPLETE", attrs[p.trial_id]) for p in front]


@router.get("", response_model=list[StudyOut])
def studies(s: Served, who: Reader) -> list[StudyOut]:
    out = []
    for frozen in s.storage.get_all_studies():
        info = frozen.user_attrs.get(STUDY_ATTR, {})
        q = StudyQueries(s.storage.engine, frozen._study_id, list(info.get("objectives") or []))
        (points, front), states = s.fronts.get(q), q.states()
        out.append(
            StudyOut(
                name=frozen.study_name,
                completed=states.get("COMPLETE", 0),
                running=states.get("RUNNING", 0),
                failed=states.get("FAIL", 0),
                pruned=states.get("PRUNED", 0),
                best_top1=max((p.top1 for p in points), default=None),
                front_size=len(front),
                space=(info.get("space") or {}).get("name"),
                dataset=info.get("dataset"),
            )
        )
    return out


@router.get("/{name:name}")
def study(name: str, s: Served, who: Reader) -> dict[str, Any]:
    study_id = s.study_id(name)
    attrs = s.storage.get_study_user_attrs(study_id)
    info = attrs.get(STUDY_ATTR, {})
    return {
        "name": name,
        "directions": [d.name.lower() for d in s.storage.get_study_directions(study_id)],
        "objectives": info.get("objectives"),
        "space": info.get("space"),
        "dataset": info.get("dataset"),
        "profiler": info.get("profiler"),
        "hardware": info.get("hardware_info"),
        "supernet": info.get("supernet"),
        "samplers": attrs.get("samplers", []),
        "trials": dict(sorted(s.queries(name).states().items())),
    }


@router.get("/{name:name}/trials", response_model=TrialPage)
def trials(
    name: str,
    s: Served,
    who: Reader,
    state: State | None = None,
    min_latency: Latency = None,
    max_latency: Latency = None,
    min_top1: Latency = None,
    sort: Sort = "number",
    order: Literal["asc", "desc"] = "asc",
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> TrialPage:
    """Trials of every state, filtered and sorted in SQL, a page at a time."""
    q = s.queries(name)
    total, rows = q.page(state, min_latency, max_latency, sort, order == "desc", offset, limit, min_top1)
    attrs = q.attrs([r.trial_id for r in rows], SUMMARY_KEYS)
    return TrialPage(
        total=total, offset=offset, items=[trial_out(r.number, r.state, attrs[r.trial_id], r) for r in rows]
    )


@router.get(
    "/{name:name}/trials.csv",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "the trials as CSV"}},
)
def trials_csv(
    name: str,
    s: Served,
    who: Reader,
    state: State | None = None,
    min_latency: Latency = None,
    max_latency: Latency = None,
    min_top1: Latency = None,
    sort: Sort = "number",
    order: Literal["asc", "desc"] = "asc",
) -> StreamingResponse:
    """The same trials as ``/trials`` with the same filters, all of them, as CSV."""
    q = s.queries(name)
    _, rows = q.page(state, min_latency, max_latency, sort, order == "desc", 0, CSV_LIMIT, min_top1)

    def lines() -> Iterator[str]:
        columns = ["number", "state", "top1", "latency", "unit", "params", "flops", "started", "duration_s"]
        yield _csv_line(columns + ["summary", "fail_reason"])
        for start in range(0, len(rows), 1000):
            chunk = rows[start : start + 1000]
            attrs = q.attrs([r.trial_id for r in chunk], SUMMARY_KEYS)
            for r in chunk:
                t = trial_out(r.number, r.state, attrs[r.trial_id], r)
                latency = t.latency or {}
                yield _csv_line(
                    [t.number, t.state, t.top1, latency.get("median"), latency.get("unit"), t.params, t.flops]
                    + [t.started, t.duration_s, t.summary, t.fail_reason]
                )

    filename = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:100] or "study"
    headers = {"Content-Disposition": f'attachment; filename="{filename}-trials.csv"'}
    return StreamingResponse(lines(), media_type="text/csv", headers=headers)


def _csv_line(values: list[Any]) -> str:
    out = io.StringIO()
    csv.writer(out).writerow(["" if v is None else v for v in values])
    return out.getvalue()


@router.get("/{name:name}/points", response_model=Points)
def points(name: str, s: Served, who: Reader) -> Points:
    """Every completed trial's number, top-1, latency and parameters, as columns."""
    q = s.queries(name)
    scored, front = s.fronts.get(q)
    params = q.attrs([p.trial_id for p in scored], ("params",))
    unit = "ms"
    if scored:
        one = q.attrs([scored[0].trial_id], ("latency",))[scored[0].trial_id]
        unit = (one.get("latency") or {}).get("unit", "ms")
    return Points(
        unit=unit,
        number=[p.number for p in scored],
        top1=[p.top1 for p in scored],
        latency=[p.latency for p in scored],
        params=[params[p.trial_id].get("params") for p in scored],
        front=[p.number for p in front],
    )


@router.get("/{name:name}/trials/{number}", response_model=TrialOut)
def trial(name: str, number: Id, s: Served, who: Reader) -> TrialOut:
    q = s.queries(name)
    try:
        trial_id = s.storage.get_trial_id_from_study_id_trial_number(q.study_id, number)
    except KeyError:
        raise HTTPException(404, f"study {name!r} has no trial {number}") from None
    t = s.storage.get_trial(trial_id)
    row = Row(trial_id, t.number, t.state.name, t.datetime_start, t.datetime_complete)
    return trial_out(t.number, t.state.name, t.user_attrs, row, arch=True)


@router.get("/{name:name}/front", response_model=list[TrialOut])
def front(name: str, s: Served, who: Reader) -> list[TrialOut]:
    return front_out(s, s.queries(name))


@router.get("/{name:name}/retrained", response_model=RetrainedOut)
def retrained(name: str, s: Served, who: Reader) -> RetrainedOut:
    """``nas train`` results stored with the study: found models trained on their own (at the
    latency their trial measured) and timm baselines (at the latency measured for them). A run a
    scheduler stopped early has ``state: stopped``: its figures are not a result."""
    q = s.queries(name)
    records = RunRecord.all_in(s.storage.get_study_user_attrs(q.study_id))
    ids = {}
    for number in {r.trial for r in records.values()} - {None}:
        with contextlib.suppress(KeyError):  # a trial of a study that was later replaced
            ids[number] = s.storage.get_trial_id_from_study_id_trial_number(q.study_id, number)
    stored = q.attrs(list(ids.values()), (TrialAttr.LATENCY,))
    latency = {n: TrialFigures.from_attrs(stored[i]).latency_median() for n, i in ids.items()}
    found, baselines = [], []
    for r in records.values():
        epochs = r.epochs if isinstance(r.epochs, int) else None
        common = {"top1": r.score, "epochs": epochs, "planned_epochs": r.planned_epochs, "state": r.state}
        if r.trial in ids:
            found.append(
                Retrained(
                    trial=r.trial, trials=r.stands_for(), init=r.init, latency=latency[r.trial], **common
                )
            )
        elif r.baseline_latency() is not None:
            median, unit = r.baseline_latency()
            params = r.params if isinstance(r.params, int) else None
            baselines.append(Baseline(name=r.name, params=params, latency=median, unit=unit, **common))
    return RetrainedOut(retrained=found, baselines=baselines)


@router.get("/{name:name}/best", response_model=TrialOut)
def best(
    name: str, latency_budget_ms: Annotated[float, Query(gt=0, allow_inf_nan=False)], s: Served, who: Reader
) -> TrialOut:
    """The best top-1 among completed trials whose latency is within the budget."""
    return trial(name, best_number(s, name, latency_budget_ms), s, who)


def best_number(s: Service, name: str, budget: float) -> int:
    within = [p for p in s.fronts.get(s.queries(name))[1] if p.latency <= budget]
    if not within:
        raise HTTPException(404, f"no completed trial of {name!r} within {budget} ms")
    return max(within, key=lambda p: p.top1).number
