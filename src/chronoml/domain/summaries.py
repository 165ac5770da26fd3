"""What an experiment knows of one arm: the summary of its outcomes, and an interval."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

_NAN = float("nan")


@dataclass(frozen=True)
class RateSummary:
    """A variant's 0/1 outcomes: ``successes`` out of ``n`` units."""

    n: int
    successes: int

    def __post_init__(self) -> None:
        if self.n < 0 or not 0 <= self.successes <= self.n:
            raise ValueError(f"need 0 <= successes <= n, got {self.successes} of {self.n}")
        object.__setattr__(self, "n", int(self.n))
        object.__setattr__(self, "successes", int(self.successes))

    @classmethod
    def from_outcomes(cls, outcomes: npt.ArrayLike) -> RateSummary:
        """Summarise raw outcomes, each 0/1 or a bool."""
        a = np.asarray(outcomes, dtype=float).ravel()
        if not np.all((a == 0) | (a == 1)):
            raise ValueError("rate outcomes must be 0 or 1")
        return cls(n=int(a.size), successes=int(a.sum()))

    @property
    def estimate(self) -> float:
        """The observed rate (NaN with no units)."""
        return self.successes / self.n if self.n else _NAN


@dataclass(frozen=True)
class MeanSummary:
    """A variant's real-valued outcomes: count, mean and sample variance (ddof=1)."""

    n: int
    mean: float
    variance: float

    def __post_init__(self) -> None:
        if self.n < 0 or self.variance < 0:
            raise ValueError(f"need n >= 0 and variance >= 0, got n={self.n}, {self.variance}")
        # Store plain Python numbers: numpy scalars would leak into results and JSON.
        object.__setattr__(self, "n", int(self.n))
        object.__setattr__(self, "mean", float(self.mean))
        object.__setattr__(self, "variance", float(self.variance))

    @classmethod
    def from_values(cls, values: npt.ArrayLike) -> MeanSummary:
        """Summarise raw outcomes; variance is NaN below two values."""
        a = np.asarray(values, dtype=float).ravel()
        if not np.all(np.isfinite(a)):
            raise ValueError("mean outcomes must be finite numbers")
        n = int(a.size)
        # np.mean / np.var warn on too few values, and warnings are errors here.
        mean = float(a.mean()) if n else _NAN
        variance = float(a.var(ddof=1)) if n >= 2 else _NAN
        return cls(n=n, mean=mean, variance=variance)

    @property
    def estimate(self) -> float:
        """The observed mean."""
        return self.mean


Summary = RateSummary | MeanSummary


@dataclass(frozen=True)
class Interval:
    """A closed interval ``[low, high]`` for the effect."""

    low: float
    high: float

    def __contains__(self, x: float) -> bool:
        return self.low <= x <= self.high
