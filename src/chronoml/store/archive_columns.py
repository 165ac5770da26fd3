"""Reading a range of decisions as Arrow columns, for the archiver.

A chunk of archived decisions is a few hundred thousand rows. Turning each into
a driver tuple and then each value into an Arrow one is most of an archive
run's time, so the columns are read in bulk where the database allows it:

- PostgreSQL: one ``COPY (SELECT ...) TO STDOUT`` in CSV, parsed by pyarrow's
  CSV reader (C++, every column at once). Binary values (the packed inputs, the
  class scores) and the two floats (through ``float8send``) travel as hex and
  are decoded with one vectorised pass over the whole column, so every value
  arrives bit for bit as stored; texts are quoted, so a NULL and an empty text
  stay apart.
- elsewhere (SQLite): one query through the driver; its rows are transposed
  once and each column converted by Arrow in one call.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
from sqlalchemy import Connection, select

from chronoml.store import archive_parquet as AP
from chronoml.store import schema

D = schema.decisions
_COLS = [D.c[c] for c in AP.COLUMNS]
_HEXED = ("num", "scores", "output_num", "latency_ms")


@dataclass
class Chunk:
    """Decisions as columns: every one of ``AP.COLUMNS`` but ``num`` (Arrow arrays),
    and ``num``, each row's packed inputs, as one binary array."""

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

    def packed(self) -> bytes:
        """The rows' packed inputs end to end."""
        arr = self.num.combine_chunks() if isinstance(self.num, pa.ChunkedArray) else self.num
        n = len(arr)
        offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset : arr.offset + n + 1]
        data = arr.buffers()[2]
        return b"" if data is None else bytes(memoryview(data)[offsets[0] : offsets[-1]])


def read(conn: Connection, endpoint: str, lo: int, hi: int, limit: int | None) -> Chunk:
    """The decisions of ``endpoint`` with ``lo <= ts < hi`` in ts order (at most ``limit``)."""
    if conn.dialect.name == "postgresql":
        return _copy(conn, endpoint, lo, hi, limit)
    q = select(*_COLS).where(D.c.endpoint == endpoint, D.c.ts >= lo, D.c.ts < hi)
    q = q.order_by(D.c.ts).limit(limit)  # the (endpoint, ts) index's order: no sort
    data = conn.execute(q).cursor.fetchall()  # type: ignore[union-attr]
    return of_rows(data)


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


# --- PostgreSQL: COPY in CSV -------------------------------------------------------


def _select_sql(limit: int | None) -> str:
    exprs = []
    for name in AP.COLUMNS:
        if name in ("num", "scores"):
            exprs.append(f"encode({name}, 'hex')")
        elif name in ("output_num", "latency_ms"):
            exprs.append(f"encode(float8send({name}), 'hex')")
        else:
            exprs.append(name)
    sql = (
        f"SELECT {', '.join(exprs)} FROM decisions "
        "WHERE endpoint = {e} AND ts >= {lo} AND ts < {hi} ORDER BY ts"
    )
    return sql + ("" if limit is None else f" LIMIT {int(limit)}")


def _copy(conn: Connection, endpoint: str, lo: int, hi: int, limit: int | None) -> Chunk:
    from psycopg import sql

    stmt = sql.SQL(
        "COPY (" + _select_sql(limit) + ") TO STDOUT WITH (FORMAT csv, FORCE_QUOTE *)"
    ).format(e=sql.Literal(endpoint), lo=sql.Literal(int(lo)), hi=sql.Literal(int(hi)))
    raw = conn.connection.driver_connection
    buf = io.BytesIO()
    with raw.cursor() as cur, cur.copy(stmt) as copy:  # type: ignore[union-attr]
        for part in copy:
            buf.write(part)
    return _parse(buf.getvalue())


def _parse(data: bytes) -> Chunk:
    types = {n: (pa.string() if n in _HEXED else AP.TYPES[n]) for n in AP.COLUMNS}
    if not data:
        return of_rows([])
    table = pcsv.read_csv(
        io.BytesIO(data),
        read_options=pcsv.ReadOptions(column_names=list(AP.COLUMNS)),
        parse_options=pcsv.ParseOptions(newlines_in_values=True),
        convert_options=pcsv.ConvertOptions(
            column_types=types,
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,  # every value is quoted: only NULL is bare
            true_values=["t"],
            false_values=["f"],
        ),
    )
    arrays: dict[str, pa.Array] = {}
    for name in AP.COLUMNS:
        col = table.column(name).combine_chunks()
        if name in ("num", "scores"):
            col = unhex(col)
        elif name in ("output_num", "latency_ms"):
            col = _float8(unhex(col))
        arrays[name] = col
    num = arrays.pop("num")
    return Chunk(arrays, num)


_NIBBLE = np.full(256, 255, dtype=np.uint8)
_NIBBLE[np.frombuffer(b"0123456789abcdef", dtype=np.uint8)] = np.arange(16, dtype=np.uint8)


def unhex(arr: pa.Array) -> pa.Array:
    """Hex texts as the binary values they spell (nulls stay null), in one pass."""
    n = len(arr)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset : arr.offset + n + 1]
    data = arr.buffers()[2]
    chars = (
        np.zeros(0, dtype=np.uint8)
        if data is None
        else np.frombuffer(data, dtype=np.uint8)[offsets[0] : offsets[-1]]
    )
    nib = _NIBBLE[chars]
    if len(chars) % 2 or np.any(nib == 255) or np.any((offsets - offsets[0]) % 2):
        raise ValueError("a binary value did not arrive as hex")
    raw = (nib[0::2] << 4) | nib[1::2]
    new_offsets = ((offsets - offsets[0]) // 2).astype(np.int32)
    validity = arr.buffers()[0] if arr.null_count else None
    if validity is not None and arr.offset:
        return pa.array(
            [None if v is None else bytes.fromhex(v) for v in arr.to_pylist()], pa.binary()
        )
    return pa.BinaryArray.from_buffers(
        pa.binary(), n, [validity, pa.py_buffer(new_offsets), pa.py_buffer(raw)], arr.null_count
    )


def _float8(arr: pa.Array) -> pa.Array:
    """8-byte big-endian values (``float8send``) as float64, nulls kept."""
    n = len(arr)
    data = arr.buffers()[2]
    vals = np.frombuffer(data, dtype=">f8") if data is not None else np.zeros(0, ">f8")
    if arr.null_count == 0:
        if len(vals) != n:
            raise ValueError("a float did not arrive as 8 bytes")
        return pa.array(vals.astype("<f8"))
    valid = arr.is_valid().to_numpy(zero_copy_only=False)
    out = np.zeros(n, dtype="<f8")
    if len(vals) != int(valid.sum()):
        raise ValueError("a float did not arrive as 8 bytes")
    out[valid] = vals
    return pa.array(out, mask=~valid)
