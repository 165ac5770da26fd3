"""The privacy policy through the real app: hashed and dropped inputs and context never reach
the store's bytes, drift says what it could not use, erasure needs auditor or admin."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from sklearn.datasets import load_breast_cancer
from sqlalchemy import select
from starlette.testclient import TestClient

from access_support import admin_client
from chronoml.gateway.app import create_app
from chronoml.store import blocks as SB
from chronoml.store import schema
from chronoml.timeutil import now_us

X = load_breast_cancer(as_frame=True).frame.drop(columns=["target"])
HASHED, DROPPED, KEPT = "mean radius", "mean texture", "mean perimeter"
HASH_MARK, DROP_MARK, KEPT_MARK = 17.123456789012, 23.987654321098, 99.87654321012
CTX_HASH, CTX_DROP, UNIT = "hash-marker@example.org", "drop-marker-Fq", "unit-raw-marker-77"


@pytest.fixture
def app(cm: Any, settings: Any) -> Any:
    return create_app(settings, cm)


@pytest.fixture
def client(app: Any) -> Iterator[TestClient]:
    with admin_client(app) as c:
        yield c


def _deploy(client: TestClient, models: Any) -> None:
    r = client.put("/v1/endpoints/cancer", json={"model_uri": f"models:/cancer/{models.linked_v1}"})
    assert r.status_code == 200, r.text


def _stored_bytes(cm: Any, home: Path) -> bytes:
    if cm.store.is_sqlite:
        return b"".join(p.read_bytes() for p in sorted(home.glob("chronoml.db*")))
    out = []
    with cm.store.read() as conn:
        for table in (schema.decisions, schema.ingest_blocks, schema.decision_blocks,
                      schema.decision_context, schema.explanations, schema.ledger_events,
                      schema.input_reads):  # fmt: skip
            for row in conn.execute(select(table)):
                for v in row:
                    out.append(bytes(v) if isinstance(v, bytes | memoryview) else str(v).encode())
    return b"\x00".join(out)


def test_hashed_and_dropped_inputs_never_reach_the_store(
    client: TestClient, app: Any, cm: Any, models: Any, settings: Any
) -> None:
    _deploy(client, models)
    r = client.put(
        "/v1/endpoints/cancer/privacy",
        json={
            "features": {HASHED: "hash", DROPPED: "drop"},
            "context": {"email": "hash", "sex": "drop"},
            "unit_key": "hash",
        },
    )
    assert r.status_code == 200, r.text
    p = r.json()
    assert p["features"] == {HASHED: "hash", DROPPED: "drop"} and p["unit_key"] == "hash"
    assert p["set_by"].startswith("token:test-admin-")
    (ev,) = [
        e
        for e in client.get("/v1/endpoints/cancer/history").json()["events"]
        if e["kind"] == "privacy"
    ]
    assert ev["actor"] == p["set_by"] and ev["payload"]["policy"]["context"]["sex"] == "drop"
    # the secret is a private file; no route shows it
    key = settings.privacy_key_path
    assert key.stat().st_mode & 0o077 == 0
    assert key.read_text().strip() not in r.text

    rows = X.iloc[:3].copy()
    rows.loc[rows.index[0], [HASHED, DROPPED, KEPT]] = [HASH_MARK, DROP_MARK, KEPT_MARK]
    body = {
        "dataframe_split": {"columns": list(rows.columns), "data": rows.values.tolist()},
        "context": {"email": CTX_HASH, "sex": CTX_DROP, "region": "north"},
    }
    r = client.post("/v1/endpoints/cancer/predict", json=body, headers={"X-Chronoml-Unit": UNIT})
    assert r.status_code == 200, r.text
    did = r.json()["decision_ids"][0]
    # context sent later, with feedback, is under the same policy
    later = {"sex": "later-drop-marker", "email": "later-hash-marker@example.org", "tier": "gold"}
    r = client.post("/v1/feedback", json={"decision_id": did, "label": 1, "context": later})
    assert r.status_code == 200, r.text
    SB.compact(cm.store, upto=now_us() + 1)  # into the columnar blocks too
    d = client.get(f"/v1/decisions/{did}").json()  # admin reads inputs
    assert d["inputs"][HASHED].startswith("h:") and DROPPED not in d["inputs"]
    assert d["inputs"][KEPT] == KEPT_MARK and d["unit"].startswith("h:")
    stored = _stored_bytes(cm, settings.home)
    assert struct.pack("<d", KEPT_MARK) in stored  # what is kept is found: the search works
    for gone in (struct.pack("<d", HASH_MARK), struct.pack("<d", DROP_MARK), CTX_HASH.encode(),
                 CTX_DROP.encode(), UNIT.encode(), b"later-drop-marker",
                 b"later-hash-marker@example.org"):  # fmt: skip
        assert gone not in stored, gone
    assert b"north" in stored and b"gold" in stored
    drift = client.get("/v1/endpoints/cancer/drift?window=1h").json()
    assert {n["feature"] for n in drift["not_used"]} == {HASHED, DROPPED}
    assert {f["feature"] for f in drift["features"]}.isdisjoint({HASHED, DROPPED})
    r = client.get("/v1/endpoints/cancer/quality?window=1h&by=sex")
    assert r.status_code == 400 and r.json()["error"]["field"] == "by", r.text
    v = client.get("/v1/audit/verify?decisions=true").json()
    assert v["ok"] is True and v["evidence"]["ok"] is True

    # erasure: auditor or admin only, found by the hashed unit key (the other roles'
    # clients have no lifespan of their own: the app is already serving)
    for role in ("viewer", "operator"):
        with closing(admin_client(app, role)) as other:
            r = other.post("/v1/erasures", json={"unit": UNIT})
            assert r.status_code == 403, r.text
    with closing(admin_client(app, "auditor")) as auditor:
        r = auditor.post("/v1/erasures", json={"unit": UNIT})
        assert r.status_code == 200, r.text
        assert r.json()["decisions"] == 3
        d = auditor.get(f"/v1/decisions/{did}").json()
    assert d["inputs"] is None and d["inputs_erased"]["erased_by"].startswith("token:test-auditor-")
    assert struct.pack("<d", KEPT_MARK) not in _stored_bytes(cm, settings.home)
    v = client.get("/v1/audit/verify?decisions=true").json()
    assert v["ok"] is True and v["evidence"]["ok"] is True
    proof = client.get(f"/v1/decisions/{did}/proof")
    assert proof.status_code == 200


def test_bad_policies_get_a_4xx_naming_what(client: TestClient, app: Any, models: Any) -> None:
    _deploy(client, models)
    cases = [
        ({"features": {"no such feature": "hash"}}, 422, "feature", "no such feature"),
        ({"features": {HASHED: "shred"}}, 422, "feature", "shred"),
        ({"context": {"sex": "encrypt"}}, 422, "context", "encrypt"),
        ({"unit_key": "drop"}, 422, "unit_key", "drop"),
        ({"colour": "red"}, 422, "colour", "colour"),
        ({"features": ["a"]}, 422, "features", "features"),
    ]
    for body, status, field, named in cases:
        r = client.put("/v1/endpoints/cancer/privacy", json=body)
        assert r.status_code == status, (body, r.text)
        err = r.json()["error"]
        assert err["field"] == field and named in err["message"], (body, err)
    r = client.put("/v1/endpoints/nowhere/privacy", json={"features": {HASHED: "hash"}})
    assert r.status_code == 404 and "nowhere" in r.json()["error"]["message"]
    assert client.get("/v1/endpoints/nowhere/privacy").status_code == 404
    r = client.post("/v1/erasures", json={"unit": ""})
    assert r.status_code == 422 and r.json()["error"]["field"] == "unit"
    with closing(admin_client(app, "operator")) as op:  # changing the policy is for admins
        r = op.put("/v1/endpoints/cancer/privacy", json={"features": {HASHED: "hash"}})
        assert r.status_code == 403
    with closing(admin_client(app, "viewer")) as viewer:
        got = viewer.get("/v1/endpoints/cancer/privacy").json()
    assert got["features"] == {} and got["unit_key"] == "keep"
