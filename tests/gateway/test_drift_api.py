"""Drift reports over the real decision log, through the API and the CLI."""

from __future__ import annotations

import json
from typing import Any

from click.testing import CliRunner
from sklearn.datasets import load_breast_cancer
from starlette.testclient import TestClient

from access_support import admin_client
from chronoml.cli.common import cli
from chronoml.gateway.app import create_app
from chronoml.store import snapshots

DATA = load_breast_cancer(as_frame=True).frame
X = DATA.drop(columns=["target"])


def _predict(c: TestClient, rows: Any) -> None:
    body = {"dataframe_split": {"columns": list(rows.columns), "data": rows.values.tolist()}}
    r = c.post("/v1/endpoints/cancer/predict", json=body)
    assert r.status_code == 200, r.text


def test_drift_report_from_the_decision_log(cm: Any, settings: Any, models: Any) -> None:
    # the training snapshot is in this store, so deploy builds the reference profile
    assert snapshots.take(cm.store, DATA, "cancer").id == models.snapshot_id
    with admin_client(create_app(settings, cm)) as c:
        r = c.put("/v1/endpoints/cancer", json={"model_uri": f"models:/cancer/{models.linked_v1}"})
        assert r.status_code == 200, r.text
        empty = c.get("/v1/endpoints/cancer/drift", params={"window": "1h"}).json()
        assert empty["window"]["rows"] == 0 and empty["empty"] is True and empty["features"] == []

        _predict(c, X.sample(300, random_state=1))
        calm = c.get("/v1/endpoints/cancer/drift").json()
        assert calm["window"]["rows"] == 300
        assert calm["dataset_drift"] is False
        f = {x["feature"]: x for x in calm["features"]}
        # a reference of 569 rows: Evidently's small-sample tests
        assert f["mean radius"]["method"] == "ks" and f["mean radius"]["threshold"] == 0.05

        start = c.get("/v1/endpoints/cancer").json()["at"]
        _predict(c, X.sample(300, random_state=2) * 1.4)
        shifted = c.get("/v1/endpoints/cancer/drift", params={"from": start}).json()
        assert shifted["window"]["rows"] == 300
        assert shifted["dataset_drift"] is True and shifted["drifted_share"] > 0.5
        assert shifted["variants"][0]["model"]["version"] == models.linked_v1

        assert c.get("/v1/endpoints/cancer/drift", params={"window": "soon"}).status_code == 400
        assert c.get("/v1/endpoints/ghost/drift").status_code == 404

    env = {"MLFLOW_TRACKING_URI": settings.tracking_uri, "CHRONOML_STORE": settings.store_url or ""}
    out = CliRunner().invoke(
        cli, ["--home", str(settings.home), "drift", "cancer", "--from", start], env=env
    )
    assert out.exit_code == 0, out.output
    assert "DATASET DRIFT" in out.output and "mean radius" in out.output
    out = CliRunner().invoke(
        cli, ["--home", str(settings.home), "drift", "cancer", "--json"], env=env
    )
    assert json.loads(out.output)["window"]["rows"] == 600


def test_version_without_local_snapshot_says_so(cm: Any, settings: Any, models: Any) -> None:
    with admin_client(create_app(settings, cm)) as c:
        r = c.put("/v1/endpoints/cancer", json={"model_uri": f"models:/cancer/{models.linked_v1}"})
        assert "reference_profile" in str(c.get("/v1/endpoints/cancer/history").json())
        _predict(c, X.head(10))
        rep = c.get("/v1/endpoints/cancer/drift").json()
        assert r.status_code == 200
        assert "no reference profile" in rep["variants"][0]["error"]


def test_overrides_and_html_export(cm: Any, settings: Any, models: Any, tmp_path: Any) -> None:
    snapshots.take(cm.store, DATA, "cancer")
    with admin_client(create_app(settings, cm)) as c:
        c.put("/v1/endpoints/cancer", json={"model_uri": f"models:/cancer/{models.linked_v1}"})
        _predict(c, X.sample(200, random_state=3))
        rep = c.get(
            "/v1/endpoints/cancer/drift",
            params=[
                ("method", "mean radius:psi"),
                ("threshold", "mean radius:0.5"),
                ("threshold", "mean texture:0.0"),
            ],
        ).json()
        f = {x["feature"]: x for x in rep["features"]}
        assert f["mean radius"]["method"] == "psi" and f["mean radius"]["threshold"] == 0.5
        assert f["mean texture"]["threshold"] == 0.0
        assert (
            c.get("/v1/endpoints/cancer/drift", params={"method": "mean radius:magic"}).status_code
            == 400
        )
        html = c.get("/v1/endpoints/cancer/drift", params={"format": "html"}).text
        assert (
            "<svg" in html
            and "mean radius" in html
            and "<script" not in html
            and "http" not in html.split("<body>")[1]
        )

    env = {"MLFLOW_TRACKING_URI": settings.tracking_uri, "CHRONOML_STORE": settings.store_url or ""}
    out_file = tmp_path / "drift.html"
    args = [
        "--home",
        str(settings.home),
        "drift",
        "cancer",
        "--method",
        "mean area=wasserstein",
        "--html",
        str(out_file),
    ]
    out = CliRunner().invoke(cli, args, env=env)
    assert out.exit_code == 0, out.output
    assert "wasserstein" in out.output and "Drift report: cancer" in out_file.read_text()
    out = CliRunner().invoke(
        cli, ["--home", str(settings.home), "drift", "cancer", "--threshold", "x=high"], env=env
    )
    assert out.exit_code == 1 and "FEATURE=THRESHOLD" in out.output
