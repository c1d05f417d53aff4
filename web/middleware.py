"""Requests as the routes should see them: path segments kept apart, bodies bounded.

*Exact names.* Starlette routes on the decoded path, so a study named ``a/b`` (``a%2Fb`` on the
wire) would be split into two segments and never found. ``ExactSegments`` decodes each segment
of the raw path on its own and writes ``%`` and ``/`` inside it back as ``%25`` / ``%2F``; the
``name`` convertor (``{name:name}`` in a route) undoes exactly that. Any name Optuna allows
round-trips, and a route never matches a name loosely.

*Bounded bodies.* ``BodyLimit`` answers 413 to a request body above the limit, whether it says
its length (``Content-Length``) or streams it, before a route reads it. A few routes take larger
bodies (an ONNX model for measurement agents): ``larger`` gives their own limits.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote

from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException


class NameConvertor(Convertor):
    """One path segment as ExactSegments left it, decoded to the exact name."""

    regex = "[^/]+"

    def convert(self, value: str) -> str:
        return unquote(value)

    def to_string(self, value: str) -> str:
        return value.replace("%", "%25").replace("/", "%2F")


register_url_convertor("name", NameConvertor())


class ExactSegments:
    """ASGI middleware: ``scope["path"]`` rebuilt from ``raw_path`` one segment at a time."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        raw = scope.get("raw_path")
        if scope["type"] == "http" and raw:
            segments = raw.split(b"?", 1)[0].decode("latin-1").split("/")
            decoded = [unquote(s).replace("%", "%25").replace("/", "%2F") for s in segments]
            scope = dict(scope, path="/".join(decoded))
        await self.app(scope, receive, send)


class BodyLimit:
    """ASGI middleware: 413 for a body of more than ``max_bytes``, or of the limit of the first
    ``(method, path pattern, bytes)`` of ``larger`` that matches the request."""

    def __init__(self, app: Any, max_bytes: int, larger: Sequence[tuple[str, str, int]] = ()) -> None:
        self.app, self.default = app, max_bytes
        self.larger = [(method, re.compile(pattern), limit) for method, pattern, limit in larger]

    def _limit(self, scope: dict) -> int:
        for method, pattern, limit in self.larger:
            if scope.get("method") == method and pattern.fullmatch(scope.get("path", "")):
                return limit
        return self.default

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self._limit(scope)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > max_bytes):
            await _too_large(send, max_bytes)
            return
        seen = 0
        started = False

        async def bounded_receive() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > max_bytes:
                    raise _TooLarge(413, f"request body over {max_bytes:,} bytes")
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, bounded_receive, tracking_send)
        except _TooLarge:
            if not started:
                await _too_large(send, max_bytes)


class _TooLarge(HTTPException):
    """Raised while a route reads the body: an HTTPException, so FastAPI answers it as such."""


async def _too_large(send: Any, limit: int) -> None:
    body = json.dumps({"detail": f"request body over {limit:,} bytes"}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
