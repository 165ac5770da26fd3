"""The outbox table: webhooks waiting to be delivered, written with what caused them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, and_, func, select, update

from chronoml.store import schema
from chronoml.store.database import Store
from chronoml.timeutil import iso, now_us

OB = schema.outbox


def enqueue(
    conn: Connection,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    now: int | None = None,
) -> int:
    """Add a webhook inside the caller's transaction; returns its id."""
    t = now if now is not None else now_us()
    result = conn.execute(
        OB.insert().values(
            kind="webhook",
            target=json.dumps({"url": url, "headers": dict(headers)}, sort_keys=True),
            payload=body.decode("utf-8"),
            created_at=t,
            attempts=0,
            next_attempt_at=t,
            delivered_at=None,
            last_error=None,
        )
    )
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def claim(store: Store, t: int, lease_until: int, batch: int) -> list[Any]:
    """Take up to ``batch`` rows due at ``t`` for one attempt: their next attempt moves to
    ``lease_until``, so another deliverer on the same store leaves them alone."""
    due = and_(OB.c.delivered_at.is_(None), OB.c.next_attempt_at <= t)

    def go(conn: Connection) -> list[Any]:
        rows = (
            conn.execute(select(OB).where(due).order_by(OB.c.next_attempt_at, OB.c.id).limit(batch))
            .mappings()
            .all()
        )
        claimed = []
        for r in rows:
            res = conn.execute(
                update(OB).where(OB.c.id == r["id"], due).values(next_attempt_at=lease_until)
            )
            if res.rowcount == 1:
                claimed.append(r)
        return claimed

    return store.write_retrying(go, "the outbox claim")


def release(store: Store, rows: list[Any]) -> None:
    """Give claimed rows back, due again as they were."""
    with store.write() as conn:
        for r in rows:
            conn.execute(
                update(OB)
                .where(OB.c.id == r["id"], OB.c.delivered_at.is_(None))
                .values(next_attempt_at=r["next_attempt_at"])
            )


def record_attempt(store: Store, row_id: int, values: Mapping[str, Any]) -> None:
    """Store the outcome of one attempt (attempts, last_error, delivered_at or next_attempt_at)."""
    with store.write() as conn:
        conn.execute(update(OB).where(OB.c.id == row_id).values(**values))


def status(store: Store, errors: int = 10) -> dict[str, Any]:
    """Pending and delivered counts, and the latest errors of undelivered rows."""
    with store.read() as conn:
        pending = conn.execute(
            select(func.count(), func.min(OB.c.created_at)).where(OB.c.delivered_at.is_(None))
        ).one()
        delivered = conn.execute(
            select(func.count(), func.max(OB.c.delivered_at)).where(OB.c.delivered_at.is_not(None))
        ).one()
        failing = (
            conn.execute(
                select(OB)
                .where(OB.c.delivered_at.is_(None), OB.c.last_error.is_not(None))
                .order_by(OB.c.id.desc())
                .limit(errors)
            )
            .mappings()
            .all()
        )
    return {
        "pending": int(pending[0]),
        "oldest_pending": iso(pending[1]) if pending[1] is not None else None,
        "delivered": int(delivered[0]),
        "last_delivered": iso(delivered[1]) if delivered[1] is not None else None,
        "errors": [
            {
                "id": r["id"],
                "url": json.loads(r["target"])["url"],
                "attempts": r["attempts"],
                "last_error": r["last_error"],
                "next_attempt_at": iso(r["next_attempt_at"]),
                "created_at": iso(r["created_at"]),
            }
            for r in failing
        ],
    }
