"""Latency measured on a target device: ``profiler=remote profiler.target=NAME``.

Each candidate is exported to ONNX here (the same ``to_onnx`` as the local profiler's), stored
on the service (``nas serve``, ``server``) and queued for the agents registered there as
``target`` (``nas-agent`` on the device: ONNX Runtime alone, the local profiler's timing
discipline); the profiler waits for the figure. The figure holds for the target's hardware
fingerprint (``hardware()``), so it lands in the latency table under that fingerprint: a target
measured once serves every later study, whichever machine searches.

An agent that dies or hangs never stops a search: its lease expires and another agent takes the
request; where no agent of the target is alive for ``agent_wait_s`` the measurement fails with a
message saying so (and later ones fail at once until an agent is back), and no figure waits
longer than ``timeout_s``.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from infra.errors import UserError
from infra.locks import computing
from latency_models._base import LatencyResult, register_profiler
from latency_models._timing import ModuleProfiler
from latency_models.hardware import fingerprint_id
from latency_models.onnx_io import to_onnx
from nas_agent.client import Client, ServerError, Unreachable, quoted, read_token
from nas_agent.measure import OrtSettings


class NoAgent(RuntimeError):
    """No agent of the target is alive (or the server is away): the measurement cannot be had."""


@register_profiler("remote")
class RemoteProfiler(ModuleProfiler):
    """Measured by agents of ``target`` through the service at ``server`` (a write token:
    ``token``, ``token_file`` or ``$NAS_TOKEN``). The timing settings are the onnxruntime
    profiler's and mean the same on the target (``pin_cpu`` names a core of the target); the
    others say how to wait, not what is measured, and are not part of the settings that key a
    figure (nor is the target's name: its hardware fingerprint is)."""

    name = "remote"
    unit = "ms"
    measured = True

    def __init__(
        self,
        target: str,
        server: str = "http://127.0.0.1:8080",
        token: str | None = None,
        token_file: str | None = None,
        threads: int = 1,
        batch_size: int = 1,
        image_size: int | None = None,
        warmup: int = 20,
        runs: int = 100,
        rounds: int = 5,
        providers: tuple[str, ...] = ("CPUExecutionProvider",),
        pin_cpu: int | str | None = "auto",
        max_background_load: float = 0.25,
        retries: int = 3,
        poll_s: float = 0.5,
        agent_wait_s: float = 60.0,
        timeout_s: float = 3600.0,
        max_lease_s: float = 600.0,
    ) -> None:
        if not isinstance(target, str) or not target or len(target) > 200:
            raise ValueError(f"profiler.target: expected the name agents registered under, got {target!r}")
        if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
            raise ValueError(f"profiler.image_size: expected a positive int or null, got {image_size!r}")
        for key, value in (("poll_s", poll_s), ("agent_wait_s", agent_wait_s), ("timeout_s", timeout_s)):
            if not value > 0:
                raise ValueError(f"profiler.{key}: expected a number of seconds > 0, got {value!r}")
        if not 0 < max_lease_s <= 86_400:
            raise ValueError(f"profiler.max_lease_s: expected 0 to 86400 seconds, got {max_lease_s!r}")
        try:
            self.timing = OrtSettings(
                threads=threads,
                batch_size=batch_size,
                warmup=warmup,
                runs=runs,
                rounds=min(rounds, runs) if isinstance(rounds, int) and isinstance(runs, int) else rounds,
                providers=list(providers),
                pin_cpu=None if pin_cpu in ("none", "null") else pin_cpu,
                max_background_load=max_background_load,
                retries=retries,
            )
            self.token = read_token(token, token_file)
            self._client = Client(server, self.token)
        except ValueError as e:
            raise ValueError(f"profiler.{e}") from None
        self.target, self.server, self.image_size = target, self._client.server, image_size
        self.poll_s, self.agent_wait_s, self.timeout_s, self.max_lease_s = (
            poll_s,
            agent_wait_s,
            timeout_s,
            max_lease_s,
        )
        self.batch_size = batch_size
        self._hardware: tuple[str, dict[str, Any]] | None = None
        self._no_agent = False  # no agent was alive at the last wait: fail at once until one is

    def settings(self) -> dict[str, Any]:
        return self.timing.to_dict() | {"image_size": self.image_size}

    def _path(self, tail: str = "") -> str:
        return f"/api/agents/{quoted(self.target)}{tail}"

    def hardware(self) -> tuple[str, dict[str, Any]]:
        """(id, fingerprint) of the target's hardware, as its agents registered it (asked once)."""
        if self._hardware is None:
            try:
                found = self._client.call("GET", self._path())
            except Unreachable as e:
                raise UserError(f"profiler.server: {e}") from None
            except ServerError as e:
                if e.status == 404:
                    raise UserError(
                        f"profiler.target: no agent ever registered as {self.target!r} with {self.server}; "
                        f"start one on the device: nas-agent server={self.server} token_file=FILE "
                        f"(a token from: nas token create token_name={self.target} scope=measure)"
                    ) from None
                if e.status in (401, 403):
                    raise UserError(f"profiler.token: {self.server} refused it: {e.detail}") from None
                raise UserError(f"profiler.server: {self.server} answered {e}") from None
            info = found["fingerprint"]
            missing = [p for p in self.timing.providers if p not in found.get("providers", [])]
            if missing:
                raise UserError(
                    f"profiler.providers: {missing} not available on target {self.target!r}; "
                    f"available: {found.get('providers')}"
                )
            self._hardware = (fingerprint_id(info), info)
        return self._hardware

    def measure_module(self, model: Any, input_shape: tuple[int, ...]) -> LatencyResult:
        """Export ``model`` (input ``(batch_size, *input_shape)``) and have the target time it."""
        with computing():  # export: never beside a measurement on this machine
            data = to_onnx(model, input_shape)
        return self.measure_onnx(data, input_shape)

    def measure_onnx(self, data: bytes, input_shape: tuple[int, ...]) -> LatencyResult:
        """The target's figure for the ONNX model ``data``."""
        hardware_id, _ = self.hardware()
        sha = hashlib.sha256(data).hexdigest()
        body = {
            "model_sha256": sha,
            "input_shape": list(input_shape),
            "settings": self.timing.to_dict(),
            "max_lease_s": self.max_lease_s,
        }
        request = self._submit(sha, data, body)
        done = self._wait(request["id"])
        if done["fingerprint_id"] != hardware_id:
            raise RuntimeError(
                f"target {self.target!r}: measured on hardware {done['fingerprint_id']}, not {hardware_id} "
                "(its agents changed hardware during the search: restart it)"
            )
        figure = done["result"]
        return LatencyResult.from_rounds(
            figure["rounds"],
            unit="ms",
            n_warmup=self.timing.warmup,
            batch_size=self.timing.batch_size,
            input_shape=tuple(input_shape),
            background_load=figure["background_load"],
            machine_load=figure["machine_load"],
            quiet=figure["quiet"],
        )

    def _submit(self, sha: str, data: bytes, body: dict[str, Any]) -> dict[str, Any]:
        for attempt in range(3):  # the model may be dropped between PUT and POST (its last request ended)
            try:
                self._client.call("PUT", self._path(f"/models/{sha}"), data=data)
                return self._client.call("POST", self._path("/requests"), body)
            except ServerError as e:
                if e.status != 409 or attempt == 2:
                    raise RuntimeError(
                        f"target {self.target!r}: {self.server} refused the request: {e}"
                    ) from None
            except Unreachable as e:
                raise NoAgent(f"target {self.target!r}: {e}") from None
        raise AssertionError("unreachable")

    def _wait(self, request_id: int) -> dict[str, Any]:
        """Poll the request until it is done; NoAgent / TimeoutError / RuntimeError otherwise
        (the request is then withdrawn)."""
        start = time.monotonic()
        alone_since: float | None = None  # no agent alive (or no server) since then
        while True:
            now = time.monotonic()
            try:
                state = self._client.call("GET", self._path(f"/requests/{request_id}"))
            except Unreachable as e:
                state, why = None, str(e)
            if state is not None and state["status"] == "done":
                self._no_agent = False
                return state
            if state is not None and state["status"] in ("failed", "cancelled"):
                what = f"request {request_id} {state['status']}"
                raise RuntimeError(f"target {self.target!r}: {what}: {state['error']}")
            if state is not None and state["agents_alive"]:
                alone_since, self._no_agent = None, False
            else:
                if state is not None:
                    seen = f"last seen {state['last_seen_s']:.0f} s ago"
                    why = f"no agent of target {self.target!r} alive ({seen})"
                alone_since = now if alone_since is None else alone_since
                if self._no_agent or now - alone_since >= self.agent_wait_s:
                    self._no_agent = True
                    self._withdraw(request_id)
                    waited = f"waited {now - alone_since:.0f} s (profiler.agent_wait_s={self.agent_wait_s:g})"
                    start_one = f"start one: nas-agent server={self.server} token_file=FILE"
                    raise NoAgent(f"{why}; {waited}; {start_one}")
            if now - start > self.timeout_s:
                self._withdraw(request_id)
                raise TimeoutError(
                    f"target {self.target!r}: no figure for request {request_id} within "
                    f"profiler.timeout_s={self.timeout_s:g} s"
                )
            time.sleep(self.poll_s)

    def _withdraw(self, request_id: int) -> None:
        try:
            self._client.call("DELETE", self._path(f"/requests/{request_id}"))
        except (ServerError, Unreachable):
            pass
