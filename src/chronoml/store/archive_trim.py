"""Trimming the columnar copies of decisions an archive run moved out of the database."""

from __future__ import annotations

import numpy as np
from sqlalchemy import Connection, delete, select, update

from chronoml.store import schema

B = schema.decision_blocks


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
