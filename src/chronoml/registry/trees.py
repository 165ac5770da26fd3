"""scikit-learn tree ensembles called below their per-call validation, when provably equal.

A single-row ``predict_proba`` of a 100-tree gradient boosting model spends
most of its time checking its input (feature names, dtype, finiteness, once
for the ensemble and again for its first tree), not walking trees. The
gateway has already checked the rows against the signature and holds them as
a finite float64 matrix in the model's column order, so the checks can be
skipped: convert to the C-contiguous float32 matrix the trees read (what
scikit-learn's own check makes of it) and call the fitted trees directly.

That reaches into scikit-learn's fitted attributes, which a future version
may change. So a fast path is only built for the exact estimator classes
named here, and only used after a probe at load shows it gives *identical*
outputs to the model's own ``predict`` and ``predict_proba``: on the
version's input example, on random rows at several scales, and on rows made
of the trees' own split thresholds and their neighbouring floats (where a
rounding difference between float64 and float32 would show). Any
difference, warning or error keeps the normal path.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

Matrix = np.ndarray[Any, Any]
Fn = Callable[[Matrix], Any]

_GB = frozenset({"GradientBoostingClassifier", "GradientBoostingRegressor"})
_FORESTS = frozenset(
    {
        "RandomForestClassifier",
        "RandomForestRegressor",
        "ExtraTreesClassifier",
        "ExtraTreesRegressor",
    }
)
_TREES = frozenset({"DecisionTreeClassifier", "DecisionTreeRegressor"})
_DUMMIES = frozenset({"DummyClassifier", "DummyRegressor"})


@dataclass(frozen=True)
class FastTrees:
    """A tree ensemble's predict (and predict_proba, for classifiers) on a float64 matrix."""

    predict: Fn
    predict_proba: Fn | None


def fast_trees(
    raw: Any, names: list[str], example: Matrix | None = None, seed: int = 2
) -> FastTrees | None:
    """The validated-once path for ``raw``, or None when it is not one we know or differs."""
    built = _build(raw)
    if built is None:
        return None
    x = probe_rows(raw, len(names), example, seed)
    if x is None:
        return None
    frame = (
        pd.DataFrame(x, columns=pd.Index(names, dtype=object))
        if getattr(raw, "feature_names_in_", None) is not None
        else x
    )
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            checks = [(built.predict, raw.predict)]
            if built.predict_proba is not None:
                checks.append((built.predict_proba, raw.predict_proba))
            for mine, own in checks:
                if not same(own(frame), mine(x.copy())):
                    return None
    except Exception:  # the probe is out of the model's domain: keep its own path
        return None
    if caught:
        return None
    return built


def _guarded(fast: Fn, own: Fn) -> Fn:
    """``fast`` on a finite matrix; the model's own path (and its error) otherwise."""

    def run(mat: Matrix) -> Any:
        if not np.isfinite(mat).all():
            return own(mat)
        return fast(np.ascontiguousarray(mat, dtype=np.float32))

    return run


def _build(raw: Any) -> FastTrees | None:
    kind = type(raw).__name__
    if getattr(raw, "n_outputs_", 1) != 1 or not hasattr(raw, "n_features_in_"):
        return None
    if kind in _GB:
        return _gradient_boosting(raw)
    if kind in _FORESTS or kind in _TREES:
        return _forest(raw, [raw] if kind in _TREES else list(raw.estimators_), kind in _TREES)
    return None


def _gradient_boosting(gb: Any) -> FastTrees | None:
    # lazy: scikit-learn loads only for the models that need it
    from sklearn.ensemble._gradient_boosting import predict_stages

    init = gb.init_
    if not (isinstance(init, str) and init == "zero") and (
        type(init).__name__ not in _DUMMIES or getattr(init, "strategy", None) == "stratified"
    ):
        return None  # an init model whose output depends on the row (or is drawn at random)
    width = int(gb.n_trees_per_iteration_)
    stages, rate = gb.estimators_, gb.learning_rate
    start = _init_row(gb, width)
    if start is None:
        return None
    classifier = hasattr(gb, "classes_")

    def raw_scores(x32: Matrix) -> Matrix:
        out = np.repeat(start, x32.shape[0], axis=0)
        predict_stages(stages, x32, rate, out)
        return out

    def decision(x32: Matrix) -> Matrix:
        out = raw_scores(x32)
        return out.ravel() if out.shape[1] == 1 else out

    own_predict = _own_on_matrix(gb, "predict")
    if not classifier:
        return FastTrees(_guarded(decision, own_predict), None)
    classes, loss = gb.classes_, gb._loss

    def predict(x32: Matrix) -> Any:
        d = decision(x32)
        codes = (d >= 0).astype(int) if d.ndim == 1 else np.argmax(d, axis=1)
        return classes[codes]

    def proba(x32: Matrix) -> Any:
        return loss.predict_proba(decision(x32))

    return FastTrees(
        _guarded(predict, own_predict), _guarded(proba, _own_on_matrix(gb, "predict_proba"))
    )


def _init_row(gb: Any, width: int) -> Matrix | None:
    """The initial raw scores, the same for every row (a constant init model), as one row."""
    # lazy: scikit-learn loads only for the models that need it
    from sklearn.base import is_classifier
    from sklearn.ensemble._gb import _init_raw_predictions

    if isinstance(gb.init_, str):
        return np.zeros((1, width), dtype=np.float64)
    one = np.zeros((1, int(gb.n_features_in_)), dtype=np.float32)
    try:
        row = _init_raw_predictions(one, gb.init_, gb._loss, is_classifier(gb))
    except Exception:  # another scikit-learn: keep the model's own path
        return None
    return np.asarray(row, dtype=np.float64).reshape(1, width)


def _forest(model: Any, trees: list[Any], alone: bool) -> FastTrees | None:
    """A forest (or one tree, ``alone``): the mean of its trees' leaf values, summed from
    zero in the model's order, as its own predict sums them."""
    if not trees or any(getattr(t, "tree_", None) is None for t in trees):
        return None
    structs = [t.tree_ for t in trees]
    classifier = hasattr(model, "classes_")
    own_predict = _own_on_matrix(model, "predict")
    if not classifier:

        def value(x32: Matrix) -> Matrix:
            if alone:
                return np.asarray(structs[0].predict(x32)[:, 0])
            total = np.zeros(x32.shape[0], dtype=np.float64)
            for s in structs:
                total += s.predict(x32)[:, 0]
            total /= len(structs)
            return total

        return FastTrees(_guarded(value, own_predict), None)
    n_classes, classes = int(model.n_classes_), model.classes_

    def proba(x32: Matrix) -> Matrix:
        if alone:
            return np.asarray(structs[0].predict(x32)[:, :n_classes])
        total = np.zeros((x32.shape[0], n_classes), dtype=np.float64)
        for s in structs:
            total += s.predict(x32)[:, :n_classes]
        total /= len(structs)
        return total

    def predict(x32: Matrix) -> Any:
        return classes.take(np.argmax(proba(x32), axis=1), axis=0)

    return FastTrees(
        _guarded(predict, own_predict), _guarded(proba, _own_on_matrix(model, "predict_proba"))
    )


def _own_on_matrix(model: Any, method: str) -> Fn:
    """The model's own ``method`` on a bare matrix (its checks, its errors)."""
    fn = getattr(model, method)
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        return fn  # type: ignore[no-any-return]
    cols = pd.Index(list(names), dtype=object)
    return lambda mat: fn(pd.DataFrame(mat, columns=cols))


def probe_rows(raw: Any, width: int, example: Matrix | None, seed: int) -> Matrix | None:
    """Rows to compare on: the input example, random rows, and rows on every split threshold."""
    edges: list[list[float]] = [[] for _ in range(width)]
    for struct in _tree_structs(raw):
        for f, t in zip(struct.feature, struct.threshold, strict=True):
            if f >= 0:
                edges[f].append(float(t))
    return rows_near(edges, example, seed)


def rows_near(edges: list[list[float]], example: Matrix | None, seed: int) -> Matrix | None:
    """The probe's rows for a model splitting feature ``j`` at each of ``edges[j]``: 128
    random rows at four scales, the input example, and 512 rows drawn from the thresholds
    and their neighbouring float64 and float32 values (where a rounding difference shows)."""
    width = len(edges)
    rng = np.random.default_rng(seed)
    parts = [rng.standard_normal((32, width)) * scale for scale in (0.01, 1.0, 100.0, 1e4)]
    if example is not None and example.ndim == 2 and example.shape[1] == width:
        parts.append(np.asarray(example, dtype=np.float64))
    if any(edges):
        cols = []
        for j in range(width):
            t = np.unique(np.asarray(edges[j] or [0.0], dtype=np.float64))
            near = np.concatenate(
                [
                    t,
                    np.nextafter(t, np.inf),
                    np.nextafter(t, -np.inf),
                    t.astype(np.float32).astype(np.float64),
                    np.nextafter(t.astype(np.float32), np.float32(np.inf)).astype(np.float64),
                    np.nextafter(t.astype(np.float32), np.float32(-np.inf)).astype(np.float64),
                ]
            )
            cols.append(rng.choice(near, size=512))
        parts.append(np.column_stack(cols))
    x = np.concatenate(parts)
    # values past float32's range are refused by the gateway before any model sees them
    x = x[np.all(np.abs(x) < np.finfo(np.float32).max, axis=1)]
    return np.ascontiguousarray(x) if len(x) else None


def _tree_structs(raw: Any) -> list[Any]:
    est = getattr(raw, "estimators_", None)
    if est is None:
        tree = getattr(raw, "tree_", None)
        return [tree] if tree is not None else []
    return [t.tree_ for t in np.asarray(est, dtype=object).ravel() if hasattr(t, "tree_")]


def same(a: Any, b: Any) -> bool:
    """Identical: the same shape, dtype and values (NaN equal to NaN)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.kind == "f":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))
