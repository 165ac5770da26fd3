"""Deleting what an archive run moved out of the database, and trimming the columnar
copies of those decisions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from sqlalchemy import Connection, delete, select, update

from chronoml.store import schema
from chronoml.store.privacy import zeroing_freed

B = schema.decision_blocks
DELETE_CACHE_KIB = 64 * 1024  # SQLite's page cache while a chunk's rows are deleted


@contextmanager
def deleting(conn: Connection, is_sqlite: bool) -> Iterator[None]:
    """SQLite: the rest of the transaction zeroes the bytes it frees (the deleted rows'
    inputs are not left in free pages), with a larger page cache: the delete walks the
    table and its three indexes (the unit index in key order, not time order), and with
    the default 2 MB of cache most of its time went to evicting and reading back the
    same index pages (2.2 s against 1.1-1.3 s for 196,608 rows)."""
    if not is_sqlite:
        yield
        return
    cache = int(conn.exec_driver_sql("PRAGMA cache_size").scalar() or -2000)
    conn.exec_driver_sql(f"PRAGMA cache_size=-{DELETE_CACHE_KIB}")
    try:
        with zeroing_freed(conn, is_sqlite):
            yield
    finally:
        conn.exec_driver_sql(f"PRAGMA cache_size={cache}")  # put back as it was


def trim_blocks(conn: Connection, endpoint: str, upto: int) -> None:
    """Drop the columnar blocks below ``upto``; keep the later rows of a block that spans it.

    A block's outcome copy goes with it, and with a trimmed block's rows too: readers
    take a block without one from its rows instead."""
    OB = schema.outcome_blocks
    gone = select(B.c.id).where(B.c.endpoint == endpoint, B.c.ts_min < upto)
    conn.execute(delete(OB).where(OB.c.block_id.in_(gone.scalar_subquery())))
    conn.execute(delete(B).where(B.c.endpoint == endpoint, B.c.ts_max < upto))
    spanning = conn.execute(
        select(B).where(B.c.endpoint == endpoint, B.c.ts_min < upto, B.c.ts_max >= upto)
    ).mappings()
    for b in list(spanning):
        ts = np.frombuffer(b["ts"], dtype="<i8")
        keep = np.flatnonzero(ts >= upto)
        n = len(ts)
        width = len(b["num"]) // n if n else 0
        num = np.frombuffer(b["num"], dtype=np.uint8).reshape(n, width)[keep]
        outs = np.frombuffer(b["outputs"], dtype="<f8")[keep]
        codes = b["codes"]
        if codes is not None:
            cw = len(codes) // (4 * n)
            codes = np.frombuffer(codes, dtype="<i4").reshape(n, cw)[keep].tobytes()
        erased = b["erased"]
        if erased is not None and len(erased) == n:  # one flag per row: the kept rows' flags
            erased = np.frombuffer(erased, dtype=np.uint8)[keep].tobytes()
        conn.execute(
            update(B)
            .where(B.c.id == b["id"])
            .values(
                ts_min=int(ts[keep[0]]),
                rows=len(keep),
                ts=ts[keep].tobytes(),
                num=num.tobytes(),
                outputs=outs.tobytes(),
                codes=codes,
                erased=erased,
            )
        )
