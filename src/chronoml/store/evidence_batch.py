"""Decision leaves and input commitments for many rows at once.

``audit verify --decisions`` re-encodes every stored decision and the write
path encodes every new one, so this is the evidence log's hottest code. It
produces exactly the bytes of :class:`~chronoml.domain.leaves.DecisionLeaf`
and :func:`~chronoml.domain.leaves.inputs_commitment` (tests pin both, byte
for byte), with the per-row work cut to what varies: the few low-cardinality
strings of a page (endpoint, variant, model, layout, often the output and the
unit) are encoded once and looked up, the constant parts are precomputed, and
each row is one ``bytes.join`` and one SHA-256.

Rows are tuples with the decision's columns in ``decisions.COLUMNS`` order
starting at ``offset`` (the verify query puts its evidence columns first).
A row that does not fit the encoding raises; callers that must name the bad
row fall back to the row-by-row functions of :mod:`chronoml.store.evidence`.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, func, select

from chronoml.domain import leaves as LV
from chronoml.domain import merkle
from chronoml.store import id_types, ingest, ingest_reads, schema, spans

_PACK_U32 = struct.Struct(">I").pack
_PACK_I64 = struct.Struct(">q").pack
_PACK_F64 = struct.Struct(">d").pack

LEAF_PREFIX = b"\x00" + _PACK_U32(len(b"chronoml/decision/v2")) + b"chronoml/decision/v2"
INPUTS_TAG = _PACK_U32(len(b"chronoml/inputs/v1")) + b"chronoml/inputs/v1"
INPUTS_TAG_CONTEXT = _PACK_U32(len(b"chronoml/inputs/v2")) + b"chronoml/inputs/v2"
_BATCH_PREFIX = b"\x00" + _PACK_U32(len(b"chronoml/batch/v1")) + b"chronoml/batch/v1"
_CACHE_LIMIT = 4096
_SALT_MIN = 16


def _s(v: str) -> bytes:
    raw = v.encode("utf-8")
    return _PACK_U32(len(raw)) + raw


def _f(x: float) -> bytes:
    if math.isfinite(x):
        return b"\x01" + _PACK_F64(x)
    return b"\x02" + _s("nan" if math.isnan(x) else ("inf" if x > 0 else "-inf"))


class _Strings(dict[str, bytes]):
    """Encoded strings by value, for the columns that repeat from row to row."""

    def __missing__(self, v: str) -> bytes:
        if type(v) is not str:
            raise TypeError(f"expected a string, got {type(v).__name__}")
        b = _s(v)
        if len(self) < _CACHE_LIMIT:
            self[v] = b
        return b


_DECISION_TAG = _PACK_U32(len(b"chronoml/decision/v2")) + b"chronoml/decision/v2"


def decision_leaf_hash(r: Sequence[Any], commitment: bytes) -> bytes:
    """``decision_leaf(r, commitment).leaf_hash()``, several times faster.

    The write path and ``audit verify --decisions`` hash every decision, so the
    encoding of :class:`~chronoml.domain.leaves.DecisionLeaf` is spelled out
    here field by field; a test pins it to the generic encoder byte for byte.
    """
    if type(commitment) is not bytes or len(commitment) != merkle.HASH_SIZE:
        raise LV.LeafError("the input commitment is not a 32-byte hash", "inputs_commitment")
    unit, out = r[8], r[14]
    digest = None if len(r) <= 16 or r[16] is None else hashlib.sha256(bytes(r[16])).digest()
    context = r[17] if len(r) > 17 else None
    data = b"".join(
        (
            b"\x00",  # the RFC 6962 leaf prefix
            _DECISION_TAG,
            _s(r[0]), _PACK_I64(int(r[1])), _s(r[2]), _s(r[3]), _s(r[4]), _s(r[5]),
            _PACK_I64(int(r[6])), b"\x01" if r[7] else b"\x00",
            b"\x00" if unit is None else b"\x01" + _s(unit),
            _s(r[9]), _s(r[10]), commitment, _s(r[13]),
            b"\x00" if out is None else _f(float(out)),
            _f(float(r[15])),
            b"\x00" if digest is None else b"\x01" + digest,
            b"\x00" if context is None else b"\x01" + _s(context),
        )
    )  # fmt: skip
    return hashlib.sha256(data).digest()


def leaf_hashes(
    rows: Sequence[Sequence[Any]],
    commitments: Sequence[bytes],
    offset: int = 0,
    context_inside: Sequence[bool] | None = None,
) -> list[bytes]:
    """The leaf hash of each decision row under its input commitment.

    ``context_inside[i]``: row i's context is inside its input commitment, so its leaf
    holds none (decisions logged since context was committed with the inputs)."""
    sha = hashlib.sha256
    p32, p64, pf = _PACK_U32, _PACK_I64, _PACK_F64
    finite = math.isfinite
    cached = _Strings()
    # the run of fields that repeat together from row to row (endpoint to shadow, and
    # the output with its number), encoded once per distinct value
    middles: dict[tuple[Any, ...], bytes] = {}
    outputs: dict[tuple[Any, Any], bytes] = {}
    out: list[bytes] = []
    push = out.append
    end = offset + 18
    inside = context_inside if context_inside is not None else [False] * len(rows)
    for r, com, hidden in zip(rows, commitments, inside, strict=True):
        (did, ts, ep, var, mname, mver, seq, shadow, unit, rid, lay, _num, _txt,
         output, onum, lat, scores, ctx) = r[offset:end]  # fmt: skip
        if hidden:
            ctx = None
        if type(com) is not bytes or len(com) != merkle.HASH_SIZE:
            raise LV.LeafError("the input commitment is not a 32-byte hash", "inputs_commitment")
        key = (ep, var, mname, mver, seq, shadow)
        middle = middles.get(key)
        if middle is None:
            middle = b"".join(
                (cached[ep], cached[var], cached[mname], cached[mver], p64(int(seq)))
            ) + (b"\x01" if shadow else b"\x00")
            if len(middles) < _CACHE_LIMIT:
                middles[key] = middle
        tail = outputs.get((output, onum))
        if tail is None:
            tail = cached[output] + (b"\x00" if onum is None else _f(float(onum)))
            if len(outputs) < _CACHE_LIMIT:
                outputs[(output, onum)] = tail
        a = did.encode("utf-8")
        b = rid.encode("utf-8")
        lat = float(lat)
        push(
            sha(
                b"".join(
                    (
                        LEAF_PREFIX,
                        p32(len(a)),
                        a,
                        p64(int(ts)),
                        middle,
                        b"\x00" if unit is None else b"\x01" + cached[unit],
                        p32(len(b)),
                        b,
                        cached[lay],
                        com,
                        tail,
                        b"\x01" + pf(lat) if finite(lat) else _f(lat),
                        b"\x00" if scores is None else b"\x01" + sha(bytes(scores)).digest(),
                        b"\x00" if ctx is None else b"\x01" + _s(ctx),
                    )
                )
            ).digest()
        )
    return out


def commitments(
    rows: Sequence[Sequence[Any]], salts: Sequence[bytes], offset: int = 0
) -> list[bytes]:
    """:func:`~chronoml.domain.leaves.inputs_commitment` of each row's stored inputs, with
    its context (the row's last column) inside when it has one."""
    sha = hashlib.sha256
    p32 = _PACK_U32
    cached = _Strings()
    out: list[bytes] = []
    push = out.append
    lay_at, num_at, txt_at, ctx_at = offset + 10, offset + 11, offset + 12, offset + 17
    for r, salt in zip(rows, salts, strict=True):
        if len(salt) < _SALT_MIN:
            raise LV.LeafError("the input salt must be at least 16 bytes", "salt")
        num = bytes(r[num_at])
        txt = r[txt_at]
        ctx = r[ctx_at] if len(r) > ctx_at else None
        push(
            sha(
                b"".join(
                    (
                        INPUTS_TAG if ctx is None else INPUTS_TAG_CONTEXT,
                        p32(len(salt)),
                        salt,
                        cached[r[lay_at]],
                        p32(len(num)),
                        num,
                        b"\x00" if txt is None else b"\x01" + _s(txt),
                        b"" if ctx is None else _s(ctx),
                    )
                )
            ).digest()
        )
    return out


def batch_leaf_hash(items: str, size: int, root: bytes, committed_at: int) -> bytes:
    """``BatchLeaf(items, size, root, committed_at).leaf_hash()``, spelled out (once per commit)."""
    if type(root) is not bytes or len(root) != merkle.HASH_SIZE:
        raise LV.LeafError("the batch root is not a 32-byte hash", "root")
    kind = items.encode("utf-8")
    data = b"".join(
        (
            _BATCH_PREFIX,
            _PACK_U32(len(kind)),
            kind,
            _PACK_I64(size),
            root,
            _PACK_I64(committed_at),
        )
    )
    return hashlib.sha256(data).digest()


# --- reading ----------------------------------------------------------------------


def join(uuid_ids: bool) -> str:
    """The join of decision items to their rows: on the decisions' own key when ids are
    ``uuid`` (an item's ref of these kinds always parses: migration 0022 checks)."""
    return "LEFT JOIN decisions d ON d.id = " + ("i.ref::uuid" if uuid_ids else "i.ref")


# decisions with their evidence, read on the driver's cursor: verify reads millions
_DECISION_ITEMS = (
    "SELECT i.log_index, i.position, i.ref, i.leaf, i.salt, i.commitment, "
    "d.id, d.ts, d.endpoint, d.variant, d.model_name, d.model_version, d.event_seq, "
    "d.shadow, d.unit, d.request_id, d.layout, d.num, d.txt, d.output, d.output_num, "
    "d.latency_ms, d.scores, d.context FROM evidence_items i {join} "
    "WHERE {kind} IN ('decision', 'decision_block') AND i.log_index >= {ph} AND i.log_index < {ph} "
    "ORDER BY i.log_index, i.position"
)


def decision_items(
    engine: Any, is_sqlite: bool, lo: int, hi: int, page: int = 20_000
) -> Iterator[list[tuple[Any, ...]]]:
    """Pages of decision evidence rows joined to their decision, for log entries [lo, hi).

    An ingest block's item comes out as one row per decision of the block, with the
    block's decoded rows (or Nones where the block is gone)."""
    raw = engine.raw_connection()
    try:
        # SQLite, without statistics, would take the (kind, ref) index and sort a
        # million rows; "+" keeps it on the (log_index, position) index
        kind = "+i.kind" if is_sqlite else "i.kind"
        on = join(id_types.engine_uuid_ids(engine))
        sql = _DECISION_ITEMS.format(ph="?" if is_sqlite else "%s", kind=kind, join=on)
        db = raw.driver_connection
        cur = db.cursor() if is_sqlite else db.cursor(name="chronoml_verify")
        try:
            cur.execute(sql, (lo, hi))
            while True:
                rows = cur.fetchmany(page)
                if not rows:
                    break
                refs = sorted(
                    {str(r[2]) for r in rows if r[6] is None and ingest.is_block_id(r[2])}
                )
                if refs:
                    rows = ingest_reads.expand_items(rows, _blocks(db, is_sqlite, refs))
                yield rows
        finally:
            cur.close()
            if not is_sqlite:
                db.rollback()
    finally:
        raw.close()


def decision_items_span(
    engine: Any,
    is_sqlite: bool,
    first: tuple[int, int],
    last: tuple[int, int],
    span: tuple[int, int] | None = None,
) -> list[tuple[Any, ...]]:
    """The rows :func:`decision_items` gives from item ``first`` to item ``last`` (each a
    (log index, position)), both included: a page read again in full.

    ``span``: the ``[lo, hi)`` of ``ts`` the page's decisions almost surely have (from
    their ids), so PostgreSQL reads only those day partitions; when a decision is not
    found there (a row outside the span, or gone), the page is read again without it."""
    ph = "?" if is_sqlite else "%s"
    kind = "+i.kind" if is_sqlite else "i.kind"
    where = (
        f"{kind} IN ('decision', 'decision_block') AND i.log_index >= {ph} "
        f"AND i.log_index <= {ph} "
        f"AND (i.log_index > {ph} OR i.position >= {ph}) "
        f"AND (i.log_index < {ph} OR i.position <= {ph})"
    )
    on = join(id_types.engine_uuid_ids(engine))
    head = _DECISION_ITEMS.split(" WHERE ")[0].format(join=on)
    order = " ORDER BY i.log_index, i.position"
    params: tuple[int, ...] = (first[0], last[0], first[0], first[1], last[0], last[1])
    raw = engine.raw_connection()
    try:
        db = raw.driver_connection
        cur = db.cursor()
        try:
            rows: list[tuple[Any, ...]] | None = None
            if span is not None and not is_sqlite:
                pruned = head.replace(on, on + " AND d.ts >= %s AND d.ts < %s")
                # never prepared: a generic plan is blind to the span
                cur.execute(pruned + " WHERE " + where + order, (*span, *params), prepare=False)
                rows = list(cur.fetchall())
                if any(r[6] is None and not ingest.is_block_id(r[2]) for r in rows):
                    rows = None  # not where its id says: read without the span
            if rows is None:
                cur.execute(head + " WHERE " + where + order, params)
                rows = list(cur.fetchall())
            refs = sorted({str(r[2]) for r in rows if r[6] is None and ingest.is_block_id(r[2])})
            if refs:  # an ingest block's item: one row per decision, as decision_items gives
                rows = ingest_reads.expand_items(rows, _blocks(db, is_sqlite, refs))
            return rows
        finally:
            cur.close()
            if not is_sqlite:
                db.rollback()
    finally:
        raw.close()


def _blocks(db: Any, is_sqlite: bool, refs: list[str]) -> dict[str, tuple[Any, ...] | None]:
    """Stored ingest blocks by id, on the driver connection (beside an open cursor)."""
    out: dict[str, tuple[Any, ...] | None] = {}
    ph = "?" if is_sqlite else "%s"
    cols = ", ".join(ingest.COLUMNS)
    for k in range(0, len(refs), 500):
        part = refs[k : k + 500]
        # on PostgreSQL's day partitions: the span of ts the ids imply reads only those
        # days; a block stored outside it is looked for in every partition after
        span = None if is_sqlite else spans.ids_span(part)
        _read_blocks(db, ph, cols, part, span, out)
        if span is not None:
            missing = [b for b in part if b not in out]
            if missing:
                _read_blocks(db, ph, cols, missing, None, out)
    return out


def _read_blocks(
    db: Any,
    ph: str,
    cols: str,
    ids: list[str],
    span: tuple[int, int] | None,
    out: dict[str, tuple[Any, ...] | None],
) -> None:
    where = f"id IN ({', '.join([ph] * len(ids))})"
    args: list[Any] = list(ids)
    if span is not None:
        where += f" AND ts >= {ph} AND ts < {ph}"
        args += [span[0], span[1]]
    cur = db.cursor()
    try:
        cur.execute(f"SELECT {cols} FROM ingest_blocks WHERE {where}", args)
        for r in cur.fetchall():
            # a second row under one block id (possible on day partitions, whose key is
            # (id, ts)) is not the block that was committed: neither is taken
            out[str(r[0])] = None if str(r[0]) in out else tuple(r)
    finally:
        cur.close()


def log_entries_between(conn: Connection, lo: int, hi: int) -> dict[int, tuple[Any, ...]]:
    """The log entries ``lo <= idx < hi`` by index, as tuples in ``LOG_COLUMNS`` order."""
    LOG = schema.evidence_log
    cols = ("idx", "kind", "ref", "size", "root", "committed_at", "leaf")
    q = select(*[LOG.c[c] for c in cols]).where(LOG.c.idx >= lo, LOG.c.idx < hi)
    return {int(r[0]): tuple(r) for r in conn.execute(q)}


def duplicated_ids(conn: Connection, limit: int = 10) -> list[tuple[str, str]]:
    """Ids held by more than one row of ``decisions`` or of ``ingest_blocks``, as
    ("decision" | "block", id).

    On PostgreSQL's day partitions the primary key is (id, ts), so plain SQL can add a
    second row under a committed decision's id on another day, where the verify join
    bounded by the id's time span never looks: this scan (of the keys' indexes) finds it.
    """
    out: list[tuple[str, str]] = []
    for kind, t in (("decision", schema.decisions), ("block", schema.ingest_blocks)):
        q = select(t.c.id).group_by(t.c.id).having(func.count() > 1).limit(limit)
        out += [(kind, str(v)) for v in conn.execute(q).scalars()]
    return out
