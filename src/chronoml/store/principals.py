"""API tokens (their hashes) and the log of reads of raw decision inputs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from chronoml.errors import Refused, StoreError
from chronoml.store import schema
from chronoml.store.database import Store

T = schema.api_tokens
R = schema.input_reads


TOKEN_FIELDS = (
    "name",
    "role",
    "endpoints",
    "secret_sha256",
    "created_at",
    "created_by",
    "expires_at",
    "revoked_at",
)


def add_token(store: Store, values: dict[str, Any]) -> None:
    """Store a new token row; a name already used (even by a revoked token) is refused."""
    try:
        with store.write() as conn:
            conn.execute(T.insert().values(**values))
    except IntegrityError:
        raise Refused(
            f"a token named {values['name']!r} exists or existed: names are never reused", "name"
        ) from None


def tokens_with_hash(store: Store, secret_sha256: str) -> list[dict[str, Any]]:
    """The token rows whose secret hashes to ``secret_sha256`` (one, or none)."""
    cols = [T.c[f] for f in TOKEN_FIELDS]
    try:
        with store.lookup() as conn:
            rows = conn.execute(select(*cols).where(T.c.secret_sha256 == secret_sha256)).all()
    except DBAPIError as exc:  # the store is down: no one can be told who they are
        raise StoreError(
            f"decision log unavailable: its store cannot check the token ({exc.orig})"
        ) from None
    return [dict(r._mapping) for r in rows]


def tokens(store: Store) -> list[dict[str, Any]]:
    cols = [T.c[f] for f in TOKEN_FIELDS]
    with store.read() as conn:
        rows = conn.execute(select(*cols).order_by(T.c.created_at, T.c.name)).all()
    return [dict(r._mapping) for r in rows]


def count_tokens(store: Store) -> int:
    with store.read() as conn:
        return len(conn.execute(select(T.c.name)).all())


def revoke_token(store: Store, name: str, by: str, now: int) -> bool:
    """Revoke ``name`` at ``now``; False if there is no such token (or it was revoked)."""
    with store.write() as conn:
        res = conn.execute(
            update(T)
            .where(T.c.name == name, T.c.revoked_at.is_(None))
            .values(revoked_at=now, revoked_by=by)
        )
    return bool(res.rowcount)


def record_reads(
    store: Store, principal: str, decision_ids: Sequence[str], route: str, now: int
) -> None:
    """Log that ``principal`` read the raw inputs of ``decision_ids`` through ``route``."""
    if not decision_ids:
        return
    with store.write() as conn:
        conn.execute(
            R.insert(),
            [
                {"ts": now, "principal": principal, "decision_id": d, "route": route}
                for d in decision_ids
            ],
        )


def reads(
    store: Store,
    *,
    decision_id: str | None = None,
    principal: str | None = None,
    since: int | None = None,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    """Reads of raw inputs, newest first."""
    q = select(R)
    if decision_id is not None:
        q = q.where(R.c.decision_id == decision_id)
    if principal is not None:
        q = q.where(R.c.principal == principal)
    if since is not None:
        q = q.where(R.c.ts >= since)
    q = q.order_by(R.c.ts.desc(), R.c.id.desc()).limit(limit)
    with store.read() as conn:
        return [dict(r._mapping) for r in conn.execute(q).all()]
