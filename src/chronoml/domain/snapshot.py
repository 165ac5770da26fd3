"""Content-addressed, immutable dataset snapshots.

The id is ``sha256:`` over a canonical encoding of the whole table: the
number of rows and columns, then for each column its name, a logical type
and every value in row order. Unlike MLflow's dataset digest (md5 of the
first 10,000 rows, truncated to 8 hex digits), no row is left out.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from chronoml.errors import InvalidInput, NotFound
from chronoml.timeutil import iso, parse_time

_MAGIC = b"chronoml.snapshot.v1\x00"


class SnapshotError(ValueError):
    """The data cannot be snapshotted (unsupported column type, unreadable file)."""


@dataclass(frozen=True)
class Snapshot:
    """An immutable dataset version."""

    id: str
    name: str
    rows: int
    created_at: int  # microseconds since the epoch, UTC
    columns: tuple[tuple[str, str], ...] = ()
    path: str | None = None
    actor: str | None = None  # who took it (None for snapshots taken before this was kept)
    # for a built training set: its inputs' snapshot ids and the join spec
    lineage: Mapping[str, Any] | None = field(default=None, compare=False, hash=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "rows": self.rows,
            "created_at": iso(self.created_at),
        }


class SnapshotNotFound(NotFound):
    """A snapshot reference that matches no snapshot; ``field`` is ``ref``."""

    code = "snapshot_not_found"


class AmbiguousSnapshot(InvalidInput):
    """A snapshot reference that matches several snapshots; ``field`` is ``ref``."""

    code = "snapshot_ambiguous"


_ID = re.compile(r"^sha256:[0-9a-f]{8,64}$")
_NAME = re.compile(r"^[^@\s][^@]*$")


@dataclass(frozen=True)
class SnapshotRef:
    """A parsed reference: an id (or a prefix of one, 8+ hex digits), or a name and a time.

    ``at`` is None for ``NAME@latest``; otherwise the latest snapshot of the name taken at
    or before ``at`` (epoch microseconds) is meant.
    """

    text: str
    id: str | None = None
    name: str | None = None
    at: int | None = None

    @property
    def exact(self) -> bool:
        """Whether the reference is a full 64-digit id."""
        return self.id is not None and len(self.id) == len("sha256:") + 64


def parse_ref(text: str) -> SnapshotRef:
    """Parse ``sha256:HEX``, ``NAME@latest`` or ``NAME@TIME`` (ISO 8601, UTC by default)."""
    s = text.strip()
    if s.startswith("sha256:"):
        if not _ID.match(s.lower()):
            raise InvalidInput(
                f"snapshot id {text!r} is not sha256: followed by 8 to 64 hex digits", "ref"
            )
        return SnapshotRef(text, id=s.lower())
    name, sep, when = s.rpartition("@")
    if not sep or not name or not _NAME.match(name):
        raise InvalidInput(
            f"{text!r} is not a snapshot reference: use sha256:ID, NAME@latest or NAME@TIME "
            "(ISO 8601)",
            "ref",
        )
    if when.lower() == "latest":
        return SnapshotRef(text, name=name)
    try:
        at = parse_time(when)
    except ValueError as exc:
        raise InvalidInput(f"snapshot reference {text!r}: {exc}", "ref") from None
    return SnapshotRef(text, name=name, at=at)


def pick(ref: SnapshotRef, candidates: list[Snapshot]) -> Snapshot:
    """The one snapshot ``ref`` names among ``candidates`` (already filtered by the store).

    For a name, the candidates are that name's snapshots taken at or before the time; the
    latest wins, and two taken in the same microsecond are ambiguous.
    """
    if not candidates:
        if ref.id is not None:
            raise SnapshotNotFound(f"no snapshot has id {ref.text!r}", "ref")
        when = "yet" if ref.at is None else f"at or before {iso(ref.at)}"
        raise SnapshotNotFound(f"no snapshot named {ref.name!r} was taken {when}", "ref")
    if ref.id is not None:
        if len(candidates) > 1:
            ids = ", ".join(c.id for c in candidates[:5])
            raise AmbiguousSnapshot(
                f"{ref.text!r} matches {len(candidates)} snapshots ({ids}); give more digits",
                "ref",
            )
        return candidates[0]
    top = max(c.created_at for c in candidates)
    latest = [c for c in candidates if c.created_at == top]
    if len(latest) > 1:
        ids = ", ".join(c.id for c in latest)
        raise AmbiguousSnapshot(
            f"{ref.text!r} matches {len(latest)} snapshots taken at {iso(top)} ({ids}); use an id",
            "ref",
        )
    return latest[0]


def _lp(b: bytes) -> bytes:
    return struct.pack("<Q", len(b)) + b


def _canonical_column(name: str, s: pd.Series) -> tuple[str, list[bytes]]:
    """The column's logical type and the byte chunks that encode its values."""
    dtype = s.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return _canonical_column(name, s.astype(object))
    if pd.api.types.is_bool_dtype(dtype):
        na = s.isna().to_numpy()
        vals = s.fillna(False).to_numpy(dtype=np.uint8)
        if na.any():
            return "bool?", [np.packbits(na).tobytes(), vals.tobytes()]
        return "bool", [vals.tobytes()]
    if pd.api.types.is_integer_dtype(dtype):
        na = s.isna().to_numpy()
        unsigned = pd.api.types.is_unsigned_integer_dtype(dtype)
        kind = "uint64" if unsigned else "int64"
        vals = s.fillna(0).to_numpy(dtype="<u8" if unsigned else "<i8")
        if na.any():
            return kind + "?", [np.packbits(na).tobytes(), vals.tobytes()]
        return kind, [vals.tobytes()]
    if pd.api.types.is_float_dtype(dtype):
        vals = s.to_numpy(dtype="<f8", na_value=np.nan).copy()
        vals[np.isnan(vals)] = np.nan  # one bit pattern for every NaN
        vals += 0.0  # -0.0 and 0.0 are the same value
        return "float64", [vals.tobytes()]
    if pd.api.types.is_datetime64_any_dtype(dtype):
        tz = getattr(dtype, "tz", None)
        if tz is not None:
            s = s.dt.tz_convert("UTC")
        na = s.isna().to_numpy()
        ns = s.dt.as_unit("ns").to_numpy(dtype="datetime64[ns]").view("<i8").copy()
        ns[na] = 0
        kind = "timestamp[ns,UTC]" if tz is not None else "timestamp[ns]"
        return kind, [np.packbits(na).tobytes(), ns.tobytes()]
    if pd.api.types.is_string_dtype(dtype) or dtype.kind == "O":
        values = s.to_numpy(dtype=object)
        na = pd.isna(values)
        encoded: list[bytes] = []
        for v, missing in zip(values, na, strict=True):
            if missing:
                encoded.append(b"")
            elif isinstance(v, str):
                encoded.append(v.encode("utf-8"))
            else:
                raise SnapshotError(
                    f"column {name!r} holds values of type {type(v).__name__}; "
                    "snapshots take numbers, booleans, strings and timestamps"
                )
        lengths = np.fromiter((len(b) for b in encoded), dtype="<i8", count=len(encoded))
        lengths[na] = -1
        return "string", [lengths.tobytes(), b"".join(encoded)]
    raise SnapshotError(f"column {name!r} has unsupported type {dtype}")


def content_id(df: pd.DataFrame) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The snapshot id of ``df`` and its (column, logical type) list."""
    h = hashlib.sha256(_MAGIC)
    h.update(struct.pack("<QQ", len(df), df.shape[1]))
    columns: list[tuple[str, str]] = []
    for i, col in enumerate(df.columns):
        if not isinstance(col, str):
            raise SnapshotError(f"column {i} has a non-string name {col!r}")
        kind, chunks = _canonical_column(col, df.iloc[:, i])
        columns.append((col, kind))
        h.update(_lp(col.encode("utf-8")))
        h.update(_lp(kind.encode("ascii")))
        for chunk in chunks:
            h.update(_lp(chunk))
    return "sha256:" + h.hexdigest(), tuple(columns)
