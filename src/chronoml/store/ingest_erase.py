"""Erasing the inputs of decisions held in ingest blocks, as erasure does for rows.

A block decision's inputs become NaN of the same width in the block's packed
inputs, its text inputs and context None in the block's lists, and its row is
flagged erased; its 16 bytes of the block item's salts become zero (the
evidence guard allows exactly that change of a ``decision_block`` item). Its
leaf and commitment stay, so every proof still verifies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
from sqlalchemy import select, update

from chronoml.ids import block_of
from chronoml.store import schema
from chronoml.store.ingest import COLUMNS, HASH, ITEM_KIND, SALT, from_stored
from chronoml.store.ingest_reads import stored_in

IB = schema.ingest_blocks
ITEMS = schema.evidence_items
_COLS = [IB.c[c] for c in COLUMNS]

# (id, ts, endpoint, variant, model_version, layout, shadow, num, txt, context, salt,
# commitment): the fields of ``privacy.Target``
Candidate = tuple[Any, ...]
# blocks read per retention pass (each up to 65,535 decisions)
BLOCKS_PER_PASS = 64


def _candidates(conn: Any, stored: Sequence[tuple[Any, ...]]) -> list[Candidate]:
    """The decisions of these blocks whose inputs are not erased yet."""
    if not stored:
        return []
    q = select(ITEMS.c.ref, ITEMS.c.salt, ITEMS.c.commitment).where(
        ITEMS.c.kind == ITEM_KIND, ITEMS.c.ref.in_([r[0] for r in stored])
    )
    items = {str(ref): (bytes(s or b""), bytes(c or b"")) for ref, s, c in conn.execute(q)}
    out: list[Candidate] = []
    for r in stored:
        got = items.get(str(r[0]))
        if got is None:
            continue  # not committed: erasure takes what the log commits
        salts, coms = got
        b = from_stored(r)
        ctx = b.context if b.context is not None else [None] * b.rows
        for k in range(b.rows):
            salt = salts[k * SALT : (k + 1) * SALT]
            if len(salt) < SALT or salt == bytes(SALT):
                continue
            out.append(
                (b.ids[k], b.ts, b.endpoint, b.variant, b.model_version, b.layout, b.shadow,
                 b.num[k], b.txt[k], ctx[k], salt, coms[k * HASH : (k + 1) * HASH])
            )  # fmt: skip
    return out


def by_units(conn: Any, units: Sequence[str]) -> list[Candidate]:
    """Block decisions of these unit keys whose inputs are not erased yet."""
    q = select(*_COLS).where(IB.c.unit.in_(list(units)))
    return _candidates(conn, [tuple(r) for r in conn.execute(q)])


def older_than(
    conn: Any, endpoint: str, since: int, before: int
) -> tuple[list[Candidate], int | None]:
    """Block decisions in ``[since, before)`` whose inputs are not erased yet, from the
    first :data:`BLOCKS_PER_PASS` blocks; with the time the next pass starts at (None: done)."""
    q = (
        select(*_COLS)
        .where(IB.c.endpoint == endpoint, IB.c.ts >= since, IB.c.ts < before)
        .order_by(IB.c.ts, IB.c.id)
        .limit(BLOCKS_PER_PASS)
    )
    stored = [tuple(r) for r in conn.execute(q)]
    nxt = int(stored[-1][1]) if len(stored) == BLOCKS_PER_PASS else None
    return _candidates(conn, stored), nxt


def erase(conn: Any, decision_ids: Sequence[str]) -> None:
    """Blank these block decisions' inputs, context and salts, in the caller's transaction."""
    by_block: dict[str, list[int]] = {}
    for did in decision_ids:
        got = block_of(did)
        if got is not None:
            by_block.setdefault(got[0], []).append(got[1])
    for bid, rows in by_block.items():
        r = stored_in(conn, bid)
        if r is None:
            continue
        b = from_stored(r)
        n, width = b.rows, len(b.num[0])
        num = np.frombuffer(b"".join(b.num), dtype=np.uint8).reshape(n, width).copy()
        blank = np.frombuffer(np.full(width // 8, np.nan, dtype="<f8").tobytes(), np.uint8)
        flags = bytearray(b.erased if b.erased is not None and len(b.erased) == n else bytes(n))
        txt, ctx = list(b.txt), list(b.context) if b.context is not None else None
        for k in rows:
            num[k] = blank
            txt[k] = None
            if ctx is not None:
                ctx[k] = None
            flags[k] = 1
        values = {
            "num": num.tobytes(),
            "txt": None if all(t is None for t in txt) else orjson.dumps(txt).decode(),
            "context": None
            if ctx is None or all(c is None for c in ctx)
            else orjson.dumps(ctx).decode(),
            "erased": bytes(flags),
        }
        # with its ts, the update reads and writes the block's one partition
        conn.execute(update(IB).where(IB.c.id == bid, IB.c.ts == b.ts).values(**values))
        item = ITEMS.c.kind == ITEM_KIND, ITEMS.c.ref == bid
        salts = conn.execute(select(ITEMS.c.salt).where(*item)).scalar()
        if salts is None:
            continue
        cleared = bytearray(bytes(salts))
        for k in rows:
            cleared[k * SALT : (k + 1) * SALT] = bytes(SALT)
        conn.execute(update(ITEMS).where(*item).values(salt=bytes(cleared)))


def is_erased_in(conn: Any, decision_id: str) -> bool | None:
    """Whether a block decision's inputs were erased; None when it is not in a block."""
    got = block_of(decision_id)
    if got is None:
        return None
    bid, k = got
    q = select(ITEMS.c.salt).where(ITEMS.c.kind == ITEM_KIND, ITEMS.c.ref == bid)
    salts = conn.execute(q).scalar()
    if salts is None:
        return None
    salt = bytes(salts)[k * SALT : (k + 1) * SALT]
    return len(salt) == SALT and salt == bytes(SALT)
