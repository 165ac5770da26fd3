"""Building a reference profile from a training frame (and the model's predictions on it).

Each column becomes a :class:`~chronoml.domain.profile.NumericProfile` (sorted
distinct values with their counts, quantiles and a histogram) or a
:class:`~chronoml.domain.profile.CategoricalProfile` (category counts);
missing values are dropped and counted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from chronoml.domain.profile import (
    DEFAULT_SAMPLE_SIZE,
    HISTOGRAM_BINS,
    INTEGER_CARDINALITY_LIMIT,
    PREDICTION,
    QUANTILE_LEVELS,
    CategoricalProfile,
    Category,
    FeatureProfile,
    FloatArray,
    IntArray,
    Kind,
    NumericProfile,
    Profile,
    _readonly,
)


def build_profile(
    df: pd.DataFrame,
    predictions: npt.ArrayLike | None = None,
    *,
    sample_size: int | None = DEFAULT_SAMPLE_SIZE,
    seed: int = 0,
    kinds: Mapping[str, Kind] | None = None,
    prediction_kind: Kind | None = None,
) -> Profile:
    """Profile a reference frame (and the model's predictions on it).

    Frames longer than ``sample_size`` rows are sampled without replacement
    (seeded by ``seed``; the same rows for features and predictions), so a
    profile never holds more than ``sample_size`` values per feature.
    ``sample_size=None`` keeps every row. Drift verdicts reproduce Evidently's
    on the full reference exactly only when nothing was sampled.
    ``kinds`` forces the kind of named features (see the module docstring for
    the default rule).
    """
    if sample_size is not None and sample_size < 1:
        raise ValueError("sample_size must be positive")
    rows = len(df)
    pred = None if predictions is None else _one_dimensional(predictions, "predictions")
    if pred is not None and len(pred) != rows:
        raise ValueError(f"predictions has {len(pred)} rows, the frame {rows}")
    if sample_size is not None and rows > sample_size:
        keep = np.sort(np.random.default_rng(seed).choice(rows, size=sample_size, replace=False))
        df = df.iloc[keep]
        if pred is not None:
            pred = pred[keep]
    forced = dict(kinds or {})
    features: dict[str, FeatureProfile] = {}
    skipped: dict[str, str] = {}
    for name in df.columns:
        key = str(name)
        column = df[name]
        kind = forced.get(key) or infer_kind(column)
        if kind is None:
            skipped[key] = unsupported_reason(column)
        else:
            features[key] = profile_column(key, column, kind)
    prediction = None
    if pred is not None:
        series = pd.Series(pred)
        prediction = profile_column(
            PREDICTION, series, prediction_kind or infer_prediction_kind(series)
        )
    return Profile(
        rows=rows, sampled_rows=len(df), features=features, prediction=prediction, skipped=skipped
    )


def infer_kind(column: pd.Series) -> Kind | None:
    """The kind of a reference column, or ``None`` if it is not tested for drift."""
    dtype = column.dtype
    if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_bool_dtype(dtype):
        return "categorical"
    if pd.api.types.is_float_dtype(dtype):
        return "numeric"
    if pd.api.types.is_integer_dtype(dtype):
        return "categorical" if column.nunique() <= INTEGER_CARDINALITY_LIMIT else "numeric"
    if pd.api.types.is_string_dtype(dtype) and not pd.api.types.is_datetime64_any_dtype(dtype):
        present = column.dropna()
        # Evidently looks at the first and last values only; so do we.
        if (
            not present.empty
            and isinstance(present.iloc[0], str)
            and isinstance(present.iloc[-1], str)
        ):
            return "categorical"
    return None


def unsupported_reason(column: pd.Series) -> str:
    """Why :func:`infer_kind` gave no kind for a column (for ``Profile.skipped``)."""
    dtype = column.dtype
    if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype):
        return "datetime columns are not tested for drift"
    present = column.dropna()
    if present.empty:
        return "no values"
    return f"unsupported values of type {type(present.iloc[0]).__name__} (dtype {dtype})"


def infer_prediction_kind(column: pd.Series) -> Kind:
    """Evidently's rule for a prediction column (see the module docstring)."""
    dtype = column.dtype
    if not pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
        return "categorical"
    if column.nunique() > 5:
        return "numeric"
    if not pd.api.types.is_integer_dtype(dtype) and column.min() >= 0 and column.max() <= 1:
        return "numeric"
    return "categorical"


def profile_column(name: str, column: pd.Series, kind: Kind) -> FeatureProfile:
    """Profile one column as ``kind``."""
    if kind == "numeric":
        return _numeric_profile(name, column)
    if kind == "categorical":
        return _categorical_profile(name, column)
    raise ValueError(f"unknown kind {kind!r} for {name!r}")


def _numeric_profile(name: str, column: pd.Series) -> NumericProfile:
    try:
        raw = column.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"feature {name!r} is not numeric: {exc}") from None
    finite = raw[np.isfinite(raw)]
    values, counts = sorted_distinct(finite)
    n = int(finite.size)
    if n:
        hist, edges = np.histogram(finite, bins=HISTOGRAM_BINS)
        levels = np.quantile(finite, QUANTILE_LEVELS)
        quantiles = tuple((q, float(v)) for q, v in zip(QUANTILE_LEVELS, levels, strict=True))
        mean: float | None = float(np.mean(finite))
        std: float | None = float(np.std(finite))
    else:
        edges, hist, quantiles, mean, std = np.empty(0), np.empty(0, np.int64), (), None, None
    return NumericProfile(
        name=name,
        rows=n,
        missing=int(raw.size - n),
        values=_readonly(values),
        counts=None if counts is None else _readonly(counts),
        mean=mean,
        std=std,
        quantiles=quantiles,
        histogram_edges=tuple(float(e) for e in np.asarray(edges, dtype=np.float64)),
        histogram_counts=tuple(int(c) for c in hist),
        integer=pd.api.types.is_integer_dtype(column.dtype),
    )


def sorted_distinct(
    values: FloatArray, *, presorted: bool = False
) -> tuple[FloatArray, IntArray | None]:
    """Sorted distinct values and their counts; counts is ``None`` if all are distinct.

    Cheaper than ``np.unique(return_counts=True)`` for continuous data, where
    the sort is all there is to do.
    """
    xs = values if presorted else np.sort(values)
    if xs.size < 2:
        return xs, None
    new = np.empty(xs.size, dtype=bool)
    new[0] = True
    np.not_equal(xs[1:], xs[:-1], out=new[1:])
    if new.all():
        return xs, None
    starts = np.flatnonzero(new)
    counts = np.diff(np.append(starts, xs.size)).astype(np.int64)
    return xs[starts], counts


def _categorical_profile(name: str, column: pd.Series) -> CategoricalProfile:
    keys, counts, n = count_categories(column)
    # Most frequent first; ties by text so that the order is reproducible.
    order = sorted(range(len(keys)), key=lambda i: (-int(counts[i]), str(keys[i])))
    return CategoricalProfile(
        name=name,
        rows=n,
        missing=len(column) - n,
        categories=tuple(keys[i] for i in order),
        counts=_readonly(np.asarray([counts[i] for i in order], dtype=np.int64)),
    )


def count_categories(values: Any) -> tuple[list[Category], IntArray, int]:
    """Observed categories, their counts and the number of non-missing values.

    Accepts a numpy array, a pandas Series or Categorical. NaN, None and
    +-inf are missing (as for Evidently).
    """
    if isinstance(values, pd.Series) and isinstance(values.dtype, pd.CategoricalDtype):
        values = values.array
    if isinstance(values, pd.Categorical):
        codes = np.asarray(values.codes)
        cats = values.categories
        present = codes[codes >= 0]
        binned = np.bincount(present, minlength=len(cats))
        seen = np.flatnonzero(binned)
        keys = [_category(v) for v in np.asarray(cats, dtype=object)[seen].tolist()]
        return _drop_nonfinite(keys, binned[seen].astype(np.int64))
    arr = values.to_numpy() if isinstance(values, pd.Series) else np.asarray(values)
    if arr.dtype.kind in "biuf":
        if arr.dtype.kind == "f":
            arr = arr[np.isfinite(arr)]
        uniq, cnt = np.unique(arr, return_counts=True)
        return [_category(v) for v in uniq.tolist()], cnt.astype(np.int64), int(arr.size)
    # Hashing beats sorting for strings and objects: factorize, then count codes.
    codes, uniques = pd.factorize(arr.astype(object, copy=False), use_na_sentinel=True)
    binned = np.bincount(codes[codes >= 0], minlength=len(uniques))
    keys = [_category(v) for v in np.asarray(uniques, dtype=object).tolist()]
    return _drop_nonfinite(keys, binned.astype(np.int64))


def _drop_nonfinite(keys: list[Category], counts: IntArray) -> tuple[list[Category], IntArray, int]:
    keep = [
        i
        for i, k in enumerate(keys)
        if counts[i] > 0 and not (isinstance(k, float) and not math.isfinite(k))
    ]
    kept = counts[keep] if len(keep) != len(keys) else counts
    return [keys[i] for i in keep], kept, int(kept.sum())


def _category(v: Any) -> Category:
    """A JSON-able Python scalar for a category value."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, bool | int | float | str):
        return v
    return str(v)


def _one_dimensional(values: npt.ArrayLike, what: str) -> npt.NDArray[Any]:
    arr = values.to_numpy() if isinstance(values, pd.Series) else np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, got shape {arr.shape}")
    return arr


# -- serialisation ----------------------------------------------------------------------


__all__ = [
    "build_profile",
    "count_categories",
    "infer_kind",
    "infer_prediction_kind",
    "profile_column",
    "sorted_distinct",
    "unsupported_reason",
]
