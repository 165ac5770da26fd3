"""Loading archived models for serving.

A model is loaded from chronoml's archived copy, whose digest is checked
against the ledger first, so what serves is byte for byte what was deployed.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from chronoml.domain.codec import Schema
from chronoml.domain.ledger import ModelRef
from chronoml.errors import InvalidInput
from chronoml.registry.boosters import fast_booster, library_of
from chronoml.registry.trees import fast_trees

_MLFLOW_KINDS = {
    "double": "float",
    "float": "float",
    "long": "int",
    "integer": "int",
    "boolean": "bool",
    "string": "string",
}


def schema_from_mlflow(input_schema: Any) -> Schema | None:
    """Translate an MLflow signature's input schema; None when it has none or no names."""
    if input_schema is None or not getattr(input_schema, "has_input_names", lambda: False)():
        return None
    out = []
    for spec in input_schema.inputs:
        type_name = getattr(getattr(spec, "type", None), "name", None)
        kind = _MLFLOW_KINDS.get(str(type_name))
        if kind is None:
            raise InvalidInput(
                f"input {spec.name!r} has type {type_name}, which chronoml cannot log yet"
            )
        out.append((spec.name, kind))
    return tuple(out)


@dataclass
class LoadedModel:
    """A deployed model ready to predict."""

    ref: ModelRef
    path: Path
    schema: Schema | None
    predict: Callable[[pd.DataFrame], Any]
    flavor: str
    raw: Any
    # the same model called on a float64 matrix in schema order, when that is
    # known to give what ``predict`` gives on the frame (see matrix_predictor)
    predict_matrix: Callable[[np.ndarray[Any, Any]], Any] | None = None
    # a classifier's class scores: ``predict_proba`` on what ``predict`` takes (and on
    # the matrix, beside ``predict_matrix``), with the order of its columns
    classes: tuple[Any, ...] | None = None
    predict_proba: Callable[[Any], Any] | None = None
    proba_matrix: Callable[[np.ndarray[Any, Any]], Any] | None = None
    # whether predict is the class of the highest score (checked at load): the scores
    # then give the labels too, and the batch needs one model call instead of two
    labels_from_scores: bool = False
    # predict_matrix and proba_matrix walk the fitted trees below scikit-learn's
    # per-call checks (registry/trees.py), or read the matrix with the LightGBM or
    # XGBoost booster itself (registry/boosters.py), after a probe showed identical outputs
    fast_trees: bool = False
    # the call a float matrix is served with, and why (the load log and /metrics say it)
    model_call: str = "own"
    call_note: str = ""


def load_model(
    ref: ModelRef, path: Path, fast_calls: bool = True, calls: bool = True
) -> LoadedModel:
    """Load the MLflow model at ``path`` (already digest-checked by the caller).

    ``fast_calls=False`` keeps tree ensembles on their own calls (no probe at load).
    ``calls=False`` loads without calling the model at all (no probes, no matrix path):
    for a forked child, where a library's OpenMP threads inherited from the parent
    would hang its first parallel call."""
    # lazy: mlflow costs 1.6 s to import; the CLI loads it only when a model is loaded
    import mlflow.pyfunc

    # suppress_warnings skips MLflow's pip-requirements comparison (~0.4 s a load)
    pyfunc_model = mlflow.pyfunc.load_model(str(path), suppress_warnings=True)
    meta = pyfunc_model.metadata
    schema = schema_from_mlflow(meta.get_input_schema())
    loader = meta.flavors.get("python_function", {}).get("loader_module", "")
    predict: Callable[[pd.DataFrame], Any] = pyfunc_model.predict
    raw: Any = None
    predict_matrix: Callable[[np.ndarray[Any, Any]], Any] | None = None
    flavor = loader.rsplit(".", 1)[-1] or "pyfunc"
    if loader == "mlflow.sklearn" and schema is not None:
        # Inputs were already checked against the signature; the sklearn
        # model's own predict is what the pyfunc wrapper would call, minus
        # its per-call schema enforcement.
        raw = pyfunc_model.get_raw_model()
        if hasattr(raw, "feature_names_in_"):
            predict = raw.predict
        else:
            # fitted on a bare array: give it one, as it was trained
            fitted_on_array = raw.predict
            predict = lambda df: fitted_on_array(df.to_numpy())  # noqa: E731
        predict_matrix = matrix_predictor(raw, schema) if calls else None
    elif loader in _BOOSTER_LOADERS and schema is not None:
        # the booster (or its scikit-learn API model) behind the pyfunc wrapper; the
        # pyfunc's predict stays the model's own call
        raw = pyfunc_model.get_raw_model()
    model = LoadedModel(
        ref=ref,
        path=path,
        schema=schema,
        predict=predict,
        flavor=flavor,
        raw=raw,
        predict_matrix=predict_matrix,
        model_call="matrix" if predict_matrix is not None else "own",
    )
    if raw is not None and schema is not None and calls:
        _add_scores(model, raw, schema)
        known: Schema = schema
        _choose_call(
            model, raw, known, lambda: _input_example(pyfunc_model, path, known), fast_calls
        )
    return model


_BOOSTER_LOADERS = frozenset({"mlflow.lightgbm", "mlflow.xgboost"})


def _choose_call(
    model: LoadedModel, raw: Any, schema: Schema, example: Callable[[], Any], fast: bool
) -> None:
    """Serve a tree ensemble's float matrix with its fast call when the probe allows it."""
    if not all(kind == "float" for _, kind in schema):
        model.call_note = "own call: the signature has inputs that are not doubles"
        return
    booster = library_of(raw) is not None
    if not booster and model.predict_matrix is None:
        return  # not a float-matrix model: nothing to choose
    if not fast:
        model.call_note = "own call: fast model calls are turned off"
        return
    if booster:
        _use_fast_booster(model, raw, schema, example())
    else:
        _use_fast_trees(model, raw, schema, example())


def _use_fast_booster(model: LoadedModel, raw: Any, schema: Schema, example: Any) -> None:
    """Serve the float matrix with the booster's own reading of it, when the probe shows
    outputs identical to the model's own call."""
    names = [c for c, _ in schema]
    choice = fast_booster(raw, names, model.predict, model.predict_proba, example)
    model.call_note = choice.note
    fast = choice.fast
    if fast is None:
        return
    if model.classes is not None and fast.predict_proba is None:
        model.call_note = "own call: no fast class scores for this classifier"
        return
    model.predict_matrix = fast.predict
    model.proba_matrix = fast.predict_proba if model.classes is not None else None
    model.fast_trees = True
    model.model_call = choice.call


def _use_fast_trees(model: LoadedModel, raw: Any, schema: Schema, example: Any) -> None:
    """Swap the matrix path for the trees' own arithmetic when the probe shows it is equal."""
    fast = fast_trees(raw, [c for c, _ in schema], example)
    if fast is None or (model.classes is not None and fast.predict_proba is None):
        model.call_note = "matrix call: the trees' own arithmetic differed or is not known here"
        return
    model.predict_matrix = fast.predict
    if model.classes is not None:
        model.proba_matrix = fast.predict_proba
    model.fast_trees = True
    model.model_call = "scikit-learn trees"
    model.call_note = "scikit-learn trees: identical to the model's own on the probe rows"


def _input_example(pyfunc_model: Any, path: Path, schema: Schema) -> np.ndarray[Any, Any] | None:
    """The version's input example as a float matrix in schema order, or None."""
    try:
        ex = pyfunc_model.metadata.load_input_example(str(path))
        frame = pd.DataFrame(ex)
        return np.asarray(frame[[c for c, _ in schema]], dtype=np.float64)
    except Exception:  # no example, or not a table of these columns: probe without it
        return None


def classifier_classes(raw: Any) -> tuple[Any, ...] | None:
    """The class order of a fitted single-output classifier's ``predict_proba``, or None."""
    # lazy: scikit-learn loads only for the models that need it
    from sklearn.base import is_classifier

    classes = getattr(raw, "classes_", None)
    if not is_classifier(raw) or not callable(getattr(raw, "predict_proba", None)):
        return None
    if classes is None or np.ndim(classes) != 1:
        return None  # multi-output: one class list per output, no single score row
    return tuple(c.item() if hasattr(c, "item") else c for c in classes)


def _add_scores(model: LoadedModel, raw: Any, schema: Schema | None) -> None:
    """Give ``model`` its class scores when it is a classifier offering probabilities."""
    try:
        classes = classifier_classes(raw)
    except Exception:  # not an estimator scikit-learn knows: no scores, still served
        return
    if classes is None:
        return
    model.classes = classes
    if hasattr(raw, "feature_names_in_"):
        model.predict_proba = raw.predict_proba
    else:
        on_array = raw.predict_proba
        model.predict_proba = lambda df: on_array(df.to_numpy())
    if model.predict_matrix is not None and schema is not None:
        bare = raw if getattr(raw, "feature_names_in_", None) is None else None
        bare = bare if bare is not None else _without_feature_names(raw)
        if bare is not None:
            model.proba_matrix = _finite_fast(bare.predict_proba)
    model.labels_from_scores = _argmax_predicts(raw, schema)


# estimators whose predict is, by definition, the class of the highest predict_proba
# (up to rounding at exact ties, which labels_from_scores hands back to predict)
_ARGMAX_ESTIMATORS = frozenset(
    {
        "LogisticRegression",
        "GradientBoostingClassifier",
        "HistGradientBoostingClassifier",
        "RandomForestClassifier",
        "ExtraTreesClassifier",
        "DecisionTreeClassifier",
        "LGBMClassifier",
        "XGBClassifier",
    }
)
# top two scores closer than this: the label comes from predict itself
TIE = 1e-9


def _argmax_predicts(raw: Any, schema: Schema | None) -> bool:
    """Whether ``raw.predict`` is the argmax of its scores: a known estimator (last step of a
    pipeline) that agrees on a probe of random rows."""
    last = raw.steps[-1][1] if hasattr(raw, "steps") and raw.steps else raw
    if type(last).__name__ not in _ARGMAX_ESTIMATORS or schema is None:
        return False
    if not all(kind == "float" for _, kind in schema):
        return False
    names = [c for c, _ in schema]
    probe = np.random.default_rng(1).standard_normal((64, len(names)))
    x: Any = (
        pd.DataFrame(probe, columns=pd.Index(names, dtype=object))
        if getattr(raw, "feature_names_in_", None) is not None
        else probe
    )
    try:
        want = np.asarray(raw.predict(x))
        p = np.asarray(raw.predict_proba(x), dtype=np.float64)
    except Exception:  # out of the model's domain: keep two calls
        return False
    got = labels_of(p, np.asarray(raw.classes_), lambda rows: want[rows])
    return _same(want, got)


def labels_of(
    scores: np.ndarray[Any, Any], classes: np.ndarray[Any, Any], predict: Callable[[Any], Any]
) -> np.ndarray[Any, Any]:
    """The class of the highest score of each row; rows whose top two scores tie (within
    rounding) take ``predict(rows)``, the model's own answer for them."""
    pred: np.ndarray[Any, Any] = np.asarray(classes.take(scores.argmax(axis=1)))
    if scores.shape[1] >= 2:
        top = np.partition(scores, -2, axis=1)[:, -2:]
        ties = np.flatnonzero(top[:, 1] - top[:, 0] <= TIE)
        if len(ties):
            pred[ties] = np.asarray(predict(ties))
    return pred


_PROBE_ROWS = 8


def matrix_predictor(raw: Any, schema: Schema) -> Callable[[np.ndarray[Any, Any]], Any] | None:
    """``raw.predict`` for a float64 matrix whose columns are ``schema``'s, or None.

    scikit-learn checks a frame's column names and dtypes on every call, which
    costs more than predicting a few rows. When every input is a double and
    the model was fitted on exactly these columns in this order, the gateway
    already holds the rows as a matrix in that order; a shallow copy of the
    model without its recorded feature names takes it as is. That is only
    used if it predicts what the frame path predicts, without a warning, on
    a probe of random rows; anything else (a column transformer that selects
    by name, a later step fitted on a frame, another order) keeps the frame.
    """
    if not all(kind == "float" for _, kind in schema):
        return None
    names = [c for c, _ in schema]
    fitted = getattr(raw, "feature_names_in_", None)
    if fitted is None:
        bare: Any = raw
    elif [str(c) for c in fitted] != names:
        return None
    else:
        bare = _without_feature_names(raw)
        if bare is None:
            return None
    probe = np.random.default_rng(0).standard_normal((_PROBE_ROWS, len(names)))
    frame = pd.DataFrame(probe, columns=pd.Index(names, dtype=object))

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            want = raw.predict(frame) if fitted is not None else raw.predict(probe)
            got = bare.predict(probe.copy())
    except Exception:  # the probe itself is out of the model's domain: keep the frame
        return None
    if caught or not _same(want, got):
        return None
    return _finite_fast(bare.predict)


def _finite_fast(predict: Callable[[Any], Any]) -> Callable[[np.ndarray[Any, Any]], Any]:
    """``predict``, told to skip scikit-learn's own NaN and infinity scan when the
    matrix has none (one vectorised check here instead of its slower one)."""
    # lazy: scikit-learn loads only for the models that need it
    import sklearn

    def run(mat: np.ndarray[Any, Any]) -> Any:
        if not np.isfinite(mat).all():
            return predict(mat)  # its own check then says what is wrong
        with sklearn.config_context(assume_finite=True):
            return predict(mat)

    return run


def _without_feature_names(est: Any) -> Any:
    """A shallow copy of ``est`` that does not check feature names, or None."""
    # lazy: scikit-learn loads only for the models that need it
    from sklearn.pipeline import Pipeline

    if isinstance(est, Pipeline):
        if not est.steps:
            return None
        name, first = est.steps[0]
        bare_first = _without_feature_names(first)
        if bare_first is None:
            return None
        copy = _shallow_copy(est)
        copy.steps = [(name, bare_first), *est.steps[1:]]
        return copy
    if "feature_names_in_" not in vars(est):  # a property of a meta-estimator
        return None
    copy = _shallow_copy(est)
    del copy.feature_names_in_
    return copy


def _shallow_copy(est: Any) -> Any:
    copy = object.__new__(type(est))
    copy.__dict__.update(vars(est))
    return copy


def _same(a: Any, b: Any) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.kind == "f":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))


def warm_up() -> None:
    """Import the model loaders and common estimator modules ahead of the first deploy."""

    for name in (
        "mlflow.pyfunc",
        "mlflow.sklearn",
        "sklearn.pipeline",
        "sklearn.preprocessing",
        "sklearn.linear_model",
        "sklearn.ensemble",
        "sklearn.tree",
    ):
        try:
            importlib.import_module(name)
        except ImportError:  # a flavor that is not installed: nothing to warm
            continue


def raw_model(model: LoadedModel) -> Any:
    """The flavor's own model object (estimator, booster), or None for plain pyfunc models."""
    if model.raw is not None:
        return model.raw
    # lazy: mlflow costs 1.6 s to import; the CLI loads it only when a model is loaded
    import mlflow.pyfunc

    pyfunc_model = mlflow.pyfunc.load_model(str(model.path), suppress_warnings=True)
    try:
        return pyfunc_model.get_raw_model()
    except Exception:  # a python_function model without a flavor object
        return None
