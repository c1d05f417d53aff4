"""Measurement agents and their queue (web.measurements): agents on target devices register
under a target name with a ``measure`` token of that name, lease ONNX models to time and post the
figures; a search (``profiler=remote``, with a write token) stores a model, queues a request and
polls it until its figure is there."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request, Response
from starlette.concurrency import run_in_threadpool

from web.auth import Caller
from web.measurements import QueueError
from web.models import (
    AgentIn,
    AgentOut,
    LeaseIn,
    LeaseOut,
    MeasureFailureIn,
    MeasureRequestIn,
    MeasureRequestOut,
    MeasureResultIn,
    RenewOut,
    TargetOut,
)
from web.routes.studies import Id
from web.service import Measurer, Reader, Served, Writer

router = APIRouter(prefix="/api/agents", tags=["agents"])
MAX_MODEL_BYTES = 256 * 1024**2  # an ONNX model stored for agents (the app's limit for this route)

Target = Annotated[str, Path(min_length=1, max_length=200)]
Sha256 = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")]
LeaseId = Annotated[str, Path(min_length=1, max_length=64)]


def _answer(call, *args):
    try:
        return call(*args)
    except QueueError as e:
        raise HTTPException(e.status, str(e)) from None


def _own(who: Caller, target: str) -> None:
    """A measure token measures for the target named as the token, nothing else."""
    if who.name != target:
        raise HTTPException(403, f"token {who.name!r} measures for target {who.name!r} only")


@router.get("", response_model=list[str])
def list_targets(s: Served, who: Reader) -> list[str]:
    """The names agents registered under."""
    return s.measurements.targets()


@router.get("/{target:name}", response_model=TargetOut)
def get_target(target: Target, s: Served, who: Reader) -> TargetOut:
    """A target's hardware fingerprint, its agents (alive or not) and its queue."""
    found = s.measurements.target(target)
    if found is None:
        raise HTTPException(404, f"no agent ever registered as target {target!r}")
    return TargetOut(**found)


@router.post("/{target:name}/agents", response_model=AgentOut, status_code=201)
def register(target: Target, body: AgentIn, s: Served, who: Measurer) -> AgentOut:
    """An agent starts: its hardware fingerprint, providers and lease time."""
    _own(who, target)
    args = (target, who.name, body.fingerprint, body.providers, body.host, body.lease_s)
    return AgentOut(**_answer(s.measurements.register, *args))


@router.delete("/{target:name}/agents/{agent_id}", status_code=204)
def leave(target: Target, agent_id: LeaseId, s: Served, who: Measurer) -> Response:
    """An agent stops: its leases go back to the queue at once."""
    _own(who, target)
    _answer(s.measurements.leave, target, agent_id)
    return Response(status_code=204)


@router.post("/{target:name}/lease", response_model=LeaseOut)
def lease(target: Target, body: LeaseIn, s: Served, who: Measurer) -> LeaseOut:
    """The oldest queued request of the target, leased to this agent (``lease`` null: none)."""
    _own(who, target)
    return LeaseOut(lease=_answer(s.measurements.lease, target, body.agent_id))


@router.post("/{target:name}/leases/{lease_id}/renew", response_model=RenewOut)
def renew(target: Target, lease_id: LeaseId, body: LeaseIn, s: Served, who: Measurer) -> RenewOut:
    """Keep a lease while measuring (409/404: it expired; stop measuring that model)."""
    _own(who, target)
    return RenewOut(expires_in_s=_answer(s.measurements.renew, target, body.agent_id, lease_id))


@router.post("/{target:name}/leases/{lease_id}/result", response_model=MeasureRequestOut)
def post_result(
    target: Target, lease_id: LeaseId, body: MeasureResultIn, s: Served, who: Measurer
) -> MeasureRequestOut:
    """The figure of a leased model. Refused for a lease nobody was given or that expired
    (404), another agent's (409), another model (422) or other hardware (409)."""
    _own(who, target)
    result = body.model_dump(exclude={"agent_id", "model_sha256", "fingerprint_id"})
    args = (target, body.agent_id, lease_id, body.model_sha256, body.fingerprint_id, result)
    request_id = _answer(s.measurements.complete, *args)
    return MeasureRequestOut(**s.measurements.request(target, request_id))


@router.post("/{target:name}/leases/{lease_id}/failure", status_code=204)
def post_failure(
    target: Target, lease_id: LeaseId, body: MeasureFailureIn, s: Served, who: Measurer
) -> Response:
    """The agent could not measure the leased model: the request fails with ``error``."""
    _own(who, target)
    _answer(s.measurements.fail, target, body.agent_id, lease_id, body.error)
    return Response(status_code=204)


@router.get(
    "/{target:name}/models/{sha256}",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}, "description": "the ONNX model"}},
)
def get_model(target: Target, sha256: Sha256, agent_id: str, s: Served, who: Measurer) -> Response:
    """A model this agent holds a lease on (``agent_id`` in the query)."""
    _own(who, target)
    data = _answer(s.measurements.model, target, agent_id[:64], sha256)
    return Response(data, media_type="application/octet-stream")


@router.put(
    "/{target:name}/models/{sha256}",
    status_code=204,
    openapi_extra={"requestBody": {"content": {"application/octet-stream": {"schema": {"type": "string"}}}}},
)
async def put_model(target: Target, sha256: Sha256, request: Request, s: Served, who: Writer) -> Response:
    """Store an ONNX model (the body, at most MAX_MODEL_BYTES) under its SHA-256."""
    data = await request.body()
    await run_in_threadpool(_answer, s.measurements.put_model, sha256, data)
    return Response(status_code=204)


@router.post("/{target:name}/requests", response_model=MeasureRequestOut, status_code=201)
def submit(target: Target, body: MeasureRequestIn, s: Served, who: Writer) -> MeasureRequestOut:
    """Queue a stored model for the target's agents, to be timed with ``settings``."""
    settings = body.settings.model_dump()
    args = (target, body.model_sha256, body.input_shape, settings, body.max_lease_s, who.name)
    request_id = _answer(s.measurements.submit, *args)
    return MeasureRequestOut(**s.measurements.request(target, request_id))


@router.get("/{target:name}/requests/{request_id}", response_model=MeasureRequestOut)
def get_request(target: Target, request_id: Id, s: Served, who: Writer) -> MeasureRequestOut:
    """A request's state, its figure once done, and whether any agent of the target is alive."""
    return MeasureRequestOut(**_answer(s.measurements.request, target, request_id))


@router.delete("/{target:name}/requests/{request_id}", status_code=204)
def cancel(target: Target, request_id: Id, s: Served, who: Writer) -> Response:
    """Withdraw a request (a requester that stopped waiting)."""
    _answer(s.measurements.cancel, target, request_id)
    return Response(status_code=204)
