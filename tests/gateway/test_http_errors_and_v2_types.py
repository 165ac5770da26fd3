"""/metrics counts refused and bad requests; v2 metadata states what infer returns."""

from __future__ import annotations

import re
from typing import Any

from sklearn.datasets import load_breast_cancer
from starlette.testclient import TestClient

from access_support import admin_client
from chronoml.gateway.app import create_app

X = load_breast_cancer(as_frame=True).frame.drop(columns=["target"])


def _count(text: str, status: int) -> float:
    m = re.search(rf'^chronoml_http_errors_total{{status="{status}"}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


def test_metrics_count_4xx_by_status(cm: Any, settings: Any, models: Any) -> None:
    app = create_app(settings, cm)
    with admin_client(app) as c:
        r = c.put("/v1/endpoints/cancer", json={"model_uri": f"models:/cancer/{models.linked_v1}"})
        assert r.status_code == 200, r.text
        assert (
            c.post(
                "/v1/endpoints/cancer/predict",
                content=b"{not json",
                headers={"Content-Type": "application/json"},
            ).status_code
            == 400
        )
        assert c.post("/v1/endpoints/cancer/predict", json={"oops": 1}).status_code >= 400
        assert c.get("/v1/decisions/nope").status_code == 404
        # no lifespan of its own: the app is already serving, through ``c``
        anonymous = TestClient(app, base_url="http://127.0.0.1")
        try:
            assert anonymous.get("/v1/endpoints").status_code == 401
        finally:
            anonymous.close()
        text = c.get("/metrics").text
    assert _count(text, 400) >= 1 and _count(text, 404) == 1 and _count(text, 401) == 1, text
    assert _count(text, 200) == 0  # successes are not errors


def test_v2_metadata_gives_the_datatype_infer_returns(cm: Any, settings: Any, models: Any) -> None:
    with admin_client(create_app(settings, cm)) as c:
        r = c.put("/v1/endpoints/cancer", json={"model_uri": f"models:/cancer/{models.linked_v1}"})
        assert r.status_code == 200, r.text
        before = c.get("/v2/models/cancer").json()["outputs"][0]["datatype"]
        rows = X.iloc[:3]
        tensor = {"name": "input-0", "shape": [3, 30], "datatype": "FP64"}
        body = {"inputs": [{**tensor, "data": rows.values.ravel().tolist()}]}
        out = c.post("/v2/models/cancer/infer", json=body)
        assert out.status_code == 200, out.text
        returned = out.json()["outputs"][0]["datatype"]
        after = c.get("/v2/models/cancer").json()["outputs"][0]["datatype"]
    # a classifier answers class labels: integers, declared so before any request
    assert returned == "INT64"
    assert before == after == returned
