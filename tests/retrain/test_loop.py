"""The closed loop end to end, on data that drifts: the alert fires, a job retrains
on a new snapshot, the challenger goes to shadow, the experiment reaches a verdict,
the new version is promoted, and `status --at` answers for a moment in each phase."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from access_support import admin_client
from chronoml.cli.common import cli
from chronoml.gateway.app import create_app
from chronoml.monitor import cards
from chronoml.monitor.alerts import AlertEngine
from chronoml.monitor.experiments import experiment
from chronoml.monitor.scheduler import Monitor
from chronoml.retrain.runner import JobRunner
from chronoml.store import decisions as D
from chronoml.store import jobs as J
from chronoml.store import ledger as SL
from chronoml.store import retrain_configs as RC
from chronoml.timeutil import iso, now_us
from loop_support import Synth, config, deploy_first_version, make_data, predict_rows


@pytest.fixture
def synth(cm: Any, tmp_path: Path) -> Synth:
    return deploy_first_version(cm, tmp_path)


@pytest.fixture
def client(cm: Any, settings: Any) -> Iterator[TestClient]:
    from dataclasses import replace

    # no background passes: the test drives the monitor and the runner itself
    quiet = replace(settings, retrain_interval_s=0, monitor_interval_s=0)
    with admin_client(create_app(quiet, cm)) as c:
        yield c


def _wait_for_shadow_copies(cm: Any, endpoint: str, n: int) -> None:
    from sqlalchemy import func, select

    from chronoml.store import schema

    t, held = schema.decisions, schema.ingest_blocks
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with cm.store.read() as conn:
            got = conn.execute(
                select(func.count()).where(t.c.endpoint == endpoint, t.c.shadow.is_(True))
            ).scalar_one()
            # requests of many rows are logged as ingest blocks
            got += conn.execute(
                select(func.coalesce(func.sum(held.c.rows), 0)).where(
                    held.c.endpoint == endpoint, held.c.shadow.is_(True)
                )
            ).scalar_one()
        if got >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"only {got} of {n} shadow copies were logged")


def _cli(settings: Any, *args: str) -> Any:
    env = {"MLFLOW_TRACKING_URI": settings.tracking_uri, "CHRONOML_STORE": settings.store_url or ""}
    return CliRunner().invoke(cli, ["--home", str(settings.home), *args], env=env)


# Each run trains a model in a child process (MLflow's import alone is 2-4 s here):
# once, on SQLite. PostgreSQL runs the same job steps in test_retrain.py's and
# test_experiments_log.py's parametrised tests, the alert's savepoint included.
@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_drift_alert_retrains_shadows_and_promotes(
    cm: Any, settings: Any, synth: Synth, client: TestClient
) -> None:
    ep = synth.endpoint
    RC.put(cm.store, config(synth))
    engine = AlertEngine(cm.store)
    engine.put(
        {
            "endpoint": ep,
            "metric": "dataset_drift",
            "op": "==",
            "threshold": 1,
            "actions": [{"type": "ledger"}, {"type": "retrain", "job": ep}],
        },
        f"drift-{ep}",
    )
    t_champion = now_us()

    # the world drifts: the champion sees shifted inputs
    drifted = make_data(800, 3, drifted=True)
    predict_rows(client, ep, drifted.iloc[:200], per_request=50)
    fired = Monitor(cm, window_us=3_600_000_000, mirror_to_mlflow=False, alerts=engine).run_once()
    assert fired[0].metrics["dataset_drift"] == 1.0
    [queued] = J.listing(cm.store, ep)
    assert queued.status == "queued" and queued.trigger["rule"] == f"drift-{ep}"
    # the alert's ledger event says what its retrain action did
    alert = next(e for e in SL.history(cm.store, ep) if e.kind == "alert_fired")
    assert f"job {queued.id} queued" in alert.payload["actions"][0]["result"]
    t_alerted = now_us()

    runner = JobRunner(cm, settle_s=0)
    [job] = runner.run_once()
    assert job.status == "evaluating", (job.reason, job.log)
    assert job.snapshot_id is not None and job.model_version is not None
    snap = cm.store.get_snapshot(job.snapshot_id)
    assert snap.rows == 600 and "trained on 600 rows" in (job.log or "")
    v2 = job.model_version
    t_shadow = now_us()
    client.app.state.gateway.live.refresh()  # type: ignore[attr-defined]  # (polled within 0.25 s anyway)

    # the challenger watches the champion's traffic; labels arrive
    ids = predict_rows(client, ep, drifted.iloc[200:], per_request=20)
    _wait_for_shadow_copies(cm, ep, 600)
    truth = drifted["target"].iloc[200:].tolist()
    r = client.post(
        "/v1/feedback",
        json={"labels": [{"decision_id": i, "label": y} for i, y in zip(ids, truth, strict=True)]},
    )
    assert r.status_code == 200, r.text

    [job] = runner.run_once()
    assert job.status == "promoted", (job.reason, job.evaluation)
    ev = job.evaluation
    assert ev is not None
    cmp = ev["comparison"]
    assert cmp["design"] == "shadow" and cmp["verdict"] == "B better"
    assert cmp["control"]["labelled"] == cmp["treatment"]["labelled"] == 600
    assert cmp["treatment"]["estimate"] > 0.9 > 0.7 > cmp["control"]["estimate"]
    t_promoted = now_us()

    # one story on the ledger, each line readable
    hist = cm.history(ep).events
    kinds = [e.event.kind for e in hist]
    assert kinds == [
        "deploy",
        "alert_fired",
        "job_started",
        "job_trained",
        "deploy",
        "experiment_verdict",
        "deploy",
    ]
    lines = [e.summary for e in hist]
    assert f"retraining job {job.id} started: alert drift-{ep}" in lines[2]
    assert f"registered {synth.model} v{v2} trained on snapshot synth" in lines[3]
    assert "shadow" in lines[4] and f"challenger of retraining job {job.id}" in lines[4]
    assert lines[5].startswith(f"experiment verdict for job {job.id}: B better on accuracy")
    assert "always-valid p=" in lines[5] and lines[5].endswith(")")
    assert "as the only variant" in lines[6] and f"promoted by retraining job {job.id}" in lines[6]
    verdict = hist[5].payload
    assert verdict["decision"]["action"] == "promote"
    assert verdict["experiment"]["sequential_method"].startswith("mSPRT")
    assert hist[6].payload["job"]["verdict_seq"] == hist[5].event.seq == job.verdict_seq
    # the promotion wrote the version's model card, live since it joined as the shadow
    assert hist[6].payload["model_card"]["stored"], hist[6].payload["model_card"]
    card = cards.stored_card(cm, ep, v2)
    assert card is not None and card["model"]["version"] == v2
    assert card["live_since"] == hist[4].as_dict()["effective_at"]

    # status --at answers exactly for a moment in each phase
    def live(t: int) -> list[tuple[str, bool]]:
        out = _cli(settings, "status", ep, "--at", iso(t), "--json")
        assert out.exit_code == 0, out.output
        return [(v["model"]["version"], v["shadow"]) for v in json.loads(out.output)["variants"]]

    assert live(t_champion) == [(synth.v1, False)]
    assert live(t_alerted) == [(synth.v1, False)]  # training: nothing changed yet
    assert live(t_shadow) == [(synth.v1, False), (v2, True)]
    assert live(t_promoted) == [(v2, False)]
    # the promoted version's lineage names the job's snapshot
    now = cm.status(ep).variants[0]
    assert now.data_snapshot is not None and now.data_snapshot["id"] == job.snapshot_id

    # `chronoml experiment` over the whole story finds the same numbers the policy used
    rep = experiment(cm.store, ep, t_champion, now_us() + 1)
    [shadowed] = rep["comparisons"]
    assert shadowed["design"] == "shadow" and shadowed["treatment"]["shadow"] is True
    for key in ("effect", "always_valid_p_value", "p_value"):
        assert shadowed[key] == pytest.approx(verdict["experiment"][key])
    assert shadowed["treatment"]["n"] == verdict["experiment"]["treatment"]["n"] == 600
    assert rep["skipped"][0]["reason"] == "never live at the same time as the champion"

    out = _cli(settings, "history", ep)
    assert out.exit_code == 0 and "experiment verdict" in out.output
    out = _cli(settings, "job", str(job.id))
    assert out.exit_code == 0 and "promoted" in out.output and "register" in out.output
    assert D.count(cm.store, ep) == 200 + 600 + 600
    assert SL.verify(cm.store).ok
