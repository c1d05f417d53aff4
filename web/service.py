"""The server's parts, shared by every route (``app.state.service``), and who is calling."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import optuna
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from nas.records import STUDY_ATTR
from web.auth import Caller, TokenStore
from web.events import EventStreams
from web.jobs import JobStore
from web.measurements import MeasureQueue
from web.policy import JobPolicy
from web.queries import FrontCache, StudyQueries


@dataclass
class Service:
    """Everything a request may need; the state itself lives in the storage."""

    storage_url: str
    storage: optuna.storages.RDBStorage
    tokens: TokenStore
    measurements: MeasureQueue
    jobs: JobStore
    policy: JobPolicy
    export_root: Path
    workdir: Path
    public_reads: bool = False
    dashboard_url: str | None = None
    fronts: FrontCache = field(default_factory=FrontCache)
    events: EventStreams | None = None  # set by create_app (it reads jobs through the routes)

    def study_id(self, name: str) -> int:
        """The id of the study called exactly ``name`` (404 otherwise)."""
        try:
            return self.storage.get_study_id_from_name(name)
        except KeyError:
            raise HTTPException(404, f"no study {name!r}") from None

    def queries(self, name: str) -> StudyQueries:
        study_id = self.study_id(name)
        info = self.storage.get_study_user_attrs(study_id).get(STUDY_ATTR, {})
        return StudyQueries(self.storage.engine, study_id, list(info.get("objectives") or []))


def service(request: Request) -> Service:
    return request.app.state.service


bearer = HTTPBearer(
    auto_error=False, description="a token from `nas token create` (read, write or measure scope)"
)


def caller(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Caller | None:
    """The token's holder, None without a token; 401 for a malformed, unknown or revoked one."""
    challenge = {"WWW-Authenticate": "Bearer"}
    header = request.headers.get("authorization", "")
    if not header:
        return None
    if credentials is None or not credentials.credentials.strip():
        raise HTTPException(401, "expected Authorization: Bearer <token>", challenge)
    found = service(request).tokens.check(credentials.credentials.strip())
    if found is None:
        raise HTTPException(401, "unknown or revoked token", challenge)
    return found


def reader(request: Request, who: Annotated[Caller | None, Depends(caller)]) -> Caller:
    if who is None:
        if service(request).public_reads:
            return Caller("public", "read")
        raise HTTPException(401, "a token is needed (nas token create)", {"WWW-Authenticate": "Bearer"})
    if not who.may("read"):
        raise HTTPException(403, f"token {who.name!r} may only measure (a measurement agent's)")
    return who


def writer(who: Annotated[Caller | None, Depends(caller)]) -> Caller:
    if who is None:
        raise HTTPException(
            401, "a write token is needed (nas token create scope=write)", {"WWW-Authenticate": "Bearer"}
        )
    if not who.may("write"):
        raise HTTPException(403, f"token {who.name!r} may only {who.scope}")
    return who


def measurer(who: Annotated[Caller | None, Depends(caller)]) -> Caller:
    """A measurement agent: a ``measure`` token (its name is the target it measures for)."""
    if who is None:
        raise HTTPException(
            401,
            "a measure token is needed (nas token create token_name=TARGET scope=measure)",
            {"WWW-Authenticate": "Bearer"},
        )
    if not who.may("measure"):
        raise HTTPException(403, f"token {who.name!r} is not a measure token (scope=measure)")
    return who


Reader = Annotated[Caller, Depends(reader)]
Measurer = Annotated[Caller, Depends(measurer)]
Writer = Annotated[Caller, Depends(writer)]
Served = Annotated[Service, Depends(service)]
