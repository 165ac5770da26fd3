"""Columnar blocks: the decision log's history, compacted for fast window reads.

Decisions are written one row each (a lookup by id must be one seek, and a
2xx must not wait for anything but that row). Reading a window of a million
of them row by row costs a million driver tuples, though. So the history of
each endpoint is compacted, behind a watermark, into blocks of up to
``BLOCK_ROWS`` decisions of one variant, version and input layout (fewer on
PostgreSQL, see :data:`PG_BLOCK_BYTES`). A block
holds its timestamps, its packed numeric inputs as one matrix, its other
inputs as one JSON array, and its outputs. Every decision with a timestamp
below the endpoint's watermark is in exactly one block. A window read takes
the blocks below the watermark and the raw rows above it.

The rows stay where they are (decision lookup, feedback, replay use them).
The blocks are a derived copy: they are rebuilt by compacting again after
dropping them (``chronoml db compact --rebuild``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from sqlalchemy import delete, func, select

from chronoml.domain import codec
from chronoml.domain.codec import NUMERIC_KINDS, Schema
from chronoml.store import outcome_blocks as OB
from chronoml.store import schema
from chronoml.store.database import Store

if TYPE_CHECKING:
    from chronoml.store.decisions import Layouts
from chronoml.timeutil import now_us

B = schema.decision_blocks
W = schema.block_watermarks
D = schema.decisions

BLOCK_ROWS = 65_536
# PostgreSQL cannot overwrite part of a stored value: erasing one row rewrites the whole
# packed-inputs value of its block (and VACUUM then frees the old copy). There a block's
# inputs are capped at about PG_BLOCK_BYTES, so an erasure rewrites about 512 KiB per block
# it touches instead of 15.7 MB (65,536 rows of 30 floats). SQLite overwrites a row in
# place (incremental blob I/O) and keeps BLOCK_ROWS.
PG_BLOCK_BYTES = 1 << 19
MIN_BLOCK_ROWS = 1024
# Decisions are stamped before they commit: compact only what is surely committed.
SETTLE_US = 60_000_000

# variant, version, decoded columns, outputs
Part = tuple[str, str, dict[str, np.ndarray[Any, Any]], np.ndarray[Any, Any]]


def watermark(store: Store, endpoint: str) -> int | None:
    with store.read() as conn:
        v = conn.execute(select(W.c.compacted_to).where(W.c.endpoint == endpoint)).scalar()
    return None if v is None else int(v)


def compact(
    store: Store, endpoints: Iterable[str] | None = None, *, upto: int | None = None
) -> int:
    """Move settled decisions of each endpoint into blocks; returns how many were compacted."""
    limit = now_us() - SETTLE_US if upto is None else upto
    if endpoints is None:
        with store.read() as conn:
            endpoints = list(conn.execute(select(D.c.endpoint).distinct()).scalars())
    total = 0
    for endpoint in endpoints:
        total += _compact_one(store, endpoint, limit)
        OB.refresh_labels(store, endpoint)
    return total


def _compact_one(store: Store, endpoint: str, limit: int) -> int:
    start = watermark(store, endpoint)
    lo = start if start is not None else -(2**62)
    if limit <= lo:
        return 0
    # an erasure between this read and the write below would leave its bytes in a block
    erasures_before = _last_erasure(store, endpoint)
    q = (
        select(
            D.c.ts,
            D.c.variant,
            D.c.model_version,
            D.c.layout,
            D.c.shadow,
            D.c.num,
            D.c.txt,
            D.c.output_num,
            D.c.id,
            D.c.model_name,
            D.c.output,
            D.c.context,
            D.c.scores,
        )
        .where(D.c.endpoint == endpoint, D.c.ts >= lo, D.c.ts < limit)
        .order_by(D.c.ts)
    )
    with store.engine.connect() as conn:
        data = conn.execute(q).cursor.fetchall()  # type: ignore[union-attr]
        upto = OB.settled_feedback(conn)
    groups: dict[tuple[str, str, str, bool], list[Any]] = {}
    for r in data:
        groups.setdefault((r[1], r[2], r[3], bool(r[4])), []).append(r)
    rows = []
    outcomes: list[dict[str, Any] | None] = []
    for (variant, version, layout, shadow), members in groups.items():
        per_block = block_rows(store.is_sqlite, len(members[0][5]))
        for i in range(0, len(members), per_block):
            chunk = members[i : i + per_block]
            ts = np.fromiter((r[0] for r in chunk), dtype="<i8", count=len(chunk))
            texts = [r[6] for r in chunk]
            uniques, codes = _dictionary(texts)
            with store.engine.connect() as conn:
                outcome = OB.row_for(
                    conn,
                    [r[8] for r in chunk],
                    [r[9] for r in chunk],
                    [r[10] for r in chunk],
                    [r[11] for r in chunk],
                    upto,
                    [r[12] for r in chunk],
                )
            outcomes.append(outcome)
            rows.append(
                {
                    "endpoint": endpoint,
                    "variant": variant,
                    "model_version": version,
                    "layout": layout,
                    "shadow": shadow,
                    "ts_min": int(ts[0]),
                    "ts_max": int(ts[-1]),
                    "rows": len(chunk),
                    "ts": ts.tobytes(),
                    "num": b"".join([r[5] for r in chunk]),
                    "txt": uniques,
                    "codes": codes,
                    "outputs": np.array([r[7] for r in chunk], dtype="<f8").tobytes(),
                    # room for erasure's flags, so flagging a row rewrites no block (0014)
                    "erased": bytes(len(chunk)),
                }
            )
    with store.write() as conn:
        # another compactor may have moved the watermark meanwhile: then it did this work
        now_mark = conn.execute(
            select(W.c.compacted_to).where(W.c.endpoint == endpoint).with_for_update()
        ).scalar()
        if now_mark != start:
            return 0
        if _last_erasure_in(conn, endpoint) != erasures_before:
            return 0  # the next pass compacts again, from the erased rows
        for row, outcome in zip(rows, outcomes, strict=True):
            block_id = conn.execute(B.insert().values(**row).returning(B.c.id)).scalar_one()
            if outcome is not None:
                conn.execute(schema.outcome_blocks.insert().values(block_id=block_id, **outcome))
        if start is None:
            conn.execute(W.insert().values(endpoint=endpoint, compacted_to=limit))
        else:
            conn.execute(W.update().where(W.c.endpoint == endpoint).values(compacted_to=limit))
    return len(data)


def block_rows(is_sqlite: bool, row_bytes: int) -> int:
    """Rows per block for rows of ``row_bytes`` packed inputs (a power of two on PostgreSQL)."""
    if is_sqlite or row_bytes <= 0:
        return BLOCK_ROWS
    fit = max(1, PG_BLOCK_BYTES // row_bytes)
    return max(min(BLOCK_ROWS, 1 << (fit.bit_length() - 1)), min(MIN_BLOCK_ROWS, BLOCK_ROWS))


def _last_erasure_in(conn: Any, endpoint: str) -> int | None:
    E = schema.ledger_events
    q = select(func.max(E.c.seq)).where(E.c.endpoint == endpoint, E.c.kind == "erasure")
    v = conn.execute(q).scalar()
    return None if v is None else int(v)


def _last_erasure(store: Store, endpoint: str) -> int | None:
    with store.read() as conn:
        return _last_erasure_in(conn, endpoint)


def _dictionary(texts: list[str | None]) -> tuple[str | None, bytes | None]:
    """Rows' non-numeric values, dictionary-encoded per column.

    Returns the JSON of each column's distinct values and an int32 matrix of
    codes into them (rows x columns; -1 for a missing value). A window then
    decodes a column with one fancy index instead of parsing every string.
    """
    if all(t is None for t in texts):
        return None, None
    rows = orjson.loads("[" + ",".join(t or "[]" for t in texts) + "]")
    width = max(len(r) for r in rows)
    codes = np.full((len(rows), width), -1, dtype="<i4")
    uniques: list[list[Any]] = []
    for j in range(width):
        seen: dict[Any, int] = {}
        col = codes[:, j]
        for i, r in enumerate(rows):
            if j < len(r) and r[j] is not None:
                v = r[j]
                col[i] = seen.setdefault(v, len(seen))
        uniques.append(list(seen))
    return orjson.dumps(uniques).decode(), codes.tobytes()


def drop(store: Store, endpoint: str | None = None) -> None:
    """Forget the blocks (of one endpoint or all); reads fall back to rows until compacted again."""
    with store.write() as conn:
        if endpoint is None:
            conn.execute(delete(schema.outcome_blocks))
            conn.execute(delete(B))
            conn.execute(delete(W))
        else:
            mine = select(B.c.id).where(B.c.endpoint == endpoint).scalar_subquery()
            conn.execute(
                delete(schema.outcome_blocks).where(schema.outcome_blocks.c.block_id.in_(mine))
            )
            conn.execute(delete(B).where(B.c.endpoint == endpoint))
            conn.execute(delete(W).where(W.c.endpoint == endpoint))


def read(
    store: Store,
    layouts: Layouts,
    endpoint: str,
    start: int,
    end: int,
    *,
    variant: str | None,
    include_shadow: bool,
) -> tuple[list[Part], int]:
    """Blocked decisions in ``[start, min(end, watermark))``, and where raw rows take over."""
    mark = watermark(store, endpoint)
    if mark is None or start >= mark:
        return [], start
    stop = min(end, mark)
    q = select(
        B.c.variant,
        B.c.model_version,
        B.c.layout,
        B.c.shadow,
        B.c.ts,
        B.c.num,
        B.c.txt,
        B.c.codes,
        B.c.outputs,
        B.c.erased,
    ).where(B.c.endpoint == endpoint, B.c.ts_max >= start, B.c.ts_min < stop)
    if variant is not None:
        q = q.where(B.c.variant == variant)
    if not include_shadow:
        q = q.where(B.c.shadow.is_(False))
    with store.engine.connect() as conn:
        blocks = conn.execute(q.order_by(B.c.ts_min)).cursor.fetchall()  # type: ignore[union-attr]
    parts: list[Part] = []
    for vname, version, layout, _shadow, ts_b, num, uniques, codes, outs_b, erased in blocks:
        ts = np.frombuffer(ts_b, dtype="<i8")
        outs = np.frombuffer(outs_b, dtype="<f8")
        keep = (ts >= start) & (ts < stop)
        if not keep.any():
            continue
        got = decode(layouts.get(layout), len(ts), num, uniques, codes)
        if erased and any(erased):  # rows whose inputs were erased read as missing
            mask = np.frombuffer(erased, dtype=np.uint8).astype(bool)
            for c, v in got.items():
                if v.dtype.kind == "f":
                    got[c] = np.where(mask, np.nan, v)
        if keep.all():
            parts.append((vname, version, got, outs))
        else:
            idx = np.flatnonzero(keep)
            parts.append((vname, version, {c: v[idx] for c, v in got.items()}, outs[idx]))
    return parts, max(start, stop)


def decode(
    sch: Schema, n: int, num: bytes, uniques: str | None, codes: bytes | None
) -> dict[str, np.ndarray[Any, Any]]:
    """A block's columns: numeric ones viewed from its matrix, the others from their codes."""
    other = [c for c, k in sch if k not in NUMERIC_KINDS]
    got = codec.decode_numeric(sch, n, num)
    if other and uniques is not None and codes is not None:
        values = orjson.loads(uniques)
        mat_codes = np.frombuffer(codes, dtype="<i4").reshape(n, len(values))
        for j, c in enumerate(other):
            if j >= len(values):
                got[c] = np.full(n, None, dtype=object)
                continue
            table = np.empty(len(values[j]) + 1, dtype=object)
            table[:-1] = values[j]
            table[-1] = None  # code -1: a missing value
            got[c] = table[mat_codes[:, j]]
    return got


def count(store: Store, endpoint: str) -> int:
    with store.read() as conn:
        return int(
            conn.execute(
                select(func.coalesce(func.sum(B.c.rows), 0)).where(B.c.endpoint == endpoint)
            ).scalar_one()
        )
