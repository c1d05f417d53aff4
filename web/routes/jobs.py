"""Jobs: ``nas`` commands the server starts for write tokens, their state, log and live events."""

from __future__ import annotations

import datetime
import shlex
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import PlainTextResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from nas.status import read as read_status
from web.events import TooManyStreams
from web.jobs import CheckTimeout
from web.models import JobIn, JobOut, Progress
from web.policy import PolicyError
from web.queries import StudyQueries
from web.routes.studies import Id
from web.service import Reader, Served, Service, Writer

router = APIRouter(prefix="/api/jobs", tags=["jobs"])


def _last(args: list[str], key: str) -> str | None:
    found = None
    for a in args:
        k, _, v = a.partition("=")
        if k == key:
            found = v.strip("'\"")
    return found


def progress_of(s: Service, job: dict) -> Progress | None:
    """What the job's command reported (nas.status), or for a search whose command cannot
    report here (a Ray job) its study's completed trials."""
    path = s.jobs.status_path(job)
    status = read_status(path) if path is not None else None
    if status is not None:
        eta = status.eta_s() if job["status"] == "running" else None
        return Progress(
            phase=status.phase, done=status.done, total=status.total, study=status.study, eta_s=eta
        )
    name = _last(job["args"], "study_name")
    if job["kind"] != "search" or name is None:
        return None
    try:
        states = StudyQueries(s.storage.engine, s.storage.get_study_id_from_name(name), []).states()
    except KeyError:
        states = {}
    total = _last(job["args"], "n_trials")
    return Progress(
        phase="trials",
        done=states.get("COMPLETE", 0),
        total=int(total) if total and total.isdigit() else None,
        study=name,
    )


def job_out(s: Service, job: dict, detail: bool = True) -> JobOut:
    """``detail``: also read a failed Ray job's log from its cluster (one request)."""
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    failure = None
    if job["status"] == "failed" and (detail or not job["ray_job"]):
        lines = [line.strip() for line in (s.jobs.log_tail(job["id"], 4000) or "").splitlines()]
        failure = next((line for line in reversed(lines) if line), None)
    return JobOut(
        id=job["id"],
        kind=job["kind"],
        args=job["args"],
        command=shlex.join(["nas", job["kind"], *job["args"]]),
        owner=job["owner"],
        status=job["status"],
        exit_code=job["exit_code"],
        created=job["created"].isoformat(),
        finished=job["finished"].isoformat() if job["finished"] else None,
        duration_s=round(((job["finished"] or now) - job["created"]).total_seconds(), 1),
        progress=progress_of(s, job),
        failure=failure,
        ray_address=job["ray_address"],
        ray_job=job["ray_job"],
    )


def ended(job: dict[str, Any]) -> bool:
    return job["status"] != "running" and bool(job["finished"] or not job["ray_job"])


@router.post("", response_model=JobOut, status_code=201)
def start_job(body: JobIn, s: Served, who: Writer) -> JobOut:
    """Start ``nas <kind> <args>``: on this machine, or as a Ray job on one of the server's
    clusters (``executor.address``). Arguments must pass the server's policy (README: what a
    write token can do), then the CLI's own checks (422 with its one-line error). Starting a
    search again resumes it."""
    try:
        args = s.policy.check(body.args)
    except PolicyError as e:
        raise HTTPException(422, str(e)) from None
    try:
        error = s.jobs.check(body.kind, args)
    except CheckTimeout as e:
        raise HTTPException(503, str(e), {"Retry-After": "30"}) from None
    if error is not None:
        raise HTTPException(422, error)
    return job_out(s, s.jobs.get(s.jobs.start(body.kind, args, who.name)))


@router.get("", response_model=list[JobOut])
def list_jobs(s: Served, who: Reader) -> list[JobOut]:
    return [job_out(s, job, detail=False) for job in s.jobs.list()]


@router.get("/{job_id}", response_model=JobOut)
def get_job(job_id: Id, s: Served, who: Reader) -> JobOut:
    job = s.jobs.get(job_id)
    if job is None:
        raise HTTPException(404, f"no job {job_id}")
    return job_out(s, job)


@router.get("/{job_id}/log", response_class=PlainTextResponse)
def job_log(job_id: Id, s: Served, who: Reader) -> str:
    """The last 20 kB of the job's output."""
    text = s.jobs.log_tail(job_id)
    if text is None:
        raise HTTPException(404, f"no job {job_id}")
    return text


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "server-sent events"},
        429: {"description": "too many open streams (per token, or in all)"},
    },
)
async def job_events(job_id: Id, s: Served, who: Reader) -> StreamingResponse:
    """Live progress as server-sent events: one ``data:`` line (the job as JSON) now and at
    every change of its state or progress, checked every second, until the job ends."""
    if await run_in_threadpool(s.jobs.get, job_id) is None:
        raise HTTPException(404, f"no job {job_id}")
    try:
        stream = s.events.open(job_id, who.name)
    except TooManyStreams as e:
        raise HTTPException(429, str(e), {"Retry-After": "10"}) from None
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream, media_type="text/event-stream", headers=headers)


@router.post("/{job_id}/cancel", response_model=JobOut)
def cancel_job(job_id: Id, s: Served, who: Writer) -> JobOut:
    job = s.jobs.cancel(job_id)
    if job is None:
        raise HTTPException(404, f"no job {job_id}")
    return job_out(s, job)
