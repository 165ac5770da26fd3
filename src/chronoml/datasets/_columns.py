"""Column plumbing for the point-in-time join: types, integer time keys, null-filling gathers.

Time columns become integer keys (microseconds, or nanoseconds when any input has them)
computed here from pandas' own arrays, so no conversion goes through a path that drops
time zones silently.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
_DAY_US = 86_400_000_000


@dataclass(frozen=True)
class TimeType:
    """What the join needs to know of a time column."""

    unit: str  # s, ms, us or ns
    tz: str | None
    date: bool = False


def arrow_type(s: pd.Series) -> pa.DataType | str:
    """The Arrow type a pandas column holds, or a description when it has none."""
    dtype = s.dtype
    if isinstance(dtype, pd.DatetimeTZDtype):
        return pa.timestamp(dtype.unit, tz=str(dtype.tz))
    if isinstance(dtype, pd.ArrowDtype):
        return dtype.pyarrow_dtype
    if isinstance(dtype, pd.StringDtype):
        return pa.string()
    if isinstance(dtype, pd.CategoricalDtype):
        return arrow_type(pd.Series(dtype.categories))
    numpy_dtype = getattr(dtype, "numpy_dtype", dtype)  # nullable Int64, boolean, Float64
    if isinstance(numpy_dtype, np.dtype) and numpy_dtype != np.dtype(object):
        try:
            return pa.from_numpy_dtype(numpy_dtype)
        except (pa.ArrowNotImplementedError, TypeError):
            return str(dtype)
    inferred = pd.api.types.infer_dtype(s, skipna=True)
    if inferred in ("string", "empty"):
        return pa.string()
    if inferred == "integer":
        return pa.int64()
    if inferred == "date":
        return pa.date32()
    return f"object ({inferred})"


def time_type(t: pa.DataType | str) -> TimeType | None:
    """The time column's unit and zone, or None when the column is not a time."""
    if isinstance(t, str):
        return None
    if pa.types.is_timestamp(t):
        return TimeType(str(t.unit), t.tz)
    if pa.types.is_date(t):
        return TimeType("us", None, date=True)
    return None


def entity_kind(t: pa.DataType | str) -> str:
    """Which entity columns can be joined: every integer type to every other, and so on."""
    if isinstance(t, str):
        return t
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "text"
    if pa.types.is_dictionary(t):
        return entity_kind(t.value_type)
    return str(t)


def to_arrow(s: pd.Series) -> pa.Array:
    """A key column as an Arrow array (categories decoded to their values)."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        s = s.astype(s.dtype.categories.dtype)
    values = s.array
    if hasattr(values, "__arrow_array__"):
        return pa.array(values)
    arr = s.to_numpy()
    if arr.dtype == np.dtype(object):
        return pa.array(arr, from_pandas=True)
    return pa.array(arr)


def key_array(s: pd.Series, unit: str) -> pa.Array:
    """Epoch integers in ``unit`` for a time column, nulls where the time is missing."""
    dtype = s.dtype
    if isinstance(dtype, pd.DatetimeTZDtype) or (isinstance(dtype, np.dtype) and dtype.kind == "M"):
        idx = pd.DatetimeIndex(s)
        values = np.asarray(idx.asi8)  # UTC for zoned columns
        return pa.array(_rescale(values, str(idx.unit), unit), mask=np.asarray(idx.isna()))
    arr = to_arrow(s)
    if pa.types.is_date32(arr.type):
        days = arr.cast(pa.int32()).to_numpy(zero_copy_only=False).astype(np.float64)
        mask = np.asarray(arr.is_null().to_numpy(zero_copy_only=False))
        us = np.nan_to_num(days).astype(np.int64) * _DAY_US
        return pa.array(_rescale(us, "us", unit), mask=mask)
    if pa.types.is_date64(arr.type):
        arr = arr.cast(pa.timestamp("ms"))
    if not pa.types.is_timestamp(arr.type):
        raise TypeError(f"not a time column: {arr.type}")
    raw = arr.cast(pa.int64())
    mask = np.asarray(raw.is_null().to_numpy(zero_copy_only=False))
    values = raw.fill_null(0).to_numpy()
    return pa.array(_rescale(values, str(arr.type.unit), unit), mask=mask)


def _rescale(values: np.ndarray, src: str, dst: str) -> np.ndarray:
    a, b = _PER_SECOND[src], _PER_SECOND[dst]
    if a == b:
        return values.astype(np.int64, copy=False)
    if b > a:
        return values.astype(np.int64) * (b // a)
    # Coarsening only happens for nanoseconds into microseconds, which the caller avoids
    # by choosing nanoseconds whenever an input has them; floor keeps the order anyway.
    return values.astype(np.int64) // (a // b)


def gather(
    values: pd.api.extensions.ExtensionArray, pos: np.ndarray
) -> pd.api.extensions.ExtensionArray:
    """``values[pos]`` with a null wherever ``pos`` is -1.

    Integer and boolean columns become pandas' nullable types so a missing match is a
    null rather than a silent change to float or object.
    """
    if isinstance(values, pd.arrays.NumpyExtensionArray):
        raw = values.to_numpy()
        none = np.zeros(len(raw), dtype=bool)
        if raw.dtype.kind in "iu":
            values = pd.arrays.IntegerArray(raw, none)
        elif raw.dtype.kind == "b":
            values = pd.arrays.BooleanArray(raw, none)
    return values.take(pos, allow_fill=True)
