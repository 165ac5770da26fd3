"""How single values are stored compactly in archive files (see
:mod:`chronoml.store.archive_parquet` for the layout): canonical UUID texts as 16
bytes, decimal floats as integers, other floats split into their low and high bits.
Every transform here is checked to invert bit for bit."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

MAX_DECIMALS = 6
HI = ":hi"  # the suffix of a split float's column of top bits
FEW = 16  # a column with at most one distinct value in FEW rows: a dictionary holds it best
_LOW = (1 << 48) - 1
UUID16 = pa.binary(16)


# --- UUID texts <-> 16 bytes, vectorised ------------------------------------------

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_NIBBLE = np.full(256, 255, dtype=np.uint8)
_NIBBLE[_HEX] = np.arange(16, dtype=np.uint8)
_DASHES = (8, 13, 18, 23)
_HEX_AT = np.array([i for i in range(36) if i not in _DASHES])


def _fixed_chars(arr: pa.Array, width: int) -> np.ndarray[Any, Any] | None:
    """The characters of a text array whose every value has ``width`` bytes, as an
    (n, width) uint8 matrix; None when one is null or of another length."""
    arr = arr.cast(pa.string()) if arr.type != pa.string() else arr
    if arr.null_count:
        return None
    n = len(arr)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset : arr.offset + n + 1]
    if n == 0 or offsets[-1] - offsets[0] != n * width:
        return None
    if not np.all(np.diff(offsets) == width):
        return None
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)
    return data[offsets[0] : offsets[-1]].reshape(n, width)


def uuid_bytes(arr: pa.Array) -> pa.Array | None:
    """``arr`` (text) as 16-byte values, or None unless every value is a canonical
    (lowercase, dashed) UUID text, so that :func:`uuid_texts` gives it back exactly."""
    chars = _fixed_chars(arr, 36)
    if chars is None or not np.all(chars[:, _DASHES] == ord("-")):
        return None
    nib = _NIBBLE[chars[:, _HEX_AT]]
    if np.any(nib == 255):  # not hex, or upper case: would not come back the same
        return None
    raw = (nib[:, 0::2] << 4) | nib[:, 1::2]
    return pa.FixedSizeBinaryArray.from_buffers(
        UUID16, len(raw), [None, pa.py_buffer(raw.tobytes())]
    )


def uuid_texts(arr: pa.Array) -> pa.Array:
    """16-byte values as canonical UUID texts."""
    n = len(arr)
    raw = np.frombuffer(arr.buffers()[1], dtype=np.uint8)[arr.offset * 16 : (arr.offset + n) * 16]
    raw = raw.reshape(n, 16)
    chars = np.full((n, 36), ord("-"), dtype=np.uint8)
    chars[:, _HEX_AT[0::2]] = _HEX[raw >> 4]
    chars[:, _HEX_AT[1::2]] = _HEX[raw & 15]
    offsets = (np.arange(n + 1, dtype=np.int32) * 36).tobytes()
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(chars.tobytes()))


# --- decimals ------------------------------------------------------------------


def decimal_scale(col: np.ndarray[Any, Any]) -> int | None:
    """The least ``k <= MAX_DECIMALS`` such that ``round(x * 10**k) / 10**k`` is ``x``
    bit for bit for every value, or None."""
    if len(col) == 0:
        return None
    for k in _fitting(col[:32]):  # only a first look: the whole column decides
        if scaled(col, k) is not None:
            return k
    return None


_SCALES = 10.0 ** np.arange(MAX_DECIMALS + 1)[:, None]


def _fitting(sample: np.ndarray[Any, Any]) -> list[int]:
    """The scales :func:`scaled` accepts for ``sample``, tried all at once (a column of
    measured floats fits none: one look at its first values, not one per scale)."""
    with np.errstate(invalid="ignore", over="ignore"):
        s = np.round(sample[None, :] * _SCALES)
        small = np.all(np.abs(s) < 2.0**53, axis=1)
        ints = np.where(np.abs(s) < 2.0**53, s, 0.0).astype(np.int64)
        back = (ints.astype(np.float64) / _SCALES).view("<i8")
        same = np.all(back == sample.view("<i8")[None, :], axis=1)
    return [int(k) for k in np.flatnonzero(small & same)]


def scaled(col: np.ndarray[Any, Any], k: int) -> np.ndarray[Any, Any] | None:
    f = 10.0**k
    with np.errstate(invalid="ignore", over="ignore"):
        s = np.round(col * f)
        if not np.all(np.abs(s) < 2.0**53):  # also false for NaN and infinities
            return None
        ints = s.astype(np.int64)
        # what a reader computes, compared bit for bit (-0.0 and 0.0 apart)
        if not np.array_equal((ints.astype(np.float64) / f).view("<i8"), col.view("<i8")):
            return None
    return ints


# --- floats ---------------------------------------------------------------------


def floats_of(name: str, col: np.ndarray[Any, Any]) -> dict[str, pa.Array]:
    """The stored columns of a float input: itself when it has few distinct values (a
    dictionary holds it best), else its low 48 bits and its top 16 (bit for bit)."""
    arr = pa.array(col)
    if few(arr):
        return {name: arr}
    bits = np.ascontiguousarray(col, dtype="<f8").view("<u8")
    low = (bits & np.uint64(_LOW)).view("<i8")  # below 2**48: the same value
    return {name: pa.array(low), name + HI: pa.array((bits >> np.uint64(48)).astype("<u2"))}


SAMPLE = 2048  # the values ``few`` looks at: it only picks an encoding


def few(arr: pa.Array | pa.ChunkedArray) -> bool:
    """Whether a column has few distinct values (a dictionary holds it best), judged by
    its first ``SAMPLE`` values."""
    head = arr.slice(0, SAMPLE)
    return bool(len(head)) and pc.count_distinct(head, mode="all").as_py() * FEW <= len(head)


def joined(low: pa.Array, hi: pa.Array) -> np.ndarray[Any, Any]:
    """The floats of a split column, bit for bit."""
    floats = hi.to_numpy(zero_copy_only=False).astype("<u8")
    floats <<= np.uint64(48)
    floats |= low.to_numpy(zero_copy_only=False).view("<u8")
    out: np.ndarray[Any, Any] = floats.view("<f8")
    return out
