"""Scheduled monitoring: results stored per window and mirrored to MLflow."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from click.testing import CliRunner
from mlflow.tracking import MlflowClient
from sklearn.datasets import load_breast_cancer

from access_support import admin_client
from chronoml.cli.common import cli
from chronoml.gateway.app import create_app
from chronoml.monitor.scheduler import MONITORING_EXPERIMENT, Monitor
from chronoml.store import snapshots
from chronoml.timeutil import now_us

DATA = load_breast_cancer(as_frame=True).frame
X = DATA.drop(columns=["target"])


def test_monitoring_pass_stores_and_mirrors(cm: Any, settings: Any, models: Any) -> None:
    # the session's MLflow store is shared by the SQLite and PostgreSQL runs of
    # this test: a name of its own keeps their monitoring runs apart
    ep = f"cancer-{uuid.uuid4().hex[:8]}"
    snapshots.take(cm.store, DATA, "cancer")
    with admin_client(create_app(settings, cm)) as c:
        c.put(f"/v1/endpoints/{ep}", json={"model_uri": f"models:/cancer/{models.linked_v1}"})
        body = {
            "dataframe_split": {
                "columns": list(X.columns),
                "data": (X.iloc[:200] * 1.5).values.tolist(),
            }
        }
        ids = c.post(f"/v1/endpoints/{ep}/predict", json=body).json()["decision_ids"]
        c.post("/v1/feedback", json={"labels": [{"decision_id": i, "label": 1} for i in ids[:50]]})

        monitor = Monitor(cm, interval_s=60, window_us=3_600_000_000)
        end = now_us() + 1
        results = monitor.run_once(end)
        assert len(results) == 1
        m = results[0].metrics
        assert m["decisions"] == 200 and m["dataset_drift"] == 1.0
        assert m["label_coverage"] == 0.25 and 0 <= m["quality:accuracy"] <= 1
        assert m["latency_p99_ms"] >= m["latency_p50_ms"] > 0
        assert "drift:mean radius" in m

        monitor.run_once(end + 60_000_000)  # the next window
        hist = c.get(f"/v1/endpoints/{ep}/monitoring", params={"metric": "drifted_share"}).json()[
            "results"
        ]
        assert len(hist) == 2 and hist[0]["window"]["to"] < hist[1]["window"]["to"]
        assert c.get("/v1/endpoints/ghost/monitoring").status_code == 404

    client = MlflowClient(settings.tracking_uri)
    exp = client.get_experiment_by_name(MONITORING_EXPERIMENT)
    runs = client.search_runs(
        [exp.experiment_id], filter_string=f"tags.`chronoml.endpoint` = '{ep}'"
    )
    assert len(runs) == 1  # one monitoring run per endpoint, variant and version
    points = client.get_metric_history(runs[0].info.run_id, "drifted_share")
    assert len(points) == 2
    assert [p.timestamp for p in points] == [end // 1000, (end + 60_000_000) // 1000]
    assert points[1].step > points[0].step
    assert client.get_metric_history(runs[0].info.run_id, "drift/mean radius")

    env = {"MLFLOW_TRACKING_URI": settings.tracking_uri, "CHRONOML_STORE": settings.store_url or ""}
    out = CliRunner().invoke(
        cli,
        [
            "--home",
            str(settings.home),
            "monitor",
            "history",
            ep,
            "--metric",
            "dataset_drift",
            "--json",
        ],
        env=env,
    )
    assert out.exit_code == 0 and [r["value"] for r in json.loads(out.output)] == [1.0, 1.0]
    out = CliRunner().invoke(
        cli, ["--home", str(settings.home), "monitor", "run", "--no-mlflow"], env=env
    )
    assert out.exit_code == 0 and ep in out.output


def test_a_monitoring_pass_fires_alert_rules_on_their_own_window(
    cm: Any, settings: Any, models: Any
) -> None:
    from chronoml.monitor.alerts import AlertEngine

    snapshots.take(cm.store, DATA, "cancer")
    engine = AlertEngine(cm.store)
    engine.put(
        {
            "name": "cancer-drift",
            "endpoint": "cancer",
            "metric": "dataset_drift",
            "op": ">=",
            "threshold": 1,
            "window": "30m",
            "actions": [{"type": "ledger"}],
        }
    )
    with admin_client(create_app(settings, cm)) as c:
        c.put("/v1/endpoints/cancer", json={"model_uri": f"models:/cancer/{models.linked_v1}"})
        body = {
            "dataframe_split": {
                "columns": list(X.columns),
                "data": (X.iloc[:100] * 1.5).values.tolist(),
            }
        }
        assert c.post("/v1/endpoints/cancer/predict", json=body).status_code == 200
        Monitor(cm, window_us=3_600_000_000, mirror_to_mlflow=False, alerts=engine).run_once()
        kinds = [e["kind"] for e in c.get("/v1/endpoints/cancer/history").json()["events"]]
    assert kinds == ["deploy", "alert_fired"]


def test_one_process_monitors_a_store_and_a_dead_leader_frees_it(
    cm: Any, settings: Any, tmp_path: Any
) -> None:
    import subprocess
    import sys

    from chronoml.monitor.leader import Leadership
    from chronoml.store import Store

    other = Store.open(settings.database_url, settings.home)
    try:
        first, second = Leadership(cm.store), Leadership(other)
        assert first.held() and first.held()  # and it stays held
        assert not second.held()
        first.release()
        assert second.held() and not first.held()
        second.release()

        # a leader that dies (kill -9) leaves the lead free: the OS or the database drops it
        script = (
            "import sys, time\n"
            "from pathlib import Path\n"
            "from chronoml.store import Store\n"
            "from chronoml.monitor.leader import Leadership\n"
            "lead = Leadership(Store.open(sys.argv[1], Path(sys.argv[2])))\n"
            "print(lead.held(), flush=True)\n"
            "time.sleep(60)\n"
        )
        with subprocess.Popen(
            [sys.executable, "-c", script, settings.database_url, str(settings.home)],
            stdout=subprocess.PIPE,
            text=True,
        ) as proc:
            try:
                assert proc.stdout is not None and proc.stdout.readline().strip() == "True"
                assert not first.held()
            finally:
                proc.kill()
        deadline = time.monotonic() + 10  # PostgreSQL notices the closed socket at once
        while not first.held() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first.held()
        first.release()
    finally:
        other.close()


def test_the_scheduled_monitor_runs_only_while_it_leads(cm: Any) -> None:
    from chronoml.monitor.leader import Leadership

    passes: list[int] = []
    monitor = Monitor(cm, interval_s=0.05, mirror_to_mlflow=False)
    monitor.run_once = lambda now=None: passes.append(1) or []  # type: ignore[method-assign]
    rival = Leadership(cm.store)
    assert rival.held()
    monitor.start()
    try:
        time.sleep(0.5)  # about ten intervals, each of them led by the rival
        assert passes == []
        rival.release()
        deadline = time.monotonic() + 10
        while not passes and time.monotonic() < deadline:
            time.sleep(0.05)
        assert passes
    finally:
        monitor.stop()
    after = Leadership(cm.store)
    assert after.held()  # stop() let go of it
    after.release()
