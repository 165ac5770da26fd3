"""Signed checkpoints the store issued: the ``checkpoints`` table (append-only), and the
RFC 3161 timestamps an authority gave them (``checkpoint_timestamps``)."""

from __future__ import annotations

from sqlalchemy import Connection, func, select

from chronoml.store import schema

CP = schema.checkpoints
TS = schema.checkpoint_timestamps


def add_checkpoint(conn: Connection, size: int, root: bytes, created_at: int, note: str) -> int:
    """Record a signed checkpoint the store issued (ids count 1, 2, 3... without gaps)."""
    last = conn.execute(select(func.max(CP.c.id))).scalar()
    cid = (last or 0) + 1
    conn.execute(CP.insert().values(id=cid, size=size, root=root, created_at=created_at, note=note))
    return cid


def add_timestamp(
    conn: Connection, checkpoint_id: int, authority: str, response: bytes, created_at: int
) -> None:
    """Keep the timestamp response an authority gave checkpoint ``checkpoint_id``."""
    conn.execute(
        TS.insert().values(
            checkpoint_id=checkpoint_id,
            authority=authority,
            response=response,
            created_at=created_at,
        )
    )


def timestamps_in(conn: Connection) -> dict[int, tuple[str, bytes, int]]:
    """Every stored timestamp by checkpoint id: (authority, DER response, created_at)."""
    q = select(TS.c.checkpoint_id, TS.c.authority, TS.c.response, TS.c.created_at)
    return {int(a): (str(b), bytes(c), int(d)) for a, b, c, d in conn.execute(q)}


def checkpoints_in(conn: Connection) -> list[tuple[int, int, bytes, int, str]]:
    """Every stored checkpoint: (id, size, root, created_at, note), oldest first."""
    q = select(CP.c.id, CP.c.size, CP.c.root, CP.c.created_at, CP.c.note).order_by(CP.c.id)
    return [(int(a), int(b), bytes(c), int(d), str(e)) for a, b, c, d, e in conn.execute(q)]


def latest_checkpoint(conn: Connection) -> tuple[int, int, bytes, int, str] | None:
    """The newest stored checkpoint, or None."""
    q = select(CP.c.id, CP.c.size, CP.c.root, CP.c.created_at, CP.c.note).order_by(CP.c.id.desc())
    r = conn.execute(q.limit(1)).first()
    return None if r is None else (int(r[0]), int(r[1]), bytes(r[2]), int(r[3]), str(r[4]))
