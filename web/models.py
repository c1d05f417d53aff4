"""What the API answers and accepts (pydantic models: the OpenAPI schema is made from them)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints

from web.policy import MAX_ARG_CHARS, MAX_ARGS

MAX_ID = 2**31 - 1  # trial numbers, job ids, offsets: beyond what SQL integers hold is a 422


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
    started: str | None = None  # ISO time the trial started
    duration_s: float | None = None


class TrialPage(BaseModel):
    total: int
    offset: int
    items: list[TrialOut]


class Points(BaseModel):
    """Every completed trial as columns (the chart's data: one small answer for 10,000 trials)."""

    unit: str
    number: list[int]
    top1: list[float]
    latency: list[float]
    params: list[int | None]
    front: list[int]  # trial numbers on the Pareto front, by latency


class StudyOut(BaseModel):
    name: str
    completed: int
    running: int
    failed: int
    pruned: int = 0
    best_top1: float | None
    front_size: int
    space: str | None
    dataset: str | None


class Retrained(BaseModel):
    """A found model trained on its own (``nas train``): at its trial's latency."""

    trial: int
    trials: list[int]  # every trial of this architecture (trained once for all)
    init: str | None
    top1: float | None
    epochs: int | None  # epochs it ran
    planned_epochs: int | None  # epochs of its recipe
    state: Literal["complete", "stopped"]  # stopped: a scheduler ended it early; not a result
    latency: float | None


class Baseline(BaseModel):
    name: str
    top1: float | None
    params: int | None
    latency: float
    unit: str
    epochs: int | None = None
    planned_epochs: int | None = None
    state: Literal["complete", "stopped"] = "complete"


class RetrainedOut(BaseModel):
    retrained: list[Retrained]
    baselines: list[Baseline]


class ExportIn(BaseModel):
    trial: int | None = Field(default=None, ge=0, le=MAX_ID)
    latency_budget_ms: float | None = Field(default=None, gt=0, allow_inf_nan=False)


class ExportOut(BaseModel):
    trial: int
    folder: str
    files: list[str]
    message: str


Arg = Annotated[str, StringConstraints(max_length=MAX_ARG_CHARS)]


class JobIn(BaseModel):
    kind: Literal["search", "run", "export", "train"]
    args: list[Arg] = Field(
        default_factory=list,
        max_length=MAX_ARGS,
        description="key=value overrides of known settings, +space=NAME (README: what a write token can do)",
    )


class Progress(BaseModel):
    """How far a job is: ``done`` of ``total`` in its current phase, and when it should end."""

    phase: str  # supernet (steps), trials, training (candidates)
    done: int
    total: int | None = None
    study: str | None = None
    eta_s: float | None = None  # seconds left in this phase at its pace so far


class JobOut(BaseModel):
    id: int
    kind: str
    args: list[str]
    command: str  # the nas command it runs (without the server's storage)
    owner: str
    status: str
    exit_code: int | None
    created: str
    finished: str | None
    duration_s: float
    progress: Progress | None = None
    failure: str | None = None  # the last line of a failed job's log
    ray_address: str | None = None  # a Ray job on this cluster (the job's executor.address)
    ray_job: str | None = None  # its submission id there


class WhoAmI(BaseModel):
    name: str
    scope: Literal["read", "write"]


class Info(BaseModel):
    """What the page needs to know of the server."""

    version: str
    public_reads: bool
    dashboard_url: str | None
    options: dict[str, list[str]]  # config group -> the options a job may choose
