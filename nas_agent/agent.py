"""The measurement agent's loop: register with the service under a target name, lease a model,
time it (nas_agent.measure, the local profiler's discipline), post the figure, again.

While it measures, a thread renews the lease every third of ``lease_s``; if the server says the
lease is gone (it expired, the request was withdrawn) the figure is dropped. An agent that is
killed simply stops renewing: its lease expires and another agent of the target takes the
request. The server being away (restarting) is waited out; a refused token ends the agent.
"""

from __future__ import annotations

import hashlib
import socket
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from nas_agent.client import Client, ServerError, Unreachable, quoted
from nas_agent.fingerprint import fingerprint_id, onnxruntime_fingerprint
from nas_agent.measure import OrtSettings, measure_onnx


class AgentStopped(Exception):
    """The agent cannot go on (token refused, hardware of another kind registered): one line."""


@dataclass
class AgentConfig:
    """``server``/``token``: the service and a ``measure`` token; ``target``: the name to measure
    for (the token's name; None: take it from the token); ``lease_s``: a lease lapses when not
    renewed this long (and the agent counts as gone); ``poll_s``: how often an idle agent asks
    for work; ``max_requests``: stop after this many measurements (None: run until stopped)."""

    server: str
    token: str
    target: str | None = None
    lease_s: float = 30.0
    poll_s: float = 1.0
    max_requests: int | None = None
    host: str = field(default_factory=socket.gethostname)

    def __post_init__(self) -> None:
        if not 0.5 <= self.lease_s <= 600:
            raise ValueError(f"lease_s: expected 0.5 to 600 seconds, got {self.lease_s}")
        if not 0 < self.poll_s <= self.lease_s / 3:
            raise ValueError(f"poll_s: expected more than 0 and at most lease_s / 3, got {self.poll_s}")
        if self.max_requests is not None and self.max_requests < 1:
            raise ValueError(f"max_requests: expected a count >= 1 or null, got {self.max_requests}")


class Renewer(threading.Thread):
    """Renews a lease every ``every`` seconds until stopped; ``lost`` once the server says the
    lease is no longer held."""

    def __init__(self, renew: Callable[[], object], every: float) -> None:
        super().__init__(daemon=True)
        self.renew, self.every = renew, every
        self.stopped, self.lost = threading.Event(), False

    def run(self) -> None:
        while not self.stopped.wait(self.every):
            try:
                self.renew()
            except ServerError as e:
                if e.status in (404, 409):
                    self.lost = True
                    return
            except Unreachable:
                pass  # the server restarts: try again next time


class Agent:
    """One agent process (``run()``); ``log`` gets one line per event."""

    def __init__(self, config: AgentConfig, log: Callable[[str], None] = print) -> None:
        self.config, self.log = config, log
        self.client = Client(config.server, config.token)
        self.fingerprint = onnxruntime_fingerprint()
        self.fingerprint_id = fingerprint_id(self.fingerprint)
        self.target = config.target
        self.agent_id: str | None = None
        self.measured = 0

    def _path(self, tail: str = "") -> str:
        return f"/api/agents/{quoted(self.target or '')}{tail}"

    def register(self) -> None:
        import onnxruntime as ort

        if self.target is None:
            self.target = self.client.call("GET", "/api/whoami")["name"]
        body = {
            "fingerprint": self.fingerprint,
            "providers": ort.get_available_providers(),
            "host": self.config.host[:200],
            "lease_s": self.config.lease_s,
        }
        try:
            answer = self.client.call("POST", self._path("/agents"), body)
        except ServerError as e:
            raise AgentStopped(f"the server refused to register the agent: {e}") from None
        self.agent_id = answer["agent_id"]
        self.log(
            f"agent {self.agent_id[:8]} of target {self.target!r} on {self.config.server} "
            f"(hardware {self.fingerprint_id}: {self.fingerprint['cpu']}, onnxruntime "
            f"{self.fingerprint['onnxruntime']})"
        )

    def leave(self) -> None:
        """Tell the server this agent stops (its lease, if any, is queued again at once)."""
        if self.agent_id is None:
            return
        try:
            self.client.call("DELETE", self._path(f"/agents/{self.agent_id}"))
        except (ServerError, Unreachable):
            pass
        self.agent_id = None

    def run(self) -> int:
        """Serve the target's queue until stopped (or ``max_requests`` measurements). Returns 0."""
        pause = self.config.poll_s
        while self.config.max_requests is None or self.measured < self.config.max_requests:
            try:
                if self.agent_id is None:
                    self.register()
                if not self.serve_one():
                    time.sleep(self.config.poll_s)
                pause = self.config.poll_s
            except Unreachable as e:
                self.log(f"{e}; trying again in {pause:.0f} s")
                time.sleep(pause)
                pause = min(2 * pause, 10.0)
            except ServerError as e:
                if e.status in (401, 403):
                    raise AgentStopped(f"the server refused the token: {e.detail}") from None
                if e.status == 404 and "register again" in e.detail:
                    self.agent_id = None  # the server forgot this agent (its storage was reset)
                    continue
                self.log(f"the server answered {e}; going on")
                time.sleep(self.config.poll_s)
        return 0

    def serve_one(self) -> bool:
        """Lease, measure and post one request; False when the queue had nothing."""
        lease = self.client.call("POST", self._path("/lease"), {"agent_id": self.agent_id})["lease"]
        if lease is None:
            return False
        lease_id, sha = lease["lease_id"], lease["model_sha256"]
        base = self._path(f"/leases/{lease_id}")
        body = {"agent_id": self.agent_id}
        renewer = Renewer(lambda: self.client.call("POST", f"{base}/renew", body), self.config.lease_s / 3)
        renewer.start()
        start = time.perf_counter()
        try:
            model = self.client.call("GET", self._path(f"/models/{sha}?agent_id={self.agent_id}"))
            if hashlib.sha256(model).hexdigest() != sha:
                raise ValueError("the model's bytes do not hash to the SHA-256 it was leased under")
            settings = OrtSettings.from_dict(lease["settings"])
            timed = measure_onnx(model, tuple(lease["input_shape"]), settings)
        except (ServerError, Unreachable):
            raise
        except Exception as e:  # the model or its settings: the request fails, the agent goes on
            renewer.stopped.set()
            message = f"{type(e).__name__}: {e}"[:2000]
            self.log(f"request {lease['request_id']} failed: {message}")
            self._post(f"{base}/failure", body | {"error": message})
            return True
        finally:
            renewer.stopped.set()
        if renewer.lost:
            self.log(f"request {lease['request_id']}: the lease expired meanwhile; figure dropped")
            return True
        seconds = time.perf_counter() - start
        figure = body | {
            "model_sha256": sha,
            "fingerprint_id": self.fingerprint_id,
            "rounds": timed.rounds,
            "background_load": round(timed.load.near, 3),
            "machine_load": round(timed.load.machine, 3),
            "quiet": timed.quiet,
            "seconds": round(seconds, 4),
        }
        if self._post(f"{base}/result", figure):
            self.measured += 1
            median = statistics.median(statistics.median(r) for r in timed.rounds)
            self.log(
                f"request {lease['request_id']} ({sha[:12]}): {median:.4f} ms "
                f"in {seconds:.1f} s{'' if timed.quiet else ' (never quiet: flagged)'}"
            )
        return True

    def _post(self, path: str, body: dict) -> bool:
        """POST a figure or a failure; False (logged) where the lease is gone meanwhile."""
        try:
            self.client.call("POST", path, body)
            return True
        except ServerError as e:
            if e.status in (401, 403):
                raise
            self.log(f"the server refused the answer ({e}); figure dropped")
            return False
