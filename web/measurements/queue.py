"""The measurement queue's operations (the tables are in web.measurements.tables); the module
docstring of web.measurements says how leases, expiry and agents' liveness work."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from typing import Any

import sqlalchemy as sa

from nas_agent.fingerprint import fingerprint_id
from web.measurements.tables import MAX_ATTEMPTS, OPEN, QueueError, agents, alive, metadata, models, requests


class MeasureQueue:
    """The queue in the storage at ``engine`` (its tables are created on first use)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        metadata.create_all(engine)

    # -- agents -------------------------------------------------------------------------------
    def register(
        self, target: str, token_name: str, fingerprint: dict, providers: list[str], host: str, lease_s: float
    ) -> dict[str, Any]:
        """A new agent of ``target``; refused (409) while agents of another fingerprint are alive
        there: figures of one target must all come from one kind of hardware."""
        now, agent_id, fid = time.time(), secrets.token_hex(16), fingerprint_id(fingerprint)
        with self.engine.begin() as conn:
            for row in conn.execute(sa.select(agents).where(agents.c.target == target)):
                if row.fingerprint_id != fid and alive(row, now):
                    raise QueueError(
                        409,
                        f"target {target!r} is measured by agents of hardware {row.fingerprint_id}, this "
                        f"agent's is {fid}: give it a target (and token) of its own",
                    )
            conn.execute(
                agents.insert().values(
                    id=agent_id,
                    target=target,
                    token_name=token_name,
                    host=host,
                    fingerprint=json.dumps(fingerprint, sort_keys=True),
                    fingerprint_id=fid,
                    providers=json.dumps(providers),
                    lease_s=lease_s,
                    registered=now,
                    last_seen=now,
                    gone=False,
                )
            )
        return {"agent_id": agent_id, "target": target, "fingerprint_id": fid}

    def _agent(self, conn: Any, target: str, agent_id: str, now: float) -> Any:
        """The live agent ``agent_id`` of ``target``, marked seen; 404 for an unknown or gone one
        (it registers again)."""
        row = conn.execute(
            sa.select(agents).where(agents.c.id == agent_id, agents.c.target == target)
        ).first()
        if row is None or row.gone:
            raise QueueError(404, f"no agent {agent_id!r} of target {target!r}: register again")
        conn.execute(agents.update().where(agents.c.id == agent_id).values(last_seen=now))
        return row

    def leave(self, target: str, agent_id: str) -> None:
        """The agent stops (Ctrl-C): its leases are queued again at once."""
        now = time.time()
        with self.engine.begin() as conn:
            self._agent(conn, target, agent_id, now)
            conn.execute(agents.update().where(agents.c.id == agent_id).values(gone=True))
            conn.execute(
                requests.update()
                .where(requests.c.agent_id == agent_id, requests.c.status == "leased")
                .values(status="queued", lease_id=None, agent_id=None, expires=None)
            )

    def target(self, target: str) -> dict[str, Any] | None:
        """The target's hardware (its latest agent's), its agents and its queue; None where no
        agent ever registered under that name."""
        now = time.time()
        with self.engine.begin() as conn:
            self._expire(conn, target, now)
            rows = conn.execute(
                sa.select(agents).where(agents.c.target == target).order_by(agents.c.registered)
            ).all()
            counts = dict(
                conn.execute(
                    sa.select(requests.c.status, sa.func.count())
                    .where(requests.c.target == target)
                    .group_by(requests.c.status)
                ).all()
            )
        if not rows:
            return None
        latest = rows[-1]
        living = [r for r in rows if alive(r, now)]
        return {
            "target": target,
            "fingerprint": json.loads(latest.fingerprint),
            "fingerprint_id": latest.fingerprint_id,
            "providers": json.loads(latest.providers),
            "alive": len(living),
            "last_seen_s": round(now - max(r.last_seen for r in rows), 3),
            "agents": [
                {
                    "id": r.id[:8],
                    "host": r.host,
                    "alive": alive(r, now),
                    "last_seen_s": round(now - r.last_seen, 3),
                    "fingerprint_id": r.fingerprint_id,
                }
                for r in rows
                if not r.gone
            ],
            "queue": {status: int(counts.get(status, 0)) for status in (*OPEN, "done", "failed")},
        }

    def targets(self) -> list[str]:
        with self.engine.connect() as conn:
            return sorted(conn.execute(sa.select(agents.c.target).distinct()).scalars())

    # -- leases -------------------------------------------------------------------------------
    def _expire(self, conn: Any, target: str, now: float) -> None:
        """Queue again the target's requests whose lease expired (or fail them after
        MAX_ATTEMPTS leases)."""
        expired = requests.c.status == "leased", requests.c.expires < now, requests.c.target == target
        if conn.execute(sa.select(requests.c.id).where(*expired).limit(1)).first() is None:
            return  # the common case: a read, no write (SQLite then takes no write lock)
        gone = f"{MAX_ATTEMPTS} leases expired: the agents died or hung measuring it"
        conn.execute(
            requests.update()
            .where(*expired, requests.c.attempts >= MAX_ATTEMPTS)
            .values(status="failed", error=gone, finished=now, lease_id=None)
        )
        conn.execute(
            requests.update()
            .where(*expired)
            .values(status="queued", lease_id=None, agent_id=None, expires=None)
        )

    def lease(self, target: str, agent_id: str) -> dict[str, Any] | None:
        """The oldest queued request of ``target`` leased to the agent, or None (nothing to do)."""
        now = time.time()
        with self.engine.begin() as conn:
            agent = self._agent(conn, target, agent_id, now)
            self._expire(conn, target, now)
            candidates = conn.execute(
                sa.select(requests)
                .where(requests.c.target == target, requests.c.status == "queued")
                .order_by(requests.c.id)
                .limit(5)
            ).all()
            for row in candidates:
                lease_id = secrets.token_urlsafe(24)
                expires = min(now + agent.lease_s, now + row.max_lease_s)
                taken = conn.execute(
                    requests.update()
                    .where(requests.c.id == row.id, requests.c.status == "queued")
                    .values(
                        status="leased",
                        lease_id=lease_id,
                        agent_id=agent_id,
                        leased_at=now,
                        expires=expires,
                        attempts=row.attempts + 1,
                    )
                )
                if taken.rowcount == 1:
                    return {
                        "lease_id": lease_id,
                        "request_id": row.id,
                        "model_sha256": row.model_sha256,
                        "input_shape": json.loads(row.input_shape),
                        "settings": json.loads(row.settings),
                        "expires_in_s": round(expires - now, 3),
                    }
        return None

    def _held(self, conn: Any, target: str, agent_id: str, lease_id: str, now: float) -> Any:
        """The request the agent holds under ``lease_id``: 404 for a lease nobody was given,
        409 for one that expired (the request went back to the queue) or is not this agent's."""
        self._agent(conn, target, agent_id, now)
        self._expire(conn, target, now)
        row = conn.execute(
            sa.select(requests).where(requests.c.lease_id == lease_id, requests.c.target == target)
        ).first()
        if row is None:
            raise QueueError(404, "no such lease: it expired (the request was queued again) or never was")
        if row.agent_id != agent_id or row.status != "leased":
            raise QueueError(409, "the lease is not this agent's")
        return row

    def renew(self, target: str, agent_id: str, lease_id: str) -> float:
        """Extend the lease by the agent's ``lease_s`` (never past ``max_lease_s`` in all);
        seconds left."""
        now = time.time()
        with self.engine.begin() as conn:
            row = self._held(conn, target, agent_id, lease_id, now)
            agent = conn.execute(sa.select(agents.c.lease_s).where(agents.c.id == agent_id)).scalar_one()
            expires = min(now + agent, row.leased_at + row.max_lease_s)
            conn.execute(requests.update().where(requests.c.id == row.id).values(expires=expires))
        return round(expires - now, 3)

    def complete(
        self, target: str, agent_id: str, lease_id: str, model_sha256: str, fid: str, result: dict
    ) -> int:
        """Take the figure of the leased request: refused (422) for another model than the one
        leased or (409) for hardware other than the target's. Returns the request id."""
        now = time.time()
        with self.engine.begin() as conn:
            row = self._held(conn, target, agent_id, lease_id, now)
            if model_sha256 != row.model_sha256:
                raise QueueError(422, "model_sha256: not the model this lease asked for")
            agent_fid = conn.execute(
                sa.select(agents.c.fingerprint_id).where(agents.c.id == agent_id)
            ).scalar_one()
            if fid != agent_fid:
                raise QueueError(409, f"fingerprint_id: {fid!r} is not the hardware this agent registered")
            conn.execute(
                requests.update()
                .where(requests.c.id == row.id)
                .values(
                    status="done",
                    result=json.dumps(result),
                    fingerprint_id=fid,
                    finished=now,
                    lease_id=None,
                    expires=None,
                )
            )
            self._drop_unused_model(conn, row.model_sha256)
        return row.id

    def fail(self, target: str, agent_id: str, lease_id: str, error: str) -> None:
        """The agent could not measure the model (ONNX Runtime refused it, a provider is
        missing): the request fails with its message."""
        now = time.time()
        with self.engine.begin() as conn:
            row = self._held(conn, target, agent_id, lease_id, now)
            conn.execute(
                requests.update()
                .where(requests.c.id == row.id)
                .values(status="failed", error=error[:2000], finished=now, lease_id=None, expires=None)
            )
            self._drop_unused_model(conn, row.model_sha256)

    # -- models and requests ------------------------------------------------------------------
    def put_model(self, sha256: str, data: bytes) -> None:
        """Store a model under its SHA-256 (422 when the bytes do not hash to it)."""
        if hashlib.sha256(data).hexdigest() != sha256:
            raise QueueError(422, "sha256: the body does not hash to the name it is stored under")
        with self.engine.begin() as conn:
            if conn.execute(sa.select(models.c.size).where(models.c.sha256 == sha256)).first() is None:
                try:
                    row = dict(sha256=sha256, data=data, size=len(data), created=time.time())
                    conn.execute(models.insert().values(**row))
                except sa.exc.IntegrityError:
                    pass  # stored meanwhile by another request: the same bytes

    def model(self, target: str, agent_id: str, sha256: str) -> bytes:
        """A model the agent holds a lease on (404 otherwise)."""
        now = time.time()
        with self.engine.begin() as conn:
            self._agent(conn, target, agent_id, now)
            leased = conn.execute(
                sa.select(requests.c.id).where(
                    requests.c.agent_id == agent_id,
                    requests.c.model_sha256 == sha256,
                    requests.c.status == "leased",
                )
            ).first()
            data = conn.execute(sa.select(models.c.data).where(models.c.sha256 == sha256)).scalar()
        if leased is None or data is None:
            raise QueueError(404, f"no model {sha256[:12]} leased to this agent")
        return data

    def submit(
        self,
        target: str,
        model_sha256: str,
        input_shape: list[int],
        settings: dict,
        max_lease_s: float,
        who: str,
    ) -> int:
        """Queue a model (stored before with ``put_model``: 409 otherwise) for ``target``'s agents
        (404 where none ever registered)."""
        with self.engine.begin() as conn:
            if conn.execute(sa.select(agents.c.id).where(agents.c.target == target).limit(1)).first() is None:
                raise QueueError(404, f"no agent ever registered as target {target!r}")
            if conn.execute(sa.select(models.c.size).where(models.c.sha256 == model_sha256)).first() is None:
                raise QueueError(409, "model_sha256: no such model stored; PUT it first")
            return conn.execute(
                requests.insert().values(
                    target=target,
                    model_sha256=model_sha256,
                    input_shape=json.dumps(input_shape),
                    settings=json.dumps(settings, sort_keys=True),
                    max_lease_s=max_lease_s,
                    status="queued",
                    attempts=0,
                    created=time.time(),
                    submitted_by=who,
                )
            ).inserted_primary_key[0]

    def request(self, target: str, request_id: int) -> dict[str, Any]:
        """A request's state (and figure once done), with how many agents of the target are
        alive and when one was last seen: what a waiting requester needs."""
        now = time.time()
        with self.engine.begin() as conn:
            self._expire(conn, target, now)
            row = conn.execute(
                sa.select(requests).where(requests.c.id == request_id, requests.c.target == target)
            ).first()
            seen = conn.execute(sa.select(agents).where(agents.c.target == target)).all()
        if row is None:
            raise QueueError(404, f"no request {request_id} for target {target!r}")
        return {
            "id": row.id,
            "target": target,
            "status": row.status,
            "attempts": row.attempts,
            "model_sha256": row.model_sha256,
            "fingerprint_id": row.fingerprint_id,
            "result": json.loads(row.result) if row.result else None,
            "error": row.error,
            "agents_alive": sum(alive(a, now) for a in seen),
            "last_seen_s": round(now - max(a.last_seen for a in seen), 3) if seen else None,
        }

    def cancel(self, target: str, request_id: int) -> None:
        """Withdraw an open request (a requester that gave up waiting); its lease ends."""
        with self.engine.begin() as conn:
            row = conn.execute(
                sa.select(requests).where(requests.c.id == request_id, requests.c.target == target)
            ).first()
            if row is None:
                raise QueueError(404, f"no request {request_id} for target {target!r}")
            conn.execute(
                requests.update()
                .where(requests.c.id == request_id, requests.c.status.in_(OPEN))
                .values(status="cancelled", finished=time.time(), lease_id=None, expires=None)
            )
            self._drop_unused_model(conn, row.model_sha256)

    @staticmethod
    def _drop_unused_model(conn: Any, sha256: str) -> None:
        """Delete a model no open request needs any more."""
        still = conn.execute(
            sa.select(requests.c.id).where(requests.c.model_sha256 == sha256, requests.c.status.in_(OPEN))
        ).first()
        if still is None:
            conn.execute(models.delete().where(models.c.sha256 == sha256))
