"""One rule for null, non-finite and out-of-range inputs in every format: a 422 naming the
column, never a model error, never a logged decision. And MLflow's text/csv."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from sklearn.datasets import load_breast_cancer
from starlette.testclient import TestClient

from access_support import admin_client
from chronoml.gateway.app import create_app
from chronoml.store import decisions as D

X = load_breast_cancer(as_frame=True).frame.drop(columns=["target"])
COLS = list(X.columns)
FIRST = COLS[0]


@pytest.fixture
def client(cm: Any, settings: Any, models: Any) -> Iterator[TestClient]:
    app = create_app(replace(settings, default_endpoint="cancer"), cm)
    with admin_client(app) as c:
        r = c.put("/v1/endpoints/cancer", json={"model_uri": f"models:/cancer/{models.linked_v1}"})
        assert r.status_code == 200, r.text
        yield c


def _row(value: Any) -> list[Any]:
    row = X.iloc[0].tolist()
    row[0] = value
    return row


def bodies(value: Any) -> dict[str, dict[str, Any]]:
    row = _row(value)
    return {
        "dataframe_split": {"dataframe_split": {"columns": COLS, "data": [row]}},
        "dataframe_records": {"dataframe_records": [dict(zip(COLS, row, strict=True))]},
        "instances": {"instances": [row]},
        "inputs": {"inputs": [row]},
        "v2": {"inputs": [{"name": "x", "shape": [1, len(COLS)], "datatype": "FP64", "data": row}]},
    }


@pytest.mark.parametrize("value", [None, 1e308, -3.5e38])
def test_null_and_out_of_range_are_refused_in_every_format(
    client: TestClient, cm: Any, value: Any
) -> None:
    before = D.count(cm.store)
    for fmt, body in bodies(value).items():
        path = "/v2/models/cancer/infer" if fmt == "v2" else "/v1/endpoints/cancer/predict"
        r = client.post(path, json=body)
        assert r.status_code == 422, (fmt, r.text)
        err = r.json()["error"]  # the Open Inference Protocol's errors are one string
        message = err if isinstance(err, str) else err["message"]
        assert FIRST in message, (fmt, r.text)
    assert D.count(cm.store) == before  # nothing was logged
    # a model error would have counted against a canary: none was recorded
    assert "model_error" not in client.get("/metrics").text.split("chronoml_requests_total")[0]


def test_csv_is_taken_as_mlflow_takes_it(client: TestClient) -> None:
    header = ",".join(f'"{c}"' for c in COLS)
    rows = "\n".join(",".join(str(v) for v in X.iloc[i].tolist()) for i in range(3))
    csv = f"{header}\n{rows}\n".encode()
    r = client.post("/invocations", content=csv, headers={"Content-Type": "text/csv"})
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"]) == 3
    holes = csv.replace(str(X.iloc[1, 0]).encode(), b"", 1)
    r = client.post("/invocations", content=holes, headers={"Content-Type": "text/csv"})
    assert r.status_code == 422 and r.json()["error"]["field"] == FIRST
    r = client.post("/invocations", content=b"\xff\xfe", headers={"Content-Type": "text/csv"})
    assert r.status_code == 400
