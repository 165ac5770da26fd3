"""Small helpers the fairness modules share: JSON-safe numbers, intervals, label cleaning."""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from chronoml.errors import InvalidInput


class FairnessError(InvalidInput):
    """Bad input to a fairness or estimation computation; ``field`` names the input."""


def num(x: Any) -> float | None:
    """``x`` as a float for JSON, or None when it is missing or not finite."""
    if x is None:
        return None
    v = float(x)
    return v if math.isfinite(v) else None


def z_value(confidence: float) -> float:
    """The two-sided normal quantile for ``confidence`` (0.95 -> 1.96)."""
    return NormalDist().inv_cdf(0.5 + confidence / 2)


@dataclass(frozen=True)
class Interval:
    """A confidence interval; both ends None when the figure is undefined."""

    low: float | None
    high: float | None
    method: str

    def to_dict(self) -> dict[str, Any]:
        return {"low": num(self.low), "high": num(self.high), "method": self.method}


def wilson(successes: int, trials: int, z: float) -> Interval:
    """Wilson score interval for a proportion: keeps inside [0, 1] and behaves at 0 and n."""
    if trials <= 0:
        return Interval(None, None, "wilson")
    p = successes / trials
    z2 = z * z
    denom = 1 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / denom
    return Interval(max(0.0, centre - half), min(1.0, centre + half), "wilson")


def labelled_mask(values: Any) -> npt.NDArray[np.bool_]:
    """True where a label is present (None and NaN mean "no label yet")."""
    return np.asarray(pd.Series(values).notna().to_numpy(), dtype=bool)


def as_1d(values: Any, name: str, error: type[FairnessError]) -> npt.NDArray[Any]:
    """``values`` as a one-dimensional array, or ``error`` naming ``name``."""
    if values is None:
        raise error(f"{name} is missing", name)
    arr = np.asarray(values.to_numpy() if isinstance(values, pd.Series) else values)
    if arr.ndim != 1:
        raise error(f"{name} must be one-dimensional, got shape {arr.shape}", name)
    return arr
