"""LightGBM and XGBoost models called on the gateway's float matrix, when provably equal.

Served through their MLflow flavors, these models answer a request through
MLflow's schema enforcement and then their own conversion of a DataFrame:
XGBoost's pyfunc builds a ``DMatrix`` for a native booster, its scikit-learn
API transforms the frame column by column, LightGBM's scikit-learn API runs
scikit-learn's input checks. The gateway has already checked the rows
against the signature and holds them as a finite float64 matrix in the
signature's order, so the booster can read that matrix directly:

- XGBoost: ``Booster.inplace_predict`` on the C-contiguous float64 matrix,
  without the feature-name check, over the trees (``iteration_range``) and
  with the ``missing`` value the model's own ``predict`` uses;
- LightGBM: ``Booster.predict`` on the matrix, with the predict-time
  parameters the model's own ``predict`` passes;
- both on one thread for a batch of fewer than :data:`FEW` rows.

The class labels and probabilities of the scikit-learn API classifiers are
then derived from the booster's output as their own ``predict`` and
``predict_proba`` derive them. A fast call is only used after a probe at
load shows *identical* outputs (same dtype, same values) to the model's own
call on the version's input example, on random rows at several scales, and
on rows made of the trees' split thresholds and their neighbouring float64
and float32 values. Any difference, warning or error keeps the model's own
call, and :attr:`Choice.note` says why.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from chronoml.registry.trees import FastTrees, Fn, Matrix, rows_near, same

Frame = Callable[[pd.DataFrame], Any]

# exactly these classes: a subclass may change what predict means
_XGB_SKLEARN = frozenset({"XGBClassifier", "XGBRegressor"})
_LGB_SKLEARN = frozenset({"LGBMClassifier", "LGBMRegressor"})
# LightGBM's predict-time parameters that change what it predicts
_LGB_PREDICT_PARAMS = ("pred_early_stop", "pred_early_stop_freq", "pred_early_stop_margin")


# Batches of fewer rows are predicted on one thread: waking OpenMP's other threads costs
# more than the trees (tens of milliseconds on a busy machine), and each row's output is
# summed over the trees in the same order whatever the thread count (the probe checks both)
FEW = 256


@dataclass(frozen=True)
class Choice:
    """The call a booster is served with: ``fast`` when the probe passed, and why."""

    fast: FastTrees | None
    note: str
    call: str = "own"  # the name of the call chosen


def library_of(raw: Any) -> str | None:
    """``"xgboost"`` or ``"lightgbm"`` for a booster or scikit-learn API model of theirs."""
    module = type(raw).__module__.split(".", 1)[0]
    return module if module in ("xgboost", "lightgbm") else None


def fast_booster(
    raw: Any,
    names: list[str],
    own_predict: Frame,
    own_proba: Frame | None,
    example: Matrix | None = None,
    seed: int = 2,
) -> Choice:
    """The fast call for ``raw`` when a probe shows it gives what ``own_predict`` (and
    ``own_proba``, for a classifier) give on a frame of ``names``; else why not."""
    try:
        built = _build(raw, len(names), own_proba is not None)
    except Exception as exc:  # another version of the library: keep its own call
        return Choice(None, f"own call: the booster could not be read ({exc})")
    if isinstance(built, str):
        return Choice(None, f"own call: {built}")
    call, fast = built
    edges = _thresholds(raw, len(names))
    x = rows_near(edges, example, seed)
    if x is None:
        return Choice(None, "own call: no probe rows")
    checks: list[tuple[str, Fn, Frame]] = [("predict", fast.predict, own_predict)]
    if own_proba is not None and fast.predict_proba is not None:
        checks.append(("predict_proba", fast.predict_proba, own_proba))
    why = disagreement(checks, x, names)
    if why is not None:
        return Choice(None, f"own call: {call} {why}")
    return Choice(fast, f"{call}: identical to the model's own on {len(x)} probe rows", call)


# rows also compared one at a time: a library may take another code path for a single row
_ALONE = 8


def disagreement(checks: list[tuple[str, Fn, Frame]], x: Matrix, names: list[str]) -> str | None:
    """Why a fast call is not the model's own on the probe rows ``x``, or None when each
    ``(what, fast, own)`` gives identical outputs (and no warning) on all of them at once,
    on fewer than :data:`FEW` of them (one thread), and on the first rows alone."""
    batches = [x, x[: FEW - 1], *(x[i : i + 1] for i in range(min(_ALONE, len(x))))]
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for what, mine, own in checks:
                for rows in batches:
                    frame = pd.DataFrame(rows, columns=pd.Index(names, dtype=object))
                    if not same(own(frame), mine(np.array(rows))):
                        return f"differs from the model's own {what} on {len(rows)} probe rows"
    except Exception as exc:  # the probe is out of the model's domain: keep its own call
        return f"failed on the probe rows ({type(exc).__name__}: {exc})"
    if caught:
        return f"warned on the probe rows ({caught[0].message})"
    return None


def _build(raw: Any, width: int, classifier: bool) -> tuple[str, FastTrees] | str:
    """The fast call and its name, or why there is none."""
    lib, kind = library_of(raw), type(raw).__name__
    if lib == "xgboost":
        booster = raw if kind == "Booster" else raw.get_booster()
        trees = json.loads(booster.save_config())["learner"]["gradient_booster"]["name"]
        if trees != "gbtree":
            # dart weighs its trees in a batch-dependent order (its own predict and
            # inplace_predict differ in the last float32 bit); gblinear has no in-place call
            return f"a {trees} booster's own predict is not inplace_predict's arithmetic"
        if kind == "Booster":
            return "xgboost inplace_predict", FastTrees(_xgb_call(raw, (0, 0), np.nan, width), None)
        if kind in _XGB_SKLEARN:
            return _xgb_sklearn(raw, width, classifier)
    if lib == "lightgbm":
        if kind == "Booster":
            if getattr(raw, "pandas_categorical", None):
                return "the booster maps pandas categories itself"
            return "lightgbm Booster.predict", FastTrees(_lgb_call(raw, {}, width), None)
        if kind in _LGB_SKLEARN:
            return _lgb_sklearn(raw, width, classifier)
    return f"{type(raw).__module__}.{kind} has no fast call here"


def _xgb_call(booster: Any, iterations: tuple[int, int], missing: float, width: int) -> Fn:
    if booster.num_features() != width:
        raise ValueError(f"the booster reads {booster.num_features()} features, not {width}")
    run = booster.inplace_predict
    alone = booster.copy()  # the same trees, set to one thread for small batches
    alone.set_param({"nthread": 1})
    run_alone = alone.inplace_predict

    def call(mat: Matrix) -> Any:
        fn = run_alone if mat.shape[0] < FEW else run
        return fn(mat, iteration_range=iterations, missing=missing, validate_features=False)

    return call


def _xgb_sklearn(model: Any, width: int, classifier: bool) -> tuple[str, FastTrees] | str:
    try:
        iterations = (0, int(model.best_iteration) + 1)  # what its own predict uses
    except AttributeError:
        iterations = (0, 0)
    value = _xgb_call(model.get_booster(), iterations, model.missing, width)
    call = "xgboost inplace_predict"
    if not classifier:
        return call, FastTrees(value, None)
    if model.objective == "multi:softmax":
        return "its probabilities are a softmax of margins, computed by the model"
    n_classes = int(model.n_classes_)

    def proba(mat: Matrix) -> Any:
        p = value(mat)
        if p.ndim == 2 and (p.shape[1] == n_classes or (n_classes == 2 and p.shape[1] >= 2)):
            return p
        return np.vstack((1.0 - p, p)).transpose()

    def predict(mat: Matrix) -> Any:
        p = value(mat)
        if p.ndim > 1 and n_classes != 2:
            return np.argmax(p, axis=1)
        if p.ndim > 1 and p.shape[1] != 1:
            labels = np.zeros(p.shape)
            labels[p > 0.5] = 1
            return labels
        labels = np.repeat(0, p.shape[0])
        labels[p > 0.5] = 1
        return labels

    return call, FastTrees(predict, proba)


def _lgb_call(booster: Any, params: dict[str, Any], width: int) -> Fn:
    if booster.num_feature() != width:
        raise ValueError(f"the booster reads {booster.num_feature()} features, not {width}")
    run = booster.predict
    alone = {**params, "num_threads": 1}

    def call(mat: Matrix) -> Any:
        return run(mat, **(alone if mat.shape[0] < FEW else params))

    return call


def _lgb_sklearn(model: Any, width: int, classifier: bool) -> tuple[str, FastTrees] | str:
    own = model.get_params()  # with the keyword arguments it was given
    params = {k: own[k] for k in _LGB_PREDICT_PARAMS if k in own}
    threads = own.get("num_threads", own.get("n_jobs"))
    if isinstance(threads, int) and threads > 0:  # the thread count changes no value
        params["num_threads"] = threads
    value = _lgb_call(model.booster_, params, width)
    call = "lightgbm Booster.predict"
    if not classifier:
        return call, FastTrees(value, None)
    classes = np.asarray(model.classes_)
    multiclass = int(model.n_classes_) > 2

    def proba(mat: Matrix) -> Any:
        p = value(mat)
        return p if multiclass else np.vstack((1.0 - p, p)).transpose()

    def predict(mat: Matrix) -> Any:
        return classes.take(np.argmax(proba(mat), axis=1))

    return call, FastTrees(predict, proba)


def _thresholds(raw: Any, width: int) -> list[list[float]]:
    """Each feature's split thresholds in ``raw``'s trees (none where they cannot be read)."""
    edges: list[list[float]] = [[] for _ in range(width)]
    lib = library_of(raw)
    try:
        if lib == "xgboost":
            booster = raw if type(raw).__name__ == "Booster" else raw.get_booster()
            table = booster.trees_to_dataframe()
            names = booster.feature_names or [f"f{j}" for j in range(width)]
            pairs = zip(table["Feature"], table["Split"], strict=True)
        elif lib == "lightgbm":
            booster = raw if type(raw).__name__ == "Booster" else raw.booster_
            table = booster.trees_to_dataframe()
            names = booster.feature_name()
            pairs = zip(table["split_feature"], table["threshold"], strict=True)
        else:
            return edges
        index = {str(n): j for j, n in enumerate(names)}
        for feature, threshold in pairs:
            j = index.get(str(feature))
            if j is None or j >= width:
                continue
            try:
                t = float(threshold)
            except (TypeError, ValueError):  # a categorical split: its categories, not a value
                continue
            if np.isfinite(t):
                edges[j].append(t)
    except Exception:  # a model whose trees this version cannot list: random rows only
        return [[] for _ in range(width)]
    return edges
