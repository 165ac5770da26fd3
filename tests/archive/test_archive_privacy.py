"""Privacy and lookups of archived decisions: context sent later is under the endpoint's
policy, and the newest decisions are listed whatever files hold them."""

from __future__ import annotations

import uuid
from typing import Any

from archive_support import log
from sklearn.datasets import load_breast_cancer

from access_support import admin_client
from chronoml.archive import run
from chronoml.domain.archive import parse_target
from chronoml.gateway.app import create_app
from chronoml.store import archive as SA
from chronoml.store import decisions as D
from chronoml.store import outcomes as O
from chronoml.timeutil import now_us

X = load_breast_cancer(as_frame=True).frame.drop(columns=["target"])


def test_context_sent_for_an_archived_decision_is_under_the_endpoint_policy(
    cm: Any, settings: Any, models: Any, tmp_path: Any
) -> None:
    ep = f"priv-{uuid.uuid4().hex[:8]}"
    with admin_client(create_app(settings, cm)) as c:
        c.put(f"/v1/endpoints/{ep}", json={"model_uri": f"models:/cancer/{models.linked_v1}"})
        r = c.put(f"/v1/endpoints/{ep}/privacy", json={"context": {"ssn": "drop", "zip": "hash"}})
        assert r.status_code == 200, r.text
        ids = []
        for k in range(2):
            body = {
                "dataframe_split": {"columns": list(X.columns), "data": [X.iloc[k].tolist()]},
                "context": {"ch": "web", "ssn": "987-65-4321"},
            }
            ids += c.post(f"/v1/endpoints/{ep}/predict", json=body).json()["decision_ids"]
        old, new = ids
        # the first one is archived before its context arrives
        got = run(cm, now_us() + 1, parse_target(f"file://{tmp_path / 'objects'}"), settle_us=0)
        assert got.rows == 2
        sent = {"ssn": "123-45-6789", "zip": "01500", "tier": "gold"}
        for did in (old, new):
            r = c.post("/v1/feedback", json={"decision_id": did, "label": 1, "context": sent})
            assert r.status_code == 200, r.text
    stored = O.contexts(cm.store, [old, new])
    for did in (old, new):
        ctx = stored[did]
        assert "ssn" not in ctx and ctx["tier"] == "gold" and ctx["ch"] == "web", ctx
        assert ctx["zip"] != "01500", ctx  # hashed
    assert stored[old] == stored[new]
    w = D.window(cm.store, cm.layouts, ep, 0, 10**18, with_context=True)
    assert w.context is not None and all("ssn" not in x for x in w.context)


def test_the_newest_decisions_are_listed_from_every_file_that_holds_them(
    store: Any, tmp_path: Any
) -> None:
    layouts = D.Layouts(store)
    log(store, layouts, 300, 1_000_000, "a")
    log(store, layouts, 100, 1_000_005, "b")  # interleaved in time with the first
    before = [D.recent_ids(store, "e", n) for n in (10, 300, 400, 500)]
    assert [len(b) for b in before] == [10, 300, 400, 400]
    target = parse_target(f"file://{tmp_path / 'objects'}")
    got = SA.archive(store, layouts, 10**9, target, settle_us=0, chunk_rows=50)
    assert got.files >= 8
    assert [D.recent_ids(store, "e", n) for n in (10, 300, 400, 500)] == before
