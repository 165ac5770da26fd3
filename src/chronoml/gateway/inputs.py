"""Request bodies in MLflow's scoring formats, parsed into columns.

:func:`parse_body` reads any of the four JSON formats into named (or
positional) columns, which :func:`chronoml.domain.codec.conform` then checks
against the model's schema; :func:`float_matrix` is the fast path for bodies
of plain numbers to all-double models.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson

from chronoml.domain.codec import Schema, finite_in_range
from chronoml.errors import InvalidInput

FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")


def is_csv(content_type: str | bytes | None) -> bool:
    """Whether a request's Content-Type is CSV (MLflow's scoring server takes it)."""
    if not content_type:
        return False
    text = content_type.decode("latin-1") if isinstance(content_type, bytes) else content_type
    return text.split(";", 1)[0].strip().lower() == "text/csv"


def csv_to_json(body: bytes) -> bytes:
    """A CSV body (a header row of column names, then rows) as a ``dataframe_split`` body.

    Cells become numbers where they read as one, else strings; an empty cell is
    null, which :func:`chronoml.domain.codec.conform` then refuses by name.
    """
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput("the CSV body is not UTF-8", status=400) from None
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise InvalidInput(f"the CSV body does not parse: {exc}", status=400) from None
    rows = [r for r in rows if r]
    if len(rows) < 2:
        raise InvalidInput("a CSV body needs a header row and at least one row", status=400)
    header, data = rows[0], [[_cell(v) for v in r] for r in rows[1:]]
    return orjson.dumps({"dataframe_split": {"columns": header, "data": data}})


def _cell(value: str) -> Any:
    v = value.strip()
    if v == "":
        return None
    for parse in (int, float):
        try:
            number = parse(v)
        except ValueError:
            continue
        return number
    return value


def parse_body(body: bytes) -> tuple[str, dict[str, list[Any]], int]:
    """Decode a scoring request into (format, columns, rows)."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"body is not valid JSON: {exc}", status=400) from None
    if not isinstance(obj, dict):
        raise InvalidInput(
            "body must be a JSON object with one of: " + ", ".join(FORMATS), status=400
        )
    found = [k for k in FORMATS if k in obj]
    if len(found) != 1:
        what = "none" if not found else " and ".join(found)
        raise InvalidInput(
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
        raise InvalidInput(f"{fmt} must be a list or an object", field=fmt, status=400)
    n = len(next(iter(cols.values()))) if cols else 0
    if n == 0:
        raise InvalidInput(f"{fmt} holds no rows", field=fmt, status=400)
    return fmt, cols, n


def _split(data: Any) -> dict[str, list[Any]]:
    if not isinstance(data, dict) or "data" not in data:
        raise InvalidInput("dataframe_split needs 'columns' and 'data'", "dataframe_split", 400)
    rows = data["data"]
    columns = data.get("columns")
    if not isinstance(rows, list) or any(not isinstance(r, list) for r in rows):
        raise InvalidInput(
            "dataframe_split.data must be a list of rows", "dataframe_split.data", 400
        )
    if columns is None:
        return _positional(rows, "dataframe_split")
    if not isinstance(columns, list) or any(not isinstance(c, str) for c in columns):
        raise InvalidInput(
            "dataframe_split.columns must be a list of names", "dataframe_split.columns", 400
        )
    if len(set(columns)) != len(columns):
        raise InvalidInput("dataframe_split.columns has duplicates", "dataframe_split.columns", 400)
    for i, r in enumerate(rows):
        if len(r) != len(columns):
            raise InvalidInput(
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
            raise InvalidInput(f"{fmt}[{i}] is not an object", fmt, 400)
        if rec.keys() != known:
            missing = known - rec.keys()
            extra = rec.keys() - known
            name = sorted(missing or extra)[0]
            raise InvalidInput(f"{fmt}[{i}] {'lacks' if missing else 'adds'} column {name!r}", name)
    return {k: [rec[k] for rec in data] for k in keys}


def _columns(data: Mapping[str, Any], fmt: str) -> dict[str, list[Any]]:
    cols = {}
    n = None
    for k, v in data.items():
        vals = v if isinstance(v, list) else [v]
        if n is not None and len(vals) != n:
            raise InvalidInput(f"{fmt}: column {k!r} has {len(vals)} values, others {n}", k, 400)
        n = len(vals)
        cols[k] = vals
    return cols


def _positional(rows: list[Any], fmt: str) -> dict[str, list[Any]]:
    if not rows:
        return {}
    width = len(rows[0])
    for i, r in enumerate(rows):
        if not isinstance(r, list) or len(r) != width:
            raise InvalidInput(f"{fmt}[{i}] must be a list of {width} values", fmt, 400)
    # positional columns get their names from the model schema in conform()
    return {f"\x00{j}": [r[j] for r in rows] for j in range(width)}


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
    if not finite_in_range(mat):
        return None  # the general path names the column and row
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


# --- context: what the caller says about a decision that is not a model input ------

CONTEXT_KEY = "context"
_CONTEXT_SCALARS = (str, int, float, bool, type(None))
MAX_CONTEXT_KEYS = 64


def split_context(body: bytes) -> tuple[bytes, Any]:
    """The body without its top-level ``"context"``, and that context (None without one).

    Only bodies that mention the key are parsed here; the rest go on untouched,
    so the fast path of plain rows pays one substring search.
    """
    if b'"context"' not in body:
        return body, None
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body, None  # parse_body says what is wrong with it
    if not isinstance(obj, dict) or CONTEXT_KEY not in obj:
        return body, None
    ctx = obj.pop(CONTEXT_KEY)
    return orjson.dumps(obj), ctx


def check_context(ctx: Any, field: str = CONTEXT_KEY) -> dict[str, Any]:
    """One decision's context: an object of at most 64 scalar values with text keys."""
    if not isinstance(ctx, dict):
        raise InvalidInput(f"{field} must be an object of name: value", field, 400)
    if len(ctx) > MAX_CONTEXT_KEYS:
        raise InvalidInput(f"{field} has {len(ctx)} keys (at most {MAX_CONTEXT_KEYS})", field, 400)
    for k, v in ctx.items():
        if not k or len(k) > 200:
            raise InvalidInput(f"{field} has an empty or over-long name", field, 400)
        if not isinstance(v, _CONTEXT_SCALARS) or (isinstance(v, float) and v != v):
            raise InvalidInput(
                f"{field}.{k} must be a string, number, boolean or null", f"{field}.{k}", 400
            )
    return ctx


def context_rows(ctx: Any, n: int) -> list[str | None] | None:
    """The request's context as one JSON object text per row, or None without context.

    Three shapes: an object of scalars (the same context for every row), an
    object of lists of ``n`` values (one per row), or a list of ``n`` objects.
    """
    if ctx is None:
        return None
    if isinstance(ctx, list):
        if len(ctx) != n:
            raise InvalidInput(f"context has {len(ctx)} entries for {n} rows", CONTEXT_KEY, 400)
        return [
            orjson.dumps(check_context(c, f"{CONTEXT_KEY}[{i}]")).decode() if c else None
            for i, c in enumerate(ctx)
        ]
    if not isinstance(ctx, dict):
        raise InvalidInput(
            "context must be an object (one for all rows, or of lists) or a list of objects",
            CONTEXT_KEY,
            400,
        )
    if not ctx:
        return None
    lists = {k: v for k, v in ctx.items() if isinstance(v, list)}
    if not lists:
        text = orjson.dumps(check_context(ctx)).decode()
        return [text] * n
    if len(lists) != len(ctx):
        name = next(k for k in ctx if k not in lists)
        raise InvalidInput(
            f"context mixes lists and single values ({name!r}): give lists of {n} values or none",
            f"{CONTEXT_KEY}.{name}",
            400,
        )
    for k, v in lists.items():
        if len(v) != n:
            raise InvalidInput(
                f"context.{k} has {len(v)} values for {n} rows", f"{CONTEXT_KEY}.{k}", 400
            )
    keys = list(lists)
    return [
        orjson.dumps(check_context(dict(zip(keys, vals, strict=True)))).decode()
        for vals in zip(*lists.values(), strict=True)
    ]
