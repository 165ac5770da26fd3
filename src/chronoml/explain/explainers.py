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
from collections.abc import Callable
from typing import Any

import pandas as pd

from chronoml.domain.explanation import NotExplainable
from chronoml.explain.base import Explainer
from chronoml.explain.permutation import Permutation
from chronoml.explain.tree import tree_explainer
from chronoml.registry.models import LoadedModel, raw_model

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
        # lazy: shap (with numba) takes seconds to import
        import shap
    return shap
