"""The service's HTTP API (FastAPI; OpenAPI schema at ``/openapi.json``, docs at ``/docs``).

Every figure is read from the study storage (SQLite or PostgreSQL) on each request, so the server
holds no state of its own and can be restarted at any time. This package never imports torch:
exports and jobs run as ``nas`` processes, and trial figures are read straight from Optuna's
tables. Routes are grouped by resource in ``web.routes``; ``web.policy`` decides what a write
token may start.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import optuna
from fastapi import FastAPI

from infra.storage import engine_kwargs
from web.auth import TokenStore
from web.events import EventStreams
from web.jobs import JobStore
from web.measurements import MeasureQueue
from web.middleware import BodyLimit, ExactSegments
from web.policy import MAX_BODY_BYTES, JobPolicy
from web.routes import agents, exports, jobs, pages, studies
from web.service import Service

# Bodies larger than MAX_BODY_BYTES: an ONNX model stored for agents, an agent's figure.
LARGER_BODIES = (
    ("PUT", r"/api/agents/[^/]+/models/[0-9a-f]{64}", agents.MAX_MODEL_BYTES),
    ("POST", r"/api/agents/[^/]+/leases/[^/]+/result", 4 * 1024**2),
)


def create_app(
    storage_url: str,
    public_reads: bool = False,
    export_dir: str | Path = "export",
    workdir: str | Path = ".",
    data_dirs: Sequence[str | Path] = (),
    clusters: Sequence[str] = (),
    config_dirs: Sequence[str] = (),
    dashboard_url: str | None = None,
) -> FastAPI:
    """The API over the study storage at ``storage_url``. ``public_reads``: GETs need no token.
    Exports go under ``export_dir``; jobs run in ``workdir`` (where the cache is) and may also
    read datasets under ``data_dirs`` and use the Ray ``clusters``; ``config_dirs`` are the
    server's extra config folders (``--config-dir``)."""
    storage = optuna.storages.RDBStorage(storage_url, engine_kwargs=engine_kwargs(storage_url))
    work = Path(workdir).resolve()
    export_root = Path(export_dir) if Path(export_dir).is_absolute() else work / export_dir
    export_root = export_root.resolve()
    job_store = JobStore(storage_url, work / ".nas_jobs", work, tuple(config_dirs))
    policy = JobPolicy(
        workdir=work,
        export_dir=export_root,
        data_dirs=tuple(Path(d).resolve() for d in data_dirs),
        clusters=tuple(clusters),
        config_dirs=tuple(str(Path(d).resolve()) for d in config_dirs),
    )
    service = Service(
        storage_url=storage_url,
        storage=storage,
        tokens=TokenStore(storage.engine),
        measurements=MeasureQueue(storage.engine),
        jobs=job_store,
        policy=policy,
        export_root=export_root,
        workdir=work,
        public_reads=public_reads,
        dashboard_url=dashboard_url,
    )
    service.events = EventStreams(
        lambda job_id: jobs.job_out(service, job_store.get(job_id)).model_dump(), jobs.ended
    )
    app = FastAPI(
        title="nas",
        version="1",
        description="Neural architecture search service: studies, trials, fronts, exports, jobs, "
        "and the queue of measurement agents on target devices.",
        docs_url=None,  # pages.docs serves Swagger UI from shipped files
        redoc_url=None,
    )
    app.state.service = service
    for module in (pages, studies, exports, jobs, agents):
        app.include_router(module.router)
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES, larger=LARGER_BODIES)
    app.add_middleware(ExactSegments)
    return app
