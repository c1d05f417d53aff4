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
