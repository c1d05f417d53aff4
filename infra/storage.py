"""The SQL storage every floor shares (studies, the latency table, tokens, jobs): URLs checked
and normalised, engines with the settings SQLite needs, and databases opened only when they
exist (commands that read never create one)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from infra.errors import UserError

SQLITE_BUSY_S = 30  # how long a write waits for another process's write (searches, jobs, runners)


def normalise_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 (installed with nas) unless psycopg2 is there."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        try:
            import psycopg2  # noqa: F401
        except ImportError:
            return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return url


def sqlite_path(url: str) -> Path | None:
    """The database file of an SQLite URL (None for in-memory databases and other kinds)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).expanduser().absolute()


def tune_sqlite(engine: Any) -> None:
    """SQLite only: write-ahead log, synced at checkpoints. Workers then read while one writes,
    and a trial's attribute writes cost about 3x less; a killed process loses nothing that was
    committed (a power cut can lose the last transactions). Not for databases on NFS."""
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return
    import sqlalchemy as sa

    def on_connect(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    engine.dispose()  # connections opened before this would keep the defaults
    sa.event.listen(engine, "connect", on_connect)


def check_storage_url(url: str, writing: bool = False) -> None:
    """Reject a malformed URL, an unknown database kind or a missing SQLite folder (and, when
    ``writing``, an SQLite database that could not be written) before anything is written."""

    from sqlalchemy.dialects import registry
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
        registry.load(parsed.get_backend_name() + "." + parsed.get_driver_name())
    except ArgumentError:
        raise UserError(f"storage: {url!r} is not an SQLAlchemy URL (e.g. sqlite:///nas.db)") from None
    except NoSuchModuleError:
        raise UserError(
            f"storage: {url!r} names no database kind SQLAlchemy knows (e.g. sqlite:///nas.db, "
            "postgresql://user@host/db)"
        ) from None
    path = sqlite_path(url)
    if path is not None:
        if not path.parent.is_dir():
            raise UserError(f"storage: folder {str(path.parent)!r} of {url!r} does not exist")
        if path.exists() and not path.is_file():
            raise UserError(f"storage: {str(path)!r} of {url!r} is not a file")
        if writing and not os.access(path if path.exists() else path.parent, os.W_OK):
            raise UserError(f"storage: cannot write {str(path)!r}")


def existing_database(url: str) -> str:
    """``url`` checked and normalised for a service over studies that exist: an SQLite database
    must be there (``nas search`` makes it). One-line UserError otherwise."""
    check_storage_url(url)
    path = sqlite_path(url)
    if path is not None and not path.is_file():
        raise UserError(f"storage: there is no database {str(path)!r} ({url}); run nas search first")
    return normalise_url(url)


def engine_kwargs(url: str) -> dict[str, Any]:
    """SQLAlchemy engine arguments: SQLite waits for a lock held by another process (a search, a
    job runner) instead of failing after its default 5 s."""
    from sqlalchemy.engine import make_url

    return (
        {"connect_args": {"timeout": SQLITE_BUSY_S}} if make_url(url).get_backend_name() == "sqlite" else {}
    )


def create_engine(url: str) -> Any:
    """An engine for ``url`` (normalised, SQLite waiting on locks)."""
    import sqlalchemy as sa

    return sa.create_engine(normalise_url(url), **engine_kwargs(url))
