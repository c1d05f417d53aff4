"""The tables of the measurement queue (web.measurements): agents, models, requests."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

MAX_ATTEMPTS = 3  # leases of one request before it fails (agents died or hung measuring it)
OPEN = ("queued", "leased")

metadata = sa.MetaData()
agents = sa.Table(
    "nas_agents",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("target", sa.String(200), nullable=False, index=True),
    sa.Column("token_name", sa.String(200), nullable=False),
    sa.Column("host", sa.String(200), nullable=False),
    sa.Column("fingerprint", sa.Text, nullable=False),  # JSON
    sa.Column("fingerprint_id", sa.String(16), nullable=False),
    sa.Column("providers", sa.Text, nullable=False),  # JSON list
    sa.Column("lease_s", sa.Float, nullable=False),
    sa.Column("registered", sa.Float, nullable=False),
    sa.Column("last_seen", sa.Float, nullable=False),
    sa.Column("gone", sa.Boolean, nullable=False, default=False),
)
models = sa.Table(
    "nas_measure_models",
    metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("created", sa.Float, nullable=False),
)
requests = sa.Table(
    "nas_measure_requests",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("target", sa.String(200), nullable=False, index=True),
    sa.Column("model_sha256", sa.String(64), nullable=False),
    sa.Column("input_shape", sa.Text, nullable=False),  # JSON list, without the batch axis
    sa.Column("settings", sa.Text, nullable=False),  # JSON: nas_agent.measure.OrtSettings
    sa.Column("max_lease_s", sa.Float, nullable=False),
    sa.Column("status", sa.String(10), nullable=False),  # queued | leased | done | failed | cancelled
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("lease_id", sa.String(64), unique=True),
    sa.Column("agent_id", sa.String(32)),
    sa.Column("leased_at", sa.Float),
    sa.Column("expires", sa.Float),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("finished", sa.Float),
    sa.Column("submitted_by", sa.String(200), nullable=False),
    sa.Column("fingerprint_id", sa.String(16)),  # of the agent that measured it
    sa.Column("result", sa.Text),  # JSON: rounds, loads, quiet, seconds
    sa.Column("error", sa.Text),
)


class QueueError(Exception):
    """A request the queue refuses: ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def alive(row: Any, now: float) -> bool:
    return not row.gone and row.last_seen >= now - row.lease_s
