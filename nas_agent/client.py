"""A small HTTP client of the service's measurement API (``/api/agents``), on the standard
library alone (urllib): what the agent and the remote profiler (latency_models.remote) call."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

TOKEN_ENV = "NAS_TOKEN"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class ServerError(Exception):
    """The server answered with an error status: ``status`` and its ``detail``."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status, self.detail = status, detail


class Unreachable(Exception):
    """No answer from the server (refused, timed out, no route)."""


def read_token(token: str | None, token_file: str | None, key: str = "token") -> str | None:
    """The token given, else the first line of ``token_file``, else ``$NAS_TOKEN`` (a token on
    a command line shows in ``ps``: prefer the file or the variable)."""
    if token:
        return token.strip()
    if token_file:
        try:
            return Path(token_file).expanduser().read_text().strip().splitlines()[0].strip()
        except (OSError, IndexError):
            raise ValueError(f"{key}_file: cannot read a token from {token_file!r}") from None
    return os.environ.get(TOKEN_ENV) or None


def check_server(server: str, key: str = "server") -> str:
    """``server`` as a base URL (http or https, a host, no query); ValueError naming ``key``."""
    parsed = urllib.parse.urlsplit(server)
    if parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.query or parsed.fragment:
        raise ValueError(f"{key}: expected the service's URL, e.g. http://host:8080, got {server!r}")
    return server.rstrip("/")


def quoted(name: str) -> str:
    """One path segment, exactly (a target name may hold any character)."""
    return urllib.parse.quote(name, safe="")


class Client:
    """Requests to the service at ``server`` with bearer ``token``; ``timeout`` per request."""

    def __init__(self, server: str, token: str | None, timeout: float = 30.0) -> None:
        self.server, self.token, self.timeout = check_server(server), token, timeout
        host = urllib.parse.urlsplit(self.server).hostname or ""
        # A proxy from the environment never sees loopback traffic (nor the token).
        handlers = [urllib.request.ProxyHandler({})] if host in LOOPBACK else []
        self._opener = urllib.request.build_opener(*handlers)

    def call(self, method: str, path: str, body: Any = None, data: bytes | None = None) -> Any:
        """``method path`` with a JSON ``body`` or raw ``data``; the JSON answer (raw bytes for
        an octet-stream answer, None for an empty one). Raises ServerError or Unreachable."""
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        elif data is not None:
            headers["Content-Type"] = "application/octet-stream"
        request = urllib.request.Request(self.server + path, data=data, headers=headers, method=method)
        try:
            with self._opener.open(request, timeout=self.timeout) as answer:
                payload = answer.read()
                kind = answer.headers.get("Content-Type", "")
        except urllib.error.HTTPError as e:
            raise ServerError(e.code, _detail(e)) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise Unreachable(f"cannot reach {self.server}: {reason}") from None
        if kind.startswith("application/octet-stream"):
            return payload
        return json.loads(payload) if payload else None


def _detail(error: urllib.error.HTTPError) -> str:
    try:
        detail = json.loads(error.read() or b"{}").get("detail")
    except (ValueError, AttributeError, OSError):
        detail = None
    if isinstance(detail, list):  # a validation error: the first problem
        detail = "; ".join(str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in detail[:2])
    return str(detail or error.reason)
