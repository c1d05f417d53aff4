"""The page, its shipped assets, offline API docs, and what the page asks of the server."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from nas.schema import GROUP_KEYS
from web.auth import Caller
from web.models import Info, WhoAmI
from web.service import Reader, Served, caller

router = APIRouter()
STATIC = Path(__file__).resolve().parents[1] / "static"
VENDOR = {p.name: p for p in (STATIC / "vendor").iterdir() if p.suffix in (".js", ".css")}


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def index() -> HTMLResponse:
    """The page (its scripts are shipped with the package; it keeps the token in the browser)."""
    return HTMLResponse((STATIC / "index.html").read_text())


@router.get("/static/{filename}", include_in_schema=False)
def asset(filename: str) -> FileResponse:
    """A shipped script or stylesheet (a fixed set: nothing else is ever served)."""
    if filename not in VENDOR:
        raise HTTPException(404, "no such file")
    return FileResponse(VENDOR[filename], headers={"Cache-Control": "max-age=86400"})


@router.get("/docs", response_class=HTMLResponse, include_in_schema=False)
def docs() -> HTMLResponse:
    """Swagger UI from the shipped files (no CDN: the server may have no internet)."""
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="nas API",
        swagger_js_url="/static/swagger-ui-bundle.js",
        swagger_css_url="/static/swagger-ui.css",
        swagger_favicon_url="data:,",
    )


@router.get("/api/health", tags=["server"])
def health(s: Served) -> dict[str, bool]:
    s.storage.get_all_studies()  # the storage answers
    return {"ok": True}


@router.get("/api/info", response_model=Info, tags=["server"])
def info(s: Served, who: Reader) -> Info:
    try:
        ours = version("nas-efficient-transformers")
    except PackageNotFoundError:
        ours = "unknown"
    options = {g: s.policy.options(g) for g in GROUP_KEYS}
    return Info(version=ours, public_reads=s.public_reads, dashboard_url=s.dashboard_url, options=options)


@router.get("/api/whoami", response_model=WhoAmI, tags=["server"])
def whoami(who: Annotated[Caller | None, Depends(caller)], s: Served) -> WhoAmI:
    """The token's name and scope (``public`` / read where reads need no token)."""
    if who is None:
        if not s.public_reads:
            raise HTTPException(401, "a token is needed (nas token create)", {"WWW-Authenticate": "Bearer"})
        who = Caller("public", "read")
    return WhoAmI(name=who.name, scope=who.scope)
