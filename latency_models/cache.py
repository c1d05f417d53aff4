"""Latency records in SQL: one row per (architecture or block, profiler settings, hardware).

The table ``nas_latency`` lives in the study's database beside Optuna's tables, so every study,
process and machine sharing that database shares the measurements. A row is claimed
(``measuring``) before the measurement and filled in after it: a second process wanting the same
figure waits for the first instead of measuring again. A claim whose owner died (older than
``stale_after_s``, or a dead process on this host) is taken over.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections.abc import Callable

import sqlalchemy as sa

from infra.storage import normalise_url, tune_sqlite
from latency_models._base import LatencyProfiler, LatencyResult, hardware_for, profiler_key

METADATA = sa.MetaData()
TABLE = sa.Table(
    "nas_latency",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("subject_key", sa.String(64), nullable=False),  # ArchConfig.key() or "block:<sha1>"
    sa.Column("profiler_key", sa.String(40), nullable=False),  # sha1 of name, unit and settings
    sa.Column("hardware_id", sa.String(16), nullable=False),
    sa.Column("status", sa.String(10), nullable=False),  # measuring | done
    sa.Column("owner", sa.String(200), nullable=False),  # host:pid that claimed the row
    sa.Column("claimed_at", sa.Float, nullable=False),
    sa.Column("seconds", sa.Float),  # cost of the measurement (export + session + runs)
    sa.Column("subject", sa.Text),  # the architecture (JSON) or block key
    sa.Column("profiler", sa.Text),  # name, unit, settings (JSON)
    sa.Column("hardware", sa.Text),  # fingerprint (JSON)
    sa.Column("result", sa.Text),  # LatencyResult (JSON)
    sa.UniqueConstraint("subject_key", "profiler_key", "hardware_id", name="uq_nas_latency"),
)


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _owner_dead(owner: str) -> bool:
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class LatencyCache:
    """Measure-once store of profiler results in the SQL database at ``url``."""

    def __init__(self, url: str, stale_after_s: float = 900.0) -> None:

        url = normalise_url(url)
        connect_args = {"timeout": 60} if sa.engine.make_url(url).get_backend_name() == "sqlite" else {}
        self.engine = sa.create_engine(url, connect_args=connect_args, pool_pre_ping=True)
        tune_sqlite(self.engine)
        self.stale_after_s = stale_after_s
        self.hits = self.misses = 0
        for attempt in range(5):  # several processes may create it at once
            try:
                METADATA.create_all(self.engine, checkfirst=True)
                break
            except (sa.exc.OperationalError, sa.exc.ProgrammingError) as e:
                # SQLite locked; PostgreSQL: a concurrent CREATE TABLE won between the check and
                # ours (DuplicateTable): the next check finds its table
                lost_race = isinstance(e, sa.exc.OperationalError) or "already exists" in str(e)
                if attempt == 4 or not lost_race:
                    raise
                time.sleep(0.2 * (attempt + 1))
            except sa.exc.IntegrityError:  # PostgreSQL: a concurrent CREATE TABLE won (pg_type)
                break

    def close(self) -> None:
        """Close the connections (an SQLite database in WAL mode then keeps no side files)."""
        self.engine.dispose()

    def lookup(self, profiler: LatencyProfiler, subject_key: str) -> LatencyResult | None:
        hardware_id, _ = hardware_for(profiler)
        with self.engine.connect() as conn:
            row = conn.execute(self._select(subject_key, _sha1(profiler_key(profiler)), hardware_id)).first()
        return LatencyResult.from_dict(json.loads(row.result)) if row and row.status == "done" else None

    def count(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(sa.func.count()).select_from(TABLE).where(TABLE.c.status == "done")
            ).scalar_one()

    def measure(
        self,
        profiler: LatencyProfiler,
        subject_key: str,
        subject: str,
        measure: Callable[[], LatencyResult],
    ) -> tuple[LatencyResult, bool]:
        """The stored figure for ``subject_key``, or ``measure()``'s (then stored, unless it is
        flagged as not quiet: a figure taken under load is returned, never kept for others).
        Returns (result, True when it came from the table)."""
        pkey_text = profiler_key(profiler)
        pkey = _sha1(pkey_text)
        hardware_id, hardware = hardware_for(profiler)
        owner = _owner()
        while True:
            with self.engine.connect() as conn:
                row = conn.execute(self._select(subject_key, pkey, hardware_id)).first()
            if row is not None and row.status == "done":
                self.hits += 1
                return LatencyResult.from_dict(json.loads(row.result)), True
            if row is None:
                try:
                    with self.engine.begin() as conn:
                        conn.execute(
                            TABLE.insert().values(
                                subject_key=subject_key,
                                profiler_key=pkey,
                                hardware_id=hardware_id,
                                status="measuring",
                                owner=owner,
                                claimed_at=time.time(),
                                subject=subject,
                                profiler=pkey_text,
                                hardware=json.dumps(hardware, sort_keys=True),
                            )
                        )
                    break
                except sa.exc.IntegrityError:
                    pass  # another process claimed it first: wait for its figure
            elif time.time() - row.claimed_at > self.stale_after_s or _owner_dead(row.owner):
                with self.engine.begin() as conn:
                    taken = conn.execute(
                        TABLE.update()
                        .where(TABLE.c.id == row.id, TABLE.c.owner == row.owner)
                        .where(TABLE.c.status == "measuring")
                        .values(owner=owner, claimed_at=time.time())
                    )
                if taken.rowcount == 1:
                    break
            time.sleep(0.1)
        start = time.perf_counter()
        try:
            result = measure()
        except BaseException:
            with self.engine.begin() as conn:  # release the claim so others can try
                conn.execute(self._where(TABLE.delete(), subject_key, pkey, hardware_id, owner))
            raise
        seconds = time.perf_counter() - start
        if not result.quiet:  # never measured quietly: not kept, measured again later
            with self.engine.begin() as conn:
                conn.execute(self._where(TABLE.delete(), subject_key, pkey, hardware_id, owner))
            self.misses += 1
            return result, False
        with self.engine.begin() as conn:
            conn.execute(
                self._where(TABLE.update(), subject_key, pkey, hardware_id, owner).values(
                    status="done", result=json.dumps(result.to_dict()), seconds=round(seconds, 4)
                )
            )
        self.misses += 1
        return result, False

    def _select(self, subject_key: str, pkey: str, hardware_id: str):
        return sa.select(TABLE).where(
            TABLE.c.subject_key == subject_key,
            TABLE.c.profiler_key == pkey,
            TABLE.c.hardware_id == hardware_id,
        )

    @staticmethod
    def _where(statement, subject_key: str, pkey: str, hardware_id: str, owner: str):
        return statement.where(
            TABLE.c.subject_key == subject_key,
            TABLE.c.profiler_key == pkey,
            TABLE.c.hardware_id == hardware_id,
            TABLE.c.owner == owner,
        )


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()
