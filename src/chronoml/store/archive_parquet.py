"""Decisions as Parquet: one file per endpoint and input layout, in time order.

Every stored column of a decision becomes a Parquet column, except the packed
numeric inputs, which become one column each (``input.<name>``), so a drift
window reads only the features it needs and the file compresses by column.
This module alone knows how a file is laid out; :func:`read` always gives back
the logical columns (ids as text, inputs as float64 or int64), whatever the
physical encoding:

- ``id`` and ``request_id``: 16-byte fixed binary when every value of the file
  is a canonical UUID text (ours are time-ordered, so byte-stream-split puts
  the time bytes in streams that compress to almost nothing); text otherwise.
- ``ts``: delta encoded (the rows are in time order).
- a float input whose every value is a decimal with at most ``MAX_DECIMALS``
  digits after the point (prices, rates, rounded sensor readings) is stored as
  the int64 ``round(x * 10**k)``; ``that / 10**k`` gives back the same float64
  bit for bit (IEEE division is correctly rounded, and the file is only kept
  when every value comes back identical). The scale ``k`` of each such column
  is in the footer (``chronoml.decimals``).
- a float input with few distinct values (at most one in ``FEW``): float64,
  dictionary encoded; so are decimal and integer inputs with few values, and
  those with many are byte-stream-split (amounts with two decimals: 1.8 bytes
  a value instead of 2.5 in a dictionary).
- other floats: split in two columns, both byte-stream-split: the low 48 bits of
  each value (``input.<name>``, int64) and its top 16 bits, sign, exponent and
  the mantissa's first 4 bits (``input.<name>:hi``, uint16). The low bytes of
  measured values are noise that no encoding compresses; in one float column
  their page also holds the exponent's bytes, which then compress worse. Apart,
  30 normal floats take about 8 bytes a decision fewer (7.16 bytes a float
  instead of 7.43, in files of 16k decisions). The columns listed under
  ``chronoml.split`` are stored so.
- integer inputs: int64; repeated texts (endpoint, variant, version, unit,
  output): dictionary encoded.

Files are written with pyarrow (zstd, row groups of 64k rows with min/max
statistics, so a read filtered on ``ts`` or ``id`` skips the row groups outside
it; the archiver's files hold at most 32k decisions, one row group). The packed bytes are rebuilt exactly from the input columns, so each
decision's evidence leaf is recomputable from the file.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from chronoml.domain import codec
from chronoml.domain.archive import ArchiveError
from chronoml.domain.codec import NUMERIC_KINDS, Schema
from chronoml.store.archive_values import (
    HI,
    UUID16,
    decimal_scale,
    few,
    floats_of,
    joined,
    scaled,
    uuid_bytes,
    uuid_texts,
)

# the stored decision columns, in ``decisions.COLUMNS`` order
COLUMNS = (
    "id", "ts", "endpoint", "variant", "model_name", "model_version", "event_seq", "shadow",
    "unit", "request_id", "layout", "num", "txt", "output", "output_num", "latency_ms",
    "scores", "context",
)  # fmt: skip
TYPES: dict[str, pa.DataType] = {
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
ZSTD_LEVEL = 1
NUM = COLUMNS.index("num")
UUID_COLUMNS = ("id", "request_id")
_LAYOUT_KEY = b"chronoml.layout"
_DECIMALS_KEY = b"chronoml.decimals"
_SPLIT_KEY = b"chronoml.split"


def input_column(name: str) -> str:
    return f"input.{name}"


def numeric_inputs(sch: Schema) -> list[tuple[str, str]]:
    return [(c, k) for c, k in sch if k in NUMERIC_KINDS]


def input_names(sch: Schema) -> list[str]:
    """The Parquet columns holding ``sch``'s numeric inputs."""
    return [input_column(c) for c, _ in numeric_inputs(sch)]


# --- writing -------------------------------------------------------------------


def columns_of_rows(rows: Sequence[Sequence[Any]]) -> tuple[dict[str, pa.Array], bytes]:
    """Decision tuples (COLUMNS order) as Arrow columns, and their packed inputs joined."""
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
        arrays[name] = pa.array(values, type=TYPES[name])
    nums = cols[NUM]
    packed = b"".join(nums if all(type(v) is bytes for v in nums) else [bytes(v) for v in nums])
    return arrays, packed


def encode(rows: Sequence[Sequence[Any]], sch: Schema) -> tuple[bytes, bytes]:
    """The Parquet bytes of ``rows`` (tuples in COLUMNS order, one layout, time order),
    and the packed inputs they were built from (joined), to compare after reading back."""
    arrays, packed = columns_of_rows(rows)
    return encode_columns(arrays, packed, sch), packed


def physical(arrays: Mapping[str, pa.Array], packed: bytes | memoryview, sch: Schema) -> pa.Table:
    """The table a file stores for the decision columns ``arrays`` (every column of
    COLUMNS but ``num``, one layout, time order) and their packed inputs."""
    n = len(arrays["id"])
    numeric = numeric_inputs(sch)
    if len(packed) != 8 * len(numeric) * n:
        raise ArchiveError("packed inputs do not match their layout's numeric columns", "num")
    out: dict[str, pa.Array] = {}
    for name in COLUMNS:
        if name == "num":
            continue
        arr = arrays[name]
        if name in UUID_COLUMNS and arr.type != UUID16:
            arr = uuid_bytes(arr) or arr
        out[name] = arr
    # one column after another in memory: each input's values read contiguously
    mat = np.frombuffer(packed, dtype="<f8").reshape(n, len(numeric)).T.copy()
    decimals: dict[str, int] = {}
    split: list[str] = []
    for j, (c, k) in enumerate(numeric):
        col = mat[j]
        name = input_column(c)
        if k == "int":
            out[name] = pa.array(col.view("<i8"))
            continue
        scale = decimal_scale(col)
        if scale is None:
            stored = floats_of(name, col)
            split += [name] if len(stored) == 2 else []
            out.update(stored)
        else:
            got = scaled(col, scale)
            assert got is not None  # decimal_scale checked it
            out[name] = pa.array(got)
            decimals[name] = scale
    meta = {
        _LAYOUT_KEY: orjson.dumps([list(c) for c in sch]),
        _DECIMALS_KEY: orjson.dumps(decimals),
        _SPLIT_KEY: orjson.dumps(split),
    }
    return pa.table(out).replace_schema_metadata(meta)


def encode_columns(arrays: Mapping[str, pa.Array], packed: bytes, sch: Schema) -> bytes:
    """The Parquet bytes of the decision columns ``arrays`` and their packed inputs."""
    table = physical(arrays, packed, sch)
    return write(table)


def write(table: pa.Table) -> bytes:
    """The file of a physical table (see :func:`physical`)."""
    encodings: dict[str, str] = {"ts": "DELTA_BINARY_PACKED"}
    split = set(orjson.loads((table.schema.metadata or {}).get(_SPLIT_KEY, b"[]")))
    for f in table.schema:
        uuid = f.name in UUID_COLUMNS and f.type == UUID16
        if uuid or f.name in split or f.name.removesuffix(HI) in split:
            encodings[f.name] = "BYTE_STREAM_SPLIT"
        elif f.name.startswith("input.") and not few(table.column(f.name)):
            encodings[f.name] = "BYTE_STREAM_SPLIT"  # amounts, counts: ints of many values
    buf = io.BytesIO()
    pq.write_table(
        table,
        buf,
        compression="zstd",
        compression_level=ZSTD_LEVEL,
        row_group_size=ROW_GROUP,
        use_dictionary=[c for c in table.column_names if c not in encodings and c != "scores"],
        column_encoding=encodings,
        write_statistics=True,
    )
    return buf.getvalue()


def erased(
    table: pa.Table, erased: np.ndarray[Any, Any], keep_context: np.ndarray[Any, Any]
) -> pa.Table:
    """A physical table (as :func:`read_physical` gives a whole file) with the inputs of
    the rows in ``erased`` gone, as erasure leaves a row in the database: packed inputs
    NaN (an int input the NaN bit pattern), text inputs missing, context missing unless
    ``keep_context`` (it is in the decision's leaf); every other column as it was, value
    for value and in the same encoding. A decimal input column with an erased row
    becomes a float column (NaN has no integer form)."""
    sch = layout_of(table)
    meta = dict(table.schema.metadata or {})
    decimals: dict[str, int] = orjson.loads(meta.get(_DECIMALS_KEY, b"{}"))
    split: list[str] = orjson.loads(meta.get(_SPLIT_KEY, b"[]"))
    kinds = {input_column(c): k for c, k in numeric_inputs(sch)}
    gone = pa.array(erased)
    out: dict[str, pa.Array] = {}
    for name in table.column_names:
        col = table.column(name).combine_chunks()
        if name == "txt":
            col = pc.if_else(gone, pa.scalar(None, col.type), col)
        elif name == "context":
            col = pc.if_else(pa.array(erased & ~keep_context), pa.scalar(None, col.type), col)
        elif name in kinds and kinds[name] == "int":
            ints = col.to_numpy().copy()
            ints[erased] = codec.ERASED_INT
            col = pa.array(ints)
        elif name in kinds:  # a float: erased as NaN, then stored as a new file would
            if name in split:
                floats = joined(col, table.column(name + HI).combine_chunks())
            elif name in decimals:
                floats = col.to_numpy() / 10.0 ** decimals.pop(name)
            else:
                floats = col.to_numpy().copy()
            floats[erased] = np.nan
            got = floats_of(name, floats)
            split = [c for c in split if c != name] + ([name] if len(got) == 2 else [])
            out.update(got)
            continue
        elif name.removesuffix(HI) in kinds:  # a split column's top bits, already done
            continue
        out[name] = col
    meta[_DECIMALS_KEY] = orjson.dumps(decimals)
    meta[_SPLIT_KEY] = orjson.dumps(sorted(split))
    return pa.table(out).replace_schema_metadata(meta)


# --- reading -------------------------------------------------------------------


def _expression(filters: Sequence[tuple[str, str, Any]], schema: pa.Schema) -> Any:
    expr = None
    for name, op, value in filters:
        field = pc.field(name)
        if name in UUID_COLUMNS and schema.field(name).type == UUID16:
            if op not in ("==", "in"):
                raise ArchiveError(f"an archive read cannot filter {name} with {op}", name)
            vals = [value] if op == "==" else list(value)
            got = [uuid_bytes(pa.array([v], pa.string())) for v in vals]
            keys = [g[0] for g in got if g is not None]  # a value no UUID matches nothing
            term = field.isin(pa.array(keys, UUID16)) if keys else pc.scalar(False)
        elif op == "in":
            term = field.isin(pa.array(list(value), schema.field(name).type))
        else:
            term = {
                "==": field.__eq__, "!=": field.__ne__, "<": field.__lt__,
                "<=": field.__le__, ">": field.__gt__, ">=": field.__ge__,
            }[op](pc.scalar(value))  # fmt: skip
        expr = term if expr is None else expr & term
    return expr


def read(
    data: bytes,
    columns: Sequence[str] | None = None,
    filters: list[tuple[str, str, Any]] | None = None,
) -> pa.Table:
    """The file's rows (those matching ``filters``; row groups outside them are skipped),
    with the logical columns: ids as text, inputs as float64 (int64 for integer inputs)."""
    try:
        f = pq.ParquetFile(pa.BufferReader(data))
        names = physical_names(f.schema_arrow, columns)
        if filters:
            expr = _expression(filters, f.schema_arrow)
            table = pq.read_table(pa.BufferReader(data), columns=names, filters=expr)
        else:  # the file already opened, and no dataset to plan
            table = f.read(columns=names, use_threads=False)
    except (pa.ArrowException, OSError) as exc:
        raise ArchiveError(f"an archive file cannot be read: {exc}", "archive") from exc
    return logical(table)


def physical_names(schema: pa.Schema, columns: Sequence[str] | None) -> list[str] | None:
    """The stored columns holding the logical ``columns`` (None: all of them)."""
    if columns is None:
        return None
    split = set(orjson.loads((schema.metadata or {}).get(_SPLIT_KEY, b"[]")))
    return [p for c in columns for p in ((c, c + HI) if c in split else (c,))]


def read_physical(data: bytes, columns: Sequence[str] | None = None) -> pa.Table:
    """The file's columns as stored (to compare with what was written)."""
    try:
        return pq.read_table(pa.BufferReader(data), columns=columns)
    except (pa.ArrowException, OSError) as exc:
        raise ArchiveError(f"an archive file cannot be read: {exc}", "archive") from exc


def read_stored(data: bytes, columns: Sequence[str], dictionary: Sequence[str] = ()) -> pa.Table:
    """The stored columns holding the logical ``columns`` (a split float gives its two),
    as stored; ``dictionary``: texts given back dictionary encoded, as the file keeps
    them. For :func:`fill_inputs`, or :func:`logical` then :func:`columns`."""
    try:
        f = pq.ParquetFile(pa.BufferReader(data), read_dictionary=list(dictionary) or None)
        return f.read(columns=physical_names(f.schema_arrow, columns), use_threads=False)
    except (pa.ArrowException, OSError) as exc:
        raise ArchiveError(f"an archive file cannot be read: {exc}", "archive") from exc


def logical(table: pa.Table) -> pa.Table:
    """A physical table (or a selection of its columns) with the logical columns."""
    meta = table.schema.metadata or {}
    decimals: dict[str, int] = orjson.loads(meta.get(_DECIMALS_KEY, b"{}"))
    split = set(orjson.loads(meta.get(_SPLIT_KEY, b"[]")))
    names = set(table.column_names)
    for i, f in enumerate(table.schema):
        if f.name in UUID_COLUMNS and f.type == UUID16:
            col = table.column(i).combine_chunks()
            table = table.set_column(i, f.name, uuid_texts(col))
        elif f.name in decimals:
            ints = table.column(i).to_numpy()
            scaled = ints.astype(np.float64) / 10.0 ** decimals[f.name]
            table = table.set_column(i, f.name, pa.array(scaled))
        elif f.name in split and f.name + HI in names:
            hi = table.column(f.name + HI).combine_chunks()
            floats = joined(table.column(i).combine_chunks(), hi)
            table = table.set_column(i, f.name, pa.array(floats))
    halves = [n + HI for n in split if n + HI in names]
    if halves:
        table = table.drop_columns(halves)
    kept = {k: v for k, v in meta.items() if k not in (_DECIMALS_KEY, _SPLIT_KEY)}
    return table.replace_schema_metadata(kept)


def layout(data: bytes) -> Schema:
    """The input layout a file was written with (from its footer alone)."""
    try:
        meta = pq.ParquetFile(pa.BufferReader(data)).schema_arrow.metadata or {}
        return tuple((c, k) for c, k in orjson.loads(meta[_LAYOUT_KEY]))
    except (pa.ArrowException, OSError, KeyError) as exc:
        raise ArchiveError(f"an archive file cannot be read: {exc}", "archive") from exc


def layout_of(table: pa.Table) -> Schema:
    """The input layout of a table :func:`read` gave."""
    meta = table.schema.metadata or {}
    return tuple((c, k) for c, k in orjson.loads(meta[_LAYOUT_KEY]))


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


def fill_inputs(
    table: pa.Table, sch: Schema, out: Mapping[str, np.ndarray[Any, Any]], at: int
) -> None:
    """The numeric inputs of a physical table (as :func:`read_physical` gives it) written
    into rows ``at`` on of ``out``'s float64 arrays, as :func:`columns` reads them:
    decoded in place, split floats joined, decimals scaled, erased integers missing."""
    meta = table.schema.metadata or {}
    decimals: dict[str, int] = orjson.loads(meta.get(_DECIMALS_KEY, b"{}"))
    split = set(orjson.loads(meta.get(_SPLIT_KEY, b"[]")))
    n = table.num_rows
    for c, k in numeric_inputs(sch):
        name = input_column(c)
        dst = out[c][at : at + n]
        col = table.column(name).to_numpy()
        if k == "int":
            dst[:] = col
            dst[col == codec.ERASED_INT] = np.nan  # erased inputs read as missing
        elif name in split:
            bits = dst.view("<u8")
            bits[:] = table.column(name + HI).to_numpy()
            bits <<= np.uint64(48)
            bits |= col.view("<u8")
        elif name in decimals:
            np.divide(col, 10.0 ** decimals[name], out=dst)
        else:
            dst[:] = col


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
