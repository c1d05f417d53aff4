"""SQL helpers shared by the latency table and the study storage: URLs and SQLite settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any


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
