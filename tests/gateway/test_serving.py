"""Serving: micro-batching, protocols (MLflow /invocations, Open Inference v2),
isolation of slow and failing models, and decisions that name the version
the ledger had live. Real app, real stores (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import pytest
from sklearn.datasets import load_breast_cancer
from starlette.testclient import TestClient

from access_support import admin_client
from chronoml.gateway.app import create_app
from chronoml.store import decisions as D
from chronoml.store import ledger as SL

X = load_breast_cancer(as_frame=True).frame.drop(columns=["target"])
PREDICT = "/v1/endpoints/cancer/predict"


def split_body(rows: Any) -> dict[str, Any]:
    return {"dataframe_split": {"columns": list(rows.columns), "data": rows.values.tolist()}}


@pytest.fixture
def app_settings(settings: Any) -> Any:
    return replace(settings, default_endpoint="cancer", max_wait_ms=20.0)


@pytest.fixture
def client(cm: Any, app_settings: Any, models: Any) -> Iterator[TestClient]:
    with admin_client(create_app(app_settings, cm)) as c:
        r = c.put("/v1/endpoints/cancer", json={"model_uri": f"models:/cancer/{models.linked_v1}"})
        assert r.status_code == 200, r.text
        yield c


def gateway(c: TestClient) -> Any:
    return c.app.state.gateway  # type: ignore[attr-defined]


# --- micro-batching ----------------------------------------------------------


def test_concurrent_requests_share_a_predict_and_each_gets_its_own_rows(
    client: TestClient, cm: Any
) -> None:
    chunks = [X.iloc[i * 3 : i * 3 + 1 + i % 3] for i in range(24)]
    alone = [client.post(PREDICT, json=split_body(ch)).json()["predictions"] for ch in chunks]
    with ThreadPoolExecutor(12) as pool:
        got = list(pool.map(lambda ch: client.post(PREDICT, json=split_body(ch)).json(), chunks))
    for ch, expected, body in zip(chunks, alone, got, strict=True):
        assert body["predictions"] == expected  # its own rows, in order
        assert len(body["decision_ids"]) == len(ch)
        d = client.get(f"/v1/decisions/{body['decision_ids'][-1]}").json()
        assert d["inputs"] == pytest.approx(ch.iloc[-1].to_dict())
    text = client.get("/metrics").text
    count = _metric(text, 'chronoml_batch_requests_count{endpoint="cancer"')
    total = _metric(text, 'chronoml_batch_requests_sum{endpoint="cancer"')
    assert total == 48 and count < total  # some predict calls served several requests
    assert "chronoml_log_commit_seconds_bucket" in text and "chronoml_log_queue_depth" in text
    assert (
        f'version="{client.get("/v1/endpoints/cancer").json()["variants"][0]["model"]["version"]}"'
        in text
    )


def _metric(text: str, prefix: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)
    )


# --- protocols -------------------------------------------------------------------


def test_invocations_answers_for_the_default_endpoint(
    client: TestClient, cm: Any, settings: Any
) -> None:
    rows = X.iloc[:4]
    ref = client.post(PREDICT, json=split_body(rows)).json()
    # what an MLflow client sends to `mlflow models serve`
    r = client.post("/invocations", json={"dataframe_records": rows.to_dict(orient="records")})
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == ref["predictions"]
    assert client.get("/ping").status_code == 200
    with admin_client(create_app(replace(settings, default_endpoint=None), cm)) as other:
        r = other.post("/invocations", json=split_body(rows))
        assert r.status_code == 404 and "--default-endpoint" in r.json()["error"]["message"]


def test_open_inference_protocol_v2(client: TestClient, cm: Any, models: Any) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").status_code == 200
    meta = client.get("/v2/models/cancer").json()
    assert meta["name"] == "cancer" and meta["versions"] == [f"cancer/{models.linked_v1}"]
    assert [i["name"] for i in meta["inputs"]] == list(X.columns)
    assert client.get("/v2/models/cancer/ready").status_code == 200
    assert client.get("/v2/models/nope").status_code == 404
    rows = X.iloc[10:13]
    expected = client.post(PREDICT, json=split_body(rows)).json()["predictions"]

    # as tritonclient.http sends it: InferInput("input-0", [3, 30], "FP64") with
    # set_data_from_numpy(binary_data=False), one requested output, a request id
    triton = {
        "id": "req-7",
        "inputs": [
            {"name": "input-0", "shape": [3, 30], "datatype": "FP64",
             "data": [float(v) for v in rows.values.flatten()]}
        ],
        "outputs": [{"name": "predict", "parameters": {"binary_data": False}}],
    }  # fmt: skip
    before = D.count(cm.store)
    r = client.post("/v2/models/cancer/infer", json=triton)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["id"] == "req-7" and out["model_name"] == "cancer"
    assert out["model_version"] == f"cancer/{models.linked_v1}"
    assert out["outputs"][0]["name"] == "predict" and out["outputs"][0]["shape"] == [3]
    assert out["outputs"][0]["data"] == expected
    assert len(out["parameters"]["decision_ids"]) == 3
    assert D.count(cm.store) == before + 3

    # as MLServer's pandas codec sends it: one [n, 1] tensor per column
    columns = {
        "parameters": {"content_type": "pd"},
        "inputs": [
            {"name": c, "shape": [3, 1], "datatype": "FP64", "data": rows[c].tolist()}
            for c in X.columns
        ],
    }
    r = client.post("/v2/models/cancer/infer", json=columns)
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == expected

    bad = {
        "inputs": [{"name": "input-0", "shape": [3, 29], "datatype": "FP64", "data": [0.0] * 87}]
    }
    r = client.post("/v2/models/cancer/infer", json=bad)
    assert r.status_code == 400 and "takes 30" in r.json()["error"]
    r = client.post("/v2/models/cancer/infer", json={"inputs": columns["inputs"][1:]})
    assert r.status_code == 422 and "mean radius" in r.json()["error"]
    assert D.count(cm.store) == before + 6  # bad requests log nothing


# --- routing rules at the API --------------------------------------------------------


def test_an_endpoint_with_only_shadows_is_refused(client: TestClient, models: Any) -> None:
    r = client.put(
        "/v1/endpoints/fresh",
        json={"model_uri": f"models:/cancer/{models.linked_v2}", "shadow": True},
    )
    assert r.status_code == 422 and "only shadow variants" in r.json()["error"]["message"]
    r = client.put(
        "/v1/endpoints/cancer",
        json={"model_uri": f"models:/cancer/{models.linked_v1}", "shadow": True},
    )
    assert r.status_code == 422 and "nothing would answer" in r.json()["error"]["message"]
    assert client.post(PREDICT, json=split_body(X.iloc[:1])).status_code == 200


# --- isolation ----------------------------------------------------------------------------


def test_a_slow_or_failing_model_only_fails_its_own_requests(
    cm: Any, app_settings: Any, models: Any
) -> None:
    s = replace(app_settings, predict_timeout_s=1.0, max_wait_ms=0.0)
    with admin_client(create_app(s, cm)) as c:
        for e in ("slow", "broken", "fine"):
            r = c.put(
                f"/v1/endpoints/{e}", json={"model_uri": f"models:/cancer/{models.linked_v1}"}
            )
            assert r.status_code == 200, r.text
        live = gateway(c).live
        release = threading.Event()

        def stuck(df: Any) -> Any:
            release.wait(30)
            raise RuntimeError("gave up")

        def broken(df: Any) -> Any:
            raise ValueError("weights file corrupt")

        # fault injection on the real loaded models of two endpoints
        for e, fn in (("slow", stuck), ("broken", broken)):
            (model,) = live.get(e).models.values()
            live.endpoints[e] = replace(
                live.get(e),
                models={
                    v: replace(model, predict=fn, predict_matrix=None) for v in live.get(e).models
                },
            )
        body = split_body(X.iloc[:2])
        with ThreadPoolExecutor(4) as pool:
            slow = [pool.submit(c.post, "/v1/endpoints/slow/predict", json=body) for _ in range(2)]
            # while the slow model hangs, the other endpoints answer
            assert c.post("/v1/endpoints/fine/predict", json=body).status_code == 200
            r = c.post("/v1/endpoints/broken/predict", json=body)
            assert r.status_code == 500 and "weights file corrupt" in r.json()["error"]["message"]
            assert c.post("/v1/endpoints/fine/predict", json=body).status_code == 200
            assert not any(f.done() and f.result().status_code == 200 for f in slow)
            statuses = [f.result().status_code for f in slow]
            release.set()
        assert statuses == [504, 504]
        assert D.count(cm.store, "broken") == 0 and D.count(cm.store, "slow") == 0


def test_a_request_that_breaks_the_model_does_not_fail_its_batch_mates(
    cm: Any, app_settings: Any, models: Any
) -> None:
    with admin_client(create_app(replace(app_settings, max_wait_ms=50.0), cm)) as c:
        c.put("/v1/endpoints/cancer", json={"model_uri": f"models:/cancer/{models.linked_v1}"})
        live = gateway(c).live
        (name, model) = next(iter(live.get("cancer").models.items()))
        real = model.predict

        def picky(df: Any) -> Any:
            if (df["mean radius"] < 0).any():
                raise ValueError("negative radius")
            return real(df)

        live.endpoints["cancer"] = replace(
            live.get("cancer"), models={name: replace(model, predict=picky, predict_matrix=None)}
        )
        poison = X.iloc[:1].assign(**{"mean radius": -1.0})
        bodies = [split_body(X.iloc[i : i + 1]) for i in range(6)] + [split_body(poison)]
        with ThreadPoolExecutor(7) as pool:
            codes = list(pool.map(lambda b: c.post(PREDICT, json=b).status_code, bodies))
        assert codes == [200] * 6 + [500]


# --- the version that decided was live -------------------------------------------------


def test_every_decision_names_a_version_the_ledger_had_live(
    client: TestClient, cm: Any, models: Any
) -> None:
    v1, v2 = f"cancer-v{models.linked_v1}", f"cancer-v{models.linked_v2}"
    body = split_body(X.iloc[:1])
    stop = threading.Event()

    def traffic(k: int) -> int:
        sent = 0
        while not stop.is_set() and sent < 300:
            r = client.post(PREDICT, json=body, headers={"X-Chronoml-Unit": f"u{k}-{sent}"})
            assert r.status_code == 200, r.text
            sent += 1
        return sent

    with ThreadPoolExecutor(4) as pool:
        futs = [pool.submit(traffic, k) for k in range(4)]
        client.put(
            "/v1/endpoints/cancer",
            json={"model_uri": f"models:/cancer/{models.linked_v2}", "weight": 30},
        )
        client.put("/v1/endpoints/cancer", json={"weights": {v1: 50, v2: 50}})
        client.post("/v1/endpoints/cancer/rollback")
        client.put("/v1/endpoints/cancer", json={"model_uri": f"models:/cancer/{models.linked_v2}"})
        stop.set()
        sent = sum(f.result() for f in futs)
    assert sent > 0
    events = [e for e in SL.history(cm.store, "cancer") if e.sets_state]
    with cm.store.read() as conn:
        rows = conn.exec_driver_sql(
            "SELECT ts, variant, model_version, event_seq FROM decisions WHERE endpoint = 'cancer'"
        ).all()
    assert len(rows) >= sent
    for ts, variant, version, seq in rows:
        # the state it was routed by held that variant at that version ...
        ev = next(e for e in events if e.seq == seq)
        assert (variant, version) in {(v.name, v.model.version) for v in ev.state or ()}
        # ... and was the ledger's live state when the request was routed
        assert ev.effective_at <= ts
        later = [e for e in events if e.effective_at > ev.effective_at]
        assert not later or ts <= later[0].effective_at + 1_000_000  # within the propagation bound
        assert SL.state_at(cm.store, "cancer", ts).seq in {ev.seq, *(e.seq for e in later[:1])}


# --- canaries ---------------------------------------------------------------------------------


def _canary(client: TestClient, models: Any, **guardrails: Any) -> int:
    spec = {
        "model_uri": f"models:/cancer/{models.linked_v2}",
        "canary": {"percent": 50, **guardrails},
    }
    r = client.put("/v1/endpoints/cancer", json=spec)
    assert r.status_code == 200, r.text
    assert "canary: rolled back if" in r.json()["event"]["summary"]
    return int(r.json()["event"]["seq"])


def _inject(client: TestClient, variant: str, fn: Any) -> None:
    live = gateway(client).live
    le = live.get("cancer")
    models = dict(le.models)
    models[variant] = replace(models[variant], predict=fn, predict_matrix=None)
    live.endpoints["cancer"] = replace(le, models=models)


def _drive_until_rollback(client: TestClient, cm: Any, limit: int = 400) -> Any:
    body = split_body(X.iloc[:1])
    for i in range(limit):
        client.post(PREDICT, json=body, headers={"X-Chronoml-Unit": f"unit-{i}"})
        last = SL.history(cm.store, "cancer")[-1]
        if last.kind == "rollback":
            return last
    return SL.history(cm.store, "cancer")[-1]


def test_a_failing_canary_is_rolled_back_with_the_reason(
    client: TestClient, cm: Any, models: Any
) -> None:
    seq = _canary(client, models, max_error_rate=0.2, min_requests=10)
    canary_variant = f"cancer-v{models.linked_v2}"

    def broken(df: Any) -> Any:
        raise RuntimeError("canary bug")

    _inject(client, canary_variant, broken)
    last = _drive_until_rollback(client, cm)
    assert last.kind == "rollback", [e.kind for e in SL.history(cm.store, "cancer")]
    assert (
        last.payload["canary_seq"] == seq and last.payload["guardrail"]["guardrail"] == "error_rate"
    )
    assert "error rate" in last.payload["reason"] and last.actor.startswith("chronoml-guardrail@")
    hist = client.get("/v1/endpoints/cancer/history").json()["events"]
    assert "canary guardrail: error rate" in hist[-1]["summary"]
    # back to the configuration before the canary, here and for every request
    status = client.get("/v1/endpoints/cancer").json()
    assert [v["variant"] for v in status["variants"]] == [f"cancer-v{models.linked_v1}"]
    assert client.post(PREDICT, json=split_body(X.iloc[:1])).status_code == 200
    assert (
        'chronoml_canary_rollbacks_total{endpoint="cancer",guardrail="error_rate"} 1.0'
        in client.get("/metrics").text
    )
    assert client.get("/v1/audit/verify").json()["ok"] is True


def test_a_slow_canary_is_rolled_back_on_p99(client: TestClient, cm: Any, models: Any) -> None:
    _canary(client, models, max_p99_ms=5, min_requests=10)
    canary_variant = f"cancer-v{models.linked_v2}"
    model = gateway(client).live.get("cancer").models[canary_variant]
    real = model.predict

    def slow(df: Any) -> Any:
        threading.Event().wait(0.02)
        return real(df)

    _inject(client, canary_variant, slow)
    last = _drive_until_rollback(client, cm)
    assert last.kind == "rollback" and last.payload["guardrail"]["guardrail"] == "p99_latency"
    assert "p99 latency" in last.payload["reason"]


def test_a_healthy_canary_stays_and_a_stale_rollback_is_refused(
    client: TestClient, cm: Any, models: Any
) -> None:
    from chronoml.domain.canary import Breach
    from chronoml.errors import Refused

    seq = _canary(client, models, min_requests=10)
    body = split_body(X.iloc[:1])
    for i in range(60):
        assert (
            client.post(PREDICT, json=body, headers={"X-Chronoml-Unit": f"u{i}"}).status_code == 200
        )
    assert SL.history(cm.store, "cancer")[-1].seq == seq  # nothing rolled back
    v1, v2 = f"cancer-v{models.linked_v1}", f"cancer-v{models.linked_v2}"
    client.put("/v1/endpoints/cancer", json={"weights": {v1: 0, v2: 100}})  # promoted by hand
    with pytest.raises(Refused, match="no longer the latest change"):
        cm.rollback_canary("cancer", seq, Breach("error_rate", 1.0, 0.02, 10, "late"), "x")


def test_cli_deploys_a_canary(cm: Any, settings: Any, models: Any) -> None:
    from click.testing import CliRunner

    from chronoml.cli.common import cli

    env = {"MLFLOW_TRACKING_URI": settings.tracking_uri, "CHRONOML_STORE": settings.store_url or ""}
    run = CliRunner().invoke
    home = ["--home", str(settings.home)]
    assert (
        run(
            cli, [*home, "deploy", "cancer", f"models:/cancer/{models.linked_v1}"], env=env
        ).exit_code
        == 0
    )
    r = run(
        cli,
        [
            *home,
            "deploy",
            "cancer",
            f"models:/cancer/{models.linked_v2}",
            "--canary",
            "5",
            "--max-p99-ms",
            "100",
        ],
        env=env,
    )
    assert r.exit_code == 0, r.output
    assert "at 5% (canary: rolled back if its error rate exceeds 2.0% or its p99 100 ms" in r.output
    r = run(
        cli,
        [
            *home,
            "deploy",
            "cancer",
            f"models:/cancer/{models.linked_v2}",
            "--canary",
            "5",
            "--weight",
            "5",
        ],
        env=env,
    )
    assert r.exit_code == 1 and "not both" in r.output


@pytest.mark.parametrize(
    ("value", "says"),
    [("1.5", "expected a number, got a string"), (True, "got a boolean"), ([1.0], "got a list")],
)
def test_the_fast_path_refuses_what_the_general_path_refuses(
    client: TestClient, cm: Any, value: Any, says: str
) -> None:
    rows = X.iloc[:2].values.tolist()
    rows[1][3] = value
    before = D.count(cm.store)
    r = client.post(PREDICT, json={"dataframe_split": {"columns": list(X.columns), "data": rows}})
    assert r.status_code == 422 and says in r.json()["error"]["message"], r.text
    assert r.json()["error"]["field"] == X.columns[3]
    r = client.post(PREDICT, json={"instances": rows})
    assert r.status_code == 422 and says in r.json()["error"]["message"]
    assert D.count(cm.store) == before
