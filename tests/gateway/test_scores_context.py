"""Class scores and context in the decision log: what predict and feedback store."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from starlette.testclient import TestClient

from access_support import admin_client
from chronoml.gateway.app import create_app
from chronoml.store import decisions as D
from chronoml.store import outcomes as O

DATA = load_breast_cancer(as_frame=True).frame
X = DATA.drop(columns=["target"])


@pytest.fixture
def client(cm: Any, settings: Any, models: Any) -> Iterator[TestClient]:
    with admin_client(create_app(settings, cm)) as c:
        r = c.put("/v1/endpoints/cancer", json={"model_uri": f"models:/cancer/{models.linked_v2}"})
        assert r.status_code == 200, r.text
        yield c


def _body(rows: pd.DataFrame, **extra: Any) -> dict[str, Any]:
    return {
        "dataframe_split": {"columns": list(rows.columns), "data": rows.values.tolist()},
        **extra,
    }


def test_scores_of_every_class_are_logged(client: TestClient, cm: Any, models: Any) -> None:
    rows = X.iloc[:5]
    r = client.post("/v1/endpoints/cancer/predict", json=_body(rows))
    assert r.status_code == 200, r.text
    ids = r.json()["decision_ids"]
    assert O.classes_of(cm.store, "cancer", models.linked_v2) == [0, 1]
    packed = [D.get(cm.store, i).scores for i in ids]  # type: ignore[union-attr]
    scores = O.unpack_scores(packed, 2)
    assert scores.shape == (5, 2)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0)
    # the label the model answered is the class it scored highest
    assert [int(np.argmax(s)) for s in scores] == r.json()["predictions"]


def test_context_with_predict_in_three_shapes(client: TestClient, cm: Any) -> None:
    rows = X.iloc[:2]
    shapes = [
        ({"sex": "F", "age_band": "30-39"}, [{"sex": "F", "age_band": "30-39"}] * 2),
        ({"sex": ["F", "M"]}, [{"sex": "F"}, {"sex": "M"}]),
        ([{"region": "north"}, {"region": "south", "vip": True}],
         [{"region": "north"}, {"region": "south", "vip": True}]),
    ]  # fmt: skip
    for sent, stored in shapes:
        r = client.post("/v1/endpoints/cancer/predict", json=_body(rows, context=sent))
        assert r.status_code == 200, r.text
        ids = r.json()["decision_ids"]
        got = O.contexts(cm.store, ids)
        assert [got[i] for i in ids] == stored
    # context is not a model input: the answer is the one without it
    plain = client.post("/v1/endpoints/cancer/predict", json=_body(rows)).json()
    assert plain["predictions"] == r.json()["predictions"]


@pytest.mark.parametrize(
    ("context", "field"),
    [
        ("F", "context"),
        ({"sex": {"nested": 1}}, "context.sex"),
        ({"sex": ["F"]}, "context.sex"),
        ({"sex": ["F", "M"], "region": "north"}, "context.region"),
        ([{"sex": "F"}], "context"),
    ],
)
def test_bad_context_is_a_4xx_and_logs_nothing(
    client: TestClient, cm: Any, context: Any, field: str
) -> None:
    before = D.count(cm.store, "cancer")
    r = client.post("/v1/endpoints/cancer/predict", json=_body(X.iloc[:2], context=context))
    assert r.status_code == 400, r.text
    assert r.json()["error"]["field"] == field
    assert D.count(cm.store, "cancer") == before


def test_context_later_with_feedback(client: TestClient, cm: Any) -> None:
    r = client.post(
        "/v1/endpoints/cancer/predict", json=_body(X.iloc[:2], context={"channel": "web"})
    )
    a, b = r.json()["decision_ids"]
    # context alone, then a label with more context: later keys win, the rest stay
    r = client.post("/v1/feedback", json={"decision_id": a, "context": {"sex": "F"}})
    assert r.status_code == 200 and r.json() == {"labelled": 0, "updated": 0, "context": 1}
    r = client.post(
        "/v1/feedback",
        json={
            "labels": [{"decision_id": b, "label": 1, "context": {"sex": "M", "channel": "app"}}]
        },
    )
    assert r.status_code == 200 and r.json()["labelled"] == 1
    got = O.contexts(cm.store, [a, b])
    assert got[a] == {"channel": "web", "sex": "F"}
    assert got[b] == {"channel": "app", "sex": "M"}
    window = O.outcomes(cm.store, "cancer", 0, 2**62)
    by_id = dict(zip(window.ids, window.context, strict=True))
    assert by_id[a] == got[a] and by_id[b] == got[b]
    assert window.labels[window.ids.index(b)] == 1

    r = client.post("/v1/feedback", json={"decision_id": a, "context": {"x": [1]}})
    assert r.status_code == 422 and r.json()["error"]["field"] == "context.x"
    r = client.post("/v1/feedback", json={"decision_id": a})
    assert r.status_code == 422 and r.json()["error"]["field"] == "label"
