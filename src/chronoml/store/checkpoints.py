"""Signed checkpoints the store issued: the ``checkpoints`` table (append-only)."""

from __future__ import annotations

from sqlalchemy import Connection, func, select

from chronoml.store import schema

CP = schema.checkpoints


def add_checkpoint(conn: Connection, size: int, root: bytes, created_at: int, note: str) -> None:
    """Record a signed checkpoint the store issued (ids count 1, 2, 3... without gaps)."""
    last = conn.execute(select(func.max(CP.c.id))).scalar()
    conn.execute(
        CP.insert().values(
            id=(last or 0) + 1, size=size, root=root, created_at=created_at, note=note
        )
    )


def checkpoints_in(conn: Connection) -> list[tuple[int, int, bytes, int, str]]:
    """Every stored checkpoint: (id, size, root, created_at, note), oldest first."""
    q = select(CP.c.id, CP.c.size, CP.c.root, CP.c.created_at, CP.c.note).order_by(CP.c.id)
    return [(int(a), int(b), bytes(c), int(d), str(e)) for a, b, c, d, e in conn.execute(q)]


def latest_checkpoint(conn: Connection) -> tuple[int, int, bytes, int, str] | None:
    """The newest stored checkpoint, or None."""
    q = select(CP.c.id, CP.c.size, CP.c.root, CP.c.created_at, CP.c.note).order_by(CP.c.id.desc())
    r = conn.execute(q.limit(1)).first()
    return None if r is None else (int(r[0]), int(r[1]), bytes(r[2]), int(r[3]), str(r[4]))
