"""The audit routes through the real app: verify with the evidence report, a decision's proof."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sklearn.datasets import load_breast_cancer
from starlette.testclient import TestClient

from access_support import admin_client
from chronoml.domain import leaves as LV
from chronoml.domain import merkle
from chronoml.gateway.app import create_app

X = load_breast_cancer(as_frame=True).frame.drop(columns=["target"])


@pytest.fixture
def client(cm: Any, settings: Any, tmp_path: Path) -> Iterator[TestClient]:
    s = replace(settings, checkpoint_interval_s=0.2, checkpoint_dir=tmp_path / "published")
    cm.settings = s
    with admin_client(create_app(s, cm)) as c:
        yield c


def test_predict_prove_and_verify(client: TestClient, models: Any, tmp_path: Path) -> None:
    r = client.put("/v1/endpoints/cancer", json={"model_uri": f"models:/cancer/{models.linked_v1}"})
    assert r.status_code == 200, r.text
    rows = X.iloc[:2]
    body = {"dataframe_split": {"columns": list(rows.columns), "data": rows.values.tolist()}}
    r = client.post("/v1/endpoints/cancer/predict", json=body)
    assert r.status_code == 200, r.text
    did = r.json()["decision_ids"][1]
    proof = client.get(f"/v1/decisions/{did}/proof").json()
    assert proof["decision_id"] == did
    b = proof["batch"]
    leaf = LV.DecisionLeaf.from_dict(proof["leaf"]).leaf_hash()
    root = merkle.root_from_inclusion_proof(
        b["index"], b["size"], leaf, [bytes.fromhex(h) for h in b["path"]]
    )
    assert root is not None
    entry = LV.BatchLeaf("decision", b["size"], root, b["committed_at"]).leaf_hash()
    cp_root = base64.b64decode(proof["checkpoint"].splitlines()[2])
    path = [bytes.fromhex(h) for h in proof["log_path"]]
    assert merkle.verify_inclusion(proof["log_index"], proof["log_size"], entry, path, cp_root)
    assert client.get("/v1/decisions/nope/proof").status_code == 404
    v = client.get("/v1/audit/verify?decisions=true").json()
    assert v["ok"] is True and v["events"] == 1
    assert v["evidence"]["ok"] is True and v["evidence"]["decisions"] == 2
    # the server's worker publishes checkpoints as the log grows
    for _ in range(100):
        if (tmp_path / "published" / "latest.txt").exists():
            break
        time.sleep(0.05)
    assert (tmp_path / "published" / "latest.txt").read_text().startswith("chronoml.log/")
