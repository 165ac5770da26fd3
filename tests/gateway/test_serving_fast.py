"""The raw ASGI path for predict and /invocations answers exactly as the routed
views do, and models are called on a float matrix only where that predicts
what the frame would. Real app, real stores, real MLflow models."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from starlette.testclient import TestClient

from access_support import admin_client
from chronoml.gateway.app import create_app
from chronoml.gateway.fast import GatewayApp
from chronoml.registry.models import matrix_predictor
from chronoml.store import decisions as D

X = load_breast_cancer(as_frame=True).frame.drop(columns=["target"])
PREDICT = "/v1/endpoints/cancer/predict"
# a query with more than ?explain= sends a request through Starlette's router:
# the routed view
ROUTED = PREDICT + "?explain=false&via=router"


def split_body(rows: Any) -> dict[str, Any]:
    return {"dataframe_split": {"columns": list(rows.columns), "data": rows.values.tolist()}}


@pytest.fixture
def client(cm: Any, settings: Any, models: Any) -> Iterator[TestClient]:
    small = replace(settings, max_rows=50, max_body_bytes=200_000, default_endpoint="cancer")
    with admin_client(create_app(small, cm)) as c:
        r = c.put("/v1/endpoints/cancer", json={"model_uri": f"models:/cancer/{models.linked_v1}"})
        assert r.status_code == 200, r.text
        yield c


def _bad_requests() -> list[tuple[str, dict[str, Any]]]:
    wrong = X.iloc[:2].values.tolist()
    wrong[1][3] = "1.5"
    return [
        ("not json", {"content": b"{nope", "headers": {"content-type": "application/json"}}),
        ("no format", {"json": {"rows": []}}),
        ("missing column", {"json": split_body(X.iloc[:2, 1:])}),
        ("a string", {"json": {"dataframe_split": {"columns": list(X.columns), "data": wrong}}}),
        ("too many rows", {"json": split_body(X.iloc[:51])}),
        ("declared too large", {"content": b"{" + b" " * 250_000 + b"}"}),
        ("streamed too large", {"content": iter([b"{" + b" " * 150_000] * 2)}),
    ]


@pytest.mark.parametrize(("what", "request_kw"), _bad_requests(), ids=lambda v: str(v)[:20])
def test_the_raw_path_refuses_as_the_routed_view_does(
    client: TestClient, cm: Any, what: str, request_kw: dict[str, Any]
) -> None:
    before = D.count(cm.store)
    kw = dict(request_kw)
    if isinstance(kw.get("content"), Iterator):
        chunks = list(kw["content"])
        raw = client.post(PREDICT, **{**kw, "content": iter(chunks)})
        routed = client.post(ROUTED, **{**kw, "content": iter(chunks)})
    else:
        raw = client.post(PREDICT, **kw)
        routed = client.post(ROUTED, **kw)
    assert 400 <= raw.status_code < 500, (what, raw.text)
    assert (raw.status_code, raw.json()) == (routed.status_code, routed.json())
    assert raw.headers["content-type"] == routed.headers["content-type"] == "application/json"
    assert D.count(cm.store) == before  # bad input never writes a decision


@pytest.mark.parametrize("flag", ["true", "TRUE", "false", "", "maybe"])
def test_explain_is_read_alike_on_the_raw_path_and_the_routed_view(
    client: TestClient, models: Any, flag: str
) -> None:
    # gradient boosting: explained by the tree explainer, no training data needed
    r = client.put("/v1/endpoints/trees", json={"model_uri": f"models:/cancer/{models.linked_v2}"})
    assert r.status_code == 200, r.text
    body = split_body(X.iloc[:2])
    path = "/v1/endpoints/trees/predict"
    raw = client.post(f"{path}?explain={flag}", json=body)
    routed = client.post(f"{path}?explain={flag}&via=router", json=body)
    assert raw.status_code == routed.status_code, (raw.text, routed.text)
    if raw.status_code != 200:
        assert flag == "maybe" and raw.status_code == 400
        assert raw.json() == routed.json()
        return
    got_raw, got_routed = raw.json(), routed.json()
    assert ("explanations" in got_raw) == ("explanations" in got_routed) == (flag.lower() == "true")
    if flag.lower() == "true":
        contributions = [e["contributions"] for e in got_raw["explanations"]]
        assert contributions == [e["contributions"] for e in got_routed["explanations"]]
        stored = client.get(f"/v1/decisions/{got_raw['decision_ids'][1]}/explanation")
        assert stored.json()["contributions"] == contributions[1]


def test_unknown_and_empty_endpoints_and_invocations(
    cm: Any, settings: Any, client: TestClient
) -> None:
    assert isinstance(client.app, GatewayApp)
    raw = client.post("/v1/endpoints/nope/predict", json={})
    routed = client.post("/v1/endpoints/nope/predict?a=1", json={})
    assert raw.status_code == routed.status_code == 404
    assert raw.json() == routed.json()
    # /invocations answers for the default endpoint on the raw path too
    r = client.post("/invocations", json=split_body(X.iloc[:3]))
    assert r.status_code == 200 and len(r.json()["predictions"]) == 3
    client.post("/v1/endpoints/cancer/retire")
    raw, routed = client.post(PREDICT, json={}), client.post(ROUTED, json={})
    assert raw.status_code == routed.status_code == 409
    assert raw.json() == routed.json()
    with admin_client(create_app(replace(settings, default_endpoint=None), cm)) as other:
        raw, routed = other.post("/invocations", json={}), other.post("/invocations?x=1", json={})
        assert raw.status_code == routed.status_code == 404
        assert raw.json() == routed.json()
        assert raw.json()["error"]["code"] == "no_default_endpoint"


def test_rows_come_back_in_order_and_every_decision_is_logged(
    client: TestClient, cm: Any, models: Any
) -> None:
    import mlflow.sklearn

    rows = X.iloc[10:40]
    expected = mlflow.sklearn.load_model(f"models:/cancer/{models.linked_v1}").predict(rows)
    before = D.count(cm.store, "cancer")
    for body in (split_body(rows), {"instances": rows.values.tolist()}):
        r = client.post(PREDICT, json=body, headers={"X-Chronoml-Unit": "u-7"})
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["predictions"] == expected.tolist()
        assert len(set(got["decision_ids"])) == len(rows)
        for i in (0, len(rows) - 1):
            d = client.get(f"/v1/decisions/{got['decision_ids'][i]}").json()
            assert d["inputs"] == pytest.approx(rows.iloc[i].to_dict())
            assert d["unit"] == "u-7"
    assert D.count(cm.store, "cancer") == before + 2 * len(rows)
    # the same answer as the routed view, ids aside
    raw, routed = (
        client.post(PREDICT, json=split_body(rows)),
        client.post(ROUTED, json=split_body(rows)),
    )
    a, b = raw.json(), routed.json()
    assert a.pop("decision_ids") != b.pop("decision_ids")
    assert a == b
    text = client.get("/metrics").text
    assert 'chronoml_requests_total{endpoint="cancer"' in text and 'status="200"' in text


def test_a_served_pipeline_is_called_on_the_matrix(client: TestClient) -> None:
    live = client.app.state.gateway.live  # type: ignore[attr-defined]
    (model,) = live.get("cancer").models.values()
    assert model.predict_matrix is not None
    rows = X.iloc[:64]
    assert model.predict_matrix(rows.to_numpy()).tolist() == model.predict(rows).tolist()


def _schema(columns: Any) -> tuple[tuple[str, str], ...]:
    return tuple((str(c), "float") for c in columns)


def test_the_matrix_is_used_only_where_it_predicts_what_the_frame_does() -> None:
    y = load_breast_cancer().target
    cols = list(X.columns[:5])
    frame = X[cols]
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(frame, y)
    fast = matrix_predictor(pipe, _schema(cols))
    assert fast is not None
    assert fast(frame.to_numpy()).tolist() == pipe.predict(frame).tolist()
    assert pipe.feature_names_in_.tolist() == cols  # the served model itself is unchanged
    # another column order, a non-double input, a selection by name: the frame stays
    assert matrix_predictor(pipe, _schema(cols[::-1])) is None
    assert matrix_predictor(pipe, (*_schema(cols[:-1]), (cols[-1], "int"))) is None
    by_name = make_pipeline(
        ColumnTransformer([("scaled", StandardScaler(), cols[:3])]), LogisticRegression()
    ).fit(frame, y)
    assert matrix_predictor(by_name, _schema(cols)) is None
    # fitted on a bare array: it takes one as is
    bare = LogisticRegression(max_iter=500).fit(frame.to_numpy(), y)
    got = matrix_predictor(bare, _schema(cols))
    assert got is not None
    assert np.array_equal(got(frame.to_numpy()), bare.predict(frame.to_numpy()))
