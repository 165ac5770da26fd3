"""Tree models explained with ``shap.TreeExplainer`` (tree-path-dependent, exact).

The output scale of each supported family is fixed here, and every
explanation is checked against the model's own output on that scale.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from chronoml.domain.explanation import (
    TREE,
    Background,
    Explanation,
    NotExplainable,
    check_additive,
    jsonable,
    type_name,
)
from chronoml.explain.base import Explainer

# LightGBM objectives whose raw score is the prediction itself
_LGB_IDENTITY = frozenset(
    {
        "regression",
        "regression_l2",
        "l2",
        "regression_l1",
        "l1",
        "huber",
        "fair",
        "quantile",
        "mape",
    }
)


def tree_explainer(shap: Any, est: Any, snapshot_id: str | None) -> Explainer:
    """``shap.TreeExplainer`` for ``est``; NotExplainable when it is not a tree model SHAP takes."""
    if est is None:
        raise NotExplainable(f"not explainable with {TREE}: the model has no flavor object")
    try:
        # lazy: LightGBM loads only for LightGBM models
        import lightgbm

        if isinstance(est, lightgbm.LGBMModel | lightgbm.Booster):
            return _LightGBM(shap, est, snapshot_id)
    except ImportError:
        pass
    try:
        tree = shap.TreeExplainer(est, feature_perturbation="tree_path_dependent")
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise NotExplainable(
            f"not explainable with {TREE}: {type_name(est)} is not a tree model it supports ({reason})"
        ) from None
    module = type(est).__module__
    if module.startswith("sklearn."):
        return _SklearnTree(tree, est, snapshot_id)
    if module.startswith("xgboost"):
        return _XGBoost(tree, est, snapshot_id)
    raise NotExplainable(
        f"not explainable with {TREE}: chronoml cannot check {type_name(est)}'s output scale"
    )


class _TreeBase(Explainer):
    name = TREE

    def __init__(self, snapshot_id: str | None) -> None:
        self.background = Background("tree_path_dependent", snapshot_id)

    def _finish(
        self,
        columns: Sequence[str],
        values: np.ndarray[Any, Any],
        base: np.ndarray[Any, Any],
        output: np.ndarray[Any, Any],
        classes: Sequence[Any],
    ) -> list[Explanation]:
        out = []
        for i in range(values.shape[0]):
            exp = Explanation(
                explainer=self.name,
                output_scale=self.output_scale,
                base_value=float(base[i]),
                contributions={c: float(v) for c, v in zip(columns, values[i], strict=True)},
                output_value=float(output[i]),
                explained_class=jsonable(classes[i]),
                background=self.background,
                note=self.note,
            )
            check_additive(exp)
            out.append(exp)
        return out


def _pick(
    sv: np.ndarray[Any, Any], ev: np.ndarray[Any, Any], out: np.ndarray[Any, Any], binary: bool
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Per row: the values, base and output of the explained class, and its index.

    ``sv`` is (rows, features) for single-output models or (rows, features,
    outputs); ``out`` is (rows,) or (rows, outputs).
    """
    n = sv.shape[0]
    if sv.ndim == 2:
        base = np.full(n, float(np.ravel(ev)[0]))
        idx = np.ones(n, dtype=int) if binary else np.zeros(n, dtype=int)
        return sv, base, out.reshape(n), idx
    idx = np.ones(n, dtype=int) if binary else np.argmax(out.reshape(n, -1), axis=1)
    rows = np.arange(n)
    ev = np.ravel(ev)
    return sv[rows, :, idx], ev[idx], out.reshape(n, -1)[rows, idx], idx


class _SklearnTree(_TreeBase):
    def __init__(self, tree: Any, est: Any, snapshot_id: str | None) -> None:
        super().__init__(snapshot_id)
        # lazy: scikit-learn loads only for the models that need it
        from sklearn.base import is_classifier
        from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier

        self.tree = tree
        self.est = est
        self.classes: Sequence[Any] | None = None
        self._out: Callable[[Any], Any]
        if is_classifier(est):
            self.classes = list(est.classes_)
            if isinstance(est, GradientBoostingClassifier) and hasattr(est, "_raw_predict"):
                self.output_scale = "log_odds" if len(self.classes) == 2 else "margin"
                self._out = self._gbc_margin
            elif isinstance(est, GradientBoostingClassifier | HistGradientBoostingClassifier):
                self.output_scale = "log_odds" if len(self.classes) == 2 else "margin"
                self._out = est.decision_function
            else:
                self.output_scale = "probability"
                self._out = est.predict_proba
        else:
            self.output_scale = "value"
            self._out = est.predict

    def _gbc_margin(self, x: Any) -> Any:
        # decision_function is this, after validating the input again: the rows
        # were checked against the signature already, and validation costs more
        # than the margin itself (same float32 input, same values)
        m = np.ascontiguousarray(np.asarray(x, dtype=np.float64), dtype=np.float32)
        raw = self.est._raw_predict(m)
        return raw.ravel() if raw.shape[1] == 1 else raw

    def explain(self, df: pd.DataFrame) -> list[Explanation]:
        return self._explain(df.to_numpy(dtype=np.float64), list(df.columns), df)

    def explain_matrix(self, mat: np.ndarray[Any, Any], columns: list[str]) -> list[Explanation]:
        return self._explain(np.asarray(mat, dtype=np.float64), columns, None)

    def _explain(
        self, x: np.ndarray[Any, Any], columns: list[str], df: pd.DataFrame | None
    ) -> list[Explanation]:
        if hasattr(self.est, "feature_names_in_") and self._out != self._gbc_margin:
            # the estimator checks feature names: give it the frame it was fitted on
            out = self._out(df if df is not None else pd.DataFrame(x, columns=columns))
        else:
            out = self._out(x)
        out = np.asarray(out, dtype=np.float64)
        sv = np.asarray(self.tree.shap_values(x, check_additivity=False))
        binary = self.classes is not None and len(self.classes) == 2
        values, base, output, idx = _pick(sv, np.asarray(self.tree.expected_value), out, binary)
        classes = [self.classes[j] for j in idx] if self.classes is not None else [None] * len(x)
        return self._finish(columns, values, base, output, classes)


class _LightGBM(_TreeBase):
    """TreeSHAP as ``shap.TreeExplainer`` computes it for LightGBM.

    ``shap.TreeExplainer`` hands LightGBM models to the booster's own
    ``predict(pred_contrib=True)``; this makes the same call directly, with
    one thread (a single row gains nothing from OpenMP, and loses a lot on
    a busy machine) and a NumPy matrix instead of a DataFrame.
    """

    def __init__(self, shap: Any, est: Any, snapshot_id: str | None) -> None:
        super().__init__(snapshot_id)
        # lazy: LightGBM loads only for LightGBM models
        import lightgbm

        booster = est.booster_ if isinstance(est, lightgbm.LGBMModel) else est
        shap.TreeExplainer(booster)  # SHAP's own check that it supports this booster
        self.booster = booster
        objective = str(booster.params.get("objective") or "")
        if not objective:
            objective = str(booster.dump_model(num_iteration=0).get("objective", ""))
        objective = objective.split()[0] if objective else ""
        self.k = int(booster.num_model_per_iteration())
        self.classes: Sequence[Any] | None = None
        if hasattr(est, "classes_"):
            self.classes = list(est.classes_)
        elif objective in ("binary", "multiclass", "multiclassova", "softmax", "ova"):
            self.classes = list(range(max(self.k, 2)))
        if objective == "binary":
            self.output_scale = "log_odds"
        elif self.k > 1:
            self.output_scale = "margin"
        elif objective in _LGB_IDENTITY:
            self.output_scale = "value"
        else:
            self.output_scale = "raw_score"

    def explain(self, df: pd.DataFrame) -> list[Explanation]:
        return self.explain_matrix(df.to_numpy(dtype=np.float64), list(df.columns))

    def explain_matrix(self, mat: np.ndarray[Any, Any], columns: list[str]) -> list[Explanation]:
        x = np.asarray(mat, dtype=np.float64)
        n, m = x.shape
        contrib = np.asarray(self.booster.predict(x, pred_contrib=True, num_threads=1))
        raw = np.asarray(self.booster.predict(x, raw_score=True, num_threads=1), dtype=np.float64)
        if self.k == 1:
            sv = contrib[:, :m]
            ev = contrib[:1, m]
        else:
            c = contrib.reshape(n, self.k, m + 1)
            sv = np.transpose(c[:, :, :m], (0, 2, 1))
            ev = c[0, :, m]
        binary = self.output_scale == "log_odds"
        values, base, output, idx = _pick(sv, ev, raw, binary)
        classes = [self.classes[j] for j in idx] if self.classes is not None else [None] * n
        return self._finish(columns, values, base, output, classes)


class _XGBoost(_TreeBase):
    """XGBoost's scikit-learn API, explained in its margin.

    XGBoost sums its trees in float32, so its own margin is only good to
    about 1e-7 of its size: too coarse for a 1e-6 additivity check on large
    margins. The output value is the same margin summed in float64 by
    walking the same trees, and it must agree with XGBoost's own to float32
    precision, or the explanation is refused.
    """

    def __init__(self, tree: Any, est: Any, snapshot_id: str | None) -> None:
        super().__init__(snapshot_id)
        self.tree = tree
        self.est = est
        self.classes = list(est.classes_) if hasattr(est, "classes_") else None
        if self.classes is None:
            self.output_scale = "value"
        else:
            self.output_scale = "log_odds" if len(self.classes) == 2 else "margin"

    def explain(self, df: pd.DataFrame) -> list[Explanation]:
        sv = np.asarray(self.tree.shap_values(df, check_additivity=False))
        own = np.asarray(self.est.predict(df, output_margin=True), dtype=np.float64)
        out = np.asarray(self.tree.model.predict(df.to_numpy(), output="raw"), dtype=np.float64)
        out = out.reshape(own.shape)
        if not np.allclose(out, own, rtol=1e-5, atol=1e-5):
            worst = float(np.max(np.abs(out - own)))
            raise NotExplainable(
                f"not explainable with {TREE}: its reading of {type_name(self.est)} gives margins "
                f"up to {worst:.3g} away from XGBoost's own"
            )
        binary = self.classes is not None and len(self.classes) == 2
        values, base, output, idx = _pick(sv, np.asarray(self.tree.expected_value), out, binary)
        classes = [self.classes[j] for j in idx] if self.classes is not None else [None] * len(df)
        return self._finish(list(df.columns), values, base, output, classes)
