"""A plain MLflow pyfunc that answers with class probabilities: the log keeps them as class
scores (as for ``predict_proba``), and quality gains ROC AUC from them."""

from __future__ import annotations

import warnings
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.models import infer_signature
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from access_support import admin_client
from chronoml.gateway.app import create_app
from chronoml.store import outcomes as O

DATA = load_breast_cancer(as_frame=True).frame
X, Y = DATA.drop(columns=["target"]), DATA["target"]
ESTIMATOR = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, Y)


class FrameScores(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
    """Answers one probability column per class, named by the class."""

    def __init__(self, est: Any) -> None:
        self.est = est

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        p = self.est.predict_proba(model_input)
        return pd.DataFrame(p, columns=[str(c) for c in self.est.classes_])


class DictScores(FrameScores):
    """Answers a dict of labels, probabilities and the class order."""

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        p = self.est.predict_proba(model_input)
        return {
            "label": [int(c) for c in self.est.classes_[p.argmax(axis=1)]],
            "probabilities": p,
            "classes": [int(c) for c in self.est.classes_],
        }


def _register(models: Any, name: str, python_model: Any) -> str:
    mlflow.set_tracking_uri(models.tracking_uri)
    mlflow.set_registry_uri(models.tracking_uri)
    exp = mlflow.get_experiment_by_name("tests").experiment_id
    with mlflow.start_run(experiment_id=exp), warnings.catch_warnings():
        # MLflow asks for an input example; the signature is given, which is what matters here
        warnings.filterwarnings("ignore", message=".*input example was not provided")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=python_model,
            registered_model_name=name,
            signature=infer_signature(X.head(), None),
            pip_requirements=[],
        )
    return f"models:/{name}/{info.registered_model_version}"


@pytest.mark.parametrize("kind", ["frame", "dict"])
def test_pyfunc_probabilities_are_logged_as_class_scores(
    cm: Any, settings: Any, models: Any, kind: str
) -> None:
    model = FrameScores(ESTIMATOR) if kind == "frame" else DictScores(ESTIMATOR)
    uri = _register(models, f"proba-{kind}", model)
    rows = X.iloc[:120]
    want = ESTIMATOR.predict_proba(rows)
    with admin_client(create_app(settings, cm)) as c:
        r = c.put("/v1/endpoints/proba", json={"model_uri": uri, "allow_unlinked_data": True})
        assert r.status_code == 200, r.text
        body = {
            "dataframe_split": {"columns": list(rows.columns), "data": rows.values.tolist()},
            "context": {"group": ["a" if i % 2 else "b" for i in range(len(rows))]},
        }
        r = c.post("/v1/endpoints/proba/predict", json=body)
        assert r.status_code == 200, r.text
        got = r.json()
        if kind == "frame":  # the answer is what the model returned, a row of scores each
            assert got["predictions"][0] == pytest.approx({"0": want[0, 0], "1": want[0, 1]})
        else:  # the dict's per-row labels
            assert got["predictions"] == [int(v) for v in want.argmax(axis=1)]
        ids = got["decision_ids"]
        labels = [int(v) for v in Y.iloc[:120]]
        fb = [{"decision_id": d, "label": y} for d, y in zip(ids, labels, strict=True)]
        r = c.post("/v1/feedback", json={"labels": fb})
        assert r.status_code == 200, r.text
        q = c.get("/v1/endpoints/proba/quality").json()
        fair = c.get("/v1/endpoints/proba/fairness", params={"attribute": "group"})
    version = uri.rsplit("/", 1)[1]
    assert O.classes_of(cm.store, f"proba-{kind}", version) == [0, 1]
    out = O.outcomes(cm.store, "proba", 0, 2**62)
    scores = O.unpack_scores(out.scores, 2)
    np.testing.assert_allclose(scores, want, rtol=0, atol=1e-12)
    # the class of the highest score stands for the decision in quality and fairness
    assert out.outputs == [int(v) for v in want.argmax(axis=1)]
    m = q["variants"][0]["metrics"]
    assert m["roc_auc"] == pytest.approx(roc_auc_score(labels, want[:, 1]))
    assert m["log_loss"] is not None and m["scored"] == 120
    assert fair.status_code == 200, fair.text
    assert {g["group"] for g in fair.json()["groups"]} == {"a", "b"}


def test_pyfunc_outputs_that_are_not_probabilities_log_no_scores(
    cm: Any, settings: Any, models: Any
) -> None:
    class Margins(FrameScores):
        def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
            return self.est.decision_function(model_input).reshape(-1, 1).repeat(2, axis=1)

    uri = _register(models, "margins", Margins(ESTIMATOR))
    with admin_client(create_app(settings, cm)) as c:
        r = c.put("/v1/endpoints/margins", json={"model_uri": uri, "allow_unlinked_data": True})
        assert r.status_code == 200, r.text
        rows = X.iloc[:10]
        body = {"dataframe_split": {"columns": list(rows.columns), "data": rows.values.tolist()}}
        r = c.post("/v1/endpoints/margins/predict", json=body)
        assert r.status_code == 200, r.text
    out = O.outcomes(cm.store, "margins", 0, 2**62)
    assert out.scores == [None] * 10
    assert O.classes_of(cm.store, "margins", uri.rsplit("/", 1)[1]) is None
