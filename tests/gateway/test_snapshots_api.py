"""GET /v1/snapshots and /v1/snapshots/{ref} through the real app, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from sklearn.datasets import load_breast_cancer

from access_support import admin_client
from chronoml.gateway.app import create_app
from chronoml.store import snapshots as snapshot_store


def test_snapshots_are_listed_and_shown_with_their_runs_and_endpoints(
    cm: Any, settings: Any, models: Any
) -> None:
    # the same data gives the same id the session's versions are linked to
    data = load_breast_cancer(as_frame=True).frame
    snap = snapshot_store.take(cm.store, data, "cancer", actor="ann")
    assert snap.id == models.snapshot_id
    cm.deploy("cancer", f"models:/cancer/{models.linked_v1}")
    with admin_client(create_app(settings, cm)) as c:
        r = c.get("/v1/snapshots", params={"name": "cancer"})
        assert r.status_code == 200, r.text
        assert [s["id"] for s in r.json()["snapshots"]] == [snap.id]
        assert r.json()["snapshots"][0]["taken_by"] == "ann"

        r = c.get("/v1/snapshots/" + quote("cancer@latest"))
        assert r.status_code == 200, r.text
        d = r.json()
        assert d["id"] == snap.id and d["rows"] == len(data)
        assert len(d["columns"]) == data.shape[1]
        linked = {v["version"] for run in d["runs"] for v in run["versions"]}
        assert {models.linked_v1, models.linked_v2} <= linked
        assert models.unlinked_v3 not in linked
        assert [e["endpoint"] for e in d["endpoints"]] == ["cancer"]
        assert d["endpoints"][0]["model"]["version"] == models.linked_v1

        r = c.get("/v1/snapshots/" + quote("cancer@2001-01-01"))
        assert r.status_code == 404
        assert r.json()["error"]["field"] == "ref"
        r = c.get("/v1/snapshots/cancer")
        assert r.status_code == 422
        assert "NAME@latest" in r.json()["error"]["message"]
