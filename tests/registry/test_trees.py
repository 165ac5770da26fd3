"""Tree ensembles below scikit-learn's per-call checks: identical outputs, or not used at all."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
import sklearn
from mlflow.models import infer_signature
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import (
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
)
from sklearn.tree import DecisionTreeClassifier

from chronoml.domain.ledger import ModelRef
from chronoml.registry.models import load_model
from chronoml.registry.trees import fast_trees, same

REF = ModelRef(name="trees", version="1", run_id="r", artifact_digest="sha256:" + "0" * 64)
NAMES = [f"f{i}" for i in range(6)]
RNG = np.random.default_rng(7)
X = RNG.standard_normal((600, len(NAMES)))
BINARY = (X[:, 0] + X[:, 1] > 0).astype(int)
THREE = np.array(["low", "mid", "high"])[(X[:, 2] > 0).astype(int) + (X[:, 3] > 0.5)]
FRAME = pd.DataFrame(X, columns=NAMES)

CASES = [
    (GradientBoostingClassifier(n_estimators=30, random_state=0), BINARY),
    (GradientBoostingClassifier(n_estimators=10, random_state=0), THREE),
    (GradientBoostingRegressor(n_estimators=20, random_state=0), X[:, 0] * 3),
    (RandomForestClassifier(n_estimators=15, random_state=0), THREE),
    (ExtraTreesRegressor(n_estimators=8, random_state=0), X[:, 1]),
    (DecisionTreeClassifier(random_state=0), BINARY),
]


@pytest.mark.parametrize(("estimator", "y"), CASES, ids=lambda c: type(c).__name__)
def test_the_fast_path_gives_what_the_model_gives(estimator: Any, y: Any) -> None:
    estimator.fit(FRAME, y)
    fast = fast_trees(estimator, NAMES)
    assert fast is not None
    fresh = np.random.default_rng(11).standard_normal((300, len(NAMES)))
    for rows in (fresh[:1], fresh[:7], fresh):
        frame = pd.DataFrame(rows, columns=NAMES)
        assert same(fast.predict(rows.copy()), estimator.predict(frame))
        if hasattr(estimator, "predict_proba"):
            assert fast.predict_proba is not None
            assert same(fast.predict_proba(rows.copy()), estimator.predict_proba(frame))


def test_a_model_whose_fast_path_would_differ_is_refused_it() -> None:
    gb = GradientBoostingClassifier(n_estimators=10, random_state=0).fit(FRAME, BINARY)
    assert fast_trees(gb, NAMES) is not None
    # the same class, but its own answers no longer come from the trees alone
    # (say, a customised decision function): the probe sees the difference
    own = gb.decision_function
    gb.decision_function = lambda x: own(x) + 1e-12  # type: ignore[method-assign]
    assert fast_trees(gb, NAMES) is None


def test_an_estimator_that_is_not_a_known_tree_is_left_alone() -> None:
    class Custom(GradientBoostingClassifier):  # type: ignore[misc]
        pass

    assert fast_trees(Custom(n_estimators=5).fit(FRAME, BINARY), NAMES) is None
    boosted = GradientBoostingClassifier(
        n_estimators=5, init=DecisionTreeClassifier(max_depth=2)
    ).fit(FRAME, BINARY)
    assert fast_trees(boosted, NAMES) is None  # an init model that depends on the row
    drawn = GradientBoostingClassifier(
        n_estimators=5, init=DummyClassifier(strategy="stratified", random_state=0)
    ).fit(FRAME, BINARY)
    assert fast_trees(drawn, NAMES) is None  # an init drawn at random for every row


def _saved(estimator: Any, tmp_path: Path) -> Path:
    path = tmp_path / "model"
    with warnings.catch_warnings():
        # MLflow's own example writer compares an index with a range (pandas deprecates it)
        warnings.simplefilter("ignore", pd.errors.Pandas4Warning)
        _save(estimator, path)
    return path


def _save(estimator: Any, path: Path) -> None:
    mlflow.sklearn.save_model(
        estimator,
        str(path),
        signature=infer_signature(FRAME.head(), estimator.predict(FRAME.head())),
        input_example=FRAME.head(3),
        pip_requirements=[f"scikit-learn=={sklearn.__version__}"],
        serialization_format="cloudpickle",
    )


def test_a_loaded_tree_model_serves_the_fast_path_with_identical_answers(tmp_path: Path) -> None:
    gb = GradientBoostingClassifier(n_estimators=20, random_state=0).fit(FRAME, THREE)
    model = load_model(REF, _saved(gb, tmp_path))
    assert model.fast_trees
    assert model.predict_matrix is not None and model.proba_matrix is not None
    rows = np.random.default_rng(3).standard_normal((50, len(NAMES)))
    frame = pd.DataFrame(rows, columns=NAMES)
    assert same(model.predict_matrix(rows), gb.predict(frame))
    assert same(model.proba_matrix(rows), gb.predict_proba(frame))
    # a non-finite row goes to the model's own checks, which name the problem
    bad = rows[:1].copy()
    bad[0, 2] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        model.predict_matrix(bad)


def test_a_loaded_model_without_a_fast_path_keeps_its_own(tmp_path: Path) -> None:
    class Custom(GradientBoostingRegressor):  # type: ignore[misc]
        pass

    model = load_model(REF, _saved(Custom(n_estimators=5).fit(FRAME, X[:, 0]), tmp_path))
    assert not model.fast_trees
