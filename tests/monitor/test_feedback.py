"""Late labels and quality over the real decision log, through the API and the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from starlette.testclient import TestClient

from access_support import admin_client
from chronoml.cli.common import cli
from chronoml.gateway.app import create_app

DATA = load_breast_cancer(as_frame=True).frame
X, Y = DATA.drop(columns=["target"]), DATA["target"]


@pytest.fixture
def client(cm: Any, settings: Any, models: Any) -> Iterator[TestClient]:
    with admin_client(create_app(settings, cm)) as c:
        r = c.put("/v1/endpoints/cancer", json={"model_uri": f"models:/cancer/{models.linked_v1}"})
        assert r.status_code == 200, r.text
        yield c


def _predict(c: TestClient, rows: pd.DataFrame) -> list[str]:
    body = {"dataframe_split": {"columns": list(rows.columns), "data": rows.values.tolist()}}
    r = c.post("/v1/endpoints/cancer/predict", json=body)
    assert r.status_code == 200, r.text
    return list(r.json()["decision_ids"])


def test_labels_quality_and_history(client: TestClient) -> None:
    rows = X.iloc[:40]
    ids = _predict(client, rows)
    preds = [client.get(f"/v1/decisions/{i}").json()["output"] for i in ids]
    truth = Y.iloc[:40].tolist()
    # label 30 of the 40; flip 3 of them so quality is not perfect by construction
    labels = [(1 - t) if i < 3 else t for i, t in enumerate(truth[:30])]
    r = client.post(
        "/v1/feedback",
        json={
            "labels": [
                {"decision_id": d, "label": lab} for d, lab in zip(ids, labels, strict=False)
            ]
        },
    )
    assert r.status_code == 200 and r.json() == {"labelled": 30, "updated": 0}

    q = client.get("/v1/endpoints/cancer/quality").json()
    v = q["variants"][0]
    assert (
        v["decisions"] == 40 and v["labelled"] == 30 and v["label_coverage"] == pytest.approx(0.75)
    )
    expected = sum(p == lab for p, lab in zip(preds[:30], labels, strict=True)) / 30
    assert v["metrics"]["accuracy"] == pytest.approx(expected)
    # the served pipeline's own probabilities were logged with each decision
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, Y)
    proba = model.predict_proba(rows.iloc[:30])
    assert v["metrics"]["scored"] == 30
    assert v["metrics"]["roc_auc"] == pytest.approx(roc_auc_score(labels, proba[:, 1]))
    assert v["metrics"]["log_loss"] == pytest.approx(log_loss(labels, proba, labels=[0, 1]))

    # a second label is an explicit update; the old value stays in history
    r = client.post("/v1/feedback", json={"decision_id": ids[0], "label": truth[0]})
    assert r.status_code == 409 and "update" in r.json()["error"]["message"]
    r = client.post("/v1/feedback", json={"decision_id": ids[0], "label": truth[0], "update": True})
    assert r.json() == {"labelled": 0, "updated": 1}
    d = client.get(f"/v1/decisions/{ids[0]}").json()
    assert d["label"] == truth[0]
    assert [h["label"] for h in d["label_history"]] == [1 - truth[0], truth[0]]


def test_bad_feedback(client: TestClient) -> None:
    ids = _predict(client, X.iloc[:2])
    r = client.post(
        "/v1/feedback", json={"decision_id": "0190aaaa-0000-7000-8000-000000000000", "label": 1}
    )
    assert r.status_code == 404
    r = client.post("/v1/feedback", json={"decision_id": ids[0], "label": "malignant"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "label"
    r = client.post("/v1/feedback", json={"decision_id": ids[0], "label": 0.5})
    assert r.status_code == 422
    # all or nothing: one bad label in a batch writes none
    r = client.post(
        "/v1/feedback",
        json={
            "labels": [{"decision_id": ids[0], "label": 1}, {"decision_id": ids[1], "label": [1]}]
        },
    )
    assert r.status_code == 422
    assert "label" not in client.get(f"/v1/decisions/{ids[0]}").json()
    json_type = {"Content-Type": "application/json"}
    assert client.post("/v1/feedback", content=b"{oops", headers=json_type).status_code == 400


def test_feedback_import_from_a_file(client: TestClient, settings: Any, tmp_path: Any) -> None:
    ids = _predict(client, X.iloc[:10])
    path = tmp_path / "labels.csv"
    pd.DataFrame(
        {"decision_id": ids, "label": Y.iloc[:10].tolist(), "time": ["2026-11-20T10:00:00"] * 10}
    ).to_csv(path, index=False)
    env = {"MLFLOW_TRACKING_URI": settings.tracking_uri, "CHRONOML_STORE": settings.store_url or ""}
    run = CliRunner().invoke
    out = run(cli, ["--home", str(settings.home), "feedback", "import", str(path)], env=env)
    assert out.exit_code == 0, out.output
    assert "10 labelled, 0 updated" in out.output
    out = run(cli, ["--home", str(settings.home), "feedback", "import", str(path)], env=env)
    assert out.exit_code == 1 and "--update" in out.output
    out = run(cli, ["--home", str(settings.home), "quality", "cancer", "--json"], env=env)
    assert json.loads(out.output)["variants"][0]["labelled"] == 10
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"decision": ids}).to_csv(bad, index=False)
    out = run(cli, ["--home", str(settings.home), "feedback", "import", str(bad)], env=env)
    assert out.exit_code == 1 and "decision_id" in out.output
