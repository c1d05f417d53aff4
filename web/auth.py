"""Bearer tokens for the service, stored hashed in the study storage (table ``nas_tokens``).

A token is shown once, when it is created (``nas token create``); the storage keeps only its
SHA-256, its name, its scope and whether it was revoked. Scopes: ``read`` (every GET) and
``write`` (also starting, cancelling and exporting, and asking agents for measurements), and
``measure``: a measurement agent's, which does nothing but measure for the target named as the
token (web.routes.agents); it reads no study. Nothing here logs a token.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import secrets
from dataclasses import dataclass

import sqlalchemy as sa

SCOPES = ("read", "write", "measure")
LADDER = ("read", "write")  # each of these may do what the ones before it may
PREFIX = "nas_"
metadata = sa.MetaData()
tokens = sa.Table(
    "nas_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("digest", sa.String(64), nullable=False, unique=True),
    sa.Column("scope", sa.String(10), nullable=False),
    sa.Column("created", sa.DateTime, nullable=False),
    sa.Column("revoked", sa.DateTime, nullable=True),
)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Caller:
    """Who made a request: a token's name and scope (``public`` for an anonymous read)."""

    name: str
    scope: str

    def may(self, scope: str) -> bool:
        if "measure" in (scope, self.scope):  # off the ladder: it grants measuring, and only that
            return scope == self.scope
        return LADDER.index(self.scope) >= LADDER.index(scope)


class TokenStore:
    """Tokens in the storage at ``engine`` (the table is created on first use)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        metadata.create_all(engine, tables=[tokens])

    def create(self, name: str, scope: str) -> str:
        if scope not in SCOPES:
            raise ValueError(f"scope: expected one of {', '.join(SCOPES)}, got {scope!r}")
        if not name:
            raise ValueError("token_name: give the token a name (who or what uses it)")
        token = PREFIX + secrets.token_urlsafe(32)
        now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        with self.engine.begin() as connection:
            connection.execute(
                tokens.insert().values(name=name, digest=digest(token), scope=scope, created=now)
            )
        return token

    def revoke(self, name: str) -> int:
        """Revokes every live token called ``name``; returns how many."""
        now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        with self.engine.begin() as connection:
            result = connection.execute(
                tokens.update().where(tokens.c.name == name, tokens.c.revoked.is_(None)).values(revoked=now)
            )
        return result.rowcount

    def list(self) -> list[dict]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(tokens.c.name, tokens.c.scope, tokens.c.created, tokens.c.revoked)
            )
            return [dict(row._mapping) for row in rows]

    def check(self, token: str) -> Caller | None:
        """The caller a presented token stands for, or None (unknown or revoked)."""
        if not token.startswith(PREFIX):
            return None
        wanted = digest(token)
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(tokens.c.name, tokens.c.scope, tokens.c.digest, tokens.c.revoked).where(
                    tokens.c.digest == wanted
                )
            ).first()
        if row is None or row.revoked is not None or not hmac.compare_digest(row.digest, wanted):
            return None
        return Caller(row.name, row.scope)
