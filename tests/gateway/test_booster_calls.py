"""LightGBM and XGBoost models logged to MLflow and served through the gateway answer the
same with their fast calls as with their own, one row or many, and say which call serves."""

from __future__ import annotations

import dataclasses
import logging
import warnings
from typing import Any

import mlflow
import mlflow.lightgbm
import mlflow.xgboost
import numpy as np
import pandas as pd
import pytest
from mlflow.models import infer_signature

from access_support import admin_client
from chronoml.gateway.app import create_app
from chronoml.store import outcomes as O

NAMES = [f"x{i}" for i in range(6)]
RNG = np.random.default_rng(5)
X = pd.DataFrame(RNG.standard_normal((800, len(NAMES))), columns=NAMES)
LEVELS = np.array(["low", "mid", "high"])[(X["x2"] > 0).astype(int) + (X["x3"] > 0.5)]
BINARY = (X["x0"] + X["x1"] > 0).astype(int).to_numpy()
ROWS = pd.DataFrame(np.random.default_rng(9).standard_normal((300, len(NAMES))), columns=NAMES)

SQLITE_ONLY = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)


def _register(models: Any, library: str) -> tuple[str, int]:
    """Log and register a classifier of ``library``; its model URI and number of classes."""
    mlflow.set_tracking_uri(models.tracking_uri)
    mlflow.set_registry_uri(models.tracking_uri)
    exp = mlflow.get_experiment_by_name("tests").experiment_id
    if library == "lightgbm":
        import lightgbm

        est: Any = lightgbm.LGBMClassifier(n_estimators=30, num_leaves=8, verbose=-1)
        est.fit(X, LEVELS)
        flavor: Any = mlflow.lightgbm
        y: Any = LEVELS
    else:
        import xgboost

        est = xgboost.XGBClassifier(n_estimators=30, max_depth=4, n_jobs=1).fit(X, BINARY)
        flavor, y = mlflow.xgboost, BINARY
    with mlflow.start_run(experiment_id=exp), warnings.catch_warnings():
        # MLflow's own example writer compares an index with a range (pandas deprecates it)
        warnings.simplefilter("ignore", pd.errors.Pandas4Warning)
        info = flavor.log_model(
            est,
            name="model",
            registered_model_name=f"boosted-{library}",
            signature=infer_signature(X.head(), y[:5]),
            input_example=X.head(3),
            pip_requirements=[],
        )
    return f"models:/boosted-{library}/{info.registered_model_version}", len(set(y))


def _serve(app: Any, endpoint: str, uri: str | None) -> tuple[list[Any], list[str], str]:
    """Six single-row requests and one of 300 rows: the answers, their ids and /metrics."""
    answers: list[Any] = []
    ids: list[str] = []
    with admin_client(app) as c:
        if uri is not None:
            r = c.put(
                f"/v1/endpoints/{endpoint}", json={"model_uri": uri, "allow_unlinked_data": True}
            )
            assert r.status_code == 200, r.text
        for rows in [ROWS.iloc[i : i + 1] for i in range(6)] + [ROWS]:
            body = {"dataframe_split": {"columns": NAMES, "data": rows.values.tolist()}}
            r = c.post(f"/v1/endpoints/{endpoint}/predict", json=body)
            assert r.status_code == 200, r.text
            answers.extend(r.json()["predictions"])
            ids.extend(r.json()["decision_ids"])
        metrics = c.get("/metrics").text
    return answers, ids, metrics


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("library", "call"),
    [("lightgbm", "lightgbm Booster.predict"), ("xgboost", "xgboost inplace_predict")],
)
def test_fast_and_own_calls_answer_alike_through_the_gateway(
    cm: Any, settings: Any, models: Any, library: str, call: str, caplog: Any
) -> None:
    uri, n_classes = _register(models, library)
    endpoint = f"b-{library}"
    caplog.set_level(logging.INFO, logger="chronoml.live")
    fast, fast_ids, fast_metrics = _serve(create_app(settings, cm), endpoint, uri)
    loaded = [r.getMessage() for r in caplog.records if r.name == "chronoml.live"]
    assert any(f"{call}: identical to the model's own" in m for m in loaded), loaded
    caplog.clear()
    off = dataclasses.replace(settings, fast_model_calls=False)
    own, own_ids, own_metrics = _serve(create_app(off, cm), endpoint, None)
    loaded = [r.getMessage() for r in caplog.records if r.name == "chronoml.live"]
    assert any("own call: fast model calls are turned off" in m for m in loaded), loaded

    assert fast == own
    # and both are what the model itself answers on those rows
    want = mlflow.pyfunc.load_model(uri).predict(pd.concat([ROWS.iloc[:6], ROWS]))
    assert fast == [v.item() if hasattr(v, "item") else v for v in want]
    # the logged class scores are the same bits
    out = O.outcomes(cm.store, endpoint, 0, 2**62)
    by_id = dict(zip(out.ids, out.scores, strict=True))
    fast_scores = O.unpack_scores([by_id[i] for i in fast_ids], n_classes)
    own_scores = O.unpack_scores([by_id[i] for i in own_ids], n_classes)
    assert np.array_equal(fast_scores, own_scores)
    assert fast_scores.shape == (len(fast_ids), n_classes)

    def gauge(text: str, which: str) -> bool:
        return any(
            line.startswith("chronoml_model_call{")
            and f'call="{which}"' in line
            and f'endpoint="{endpoint}"' in line
            and line.endswith(" 1.0")
            for line in text.splitlines()
        )

    assert gauge(fast_metrics, call) and not gauge(fast_metrics, "own")
    assert gauge(own_metrics, "own") and not gauge(own_metrics, call)
