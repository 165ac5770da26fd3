"""Outcomes of logged decisions for A/B analysis: the metrics, one decision's outcome,
and the summaries the statistics take."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from chronoml.domain import experiment as X

# metric -> (kind, higher is better); kind "auto" picks rate for 0/1 outcomes
METRICS: dict[str, tuple[str, bool]] = {
    "accuracy": ("rate", True),
    "abs_error": ("mean", False),
    "squared_error": ("mean", False),
    "label": ("auto", True),
}


def _clean(x: Any) -> Any:
    """NaN and infinities become None (JSON has neither)."""
    if isinstance(x, float) and not np.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    return x


def _serving_dict(s: X.ServingStats) -> dict[str, Any]:
    return {"error_rate": s.error_rate, "p99_latency_ms": s.p99_latency_ms, "quality": s.quality}


def outcome(metric: str, output: Any, label: Any) -> float | None:
    """One decision's outcome under ``metric``; None when it does not apply."""
    if label is None:
        return None
    if metric == "accuracy":
        return 1.0 if _same(output, label) else 0.0
    if metric == "label":
        return float(label) if isinstance(label, int | float) else None
    if not (_number(output) and _number(label)):
        return None
    diff = float(output) - float(label)
    return abs(diff) if metric == "abs_error" else diff * diff


def _number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool | int | float) and isinstance(b, bool | int | float):
        return float(a) == float(b)
    return bool(a == b)


def summarise(kind: str, values: Sequence[float]) -> X.Summary:
    if kind == "rate":
        return X.RateSummary.from_outcomes(values)
    return X.MeanSummary.from_values(values)


def _kind(metric: str, values: Iterable[float]) -> str:
    kind = METRICS[metric][0]
    if kind != "auto":
        return kind
    return "rate" if all(v in (0.0, 1.0) for v in values) else "mean"
