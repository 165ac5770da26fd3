"""Fairness over the real decision log, through the REST API and the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    equalized_odds_difference,
    selection_rate,
)
from sklearn.datasets import load_breast_cancer
from starlette.testclient import TestClient

from access_support import admin_client
from chronoml.cli.common import cli
from chronoml.gateway.app import create_app

DATA = load_breast_cancer(as_frame=True).frame
X, Y = DATA.drop(columns=["target"]), DATA["target"]
N = 200


@pytest.fixture
def client(cm: Any, settings: Any, models: Any) -> Iterator[TestClient]:
    with admin_client(create_app(settings, cm)) as c:
        r = c.put("/v1/endpoints/cancer", json={"model_uri": f"models:/cancer/{models.linked_v1}"})
        assert r.status_code == 200, r.text
        yield c


def _served(client: TestClient) -> tuple[list[str], list[int], list[int], list[str]]:
    rng = np.random.default_rng(3)
    rows = X.iloc[:N]
    sex = rng.choice(["F", "M"], size=N).tolist()
    body = {
        "dataframe_split": {"columns": list(rows.columns), "data": rows.values.tolist()},
        "context": {"sex": sex},
    }
    r = client.post("/v1/endpoints/cancer/predict", json=body)
    assert r.status_code == 200, r.text
    ids, preds = r.json()["decision_ids"], r.json()["predictions"]
    # labels that the model gets wrong more often for one group
    truth = Y.iloc[:N].to_numpy().copy()
    flip = (np.asarray(sex) == "F") & (rng.random(N) < 0.25)
    labels = np.where(flip, 1 - truth, truth).tolist()
    r = client.post(
        "/v1/feedback",
        json={"labels": [{"decision_id": d, "label": y} for d, y in zip(ids, labels, strict=True)]},
    )
    assert r.status_code == 200, r.text
    return ids, preds, labels, sex


def test_fairness_matches_fairlearn(client: TestClient) -> None:
    _ids, preds, labels, sex = _served(client)
    r = client.get("/v1/endpoints/cancer/fairness", params={"attribute": "sex", "window": "1h"})
    assert r.status_code == 200, r.text
    rep = r.json()
    assert rep["attribute"] == "sex" and rep["rows"] == N and rep["unlabelled"] == 0
    mf = MetricFrame(
        metrics={"selection_rate": selection_rate},
        y_true=labels,
        y_pred=preds,
        sensitive_features=pd.Series(sex, name="sex"),
    )
    by = {g["group"]: g for g in rep["groups"]}
    for group in ("F", "M"):
        assert by[group]["count"] == sex.count(group)
        assert by[group]["selection_rate"] == pytest.approx(
            mf.by_group.loc[group, "selection_rate"]
        )
    d = rep["disparities"]
    assert d["demographic_parity_difference"]["value"] == pytest.approx(
        demographic_parity_difference(labels, preds, sensitive_features=sex)
    )
    assert d["equalized_odds_difference"]["value"] == pytest.approx(
        equalized_odds_difference(labels, preds, sensitive_features=sex)
    )
    # F's labels were made noisier: its accuracy is the lower one
    assert by["F"]["accuracy"] < by["M"]["accuracy"]


def test_bad_fairness_questions_are_4xx(client: TestClient) -> None:
    url = "/v1/endpoints/cancer/fairness"
    r = client.get(url, params={"attribute": "sex"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "window"  # nothing served yet
    rows = X.iloc[:20]
    body = {
        "dataframe_split": {"columns": list(rows.columns), "data": rows.values.tolist()},
        "context": {"sex": "F"},
    }
    assert client.post("/v1/endpoints/cancer/predict", json=body).status_code == 200
    r = client.get(url)
    assert r.status_code == 400 and r.json()["error"]["field"] == "attribute"
    r = client.get(url, params={"attribute": "age"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "attribute"
    assert "sex" in r.json()["error"]["message"]
    r = client.get(url, params={"attribute": "sex"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "labels"
    r = client.get(url, params={"attribute": "sex", "version": "99"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "version"
    r = client.get("/v1/endpoints/nope/fairness", params={"attribute": "sex"})
    assert r.status_code == 404


def test_fairness_cli(client: TestClient, settings: Any) -> None:
    _served(client)
    env = {"MLFLOW_TRACKING_URI": settings.tracking_uri, "CHRONOML_STORE": settings.store_url or ""}
    run = CliRunner().invoke
    base = ["--home", str(settings.home), "fairness", "cancer"]
    out = run(cli, [*base, "--attribute", "sex"], env=env)
    assert out.exit_code == 0, out.output
    assert "equalized_odds_difference" in out.output and "F " in out.output
    out = run(cli, [*base, "--attribute", "sex", "--json", "--positive-class", "1"], env=env)
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["positive_class"] == 1
    out = run(cli, [*base, "--attribute", "age"], env=env)
    assert out.exit_code == 1 and "attribute 'age'" in out.output


def test_quality_by_slice_marks_the_worst(client: TestClient, settings: Any) -> None:
    _ids, preds, labels, sex = _served(client)
    r = client.get("/v1/endpoints/cancer/quality", params={"by": "sex"})
    assert r.status_code == 200, r.text
    by = r.json()["variants"][0]["by"]
    assert by["attribute"] == "sex" and by["worst"] == "F"
    got = {s["slice"]: s for s in by["slices"]}
    for group in ("F", "M"):
        rows = [i for i, g in enumerate(sex) if g == group]
        acc = sum(preds[i] == labels[i] for i in rows) / len(rows)
        assert got[group]["decisions"] == got[group]["labelled"] == len(rows)
        assert got[group]["metrics"]["accuracy"] == pytest.approx(acc)
        assert got[group]["worst"] == (group == "F")
    r = client.get("/v1/endpoints/cancer/quality", params={"by": "region"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "by"

    env = {"MLFLOW_TRACKING_URI": settings.tracking_uri, "CHRONOML_STORE": settings.store_url or ""}
    out = CliRunner().invoke(
        cli, ["--home", str(settings.home), "quality", "cancer", "--by", "sex"], env=env
    )
    assert out.exit_code == 0, out.output
    assert "by sex (context):" in out.output and "<- worst" in out.output


def test_model_card(client: TestClient, settings: Any, models: Any) -> None:
    _served(client)
    env = {"MLFLOW_TRACKING_URI": settings.tracking_uri, "CHRONOML_STORE": settings.store_url or ""}
    base = ["--home", str(settings.home), "card", "cancer"]
    run = CliRunner().invoke
    out = run(cli, [*base, "--format", "json", "--intended-use", "triage aid"], env=env)
    assert out.exit_code == 0, out.output
    card = json.loads(out.output.split("\nstored in MLflow run")[0])
    assert card["model"]["version"] == models.linked_v1 and card["intended_use"] == "triage aid"
    assert card["training_data"]["id"] == models.snapshot_id
    assert card["quality"][0]["labelled"] == N
    assert set(card["fairness"]["sex"]["groups"]) == {"F", "M"}
    from mlflow.tracking import MlflowClient

    run_id = card["model"]["run_id"]
    folder = "chronoml/model_cards/cancer"
    names = {a.path for a in MlflowClient(settings.tracking_uri).list_artifacts(run_id, folder)}
    assert names == {f"{folder}/model_card.{x}" for x in ("json", "md", "html")}
    out = run(cli, [*base, "--no-store"], env=env)
    assert out.exit_code == 0 and "## Fairness" in out.output and "- sex:" in out.output
    out = run(cli, [*base, "--version", "99", "--no-store"], env=env)
    assert out.exit_code == 1 and "never served" in out.output
