"""A request of many rows logged as one ingest block, through the real app: lookups,
labels, explanations, proofs and drift answer as they do for the same rows sent one
request each (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from sklearn.datasets import load_breast_cancer
from starlette.testclient import TestClient

from access_support import admin_client
from chronoml.gateway.app import create_app
from chronoml.ids import block_of

X = load_breast_cancer(as_frame=True).frame.drop(columns=["target"])
ROWS = X.iloc[:24]


def body(rows: Any) -> dict[str, Any]:
    return {"dataframe_split": {"columns": list(rows.columns), "data": rows.values.tolist()}}


@pytest.fixture
def client(cm: Any, settings: Any, models: Any) -> Iterator[TestClient]:
    s = replace(settings, ingest_block_rows=8)
    with admin_client(create_app(s, cm)) as c:
        for endpoint in ("held", "rows"):
            uri = f"models:/cancer/{models.linked_v2}"
            r = c.put(f"/v1/endpoints/{endpoint}", json={"model_uri": uri})
            assert r.status_code == 200, r.text
        yield c


def _same(d: dict[str, Any]) -> dict[str, Any]:
    """A decision's answer without what differs between two requests of the same rows."""
    skip = {
        "id",
        "time",
        "endpoint",
        "latency_ms",
        "event",
        "explanation",
        "routed_by_event",
        "label_history",
    }
    return {k: v for k, v in d.items() if k not in skip}


def test_a_block_request_answers_as_its_rows_do(client: TestClient) -> None:
    headers = {"X-Chronoml-Unit": "customer-9"}
    held = client.post(
        "/v1/endpoints/held/predict?explain=true", json=body(ROWS), headers=headers
    ).json()
    ids = held["decision_ids"]
    places = [block_of(i) for i in ids]
    assert all(p is not None for p in places) and len({p[0] for p in places if p}) == 1
    singles = [
        client.post(
            "/v1/endpoints/rows/predict?explain=true", json=body(ROWS.iloc[[i]]), headers=headers
        ).json()
        for i in range(len(ROWS))
    ]
    assert held["predictions"] == [p for s in singles for p in s["predictions"]]
    row_ids = [s["decision_ids"][0] for s in singles]
    assert all(block_of(i) is None for i in row_ids)  # one row: the row path
    for k, (a, b) in enumerate(zip(row_ids, ids, strict=True)):
        if k % 5:
            continue
        label = {"label": int(held["predictions"][k])}
        for did in (a, b):
            r = client.post("/v1/feedback", json={"decision_id": did, **label})
            assert r.status_code == 200, r.text
        da = client.get(f"/v1/decisions/{a}").json()
        db = client.get(f"/v1/decisions/{b}").json()
        assert db["id"] == b and _same(da) == _same(db)
        assert db["label"] == da["label"] == label["label"]
        xa = client.get(f"/v1/decisions/{a}/explanation").json()
        xb = client.get(f"/v1/decisions/{b}/explanation").json()
        assert xb["decision_id"] == b
        differ = ("decision_id", "created_at")
        assert {k: v for k, v in xa.items() if k not in differ} == {
            k: v for k, v in xb.items() if k not in differ
        }
        proof = client.get(f"/v1/decisions/{b}/proof")
        assert proof.status_code == 200, proof.text
        assert proof.json()["batch"]["size"] == len(ids)
    # a second label is refused as for a row; an unknown row of the block is a 404
    r = client.post("/v1/feedback", json={"decision_id": ids[0], "label": 1})
    assert r.status_code == 409, r.text
    ghost = ids[0][:32] + "ffff"
    assert client.get(f"/v1/decisions/{ghost}").status_code == 404
    assert client.post("/v1/feedback", json={"decision_id": ghost, "label": 1}).status_code == 404
    drift = [client.get(f"/v1/endpoints/{e}/drift", params={"window": "1h"}).json()
             for e in ("rows", "held")]  # fmt: skip
    assert drift[0]["window"]["rows"] == drift[1]["window"]["rows"] == len(ROWS)
    assert drift[0]["features"] == drift[1]["features"]
    assert drift[0]["prediction"] == drift[1]["prediction"]
    audit = client.get("/v1/audit/verify", params={"decisions": "true"}).json()
    assert audit["ok"] is True, audit
