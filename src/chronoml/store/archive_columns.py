"""Reading a range of decisions as Arrow columns, for the archiver.

A chunk of archived decisions is a few hundred thousand rows. Turning each into
a driver tuple and then each value into an Arrow one is most of an archive
run's time, so the columns are read in bulk where the database allows it:

- PostgreSQL: one statement that aggregates each column of the chunk into one
  value: the bytes of its values end to end, and their lengths (``string_agg``
  over ``int8send``, ``float8send``, the texts' UTF-8 and the binaries), read
  in binary. Arrow arrays are then built over those buffers as they are, so
  every value arrives bit for bit as stored, with no per-row work in Python
  or in the driver.
- elsewhere (SQLite): one query through the driver, with the cyclic garbage
  collector paused (a few hundred thousand fresh tuples would make it walk
  them all several times); the rows are transposed once and each column
  converted by Arrow in one call.
"""

from __future__ import annotations

import gc
import itertools
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Connection, select

from chronoml.domain.archive import ArchiveError
from chronoml.domain.codec import NUMERIC_KINDS
from chronoml.store import archive_parquet as AP
from chronoml.store import ingest, schema
from chronoml.store.archive_values import UUID16, uuid_bytes, uuid_texts

D = schema.decisions
_COLS = [D.c[c] for c in AP.COLUMNS]


@dataclass
class Chunk:
    """Decisions as columns: every one of ``AP.COLUMNS`` but ``num`` (Arrow arrays;
    ``id`` and ``request_id`` as text or as 16-byte UUIDs), and ``num``, each row's
    packed inputs, as one binary array."""

    arrays: dict[str, pa.Array]
    num: pa.Array

    def __len__(self) -> int:
        return len(self.num)

    @property
    def ts(self) -> np.ndarray[Any, Any]:
        ts: np.ndarray[Any, Any] = self.arrays["ts"].to_numpy()
        return ts

    def head(self, n: int) -> Chunk:
        return Chunk({k: v.slice(0, n) for k, v in self.arrays.items()}, self.num.slice(0, n))

    def pieces(self, rows: int) -> list[Chunk]:
        """The chunk in consecutive pieces of at most ``rows`` rows (about equal sizes)."""
        n = len(self)
        k = max(1, -(-n // rows))
        cuts = [n * i // k for i in range(k + 1)]
        return [self.slice(a, b - a) for a, b in itertools.pairwise(cuts)]

    def slice(self, start: int, n: int) -> Chunk:
        return Chunk(
            {k: v.slice(start, n) for k, v in self.arrays.items()}, self.num.slice(start, n)
        )

    def take(self, idx: np.ndarray[Any, Any]) -> Chunk:
        ix = pa.array(idx)
        return Chunk({k: v.take(ix) for k, v in self.arrays.items()}, self.num.take(ix))

    def by_layout(self) -> list[tuple[str, Chunk]]:
        """The rows of each input layout (time order kept)."""
        col = self.arrays["layout"]
        layouts = pc.unique(col).to_pylist()
        if len(layouts) == 1:
            return [(layouts[0], self)]
        return [
            (name, self.take(np.flatnonzero(pc.equal(col, name).to_numpy(zero_copy_only=False))))
            for name in layouts
        ]

    def packed(self) -> memoryview:
        """The rows' packed inputs end to end (a view of the column's buffer, not a copy)."""
        arr = self.num.combine_chunks() if isinstance(self.num, pa.ChunkedArray) else self.num
        n = len(arr)
        offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset : arr.offset + n + 1]
        data = arr.buffers()[2]
        return memoryview(b"" if data is None else data)[offsets[0] : offsets[-1]]


# PostgreSQL holds at most 1 GB in one value: an aggregated column stays well below
AGGREGATE_BYTES = 256 * 1024 * 1024


def rows_per_read(conn: Connection, rows: int) -> int:
    """``rows``, or fewer when the widest input layout would make a column's aggregate
    too large (each row also gets 1 KiB for its texts)."""
    if conn.dialect.name != "postgresql":
        return rows
    widest = 0
    for raw in conn.execute(select(schema.input_layouts.c.columns)).scalars():
        widest = max(widest, sum(1 for _, k in orjson.loads(raw) if k in NUMERIC_KINDS))
    return max(1, min(rows, AGGREGATE_BYTES // (8 * widest + 1024)))


def read(conn: Connection, endpoint: str, lo: int, hi: int, limit: int | None) -> Chunk:
    """The decisions of ``endpoint`` with ``lo <= ts < hi`` in ts order (at most ``limit``)."""
    if conn.dialect.name == "postgresql":
        return _aggregated(conn, endpoint, lo, hi, limit)
    q = select(*_COLS).where(D.c.endpoint == endpoint, D.c.ts >= lo, D.c.ts < hi)
    q = q.order_by(D.c.ts).limit(limit)  # the (endpoint, ts) index's order: no sort
    with _no_gc():  # a chunk's row tuples are no cycles: scanning them again and again is waste
        data = conn.execute(q).cursor.fetchall()  # type: ignore[union-attr]
        chunk = of_rows(data)
        del data
    return chunk


@contextmanager
def _no_gc() -> Iterator[None]:
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def of_rows(data: Sequence[Any]) -> Chunk:
    """Decision tuples (``AP.COLUMNS`` order) as a chunk."""
    cols = list(zip(*data, strict=True)) if data else [()] * len(AP.COLUMNS)
    arrays: dict[str, pa.Array] = {}
    for i, name in enumerate(AP.COLUMNS):
        values: Any = cols[i]
        if name in ("num", "scores"):
            arr = pa.array(values, type=pa.binary())  # bytes or any buffer
        elif name == "shadow":
            arr = pa.array(np.asarray(values, dtype=bool))  # SQLite gives 0 and 1
        else:
            arr = pa.array(values, type=AP.TYPES[name])
        arrays[name] = arr
    num = arrays.pop("num")
    return Chunk(arrays, num)


# --- PostgreSQL: every column as one aggregated value ---------------------------------

_TEXTS = ("id", "endpoint", "variant", "model_name", "model_version", "unit", "request_id",
          "layout", "txt", "output", "context")  # fmt: skip
_BYTES = ("num", "scores")


def _aggregates() -> str:
    """One aggregate per column: the values' bytes end to end (and their lengths, -1 for
    NULL); string_agg skips NULLs, so a NULL adds a length and no bytes."""
    one, zero = r"'\x01'::bytea", r"'\x00'::bytea"
    out = ["count(*)"]
    for name in AP.COLUMNS:
        if name in _TEXTS or name in _BYTES:
            # ::text: the ids' text whether stored as uuid (migration 0022) or text
            raw = f"convert_to({name}::text, 'UTF8')" if name in _TEXTS else name
            out.append(f"string_agg(int4send(coalesce(octet_length({raw}), -1)), ''::bytea)")
            out.append(f"string_agg({raw}, ''::bytea)")
        elif name in ("ts", "event_seq"):
            out.append(f"string_agg(int8send({name}), ''::bytea)")
        elif name == "shadow":
            out.append(f"string_agg(CASE WHEN shadow THEN {one} ELSE {zero} END, ''::bytea)")
        else:  # the two floats, exactly as stored, and where they are NULL
            out.append(f"string_agg(float8send(coalesce({name}, 0)), ''::bytea)")
            out.append(
                f"string_agg(CASE WHEN {name} IS NULL THEN {one} ELSE {zero} END, ''::bytea)"
            )
    return ", ".join(out)


_AGG_SQL = (
    f"SELECT {_aggregates()} FROM (SELECT * FROM decisions "
    "WHERE endpoint = %(e)s AND ts >= %(lo)s AND ts < %(hi)s ORDER BY ts {limit}) AS d"
)


def _aggregated(conn: Connection, endpoint: str, lo: int, hi: int, limit: int | None) -> Chunk:
    """The rows through one statement that returns a row of a few large values.

    One aggregation node feeds each row to every aggregate in turn, so the columns stay
    aligned; in the subquery's (time) order, which is checked, and restored if a plan
    ever gave another. Parallel workers (whose partial results would be joined) are off.
    """
    raw = conn.connection.driver_connection
    sql = _AGG_SQL.replace("{limit}", "" if limit is None else f"LIMIT {int(limit)}")
    with raw.cursor() as cur:  # type: ignore[union-attr]
        cur.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        cur.execute(sql, {"e": endpoint, "lo": int(lo), "hi": int(hi)}, binary=True)
        got = cur.fetchone()
    assert got is not None
    n = int(got[0])
    values = iter(got[1:])
    arrays: dict[str, pa.Array] = {}
    for name in AP.COLUMNS:
        if name in _TEXTS or name in _BYTES:
            lengths = np.frombuffer(next(values) or b"", dtype=">i4").astype(np.int32)
            kind = pa.string() if name in _TEXTS else pa.binary()
            arrays[name] = _varlen(kind, n, lengths, next(values) or b"")
        elif name in ("ts", "event_seq"):
            arrays[name] = pa.array(np.frombuffer(next(values) or b"", ">i8").astype("<i8"))
        elif name == "shadow":
            arrays[name] = pa.array(np.frombuffer(next(values) or b"", np.uint8).astype(bool))
        else:
            vals = np.frombuffer(next(values) or b"", ">f8").astype("<f8")
            nulls = np.frombuffer(next(values) or b"", np.uint8).astype(bool)
            arrays[name] = pa.array(vals, mask=nulls if nulls.any() else None)
    if any(len(a) != n for a in arrays.values()):
        raise ValueError("the aggregated columns are not of one length")
    num = arrays.pop("num")
    chunk = Chunk(arrays, num)
    ts = chunk.ts
    if n > 1 and np.any(ts[1:] < ts[:-1]):
        chunk = chunk.take(np.argsort(ts, kind="stable"))
    return chunk


def _varlen(kind: pa.DataType, n: int, lengths: np.ndarray[Any, Any], data: bytes) -> pa.Array:
    """An Arrow array of ``n`` values from their byte lengths (-1: NULL) and bytes."""
    if len(lengths) != n:
        raise ValueError("the aggregated lengths do not match the rows")
    valid = lengths >= 0
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.where(valid, lengths, 0), out=offsets[1:])
    if offsets[-1] != len(data):
        raise ValueError("the aggregated bytes do not match their lengths")
    if offsets[-1] >= 2**31:
        kind = pa.large_string() if kind == pa.string() else pa.large_binary()
    else:
        offsets = offsets.astype(np.int32)
    nulls = int(n - valid.sum())
    mask = pa.array(valid).buffers()[1] if nulls else None
    arr = pa.Array.from_buffers(
        kind, n, [mask, pa.py_buffer(offsets.tobytes()), pa.py_buffer(data)], nulls
    )
    arr.validate(full=kind == pa.string() or kind == pa.large_string())
    return arr.cast(pa.string() if kind in (pa.string(), pa.large_string()) else pa.binary())


# --- decisions held in ingest blocks ----------------------------------------------------

IB = schema.ingest_blocks
ITEMS = schema.evidence_items


def held(
    conn: Connection, endpoint: str, lo: int, upto: int, room: int
) -> tuple[int, Chunk | None, int]:
    """The ingest blocks' decisions of ``[lo, upto)`` as a chunk, at most about ``room`` of
    them (then ``upto`` moves back to the time of the first block left out: the blocks of
    one time go together); with the new ``upto`` and their count. A block not in the
    evidence log is refused, as a row is."""
    q = (
        select(IB.c.ts, IB.c.rows)
        .where(IB.c.endpoint == endpoint, IB.c.ts >= lo, IB.c.ts < upto)
        .order_by(IB.c.ts)
    )
    n = 0
    with conn.execute(q) as counts:  # read only as far as the room goes
        for ts, rows in counts:
            if n + int(rows) > room and n and int(ts) > lo:
                upto = int(ts)
                break
            n += int(rows)
    if not n:
        return upto, None, 0
    span = (IB.c.endpoint == endpoint) & (IB.c.ts >= lo) & (IB.c.ts < upto)
    on = (ITEMS.c.kind == ingest.ITEM_KIND) & (ITEMS.c.ref == IB.c.id)
    missing = (
        select(IB.c.id).select_from(IB.outerjoin(ITEMS, on)).where(span, ITEMS.c.ref.is_(None))
    )
    bad = conn.execute(missing.limit(1)).scalar()
    if bad is not None:
        raise ArchiveError(
            f"ingest block {bad} is not in the evidence log (added outside chronoml): "
            "run audit verify; nothing was archived",
            "decision",
        )
    if conn.dialect.name == "postgresql":
        got = _binary_blocks(conn, endpoint, lo, upto)
    else:
        # the driver's own tuples: no per-row result processing
        q = select(*[IB.c[c] for c in ingest.COLUMNS]).where(span)
        got = list(conn.execute(q).cursor.fetchall())  # type: ignore[union-attr]
    stored = sorted(got, key=lambda r: (int(r[1]), str(r[0])))
    # the blocks read (one logged in the range since it was counted makes the commit's
    # count differ: then nothing moves)
    return upto, of_blocks(stored), sum(int(r[_AT["rows"]]) for r in stored)


_BLOCKS_SQL = (
    f"SELECT {', '.join(ingest.COLUMNS)} FROM ingest_blocks "
    "WHERE endpoint = %(e)s AND ts >= %(lo)s AND ts < %(hi)s"
)


def _binary_blocks(conn: Connection, endpoint: str, lo: int, hi: int) -> list[Any]:
    """The endpoint's ingest blocks of ``[lo, hi)`` in PostgreSQL's binary format: their
    packed columns come as they are stored, not as hex text to decode (a third of the
    time for 200k decisions)."""
    raw = conn.connection.driver_connection
    with raw.cursor() as cur:  # type: ignore[union-attr]
        cur.execute(_BLOCKS_SQL, {"e": endpoint, "lo": int(lo), "hi": int(hi)}, binary=True)
        return list(cur.fetchall())


_SHARED = ("ts", "endpoint", "variant", "model_name", "model_version", "event_seq", "shadow",
           "unit", "request_id", "layout", "latency_ms")  # fmt: skip
_AT = {c: i for i, c in enumerate(ingest.COLUMNS)}


def of_blocks(stored: Sequence[Sequence[Any]]) -> Chunk:
    """Stored ingest block rows (``ingest.COLUMNS`` order, in (ts, id) order) as a chunk of
    their decisions in (ts, id) order, column by column: a block's shared values are repeated, its packed
    columns sliced, and only its per-row texts (outputs, text inputs, context) are
    decoded, as one JSON list per block."""
    if not stored:
        return of_rows([])
    counts = np.array([int(r[_AT["rows"]]) for r in stored], dtype=np.int64)
    n = int(counts.sum())
    arrays: dict[str, pa.Array] = {}
    for name in _SHARED:
        values = [r[_AT[name]] for r in stored]
        if name == "shadow":
            values = [bool(v) for v in values]
        arrays[name] = _repeated(values, AP.TYPES[name], counts, uuids=name == "request_id")
    # decision i of a block: the block's id with i (from 1) in its last 16 bits
    raw = np.frombuffer(
        b"".join(uuid.UUID(str(r[0])).bytes for r in stored), dtype=np.uint8
    ).reshape(-1, 16)
    rows16 = np.repeat(raw, counts, axis=0)
    starts = np.cumsum(counts) - counts
    pos = np.arange(n, dtype=np.int64) - np.repeat(starts, counts) + 1
    rows16[:, 14] = (pos >> 8).astype(np.uint8)
    rows16[:, 15] = (pos & 0xFF).astype(np.uint8)
    ids = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(16), n, [None, pa.py_buffer(rows16.tobytes())]
    )
    arrays["id"] = ids  # as 16 bytes, as a file stores them: texts only where needed
    num = _sliced([bytes(r[_AT["num"]]) for r in stored], counts)
    scores = [None if r[_AT["scores"]] is None else bytes(r[_AT["scores"]]) for r in stored]
    arrays["scores"] = _sliced(scores, counts)
    arrays["txt"] = _texts(stored, "txt", counts)
    arrays["context"] = _texts(stored, "context", counts)
    arrays["output"] = _texts(stored, "outputs", counts)
    outs = np.frombuffer(b"".join(bytes(r[_AT["output_num"]]) for r in stored), dtype="<f8")
    nones = [
        np.zeros(c, dtype=bool) if r[_AT["output_none"]] is None
        else np.frombuffer(bytes(r[_AT["output_none"]]), dtype=np.uint8).astype(bool)
        for r, c in zip(stored, counts.tolist(), strict=True)
    ]  # fmt: skip
    mask = np.concatenate(nones)
    arrays["output_num"] = pa.array(outs, mask=mask if mask.any() else None)
    return Chunk({c: arrays[c] for c in AP.COLUMNS if c != "num"}, num)


def _repeated(
    values: list[Any], kind: pa.DataType, counts: np.ndarray[Any, Any], uuids: bool = False
) -> pa.Array:
    """Each block's value once for each of its rows, built from the values' bytes (an
    Arrow ``take`` of texts costs several times more). ``uuids``: canonical UUID texts
    come out as 16-byte values, as a file stores them."""
    n = int(counts.sum())
    if None not in values:
        if uuids and (raw := uuid_bytes(pa.array(values, pa.string()))) is not None:
            rows = np.frombuffer(raw.buffers()[1], dtype=np.uint8).reshape(-1, 16)
            data = pa.py_buffer(np.repeat(rows, counts, axis=0).tobytes())
            return pa.FixedSizeBinaryArray.from_buffers(UUID16, n, [None, data])
        if kind == pa.string():
            enc = [v.encode() for v in values]
            lengths = np.repeat(np.fromiter(map(len, enc), np.int64, len(enc)), counts)
            offsets = np.zeros(n + 1, dtype=np.int64)
            np.cumsum(lengths, out=offsets[1:])
            if offsets[-1] < 2**31:
                text = b"".join(e * c for e, c in zip(enc, counts.tolist(), strict=True))
                off = pa.py_buffer(offsets.astype(np.int32).tobytes())
                return pa.StringArray.from_buffers(n, off, pa.py_buffer(text))
        elif kind in (pa.int64(), pa.float64(), pa.bool_()):
            return pa.array(np.repeat(np.array(values, dtype=kind.to_pandas_dtype()), counts))
    each = pa.array(np.repeat(np.arange(len(values)), counts))  # the block of each row
    return pa.array(values, type=kind).take(each)


def _sliced(values: Sequence[bytes | None], counts: np.ndarray[Any, Any]) -> pa.Array:
    """Per-block packed bytes (each ``count`` values of one width, or None: every row
    NULL) as one binary array of a value per row."""
    n = int(counts.sum())
    widths = np.array(
        [0 if v is None else len(v) // max(int(c), 1) for v, c in zip(values, counts, strict=True)],
        dtype=np.int64,
    )
    lengths = np.repeat(widths, counts)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    valid = np.repeat(np.array([v is not None for v in values]), counts)
    data = b"".join(v for v in values if v is not None)
    return _varlen(pa.binary(), n, np.where(valid, lengths, -1).astype(np.int32), data)


def _texts(stored: Sequence[Sequence[Any]], name: str, counts: np.ndarray[Any, Any]) -> pa.Array:
    """A per-row text column kept as one JSON list per block, as one text array."""
    n = int(counts.sum())
    values = [r[_AT[name]] for r in stored]
    if all(v is None for v in values):
        return pa.nulls(n, pa.string())
    if None not in values and (got := _plain_lists(values, counts)) is not None:
        return got
    return pa.array(_listed(stored, name, counts), type=pa.string())


_QUOTE, _BACKSLASH = ord('"'), ord("\\")


def _plain_lists(lists: Sequence[str], counts: np.ndarray[Any, Any]) -> pa.Array | None:
    """JSON lists of texts (one per block, ``counts`` values each) as one array of their
    values, without parsing each list: when no value holds an escape (no backslash
    anywhere), every quote opens or closes a value and the bytes between two quotes are
    the value itself. The bytes outside the values must then be exactly ``[``, a comma
    between values, and ``]`` for each list; None when they are not, or on an escape
    (the caller parses the lists then)."""
    buf = np.frombuffer("".join(lists).encode(), dtype=np.uint8)
    n = int(counts.sum())
    quote = buf == _QUOTE
    q = np.flatnonzero(quote)
    if len(q) != 2 * n or (buf == _BACKSLASH).any():
        return None
    inside = (np.cumsum(quote) & 1).astype(bool) & ~quote
    frame = b"".join(b"[" + b"," * (c - 1) + b"]" if c else b"[]" for c in counts.tolist())
    if buf[~inside & ~quote].tobytes() != frame:
        return None
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(q[1::2] - q[0::2] - 1, out=offsets[1:])
    data = buf[inside]
    if offsets[-1] >= 2**31:
        return None
    arr = pa.StringArray.from_buffers(
        n, pa.py_buffer(offsets.astype(np.int32).tobytes()), pa.py_buffer(data.tobytes())
    )
    arr.validate(full=True)
    return arr


def _listed(stored: Sequence[Sequence[Any]], name: str, counts: np.ndarray[Any, Any]) -> list[Any]:
    """A per-row text column kept as one JSON list per block (NULL: every row NULL)."""
    out: list[Any] = []
    for r, c in zip(stored, counts.tolist(), strict=True):
        v = r[_AT[name]]
        out += [None] * c if v is None else orjson.loads(v)
    return out


def joined(a: Chunk, b: Chunk) -> Chunk:
    """The rows of two chunks as one, in (ts, id) order."""
    arrays = {}
    for k, v in a.arrays.items():
        x, y = texts(v), texts(b.arrays[k])
        arrays[k] = pa.concat_arrays([x, y.cast(x.type)])
    both = Chunk(arrays, pa.concat_arrays([a.num, b.num.cast(a.num.type)]))
    keys = pa.table({"ts": arrays["ts"], "id": arrays["id"]})
    order = pc.sort_indices(keys, sort_keys=[("ts", "ascending"), ("id", "ascending")])
    return both.take(order.to_numpy())


def texts(arr: pa.Array) -> pa.Array:
    """A column of a chunk with UUIDs as texts (a chunk of ingest blocks holds its ids and
    request ids as 16-byte values)."""
    return uuid_texts(arr) if arr.type == UUID16 else arr
