"""Live job progress as server-sent events, cheap and bounded.

Each stream is an async generator on the server's event loop (it holds no thread while it
waits, so open streams never starve the other routes of Starlette's thread pool), streams of one
job share one read of it a second, and the number of open streams is bounded per caller and in
all. A stream whose client vanished before it started is forgotten after a few silent seconds.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool

KEEPALIVE_S = 15.0  # a comment line this often while nothing changes (proxies, dead clients)


class TooManyStreams(Exception):
    """More streams than the caller or the server may hold open."""


class EventStreams:
    """Streams of ``snapshot(job_id)`` (the job as a JSON-able dict, read in a thread): one
    ``data:`` event now and at each change, checked every ``interval`` seconds, until
    ``ended(job)`` or ``max_seconds``."""

    def __init__(
        self,
        snapshot: Callable[[int], dict[str, Any]],
        ended: Callable[[dict[str, Any]], bool],
        interval: float = 1.0,
        per_caller: int = 16,
        total: int = 256,
        max_seconds: float = 3600.0,
    ) -> None:
        self.snapshot, self.ended, self.interval = snapshot, ended, interval
        self.per_caller, self.total, self.max_seconds = per_caller, total, max_seconds
        self._live: dict[int, tuple[str, float]] = {}  # stream -> (caller, last beat)
        self._ids = itertools.count()
        self._reads: dict[int, tuple[float, dict[str, Any]]] = {}  # job -> (when, snapshot)
        self._locks: dict[int, asyncio.Lock] = {}

    def open(self, job_id: int, caller: str) -> AsyncIterator[str]:
        """A new stream (call on the event loop); raises TooManyStreams when full."""
        now = time.monotonic()
        stale = [s for s, (_, beat) in self._live.items() if now - beat > 3 * self.interval + KEEPALIVE_S]
        for s in stale:
            del self._live[s]
        if len(self._live) >= self.total:
            raise TooManyStreams(f"the server holds {self.total} open event streams; try again later")
        if sum(c == caller for c, _ in self._live.values()) >= self.per_caller:
            raise TooManyStreams(f"token {caller!r} holds {self.per_caller} open event streams; close one")
        stream = next(self._ids)
        self._live[stream] = (caller, now)
        return self._events(stream, caller, job_id)

    def open_count(self) -> int:
        return len(self._live)

    async def _read(self, job_id: int) -> dict[str, Any]:
        """The job, read at most once per interval however many streams follow it."""
        lock = self._locks.setdefault(job_id, asyncio.Lock())
        async with lock:
            when, job = self._reads.get(job_id, (float("-inf"), {}))
            if time.monotonic() - when >= self.interval:
                job = await run_in_threadpool(self.snapshot, job_id)
                self._reads[job_id] = (time.monotonic(), job)
            return job

    async def _events(self, stream: int, caller: str, job_id: int) -> AsyncIterator[str]:
        started = last_sent = time.monotonic()
        last = None
        try:
            while True:
                job = await self._read(job_id)
                now = time.monotonic()
                self._live[stream] = (caller, now)
                if job != last:
                    yield f"data: {json.dumps(job)}\n\n"
                    last, last_sent = job, now
                elif now - last_sent >= KEEPALIVE_S:
                    yield ": keepalive\n\n"
                    last_sent = now
                if self.ended(job) or now - started >= self.max_seconds:
                    return
                await asyncio.sleep(self.interval)
        finally:
            self._live.pop(stream, None)
            if not self._live:  # nothing follows any job: forget what was read
                self._reads.clear()
                self._locks.clear()
