"""Reading decisions held in ingest blocks: by id, by window, and their evidence items.

Each reader gives what the same read of ``decisions`` rows gives (tuples in
:data:`~chronoml.store.ingest.TUPLE_COLUMNS` order, columns for statistics, or an
evidence row), so the readers of rows add a block's decisions to theirs.

On PostgreSQL the blocks are partitioned by day like the rows: a read by id
adds the span of ``ts`` the block's id implies, so it reads one partition, and
looks in every partition only for a block not found there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from sqlalchemy import bindparam, func, select

from chronoml.domain import codec
from chronoml.domain.codec import Schema
from chronoml.ids import block_of
from chronoml.store import schema
from chronoml.store.database import Store
from chronoml.store.ingest import (
    AT,
    COLUMNS,
    HASH,
    ITEM_KIND,
    SALT,
    TUPLE_COLUMNS,
    decision_ids,
    from_stored,
    is_block_id,
    one_of,
)
from chronoml.store.ingest import Block as Block
from chronoml.store.spans import id_span, ids_span

IB = schema.ingest_blocks
ITEMS = schema.evidence_items
_COLS = [IB.c[c] for c in COLUMNS]

GET = select(*_COLS).where(IB.c.id == bindparam("id"))
# on PostgreSQL's time partitions: the span of ts the id implies reads one partition
GET_SPAN = GET.where(IB.c.ts >= bindparam("lo"), IB.c.ts < bindparam("hi"))


def stored_in(conn: Any, block_id: str) -> tuple[Any, ...] | None:
    """A block's stored row, or None."""
    span = None if conn.dialect.name == "sqlite" else id_span(block_id)
    r = None
    if span is not None:
        r = conn.execute(GET_SPAN, {"id": block_id, "lo": span[0], "hi": span[1]}).first()
    if r is None:  # not where its id says (or not there at all): every partition
        r = conn.execute(GET, {"id": block_id}).first()
    return tuple(r) if r is not None else None


def stored_by_ids(conn: Any, block_ids: Sequence[str]) -> list[tuple[Any, ...]]:
    """The stored rows of the blocks of ``block_ids`` that exist (at most 500 ids)."""
    q = select(*_COLS).where(IB.c.id.in_(list(block_ids)))
    span = None if conn.dialect.name == "sqlite" else ids_span(list(block_ids))
    if span is None:
        return [tuple(r) for r in conn.execute(q)]
    found = [tuple(r) for r in conn.execute(q.where(IB.c.ts >= span[0], IB.c.ts < span[1]))]
    missing = set(block_ids).difference(str(r[0]) for r in found)
    if missing:
        rest = select(*_COLS).where(IB.c.id.in_(sorted(missing)))
        found += [tuple(r) for r in conn.execute(rest)]
    return found


def get_in(conn: Any, decision_id: str) -> tuple[Any, ...] | None:
    """The decision as a tuple (:data:`TUPLE_COLUMNS`) when it is in a block, else None."""
    where = block_of(decision_id)
    if where is None:
        return None
    r = stored_in(conn, where[0])
    return None if r is None else one_of(r, where[1])


def tuples_by_ids(conn: Any, ids: Iterable[str]) -> list[tuple[Any, ...]]:
    """The decisions of ``ids`` held in blocks, as tuples (the others are skipped)."""
    wanted: dict[str, list[int]] = {}
    for i in ids:
        got = block_of(i)
        if got is not None:
            wanted.setdefault(got[0], []).append(got[1])
    out: list[tuple[Any, ...]] = []
    keys = sorted(wanted)
    for k in range(0, len(keys), 500):
        for r in stored_by_ids(conn, keys[k : k + 500]):
            for pos in wanted[str(r[0])]:
                t = one_of(r, pos)
                if t is not None:
                    out.append(t)
    return out


def blocks_where(
    conn: Any,
    *,
    endpoint: str | None = None,
    start: int | None = None,
    end: int | None = None,
    variant: str | None = None,
    include_shadow: bool = True,
    units: Sequence[str] | None = None,
) -> list[Block]:
    """The blocks matching, in time order."""
    where: list[Any] = []
    if endpoint is not None:
        where.append(IB.c.endpoint == endpoint)
    if start is not None:
        where.append(IB.c.ts >= start)
    if end is not None:
        where.append(IB.c.ts < end)
    if variant is not None:
        where.append(IB.c.variant == variant)
    if not include_shadow:
        where.append(IB.c.shadow.is_(False))
    if units is not None:
        where.append(IB.c.unit.in_(list(units)))
    q = select(*_COLS).where(*where).order_by(IB.c.ts, IB.c.id)
    return [from_stored(tuple(r)) for r in conn.execute(q)]


def tuples_where(conn: Any, **filters: Any) -> list[tuple[Any, ...]]:
    """The decisions of the matching blocks as tuples (:data:`TUPLE_COLUMNS`), in time order."""
    return [t for b in blocks_where(conn, **filters) for t in b.tuples()]


def count_in(conn: Any, endpoint: str | None = None) -> int:
    """Decisions held in blocks."""
    q = select(func.coalesce(func.sum(IB.c.rows), 0))
    if endpoint is not None:
        q = q.where(IB.c.endpoint == endpoint)
    return int(conn.execute(q).scalar_one())


def item_in(conn: Any, decision_id: str) -> tuple[Any, ...] | None:
    """A block decision's evidence row as ``evidence.ITEM_COLUMNS`` gives one, or None.

    Its salt is None once its inputs were erased (the block item's 16 bytes are zero).
    """
    where = block_of(decision_id)
    if where is None:
        return None
    bid, pos = where
    q = select(ITEMS.c.log_index, ITEMS.c.position, ITEMS.c.leaf, ITEMS.c.salt, ITEMS.c.commitment)
    r = conn.execute(q.where(ITEMS.c.kind == ITEM_KIND, ITEMS.c.ref == bid)).first()
    if r is None:
        return None
    leaves, salts, coms = bytes(r[2]), bytes(r[3] or b""), bytes(r[4] or b"")
    if (pos + 1) * HASH > len(leaves):
        return None
    salt: bytes | None = salts[pos * SALT : (pos + 1) * SALT]
    if not salt or salt == bytes(SALT):
        salt = None
    return (
        "decision", decision_id, int(r[0]), int(r[1]) + pos, leaves[pos * HASH : (pos + 1) * HASH],
        salt, coms[pos * HASH : (pos + 1) * HASH],
    )  # fmt: skip


def expand_items(
    rows: Sequence[tuple[Any, ...]], stored: dict[str, tuple[Any, ...] | None]
) -> list[tuple[Any, ...]]:
    """Evidence rows joined to decisions (``log_index, position, ref, leaf, salt,
    commitment`` then the decision's tuple, or Nones), with each ``decision_block`` item
    expanded into one such row per decision; ``stored``: the blocks' rows by id."""
    out: list[tuple[Any, ...]] = []
    empty = (None,) * len(TUPLE_COLUMNS)
    for r in rows:
        if r[6] is not None or not is_block_id(str(r[2])):
            out.append(r)
            continue
        idx, first, bid, leaves, salts, coms = r[:6]
        leaves, salts, coms = bytes(leaves), bytes(salts or b""), bytes(coms or b"")
        n = len(leaves) // HASH
        got = stored.get(str(bid))
        block = from_stored(got) if got is not None else None
        tuples = block.tuples() if block is not None and block.rows == n else None
        ids = decision_ids(str(bid), n)
        for k in range(n):
            salt: bytes | None = salts[k * SALT : (k + 1) * SALT]
            if not salt or salt == bytes(SALT):
                salt = None
            t = tuples[k] if tuples is not None else empty
            out.append(
                (idx, int(first) + k, ids[k], leaves[k * HASH : (k + 1) * HASH], salt,
                 coms[k * HASH : (k + 1) * HASH], *t)
            )  # fmt: skip
    return out


def rows(
    store: Store,
    endpoint: str,
    start: int,
    end: int,
    names: Sequence[str],
    *,
    shadow: bool | None = None,
    variant: str | None = None,
    version: str | None = None,
    event_seqs: Sequence[int] | None = None,
) -> list[tuple[Any, ...]]:
    """Decisions of ``[start, end)`` held in blocks as tuples of the columns ``names`` (any
    of :data:`TUPLE_COLUMNS`), in (ts, id) order: as ``archive_reads.rows`` gives them."""
    where = [IB.c.endpoint == endpoint, IB.c.ts >= start, IB.c.ts < end]
    if shadow is not None:
        where.append(IB.c.shadow.is_(shadow))
    if variant is not None:
        where.append(IB.c.variant == variant)
    if version is not None:
        where.append(IB.c.model_version == version)
    if event_seqs is not None:
        where.append(IB.c.event_seq.in_(list(event_seqs)))
    at = [AT[n] for n in names]
    q = select(*_COLS).where(*where).order_by(IB.c.ts, IB.c.id)
    with store.read() as conn:
        stored = [tuple(r) for r in conn.execute(q)]
    return [tuple(t[i] for i in at) for r in stored for t in from_stored(r).tuples()]


def count_where(store: Store, endpoint: str, start: int, end: int, *, include_shadow: bool) -> int:
    """Decisions of ``[start, end)`` held in blocks."""
    q = select(func.coalesce(func.sum(IB.c.rows), 0)).where(
        IB.c.endpoint == endpoint, IB.c.ts >= start, IB.c.ts < end
    )
    if not include_shadow:
        q = q.where(IB.c.shadow.is_(False))
    with store.read() as conn:
        return int(conn.execute(q).scalar_one())


@dataclass(frozen=True)
class Part:
    """Decisions of one variant, version and layout held in blocks, as columns."""

    variant: str
    version: str
    ts: np.ndarray[Any, Any]
    columns: dict[str, np.ndarray[Any, Any]]
    outputs: np.ndarray[Any, Any]  # the output numbers, NaN where none
    # with ``with_context``: each row's id and context text as logged
    ids: list[str] | None = None
    context: list[str | None] | None = None


def parts(
    store: Store,
    layout_of: Callable[[str], Schema],
    endpoint: str,
    start: int,
    end: int,
    *,
    variant: str | None = None,
    include_shadow: bool = False,
    with_context: bool = False,
) -> list[Part]:
    """The decisions of ``[start, end)`` held in blocks, as columns for statistics: each
    block's packed inputs viewed as a matrix, one part per (variant, version, layout)."""
    cols = [IB.c.variant, IB.c.model_version, IB.c.layout, IB.c.ts, IB.c.rows, IB.c.num,
            IB.c.txt, IB.c.output_num, IB.c.id, IB.c.context]  # fmt: skip
    where = [IB.c.endpoint == endpoint, IB.c.ts >= start, IB.c.ts < end]
    if variant is not None:
        where.append(IB.c.variant == variant)
    if not include_shadow:
        where.append(IB.c.shadow.is_(False))
    with store.engine.connect() as conn:
        q = select(*cols).where(*where).order_by(IB.c.ts, IB.c.id)
        found = conn.execute(q).cursor.fetchall()  # type: ignore[union-attr]
    groups: dict[tuple[str, str, str], list[Any]] = {}
    for r in found:
        groups.setdefault((r[0], r[1], r[2]), []).append(r)
    out: list[Part] = []
    for (vname, version, layout), rs in groups.items():
        sch = layout_of(layout)
        n = sum(int(r[4]) for r in rs)
        got = codec.decode_numeric(sch, n, b"".join(bytes(r[5]) for r in rs))
        if any(k not in codec.NUMERIC_KINDS for _, k in sch):
            texts: list[str | None] = []
            for r in rs:
                texts += [None] * int(r[4]) if r[6] is None else orjson.loads(r[6])
            got.update(codec.decode_others(sch, n, texts))
        ts = np.repeat(np.array([int(r[3]) for r in rs], dtype=np.int64), [int(r[4]) for r in rs])
        outs = np.frombuffer(b"".join(bytes(r[7]) for r in rs), dtype="<f8")
        ids: list[str] | None = None
        ctx: list[str | None] | None = None
        if with_context:
            ids, ctx = [], []
            for r in rs:
                ids += decision_ids(str(r[8]), int(r[4]))
                ctx += [None] * int(r[4]) if r[9] is None else orjson.loads(r[9])
        out.append(Part(vname, version, ts, got, outs, ids, ctx))
    return out


def uncommitted(conn: Any, limit: int) -> list[str]:
    """Decisions of blocks that have no evidence item (written outside chronoml)."""
    on = (ITEMS.c.kind == ITEM_KIND) & (ITEMS.c.ref == IB.c.id)
    q = (
        select(IB.c.id, IB.c.rows)
        .select_from(IB.outerjoin(ITEMS, on))
        .where(ITEMS.c.ref.is_(None))
        .limit(limit)
    )
    out: list[str] = []
    for bid, n in conn.execute(q):
        out += decision_ids(str(bid), int(n))[: limit - len(out)]
    return out
