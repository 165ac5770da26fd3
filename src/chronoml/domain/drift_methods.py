"""Which statistic a drift check uses, its threshold, and a feature's own choice of both."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

Method: TypeAlias = Literal["ks", "wasserstein", "psi", "jensenshannon", "chisquare", "z"]

METHODS: tuple[Method, ...] = ("ks", "wasserstein", "psi", "jensenshannon", "chisquare", "z")
DEFAULT_THRESHOLDS: Mapping[Method, float] = {
    "ks": 0.05,
    "chisquare": 0.05,
    "z": 0.05,
    "wasserstein": 0.1,
    "jensenshannon": 0.1,
    "psi": 0.1,
}
#: Methods whose statistic is a p-value: drift when it is small.
P_VALUE_METHODS = frozenset({"ks", "chisquare", "z"})
NUMERIC_ONLY_METHODS = frozenset({"ks", "wasserstein"})


@dataclass(frozen=True)
class DriftOverride:
    """A feature's own method and/or threshold (``None`` keeps the default)."""

    method: Method | None = None
    threshold: float | None = None

    def __post_init__(self) -> None:
        if self.method is not None and self.method not in METHODS:
            raise ValueError(f"unknown drift method {self.method!r}; one of {', '.join(METHODS)}")
        if self.threshold is not None and not math.isfinite(self.threshold):
            raise ValueError("threshold must be a finite number")

    @classmethod
    def parse(cls, value: DriftOverride | Mapping[str, Any]) -> DriftOverride:
        """Accept an override or a plain ``{"method": ..., "threshold": ...}`` mapping."""
        if isinstance(value, DriftOverride):
            return value
        unknown = set(value) - {"method", "threshold"}
        if unknown:
            raise ValueError(f"unknown override keys: {sorted(unknown)}")
        threshold = value.get("threshold")
        return cls(
            method=value.get("method"), threshold=None if threshold is None else float(threshold)
        )
