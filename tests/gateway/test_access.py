"""Safe by default, tried as an attacker would: each test is an attack that must fail.

The server runs with its defaults (no --open-predict, no allowed hosts or
origins besides its own), on SQLite and PostgreSQL, through the real app.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from sklearn.datasets import load_breast_cancer
from starlette.testclient import TestClient

from access_support import admin_client
from chronoml.auth.access import create_token, ensure_admin_token
from chronoml.gateway.app import create_app
from chronoml.store import ledger as SL
from chronoml.store import principals as SP

X = load_breast_cancer(as_frame=True).frame.drop(columns=["target"])
ROW = {"dataframe_split": {"columns": list(X.columns), "data": X.iloc[:1].values.tolist()}}
LOCAL = "http://127.0.0.1"


@pytest.fixture
def app(cm: Any, settings: Any) -> Any:
    return create_app(settings, cm)


@pytest.fixture
def admin(app: Any, models: Any) -> Iterator[TestClient]:
    with admin_client(app) as c:
        r = c.put("/v1/endpoints/cancer", json={"model_uri": f"models:/cancer/{models.linked_v1}"})
        assert r.status_code == 200, r.text
        yield c


def token(app: Any, role: str, endpoints: str = "*") -> dict[str, str]:
    secret, _ = create_token(
        app.state.gateway.cm.store, f"{role}-{os.urandom(3).hex()}", role, by="tests",
        endpoints=endpoints,
    )  # fmt: skip
    return {"Authorization": f"Bearer {secret}"}


MUTATIONS = [
    ("PUT", "/v1/endpoints/cancer", {"model_uri": "models:/cancer/1"}),
    ("POST", "/v1/endpoints/cancer/rollback", None),
    ("POST", "/v1/endpoints/cancer/retire", None),
    ("PUT", "/v1/endpoints/cancer/retraining", {"entrypoint": {"kind": "project", "target": "x"}}),
    ("POST", "/v1/endpoints/cancer/retrain", None),
    ("POST", "/v1/endpoints/cancer/jobs/1/approve", {}),
    ("POST", "/v1/feedback", {"decision_id": "x", "label": 1}),
    ("PUT", "/v1/alerts/a", {"metric": "dataset_drift", "op": ">", "threshold": 0.5}),
    ("DELETE", "/v1/alerts/a", None),
    ("POST", "/v1/monitoring/run", None),
    ("POST", "/v1/endpoints/cancer/replay", {}),
    ("POST", "/v1/endpoints/cancer/backtest", {"model_uri": "models:/cancer/1"}),
    ("POST", "/v1/decisions/x/replay", None),
    ("POST", "/v1/tokens", {"name": "mine", "role": "admin"}),
    ("DELETE", "/v1/tokens/admin", None),
    ("POST", "/v1/endpoints/cancer/predict", ROW),
]


def test_without_a_token_no_change_is_made(app: Any, admin: TestClient) -> None:
    """Attack 1: with the default settings, anyone could change everything (and run code)."""
    before = SL.history(app.state.gateway.cm.store, "cancer")
    anyone = TestClient(app, base_url=LOCAL)
    for method, path, body in MUTATIONS:
        r = anyone.request(method, path, json=body)
        assert r.status_code == 401, (method, path, r.text)
        assert r.json()["error"]["code"] == "unauthenticated"
    r = anyone.get("/v1/decisions/x", headers={"Authorization": "Bearer cml_" + "A" * 43})
    assert r.status_code == 401 and r.json()["error"]["message"] == "unknown token"
    assert SL.history(app.state.gateway.cm.store, "cancer") == before


def test_code_runs_only_by_an_admins_choice(app: Any, admin: TestClient) -> None:
    """Attack 1 again: an operator, or a remote project URL, must not get code run."""
    evil = {"entrypoint": {"kind": "project", "target": "http://198.51.100.7/evil.zip"},
            "data": {"path": "data.csv"}}  # fmt: skip
    r = admin.put("/v1/endpoints/cancer/retraining", json=evil, headers=token(app, "operator"))
    assert r.status_code == 403 and "admin" in r.json()["error"]["message"]
    r = admin.put("/v1/endpoints/cancer/retraining", json=evil)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "entrypoint" and "--allow-project-source" in r.text
    outside = {
        "entrypoint": {"kind": "callable", "target": "mod:fn"},
        "data": {"path": "/etc/passwd"},
    }
    r = admin.put("/v1/endpoints/cancer/retraining", json=outside)
    assert r.status_code == 422 and r.json()["error"]["field"] == "data"


def test_a_browser_page_cannot_act(app: Any, admin: TestClient) -> None:
    """Attack 1 from a browser: text/plain bodies, foreign origins, rebound DNS names."""
    body = '{"model_uri": "models:/cancer/1"}'
    r = admin.put("/v1/endpoints/cancer", content=body, headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    r = admin.put(
        "/v1/endpoints/cancer",
        json={"model_uri": "models:/cancer/1"},
        headers={"Origin": "https://evil.example"},
    )
    assert r.status_code == 403 and r.json()["error"]["code"] == "foreign_origin"
    r = admin.get("/v1/endpoints/cancer", headers={"Host": "rebound.evil.example"})
    assert r.status_code == 421
    # the server's own origin may act
    r = admin.post("/v1/endpoints/cancer/rollback", headers={"Origin": LOCAL})
    assert r.status_code in (200, 422), r.text


def test_raw_inputs_and_unit_keys_need_the_auditor_role(app: Any, admin: TestClient) -> None:
    """Attack 2: anyone with a token could read every decision's inputs and unit key."""
    r = admin.post(
        "/v1/endpoints/cancer/predict", json=ROW, headers={"X-Chronoml-Unit": "patient-0042"}
    )
    assert r.status_code == 200, r.text
    did = r.json()["decision_ids"][0]
    seen = admin.get(f"/v1/decisions/{did}", headers=token(app, "viewer")).json()
    assert seen["inputs"] is None and seen["unit"] is None and seen["output"] is not None
    assert seen["redacted"]["needs_role"] == "auditor"
    auditor = token(app, "auditor")
    full = admin.get(f"/v1/decisions/{did}", headers=auditor).json()
    assert full["unit"] == "patient-0042" and full["inputs"]["mean radius"] == X.iloc[0, 0]
    reads = admin.get("/v1/audit/reads", params={"decision": did}).json()["reads"]
    assert [r["decision_id"] for r in reads] == [did]
    assert reads[0]["principal"].startswith("token:auditor-")
    # an auditor of other endpoints reads nothing here
    other = token(app, "auditor", endpoints="fraud-*")
    assert admin.get(f"/v1/decisions/{did}", headers=other).status_code == 403


def test_the_ledger_records_the_principal_never_a_header(
    app: Any, admin: TestClient, models: Any
) -> None:
    """Attack 3: the recorded actor came from X-Chronoml-Actor and X-Forwarded-For."""
    op = token(app, "operator")
    r = admin.put(
        "/v1/endpoints/cancer",
        json={"model_uri": f"models:/cancer/{models.linked_v2}", "weight": 10},
        headers={**op, "X-Chronoml-Actor": "alice (CISO)", "X-Forwarded-For": "10.20.30.40"},
    )
    assert r.status_code == 200, r.text
    ev = SL.history(app.state.gateway.cm.store, "cancer")[-1]
    assert ev.actor.startswith("token:operator-") and "alice" not in ev.actor
    assert "10.20.30.40" not in ev.actor


def test_roles_are_separated(app: Any, admin: TestClient) -> None:
    """Attack 3: one shared token did everything."""
    viewer, predictor = token(app, "viewer"), token(app, "predictor")
    assert admin.get("/v1/endpoints/cancer", headers=viewer).status_code == 200
    r = admin.put("/v1/endpoints/cancer", json={"model_uri": "models:/cancer/1"}, headers=viewer)
    assert r.status_code == 403 and "operator" in r.json()["error"]["message"]
    r = admin.post("/v1/endpoints/cancer/predict", json=ROW, headers=viewer)
    assert r.status_code == 403 and "predictor" in r.json()["error"]["message"]
    assert (
        admin.post("/v1/endpoints/cancer/predict", json=ROW, headers=predictor).status_code == 200
    )
    assert admin.get("/v1/endpoints/cancer", headers=predictor).status_code == 403
    assert admin.get("/v1/tokens", headers=token(app, "operator")).status_code == 403


def test_open_predict_records_anonymous_and_nothing_else_opens(
    cm: Any, settings: Any, models: Any
) -> None:
    app = create_app(replace(settings, open_predict=True), cm)
    with admin_client(app) as c:
        c.put("/v1/endpoints/cancer", json={"model_uri": f"models:/cancer/{models.linked_v1}"})
        anyone = TestClient(app, base_url=LOCAL)
        assert anyone.post("/v1/endpoints/cancer/predict", json=ROW).status_code == 200
        assert anyone.get("/v1/endpoints/cancer").status_code == 401


def test_a_revoked_token_is_refused_at_once(app: Any, admin: TestClient) -> None:
    r = admin.post("/v1/tokens", json={"name": "ci", "role": "viewer"})
    assert r.status_code == 201
    secret = r.json()["secret"]
    assert "secret_sha256" not in r.json()["token"]
    ci = {"Authorization": f"Bearer {secret}"}
    assert admin.get("/v1/endpoints/cancer", headers=ci).status_code == 200
    assert admin.delete("/v1/tokens/ci").status_code == 200
    r = admin.get("/v1/endpoints/cancer", headers=ci)
    assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]
    # names are never reused: "token:ci" on the ledger names one token forever
    assert admin.post("/v1/tokens", json={"name": "ci", "role": "admin"}).status_code == 422
    stored = SP.tokens(app.state.gateway.cm.store)
    assert all(secret not in str(row) for row in stored)


def test_secrets_are_given_by_reference_and_never_shown(app: Any, admin: TestClient) -> None:
    """Attack 4: query URLs and webhook URLs came back with their passwords."""
    cfg = {
        "entrypoint": {"kind": "callable", "target": "mod:fn"},
        "data": {"query": "select 1", "query_url": "postgresql://ml:hunter2@db.internal/prod"},
    }
    r = admin.put("/v1/endpoints/cancer/retraining", json=cfg)
    assert r.status_code == 422 and r.json()["error"]["field"] == "query_url"
    cfg["data"]["query_url"] = "postgresql://ml:${PG_PASSWORD}@db.internal/prod"
    r = admin.put("/v1/endpoints/cancer/retraining", json=cfg)
    assert r.status_code == 200, r.text
    shown = admin.get("/v1/endpoints/cancer/retraining", headers=token(app, "viewer")).text
    assert "hunter2" not in shown
    rule = {"metric": "dataset_drift", "op": ">", "threshold": 0.5,
            "actions": [{"type": "webhook", "url": "https://hooks.example.com/x?token=abc123"}]}  # fmt: skip
    r = admin.put("/v1/alerts/drift", json=rule)
    assert r.status_code == 422 and "abc123" not in r.text


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1:5432/",
        "http://localhost:6379/",
        "http://10.0.0.8/hook",
        "http://[::1]:8000/",
        "http://[::ffff:169.254.169.254]/",
    ],
)
def test_webhooks_cannot_reach_this_network(app: Any, admin: TestClient, url: str) -> None:
    """Attack 5: webhooks could target the cloud's metadata service or loopback ports."""
    rule = {"metric": "dataset_drift", "op": ">", "threshold": 0.5,
            "actions": [{"type": "webhook", "url": url}]}  # fmt: skip
    r = admin.put("/v1/alerts/drift", json=rule)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "url" and "--allow-webhook-host" in r.text


def test_delivery_errors_are_shown_to_admins_only(app: Any, admin: TestClient) -> None:
    """Attack 5: the outbox view told anyone each target's connection error (a port scan)."""
    viewer = admin.get("/v1/alerts/outbox", headers=token(app, "viewer")).json()
    assert "errors_redacted" in viewer
    assert "errors_redacted" not in admin.get("/v1/alerts/outbox").json()


def test_every_route_names_its_action(app: Any) -> None:
    from starlette.routing import Route

    from chronoml.gateway.access import Access
    from chronoml.gateway.rules import ACTIONS

    paths = {(sorted(r.methods - {"HEAD"})[0], r.path) for r in app.routes if isinstance(r, Route)}
    assert paths <= set(ACTIONS)
    unguarded = Route("/v1/new-thing", lambda r: None, methods=["POST"])
    with pytest.raises(RuntimeError, match="names no action"):
        Access(app.state.gateway.cm.store, app.state.gateway.settings).guard(unguarded)


def test_the_first_start_writes_a_private_admin_token(cm: Any, settings: Any) -> None:
    path = ensure_admin_token(cm.store, settings.home)
    assert path is not None and path.name == "admin.token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_admin_token(cm.store, settings.home) is None  # once
    secret = path.read_text().strip()
    app = create_app(settings, cm)
    with TestClient(app, base_url=LOCAL, headers={"Authorization": f"Bearer {secret}"}) as c:
        assert c.get("/v1/whoami").json()["actor"] == "token:admin"
    if settings.embedded:
        assert stat.S_IMODE(settings.home.stat().st_mode) == 0o700
        assert stat.S_IMODE((settings.home / "chronoml.db").stat().st_mode) == 0o600


def test_every_request_leaves_one_access_line(
    app: Any, admin: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    import json
    import logging

    with caplog.at_level(logging.INFO, logger="chronoml.access"):
        admin.get("/v1/endpoints/cancer")
        TestClient(app, base_url=LOCAL).post("/v1/endpoints/cancer/predict", json=ROW)
    lines = [json.loads(r.message) for r in caplog.records if r.name == "chronoml.access"]
    assert [(x["method"], x["route"], x["status"]) for x in lines] == [
        ("GET", "/v1/endpoints/{endpoint}", 200),
        ("POST", "/v1/endpoints/{endpoint}/predict", 401),
    ]
    assert lines[0]["principal"].startswith("token:test-admin-")
    assert lines[1]["principal"] == "anonymous"
    assert all(x["latency_ms"] >= 0 and x["time"].endswith("Z") for x in lines)
