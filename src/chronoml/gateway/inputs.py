"""Request bodies in MLflow's scoring formats, checked against a model's input schema.

A schema is a tuple of ``(column, kind)`` with kind one of ``float``, ``int``,
``bool``, ``string``. Inputs are also encoded here for the decision log:
numeric kinds packed as 8-byte little-endian values (a window of decisions
reads back as one matrix), strings as a JSON array.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson
import pandas as pd

Schema = tuple[tuple[str, str], ...]
NUMERIC_KINDS = frozenset({"float", "int", "bool"})

_MLFLOW_KINDS = {
    "double": "float",
    "float": "float",
    "long": "int",
    "integer": "int",
    "boolean": "bool",
    "string": "string",
}

FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")


class InputError(ValueError):
    """Bad request input; ``field`` names the offending column or key."""

    def __init__(self, message: str, field: str | None = None, status: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.status = status


def schema_from_mlflow(input_schema: Any) -> Schema | None:
    """Translate an MLflow signature's input schema; None when it has none or no names."""
    if input_schema is None or not getattr(input_schema, "has_input_names", lambda: False)():
        return None
    out = []
    for spec in input_schema.inputs:
        type_name = getattr(getattr(spec, "type", None), "name", None)
        kind = _MLFLOW_KINDS.get(str(type_name))
        if kind is None:
            raise InputError(
                f"input {spec.name!r} has type {type_name}, which chronoml cannot log yet"
            )
        out.append((spec.name, kind))
    return tuple(out)


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


def parse_body(body: bytes) -> tuple[str, dict[str, list[Any]], int]:
    """Decode a scoring request into (format, columns, rows)."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"body is not valid JSON: {exc}", status=400) from None
    if not isinstance(obj, dict):
        raise InputError(
            "body must be a JSON object with one of: " + ", ".join(FORMATS), status=400
        )
    found = [k for k in FORMATS if k in obj]
    if len(found) != 1:
        what = "none" if not found else " and ".join(found)
        raise InputError(
            f"body must have exactly one of {', '.join(FORMATS)}; found {what}", status=400
        )
    fmt = found[0]
    data = obj[fmt]
    if fmt == "dataframe_split":
        cols = _split(data)
    elif isinstance(data, list) and data and isinstance(data[0], dict):
        cols = _records(data, fmt)
    elif isinstance(data, dict):
        cols = _columns(data, fmt)
    elif isinstance(data, list):
        cols = {"": data} if data and not isinstance(data[0], list) else _positional(data, fmt)
    else:
        raise InputError(f"{fmt} must be a list or an object", field=fmt, status=400)
    n = len(next(iter(cols.values()))) if cols else 0
    if n == 0:
        raise InputError(f"{fmt} holds no rows", field=fmt, status=400)
    return fmt, cols, n


def _split(data: Any) -> dict[str, list[Any]]:
    if not isinstance(data, dict) or "data" not in data:
        raise InputError("dataframe_split needs 'columns' and 'data'", "dataframe_split", 400)
    rows = data["data"]
    columns = data.get("columns")
    if not isinstance(rows, list) or any(not isinstance(r, list) for r in rows):
        raise InputError("dataframe_split.data must be a list of rows", "dataframe_split.data", 400)
    if columns is None:
        return _positional(rows, "dataframe_split")
    if not isinstance(columns, list) or any(not isinstance(c, str) for c in columns):
        raise InputError(
            "dataframe_split.columns must be a list of names", "dataframe_split.columns", 400
        )
    if len(set(columns)) != len(columns):
        raise InputError("dataframe_split.columns has duplicates", "dataframe_split.columns", 400)
    for i, r in enumerate(rows):
        if len(r) != len(columns):
            raise InputError(
                f"row {i} has {len(r)} values for {len(columns)} columns",
                "dataframe_split.data",
                400,
            )
    if not rows:
        return {c: [] for c in columns}
    return {c: list(vals) for c, vals in zip(columns, zip(*rows, strict=True), strict=True)}


def _records(data: list[Any], fmt: str) -> dict[str, list[Any]]:
    keys: list[str] = list(data[0].keys())
    known = set(keys)
    for i, rec in enumerate(data):
        if not isinstance(rec, dict):
            raise InputError(f"{fmt}[{i}] is not an object", fmt, 400)
        if rec.keys() != known:
            missing = known - rec.keys()
            extra = rec.keys() - known
            name = sorted(missing or extra)[0]
            raise InputError(f"{fmt}[{i}] {'lacks' if missing else 'adds'} column {name!r}", name)
    return {k: [rec[k] for rec in data] for k in keys}


def _columns(data: Mapping[str, Any], fmt: str) -> dict[str, list[Any]]:
    cols = {}
    n = None
    for k, v in data.items():
        vals = v if isinstance(v, list) else [v]
        if n is not None and len(vals) != n:
            raise InputError(f"{fmt}: column {k!r} has {len(vals)} values, others {n}", k, 400)
        n = len(vals)
        cols[k] = vals
    return cols


def _positional(rows: list[Any], fmt: str) -> dict[str, list[Any]]:
    if not rows:
        return {}
    width = len(rows[0])
    for i, r in enumerate(rows):
        if not isinstance(r, list) or len(r) != width:
            raise InputError(f"{fmt}[{i}] must be a list of {width} values", fmt, 400)
    # positional columns get their names from the model schema in conform()
    return {f"\x00{j}": [r[j] for r in rows] for j in range(width)}


def conform(cols: dict[str, list[Any]], schema: Schema | None) -> pd.DataFrame:
    """Check columns against ``schema`` and build the frame the model gets.

    Missing, extra or wrongly typed columns raise InputError naming the column.
    """
    if schema is None:
        if any(k.startswith("\x00") or k == "" for k in cols):
            raise InputError("this model has no input signature: send named columns")
        return pd.DataFrame(cols)
    names = [c for c, _ in schema]
    if any(k.startswith("\x00") for k in cols):
        if len(cols) != len(schema):
            raise InputError(
                f"rows have {len(cols)} values; the model takes {len(schema)}: {names}"
            )
        cols = {name: vals for name, vals in zip(names, cols.values(), strict=True)}
    missing = [c for c in names if c not in cols]
    if missing:
        raise InputError(
            f"missing column {missing[0]!r} (the model takes {len(names)} columns)", missing[0]
        )
    extra = [c for c in cols if c not in set(names)]
    if extra:
        raise InputError(f"unknown column {extra[0]!r}: the model does not take it", extra[0])
    out: dict[str, Any] = {}
    for name, kind in schema:
        out[name] = _column(name, kind, cols[name])
    return pd.DataFrame(out, copy=False)


def _column(name: str, kind: str, values: list[Any]) -> np.ndarray[Any, Any]:
    if kind == "string":
        for i, v in enumerate(values):
            if not isinstance(v, str):
                raise InputError(
                    f"column {name!r} row {i}: expected a string, got {_tname(v)}", name
                )
        return np.asarray(values, dtype=object)
    if kind == "bool":
        for i, v in enumerate(values):
            if not isinstance(v, bool):
                raise InputError(
                    f"column {name!r} row {i}: expected true/false, got {_tname(v)}", name
                )
        return np.asarray(values, dtype=bool)
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, int | float):
            if v is None and kind == "float":
                continue
            raise InputError(f"column {name!r} row {i}: expected a number, got {_tname(v)}", name)
    if kind == "int":
        for i, v in enumerate(values):
            if isinstance(v, float) and not (math.isfinite(v) and v.is_integer()):
                raise InputError(f"column {name!r} row {i}: expected an integer, got {v}", name)
        return np.asarray(values, dtype=np.int64)
    return np.asarray([math.nan if v is None else v for v in values], dtype=np.float64)


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
    nums = [
        float(v)
        if isinstance(v, int | float) and not isinstance(v, bool)
        else (float(v) if isinstance(v, bool) else None)
        for v in rows
    ]
    return rows, nums


# --- the fast path for all-float models --------------------------------------


def float_matrix(body: bytes, schema: Schema | None) -> np.ndarray[Any, Any] | None:
    """The request as an ``(n, k)`` float64 matrix in schema order, or None.

    Only for the common case, a model whose inputs are all doubles and a
    body of rows (``dataframe_split`` with columns, positional ``instances``
    or ``inputs``) holding only numbers; anything else (or anything wrong,
    which then gets its precise error from :func:`parse_body` and
    :func:`conform`) takes the general path.
    """
    if schema is None:
        return None
    names = _float_names(schema)
    if names is None:
        return None
    # What is left once digits, signs, points, exponents, commas, brackets and
    # blanks are gone: the keys, the column names and any other value. One
    # pass over the body instead of a search for each thing to refuse.
    rest = body.translate(None, _NUMERIC_BYTES)
    if b"tru" in rest or b"fals" in rest or b"null" in rest:
        return None  # booleans and nulls take the general path, which says what is wrong
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or len(obj) != 1:
        return None
    if "dataframe_split" in obj:
        data = obj["dataframe_split"]
        if not isinstance(data, dict) or any(k not in _SPLIT_KEYS for k in data):
            return None
        rows, columns = data.get("data"), data.get("columns")
        if (
            columns is not None
            and columns != names
            and (not isinstance(columns, list) or sorted(map(str, columns)) != sorted(names))
        ):
            return None
        keys = 1 + len(data) + (len(columns) if isinstance(columns, list) else 0)
    elif "instances" in obj or "inputs" in obj:
        rows, columns = next(iter(obj.values())), None
        keys = 1
    else:
        return None
    if not isinstance(rows, list) or not rows or not isinstance(rows[0], list):
        return None
    if rest.count(b'"') != 2 * keys:
        return None  # a quoted value ("1.5"): numpy would take it, the general path refuses it
    k = len(names)
    try:
        if len(rows) == 1:
            mat = np.array(rows, dtype=np.float64)
        else:
            # every row as long as the first, then one pass over the values;
            # strings and nested values fail to convert and take the general path
            if not all(type(r) is list and len(r) == k for r in rows):
                return None
            flat = itertools.chain.from_iterable(rows)
            mat = np.fromiter(flat, dtype=np.float64, count=len(rows) * k).reshape(len(rows), k)
    except (TypeError, ValueError):
        return None
    if mat.ndim != 2 or mat.shape[1] != k:
        return None
    if columns is not None and columns != names:
        order = [columns.index(c) for c in names]
        mat = np.ascontiguousarray(mat[:, order])
    return mat


# bytes a JSON body of numbers is made of, besides its keys and names
_NUMERIC_BYTES = b"0123456789+-.eE,[] \t\r\n"
_SPLIT_KEYS = frozenset({"columns", "data", "index"})


_float_schemas: dict[int, tuple[Schema, list[str] | None]] = {}


def _float_names(schema: Schema) -> list[str] | None:
    """The column names of an all-double schema (never changed by callers), else None.

    Remembered by the schema object's identity: hashing a schema of many columns
    on every request costs more than the lookup saves.
    """
    got = _float_schemas.get(id(schema))
    if got is not None and got[0] is schema:
        return got[1]
    names = [c for c, _ in schema] if all(k == "float" for _, k in schema) else None
    if len(_float_schemas) >= 1024:
        _float_schemas.clear()
    _float_schemas[id(schema)] = (schema, names)
    return names


def pack_rows(mat: np.ndarray[Any, Any]) -> list[bytes]:
    """Each row of a float64 matrix as its packed little-endian bytes."""
    buf = np.ascontiguousarray(mat, dtype="<f8").tobytes()
    w = 8 * mat.shape[1]
    return [buf[i * w : (i + 1) * w] for i in range(mat.shape[0])]
