"""LightGBM and XGBoost models read the float matrix with their boosters: identical outputs
to the model's own call, or the model's own call with the reason why."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import lightgbm
import mlflow.lightgbm
import mlflow.sklearn
import mlflow.xgboost
import numpy as np
import pandas as pd
import pytest
import xgboost
from mlflow.models import infer_signature

from chronoml.domain.ledger import ModelRef
from chronoml.registry.boosters import _thresholds, disagreement
from chronoml.registry.models import load_model
from chronoml.registry.trees import rows_near, same

REF = ModelRef(name="boosted", version="1", run_id="r", artifact_digest="sha256:" + "0" * 64)
NAMES = [f"f{i}" for i in range(5)]
RNG = np.random.default_rng(0)
X = RNG.standard_normal((500, len(NAMES)))
FRAME = pd.DataFrame(X, columns=NAMES)
BINARY = (X[:, 0] + X[:, 1] > 0).astype(int)
THREE = np.array(["low", "mid", "high"])[(X[:, 2] > 0).astype(int) + (X[:, 3] > 0.5)]
FRESH = np.random.default_rng(11).standard_normal((300, len(NAMES))) * 2


def _saved(flavor: Any, model: Any, y: Any, tmp_path: Path, **kw: Any) -> Path:
    path = tmp_path / "model"
    if flavor is mlflow.sklearn:  # its default format (skops) does not trust boosters
        kw.setdefault("serialization_format", "cloudpickle")
    with warnings.catch_warnings():
        # MLflow's own example writer compares an index with a range (pandas deprecates it)
        warnings.simplefilter("ignore", pd.errors.Pandas4Warning)
        flavor.save_model(
            model,
            str(path),
            signature=infer_signature(FRAME.head(), y[:5]),
            input_example=FRAME.head(3),
            pip_requirements=[],
            **kw,
        )
    return path


def _logistic(y: Any, margin: Any) -> tuple[Any, Any]:
    """The binary log loss as a custom objective: its gradient and hessian."""
    p = 1.0 / (1.0 + np.exp(-margin))
    return p - y, p * (1.0 - p)


CASES = {
    "xgboost-classifier": (
        mlflow.xgboost,
        lambda: xgboost.XGBClassifier(n_estimators=25, max_depth=4, n_jobs=1).fit(FRAME, BINARY),
        BINARY,
        "xgboost inplace_predict",
    ),
    "xgboost-regressor": (
        mlflow.xgboost,
        lambda: xgboost.XGBRegressor(n_estimators=25, n_jobs=1).fit(FRAME, X[:, 0] * 3),
        X[:, 0] * 3,
        "xgboost inplace_predict",
    ),
    "xgboost-booster": (
        mlflow.xgboost,
        lambda: xgboost.train(
            {"objective": "multi:softprob", "num_class": 3, "nthread": 1},
            xgboost.DMatrix(FRAME, label=(X[:, 2] > 0).astype(int) + (X[:, 3] > 0.5)),
            10,
        ),
        BINARY,
        "xgboost inplace_predict",
    ),
    "lightgbm-classifier": (
        mlflow.lightgbm,
        lambda: lightgbm.LGBMClassifier(n_estimators=25, verbose=-1).fit(FRAME, THREE),
        THREE,
        "lightgbm Booster.predict",
    ),
    "lightgbm-early-stop": (  # a predict-time parameter the model's own predict passes on
        mlflow.lightgbm,
        lambda: lightgbm.LGBMClassifier(
            n_estimators=40,
            verbose=-1,
            pred_early_stop=True,
            pred_early_stop_freq=2,
            pred_early_stop_margin=1.0,
        ).fit(X, BINARY),
        BINARY,
        "lightgbm Booster.predict",
    ),
    "lightgbm-through-the-sklearn-flavor": (
        mlflow.sklearn,
        lambda: lightgbm.LGBMClassifier(n_estimators=15, verbose=-1).fit(X, BINARY),
        BINARY,
        "lightgbm Booster.predict",
    ),
    "xgboost-through-the-sklearn-flavor": (
        mlflow.sklearn,
        lambda: xgboost.XGBClassifier(n_estimators=15, n_jobs=1).fit(FRAME, BINARY),
        BINARY,
        "xgboost inplace_predict",
    ),
    "lightgbm-booster": (
        mlflow.lightgbm,
        lambda: lightgbm.train(
            {"objective": "regression", "verbose": -1}, lightgbm.Dataset(FRAME, X[:, 1]), 20
        ),
        X[:, 1],
        "lightgbm Booster.predict",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_booster_serves_its_fast_call_with_the_models_own_answers(
    case: str, tmp_path: Path
) -> None:
    flavor, train, y, call = CASES[case]
    model = load_model(REF, _saved(flavor, train(), y, tmp_path))
    assert model.model_call == call, model.call_note
    assert model.fast_trees and model.predict_matrix is not None
    assert "identical to the model's own" in model.call_note
    for rows in (FRESH[:1], FRESH[:7], FRESH):
        frame = pd.DataFrame(rows, columns=NAMES)
        assert same(model.predict_matrix(rows.copy()), model.predict(frame))
        if model.classes is not None:
            assert model.proba_matrix is not None and model.predict_proba is not None
            assert same(model.proba_matrix(rows.copy()), model.predict_proba(frame))


def test_a_classifier_gains_its_class_scores(tmp_path: Path) -> None:
    est = lightgbm.LGBMClassifier(n_estimators=10, verbose=-1).fit(FRAME, THREE)
    model = load_model(REF, _saved(mlflow.lightgbm, est, THREE, tmp_path))
    assert model.classes == ("high", "low", "mid")
    assert model.labels_from_scores  # one booster call gives the labels and the scores


def test_fast_calls_turned_off_keep_the_models_own(tmp_path: Path) -> None:
    est = xgboost.XGBClassifier(n_estimators=5, n_jobs=1).fit(FRAME, BINARY)
    model = load_model(REF, _saved(mlflow.xgboost, est, BINARY, tmp_path), fast_calls=False)
    assert model.predict_matrix is None and not model.fast_trees
    assert model.model_call == "own"
    assert model.call_note == "own call: fast model calls are turned off"


def _dart() -> Any:
    return xgboost.train(
        {"objective": "binary:logistic", "booster": "dart", "rate_drop": 0.3, "nthread": 1},
        xgboost.DMatrix(FRAME, label=BINARY),
        20,
    )


def test_the_probe_sees_a_dart_boosters_in_place_call_differ() -> None:
    # a real divergence: XGBoost's dart booster weighs its trees in another order in
    # Booster.predict than in inplace_predict, and some outputs differ in the last bit
    dart = _dart()
    x = rows_near(_thresholds(dart, len(NAMES)), None, 2)
    assert x is not None

    def own(frame: pd.DataFrame) -> Any:
        return dart.predict(xgboost.DMatrix(frame))

    def fast(mat: Any) -> Any:
        return dart.inplace_predict(mat, validate_features=False)

    why = disagreement([("predict", fast, own)], x, NAMES)
    assert why is not None and why.startswith("differs from the model's own predict"), why
    # the same booster's own call agrees with itself: the probe is not refusing at random
    assert disagreement([("predict", own_on_matrix(dart), own)], x, NAMES) is None


def own_on_matrix(booster: Any) -> Any:
    return lambda mat: booster.predict(xgboost.DMatrix(pd.DataFrame(mat, columns=NAMES)))


def test_a_dart_booster_keeps_its_own_call(tmp_path: Path) -> None:
    model = load_model(REF, _saved(mlflow.xgboost, _dart(), BINARY, tmp_path))
    assert model.predict_matrix is None and model.model_call == "own"
    assert "dart" in model.call_note


def test_a_classifier_with_a_custom_objective_keeps_its_own_call(tmp_path: Path) -> None:
    # its own predict answers raw margins (with a warning), not class labels: the labels
    # derived from the booster differ, and the probe sees it
    est = lightgbm.LGBMClassifier(n_estimators=10, verbose=-1, objective=_logistic)
    est.fit(FRAME, BINARY)
    path = _saved(mlflow.lightgbm, est, BINARY, tmp_path, serialization_format="cloudpickle")
    model = load_model(REF, path)
    assert model.predict_matrix is None and model.model_call == "own"
    assert model.call_note.startswith("own call: lightgbm Booster.predict "), model.call_note
    assert "probe rows" in model.call_note


def test_a_booster_on_other_inputs_than_the_signatures_is_left_alone(tmp_path: Path) -> None:
    est = xgboost.XGBRegressor(n_estimators=5, n_jobs=1).fit(FRAME[NAMES[:3]], X[:, 0])
    path = _saved(mlflow.xgboost, est, X[:, 0], tmp_path)  # a signature of five columns
    model = load_model(REF, path)
    assert model.predict_matrix is None
    assert model.call_note.startswith("own call: the booster could not be read"), model.call_note


def test_the_load_check_of_a_booster_does_not_hang_after_boosters_ran(tmp_path: Path) -> None:
    # a child forked from a thread that ran LightGBM inherits its OpenMP thread pool without
    # the threads, and hangs when it loads a LightGBM model (its parser runs on OpenMP):
    # such models are checked in a fresh interpreter
    from chronoml.registry.probe import probe

    est = lightgbm.LGBMClassifier(n_estimators=20, verbose=-1).fit(X, BINARY)
    for _ in range(5):
        est.booster_.predict(X)  # this process's OpenMP threads are up
    path = _saved(mlflow.lightgbm, est, BINARY, tmp_path)
    probe(REF, path, timeout_s=60)  # refused (Refused) if the child hangs
