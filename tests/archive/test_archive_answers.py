"""Every reader answers the same after its decisions moved to an S3-compatible store."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
from sklearn.datasets import load_breast_cancer

from access_support import admin_client
from chronoml.archive import run
from chronoml.domain.archive import parse_target
from chronoml.evidence import audit
from chronoml.gateway.app import create_app
from chronoml.gateway.views.ui_charts import compare, endpoint_charts
from chronoml.monitor.drift_grid import DriftGrid
from chronoml.monitor.timeline import Timeline
from chronoml.store import archive as SA
from chronoml.store import decisions as D
from chronoml.timeutil import iso, now_us

X = load_breast_cancer(as_frame=True).frame.drop(columns=["target"])


def _answers(c: Any, ep: str, ids: list[str], span: dict[str, str], models: Any) -> dict[str, Any]:
    got: dict[str, Any] = {}
    for i in ids:
        got[f"decision {i}"] = c.get(f"/v1/decisions/{i}").json()
        proof = c.get(f"/v1/decisions/{i}/proof").json()
        got[f"proof {i}"] = (proof["leaf"], proof["leaf_hash"], proof["batch"])
        got[f"replay {i}"] = c.post(f"/v1/decisions/{i}/replay").json()
        got[f"ui {i}"] = c.get(f"/ui/decisions/{i}").text
    got["drift"] = c.get(f"/v1/endpoints/{ep}/drift", params=span).json()
    got["quality"] = c.get(f"/v1/endpoints/{ep}/quality", params=span).json()
    got["experiment"] = c.get(
        f"/v1/endpoints/{ep}/experiment", params={**span, "min_samples": "5"}
    ).json()
    got["range replay"] = c.post(f"/v1/endpoints/{ep}/replay", json=span).json()
    got["backtest"] = c.post(
        f"/v1/endpoints/{ep}/backtest",
        json={**span, "model_uri": f"models:/cancer/{models.linked_v2}"},
    ).json()
    for k in ("range replay", "backtest"):
        got[k].pop("seconds", None)  # how long it took
    return got


def _charts(cm: Any, ep: str, start: int, end: int, versions: tuple[str, str]) -> dict[str, Any]:
    """The endpoint page's charts and the version comparison, read afresh (no cache kept
    from an earlier view, as after a restart)."""
    tl, grid = Timeline(cm.store), DriftGrid(cm.store, cm.layouts)
    return {
        "charts": endpoint_charts(tl, grid, ep, [], start, end),
        "compare": compare(tl, grid, ep, *versions, start, end),
    }


def test_answers_are_the_same_after_archiving_to_s3(
    cm: Any, settings: Any, models: Any, s3_server: Any, s3_keys: dict[str, str]
) -> None:
    ep = f"arch-{uuid.uuid4().hex[:8]}"
    t0 = now_us()
    with admin_client(create_app(settings, cm)) as c:
        c.put(f"/v1/endpoints/{ep}", json={"model_uri": f"models:/cancer/{models.linked_v1}"})
        ids: list[str] = []
        for k in range(4):
            rows = X.iloc[k * 40 : (k + 1) * 40] * (1.0 + 0.2 * k)
            body = {"dataframe_split": {"columns": list(X.columns), "data": rows.values.tolist()}}
            ids += c.post(f"/v1/endpoints/{ep}/predict", json=body).json()["decision_ids"]
        c.put(
            f"/v1/endpoints/{ep}",
            json={"model_uri": f"models:/cancer/{models.linked_v2}", "weight": 50},
        )
        for k in range(40):
            row = X.iloc[[200 + k]]
            body = {"dataframe_split": {"columns": list(X.columns), "data": row.values.tolist()}}
            r = c.post(
                f"/v1/endpoints/{ep}/predict", json=body, headers={"X-Chronoml-Unit": f"u{k}"}
            )
            ids += r.json()["decision_ids"]
        rng = np.random.default_rng(1)
        labels = [{"decision_id": i, "label": int(rng.integers(0, 2))} for i in ids[::2]]
        assert c.post("/v1/feedback", json={"labels": labels}).status_code == 200
        span = {"from": iso(t0 - 1), "to": iso(now_us() + 1)}
        picked = [ids[0], ids[77], ids[-1]]
        before = _answers(c, ep, picked, span, models)
        assert before["drift"]["window"]["rows"] == 200
        t1 = now_us() + 1
        versions = (models.linked_v1, models.linked_v2)
        charts = _charts(cm, ep, t0 - 1, t1, versions)
        series = charts["charts"]["series"]
        assert sum(series["requests"]) == 200 and sum(series["labelled"]) == 100

        target = parse_target(
            f"s3://{s3_server.bucket}/{ep}",
            endpoint_url=s3_server.endpoint_url,
            access_key="${CHRONOML_TEST_S3_KEY}",
            secret_key="${CHRONOML_TEST_S3_SECRET}",
        )
        result = run(cm, now_us() + 1, target, settle_us=0)
        assert result.rows == 200 and ep in result.endpoints
        row = next(e for e in SA.status(cm.store)["endpoints"] if e["endpoint"] == ep)
        assert row["live_decisions"] == 0 and row["archived_decisions"] == 200
        # the files are in the bucket, named by their digests; no key is stored
        listed = s3_server.client().list_objects_v2(Bucket=s3_server.bucket, Prefix=f"{ep}/")
        assert len(listed["Contents"]) == row["files"]
        with cm.store.read() as conn:
            stored = " ".join(
                conn.exec_driver_sql("SELECT target FROM archive_files").scalars().all()
            )
        assert (
            s3_keys["CHRONOML_TEST_S3_SECRET"] not in stored
            and "${CHRONOML_TEST_S3_SECRET}" in stored
        )

        after = _answers(c, ep, picked, span, models)
        for k, v in before.items():
            assert after[k] == v, k
        # the UI's charts of the archived span: traffic, latency, quality and drift
        assert _charts(cm, ep, t0 - 1, t1, versions) == charts
        # a label for an archived decision is still accepted, and counts
        late = [{"decision_id": ids[1], "label": 1}]
        assert c.post("/v1/feedback", json={"labels": late}).status_code == 200
        assert c.get(f"/ui/endpoints/{ep}").status_code == 200
        assert D.recent_ids(cm.store, ep, 5) == list(reversed(ids))[:5]
    report = audit.verify(cm.store, decisions=True)
    assert report.ok, report.reason
