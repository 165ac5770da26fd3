"""Multivariate drift: the data-reconstruction error of a PCA fitted on the reference.

Per-feature tests look at one marginal at a time, so a change in how features
move together (a correlation that flips sign, say) passes them all. Here the
reference is standardised, a PCA keeps the fewest components that explain
``variance`` of it (65% by default), and each row's error is the Euclidean
distance between the standardised row and its projection back from those
components. Rows that follow the reference's joint structure project well;
rows that break it do not, even if every marginal is unchanged.

A window's error is the mean over its rows. It is drifted when it leaves
``mean +/- sigmas * std`` of the errors of reference chunks *of the window's
size* (the spread of a mean depends on how many rows it averages): the
reference's per-row errors are cut into consecutive chunks of that size; with
fewer than five such chunks, the bounds come from the per-row spread scaled
by ``1 / sqrt(rows)`` instead (the same under independence).

Missing values are filled with the reference mean of the feature; features
must be numeric (encode categories first); a feature that is constant in the
reference is centred but not scaled.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from chronoml.fairness._common import FairnessError, as_1d, num

FArray = npt.NDArray[np.float64]
MIN_CHUNKS = 5


class DriftInputError(FairnessError):
    """Input that multivariate drift cannot use; ``field`` names it."""


@dataclass(frozen=True)
class ReconstructionModel:
    """Scaling and principal components fitted on the reference, with its row errors."""

    features: tuple[str, ...]
    mean: FArray
    scale: FArray
    components: FArray  # (kept components, features)
    explained: float  # share of the reference variance the kept components explain
    reference_errors: FArray = field(repr=False)

    def errors(self, data: Any) -> FArray:
        """Per-row reconstruction error of ``data`` (same features)."""
        z = (_matrix(data, self.features) - self.mean) / self.scale
        z = np.where(np.isnan(z), 0.0, z)  # a missing value sits at the reference mean
        back = (z @ self.components.T) @ self.components
        return np.asarray(np.sqrt(((z - back) ** 2).sum(axis=1)), dtype=float)

    def bounds(self, rows: int, sigmas: float = 3.0) -> tuple[float, float, float]:
        """Reference mean error and the low/high bounds for a window of ``rows`` rows."""
        ref = self.reference_errors
        chunks = len(ref) // rows if rows > 0 else 0
        if chunks >= MIN_CHUNKS:
            means = ref[: chunks * rows].reshape(chunks, rows).mean(axis=1)
            centre, spread = float(means.mean()), float(means.std(ddof=1))
        else:
            centre = float(ref.mean())
            spread = float(ref.std(ddof=1)) / math.sqrt(max(rows, 1))
        return centre, centre - sigmas * spread, centre + sigmas * spread


@dataclass(frozen=True)
class WindowDrift:
    """One window's reconstruction error against the reference's bounds."""

    window: str
    rows: int
    error: float
    reference_error: float
    low: float
    high: float
    drifted: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "window": self.window,
            "rows": self.rows,
            "error": num(self.error),
            "reference_error": num(self.reference_error),
            "low": num(self.low),
            "high": num(self.high),
            "drifted": self.drifted,
        }


@dataclass(frozen=True)
class MultivariateDrift:
    """Reconstruction-error drift per window."""

    features: tuple[str, ...]
    components: int
    explained: float
    sigmas: float
    windows: tuple[WindowDrift, ...]

    @property
    def drifted(self) -> bool:
        return any(w.drifted for w in self.windows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": "pca reconstruction error",
            "features": list(self.features),
            "components": self.components,
            "explained_variance": num(self.explained),
            "sigmas": self.sigmas,
            "drifted": self.drifted,
            "windows": [w.to_dict() for w in self.windows],
        }


def _frame(data: Any) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        return data
    arr = np.asarray(data)
    if arr.ndim != 2:
        raise DriftInputError(
            f"data must be a table (rows x features), got shape {arr.shape}", "data"
        )
    return pd.DataFrame(arr, columns=[f"x{i}" for i in range(arr.shape[1])])


def _matrix(data: Any, features: Sequence[str]) -> FArray:
    df = _frame(data)
    missing = [f for f in features if f not in df.columns]
    if missing:
        raise DriftInputError(f"feature {missing[0]!r} is not in the data", missing[0])
    for f in features:
        if not (pd.api.types.is_numeric_dtype(df[f]) or pd.api.types.is_bool_dtype(df[f])):
            raise DriftInputError(
                f"feature {f!r} is not numeric: encode it before multivariate drift", f
            )
    return np.asarray(df[list(features)].to_numpy(dtype=float, na_value=np.nan), dtype=float)


def fit_reconstruction(
    reference: Any, *, features: Sequence[str] | None = None, variance: float = 0.65
) -> ReconstructionModel:
    """Fit the scaling and PCA on ``reference`` (a DataFrame or a 2-D array)."""
    if not 0 < variance <= 1:
        raise DriftInputError(f"variance must lie in (0, 1], got {variance}", "variance")
    df = _frame(reference)
    names = tuple(str(c) for c in (features if features is not None else df.columns))
    if len(names) < 2:
        raise DriftInputError("multivariate drift needs at least two features", "features")
    x = _matrix(df, names)
    if len(x) < 2 * MIN_CHUNKS:
        raise DriftInputError(
            f"the reference has {len(x)} rows; at least {2 * MIN_CHUNKS} are needed", "reference"
        )
    empty = np.isnan(x).all(axis=0)
    if empty.any():
        bad = names[int(np.flatnonzero(empty)[0])]
        raise DriftInputError(f"feature {bad!r} has no value in the reference", bad)
    mean = np.nanmean(x, axis=0)
    std = np.nanstd(x, axis=0)
    scale = np.where(std > 0, std, 1.0)
    z = np.where(np.isnan(x), 0.0, (x - mean) / scale)
    _, s, vt = np.linalg.svd(z, full_matrices=False)
    var = s**2
    share = np.cumsum(var) / var.sum() if var.sum() > 0 else np.ones_like(var)
    k = int(np.searchsorted(share, variance - 1e-12) + 1)
    k = min(k, len(s))
    comps = np.asarray(vt[:k], dtype=float)
    model = ReconstructionModel(
        names, mean, scale, comps, float(share[k - 1]), np.zeros(0, dtype=float)
    )
    return ReconstructionModel(names, mean, scale, comps, float(share[k - 1]), model.errors(df))


def reconstruction_drift(
    model: ReconstructionModel, data: Any, windows: Any = None, *, sigmas: float = 3.0
) -> MultivariateDrift:
    """Reconstruction error per window of ``data`` against the reference's bounds."""
    if not sigmas > 0:
        raise DriftInputError("sigmas must be > 0", "sigmas")
    df = _frame(data)
    if len(df) == 0:
        raise DriftInputError("no rows to measure drift on (empty window)", "data")
    err = model.errors(df)
    win = (
        np.zeros(len(df), dtype=np.int64)
        if windows is None
        else as_1d(windows, "windows", DriftInputError)
    )
    if len(win) != len(df):
        raise DriftInputError(f"{len(win)} window keys for {len(df)} rows", "windows")
    codes, keys = pd.factorize(pd.Series(win, dtype=object), sort=True)
    out = []
    for w, key in enumerate(keys):
        e = err[codes == w]
        centre, low, high = model.bounds(len(e), sigmas)
        value = float(e.mean())
        out.append(
            WindowDrift(
                window="all" if windows is None else str(key),
                rows=len(e),
                error=value,
                reference_error=centre,
                low=low,
                high=high,
                drifted=not low <= value <= high,
            )
        )
    return MultivariateDrift(
        model.features, len(model.components), model.explained, sigmas, tuple(out)
    )
