"""The service's HTTP API (FastAPI; OpenAPI schema at ``/openapi.json``, docs at ``/docs``).

Every figure is read from the study storage (SQLite or PostgreSQL) on each request, so the server
holds no state of its own and can be restarted at any time. This package never imports torch:
exports run as ``nas export`` processes, and trial figures are read straight from Optuna's
storage.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations at runtime,
# and they name dependencies local to create_app.
import contextlib
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import optuna
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as Path_
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse, StreamingResponse
from optuna.trial import FrozenTrial
from pydantic import BaseModel, Field

from web.auth import Caller, TokenStore
from web.jobs import JobStore
from web.queries import FrontCache, StudyQueries

STUDY_ATTR = "nas"  # the study attribute nas search writes (what the figures are valid for)
DOWNLOADS = ("model.onnx", "arch.yaml", "export.json")
MAX_ID = 2**31 - 1  # trial numbers, job ids, offsets: beyond what SQL integers hold is a 422
Id = Annotated[int, Path_(ge=0, le=MAX_ID)]
Latency = Annotated[float | None, Query(allow_inf_nan=False)]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "study"


class TrialOut(BaseModel):
    number: int
    state: str
    top1: float | None = None
    latency: dict[str, Any] | None = None
    summary: str | None = None
    params: int | None = None
    flops: int | None = None
    arch: dict[str, Any] | None = None
    fail_reason: str | None = None


class TrialPage(BaseModel):
    total: int
    offset: int
    items: list[TrialOut]


class StudyOut(BaseModel):
    name: str
    completed: int
    running: int
    failed: int
    best_top1: float | None
    front_size: int
    space: str | None
    dataset: str | None


class ExportIn(BaseModel):
    trial: int | None = Field(default=None, ge=0, le=MAX_ID)
    latency_budget_ms: float | None = Field(default=None, gt=0)


class JobIn(BaseModel):
    kind: Literal["search", "export", "train"]
    args: list[str] = Field(default_factory=list, max_length=100, description="the CLI's key=value overrides")


class JobOut(BaseModel):
    id: int
    kind: str
    args: list[str]
    owner: str
    status: str
    exit_code: int | None
    created: str
    finished: str | None
    progress: dict[str, Any] | None = None
    ray_address: str | None = None  # a Ray job on this cluster (the job's executor.address)
    ray_job: str | None = None  # its submission id there


class ExportOut(BaseModel):
    trial: int
    folder: str
    files: list[str]
    message: str


SUMMARY_KEYS = ("top1", "latency", "summary", "params", "flops", "fail_reason")


def _summary_out(number: int, state: str, a: dict[str, Any]) -> TrialOut:
    return TrialOut(
        number=number,
        state=state,
        top1=a.get("top1"),
        latency=a.get("latency"),
        summary=a.get("summary"),
        params=a.get("params"),
        flops=a.get("flops"),
        fail_reason=a.get("fail_reason"),
    )


def _trial_out(t: FrozenTrial, detail: bool) -> TrialOut:
    a = t.user_attrs
    return TrialOut(
        number=t.number,
        state=t.state.name,
        top1=a.get("top1"),
        latency=a.get("latency"),
        summary=a.get("summary"),
        params=a.get("params"),
        flops=a.get("flops"),
        arch=a.get("arch") if detail else None,
        fail_reason=a.get("fail_reason"),
    )


def create_app(
    storage_url: str, public_reads: bool = False, export_dir: str | Path = "export", workdir: str | Path = "."
) -> FastAPI:
    """The API over the study storage at ``storage_url``. ``public_reads``: GETs need no token.
    Exports go under ``export_dir``; ``nas export`` runs in ``workdir`` (where the cache is)."""
    storage = optuna.storages.RDBStorage(storage_url)
    tokens = TokenStore(storage.engine)
    export_root = Path(export_dir).resolve()
    fronts = FrontCache()
    job_store = JobStore(storage_url, Path(workdir).resolve() / ".nas_jobs", Path(workdir).resolve())
    app = FastAPI(
        title="nas",
        version="1",
        description="Neural architecture search service: studies, trials, fronts, exports.",
    )

    def caller(request: Request) -> Caller | None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if not header:
            return None
        if scheme.lower() != "bearer" or not token:
            raise HTTPException(401, "expected Authorization: Bearer <token>", {"WWW-Authenticate": "Bearer"})
        found = tokens.check(token.strip())
        if found is None:
            raise HTTPException(401, "unknown or revoked token", {"WWW-Authenticate": "Bearer"})
        return found

    def reader(who: Annotated[Caller | None, Depends(caller)]) -> Caller:
        if who is None:
            if public_reads:
                return Caller("public", "read")
            raise HTTPException(401, "a token is needed (nas token create)", {"WWW-Authenticate": "Bearer"})
        return who

    def writer(who: Annotated[Caller | None, Depends(caller)]) -> Caller:
        if who is None:
            raise HTTPException(
                401, "a write token is needed (nas token create scope=write)", {"WWW-Authenticate": "Bearer"}
            )
        if not who.may("write"):
            raise HTTPException(403, f"token {who.name!r} may only read")
        return who

    def study_of(name: str) -> optuna.Study:
        try:
            return optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            raise HTTPException(404, f"no study {name!r}") from None

    def queries_of(name: str) -> StudyQueries:
        try:
            study_id = storage.get_study_id_from_name(name)
        except KeyError:
            raise HTTPException(404, f"no study {name!r}") from None
        info = storage.get_study_user_attrs(study_id).get(STUDY_ATTR, {})
        return StudyQueries(storage.engine, study_id, list(info.get("objectives") or []))

    def front_out(q: StudyQueries) -> list[TrialOut]:
        front = fronts.get(q)[1]
        attrs = q.attrs([p.trial_id for p in front], SUMMARY_KEYS)
        return [_summary_out(p.number, "COMPLETE", attrs[p.trial_id]) for p in front]

    page = (Path(__file__).parent / "static" / "index.html").read_text()

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        """The page (no external assets; it asks for a token and keeps it in the browser)."""
        return page

    @app.get("/api/health")
    def health() -> dict[str, bool]:
        storage.get_all_studies()  # the storage answers
        return {"ok": True}

    @app.get("/api/studies", response_model=list[StudyOut])
    def studies(who: Annotated[Caller, Depends(reader)]) -> list[StudyOut]:
        out = []
        for frozen in storage.get_all_studies():
            info = frozen.user_attrs.get(STUDY_ATTR, {})
            q = StudyQueries(storage.engine, frozen._study_id, list(info.get("objectives") or []))
            (points, front), states = fronts.get(q), q.states()
            out.append(
                StudyOut(
                    name=frozen.study_name,
                    completed=states.get("COMPLETE", 0),
                    running=states.get("RUNNING", 0),
                    failed=states.get("FAIL", 0),
                    best_top1=max((p.top1 for p in points), default=None),
                    front_size=len(front),
                    space=(info.get("space") or {}).get("name"),
                    dataset=info.get("dataset"),
                )
            )
        return out

    @app.get("/api/studies/{name}")
    def study(name: str, who: Annotated[Caller, Depends(reader)]) -> dict[str, Any]:
        s = study_of(name)
        info = s.user_attrs.get(STUDY_ATTR, {})
        states = queries_of(name).states()
        return {
            "name": name,
            "directions": [d.name.lower() for d in s.directions],
            "objectives": info.get("objectives"),
            "space": info.get("space"),
            "dataset": info.get("dataset"),
            "profiler": info.get("profiler"),
            "hardware": info.get("hardware_info"),
            "supernet": info.get("supernet"),
            "samplers": s.user_attrs.get("samplers", []),
            "trials": dict(sorted(states.items())),
        }

    @app.get("/api/studies/{name}/trials", response_model=TrialPage)
    def trials(
        name: str,
        who: Annotated[Caller, Depends(reader)],
        state: Literal["COMPLETE", "RUNNING", "FAIL", "PRUNED", "WAITING"] | None = None,
        min_latency: Latency = None,
        max_latency: Latency = None,
        sort: Literal["number", "top1", "latency"] = "number",
        order: Literal["asc", "desc"] = "asc",
        offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> TrialPage:
        q = queries_of(name)
        total, rows = q.page(state, min_latency, max_latency, sort, order == "desc", offset, limit)
        attrs = q.attrs([trial_id for trial_id, _, _ in rows], SUMMARY_KEYS)
        items = [_summary_out(number, st, attrs[trial_id]) for trial_id, number, st in rows]
        return TrialPage(total=total, offset=offset, items=items)

    @app.get("/api/studies/{name}/trials/{number}", response_model=TrialOut)
    def trial(name: str, number: Id, who: Annotated[Caller, Depends(reader)]) -> TrialOut:
        q = queries_of(name)
        try:
            trial_id = storage.get_trial_id_from_study_id_trial_number(q.study_id, number)
        except KeyError:
            raise HTTPException(404, f"study {name!r} has no trial {number}") from None
        return _trial_out(storage.get_trial(trial_id), True)

    @app.get("/api/studies/{name}/front", response_model=list[TrialOut])
    def front(name: str, who: Annotated[Caller, Depends(reader)]) -> list[TrialOut]:
        return front_out(queries_of(name))

    @app.get("/api/studies/{name}/retrained")
    def retrained(name: str, who: Annotated[Caller, Depends(reader)]) -> dict[str, list[dict[str, Any]]]:
        """``nas train`` results stored with the study: found models trained on their own (with
        the latency their trial measured) and timm baselines (with the latency measured for them)."""
        q = queries_of(name)
        records = {
            k: r
            for k, r in storage.get_study_user_attrs(q.study_id).items()
            if k.startswith(("retrained:", "baseline:")) and isinstance(r, dict)
        }
        numbers = {int(r["name"]) for r in records.values() if r.get("kind") == "trial"}
        ids = {}
        for number in numbers:
            with contextlib.suppress(KeyError):  # a trial of a study that was later replaced
                ids[number] = storage.get_trial_id_from_study_id_trial_number(q.study_id, number)
        stored = q.attrs(list(ids.values()), ("latency",))
        latency = {n: stored[i].get("latency", {}).get("median") for n, i in ids.items()}
        found, baselines = [], []
        for key, record in sorted(records.items()):
            score = record.get("test_top1") if record.get("test_top1") is not None else record.get("val_top1")
            if record.get("kind") == "trial" and int(record["name"]) in ids:
                found.append(
                    {
                        "trial": int(record["name"]),
                        "init": record.get("init"),
                        "top1": score,
                        "epochs": record.get("epochs"),
                        "stopped_early": record.get("stopped_early", False),
                        "latency": latency[int(record["name"])],
                    }
                )
            elif key.startswith("baseline:") and record.get("measured"):
                baselines.append(
                    {
                        "name": record["name"],
                        "top1": score,
                        "params": record.get("params"),
                        "latency": record["measured"]["latency"]["median"],
                        "unit": record["measured"]["unit"],
                    }
                )
        return {"retrained": found, "baselines": baselines}

    @app.get("/api/studies/{name}/best", response_model=TrialOut)
    def best(
        name: str, latency_budget_ms: Annotated[float, Query(gt=0)], who: Annotated[Caller, Depends(reader)]
    ) -> TrialOut:
        q = queries_of(name)
        within = [p for p in fronts.get(q)[1] if p.latency <= latency_budget_ms]
        if not within:
            raise HTTPException(404, f"no completed trial of {name!r} within {latency_budget_ms} ms")
        chosen = max(within, key=lambda p: p.top1)
        return _trial_out(storage.get_trial(chosen.trial_id), True)

    @app.post("/api/studies/{name}/exports", response_model=ExportOut, status_code=201)
    def export(name: str, body: ExportIn, who: Annotated[Caller, Depends(writer)]) -> ExportOut:
        """Export a trial (or the best within a latency budget) as ``nas export`` does."""
        study_of(name)
        if (body.trial is None) == (body.latency_budget_ms is None):
            raise HTTPException(422, "give exactly one of trial or latency_budget_ms")
        number = body.trial
        if number is None:
            number = best(name, body.latency_budget_ms, who).number
        folder = export_root / f"{_safe(name)}-trial{number}"
        command = [sys.executable, "-m", "nas", "export", f"storage={storage_url}", f"study_name={name}"]
        command += [f"trial={number}", f"out_dir={folder}", "overwrite=true", "progress=false"]
        done = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=600)
        if done.returncode == 2:
            raise HTTPException(
                422, done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "bad input"
            )
        if done.returncode != 0:
            raise HTTPException(500, f"nas export failed (exit {done.returncode})")
        files = sorted(p.name for p in folder.iterdir() if p.name in DOWNLOADS)
        return ExportOut(trial=number, folder=folder.name, files=files, message=done.stdout.strip()[-500:])

    @app.get("/api/studies/{name}/trials/{number}/export/{filename}")
    def download(
        name: str, number: Id, filename: str, who: Annotated[Caller, Depends(reader)]
    ) -> FileResponse:
        """A file of a trial's export; nothing outside the export folder is ever served."""
        if filename not in DOWNLOADS:
            raise HTTPException(404, "no such file")
        path = (export_root / f"{_safe(name)}-trial{number}" / filename).resolve()
        if not path.is_relative_to(export_root) or not path.is_file():
            raise HTTPException(404, "no such file; export the trial first")
        return FileResponse(path, filename=filename)

    def job_out(job: dict) -> JobOut:
        progress = None
        names = [a.split("=", 1)[1] for a in job["args"] if a.startswith("study_name=")]
        if job["kind"] == "search" and names:
            try:
                states = StudyQueries(storage.engine, storage.get_study_id_from_name(names[-1]), []).states()
                progress = {"study": names[-1], "completed": states.get("COMPLETE", 0)}
            except KeyError:
                progress = {"study": names[-1], "completed": 0}
        return JobOut(
            id=job["id"],
            kind=job["kind"],
            args=job["args"],
            owner=job["owner"],
            status=job["status"],
            exit_code=job["exit_code"],
            created=job["created"].isoformat(),
            finished=job["finished"].isoformat() if job["finished"] else None,
            progress=progress,
            ray_address=job["ray_address"],
            ray_job=job["ray_job"],
        )

    @app.post("/api/jobs", response_model=JobOut, status_code=201)
    def start_job(body: JobIn, who: Annotated[Caller, Depends(writer)]) -> JobOut:
        """Start ``nas <kind> <args>``: on this machine, or as a Ray job on the cluster its
        ``executor.address`` names. The arguments are checked as the CLI checks them first (422
        with its one-line error). Starting a search again resumes it."""
        if any(a.split("=", 1)[0].lstrip("+~") in ("storage", "cache_dir") for a in body.args):
            raise HTTPException(422, "storage and cache_dir are the server's; leave them out")
        if any(a.startswith("-") for a in body.args):
            raise HTTPException(422, "give key=value overrides only")
        error = job_store.check(body.kind, body.args)
        if error is not None:
            raise HTTPException(422, error)
        return job_out(job_store.get(job_store.start(body.kind, body.args, who.name)))

    @app.get("/api/jobs", response_model=list[JobOut])
    def list_jobs(who: Annotated[Caller, Depends(reader)]) -> list[JobOut]:
        return [job_out(job) for job in job_store.list()]

    @app.get("/api/jobs/{job_id}", response_model=JobOut)
    def get_job(job_id: Id, who: Annotated[Caller, Depends(reader)]) -> JobOut:
        job = job_store.get(job_id)
        if job is None:
            raise HTTPException(404, f"no job {job_id}")
        return job_out(job)

    @app.get("/api/jobs/{job_id}/log", response_class=PlainTextResponse)
    def job_log(job_id: Id, who: Annotated[Caller, Depends(reader)]) -> str:
        text = job_store.log_tail(job_id)
        if text is None:
            raise HTTPException(404, f"no job {job_id}")
        return text

    @app.get(
        "/api/jobs/{job_id}/events",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}, "description": "server-sent events"}},
    )
    def job_events(job_id: Id, who: Annotated[Caller, Depends(reader)]) -> StreamingResponse:
        """Live progress as server-sent events: one ``data:`` line (the job as JSON) now and at
        every change of its state or progress, checked every second, until the job ends."""
        if job_store.get(job_id) is None:
            raise HTTPException(404, f"no job {job_id}")

        def events():
            last = None
            while True:
                job = job_out(job_store.get(job_id)).model_dump()
                if job != last:
                    yield f"data: {json.dumps(job)}\n\n"
                    last = job
                if job["status"] != "running" and (job["finished"] or not job["ray_job"]):
                    return
                time.sleep(1)

        headers = {"Cache-Control": "no-cache"}
        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    @app.post("/api/jobs/{job_id}/cancel", response_model=JobOut)
    def cancel_job(job_id: Id, who: Annotated[Caller, Depends(writer)]) -> JobOut:
        job = job_store.cancel(job_id)
        if job is None:
            raise HTTPException(404, f"no job {job_id}")
        return job_out(job)

    return app
