"""Drift broken down by slice (a context attribute or a model input), over the real log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.datasets import load_breast_cancer
from starlette.testclient import TestClient

from access_support import admin_client
from chronoml.cli.common import cli
from chronoml.gateway.app import create_app
from chronoml.monitor.slices import MISSING, SliceError, slicing
from chronoml.store import blocks, snapshots
from chronoml.timeutil import now_us

DATA = load_breast_cancer(as_frame=True).frame
X = DATA.drop(columns=["target"])


@pytest.fixture
def client(cm: Any, settings: Any, models: Any) -> Iterator[TestClient]:
    assert snapshots.take(cm.store, DATA, "cancer").id == models.snapshot_id
    with admin_client(create_app(settings, cm)) as c:
        r = c.put("/v1/endpoints/cancer", json={"model_uri": f"models:/cancer/{models.linked_v1}"})
        assert r.status_code == 200, r.text
        yield c


def _predict(c: TestClient, rows: Any, region: str) -> None:
    body = {
        "dataframe_split": {"columns": list(rows.columns), "data": rows.values.tolist()},
        "context": {"region": [region] * len(rows)},
    }
    r = c.post("/v1/endpoints/cancer/predict", json=body)
    assert r.status_code == 200, r.text


def test_drift_by_context_attribute_finds_the_shifted_slice(
    client: TestClient, cm: Any, settings: Any
) -> None:
    _predict(client, X.sample(200, random_state=1), "north")
    _predict(client, X.sample(150, random_state=2) * 1.4, "south")
    r = client.get("/v1/endpoints/cancer/drift", params={"by": "region"})
    assert r.status_code == 200, r.text
    by = r.json()["variants"][0]["by"]
    assert by["attribute"] == "region" and by["source"] == "context"
    got = {s["slice"]: s for s in by["slices"]}
    assert got["north"]["rows"] == 200 and got["south"]["rows"] == 150
    assert got["south"]["dataset_drift"] is True and got["north"]["dataset_drift"] is False
    assert by["worst"] == "south" and got["south"]["worst"] and not got["north"]["worst"]

    # the same slices once the history is compacted into blocks (which hold no context)
    blocks.compact(cm.store, upto=now_us() + 1)
    again = client.get("/v1/endpoints/cancer/drift", params={"by": "region"}).json()
    assert {s["slice"]: s["rows"] for s in again["variants"][0]["by"]["slices"]} == {
        "north": 200,
        "south": 150,
    }

    env = {"MLFLOW_TRACKING_URI": settings.tracking_uri, "CHRONOML_STORE": settings.store_url or ""}
    home = ["--home", str(settings.home)]
    out = CliRunner().invoke(cli, [*home, "drift", "cancer", "--by", "region"], env=env)
    assert out.exit_code == 0, out.output
    assert "by region (context):" in out.output
    south = next(line for line in out.output.splitlines() if line.strip().startswith("south"))
    assert "<- worst" in south and "150 decisions" in south

    out = CliRunner().invoke(cli, [*home, "drift", "cancer", "--by", "planet"], env=env)
    assert out.exit_code != 0 and "--by" in out.output and "region" in out.output


def test_drift_by_numeric_model_input_uses_quantile_bins(client: TestClient) -> None:
    _predict(client, X.sample(400, random_state=3), "north")
    r = client.get("/v1/endpoints/cancer/drift", params={"by": "mean radius", "bins": "4"})
    assert r.status_code == 200, r.text
    by = r.json()["variants"][0]["by"]
    assert by["source"] == "input" and by["binning"]["kind"] == "quantile"
    assert by["binning"]["bins"] == 4 and len(by["slices"]) == 4
    assert sum(s["rows"] for s in by["slices"]) == 400
    # quantile bins hold about the same number of decisions each
    assert all(80 <= s["rows"] <= 120 for s in by["slices"])
    # the sliced input is left out of each slice's verdicts (it differs by construction)
    assert all("mean radius" not in {f["feature"] for f in s["features"]} for s in by["slices"])
    assert sum(s["worst"] for s in by["slices"]) == 1


def test_drift_by_bad_input_is_a_4xx_naming_the_field(client: TestClient) -> None:
    empty = client.get("/v1/endpoints/cancer/drift", params={"by": "region"})
    assert empty.status_code == 422 and empty.json()["error"]["field"] == "window"
    _predict(client, X.sample(50, random_state=4), "north")
    r = client.get("/v1/endpoints/cancer/drift", params={"by": "planet"})
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["field"] == "by" and "region" in err["message"] and "mean radius" in err["message"]
    r = client.get("/v1/endpoints/cancer/drift", params={"by": "region", "bins": "many"})
    assert r.status_code == 400
    r = client.get("/v1/endpoints/cancer/drift", params={"by": "region", "bins": "1"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "bins"


def test_slicing_rules() -> None:
    # few distinct numbers are categories; None is its own slice
    s = slicing("age_band", [{"age_band": 1}, {"age_band": 2}, {}], None)
    assert s.keys == ["1", "2", MISSING] and s.binning == {"kind": "categorical"}
    # many distinct numbers: quantile bins, the top edge closed, every row in one bin
    values = np.arange(100, dtype=float)
    s = slicing("x", None, {"x": values}, bins=4)
    assert s.binning["kind"] == "quantile" and len(set(s.keys)) == 4
    assert s.keys[0] == s.keys[24] != s.keys[25] and s.keys[-1].endswith("]")
    # a model input wins over a context attribute of the same name
    assert slicing("x", [{"x": "a"}] * 100, {"x": values}).source == "input"
    with pytest.raises(SliceError):
        slicing("y", [{"x": "a"}], {"x": values})
    assert json.dumps(s.describe("x"))
