"""The web UI's pages through the ASGI app: redirects, the session cookie, roles, no outside URLs."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from sklearn.datasets import load_breast_cancer
from sqlalchemy import text, update
from starlette.testclient import TestClient

from access_support import admin_client
from chronoml.auth.access import create_token
from chronoml.gateway.app import create_app
from chronoml.store.schema import ledger_events
from chronoml.timeutil import iso, now_us

X = load_breast_cancer(as_frame=True).frame.drop(columns=["target"])
# any absolute URL in a src, href or url(): the UI must load nothing from elsewhere
EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//|url\(\s*["']?(?:https?:)?//""")


def _setup(c: TestClient, models: Any) -> str:
    for v in (models.linked_v1, models.linked_v2):
        body: dict[str, Any] = {"model_uri": f"models:/cancer/{v}"}
        if v == models.linked_v2:
            body["weight"] = 30
        assert c.put("/v1/endpoints/cancer", json=body).status_code == 200
    rows = X.iloc[:2]
    split = {"columns": list(rows.columns), "data": rows.values.tolist()}
    r = c.post("/v1/endpoints/cancer/predict", json={"dataframe_split": split})
    return str(r.json()["decision_ids"][0])


def test_pages_cookie_and_no_external_urls(cm: Any, settings: Any, models: Any) -> None:
    app = create_app(settings, cm)
    with admin_client(app) as c:
        decision = _setup(c, models)
        pages = ["/ui/", "/ui/endpoints/cancer", f"/ui/decisions/{decision}", "/ui/audit",
                 "/ui/jobs", "/ui/login"]  # fmt: skip
        for path in pages:
            r = c.get(path)
            assert r.status_code == 200, (path, r.text[:200])
            assert "text/html" in r.headers["content-type"]
            assert not EXTERNAL.search(r.text), (path, EXTERNAL.search(r.text))
        assert c.get("/ui/static/uPlot.iife.min.js").status_code == 200
        assert c.get("/ui/static/nope.js").status_code == 404
        assert "Inputs" in c.get(f"/ui/decisions/{decision}").text
        assert c.get("/ui/endpoints/cancer", params={"at": "yesterday-ish"}).status_code == 400
        assert c.get("/ui/endpoints/ghost").status_code == 404
    with TestClient(app, base_url="http://127.0.0.1", follow_redirects=False) as anon:
        r = anon.get("/")
        assert r.status_code == 307 and r.headers["location"] == "/ui/"
        r = anon.get("/ui/endpoints/cancer?at=2026-01-01")
        assert r.status_code == 303
        assert r.headers["location"] == "/ui/login?next=/ui/endpoints/cancer%3Fat%3D2026-01-01"
        assert anon.get("/v1/endpoints").status_code == 401  # the API answers, it does not redirect
        bad = anon.post("/ui/login", json={"token": "cml_nope"})
        assert bad.status_code == 401 and "set-cookie" not in bad.headers
        viewer, _ = create_token(cm.store, "ui-viewer", "viewer", by="tests")
        ok = anon.post("/ui/login", json={"token": viewer, "next": "https://evil.example/"})
        assert ok.status_code == 200 and ok.json()["next"] == "/ui/"
        cookie = ok.headers["set-cookie"]
        assert "chronoml_session=" in cookie and "HttpOnly" in cookie
        assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
        # the cookie alone now authenticates, pages and API alike, with the viewer's role
        assert anon.get("/v1/endpoints").status_code == 200
        page = anon.get(f"/ui/decisions/{decision}").text
        assert "seeing inputs needs the auditor role" in page
        assert anon.get("/ui/audit").status_code == 403


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_audit_marks_the_first_bad_event(cm: Any, settings: Any, models: Any) -> None:
    app = create_app(settings, cm)
    with admin_client(app) as c:
        _setup(c, models)
        with cm.store.engine.begin() as conn:
            # a tamperer with the file: the append-only triggers go first
            names = conn.execute(
                text("SELECT name FROM sqlite_master WHERE type = 'trigger'")
            ).scalars()
            for name in list(names):
                conn.execute(text(f'DROP TRIGGER "{name}"'))
            conn.execute(
                update(ledger_events).where(ledger_events.c.seq == 2).values(actor="mallory")
            )
        page = c.get("/ui/audit").text
    assert "BROKEN" in page and 'href="#event-2">#2</a>' in page
    row = re.search(r'<tr id="event-2" class="bad"><td>#2 <strong>first bad</strong>', page)
    assert row, page


def _charts(page: str) -> dict[str, Any]:
    m = re.search(r'<script type="application/json" id="charts-data">(.*?)</script>', page, re.S)
    assert m, page[:300]
    return dict(json.loads(m.group(1)))


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_quality_as_of_shows_only_labels_sent_by_then(cm: Any, settings: Any, models: Any) -> None:
    app = create_app(settings, cm)
    with admin_client(app) as c:
        assert (
            c.put(
                "/v1/endpoints/cancer", json={"model_uri": f"models:/cancer/{models.linked_v1}"}
            ).status_code
            == 200
        )
        rows = X.iloc[:3]
        split = {"columns": list(rows.columns), "data": rows.values.tolist()}
        ids = c.post("/v1/endpoints/cancer/predict", json={"dataframe_split": split}).json()[
            "decision_ids"
        ]
        outputs = [c.get(f"/v1/decisions/{i}").json()["output"] for i in ids]
        # one right label, then the time T of the bookmark
        assert (
            c.post("/v1/feedback", json={"decision_id": ids[0], "label": outputs[0]}).status_code
            < 300
        )
        time.sleep(0.01)
        at = iso(now_us())
        time.sleep(0.01)
        # a view now reads the labels so far (a server's state after a page was shown)
        assert sum(_charts(c.get("/ui/endpoints/cancer").text)["series"]["labelled"]) == 1
        # after T: the first decision relabelled wrong, two more labelled
        for i, y in ((ids[0], 1 - outputs[0]), (ids[1], outputs[1]), (ids[2], 1 - outputs[2])):
            body = {"decision_id": i, "label": y, "update": i == ids[0]}
            assert c.post("/v1/feedback", json=body).status_code < 300
        then = _charts(c.get("/ui/endpoints/cancer", params={"at": at}).text)["series"]
        now = _charts(c.get("/ui/endpoints/cancer").text)["series"]
    assert sum(then["labelled"]) == 1
    assert [q for q in then["quality"] if q is not None] == [1.0]
    assert sum(now["labelled"]) == 3
    assert [q for q in now["quality"] if q is not None] == [pytest.approx(1 / 3)]


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_chart_libraries_are_served_compressed_from_the_package(cm: Any, settings: Any) -> None:
    static = Path(__file__).resolve().parents[2] / "src" / "chronoml" / "gateway" / "static"
    app = create_app(settings, cm)
    with admin_client(app) as c:
        for name in ("chart.umd.min.js", "chartjs-chart-matrix.min.js", "uPlot.iife.min.js"):
            raw = c.get(f"/ui/static/{name}", headers={"Accept-Encoding": "identity"})
            assert raw.status_code == 200 and "content-encoding" not in raw.headers
            assert raw.content == (static / name).read_bytes()
            assert raw.headers["content-type"].startswith("text/javascript")
            packed = c.get(f"/ui/static/{name}", headers={"Accept-Encoding": "gzip"})
            assert packed.headers["content-encoding"] == "gzip"
            assert packed.content == raw.content  # the client inflated it
            assert int(packed.headers["content-length"]) < len(raw.content) / 2
