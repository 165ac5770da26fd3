"""What an explanation of one decision is: its SHAP values, on a named output scale, and its baseline.

Every explanation is additive on the output scale it names: ``base_value``
plus the sum of ``contributions`` equals ``output_value``, the model's own
output on that scale, within 1e-6 (relative above 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from chronoml.errors import Refused

TREE = "shap.TreeExplainer"
PERMUTATION = "shap.PermutationExplainer"
BACKGROUND_ROWS = 100
BACKGROUND_SEED = 0
TOLERANCE = 1e-6


class NotExplainable(Refused):
    """The model cannot be explained, or not this way; the message says why."""

    code = "not_explainable"


@dataclass(frozen=True)
class Background:
    """What an explanation's baseline stands for."""

    method: str  # "tree_path_dependent" or "interventional"
    snapshot_id: str | None
    rows: int | None = None
    seed: int | None = None
    sample: tuple[int, ...] | None = None  # row positions in the snapshot

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "snapshot_id": self.snapshot_id,
            "rows": self.rows,
            "seed": self.seed,
            "sample": list(self.sample) if self.sample is not None else None,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Background:
        sample = d.get("sample")
        return cls(
            method=str(d["method"]),
            snapshot_id=d.get("snapshot_id"),
            rows=d.get("rows"),
            seed=d.get("seed"),
            sample=tuple(sample) if sample is not None else None,
        )


@dataclass(frozen=True)
class Explanation:
    """The SHAP values of one decision."""

    explainer: str
    output_scale: str
    base_value: float
    contributions: dict[str, float]
    output_value: float
    explained_class: Any
    background: Background
    note: str | None = None

    @property
    def additivity_error(self) -> float:
        return abs(self.base_value + sum(self.contributions.values()) - self.output_value)

    def to_dict(self, decision_id: str) -> dict[str, Any]:
        """The REST shape: ``GET /v1/decisions/{id}/explanation``."""
        return {
            "decision_id": decision_id,
            "explainer": self.explainer,
            "output_scale": self.output_scale,
            "class": self.explained_class,
            "base_value": self.base_value,
            "output_value": self.output_value,
            "contributions": dict(self.contributions),
            "background": self.background.to_dict(),
            "note": self.note,
        }


def type_name(est: Any) -> str:
    """``module.Class`` of an estimator, for messages."""
    t = type(est)
    return f"{t.__module__.split('.')[0]}.{t.__qualname__}"


def check_additive(exp: Explanation) -> None:
    """Refuse an explanation whose parts do not add up to the model's output."""
    err = exp.additivity_error
    if not err <= TOLERANCE * max(1.0, abs(exp.output_value)):
        raise NotExplainable(
            f"{exp.explainer} does not add up on the {exp.output_scale} scale for this model "
            f"(base {exp.base_value} + contributions = {exp.base_value + sum(exp.contributions.values())}, "
            f"model output {exp.output_value}); not storing it"
        )


def jsonable(v: Any) -> Any:
    """A class label as JSON can hold it."""
    if v is None or isinstance(v, str | bool | int | float):
        return v
    if isinstance(v, np.generic):
        return v.item()
    return str(v)


def mean_abs(explanations: Sequence[Explanation]) -> list[tuple[str, float, float]]:
    """Per feature: mean |SHAP| and mean SHAP, largest mean |SHAP| first."""
    if not explanations:
        return []
    names = list(explanations[0].contributions)
    mat = np.array([[e.contributions[c] for c in names] for e in explanations], dtype=np.float64)
    abs_mean = np.abs(mat).mean(axis=0)
    mean = mat.mean(axis=0)
    order = np.argsort(-abs_mean, kind="stable")
    return [(names[j], float(abs_mean[j]), float(mean[j])) for j in order]
