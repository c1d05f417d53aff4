"""The study storage URL as the service opens it (without the torch-importing layers below)."""

from __future__ import annotations

from pathlib import Path


def service_url(url: str) -> str:
    """``url`` checked and ready for SQLAlchemy: ``postgresql://`` means psycopg 3 (installed with
    nas) unless psycopg2 is there; an SQLite database must exist (the service serves studies that
    ``nas search`` made). Raises ValueError with a one-line reason."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ValueError(f"storage: {url!r} is not an SQLAlchemy URL (e.g. sqlite:///nas.db)") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        if not Path(parsed.database).is_file():
            raise ValueError(
                f"storage: there is no database {parsed.database!r} ({url}); run nas search first"
            )
    if parsed.drivername == "postgresql":
        try:
            import psycopg2  # noqa: F401
        except ImportError:
            return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return url


SQLITE_BUSY_S = 30  # how long a write waits for another process's write (jobs, runners, searches)


def engine_kwargs(url: str) -> dict:
    """SQLAlchemy engine arguments for the service's connections: SQLite waits for a lock held by
    another process (a search, a job runner) instead of failing after its default 5 s."""
    from sqlalchemy.engine import make_url

    return (
        {"connect_args": {"timeout": SQLITE_BUSY_S}} if make_url(url).get_backend_name() == "sqlite" else {}
    )
