"""How a decision's inputs and outputs are checked, encoded for the log and decoded again.

A schema is a tuple of ``(column, kind)`` with kind one of ``float``, ``int``,
``bool``, ``string``. Logged inputs keep numeric kinds packed as 8-byte
little-endian values, one run per row (a window of decisions reads back as
one matrix, with ints stored by their bits), and the other kinds as a JSON
array per row. This module is the one encoder and the one decoder of those
bytes: the gateway, the decision log, the columnar blocks and replay all use it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
import pandas as pd

from chronoml.errors import InvalidInput

Schema = tuple[tuple[str, str], ...]
NUMERIC_KINDS = frozenset({"float", "int", "bool"})
# the bits of an erased value (NaN): an int column reads them as this number
ERASED_INT = int(np.array(np.nan, dtype="<f8").view("<i8"))


def schema_from_frame(df: pd.DataFrame) -> Schema:
    """A schema inferred from a frame, for models logged without a signature."""
    out = []
    for col in df.columns:
        dt = df[col].dtype
        if pd.api.types.is_bool_dtype(dt):
            kind = "bool"
        elif pd.api.types.is_integer_dtype(dt):
            kind = "int"
        elif pd.api.types.is_float_dtype(dt):
            kind = "float"
        else:
            kind = "string"
        out.append((str(col), kind))
    return tuple(out)


def layout_id(schema: Schema) -> str:
    return hashlib.blake2b(orjson.dumps([list(c) for c in schema]), digest_size=8).hexdigest()


def conform(cols: dict[str, list[Any]], schema: Schema | None) -> pd.DataFrame:
    """Check columns against ``schema`` and build the frame the model gets.

    Missing, extra or wrongly typed columns raise InvalidInput naming the column.
    """
    if schema is None:
        if any(k.startswith("\x00") or k == "" for k in cols):
            raise InvalidInput("this model has no input signature: send named columns")
        return pd.DataFrame(cols)
    names = [c for c, _ in schema]
    if any(k.startswith("\x00") for k in cols):
        if len(cols) != len(schema):
            raise InvalidInput(
                f"rows have {len(cols)} values; the model takes {len(schema)}: {names}"
            )
        cols = {name: vals for name, vals in zip(names, cols.values(), strict=True)}
    missing = [c for c in names if c not in cols]
    if missing:
        raise InvalidInput(
            f"missing column {missing[0]!r} (the model takes {len(names)} columns)", missing[0]
        )
    extra = [c for c in cols if c not in set(names)]
    if extra:
        raise InvalidInput(f"unknown column {extra[0]!r}: the model does not take it", extra[0])
    out: dict[str, Any] = {}
    for name, kind in schema:
        out[name] = _column(name, kind, cols[name])
    return pd.DataFrame(out, copy=False)


# Numbers a model gets lie in the float32 range: tree libraries compute in
# float32, so a larger double becomes infinite inside them (and overflows
# linear models' arithmetic). The same rule holds in every input format.
LARGEST = float(np.finfo(np.float32).max)
INT64 = (-(2**63), 2**63 - 1)


def _column(name: str, kind: str, values: list[Any]) -> np.ndarray[Any, Any]:
    if kind == "string":
        for i, v in enumerate(values):
            if not isinstance(v, str):
                raise InvalidInput(
                    f"column {name!r} row {i}: expected a string, got {_tname(v)}", name
                )
        return np.asarray(values, dtype=object)
    if kind == "bool":
        for i, v in enumerate(values):
            if not isinstance(v, bool):
                raise InvalidInput(
                    f"column {name!r} row {i}: expected true/false, got {_tname(v)}", name
                )
        return np.asarray(values, dtype=bool)
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise InvalidInput(f"column {name!r} row {i}: expected a number, got {_tname(v)}", name)
        if kind == "int":
            if isinstance(v, float) and not (math.isfinite(v) and v.is_integer()):
                raise InvalidInput(f"column {name!r} row {i}: expected an integer, got {v}", name)
            if not INT64[0] <= v <= INT64[1]:
                raise InvalidInput(f"column {name!r} row {i}: {v} is beyond int64", name)
        elif not (math.isfinite(v) and -LARGEST <= v <= LARGEST):
            raise InvalidInput(out_of_range(name, i, v), name)
    if kind == "int":
        return np.asarray(values, dtype=np.int64)
    return np.asarray(values, dtype=np.float64)


def out_of_range(name: str, row: int, value: Any) -> str:
    return (
        f"column {name!r} row {row}: {value} is not a finite number within "
        f"+-{LARGEST:.4g} (the float32 range models compute in)"
    )


def finite_in_range(mat: np.ndarray[Any, Any]) -> bool:
    """Whether every value of a float matrix is finite and within the float32 range."""
    if mat.size == 0:
        return True
    # one pass: the largest magnitude is NaN or infinite when any value is
    return float(np.abs(mat).max()) <= LARGEST


def _tname(v: Any) -> str:
    return (
        "null"
        if v is None
        else {str: "a string", bool: "a boolean", list: "a list", dict: "an object"}.get(
            type(v), type(v).__name__
        )
    )


def encode(df: pd.DataFrame, schema: Schema) -> tuple[list[bytes], list[str | None]]:
    """Per row: the packed numeric values and the JSON array of the others."""
    num_cols = [c for c, k in schema if k in NUMERIC_KINDS]
    other = [c for c, k in schema if k not in NUMERIC_KINDS]
    n = len(df)
    if num_cols:
        mat = np.empty((n, len(num_cols)), dtype="<f8")
        for j, (c, k) in enumerate((c, k) for c, k in schema if k in NUMERIC_KINDS):
            col = df[c].to_numpy()
            if k == "int":
                mat[:, j] = col.astype("<i8").view("<f8")
            else:
                mat[:, j] = col.astype("<f8")
        buf = mat.tobytes()
        w = 8 * len(num_cols)
        nums = [buf[i * w : (i + 1) * w] for i in range(n)]
    else:
        nums = [b""] * n
    if other:
        vals = df[other].to_numpy(dtype=object).tolist()
        txts: list[str | None] = [orjson.dumps(r).decode() for r in vals]
    else:
        txts = [None] * n
    return nums, txts


def decode(schema: Schema, num: bytes, txt: str | None) -> dict[str, Any]:
    """One logged row back to ``{column: value}``."""
    arr = np.frombuffer(num, dtype="<f8")
    others = orjson.loads(txt) if txt else []
    out: dict[str, Any] = {}
    i = j = 0
    for name, kind in schema:
        if kind in NUMERIC_KINDS:
            v = arr[i]
            if kind == "int":
                out[name] = int(np.array(v).view("<i8"))
            elif kind == "bool":
                out[name] = bool(v)
            else:
                out[name] = None if math.isnan(v) else float(v)
            i += 1
        else:
            out[name] = others[j]
            j += 1
    return out


def decode_numeric(
    sch: Schema, n: int, num: bytes, *, typed: bool = False
) -> dict[str, np.ndarray[Any, Any]]:
    """The numeric columns of ``n`` packed rows, viewed from one buffer without parsing.

    ``typed`` gives each kind its own dtype (int64, bool, float64), as the model
    got them; otherwise every column is float64, as statistics want them.
    """
    numeric = [(c, k) for c, k in sch if k in NUMERIC_KINDS]
    got: dict[str, np.ndarray[Any, Any]] = {}
    if not numeric:
        return got
    mat = np.frombuffer(num, dtype="<f8").reshape(n, len(numeric))
    for j, (c, k) in enumerate(numeric):
        col = mat[:, j]
        if k == "int":
            ints = col.view("<i8")
            got[c] = ints.astype(np.int64 if typed else np.float64)
            if not typed and (ints == ERASED_INT).any():  # erased inputs read as missing
                got[c][ints == ERASED_INT] = np.nan
        elif k == "bool" and typed:
            got[c] = col != 0
        else:
            got[c] = col.astype(np.float64) if typed else col
    return got


def decode_others(
    sch: Schema, n: int, txts: Sequence[str | None]
) -> dict[str, np.ndarray[Any, Any]]:
    """The non-numeric columns of ``n`` rows from each row's JSON array (None: no values)."""
    other = [c for c, k in sch if k not in NUMERIC_KINDS]
    got: dict[str, np.ndarray[Any, Any]] = {}
    if not other:
        return got
    flat = orjson.loads("[" + ",".join(t or "[]" for t in txts) + "]")
    try:  # the usual case, every row complete: transpose in C
        by_column: list[Any] = list(zip(*flat, strict=True)) if flat else [()] * len(other)
    except ValueError:
        by_column = [[row[j] if j < len(row) else None for row in flat] for j in range(len(other))]
    for j, c in enumerate(other):
        arr = np.empty(n, dtype=object)
        arr[:] = by_column[j] if n else []
        got[c] = arr
    return got


def decode_frame(sch: Schema, nums: Sequence[bytes], txts: Sequence[str | None]) -> pd.DataFrame:
    """Logged rows back to the typed frame :func:`conform` built for the model."""
    n = len(nums)
    cols = decode_numeric(sch, n, b"".join(map(bytes, nums)), typed=True)
    cols.update(decode_others(sch, n, txts))
    return pd.DataFrame({c: cols[c] for c, _ in sch}, copy=False)


def encode_outputs(pred: Any, n: int) -> tuple[list[Any], list[float | None]]:
    """Model output to one JSON-able value per row, and its number when scalar."""
    if isinstance(pred, pd.DataFrame):
        rows: list[Any] = (
            pred.iloc[:, 0].tolist() if pred.shape[1] == 1 else pred.to_dict(orient="records")
        )
    elif isinstance(pred, pd.Series | np.ndarray):
        rows = pred.tolist()
    elif isinstance(pred, Sequence) and not isinstance(pred, str):
        rows = list(pred)
    else:
        raise ValueError(f"model returned {type(pred).__name__}, expected one output per row")
    if len(rows) != n:
        raise ValueError(f"model returned {len(rows)} outputs for {n} rows")
    nums = [storable_number(v) if isinstance(v, int | float) else None for v in rows]
    return rows, nums


def storable_number(v: float) -> float | None:
    """``v`` as every store keeps it, so a hash taken at write time matches what is read.

    SQLite keeps a NaN in a REAL column as NULL and -0.0 as 0: a NaN has no number
    (None, as for a text output) and -0.0 is written as 0.0 (``-0.0 + 0.0 == +0.0``).
    """
    x = float(v)
    return None if x != x else x + 0.0


def pack_rows(mat: np.ndarray[Any, Any]) -> list[bytes]:
    """Each row of a float64 matrix as its packed little-endian bytes."""
    buf = np.ascontiguousarray(mat, dtype="<f8").tobytes()
    w = 8 * mat.shape[1]
    return [buf[i * w : (i + 1) * w] for i in range(mat.shape[0])]
