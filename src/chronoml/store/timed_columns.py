"""A span of decisions as columns with their timestamps, in one pass over blocks and rows.

:func:`chronoml.store.decisions.window` answers one window; the UI's drift
heatmap needs two dozen windows of the same span. Reading each window alone
decodes every block it overlaps again (a block holds up to 65,536 decisions of
one version and can span many windows), so this reads the span once and keeps
each row's time: the caller cuts windows with a binary search.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import select

from chronoml.domain import codec
from chronoml.domain.codec import NUMERIC_KINDS
from chronoml.store import archive_reads, blocks, ingest_reads, schema, window_lock
from chronoml.store.database import Store
from chronoml.store.decisions import Layouts

B = schema.decision_blocks
D = schema.decisions


@dataclass(frozen=True)
class TimedPart:
    """Answered decisions of one variant and version, sorted by time."""

    variant: str
    version: str
    ts: np.ndarray[Any, Any]
    columns: dict[str, np.ndarray[Any, Any]]
    outputs: np.ndarray[Any, Any]


@window_lock.guarded_iter(2)
def parts(
    store: Store, layouts: Layouts, endpoint: str, start: int, end: int
) -> Iterator[TimedPart]:
    """Every answered decision of ``endpoint`` in ``[start, end)``, a file, a block or a group
    at a time: the archived ones first, from their files."""
    archived, start = archive_reads.timed_parts(store, endpoint, start, end)
    for variant, version, ts, cols, outs in archived:
        yield TimedPart(variant, version, ts, cols, outs)
    if start >= end:
        return
    mark = blocks.watermark(store, endpoint)
    raw_start = start
    if mark is not None and start < mark:
        stop = min(end, mark)
        raw_start = max(start, stop)
        q = (
            select(B.c.variant, B.c.model_version, B.c.layout, B.c.ts, B.c.num, B.c.txt, B.c.codes, B.c.outputs)
            .where(B.c.endpoint == endpoint, B.c.ts_max >= start, B.c.ts_min < stop, B.c.shadow.is_(False))
            .order_by(B.c.ts_min)
        )  # fmt: skip
        with store.engine.connect() as conn:
            found = conn.execute(q).cursor.fetchall()  # type: ignore[union-attr]
        for variant, version, layout, ts_b, num, uniques, codes, outs_b in found:
            ts = np.frombuffer(ts_b, dtype="<i8")
            lo, hi = np.searchsorted(ts, [start, stop])  # a block is in time order
            if lo >= hi:
                continue
            cols = blocks.decode(layouts.get(layout), len(ts), num, uniques, codes)
            outs = np.frombuffer(outs_b, dtype="<f8")
            yield TimedPart(
                variant, version, ts[lo:hi], {c: v[lo:hi] for c, v in cols.items()}, outs[lo:hi]
            )
    for p in ingest_reads.parts(store, layouts.get, endpoint, start, end):
        yield TimedPart(p.variant, p.version, p.ts, p.columns, p.outputs)
    if raw_start >= end:
        return
    where = [D.c.endpoint == endpoint, D.c.ts >= raw_start, D.c.ts < end, D.c.shadow.is_(False)]
    key = (D.c.variant, D.c.model_version, D.c.layout)
    with store.engine.connect() as conn:
        groups = conn.execute(select(*key).where(*where).distinct()).all()
    for variant, version, layout in groups:
        sch = layouts.get(layout)
        other = any(k not in NUMERIC_KINDS for _, k in sch)
        match = [*where, D.c.variant == variant, D.c.model_version == version, D.c.layout == layout]
        q = select(D.c.ts, D.c.num, D.c.output_num, D.c.txt).where(*match).order_by(D.c.ts)
        with store.engine.connect() as conn:
            data = conn.execute(q).cursor.fetchall()  # type: ignore[union-attr]
        n = len(data)
        cols = codec.decode_numeric(sch, n, b"".join([r[1] for r in data]))
        if other:
            cols.update(codec.decode_others(sch, n, [r[3] for r in data]))
        yield TimedPart(
            variant,
            version,
            np.fromiter((r[0] for r in data), dtype=np.int64, count=n),
            cols,
            np.array([r[2] for r in data], dtype=np.float64),
        )
