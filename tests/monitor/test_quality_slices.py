"""Quality broken down by a model input (numbers in quantile bins) or a context attribute,
over the real log, through the REST API and the CLI."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sklearn.datasets import load_breast_cancer
from starlette.testclient import TestClient

from access_support import admin_client
from chronoml.cli.common import cli
from chronoml.gateway.app import create_app
from chronoml.store import snapshots

DATA = load_breast_cancer(as_frame=True).frame
X, Y = DATA.drop(columns=["target"]), DATA["target"]


@pytest.fixture
def client(cm: Any, settings: Any, models: Any) -> Iterator[TestClient]:
    # the training snapshot in this store: drift compares against its profile
    assert snapshots.take(cm.store, DATA, "cancer").id == models.snapshot_id
    with admin_client(create_app(settings, cm)) as c:
        r = c.put("/v1/endpoints/cancer", json={"model_uri": f"models:/cancer/{models.linked_v1}"})
        assert r.status_code == 200, r.text
        yield c


def _served(c: TestClient, rows: pd.DataFrame, labels: pd.Series) -> list[Any]:
    """Predict ``rows`` (region north/south alternating), label them; the predictions."""
    body = {
        "dataframe_split": {"columns": list(rows.columns), "data": rows.values.tolist()},
        "context": {"region": ["north", "south"] * (len(rows) // 2) + ["north"] * (len(rows) % 2)},
    }
    r = c.post("/v1/endpoints/cancer/predict", json=body)
    assert r.status_code == 200, r.text
    ids, preds = r.json()["decision_ids"], r.json()["predictions"]
    items = [{"decision_id": d, "label": int(y)} for d, y in zip(ids, labels, strict=True)]
    assert c.post("/v1/feedback", json={"labels": items}).status_code == 200
    return list(preds)


def _env(settings: Any) -> tuple[list[str], dict[str, str]]:
    env = {"MLFLOW_TRACKING_URI": settings.tracking_uri, "CHRONOML_STORE": settings.store_url or ""}
    return ["--home", str(settings.home)], env


def test_quality_by_numeric_input_uses_the_quantile_bins_of_drift(
    client: TestClient, models: Any
) -> None:
    rows = X.sample(400, random_state=5)
    preds = np.asarray(_served(client, rows, Y.loc[rows.index]))
    truth = Y.loc[rows.index].to_numpy()
    r = client.get("/v1/endpoints/cancer/quality", params={"by": "mean radius", "bins": "4"})
    assert r.status_code == 200, r.text
    by = r.json()["variants"][0]["by"]
    assert by["attribute"] == "mean radius" and by["source"] == "input"
    assert by["binning"]["kind"] == "quantile" and by["binning"]["bins"] == 4
    assert sum(s["decisions"] for s in by["slices"]) == 400
    # each slice holds the decisions whose input falls in its bin, with their accuracy
    edges = np.asarray(by["binning"]["edges"])
    bin_of = np.searchsorted(edges[1:-1], rows["mean radius"].to_numpy(), side="right")
    labels = sorted({s["slice"] for s in by["slices"]}, key=lambda k: float(k[1:].split(",")[0]))
    got = {s["slice"]: s for s in by["slices"]}
    accuracy = {}
    for j, key in enumerate(labels):
        mine = bin_of == j
        assert got[key]["decisions"] == got[key]["labelled"] == int(mine.sum())
        accuracy[key] = float((preds[mine] == truth[mine]).mean())
        assert got[key]["metrics"]["accuracy"] == pytest.approx(accuracy[key])
    worst = min((a, k) for k, a in accuracy.items())[1]  # ties: the first slice by name
    assert by["worst"] == worst and [s["slice"] for s in by["slices"] if s["worst"]] == [worst]
    # the same slices as drift's for the same input and bins
    drift = client.get("/v1/endpoints/cancer/drift", params={"by": "mean radius", "bins": "4"})
    assert drift.status_code == 200, drift.text
    d_by = drift.json()["variants"][0]["by"]
    assert d_by["binning"] == by["binning"]
    assert {s["slice"]: s["rows"] for s in d_by["slices"]} == {
        k: s["decisions"] for k, s in got.items()
    }


def test_quality_by_categorical_input_through_the_cli(client: TestClient, settings: Any) -> None:
    rows = X.sample(300, random_state=6).copy()
    rows["mean texture"] = np.resize([15.0, 20.0, 25.0], len(rows))  # three values: categories
    preds = np.asarray(_served(client, rows, Y.loc[rows.index]))
    truth = Y.loc[rows.index].to_numpy()
    # a slice whose decisions have no label yet: counted, no figures, never the worst
    more = X.iloc[:30].assign(**{"mean texture": 30.0})
    body = {"dataframe_split": {"columns": list(more.columns), "data": more.values.tolist()}}
    assert client.post("/v1/endpoints/cancer/predict", json=body).status_code == 200
    r = client.get("/v1/endpoints/cancer/quality", params={"by": "mean texture"})
    assert r.status_code == 200, r.text
    by = r.json()["variants"][0]["by"]
    assert by["source"] == "input" and by["binning"] == {"kind": "categorical"}
    got = {s["slice"]: s for s in by["slices"]}
    assert set(got) == {"15", "20", "25", "30"}
    unlabelled = got.pop("30")
    assert unlabelled["decisions"] == 30 and unlabelled["labelled"] == 0
    assert unlabelled["metrics"] == {"task": None} and not unlabelled["worst"]
    for key in got:
        mine = rows["mean texture"].to_numpy() == float(key)
        assert got[key]["decisions"] == int(mine.sum()) == 100
        assert got[key]["metrics"]["accuracy"] == pytest.approx((preds[mine] == truth[mine]).mean())

    home, env = _env(settings)
    out = CliRunner().invoke(cli, [*home, "quality", "cancer", "--by", "mean texture"], env=env)
    assert out.exit_code == 0, out.output
    assert "by mean texture (input):" in out.output and "<- worst" in out.output
    assert "100/100 labelled" in out.output
    out = CliRunner().invoke(
        cli, [*home, "quality", "cancer", "--by", "mean radius", "--bins", "3"], env=env
    )
    assert out.exit_code == 0, out.output
    assert "by mean radius (input, 3 quantile bins):" in out.output


def test_quality_by_bad_input_is_a_4xx_naming_the_field(client: TestClient, settings: Any) -> None:
    empty = client.get("/v1/endpoints/cancer/quality", params={"by": "region"})
    assert empty.status_code == 422 and empty.json()["error"]["field"] == "window", empty.text
    _served(client, X.iloc[:40], Y.iloc[:40])
    r = client.get("/v1/endpoints/cancer/quality", params={"by": "planet"})
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["field"] == "by" and "planet" in err["message"]
    assert "region" in err["message"] and "mean radius" in err["message"]
    r = client.get("/v1/endpoints/cancer/quality", params={"by": "region", "bins": "many"})
    assert r.status_code == 400, r.text
    r = client.get("/v1/endpoints/cancer/quality", params={"by": "mean radius", "bins": "1"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "bins", r.text

    home, env = _env(settings)
    out = CliRunner().invoke(cli, [*home, "quality", "cancer", "--by", "planet"], env=env)
    assert out.exit_code == 1 and "--by" in out.output and "mean radius" in out.output


def test_quality_by_an_input_the_privacy_policy_drops_is_refused(
    client: TestClient, settings: Any
) -> None:
    r = client.put(
        "/v1/endpoints/cancer/privacy",
        json={"features": {"worst perimeter": "drop", "mean texture": "hash"}},
    )
    assert r.status_code == 200, r.text
    rows = X.iloc[:60].copy()
    rows["mean texture"] = np.resize([15.0, 20.0], len(rows))
    _served(client, rows, Y.iloc[:60])
    r = client.get("/v1/endpoints/cancer/quality", params={"by": "worst perimeter"})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["field"] == "by" and "dropped by cancer's privacy policy" in err["message"]
    home, env = _env(settings)
    out = CliRunner().invoke(cli, [*home, "quality", "cancer", "--by", "worst perimeter"], env=env)
    assert out.exit_code == 1 and "dropped" in out.output
    # a hashed input still slices: by its keyed hashes, never the values
    by = client.get("/v1/endpoints/cancer/quality", params={"by": "mean texture"}).json()
    slices = by["variants"][0]["by"]["slices"]
    assert len(slices) == 2 and all(s["slice"].startswith("h:") for s in slices)
    assert sorted(s["decisions"] for s in slices) == [30, 30]


def test_drift_by_an_input_the_privacy_policy_drops_is_refused_as_quality_is(
    client: TestClient, settings: Any
) -> None:
    r = client.put("/v1/endpoints/cancer/privacy", json={"features": {"worst perimeter": "drop"}})
    assert r.status_code == 200, r.text
    _served(client, X.iloc[:60], Y.iloc[:60])
    r = client.get("/v1/endpoints/cancer/drift", params={"by": "worst perimeter"})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["field"] == "by" and "dropped by cancer's privacy policy" in err["message"]
    home, env = _env(settings)
    out = CliRunner().invoke(cli, [*home, "drift", "cancer", "--by", "worst perimeter"], env=env)
    assert out.exit_code == 1 and "dropped" in out.output
