"""Explanations, replay, backtests and global importance, through the real app and CLI,
on real models registered with MLflow (scikit-learn and LightGBM flavors)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from click.testing import CliRunner
from sklearn.datasets import load_breast_cancer
from sqlalchemy import select
from starlette.testclient import TestClient

from access_support import admin_client, token_for
from chronoml.cli.common import cli
from chronoml.gateway.app import create_app
from chronoml.ids import block_of
from chronoml.store import decisions as D
from chronoml.store import explanations as SE
from chronoml.store import schema

DATA = load_breast_cancer(as_frame=True).frame
X, Y = DATA.drop(columns=["target"]), DATA["target"]

# Where the store makes no difference to what is tested (the write path of
# ?explain=true, range reads and labels do run on both)
SQLITE_ONLY = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)


@dataclass(frozen=True)
class Extra:
    """Versions registered for these tests only."""

    lgbm: str  # LightGBM through the mlflow.lightgbm flavor, linked to the snapshot
    narrow: str  # a logistic regression on two columns plus one the logs never saw
    xgb: str  # XGBoost's scikit-learn API through the mlflow.xgboost flavor, linked


@pytest.fixture(scope="session")
def extra(models: Any, tmp_path_factory: pytest.TempPathFactory) -> Extra:
    import lightgbm
    import mlflow
    import sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import chronoml
    from chronoml.settings import Settings

    mlflow.set_tracking_uri(models.tracking_uri)
    mlflow.set_registry_uri(models.tracking_uri)
    exp = mlflow.get_experiment_by_name("tests")
    assert exp is not None
    root = tmp_path_factory.mktemp("extra")
    s = Settings.from_env({}, home=root / "home", mlflow_tracking_uri=models.tracking_uri)
    snap = chronoml.snapshot(DATA, name="cancer", settings=s)
    sk_req = [f"scikit-learn=={sklearn.__version__}"]

    def register(flavor: Any, est: Any, name: str, x: pd.DataFrame, reqs: list[str]) -> str:
        """Log ``est`` with ``flavor``, linked to the snapshot; its registered version."""
        with mlflow.start_run(experiment_id=exp.experiment_id):
            chronoml.log_snapshot(snap)
            info = flavor.log_model(
                est,
                name="model",
                registered_model_name=name,
                signature=infer_signature(x.head(), Y.head()),
                pip_requirements=[*reqs, *sk_req],
            )
        return str(info.registered_model_version)

    est = lightgbm.LGBMClassifier(n_estimators=40, num_leaves=8, random_state=0, verbose=-1)
    est.fit(X.to_numpy(), Y.to_numpy())  # on an array: LightGBM would rename columns with spaces
    lgbm = register(mlflow.lightgbm, est, "cancer-lgbm", X, [f"lightgbm=={lightgbm.__version__}"])

    narrow_x = X[["mean radius", "mean texture"]].assign(colour=1.0)
    est = make_pipeline(StandardScaler(), LogisticRegression()).fit(narrow_x, Y)
    narrow = register(mlflow.sklearn, est, "cancer-narrow", narrow_x, [])

    import xgboost

    est = xgboost.XGBClassifier(n_estimators=30, max_depth=3, random_state=0, n_jobs=1)
    est.fit(X, Y)
    xgb = register(mlflow.xgboost, est, "cancer-xgb", X, [f"xgboost=={xgboost.__version__}"])

    return Extra(lgbm, narrow, xgb)


@pytest.fixture
def client(cm: Any, settings: Any) -> Iterator[TestClient]:
    with admin_client(create_app(settings, cm)) as c:
        yield c


def deploy(c: TestClient, uri: str, endpoint: str = "cancer", **kw: Any) -> None:
    r = c.put(f"/v1/endpoints/{endpoint}", json={"model_uri": uri, **kw})
    assert r.status_code == 200, r.text


def predict(
    c: TestClient, rows: pd.DataFrame, endpoint: str = "cancer", explain: bool = False
) -> dict[str, Any]:
    body = {"dataframe_split": {"columns": list(rows.columns), "data": rows.values.tolist()}}
    params = {"explain": "true"} if explain else {}
    r = c.post(f"/v1/endpoints/{endpoint}/predict", json=body, params=params)
    assert r.status_code == 200, r.text
    return dict(r.json())


def cli_run(settings: Any, *args: str) -> Any:
    env = {"MLFLOW_TRACKING_URI": settings.tracking_uri, "CHRONOML_STORE": settings.store_url or ""}
    return CliRunner().invoke(
        cli, ["--home", str(settings.home), *args], env=env, catch_exceptions=False
    )


def adds_up(e: dict[str, Any]) -> float:
    return abs(e["base_value"] + sum(e["contributions"].values()) - e["output_value"])


# --- explanations -----------------------------------------------------------------


def test_tree_explanations_add_up_on_sklearn_and_lightgbm(
    client: TestClient, cm: Any, models: Any, extra: Extra
) -> None:
    import lightgbm
    import mlflow.lightgbm
    import mlflow.sklearn

    from chronoml.explain.explainers import import_shap

    shap = import_shap()  # shap's import warns about matplotlib; this keeps that quiet
    rows = X.iloc[:4]
    deploy(client, f"models:/cancer/{models.linked_v2}")
    deploy(client, f"models:/cancer-lgbm/{extra.lgbm}", endpoint="lgbm")
    gbc = mlflow.sklearn.load_model(f"models:/cancer/{models.linked_v2}")
    lgb = mlflow.lightgbm.load_model(f"models:/cancer-lgbm/{extra.lgbm}")
    assert isinstance(lgb, lightgbm.LGBMClassifier)
    expected = {
        "cancer": gbc.decision_function(rows),  # log-odds of class 1
        "lgbm": lgb.predict(rows.to_numpy(), raw_score=True),
    }
    for endpoint, margin in expected.items():
        body = predict(client, rows, endpoint, explain=True)
        exps = body["explanations"]
        assert [e["decision_id"] for e in exps] == body["decision_ids"]
        for e, want in zip(exps, margin, strict=True):
            assert e["explainer"] == "shap.TreeExplainer"
            assert e["output_scale"] == "log_odds" and e["class"] == 1
            assert e["output_value"] == pytest.approx(want, abs=1e-9)
            assert adds_up(e) <= 1e-6
            assert e["background"]["method"] == "tree_path_dependent"
            assert e["background"]["snapshot_id"] == models.snapshot_id
            assert list(e["contributions"]) == list(X.columns)
        # stored with the decision, in the same shape
        did = body["decision_ids"][2]
        got = client.get(f"/v1/decisions/{did}/explanation").json()
        assert got["contributions"] == exps[2]["contributions"]
        assert client.get(f"/v1/decisions/{did}").json()["explanation"] == got
    # LightGBM: the values are what shap.TreeExplainer itself computes
    sv = np.asarray(shap.TreeExplainer(lgb)(rows.to_numpy()).values)
    assert np.allclose(sv[0], list(exps[0]["contributions"].values()), atol=1e-12)


def test_tree_explanations_add_up_on_xgboost(client: TestClient, cm: Any, extra: Extra) -> None:
    import mlflow.xgboost
    import xgboost

    from chronoml.explain.explainers import import_shap

    shap = import_shap()
    rows = X.iloc[10:15]
    deploy(client, f"models:/cancer-xgb/{extra.xgb}", endpoint="xgb")
    est = mlflow.xgboost.load_model(f"models:/cancer-xgb/{extra.xgb}")
    assert isinstance(est, xgboost.XGBClassifier)
    margin = est.predict(rows, output_margin=True)
    body = predict(client, rows, "xgb", explain=True)
    exps = body["explanations"]
    assert len(exps) == len(rows)
    for e, want in zip(exps, margin, strict=True):
        assert e["explainer"] == "shap.TreeExplainer"
        assert e["output_scale"] == "log_odds" and e["class"] == 1
        assert e["output_value"] == pytest.approx(float(want), abs=1e-5)
        assert adds_up(e) <= 1e-6
        assert list(e["contributions"]) == list(X.columns)
    sv = np.asarray(shap.TreeExplainer(est)(rows).values)
    assert np.allclose(sv[-1], list(exps[-1]["contributions"].values()), atol=1e-9)
    # the stored explanation is the one returned, and the lineage carries it
    stored = client.get(f"/v1/decisions/{body['decision_ids'][0]}/explanation").json()
    assert stored["contributions"] == exps[0]["contributions"]


@SQLITE_ONLY
def test_model_agnostic_explanation_draws_background_from_the_training_snapshot(
    client: TestClient, cm: Any, models: Any
) -> None:
    import mlflow.sklearn

    from chronoml.store import snapshots

    snapshots.take(cm.store, DATA, "cancer")  # the version's training data, in this store
    deploy(client, f"models:/cancer/{models.linked_v1}")  # a pipeline: not a tree model
    body = predict(client, X.iloc[10:12], explain=True)
    pipe = mlflow.sklearn.load_model(f"models:/cancer/{models.linked_v1}")
    proba = pipe.predict_proba(X.iloc[10:12])[:, 1]
    for e, p in zip(body["explanations"], proba, strict=True):
        assert e["explainer"] == "shap.PermutationExplainer"
        assert e["output_scale"] == "probability" and e["class"] == 1
        assert e["output_value"] == pytest.approx(p, abs=1e-12)
        assert adds_up(e) <= 1e-6
        bg = e["background"]
        assert bg["method"] == "interventional" and bg["snapshot_id"] == models.snapshot_id
        assert bg["rows"] == 100 and len(bg["sample"]) == 100 and bg["seed"] == 0
        assert "not explainable with shap.TreeExplainer" in e["note"]
        assert "Pipeline" in e["note"]
    # a decision logged without ?explain=true is explained on request, the same way
    other = predict(client, X.iloc[10:11])["decision_ids"][0]
    got = client.get(f"/v1/decisions/{other}/explanation").json()
    assert got["contributions"] == body["explanations"][0]["contributions"]
    assert SE.get(cm.store, other) is not None


@SQLITE_ONLY
def test_unexplainable_requests_log_nothing(client: TestClient, cm: Any, models: Any) -> None:
    deploy(client, f"models:/cancer/{models.unlinked_v3}", allow_unlinked_data=True)
    before = D.count(cm.store)
    body = {"dataframe_split": {"columns": list(X.columns), "data": X.iloc[:1].values.tolist()}}
    r = client.post("/v1/endpoints/cancer/predict", json=body, params={"explain": "true"})
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "not_explainable" and err["field"] == "explain"
    assert "not explainable with shap.TreeExplainer" in err["message"]
    assert "not linked to a data snapshot" in err["message"]
    r = client.post("/v1/endpoints/cancer/predict", json=body, params={"explain": "maybe"})
    assert r.status_code == 400 and r.json()["error"]["field"] == "explain"
    assert D.count(cm.store) == before
    did = predict(client, X.iloc[:1])["decision_ids"][0]
    r = client.get(f"/v1/decisions/{did}/explanation")
    assert r.status_code == 422 and "not linked to a data snapshot" in r.text
    assert "explanation" not in client.get(f"/v1/decisions/{did}").json()
    r = client.get("/v1/decisions/0190aaaa-0000-7000-8000-000000000000/explanation")
    assert r.status_code == 404


@SQLITE_ONLY
def test_cli_decision_explain_and_replay(client: TestClient, settings: Any, models: Any) -> None:
    deploy(client, f"models:/cancer/{models.linked_v2}")
    did = predict(client, X.iloc[3:4])["decision_ids"][0]
    r = cli_run(settings, "decision", did, "--explain", "--replay")
    assert r.exit_code == 0, r.output
    assert "explained shap.TreeExplainer on the log_odds scale (class 1)" in r.output
    assert "replay    identical" in r.output and "digest checked" in r.output
    r = cli_run(settings, "decision", did, "--explain", "--json")
    d = json.loads(r.output)
    assert d["explanation"]["decision_id"] == did and adds_up(d["explanation"]) <= 1e-6


# --- artifacts that are not what was deployed ---------------------------------------


@SQLITE_ONLY
def test_tampered_artifact_is_detected(
    client: TestClient, cm: Any, settings: Any, models: Any
) -> None:
    deploy(client, f"models:/cancer/{models.linked_v2}")
    did = predict(client, X.iloc[:1])["decision_ids"][0]
    digest = client.get(f"/v1/decisions/{did}").json()["model"]["artifact_digest"]
    folder = cm.registry.archive_root / digest.split(":", 1)[1]
    victim = next(p for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "MLmodel")
    victim.chmod(0o644)
    with open(victim, "ab") as f:
        f.write(b"\0")
    for r in (
        client.get(f"/v1/decisions/{did}/explanation"),
        client.post(f"/v1/decisions/{did}/replay"),
    ):
        assert r.status_code == 409, r.text
        err = r.json()["error"]
        assert err["code"] == "artifact_tampered" and digest in err["message"]
        assert "fails its digest check" in err["message"]
    assert SE.get(cm.store, did) is None  # never an explanation from other bytes
    r = cli_run(settings, "decision", did, "--replay")
    assert r.exit_code == 1 and digest in r.output and "digest check" in r.output
    r = cli_run(settings, "replay", "cancer")
    assert r.exit_code == 1 and "1 unverifiable" in r.output and digest in r.output


@SQLITE_ONLY
def test_missing_artifact_is_named(client: TestClient, cm: Any, models: Any) -> None:
    import mlflow
    import sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    with mlflow.start_run(experiment_id=mlflow.get_experiment_by_name("tests").experiment_id):
        info = mlflow.sklearn.log_model(
            make_pipeline(StandardScaler(), LogisticRegression()).fit(X, Y),
            name="model",
            registered_model_name="doomed",  # a version of its own: its files get deleted
            signature=infer_signature(X.head(), Y.head()),
            pip_requirements=[f"scikit-learn=={sklearn.__version__}"],
        )
    uri = f"models:/doomed/{info.registered_model_version}"
    deploy(client, uri, endpoint="doomed", allow_unlinked_data=True)
    did = predict(client, X.iloc[:1], endpoint="doomed")["decision_ids"][0]
    digest = client.get(f"/v1/decisions/{did}").json()["model"]["artifact_digest"]
    shutil.rmtree(cm.registry.archive_root / digest.split(":", 1)[1])
    shutil.rmtree(_local(info))
    r = client.post(f"/v1/decisions/{did}/replay")
    assert r.status_code == 410, r.text
    err = r.json()["error"]
    assert err["code"] == "artifact_missing" and digest in err["message"]


def _local(info: Any) -> str:
    """Where MLflow keeps a logged model's files (a file:// store here)."""
    import mlflow

    loc = mlflow.MlflowClient().get_logged_model(info.model_id).artifact_location
    return str(loc).removeprefix("file://")


# --- replay ---------------------------------------------------------------------------


def test_batch_replay_finds_an_altered_output(
    client: TestClient, cm: Any, settings: Any, models: Any
) -> None:
    deploy(client, f"models:/cancer/{models.linked_v1}")
    ids = predict(client, X.iloc[:20])["decision_ids"]
    ids += predict(client, X.iloc[20:30])["decision_ids"]
    r = client.post("/v1/endpoints/cancer/replay", json={"window": "1h"})
    assert r.status_code == 200, r.text
    rep = r.json()
    assert rep["checked"] == 30 and rep["identical"] == 30 and rep["all_identical"] is True
    # 20 rows: logged as one ingest block, whose outputs are a JSON list of texts
    where = block_of(ids[7])
    assert where is not None
    IB = schema.ingest_blocks
    with cm.store.engine.begin() as conn:
        q = select(IB.c.outputs).where(IB.c.id == where[0])
        texts = orjson.loads(conn.execute(q).scalar_one())
        texts[where[1]] = "0.5"
        conn.execute(
            IB.update().where(IB.c.id == where[0]).values(outputs=orjson.dumps(texts).decode())
        )
    rep = client.post("/v1/endpoints/cancer/replay", json={}).json()
    assert (rep["identical"], rep["different"]) == (29, 1)
    ex = rep["examples"][0]
    assert ex["decision_id"] == ids[7] and ex["original"] == 0.5
    assert ex["difference"] == pytest.approx(ex["replayed"] - 0.5)
    r = cli_run(settings, "replay", "cancer", "--sample", "5", "--json")
    assert r.exit_code in (0, 1) and json.loads(r.output)["checked"] == 5
    r = cli_run(settings, "replay", "cancer")
    assert r.exit_code == 1 and "NOT ALL IDENTICAL" in r.output and ids[7] in r.output
    r = cli_run(settings, "replay", "cancer", "--from", "2001-01-01", "--to", "2001-01-02")
    assert r.exit_code == 0 and "no decisions in this range" in r.output
    r = client.post("/v1/endpoints/cancer/replay", json={"from": "yesterday"})
    assert r.status_code == 400 and r.json()["error"]["field"] == "from"
    assert client.post("/v1/endpoints/ghost/replay", json={}).status_code == 404


# --- backtest ---------------------------------------------------------------------------


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}"


def test_backtest_against_a_hand_computed_result(
    client: TestClient, cm: Any, settings: Any, models: Any, extra: Extra
) -> None:
    import mlflow.sklearn

    deploy(client, f"models:/cancer/{models.linked_v1}")
    predict(client, X.iloc[100:105])  # before the range
    time.sleep(0.01)
    t1 = time.time()
    rows = X.iloc[:40]
    logged = predict(client, rows.iloc[:25])
    logged2 = predict(client, rows.iloc[25:])
    t2 = time.time()
    time.sleep(0.01)
    predict(client, X.iloc[200:203])  # after it
    ids = logged["decision_ids"] + logged2["decision_ids"]
    served = logged["predictions"] + logged2["predictions"]
    labelled = {ids[i]: int(Y.iloc[i]) for i in range(0, 40, 3)}  # 14 labels
    r = client.post(
        "/v1/feedback",
        json={"labels": [{"decision_id": d, "label": v} for d, v in labelled.items()]},
    )
    assert r.status_code == 200, r.text
    candidate = mlflow.sklearn.load_model(f"models:/cancer/{models.linked_v2}").predict(rows)

    # by hand
    n_changed = sum(int(a != b) for a, b in zip(served, candidate, strict=True))
    share_served_1 = sum(served) / 40
    share_cand_1 = sum(candidate) / 40
    tv = abs(share_served_1 - share_cand_1)  # two classes: half the sum is this
    pos = [i for i in range(40) if ids[i] in labelled]
    acc_served = sum(served[i] == Y.iloc[i] for i in pos) / len(pos)
    acc_cand = sum(candidate[i] == Y.iloc[i] for i in pos) / len(pos)

    before = D.count(cm.store)
    r = cli_run(
        settings, "backtest", "cancer", f"models:/cancer/{models.linked_v2}",
        "--from", _iso(t1), "--to", _iso(t2), "--json",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert rep["window"]["rows"] == 40 and rep["empty"] is False
    assert rep["changed"]["rows"] == n_changed
    assert rep["changed"]["share"] == pytest.approx(n_changed / 40)
    out = rep["outputs"]
    assert out["kind"] == "categorical"
    assert out["logged"].get("1", 0) == pytest.approx(share_served_1)
    assert out["candidate"].get("1", 0) == pytest.approx(share_cand_1)
    assert out["total_variation"] == pytest.approx(tv)
    q = rep["quality"]
    assert q["labelled"] == 14 and q["metric"] == "accuracy"
    assert q["logged"] == pytest.approx(acc_served) and q["candidate"] == pytest.approx(acc_cand)
    assert D.count(cm.store) == before  # nothing written to the decision log

    # the same through the API; an empty range is an empty report
    r = client.post(
        "/v1/endpoints/cancer/backtest",
        json={"model_uri": f"models:/cancer/{models.linked_v2}", "from": _iso(t1), "to": _iso(t2)},
    )
    assert r.status_code == 200 and r.json()["changed"] == rep["changed"]
    r = cli_run(
        settings, "backtest", "cancer", f"models:/cancer/{models.linked_v2}",
        "--from", "2001-01-01", "--to", "2001-01-02",
    )  # fmt: skip
    assert r.exit_code == 0 and "no decisions in this range" in r.output
    # bad input
    r = client.post(
        "/v1/endpoints/cancer/backtest",
        json={"model_uri": f"models:/cancer-narrow/{extra.narrow}", "from": _iso(t1)},
    )
    assert r.status_code == 422 and "'colour'" in r.json()["error"]["message"]
    r = client.post("/v1/endpoints/cancer/backtest", json={"model_uri": "models:/nope/1"})
    assert r.status_code == 404
    r = client.post("/v1/endpoints/cancer/backtest", json={"from": _iso(t1)})
    assert r.status_code == 422 and r.json()["error"]["field"] == "model_uri"


# --- global importance --------------------------------------------------------------


@SQLITE_ONLY
def test_global_importance_per_version(
    client: TestClient, cm: Any, settings: Any, models: Any, tmp_path: Path
) -> None:
    import mlflow.sklearn

    from chronoml.explain.explainers import import_shap

    shap = import_shap()
    deploy(client, f"models:/cancer/{models.linked_v2}")
    rows = X.iloc[:30]
    predict(client, rows)
    rep = client.get("/v1/endpoints/cancer/importance", params={"window": "1h"}).json()
    (v,) = rep["versions"]
    assert v["model"]["version"] == models.linked_v2 and v["rows"] == 30 and v["sampled"] == 30
    gbc = mlflow.sklearn.load_model(f"models:/cancer/{models.linked_v2}")
    want = np.abs(shap.TreeExplainer(gbc).shap_values(rows.to_numpy())).mean(axis=0)
    got = {f["feature"]: f["mean_abs_shap"] for f in v["features"]}
    assert [got[c] for c in X.columns] == pytest.approx(list(want), abs=1e-9)
    assert [f["mean_abs_shap"] for f in v["features"]] == sorted(got.values(), reverse=True)

    r = client.get("/v1/endpoints/cancer/importance", params={"sample": "10", "format": "html"})
    assert r.status_code == 200 and "<svg" in r.text
    assert "<script" not in r.text and "src=" not in r.text and "href=" not in r.text
    html = tmp_path / "imp.html"
    r = cli_run(settings, "importance", "cancer", "--sample", "10", "--html", str(html))
    assert r.exit_code == 0, r.output
    assert "10 explained with shap.TreeExplainer" in r.output and "<svg" in html.read_text()
    assert client.get("/v1/endpoints/cancer/importance", params={"to": "x"}).status_code == 400


# --- replay across a server restart (real processes) ------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Server:
    def __init__(self, env: dict[str, str]) -> None:
        import httpx

        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "chronoml.cli", "server", "--port", str(self.port),
             "--log-level", "warning"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.time() + 60
        while True:
            try:
                if httpx.get(f"{self.base}/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert self.proc.poll() is None, self.proc.stdout.read().decode()  # type: ignore[union-attr]
            assert time.time() < deadline, "server did not start"
            time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(15)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.mark.slow
def test_replay_is_identical_across_a_server_restart(
    tmp_path: Path, models: Any, extra: Extra
) -> None:
    import httpx

    from chronoml.service import Chronoml
    from chronoml.settings import Settings

    home = tmp_path / "home"
    settings = Settings.from_env({}, home=home, mlflow_tracking_uri=models.tracking_uri)
    # the first server: in this process; it decides, then shuts down
    cm = Chronoml.open(settings)
    try:
        with admin_client(create_app(settings, cm)) as c:
            deploy(c, f"models:/cancer-lgbm/{extra.lgbm}", endpoint="lgbm")
            first = predict(c, X.iloc[:6], endpoint="lgbm")
    finally:
        cm.close()
    # the second: a new process, so nothing of the first one's memory is left
    env = {
        **os.environ,
        "CHRONOML_HOME": str(home),
        "MLFLOW_TRACKING_URI": models.tracking_uri,
        "CHRONOML_STORE": "",
    }
    auditor = token_for(settings, "auditor")
    server = _Server(env)
    try:
        for did, out in zip(first["decision_ids"], first["predictions"], strict=True):
            rep = httpx.post(f"{server.base}/v1/decisions/{did}/replay", headers=auditor).json()
            assert rep["identical"] is True and rep["replayed"] == out, rep
            assert rep["model"]["version"] == extra.lgbm and rep["model"]["digest_verified"]
    finally:
        server.stop()
    r = cli_run(settings, "replay", "lgbm")
    assert r.exit_code == 0 and "ALL IDENTICAL" in r.output, r.output
