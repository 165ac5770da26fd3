"""Reference profiles: what the drift statistics need to know about training data.

A profile is built once per model version from (a sample of) its training
frame and stored next to it; every drift report compares a window of logged
decisions against it (see :mod:`chronoml.domain.drift`).

What is kept, and why:

- **numeric features** keep the *exact* reference distribution as its sorted
  distinct values plus how often each occurs (``counts`` is ``None`` when every
  value occurs once, the usual case for continuous data). Evidently's normed
  Wasserstein distance, the KS test and the Sturges-binned Jensen-Shannon/PSI
  all need the reference values themselves, not a sketch, so this is what lets
  chronoml reproduce its verdicts exactly. Memory bound: a feature holds at
  most ``sample_size`` (default 1,000,000) distinct values: 8 bytes each when
  all are distinct (8 MB for a million), 16 bytes each in memory when values
  repeat (the counts; on disk they take 1 to 8 bytes), and much less for
  integer-like columns, whose distinct values are few. A summary (count,
  mean, std, quantiles, a 10-bin histogram) is kept alongside for dashboards.
- **categorical features** keep each observed category and its count.
- the **prediction** is profiled like a feature.

Which features are categorical follows Evidently 0.7.23's
``infer_column_type``, applied to the reference frame:

- float dtypes are numeric;
- integer dtypes are categorical when they have at most
  ``INTEGER_CARDINALITY_LIMIT`` (10) distinct values, numeric otherwise
  (Evidently only does this for ``int*`` dtypes and ignores unsigned and
  nullable integers as "unknown"; chronoml applies the same rule to them);
- bool, ``category`` and string columns are categorical (Evidently calls a
  string column with more distinct values than half its rows "text" and runs a
  text-classifier test on it; chronoml treats it as categorical);
- datetime and other columns are skipped and listed in ``Profile.skipped``.

The prediction follows Evidently's rule for a prediction column: numeric when
it is numeric with more than 5 distinct values, or a non-integer numeric
within [0, 1] (a probability); categorical otherwise.

Missing values (NaN, None, +-inf) are dropped, as Evidently does before any
statistic; their number is kept as ``missing``.

Profiles serialise with :meth:`Profile.to_bytes` (compact: a JSON header and
raw little-endian arrays, for the database) or :meth:`Profile.to_dict`
(plain JSON-able data, for APIs and small profiles).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt

Kind: TypeAlias = Literal["numeric", "categorical"]
#: A category as stored: what JSON can hold.
Category: TypeAlias = str | int | float | bool

FloatArray: TypeAlias = npt.NDArray[np.float64]
IntArray: TypeAlias = npt.NDArray[np.int64]

PROFILE_VERSION = 1
#: Integer columns with at most this many distinct values are categorical (Evidently's rule).
INTEGER_CARDINALITY_LIMIT = 10
#: Default cap on reference rows kept; larger references are sampled (seeded) down to it.
DEFAULT_SAMPLE_SIZE = 1_000_000
QUANTILE_LEVELS = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0)
HISTOGRAM_BINS = 10
PREDICTION = "prediction"

_MAGIC = b"CMLPROF1"


def _readonly(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
    a.flags.writeable = False
    return a


@dataclass(frozen=True, eq=False)
class NumericProfile:
    """The exact reference distribution of one numeric feature.

    ``values`` are the sorted distinct finite values (float64); ``counts[i]``
    is how often ``values[i]`` occurs, or ``counts`` is ``None`` when every
    value occurs once. ``std`` is the population standard deviation of the
    full column (Evidently's Wasserstein norm).
    """

    name: str
    rows: int
    missing: int
    values: FloatArray
    counts: IntArray | None
    mean: float | None
    std: float | None
    quantiles: tuple[tuple[float, float], ...]
    histogram_edges: tuple[float, ...]
    histogram_counts: tuple[int, ...]
    #: The reference column had an integer dtype (numpy bins integer data differently).
    integer: bool = False
    kind: Kind = field(default="numeric", init=False)

    def cumulative_counts(self) -> IntArray:
        """Number of reference values ``<= values[i]``, for each ``i``."""
        if self.counts is None:
            return np.arange(1, self.values.size + 1, dtype=np.int64)
        return np.cumsum(self.counts)

    def expanded(self) -> FloatArray:
        """The full sorted reference column (every occurrence)."""
        if self.counts is None:
            return self.values
        return np.repeat(self.values, self.counts)

    def value_counts(self) -> tuple[list[Category], IntArray]:
        """Distinct values and their counts, as a categorical view of the column."""
        counts = self.counts if self.counts is not None else np.ones(self.values.size, np.int64)
        return [float(v) for v in self.values], counts


@dataclass(frozen=True, eq=False)
class CategoricalProfile:
    """Observed categories of one categorical feature and their counts."""

    name: str
    rows: int
    missing: int
    categories: tuple[Category, ...]
    counts: IntArray
    kind: Kind = field(default="categorical", init=False)

    def value_counts(self) -> tuple[list[Category], IntArray]:
        """Categories and their counts."""
        return list(self.categories), self.counts


FeatureProfile: TypeAlias = NumericProfile | CategoricalProfile


@dataclass(frozen=True, eq=False)
class Profile:
    """Reference profile of a model version: its features and its prediction.

    ``rows`` is the size of the frame given to :func:`build_profile`,
    ``sampled_rows`` how many of its rows were kept (equal unless sampled).
    """

    rows: int
    sampled_rows: int
    features: Mapping[str, FeatureProfile]
    prediction: FeatureProfile | None = None
    skipped: Mapping[str, str] = field(default_factory=dict)
    version: int = PROFILE_VERSION

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (arrays as lists); inverse of :meth:`from_dict`."""
        return _profile_to_dict(self, _ListArrays())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Profile:
        """Rebuild a profile from :meth:`to_dict` output."""
        return _profile_from_dict(data, lambda ref: np.asarray(ref))

    def to_bytes(self) -> bytes:
        """Compact binary form: magic, a JSON header, then raw little-endian arrays."""
        arrays = _BlobArrays()
        header = json.dumps(_profile_to_dict(self, arrays), separators=(",", ":")).encode()
        out = bytearray(_MAGIC)
        out += struct.pack("<Q", len(header))
        out += header
        # The arrays start 8-byte aligned so that they can be read in place; their
        # offsets in the header are relative to that start.
        out += b"\0" * (-len(out) % 8)
        for blob in arrays.blobs:
            out += blob
        return bytes(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> Profile:
        """Rebuild a profile from :meth:`to_bytes` output (arrays are read-only views)."""
        if data[: len(_MAGIC)] != _MAGIC:
            raise ValueError("not a chronoml profile")
        (hlen,) = struct.unpack_from("<Q", data, len(_MAGIC))
        start = len(_MAGIC) + 8
        header = json.loads(data[start : start + hlen])
        base = start + hlen + (-(start + hlen) % 8)
        view = memoryview(data)

        def load(ref: Any) -> npt.NDArray[Any]:
            dtype = np.dtype(ref["dtype"])
            return np.frombuffer(view, dtype=dtype, count=ref["n"], offset=base + ref["offset"])

        return _profile_from_dict(header, load)


# -- building -------------------------------------------------------------------------


class _ListArrays:
    """Arrays as JSON lists (for :meth:`Profile.to_dict`)."""

    def put(self, a: npt.NDArray[Any]) -> Any:
        return a.tolist()


class _BlobArrays:
    """Arrays as references into a binary tail (for :meth:`Profile.to_bytes`)."""

    def __init__(self) -> None:
        self.blobs: list[bytes] = []
        self.size = 0

    def put(self, a: npt.NDArray[Any]) -> Any:
        a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
        blob = a.tobytes()
        ref = {"dtype": a.dtype.str, "n": int(a.size), "offset": self.size}
        blob += b"\0" * (-len(blob) % 8)
        self.blobs.append(blob)
        self.size += len(blob)
        return ref


def _small_uint(counts: IntArray) -> npt.NDArray[Any]:
    top = int(counts.max()) if counts.size else 0
    for dtype in (np.uint8, np.uint16, np.uint32):
        if top <= np.iinfo(dtype).max:
            return counts.astype(dtype)
    return counts.astype(np.uint64)


def _feature_to_dict(f: FeatureProfile, arrays: _ListArrays | _BlobArrays) -> dict[str, Any]:
    d: dict[str, Any] = {"name": f.name, "kind": f.kind, "rows": f.rows, "missing": f.missing}
    if isinstance(f, NumericProfile):
        d["values"] = arrays.put(f.values)
        d["counts"] = None if f.counts is None else arrays.put(_small_uint(f.counts))
        d["mean"] = f.mean
        d["std"] = f.std
        d["quantiles"] = [list(q) for q in f.quantiles]
        d["histogram"] = {"edges": list(f.histogram_edges), "counts": list(f.histogram_counts)}
        d["integer"] = f.integer
    else:
        d["categories"] = list(f.categories)
        d["counts"] = f.counts.tolist()
    return d


def _profile_to_dict(p: Profile, arrays: _ListArrays | _BlobArrays) -> dict[str, Any]:
    return {
        "version": p.version,
        "rows": p.rows,
        "sampled_rows": p.sampled_rows,
        "features": [_feature_to_dict(f, arrays) for f in p.features.values()],
        "prediction": None if p.prediction is None else _feature_to_dict(p.prediction, arrays),
        "skipped": dict(p.skipped),
    }


def _feature_from_dict(d: Mapping[str, Any], load: Any) -> FeatureProfile:
    if d["kind"] == "numeric":
        counts = None if d["counts"] is None else load(d["counts"]).astype(np.int64)
        values = np.asarray(load(d["values"]), dtype=np.float64)
        return NumericProfile(
            name=d["name"],
            rows=int(d["rows"]),
            missing=int(d["missing"]),
            values=_readonly(values) if values.flags.writeable else values,
            counts=None if counts is None else _readonly(counts),
            mean=d["mean"],
            std=d["std"],
            quantiles=tuple((float(q), float(v)) for q, v in d["quantiles"]),
            histogram_edges=tuple(float(e) for e in d["histogram"]["edges"]),
            histogram_counts=tuple(int(c) for c in d["histogram"]["counts"]),
            integer=bool(d.get("integer", False)),
        )
    if d["kind"] == "categorical":
        return CategoricalProfile(
            name=d["name"],
            rows=int(d["rows"]),
            missing=int(d["missing"]),
            categories=tuple(d["categories"]),
            counts=_readonly(np.asarray(d["counts"], dtype=np.int64).reshape(-1)),
        )
    raise ValueError(f"unknown feature kind {d['kind']!r}")


def _profile_from_dict(d: Mapping[str, Any], load: Any) -> Profile:
    if d.get("version") != PROFILE_VERSION:
        raise ValueError(f"unsupported profile version {d.get('version')!r}")
    features = [_feature_from_dict(f, load) for f in d["features"]]
    pred = d.get("prediction")
    return Profile(
        rows=int(d["rows"]),
        sampled_rows=int(d["sampled_rows"]),
        features={f.name: f for f in features},
        prediction=None if pred is None else _feature_from_dict(pred, load),
        skipped=dict(d.get("skipped") or {}),
    )


__all__: Sequence[str] = [
    "DEFAULT_SAMPLE_SIZE",
    "INTEGER_CARDINALITY_LIMIT",
    "PREDICTION",
    "CategoricalProfile",
    "FeatureProfile",
    "Kind",
    "NumericProfile",
    "Profile",
]
