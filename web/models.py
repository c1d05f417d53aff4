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
    scope: Literal["read", "write", "measure"]


class Info(BaseModel):
    """What the page needs to know of the server."""

    version: str
    public_reads: bool
    dashboard_url: str | None
    options: dict[str, list[str]]  # config group -> the options a job may choose


# Measurement agents (web.routes.agents)
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Short = Annotated[str, StringConstraints(max_length=200)]
FingerprintValue = Short | int | float | bool | None


class AgentIn(BaseModel):
    """An agent registering: the hardware its figures hold for."""

    fingerprint: dict[Name, FingerprintValue] = Field(max_length=50)
    providers: list[Name] = Field(default_factory=list, max_length=20)
    host: Short = ""
    lease_s: float = Field(default=30.0, ge=0.5, le=600, description="renewed every third of it")


class AgentOut(BaseModel):
    agent_id: str
    target: str
    fingerprint_id: str


class LeaseIn(BaseModel):
    agent_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]


class Lease(BaseModel):
    lease_id: str
    request_id: int
    model_sha256: str
    input_shape: list[int]
    settings: dict[str, Any]
    expires_in_s: float


class LeaseOut(BaseModel):
    lease: Lease | None


class RenewOut(BaseModel):
    expires_in_s: float


class TimingIn(BaseModel):
    """How the model is to be timed (nas_agent.measure.OrtSettings)."""

    model_config = {"extra": "forbid"}
    threads: int = Field(default=1, ge=1, le=256)
    batch_size: int = Field(default=1, ge=1, le=65536)
    warmup: int = Field(default=20, ge=0, le=100_000)
    runs: int = Field(default=100, ge=1, le=100_000)
    rounds: int = Field(default=5, ge=1, le=1000)
    providers: list[Name] = Field(
        default_factory=lambda: ["CPUExecutionProvider"], min_length=1, max_length=8
    )
    pin_cpu: int | Literal["auto"] | None = "auto"
    max_background_load: float = Field(default=0.25, ge=0, allow_inf_nan=False)
    retries: int = Field(default=3, ge=0, le=100)


class MeasureRequestIn(BaseModel):
    model_sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    input_shape: list[Annotated[int, Field(ge=1, le=100_000)]] = Field(min_length=1, max_length=8)
    settings: TimingIn = Field(default_factory=TimingIn)
    max_lease_s: float = Field(default=600.0, gt=0, le=86_400, description="longest one lease may be held")


class MeasureRequestOut(BaseModel):
    id: int
    target: str
    status: Literal["queued", "leased", "done", "failed", "cancelled"]
    attempts: int
    model_sha256: str
    fingerprint_id: str | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    agents_alive: int
    last_seen_s: float | None = None


Ms = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class MeasureResultIn(BaseModel):
    """An agent's figure: milliseconds per call in rounds (as the local profiler's), the load it
    saw, whether it was quiet."""

    agent_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    model_sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    fingerprint_id: Annotated[str, StringConstraints(min_length=1, max_length=16)]
    rounds: list[Annotated[list[Ms], Field(min_length=1, max_length=100_000)]] = Field(
        min_length=1, max_length=3000
    )
    background_load: float = Field(ge=0, allow_inf_nan=False)
    machine_load: float = Field(ge=0, allow_inf_nan=False)
    quiet: bool
    seconds: float = Field(ge=0, allow_inf_nan=False)


class MeasureFailureIn(BaseModel):
    agent_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    error: Annotated[str, StringConstraints(min_length=1, max_length=2000)]


class AgentSeen(BaseModel):
    id: str
    host: str
    alive: bool
    last_seen_s: float
    fingerprint_id: str


class TargetOut(BaseModel):
    target: str
    fingerprint: dict[str, Any]
    fingerprint_id: str
    providers: list[str]
    alive: int
    last_seen_s: float
    agents: list[AgentSeen]
    queue: dict[str, int]
