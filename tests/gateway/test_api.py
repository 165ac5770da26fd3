"""The REST API and gateway through the real ASGI app, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from sklearn.datasets import load_breast_cancer
from starlette.testclient import TestClient

from access_support import admin_client
from chronoml import digests
from chronoml.gateway.app import create_app
from chronoml.store import decisions as D
from chronoml.store import ledger as SL

X = load_breast_cancer(as_frame=True).frame.drop(columns=["target"])


def split_body(rows: Any) -> dict[str, Any]:
    return {"dataframe_split": {"columns": list(rows.columns), "data": rows.values.tolist()}}


@pytest.fixture
def client(cm: Any, settings: Any) -> Iterator[TestClient]:
    with admin_client(create_app(settings, cm)) as c:
        yield c


@pytest.fixture
def deployed(client: TestClient, models: Any) -> TestClient:
    r = client.put("/v1/endpoints/cancer", json={"model_uri": f"models:/cancer/{models.linked_v1}"})
    assert r.status_code == 200, r.text
    return client


def test_deploy_predict_and_lineage(deployed: TestClient, models: Any) -> None:
    r = deployed.post("/v1/endpoints/cancer/predict", json=split_body(X.iloc[:3]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["predictions"]) == 3 and len(body["decision_ids"]) == 3
    assert body["model"] == {"name": "cancer", "version": models.linked_v1}
    assert body["variant"] == f"cancer-v{models.linked_v1}"

    d = deployed.get(f"/v1/decisions/{body['decision_ids'][1]}").json()
    assert d["endpoint"] == "cancer" and d["shadow"] is False
    assert d["model"]["version"] == models.linked_v1
    assert d["model"]["run_id"] and d["model"]["artifact_digest"].startswith("sha256:")
    assert d["data_snapshot"]["id"] == models.snapshot_id
    assert d["data_snapshot"]["rows"] == 569
    assert d["event"]["kind"] == "deploy" and d["event"]["seq"] == 1
    assert d["inputs"] == pytest.approx(X.iloc[1].to_dict())
    assert d["output"] == body["predictions"][1]
    assert d["latency_ms"] > 0


@pytest.mark.parametrize(
    "payload",
    [
        lambda rows: {"dataframe_records": rows.to_dict(orient="records")},
        lambda rows: {"instances": rows.to_dict(orient="records")},
        lambda rows: {"inputs": rows.to_dict(orient="list")},
        lambda rows: {"instances": rows.values.tolist()},
    ],
    ids=["dataframe_records", "instances_records", "inputs_columns", "instances_positional"],
)
def test_mlflow_scoring_formats(deployed: TestClient, payload: Any) -> None:
    rows = X.iloc[5:9]
    ref = deployed.post("/v1/endpoints/cancer/predict", json=split_body(rows)).json()
    r = deployed.post("/v1/endpoints/cancer/predict", json=payload(rows))
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == ref["predictions"]


def test_status_at_times_and_history(deployed: TestClient, models: Any) -> None:
    before = deployed.get("/v1/endpoints/cancer", params={"at": "2001-01-01T00:00:00"}).json()
    assert before["variants"] == [] and before["event"] is None
    assert before["at"] == "2001-01-01T00:00:00.000000Z"  # no offset: UTC
    t1 = time.time()
    time.sleep(0.01)
    r = deployed.put(
        "/v1/endpoints/cancer",
        json={"model_uri": f"models:/cancer/{models.linked_v2}", "weight": 25},
    )
    assert r.status_code == 200, r.text
    at1 = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t1)) + f".{int(t1 % 1 * 1e6):06d}+00:00"
    then = deployed.get("/v1/endpoints/cancer", params={"at": at1}).json()
    assert [(v["model"]["version"], v["weight"]) for v in then["variants"]] == [
        (models.linked_v1, 100)
    ]
    now = deployed.get("/v1/endpoints/cancer").json()
    assert [(v["model"]["version"], v["weight"]) for v in now["variants"]] == [
        (models.linked_v1, 75),
        (models.linked_v2, 25),
    ]
    assert (
        now["event"]["seq"] == 2 and now["variants"][1]["data_snapshot"]["id"] == models.snapshot_id
    )
    # an offset is honoured: the same instant written in another zone
    hist = deployed.get("/v1/endpoints/cancer/history").json()["events"]
    assert [e["kind"] for e in hist] == ["deploy", "deploy"]
    assert deployed.get("/v1/audit/verify").json()["ok"] is True


def test_sticky_routing_and_split(deployed: TestClient, models: Any) -> None:
    deployed.put(
        "/v1/endpoints/cancer",
        json={"model_uri": f"models:/cancer/{models.linked_v2}", "weight": 50},
    )
    body = split_body(X.iloc[:1])
    seen = {}
    for unit in [f"user-{i}" for i in range(40)]:
        variants = {
            deployed.post(
                "/v1/endpoints/cancer/predict", json=body, headers={"X-Chronoml-Unit": unit}
            ).json()["variant"]
            for _ in range(3)
        }
        assert len(variants) == 1  # a unit stays on its variant
        seen[unit] = variants.pop()
    assert len(set(seen.values())) == 2  # both variants get traffic


def test_weights_and_rollback(deployed: TestClient, models: Any) -> None:
    deployed.put(
        "/v1/endpoints/cancer",
        json={"model_uri": f"models:/cancer/{models.linked_v2}", "weight": 50},
    )
    v1, v2 = f"cancer-v{models.linked_v1}", f"cancer-v{models.linked_v2}"
    r = deployed.put("/v1/endpoints/cancer", json={"weights": {v1: 90, v2: 10}})
    assert r.status_code == 200, r.text
    assert r.json()["event"]["kind"] == "set_weights"
    r = deployed.post("/v1/endpoints/cancer/rollback", params={"reason": "too slow"})
    assert r.status_code == 200
    weights = {v["variant"]: v["weight"] for v in r.json()["status"]["variants"]}
    assert weights == {v1: 50, v2: 50}
    r = deployed.post("/v1/endpoints/cancer/retire")
    assert r.json()["status"]["variants"] == []
    r = deployed.post("/v1/endpoints/cancer/predict", json=split_body(X.iloc[:1]))
    assert r.status_code == 409 and r.json()["error"]["code"] == "nothing_live"


def test_shadow_sees_copies_and_never_answers(deployed: TestClient, cm: Any, models: Any) -> None:
    r = deployed.put(
        "/v1/endpoints/cancer",
        json={"model_uri": f"models:/cancer/{models.linked_v2}", "shadow": True},
    )
    assert r.status_code == 200, r.text
    for i in range(5):
        body = deployed.post(
            "/v1/endpoints/cancer/predict", json=split_body(X.iloc[i : i + 1])
        ).json()
        assert body["variant"] == f"cancer-v{models.linked_v1}"
    deadline = time.time() + 5
    while time.time() < deadline:
        w = D.window(cm.store, cm.layouts, "cancer", 0, 2**62, include_shadow=True)
        if w.rows == 10:
            break
        time.sleep(0.05)
    assert w.rows == 10
    shadow_rows = D.window(
        cm.store,
        cm.layouts,
        "cancer",
        0,
        2**62,
        variant=f"cancer-v{models.linked_v2}",
        include_shadow=True,
    )
    assert shadow_rows.rows == 5


# --- bad input ---------------------------------------------------------------


def _decision_count(cm: Any) -> int:
    return D.count(cm.store)


@pytest.mark.parametrize(
    ("body", "status", "field", "says"),
    [
        (b"{not json", 400, None, "not valid JSON"),
        (b'{"nothing": 1}', 400, None, "exactly one of"),
        ("missing", 422, "mean radius", "missing column"),
        ("extra", 422, "colour", "unknown column"),
        ("wrong_type", 422, "mean texture", "expected a number"),
    ],
)
def test_bad_input_is_4xx_naming_the_field_and_logs_nothing(
    deployed: TestClient, cm: Any, body: Any, status: int, field: str | None, says: str
) -> None:
    rows = X.iloc[:2]
    if body == "missing":
        content = split_body(rows.drop(columns=["mean radius"]))
    elif body == "extra":
        content = split_body(rows.assign(colour=1.0))
    elif body == "wrong_type":
        content = {"dataframe_records": rows.to_dict(orient="records")}
        content["dataframe_records"][1]["mean texture"] = "high"
    else:
        content = None
    before = _decision_count(cm)
    if content is None:
        r = deployed.post(
            "/v1/endpoints/cancer/predict",
            content=body,
            headers={"content-type": "application/json"},
        )
    else:
        r = deployed.post("/v1/endpoints/cancer/predict", json=content)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert says in err["message"]
    if field is not None:
        assert err["field"] == field
    assert _decision_count(cm) == before


def test_unknown_things_are_404(client: TestClient) -> None:
    assert client.post("/v1/endpoints/nope/predict", json={"instances": [[1]]}).status_code == 404
    assert client.get("/v1/endpoints/nope").status_code == 404
    assert client.get("/v1/endpoints/nope/history").status_code == 404
    r = client.get("/v1/decisions/0190aaaa-0000-7000-8000-000000000000")
    assert r.status_code == 404 and "unknown decision" in r.json()["error"]["message"]
    r = client.put("/v1/endpoints/x", json={"model_uri": "models:/cancer/999"})
    assert r.status_code == 404 and "models:/cancer/999" in r.json()["error"]["message"]
    r = client.put("/v1/endpoints/x", json={"model_uri": "runs:/abc/model"})
    assert r.status_code == 404 and "runs:/abc/model" in r.json()["error"]["message"]


def test_bad_time_and_bad_split_are_refused(deployed: TestClient, cm: Any, models: Any) -> None:
    r = deployed.get("/v1/endpoints/cancer", params={"at": "last tuesday"})
    assert r.status_code == 400 and r.json()["error"]["field"] == "at"
    head = SL.head(cm.store)
    r = deployed.put("/v1/endpoints/cancer", json={"weights": {f"cancer-v{models.linked_v1}": 60}})
    assert r.status_code == 422 and "add up to 100" in r.json()["error"]["message"]
    r = deployed.put(
        "/v1/endpoints/cancer",
        json={"model_uri": f"models:/cancer/{models.linked_v2}", "weight": 150},
    )
    assert r.status_code == 422 and r.json()["error"]["field"] == "weight"
    assert SL.head(cm.store) == head  # nothing recorded


def test_unlinked_version_needs_explicit_permission(client: TestClient, models: Any) -> None:
    uri = f"models:/cancer/{models.unlinked_v3}"
    r = client.put("/v1/endpoints/u", json={"model_uri": uri})
    assert r.status_code == 422
    assert "log_snapshot" in r.json()["error"]["message"]
    assert client.get("/v1/endpoints/u").status_code == 404  # nothing recorded
    r = client.put("/v1/endpoints/u", json={"model_uri": uri, "allow_unlinked_data": True})
    assert r.status_code == 200
    assert "allowed by --allow-unlinked-data" in r.json()["event"]["summary"]
    assert r.json()["status"]["variants"][0]["data_snapshot"] is None


def test_body_and_row_limits(cm: Any, settings: Any, models: Any) -> None:
    from dataclasses import replace

    small = replace(settings, max_rows=2, max_body_bytes=50_000)
    with admin_client(create_app(small, cm)) as c:
        c.put("/v1/endpoints/cancer", json={"model_uri": f"models:/cancer/{models.linked_v1}"})
        r = c.post("/v1/endpoints/cancer/predict", json=split_body(X.iloc[:3]))
        assert r.status_code == 413 and "at most 2" in r.json()["error"]["message"]
        r = c.post("/v1/endpoints/cancer/predict", content=b"{" + b" " * 60_000 + b"}")
        assert r.status_code == 413


def test_metrics_and_dashboard(deployed: TestClient) -> None:
    deployed.post("/v1/endpoints/cancer/predict", json=split_body(X.iloc[:2]))
    text = deployed.get("/metrics").text
    assert 'chronoml_requests_total{endpoint="cancer"' in text
    assert "chronoml_log_commit_rows_bucket" in text
    # whether the evidence log's hashes come from the compiled module (built under CI)
    assert f"chronoml_compiled_hasher {1.0 if digests.ACCELERATED else 0.0}" in text
    html = deployed.get("/").text
    assert "cancer" in html and "verified" in html
