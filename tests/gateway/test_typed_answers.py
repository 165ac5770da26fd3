"""The facade's monitoring and privacy answers are typed values whose ``as_dict()`` is the
REST body, byte for byte."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from starlette.testclient import TestClient

from access_support import admin_client
from chronoml.domain import reports as MR
from chronoml.domain import results as R
from chronoml.domain.drift import DriftReport
from chronoml.gateway.app import create_app
from chronoml.gateway.responses import JSON
from chronoml.store import snapshots
from chronoml.timeutil import iso, now_us, parse_time

DATA = load_breast_cancer(as_frame=True).frame
X, Y = DATA.drop(columns=["target"]), DATA["target"]


@pytest.fixture
def client(cm: Any, settings: Any, models: Any) -> Iterator[TestClient]:
    snapshots.take(cm.store, DATA, "cancer")  # the training data: a reference profile
    with admin_client(create_app(settings, cm)) as c:
        r = c.put("/v1/endpoints/cancer", json={"model_uri": f"models:/cancer/{models.linked_v2}"})
        assert r.status_code == 200, r.text
        yield c


def _served(c: TestClient, lo: int, hi: int) -> list[str]:
    rows = X.iloc[lo:hi]
    sex = np.random.default_rng(lo).choice(["F", "M"], size=len(rows)).tolist()
    body = {
        "dataframe_split": {"columns": list(rows.columns), "data": rows.values.tolist()},
        "context": {"sex": sex},
    }
    r = c.post("/v1/endpoints/cancer/predict", json=body)
    assert r.status_code == 200, r.text
    ids = list(r.json()["decision_ids"])
    labels = [{"decision_id": d, "label": int(Y.iloc[lo + i])} for i, d in enumerate(ids)]
    assert c.post("/v1/feedback", json={"labels": labels}).status_code == 200
    return ids


def _same_body(got: Any, response: Any) -> None:
    assert response.status_code == 200, response.text
    assert JSON(got.as_dict()).body == response.content


def test_monitoring_answers_are_typed_and_their_json_is_the_rest_body(
    client: TestClient, cm: Any
) -> None:
    start = now_us()
    ref_ids = _served(client, 0, 300)
    ref_end = parse_time(client.get(f"/v1/decisions/{ref_ids[-1]}").json()["time"]) + 1
    _served(client, 300, 569)
    end = now_us() + 1
    window = {"from": iso(start), "to": iso(end)}

    drift = cm.drift("cancer", start=start, end=end)
    assert isinstance(drift, MR.EndpointDrift)
    [v] = drift.variants
    assert isinstance(v, MR.VariantDrift) and isinstance(v.report, DriftReport)
    assert drift.main is v and v.rows == drift.window.rows == 569
    d = drift.as_dict()
    assert d["dataset_drift"] is drift.dataset_drift and d["drifted_share"] == drift.drifted_share
    assert [f["feature"] for f in d["features"]] == [f.feature for f in drift.features]
    assert d["variants"][0]["model"] == {"name": "cancer", "version": v.model.version}
    _same_body(drift, client.get("/v1/endpoints/cancer/drift", params=window))
    sliced = cm.drift("cancer", start=start, end=end, by="sex")
    assert sliced.variants[0].by is not None and sliced.variants[0].by["attribute"] == "sex"
    _same_body(sliced, client.get("/v1/endpoints/cancer/drift", params={**window, "by": "sex"}))

    quality = cm.quality("cancer", start=start, end=end)
    assert isinstance(quality, MR.QualityReport)
    q = quality.variant(v.variant)
    assert (q.decisions, q.labelled, q.label_coverage) == (569, 569, 1.0)
    assert q.metrics["task"] == "classification" and q.by is None
    _same_body(quality, client.get("/v1/endpoints/cancer/quality", params=window))
    by_sex = cm.quality("cancer", start=start, end=end, by="sex")
    assert by_sex.variants[0].by is not None
    _same_body(by_sex, client.get("/v1/endpoints/cancer/quality", params={**window, "by": "sex"}))

    fair = cm.fairness("cancer", "sex", start=start, end=end)
    assert isinstance(fair, MR.FairnessReport)
    assert fair.attribute == "sex" and fair.model == MR.ModelId("cancer", v.model.version)
    assert fair.as_dict()["disparities"] == fair.disparities and fair.other_versions == ()
    _same_body(
        fair, client.get("/v1/endpoints/cancer/fairness", params={**window, "attribute": "sex"})
    )

    later = parse_time(client.get(f"/v1/decisions/{ref_ids[-1]}").json()["time"]) + 1
    est = cm.estimated_quality(
        "cancer", start=later, end=end, reference_start=start, reference_end=ref_end
    )
    assert isinstance(est, MR.EstimatedQuality)
    [e] = est.variants
    assert isinstance(e.estimate, MR.VersionEstimate) and e.estimate.reference.rows == 300
    assert e.estimate.method["method"] == "cbpe" and 0 <= e.estimate.value("accuracy") <= 1
    params = {
        "estimate": "true",
        "from": iso(later),
        "to": iso(end),
        "reference_from": iso(start),
        "reference_to": iso(ref_end),
    }
    _same_body(est, client.get("/v1/endpoints/cancer/quality", params=params))


def test_privacy_answers_are_typed_and_their_json_is_the_rest_body(
    client: TestClient, cm: Any
) -> None:
    never = cm.privacy("cancer")
    assert isinstance(never, R.PrivacyPolicy) and never.set_at is None
    assert list(never.as_dict()) == [
        "endpoint",
        "features",
        "context",
        "unit_key",
        "set_at",
        "set_by",
    ]
    _same_body(never, client.get("/v1/endpoints/cancer/privacy"))

    r = client.put("/v1/endpoints/cancer/privacy", json={"context": {"email": "drop"}})
    assert r.status_code == 200, r.text
    shown = cm.privacy("cancer")
    assert shown.policy.context == {"email": "drop"} and shown.event_seq is not None
    assert r.json() == shown.as_dict()
    _same_body(shown, client.get("/v1/endpoints/cancer/privacy"))

    _served(client, 0, 5)
    erased = cm.erase("nobody-at-all")
    assert isinstance(erased, R.Erasure) and erased.decisions == 0
    assert erased.as_dict()["erased_at"] == iso(erased.erased_at)
    kept = cm.enforce_retention(10**15)
    assert isinstance(kept, R.Retention) and kept.decisions == 0 and kept.endpoints == {}
