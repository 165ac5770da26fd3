"""Decisions as Parquet: one file per endpoint and input layout, in time order.

Every stored column of a decision becomes a Parquet column, except the packed
numeric inputs, which become one column each (``input.<name>``: float64, or
int64 for integer inputs), so a drift window reads only the features it needs
and the file compresses by column. The packed bytes are rebuilt exactly from
those columns (they are the same 8-byte values), so each decision's evidence
leaf is recomputable from the file. Files are written with pyarrow
(zstd, row groups of 64k rows with min/max statistics, so a read filtered on
``ts`` or ``id`` skips the row groups outside it).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from chronoml.domain import codec
from chronoml.domain.archive import ArchiveError
from chronoml.domain.codec import NUMERIC_KINDS, Schema

# the stored decision columns, in ``decisions.COLUMNS`` order, except ``num``
COLUMNS = (
    "id", "ts", "endpoint", "variant", "model_name", "model_version", "event_seq", "shadow",
    "unit", "request_id", "layout", "num", "txt", "output", "output_num", "latency_ms",
    "scores", "context",
)  # fmt: skip
_TYPES: dict[str, pa.DataType] = {
    "id": pa.string(),
    "ts": pa.int64(),
    "endpoint": pa.string(),
    "variant": pa.string(),
    "model_name": pa.string(),
    "model_version": pa.string(),
    "event_seq": pa.int64(),
    "shadow": pa.bool_(),
    "unit": pa.string(),
    "request_id": pa.string(),
    "layout": pa.string(),
    "txt": pa.string(),
    "output": pa.string(),
    "output_num": pa.float64(),
    "latency_ms": pa.float64(),
    "scores": pa.binary(),
    "context": pa.string(),
}
ROW_GROUP = 65_536
NUM = COLUMNS.index("num")


def input_column(name: str) -> str:
    return f"input.{name}"


def numeric_inputs(sch: Schema) -> list[tuple[str, str]]:
    return [(c, k) for c, k in sch if k in NUMERIC_KINDS]


def encode(rows: Sequence[Sequence[Any]], sch: Schema) -> tuple[bytes, bytes]:
    """The Parquet bytes of ``rows`` (tuples in COLUMNS order, one layout, time order),
    and the packed inputs they were built from (joined), to compare after reading back."""
    n = len(rows)
    cols = list(zip(*rows, strict=True)) if rows else [()] * len(COLUMNS)
    arrays: dict[str, pa.Array] = {}
    for i, name in enumerate(COLUMNS):
        if name == "num":
            continue
        values: Any = cols[i]
        if name == "shadow":
            arrays[name] = pa.array(np.asarray(values, dtype=bool))  # SQLite gives 0 and 1
            continue
        if name == "scores" and not all(v is None or type(v) is bytes for v in values):
            values = [None if v is None else bytes(v) for v in values]
        arrays[name] = pa.array(values, type=_TYPES[name])
    numeric = numeric_inputs(sch)
    nums = cols[NUM]
    packed = b"".join(nums if all(type(v) is bytes for v in nums) else [bytes(v) for v in nums])
    if len(packed) != 8 * len(numeric) * n:
        raise ArchiveError("packed inputs do not match their layout's numeric columns", "num")
    mat = np.frombuffer(packed, dtype="<f8").reshape(n, len(numeric))
    float_cols = []
    for j, (c, k) in enumerate(numeric):
        col = np.ascontiguousarray(mat[:, j])
        name = input_column(c)
        if k == "int":
            arrays[name] = pa.array(col.view("<i8"))
        else:
            arrays[name] = pa.array(col)
            float_cols.append(name)
    return _write(arrays, sch, float_cols), packed


def _write(arrays: dict[str, pa.Array], sch: Schema, float_cols: list[str]) -> bytes:
    meta = {b"chronoml.layout": orjson.dumps([list(c) for c in sch])}
    table = pa.table(arrays).replace_schema_metadata(meta)
    buf = io.BytesIO()
    pq.write_table(
        table,
        buf,
        compression="zstd",
        row_group_size=ROW_GROUP,
        use_dictionary=[c for c in arrays if c not in float_cols and c != "scores"],
        use_byte_stream_split=float_cols or False,
        write_statistics=True,
    )
    return buf.getvalue()


def erase_rows(
    table: pa.Table, sch: Schema, erased: np.ndarray[Any, Any], keep_context: np.ndarray[Any, Any]
) -> tuple[bytes, bytes]:
    """A file's bytes (from its whole ``table``) with the inputs of the rows in ``erased``
    gone, as erasure leaves a row in the database: packed inputs NaN (an int input the
    NaN bit pattern), text inputs missing, context missing unless ``keep_context`` (it is
    in the decision's leaf); every other column as it was. And the packed inputs."""
    arrays: dict[str, pa.Array] = {}
    numeric = {input_column(c): k for c, k in numeric_inputs(sch)}
    float_cols = [c for c, k in numeric.items() if k != "int"]
    gone = pa.array(erased)
    for name in table.column_names:
        col = table.column(name).combine_chunks()
        if name in numeric:
            values = col.to_numpy()
            blank = codec.ERASED_INT if numeric[name] == "int" else np.nan
            col = pa.array(np.where(erased, blank, values).astype(values.dtype))
        elif name == "txt":
            col = pc.if_else(gone, pa.scalar(None, col.type), col)
        elif name == "context":
            col = pc.if_else(pa.array(erased & ~keep_context), pa.scalar(None, col.type), col)
        arrays[name] = col
    data = _write(arrays, sch, float_cols)
    return data, packed_inputs(pa.table(arrays), sch).tobytes()


def read(
    data: bytes,
    columns: Sequence[str] | None = None,
    filters: list[tuple[str, str, Any]] | None = None,
) -> pa.Table:
    """The file's rows (those matching ``filters``; row groups outside them are skipped)."""
    try:
        return pq.read_table(pa.BufferReader(data), columns=columns, filters=filters or None)
    except (pa.ArrowException, OSError) as exc:
        raise ArchiveError(f"an archive file cannot be read: {exc}", "archive") from exc


def layout(data: bytes) -> Schema:
    """The input layout a file was written with (from its footer alone)."""
    try:
        meta = pq.ParquetFile(pa.BufferReader(data)).schema_arrow.metadata or {}
        return tuple((c, k) for c, k in orjson.loads(meta[b"chronoml.layout"]))
    except (pa.ArrowException, OSError, KeyError) as exc:
        raise ArchiveError(f"an archive file cannot be read: {exc}", "archive") from exc


def packed_inputs(table: pa.Table, sch: Schema) -> np.ndarray[Any, Any]:
    """The packed numeric inputs of every row, rebuilt bit for bit (rows x 8k bytes)."""
    numeric = numeric_inputs(sch)
    mat = np.empty((table.num_rows, len(numeric)), dtype="<f8")
    for j, (c, k) in enumerate(numeric):
        col = table.column(input_column(c)).to_numpy()
        mat[:, j] = col.view("<f8") if k == "int" else col
    return mat


def rows(table: pa.Table, sch: Schema) -> list[tuple[Any, ...]]:
    """Decision tuples in COLUMNS order (``num`` rebuilt), as the database held them."""
    n = table.num_rows
    if n == 0:
        return []
    mat = packed_inputs(table, sch)
    w = mat.shape[1] * 8
    buf = mat.tobytes()
    nums = [buf[i * w : (i + 1) * w] for i in range(n)]
    cols: list[list[Any]] = []
    for name in COLUMNS:
        if name == "num":
            cols.append(nums)
        else:
            cols.append(table.column(name).to_pylist())
    return list(zip(*cols, strict=True))


def columns(table: pa.Table, sch: Schema) -> dict[str, np.ndarray[Any, Any]]:
    """The inputs as statistics read them (``decisions.window``): float64 per numeric
    column, decoded values for the others."""
    n = table.num_rows
    got: dict[str, np.ndarray[Any, Any]] = {}
    for c, k in numeric_inputs(sch):
        col = table.column(input_column(c)).to_numpy()
        if k == "int":
            got[c] = col.astype(np.float64)
            erased = col == codec.ERASED_INT
            if erased.any():  # erased inputs read as missing, as from the database
                got[c][erased] = np.nan
        else:
            got[c] = col
    if any(k not in NUMERIC_KINDS for _, k in sch):
        got.update(codec.decode_others(sch, n, table.column("txt").to_pylist()))
    return got


def input_names(sch: Schema) -> list[str]:
    """The Parquet columns holding ``sch``'s numeric inputs."""
    return [input_column(c) for c, _ in numeric_inputs(sch)]
