"""SHAP explanations of a deployed model's decisions.

Given a :class:`~chronoml.registry.models.LoadedModel`, :func:`explainer_for`
picks how to explain it:

- tree models (scikit-learn trees and tree ensembles, LightGBM through its
  MLflow flavor or its scikit-learn API, XGBoost when installed) get
  ``shap.TreeExplainer`` with tree-path-dependent perturbation: exact SHAP
  values, no background sample (the trees' node counts stand for the
  training data);
- everything else gets ``shap.PermutationExplainer`` over a background
  sample of the version's training snapshot (100 rows, seed 0), when the
  model's output is a number or class probabilities.

Every explanation is additive on the output scale it names: ``base_value``
plus the sum of ``contributions`` equals ``output_value``, the model's own
output on that scale, within 1e-6 (relative above 1). It is checked for
every explanation, against the model, not against SHAP's copy of it.

Output scales:

``log_odds``     binary classifiers explained in their raw margin (gradient
                 boosting, LightGBM, XGBoost), for the second class
``margin``       the same for multiclass models, for the predicted class
``probability``  the predicted probability (random forests, extra trees,
                 decision trees, and any classifier explained model-agnostically):
                 of the second class for binary, of the predicted class otherwise
``value``        the model's predicted value (regressors, numeric outputs)
``raw_score``    LightGBM objectives with a link (poisson, gamma, tweedie,
                 cross-entropy): the score before the link

``shap`` (with numba) is imported on first use: it takes seconds.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from chronoml.registry.models import LoadedModel

TREE = "shap.TreeExplainer"
PERMUTATION = "shap.PermutationExplainer"
BACKGROUND_ROWS = 100
BACKGROUND_SEED = 0
TOLERANCE = 1e-6


class NotExplainable(ValueError):
    """The model cannot be explained, or not this way; the message says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


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


class Explainer:
    """Explains rows of the frame the model takes (columns in the model's order)."""

    name: str = ""
    output_scale: str = ""
    background: Background
    note: str | None = None
    per_row_cost: str = "low"  # "high" for model-agnostic explainers

    def explain(self, df: pd.DataFrame) -> list[Explanation]:
        raise NotImplementedError

    def explain_matrix(self, mat: np.ndarray[Any, Any], columns: list[str]) -> list[Explanation]:
        """The same for a float matrix in the model's column order (the gateway's fast path)."""
        return self.explain(pd.DataFrame(mat, columns=columns, copy=False))


# --- choosing an explainer -----------------------------------------------------

BackgroundSource = Callable[[], tuple[pd.DataFrame, str]]
"""Returns the training snapshot's data and its id; raises NotExplainable if there is none."""


def explainer_for(
    model: LoadedModel,
    background: BackgroundSource | None,
    *,
    snapshot_id: str | None = None,
) -> Explainer:
    """The explainer for ``model``: TreeExplainer when SHAP supports it, else model-agnostic.

    ``background`` provides the training snapshot for the model-agnostic
    explainer; ``snapshot_id`` is recorded for tree explanations.
    """
    from chronoml.explain.permutation import Permutation
    from chronoml.explain.tree import tree_explainer

    shap = import_shap()
    est = raw_model(model)
    columns = [c for c, _ in model.schema] if model.schema else None
    why_not_tree: str
    try:
        return tree_explainer(shap, est, snapshot_id)
    except NotExplainable as exc:
        why_not_tree = exc.message
    if background is None:
        raise NotExplainable(
            f"{why_not_tree}; no model-agnostic fallback: no training data to draw a background from"
        )
    try:
        data, sid = background()
    except NotExplainable as exc:
        raise NotExplainable(f"{why_not_tree}; no model-agnostic fallback: {exc.message}") from None
    cols = columns or [c for c in data.columns]
    missing = [c for c in cols if c not in data.columns]
    if missing:
        raise NotExplainable(
            f"{why_not_tree}; no model-agnostic fallback: the training snapshot {sid} "
            f"lacks the model input {missing[0]!r}"
        )
    return Permutation(shap, model, est, data[cols], sid, note=why_not_tree)


def raw_model(model: LoadedModel) -> Any:
    """The flavor's own model object (estimator, booster), or None for plain pyfunc models."""
    if model.raw is not None:
        return model.raw
    import mlflow.pyfunc

    pyfunc_model = mlflow.pyfunc.load_model(str(model.path), suppress_warnings=True)
    try:
        return pyfunc_model.get_raw_model()
    except Exception:  # a python_function model without a flavor object
        return None


_shap_lock = threading.Lock()


def import_shap() -> Any:
    """``import shap``, without the deprecation notices its plotting module prints."""
    with _shap_lock, warnings.catch_warnings():
        # matplotlib colormap setters used by shap.plots; not ours to fix
        warnings.filterwarnings(
            "ignore",
            message="The set_(bad|over|under) function",
            category=PendingDeprecationWarning,
        )
        import shap
    return shap


def type_name(est: Any) -> str:
    """``module.Class`` of an estimator, for messages."""
    t = type(est)
    return f"{t.__module__.split('.')[0]}.{t.__qualname__}"


# --- checks and helpers ---------------------------------------------------------------


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
