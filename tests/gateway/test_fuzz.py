"""The spec and the server agree, and no input the spec allows (or breaks) gives a 5xx.

schemathesis generates requests from ``/openapi.json`` for every operation and
sends them, as an admin, to a real server on loopback; every answer must be
below 500 and every 4xx in the one error shape. Bounded to stay well under two
minutes on two cores.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.routing import Route

from chronoml.auth.access import create_token
from chronoml.gateway import openapi
from chronoml.gateway.app import create_app
from chronoml.gateway.server import BackgroundServer

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is a dev dependency")
hypothesis = pytest.importorskip("hypothesis")

EXAMPLES = 12  # per operation: about 47 operations, a minute in all


def test_every_route_is_in_the_spec_and_every_spec_route_exists(cm: Any, settings: Any) -> None:
    app = create_app(settings, cm)
    served = {
        (m, r.path)
        for r in app.routes
        if isinstance(r, Route)
        for m in (r.methods or ()) - {"HEAD"}
    }
    doc = openapi.spec("test")
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert served == documented
    assert doc["openapi"] == "3.1.0"


@pytest.fixture
def server(cm: Any, settings: Any, models: Any) -> Iterator[tuple[str, dict[str, str]]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cm.deploy("cancer", f"models:/cancer/{models.linked_v1}")
    srv = BackgroundServer(cm, "127.0.0.1", port)
    srv.start()
    secret, _ = create_token(cm.store, "fuzzer", "admin", by="tests")
    try:
        yield f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {secret}"}
    finally:
        srv.stop()


@pytest.mark.slow
@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_no_input_gives_a_5xx(server: tuple[str, dict[str, str]]) -> None:
    base, auth = server
    schema = schemathesis.openapi.from_dict(openapi.spec("fuzz"))
    failures: list[str] = []
    for result in schema.get_all_operations():
        op = result.ok()
        if op.path in ("/v1/endpoints/{endpoint}/retire", "/v1/tokens/{name}"):
            continue  # would take the fuzzer's own endpoint and token away mid-run

        @hypothesis.settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(hypothesis.HealthCheck),
        )
        @hypothesis.given(case=op.as_strategy())
        def check(case: Any) -> None:
            r = case.call(base_url=base, headers=auth, timeout=30)
            if r.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path}: {r.status_code} {r.text[:200]}"
                )
            elif r.status_code >= 400:
                body = r.json()
                err = body.get("error")
                ok = (isinstance(err, str) or case.path.endswith("/ready")) if case.path.startswith("/v2/") else (
                    isinstance(err, dict) and {"code", "message"} <= set(err)
                )  # fmt: skip
                if not ok:
                    failures.append(
                        f"{case.method} {case.formatted_path}: bad error {r.text[:200]}"
                    )

        check()
    assert failures == [], "\n".join(failures)


KNOWN = [
    ("PUT", "/v1/endpoints/cancer", {"model_uri": "models:/cancer/1", "variant": 7}, None),
    ("POST", "/v1/feedback", {"decision_id": "x", "label": 1, "time": 12}, None),
    ("PUT", "/v1/endpoints/cancer/retraining", {"entrypoint": 3, "data": {}}, None),
    ("PUT", "/v1/endpoints/cancer/retraining", {"entrypoint": {}, "data": "x"}, None),
    ("GET", "/v1/endpoints/cancer/drift", None, {"window": "1e400h"}),
    ("GET", "/v1/endpoints/cancer/quality", None, {"to": "99999-01-01T00:00:00"}),
    ("GET", "/v1/endpoints/cancer/drift", None, {"from": "9999-12-31T23:59:59"}),
    ("GET", "/v1/jobs", None, {"limit": str(2**70)}),
    ("GET", "/v1/endpoints/cancer/experiment", None, {"min_samples": str(2**70)}),
    ("GET", "/v1/endpoints/cancer/importance", None, {"sample": str(10**12)}),
    ("POST", "/v1/endpoints/cancer/replay", {"sample": 2**70}, None),
]


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_the_inputs_that_gave_5xx_get_a_4xx_naming_them(
    server: tuple[str, dict[str, str]],
) -> None:
    import httpx

    base, auth = server
    with httpx.Client(base_url=base, headers=auth, timeout=60) as c:
        for method, path, body, params in KNOWN:
            r = c.request(method, path, json=body, params=params)
            assert 400 <= r.status_code < 500, (method, path, body, params, r.text)
            assert {"code", "message"} <= set(r.json()["error"]), r.text
        big = b'{"labels": [' + b'{"decision_id": "x", "label": 1},' * 600_000 + b"]}"
        r = c.post("/v1/feedback", content=big, headers={"Content-Type": "application/json"})
        assert r.status_code == 413
