"""Quality estimated before labels (CBPE) from the scores in the decision log."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from typing import Any

import mlflow
import pandas as pd
import pytest
from click.testing import CliRunner
from mlflow.models import infer_signature
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from starlette.testclient import TestClient

from access_support import admin_client
from chronoml.cli.common import cli
from chronoml.domain.alerts import RuleError, check_metric
from chronoml.gateway.app import create_app
from chronoml.monitor.scheduler import compute
from chronoml.timeutil import now_us, parse_time

DATA = load_breast_cancer(as_frame=True).frame.sample(frac=1.0, random_state=0)
X, Y = DATA.drop(columns=["target"]), DATA["target"]


@pytest.fixture
def client(cm: Any, settings: Any, models: Any) -> Iterator[TestClient]:
    with admin_client(create_app(settings, cm)) as c:
        r = c.put("/v1/endpoints/cancer", json={"model_uri": f"models:/cancer/{models.linked_v2}"})
        assert r.status_code == 200, r.text
        yield c


def _predict(c: TestClient, lo: int, hi: int) -> list[str]:
    rows = X.iloc[lo:hi]
    body = {"dataframe_split": {"columns": list(rows.columns), "data": rows.values.tolist()}}
    r = c.post("/v1/endpoints/cancer/predict", json=body)
    assert r.status_code == 200, r.text
    return list(r.json()["decision_ids"])


def _label(c: TestClient, ids: list[str], lo: int) -> None:
    labels = [{"decision_id": d, "label": int(Y.iloc[lo + i])} for i, d in enumerate(ids)]
    assert c.post("/v1/feedback", json={"labels": labels}).status_code == 200


def test_estimate_then_realized_side_by_side(client: TestClient, cm: Any, settings: Any) -> None:
    ref_ids = _predict(client, 0, 300)
    _label(client, ref_ids, 0)
    t_ref_end = now_us()
    cur_ids = _predict(client, 300, 569)
    ref_from = client.get(f"/v1/decisions/{ref_ids[0]}").json()["time"]
    q = {"estimate": "true", "window": "1h", "reference_from": ref_from}
    q["reference_to"] = client.get(f"/v1/decisions/{cur_ids[0]}").json()["time"]
    # before any label of the window: an estimate, and nothing realized yet
    r = client.get("/v1/endpoints/cancer/quality", params={**q, "from": q["reference_to"]})
    assert r.status_code == 200, r.text
    [v] = r.json()["variants"]
    assert v["reference"]["rows"] == 300 and v["scored"] == 269 and v["realized"] is None
    acc = v["estimated"]["accuracy"]
    assert 0.85 < acc["value"] <= 1.0 and acc["low"] <= acc["value"] <= acc["high"]
    assert v["estimated"]["roc_auc"]["value"] > 0.9

    # the monitoring pass records the estimates, so an alert rule can use them
    start = parse_time(q["reference_to"])
    [res] = compute(cm, "cancer", start, now_us() + 1)
    assert res.metrics["estimated:accuracy"] == pytest.approx(acc["value"])
    assert check_metric("estimated:accuracy") == "estimated:accuracy"
    with pytest.raises(RuleError):
        check_metric("estimated:mae")
    assert t_ref_end <= start

    # labels arrive: realized quality beside the estimate, close to it
    _label(client, cur_ids, 300)
    r = client.get("/v1/endpoints/cancer/quality", params={**q, "from": q["reference_to"]})
    [v] = r.json()["variants"]
    assert v["labelled"] == 269
    assert abs(v["realized"]["accuracy"] - v["estimated"]["accuracy"]["value"]) < 0.08

    env = {"MLFLOW_TRACKING_URI": settings.tracking_uri, "CHRONOML_STORE": settings.store_url or ""}
    base = ["--home", str(settings.home), "quality", "cancer", "--estimate"]
    base += ["--from", q["reference_to"], "--reference-from", ref_from]
    out = CliRunner().invoke(cli, [*base, "--reference-to", q["reference_to"]], env=env)
    assert out.exit_code == 0, out.output
    assert "estimated" in out.output and "roc_auc" in out.output and "realized" in out.output
    out = CliRunner().invoke(cli, [*base, "--reference-to", q["reference_to"], "--json"], env=env)
    assert json.loads(out.output)["variants"][0]["labelled"] == 269


def test_estimates_say_why_they_cannot_be_made(client: TestClient) -> None:
    url = "/v1/endpoints/cancer/quality"
    r = client.get(url, params={"estimate": "true"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "window"
    _predict(client, 0, 40)  # no labels anywhere: no reference to calibrate on
    r = client.get(url, params={"estimate": "true"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "reference"
    assert "labelled" in r.json()["error"]["message"]
    r = client.get(url, params={"estimate": "true", "reference_from": "2026-01-01T00:00:00"})
    assert r.status_code == 400 and r.json()["error"]["field"] == "reference_to"
    r = client.get(url, params={"estimate": "true", "reference_from": "yesterday-ish"})
    assert r.status_code == 400


class LabelsOnly(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
    """Answers class labels and no probabilities: nothing for CBPE to calibrate."""

    def __init__(self, est: Any) -> None:
        self.est = est

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        return self.est.predict(model_input)


def test_a_model_without_scores_and_an_empty_window_say_why(
    cm: Any, settings: Any, models: Any
) -> None:
    mlflow.set_tracking_uri(models.tracking_uri)
    mlflow.set_registry_uri(models.tracking_uri)
    est = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, Y)
    exp = mlflow.get_experiment_by_name("tests").experiment_id
    with mlflow.start_run(experiment_id=exp), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*input example was not provided")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=LabelsOnly(est),
            registered_model_name="labels-only",
            signature=infer_signature(X.head(), None),
            pip_requirements=[],
        )
    uri = f"models:/labels-only/{info.registered_model_version}"
    env = {"MLFLOW_TRACKING_URI": settings.tracking_uri, "CHRONOML_STORE": settings.store_url or ""}
    base = ["--home", str(settings.home), "quality", "plain", "--estimate"]
    with admin_client(create_app(settings, cm)) as c:
        r = c.put("/v1/endpoints/plain", json={"model_uri": uri, "allow_unlinked_data": True})
        assert r.status_code == 200, r.text
        out = CliRunner().invoke(cli, base, env=env)
        assert out.exit_code == 1 and "no decisions in this window" in out.output, out.output
        ids = []
        for lo in (0, 100):
            rows = X.iloc[lo : lo + 100]
            body = {
                "dataframe_split": {"columns": list(rows.columns), "data": rows.values.tolist()}
            }
            r = c.post("/v1/endpoints/plain/predict", json=body)
            assert r.status_code == 200, r.text
            ids += r.json()["decision_ids"]
        labels = [{"decision_id": d, "label": int(Y.iloc[i])} for i, d in enumerate(ids)]
        assert c.post("/v1/feedback", json={"labels": labels}).status_code == 200
        r = c.get("/v1/endpoints/plain/quality", params={"estimate": "true"})
        assert r.status_code == 422, r.text
        err = r.json()["error"]
        assert err["field"] == "scores" and "logs no class scores" in err["message"]
        assert "predict_proba" in err["message"]
    out = CliRunner().invoke(cli, base, env=env)
    assert out.exit_code == 1 and "logs no class scores" in out.output, out.output
