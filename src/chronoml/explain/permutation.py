"""Any model with numeric outputs, explained with ``shap.PermutationExplainer``.

The background is a seeded sample of the version's training snapshot; the
explained output is the positive class's probability for classifiers with
``predict_proba`` (the predicted class's for multiclass), else the model's
output.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from chronoml.domain.explanation import (
    BACKGROUND_ROWS,
    BACKGROUND_SEED,
    PERMUTATION,
    Background,
    Explanation,
    NotExplainable,
    check_additive,
    jsonable,
)
from chronoml.explain.base import Explainer

if TYPE_CHECKING:
    from chronoml.registry.models import LoadedModel

# shap's PermutationExplainer draws permutations from NumPy's global generator.
# Each row is explained from the same seed, under this lock, and the global
# state is put back afterwards: a decision's explanation does not depend on
# what else was explained, and nobody else's random numbers change.
_rng_lock = threading.Lock()


class _Rows:
    """A shap masker: hidden features take the background rows' values.

    Unlike ``shap.maskers.Independent`` it keeps strings as they are, and it
    does not use shap's delta masking (whose numba compilation takes seconds).
    """

    immutable_outputs = True

    def __init__(self, data: np.ndarray[Any, Any], feature_names: list[str]) -> None:
        self.data = data
        self.shape = data.shape
        self.feature_names = feature_names

    def __call__(self, mask: np.ndarray[Any, Any], x: np.ndarray[Any, Any]) -> tuple[Any, ...]:
        return (np.where(mask, x, self.data),)

    def invariants(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return np.asarray(self.data == x, dtype=bool)


@dataclass
class _Frame:
    """Rebuilds the model's input frame from a matrix of (masked) rows."""

    columns: list[str]
    kinds: list[str]
    numeric: bool = field(init=False)

    def __post_init__(self) -> None:
        self.numeric = all(k != "string" for k in self.kinds)

    def matrix(self, df: pd.DataFrame) -> np.ndarray[Any, Any]:
        return df.to_numpy(dtype=np.float64) if self.numeric else df.to_numpy(dtype=object)

    def frame(self, a: np.ndarray[Any, Any]) -> pd.DataFrame:
        cols: dict[str, Any] = {}
        for j, (c, k) in enumerate(zip(self.columns, self.kinds, strict=True)):
            v = a[:, j]
            if k == "int":
                cols[c] = v.astype(np.int64)
            elif k == "bool":
                cols[c] = v.astype(bool)
            elif k == "float":
                cols[c] = v.astype(np.float64)
            else:
                cols[c] = v.astype(object)
        return pd.DataFrame(cols, copy=False)


class Permutation(Explainer):
    """``shap.PermutationExplainer`` over a seeded sample of the training snapshot."""

    name = PERMUTATION
    per_row_cost = "high"

    def __init__(
        self,
        shap: Any,
        model: LoadedModel,
        est: Any,
        data: pd.DataFrame,
        snapshot_id: str,
        *,
        note: str,
        rows: int = BACKGROUND_ROWS,
        seed: int = BACKGROUND_SEED,
    ) -> None:
        self.note = note
        kinds = {c: k for c, k in model.schema} if model.schema else {}
        columns = list(data.columns)
        self.shape = _Frame(columns, [kinds.get(c) or _kind(data[c]) for c in columns])
        rng = np.random.default_rng(seed)
        n = min(rows, len(data))
        if n == 0:
            raise NotExplainable(
                f"{note}; no model-agnostic fallback: the training snapshot is empty"
            )
        sample = np.sort(rng.choice(len(data), size=n, replace=False))
        self.background = Background(
            "interventional", snapshot_id, rows=n, seed=seed, sample=tuple(int(i) for i in sample)
        )
        bg = self.shape.frame(self.shape.matrix(data.iloc[sample]))
        self.classes: list[Any] | None = None
        fn: Callable[[pd.DataFrame], Any]
        if est is not None and hasattr(est, "predict_proba") and hasattr(est, "classes_"):
            self.classes = list(est.classes_)
            by_name = hasattr(est, "feature_names_in_")
            proba = est.predict_proba
            self.output_scale = "probability"

            def fn(df: pd.DataFrame) -> Any:
                out = np.asarray(proba(df if by_name else df.to_numpy()), dtype=np.float64)
                return out[:, 1] if out.shape[1] == 2 else out
        else:
            self.output_scale = "value"
            fn = model.predict
        self._fn = fn
        try:
            self._f(self.shape.matrix(bg))
        except NotExplainable:
            raise
        except Exception as exc:
            raise NotExplainable(
                f"{note}; the model fails on its own training data ({exc})"
            ) from None
        self.max_evals = max(500, 2 * (2 * len(columns) + 1))
        self.batch = 2 * len(columns) + 1
        self._data = self.shape.matrix(bg)
        with _rng_lock:
            state = np.random.get_state()
            try:
                self._ex = shap.explainers.Permutation(
                    self._f, _Rows(self._data, columns), seed=seed
                )
            finally:
                np.random.set_state(state)
        self.seed = seed

    def _f(self, a: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        out = self._fn(self.shape.frame(a))
        arr = np.asarray(out)
        if arr.dtype.kind not in "fiub":
            raise NotExplainable(
                f"not explainable with {PERMUTATION}: the model's outputs are not numbers"
            )
        arr = arr.astype(np.float64)
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        return arr

    def explain(self, df: pd.DataFrame) -> list[Explanation]:
        columns = list(df.columns)
        x = self.shape.matrix(df)
        outputs = self._f(x)
        result = []
        for i in range(len(df)):
            with _rng_lock:
                state = np.random.get_state()
                np.random.seed(self.seed)
                try:
                    e = self._ex(
                        x[i : i + 1], max_evals=self.max_evals, batch_size=self.batch, silent=True
                    )
                finally:
                    np.random.set_state(state)
            sv = np.asarray(e.values)
            ev = np.asarray(e.base_values)
            binary = self.classes is not None and len(self.classes) == 2
            out = outputs[i : i + 1]
            if sv.ndim == 3:
                cls = int(np.argmax(out[0]))
                values, base, output = sv[0, :, cls], float(ev[0][cls]), float(out[0][cls])
            else:
                cls = 1 if binary else 0
                values, base, output = sv[0], float(np.ravel(ev)[0]), float(np.ravel(out)[0])
            exp = Explanation(
                explainer=self.name,
                output_scale=self.output_scale,
                base_value=base,
                contributions={c: float(v) for c, v in zip(columns, values, strict=True)},
                output_value=output,
                explained_class=jsonable(self.classes[cls]) if self.classes is not None else None,
                background=self.background,
                note=self.note,
            )
            check_additive(exp)
            result.append(exp)
        return result


def _kind(s: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(s.dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(s.dtype):
        return "int"
    if pd.api.types.is_float_dtype(s.dtype):
        return "float"
    return "string"
