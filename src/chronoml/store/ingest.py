"""Ingest blocks: a request of many rows logged as one row, read back decision by decision.

A request of many rows shares its time, endpoint, variant, model, ledger event,
unit, request id, layout and latency; only the inputs, the output, the class
scores and the context differ from row to row. Logging it as 1000 rows pays
for 1000 index entries of a text key; one :data:`schema.ingest_blocks` row
holds the shared columns once and the others packed. Each decision's id
names its block and its row (:func:`chronoml.ids.block_of`), so a lookup by
id reads one block row and decodes one row of it.

The evidence is unchanged in what it commits: every decision is a leaf of its
group commit's batch, hashed exactly as a decision row's leaf
(:class:`~chronoml.domain.leaves.DecisionLeaf`); only the storage differs, one
``decision_block`` evidence item per block holding its rows' leaves, salts and
commitments end to end, at the rows' positions in the batch.

Readers take the block's decisions as the same tuples a ``decisions`` row
gives (:data:`TUPLE_COLUMNS` order), so code written for rows reads blocks
through :func:`tuples_where` and :func:`tuples_by_ids`.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from chronoml import digests
from chronoml.domain import leaves as LV
from chronoml.store import schema

IB = schema.ingest_blocks
ITEMS = schema.evidence_items

ITEM_KIND = "decision_block"
SALT = 16
HASH = 32

# a block's stored row, in this order
COLUMNS = (
    "id", "ts", "endpoint", "variant", "model_name", "model_version", "event_seq", "shadow",
    "unit", "request_id", "layout", "latency_ms", "rows", "num", "txt", "outputs",
    "output_num", "output_none", "scores", "context", "erased",
)  # fmt: skip
# a decision as a tuple: the order of ``decisions.COLUMNS``
TUPLE_COLUMNS = (
    "id", "ts", "endpoint", "variant", "model_name", "model_version", "event_seq", "shadow",
    "unit", "request_id", "layout", "num", "txt", "output", "output_num", "latency_ms",
    "scores", "context",
)  # fmt: skip
AT = {c: i for i, c in enumerate(TUPLE_COLUMNS)}
_COLS = [IB.c[c] for c in COLUMNS]


@dataclass
class Block:
    """One request's decisions: the shared columns once, the others one value per row."""

    id: str
    ids: list[str]
    ts: int
    endpoint: str
    variant: str
    model_name: str
    model_version: str
    event_seq: int
    shadow: bool
    unit: str | None
    request_id: str
    layout: str
    latency_ms: float
    num: list[bytes]
    txt: list[str | None]
    outputs: list[str]
    output_num: list[float | None]
    scores: list[bytes] | None
    context: list[str | None] | None
    erased: bytes | None = None

    @property
    def rows(self) -> int:
        return len(self.ids)

    def tuples(self) -> list[tuple[Any, ...]]:
        """Each decision as the tuple a ``decisions`` row gives (:data:`TUPLE_COLUMNS`)."""
        n = self.rows
        nums: list[float | None] = self.output_num
        scores: Iterable[bytes | None] = self.scores if self.scores is not None else [None] * n
        ctx: Iterable[str | None] = self.context if self.context is not None else [None] * n
        head = (self.ts, self.endpoint, self.variant, self.model_name, self.model_version,
                self.event_seq, self.shadow, self.unit, self.request_id, self.layout)  # fmt: skip
        return [
            (i, *head, num, txt, out, on, self.latency_ms, sc, cx)
            for i, num, txt, out, on, sc, cx in zip(
                self.ids, self.num, self.txt, self.outputs, nums, scores, ctx, strict=True
            )
        ]

    def stored(self) -> tuple[Any, ...]:
        """The block's row in :data:`COLUMNS` order."""
        n = self.rows
        if not _one_width(self.num):
            raise ValueError("the rows of a block must pack to the same width")
        nones = self.output_num.count(None)
        if nones:
            nums = np.array([math.nan if v is None else v for v in self.output_num], dtype="<f8")
            none: bytes | None = bytes([v is None for v in self.output_num])
        else:
            nums, none = np.array(self.output_num, dtype="<f8"), None
        scores = None
        if self.scores is not None:
            if not _one_width(self.scores):
                raise ValueError("the class scores of a block must have one width")
            scores = b"".join(self.scores)
        ctx = self.context
        return (
            self.id, self.ts, self.endpoint, self.variant, self.model_name, self.model_version,
            self.event_seq, self.shadow, self.unit, self.request_id, self.layout,
            float(self.latency_ms), n, b"".join(self.num),
            None if self.txt.count(None) == n else orjson.dumps(self.txt).decode(),
            orjson.dumps(self.outputs).decode(), nums.tobytes(), none, scores,
            None if ctx is None or ctx.count(None) == n else orjson.dumps(ctx).decode(),
            self.erased,
        )  # fmt: skip


def _one_width(values: Sequence[bytes]) -> bool:
    """Whether every value has the same length (counted in C: a block has many rows)."""
    return len(set(map(len, values))) == 1


def fits(num: Sequence[bytes], scores: Sequence[bytes] | None) -> bool:
    """Whether rows can be stored as one block: one packed width, one scores width."""
    if not num or len(num) > 0xFFFF:
        return False
    return _one_width(num) and (scores is None or _one_width(scores))


def is_block_id(ref: str) -> bool:
    """Whether ``ref`` is a block's own id (not one of its decisions')."""
    return len(ref) == 36 and ref[14] == "8" and ref.endswith("0000")


def decision_ids(block_id: str, n: int) -> list[str]:
    """The ids of the ``n`` decisions of block ``block_id``."""
    head = block_id[:32]
    return [f"{head}{i:04x}" for i in range(1, n + 1)]


def from_stored(r: Sequence[Any]) -> Block:
    """A block from its stored row (:data:`COLUMNS` order)."""
    (bid, ts, ep, var, mname, mver, seq, shadow, unit, rid, lay, lat, n, num, txt, outs,
     onum, onone, scores, ctx, erased) = r  # fmt: skip
    n = int(n)
    raw = bytes(num)
    w = len(raw) // n if n else 0
    nums = np.frombuffer(bytes(onum), dtype="<f8").tolist()
    if onone is not None:
        nums = [None if f else v for v, f in zip(nums, bytes(onone), strict=True)]
    sc = None
    if scores is not None:
        s = bytes(scores)
        sw = len(s) // n
        sc = [s[i * sw : (i + 1) * sw] for i in range(n)]
    return Block(
        str(bid), decision_ids(str(bid), n), int(ts), ep, var, mname, mver, int(seq),
        bool(shadow), unit, rid, lay, float(lat), [raw[i * w : (i + 1) * w] for i in range(n)],
        [None] * n if txt is None else list(orjson.loads(txt)), list(orjson.loads(outs)), nums,
        sc, None if ctx is None else list(orjson.loads(ctx)),
        None if erased is None else bytes(erased),
    )  # fmt: skip


def one_of(r: Sequence[Any], pos: int) -> tuple[Any, ...] | None:
    """Decision ``pos`` of a stored block row as a tuple (:data:`TUPLE_COLUMNS`), or None."""
    (bid, ts, ep, var, mname, mver, seq, shadow, unit, rid, lay, lat, n, num, txt, outs,
     onum, onone, scores, ctx, _erased) = r  # fmt: skip
    n = int(n)
    if not 0 <= pos < n:
        return None
    raw = bytes(num)
    w = len(raw) // n
    out = orjson.loads(outs)[pos]
    on: float | None = struct.unpack_from("<d", bytes(onum), 8 * pos)[0]
    if onone is not None and bytes(onone)[pos]:
        on = None
    sc = None
    if scores is not None:
        s = bytes(scores)
        sw = len(s) // n
        sc = s[pos * sw : (pos + 1) * sw]
    return (
        decision_ids(str(bid), pos + 1)[pos], int(ts), ep, var, mname, mver, int(seq),
        bool(shadow), unit, rid, lay, raw[pos * w : (pos + 1) * w],
        None if txt is None else orjson.loads(txt)[pos], out, on, float(lat), sc,
        None if ctx is None else orjson.loads(ctx)[pos],
    )  # fmt: skip


# --- evidence -------------------------------------------------------------------

_P32 = struct.Struct(">I").pack
_P64 = struct.Struct(">q").pack
_PF = struct.Struct(">d").pack
_INPUTS_TAG = _P32(len(b"chronoml/inputs/v1")) + b"chronoml/inputs/v1"
_LEAF_TAG = b"\x00" + _P32(len(b"chronoml/decision/v2")) + b"chronoml/decision/v2"


def _s(v: str) -> bytes:
    raw = v.encode("utf-8")
    return _P32(len(raw)) + raw


def _f(x: float) -> bytes:
    if math.isfinite(x):
        return b"\x01" + _PF(x)
    return b"\x02" + _s("nan" if math.isnan(x) else ("inf" if x > 0 else "-inf"))


def commit(block: Block) -> tuple[bytes, bytes, bytes]:
    """Fresh salts, input commitments and leaf hashes of the block's decisions, each the
    rows' values end to end (16, 32 and 32 bytes a row).

    The bytes are those of :func:`~chronoml.domain.leaves.inputs_commitment` and
    :class:`~chronoml.domain.leaves.DecisionLeaf` for each decision (a test pins
    them): what the block's rows share is encoded once, each row's preimage is a
    row of one matrix, and the rows' two or three SHA-256 hashes each are made by
    one :func:`chronoml.digests.rows` call per kind, not a Python call a hash. Rows
    with text inputs or a context take the row-by-row encoders.
    """
    n = block.rows
    pool = os.urandom(SALT * n)
    if block.txt.count(None) != n or (block.context is not None and block.context.count(None) != n):
        rows = block.tuples()
        salts = [pool[i * SALT : (i + 1) * SALT] for i in range(n)]
        each = [
            LV.inputs_commitment(r[10], bytes(r[11]), r[12], s, r[17])
            for r, s in zip(rows, salts, strict=True)
        ]
        leaves = [
            _leaf_of(r if r[17] is None else r[:17], c) for r, c in zip(rows, each, strict=True)
        ]
        return pool, b"".join(each), b"".join(leaves)
    num = b"".join(block.num)
    coms = _hash_rows(
        n,
        [_INPUTS_TAG + _P32(SALT), _matrix(pool, n), _s(block.layout) + _P32(len(num) // n),
         _matrix(num, n), b"\x00"],
    )  # fmt: skip
    lat = float(block.latency_ms)
    shared = b"".join(
        (
            _P64(int(block.ts)), _s(block.endpoint), _s(block.variant), _s(block.model_name),
            _s(block.model_version), _P64(int(block.event_seq)),
            b"\x01" if block.shadow else b"\x00",
            b"\x00" if block.unit is None else b"\x01" + _s(block.unit),
            _s(block.request_id), _s(block.layout),
        )
    )  # fmt: skip
    tail = b"\x01" + _PF(lat) if math.isfinite(lat) else _f(lat)
    # each row's class scores digest, marked present: 0x01 then 32 bytes
    score_digests: list[Piece] = (
        [b"\x00"] if block.scores is None else [b"\x01", _matrix(_digest_each(block.scores), n)]
    )
    pieces = [_LEAF_TAG + _P32(36), _matrix("".join(block.ids).encode("ascii"), n), shared,
              _matrix(coms, n), _texts(block.outputs, n), _numbers(block.output_num, n),
              tail, *score_digests, b"\x00"]  # fmt: skip
    return pool, coms, _hash_rows(n, pieces)


# one piece of every row's preimage: the same bytes in each row, one row of a matrix
# each, or (rows of differing widths) one value each
Piece = bytes | np.ndarray[Any, Any] | list[bytes]


def _matrix(raw: bytes, n: int) -> np.ndarray[Any, Any]:
    """``raw`` as ``n`` rows of equal width."""
    return np.frombuffer(raw, dtype=np.uint8).reshape(n, len(raw) // n)


def _texts(values: list[str], n: int) -> Piece:
    """The output texts' encodings, each distinct text encoded once."""
    first = values[0]
    if values.count(first) == n:
        return _s(first)
    enc = {v: _s(v) for v in set(values)}
    return _column(list(map(enc.__getitem__, values)), n)


def _numbers(values: list[float | None], n: int) -> Piece:
    """The output numbers' encodings: a matrix when every one is finite (the usual case)."""
    nones = values.count(None)
    if nones == n:
        return b"\x00"
    if nones == 0:
        arr = np.asarray(values, dtype=np.float64)
        if np.isfinite(arr).all():
            mat = np.empty((n, 9), dtype=np.uint8)
            mat[:, 0] = 1
            mat[:, 1:] = arr.astype(">f8").view(np.uint8).reshape(n, 8)
            return mat
    return _column([b"\x00" if v is None else _f(float(v)) for v in values], n)


def _column(values: list[bytes], n: int) -> Piece:
    """One piece per row: a constant, a matrix when they share a width, else the list."""
    first = values[0]
    if values.count(first) == n:
        return first
    if _one_width(values):
        return _matrix(b"".join(values), n)
    return values


def _hash_rows(n: int, pieces: Sequence[Piece]) -> bytes:
    """SHA-256 of each row's pieces joined, the digests end to end.

    With no list among them the rows are one matrix (each piece copied into its
    columns), hashed slice by slice of its bytes; otherwise each row is joined in
    Python.
    """
    if any(isinstance(p, list) for p in pieces):
        cols = [
            p
            if isinstance(p, list)
            else [p] * n
            if isinstance(p, bytes)
            else [r.tobytes() for r in p]
            for p in pieces
        ]
        return digests.each(list(map(b"".join, zip(*cols, strict=True))))
    parts = [
        np.frombuffer(p, dtype=np.uint8) if isinstance(p, bytes) else np.asarray(p, dtype=np.uint8)
        for p in pieces
    ]
    w = sum(p.shape[-1] for p in parts)
    mat = np.empty((n, w), dtype=np.uint8)
    at = 0
    for p in parts:
        mat[:, at : at + p.shape[-1]] = p
        at += p.shape[-1]
    return digests.rows(mat.data, w)


def _digest_each(values: list[bytes]) -> bytes:
    """The digest of each value, end to end (one call when they share a width)."""
    if _one_width(values) and len(values[0]):
        return digests.rows(b"".join(values), len(values[0]))
    return digests.each(values)


def _leaf_of(r: Sequence[Any], commitment: bytes) -> bytes:
    # lazy: evidence_batch imports this module (to read blocks back for verify)
    from chronoml.store.evidence_batch import decision_leaf_hash

    return decision_leaf_hash(r, commitment)
