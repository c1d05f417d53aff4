"""The ``nas_jobs`` table: one row per job, in the study storage (a restarted server finds them)."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()
jobs = sa.Table(
    "nas_jobs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("args", sa.Text, nullable=False),  # JSON list of overrides
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),  # running, done, failed, cancelled
    sa.Column("pid", sa.Integer, nullable=True),  # a local job's runner (its process group)
    sa.Column("exit_code", sa.Integer, nullable=True),
    sa.Column("log", sa.Text, nullable=False),
    sa.Column("created", sa.DateTime, nullable=False),
    sa.Column("finished", sa.DateTime, nullable=True),
    sa.Column("ray_address", sa.Text, nullable=True),  # set: a Ray job on that cluster
    sa.Column("ray_job", sa.String(100), nullable=True),  # its submission id
)


def add_missing_columns(engine: sa.Engine) -> None:
    """A ``nas_jobs`` table of an earlier version gains the columns added since."""
    have = {c["name"] for c in sa.inspect(engine).get_columns("nas_jobs")}
    with engine.begin() as connection:
        for column in jobs.columns:
            if column.name not in have:
                kind = column.type.compile(dialect=engine.dialect)
                connection.execute(sa.text(f"ALTER TABLE nas_jobs ADD COLUMN {column.name} {kind}"))
