"""Retraining jobs: configuration, one job per endpoint, entrypoints that fail, hang or
register nothing, restarts mid-job, canary + manual approval, holdout validation."""

from __future__ import annotations

import getpass
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from access_support import admin_client
from chronoml.cli.common import cli
from chronoml.domain.challenger import Policy, PolicyError
from chronoml.gateway.app import create_app
from chronoml.monitor.alerts import AlertEngine
from chronoml.retrain import entrypoint as EP
from chronoml.retrain.runner import JobRunner
from chronoml.store import jobs as J
from chronoml.store import ledger as SL
from chronoml.store import retrain_configs as RC
from chronoml.timeutil import now_us
from loop_support import Synth, config, deploy_first_version, make_data, predict_rows


@pytest.fixture
def synth(cm: Any, tmp_path: Path) -> Synth:
    return deploy_first_version(cm, tmp_path)


@pytest.fixture
def client(cm: Any, settings: Any) -> Iterator[TestClient]:
    quiet = replace(settings, retrain_interval_s=0, monitor_interval_s=0)
    with admin_client(create_app(quiet, cm)) as c:
        yield c


def _cli(settings: Any, *args: str) -> Any:
    env = {"MLFLOW_TRACKING_URI": settings.tracking_uri, "CHRONOML_STORE": settings.store_url or ""}
    return CliRunner().invoke(cli, ["--home", str(settings.home), *args], env=env)


def _kinds(cm: Any, endpoint: str) -> list[str]:
    return [e.kind for e in SL.history(cm.store, endpoint)]


# entrypoints and policies do not depend on the store: these run once, on SQLite
sqlite_only = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)


# --- configuration -----------------------------------------------------------------


def test_configure_show_and_refuse_bad_settings(settings: Any, synth: Synth) -> None:
    ep = synth.endpoint
    out = _cli(
        settings,
        "retrain",
        "configure",
        ep,
        "--callable",
        "train_synth:train",
        "-P",
        f"model_name={synth.model}",
        "--workdir",
        str(synth.workdir),
        "--data",
        str(synth.fresh),
        "--policy",
        "canary",
        "--share",
        "20",
        "--approval",
        "manual",
        "--every",
        "7d",
    )
    assert out.exit_code == 0, out.output
    assert "train_synth:train(data_version=SNAPSHOT_ID) model_name=" in out.output
    assert "canary at 20%" in out.output and "manual approval" in out.output
    shown = json.loads(_cli(settings, "retrain", "show", ep, "--json").output)
    assert shown["entrypoint"]["params"] == {"model_name": synth.model}
    assert shown["policy"]["deploy"] == "canary" and shown["every_us"] == 7 * 86_400_000_000

    bad = [
        (["--callable", "not a callable", "--data", "x.csv"], "module:function"),
        (["--callable", "m:f"], "--data PATH or --query SQL"),
        (
            ["--callable", "m:f", "--data", "x.csv", "--policy", "shadow", "--metric", "label"],
            "shadow",
        ),
        (["--callable", "m:f", "--data", "x.csv", "--share", "100"], "share"),
        (["--callable", "m:f", "--data", "x.csv", "--timeout", "soon"], "--timeout"),
        (["--data", "x.csv"], "--project DIR or --callable"),
        (["--callable", "m:f", "--data", "x.csv", "-P", "data_version=1"], "data_version"),
    ]
    for args, says in bad:
        out = _cli(settings, "retrain", "configure", ep, *args)
        assert out.exit_code == 1 and says in out.output, (args, out.output)
    out = _cli(settings, "retrain", "configure", "ghost", "--callable", "m:f", "--data", "x.csv")
    assert out.exit_code == 1 and "unknown endpoint" in out.output
    out = _cli(settings, "retrain", "ghost")
    assert out.exit_code == 1 and "unknown endpoint" in out.output
    assert _cli(settings, "retrain", "remove", ep).exit_code == 0
    out = _cli(settings, "retrain", ep)
    assert out.exit_code == 1 and "no retraining configured" in out.output
    with pytest.raises(PolicyError):
        Policy(approval="sometimes")


def test_project_command_is_what_users_run(settings: Any) -> None:
    ep = RC.Entrypoint("project", "/srv/churn", {"C": "0.5"}, entry_point="train")
    argv, _ = EP.command(ep, "sha256:abc", "chronoml-retrain-churn")
    assert argv[1:] == [
        "-m",
        "mlflow",
        "run",
        "/srv/churn",
        "-e",
        "train",
        "-P",
        "data_version=sha256:abc",
        "-P",
        "C=0.5",
        "--env-manager",
        "local",
        "--experiment-name",
        "chronoml-retrain-churn",
    ]
    env = EP.environment(settings, ep, "chronoml-retrain-churn", "sha256:abc", "/x.parquet", 7, {})
    assert env["MLFLOW_TRACKING_URI"] == settings.tracking_uri
    assert env["CHRONOML_SNAPSHOT_ID"] == "sha256:abc" and env["CHRONOML_JOB_ID"] == "7"
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)


# --- one job per endpoint ------------------------------------------------------------


def test_two_triggers_make_one_job(cm: Any, synth: Synth) -> None:
    cfg = RC.put(cm.store, config(synth))
    results: list[tuple[J.Job, bool]] = []

    def trigger() -> None:
        results.append(J.enqueue(cm.store, cfg, {"kind": "manual", "actor": "t"}))

    threads = [threading.Thread(target=trigger) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(created for _, created in results) == [False, False, False, True]
    assert len({job.id for job, _ in results}) == 1
    # an alert firing meanwhile queues nothing more, and says so
    engine = AlertEngine(cm.store)
    engine.put(
        {
            "endpoint": synth.endpoint,
            "metric": "dataset_drift",
            "op": "==",
            "threshold": 1,
            "actions": [{"type": "ledger"}, {"type": "retrain", "job": synth.endpoint}],
        },
        "drift",
    )
    [out] = engine.evaluate(synth.endpoint, "v", {"dataset_drift": 1}, now_us() - 10, now_us())
    job_id = results[0][0].id
    assert out.results[0]["result"] == f"job {job_id} already queued: not started again"
    assert len(J.listing(cm.store, synth.endpoint)) == 1
    # once that job is over, an alert starts the next one inside its own transaction
    with cm.store.write() as conn:
        J.update_in(conn, job_id, None, status="failed", reason="test")
    engine.put({**engine.rules()[0].to_dict(), "name": "drift-again"})
    outs = engine.evaluate(synth.endpoint, "v", {"dataset_drift": 1}, now_us() - 10, now_us())
    out = next(o for o in outs if o.rule == "drift-again")  # "drift" is still firing
    newest, first = J.listing(cm.store, synth.endpoint)  # (PostgreSQL may skip ids)
    assert (newest.status, first.status, first.id) == ("queued", "failed", job_id)
    assert out.event == "fired" and out.results[0]["result"] == f"job {newest.id} queued"
    # the database itself refuses a second unfinished job
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError), cm.store.write() as conn:
        conn.execute(
            J.J.insert().values(
                endpoint=synth.endpoint,
                active=synth.endpoint,
                status="queued",
                step="snapshot",
                step_state="pending",
                trigger="{}",
                spec=json.dumps(cfg.to_dict()),
                created_at=1,
                updated_at=1,
            )
        )


# --- entrypoints that fail -------------------------------------------------------------


@sqlite_only
@pytest.mark.parametrize(
    ("target", "timeout_us", "says", "in_log"),
    [
        (
            "faulty:fail",
            60_000_000,
            "exited with code 1: RuntimeError: the feature store is down",
            "loading sha256:",
        ),
        (
            "faulty:hang",
            # long enough for a loaded machine to start the child and print its line
            6_000_000,
            "did not finish within 6 s and was killed",
            "training forever",
        ),
        ("faulty:nothing", 60_000_000, "registered no new version", "forgot to register"),
    ],
)
def test_a_bad_entrypoint_fails_the_job_and_deploys_nothing(
    cm: Any,
    settings: Any,
    synth: Synth,
    target: str,
    timeout_us: int,
    says: str,
    in_log: str,
) -> None:
    RC.put(cm.store, replace(config(synth, target), model=synth.model, timeout_us=timeout_us))
    out = _cli(settings, "retrain", synth.endpoint)
    assert out.exit_code == 1 and says in out.output, out.output
    [job] = J.listing(cm.store, synth.endpoint)
    assert job.status == "failed" and says in (job.reason or "")
    assert in_log in (job.log or "")
    assert _kinds(cm, synth.endpoint) == ["deploy", "job_started", "job_failed"]
    last = cm.history(synth.endpoint).events[-1].summary
    assert last.startswith(f"retraining job {job.id} failed at ") and says in last
    log = _cli(settings, "job", str(job.id), "--log")
    assert log.exit_code == 0 and in_log in log.output
    # the endpoint may be retrained again
    again = _cli(settings, "retrain", synth.endpoint, "--no-wait")
    assert f"job {job.id + 1} queued" in again.output


@sqlite_only
def test_a_worker_killed_mid_training_fails_the_job_without_rerunning(
    cm: Any, settings: Any, synth: Synth, tmp_path: Path
) -> None:
    pidfile = tmp_path / "trainer.pid"
    cfg = config(synth, "faulty:hang")
    cfg = replace(
        cfg,
        model=synth.model,
        entrypoint=replace(cfg.entrypoint, params={"pidfile": str(pidfile)}),
    )
    RC.put(cm.store, cfg)
    job, _ = J.enqueue(cm.store, cfg, {"kind": "manual", "actor": "t"})
    code = (
        "import sys; from chronoml.settings import Settings; from chronoml.service import Chronoml;"
        "from chronoml.retrain.runner import JobRunner;"
        f"cm = Chronoml.open(Settings.from_env(home={str(settings.home)!r}, "
        f"mlflow_tracking_uri={settings.tracking_uri!r}));"
        f"JobRunner(cm, lease_s=1).advance({job.id})"
    )
    worker = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not (pidfile.exists() and pidfile.read_text()) and time.monotonic() < deadline:
            assert worker.poll() is None, "the worker ended early"
            time.sleep(0.05)
        trainer = int(pidfile.read_text())
    finally:
        os.killpg(worker.pid, signal.SIGKILL)  # the worker "crashes"
        worker.wait()
    os.kill(trainer, signal.SIGKILL)  # and its orphaned entrypoint is cleaned up
    assert J.get(cm.store, job.id).step_state == "started"  # type: ignore[union-attr]
    time.sleep(1.1)  # its lease runs out
    after = JobRunner(cm).advance(job.id)
    assert after.status == "failed" and "interrupted" in (after.reason or "")
    assert _kinds(cm, synth.endpoint) == ["deploy", "job_started", "job_failed"]


# --- a canary, a restart after its deploy, manual approval ---------------------------


@sqlite_only
def test_canary_restart_and_manual_rejection(
    cm: Any, settings: Any, synth: Synth, client: TestClient
) -> None:
    ep = synth.endpoint
    cfg = RC.put(cm.store, config(synth, deploy="canary", share=50, approval="manual"))
    runner = JobRunner(cm, settle_s=0)
    job, _ = runner.start_job(ep, "alice")
    job = runner.advance(job.id)
    assert job.status == "evaluating", (job.reason, job.log)
    assert cm.status(ep).variants[1].weight == 50
    deploys = [e for e in SL.history(cm.store, ep) if e.kind == "deploy"]
    assert deploys[-1].payload["canary"]  # the gateway's canary guardrails ride along

    # the worker died right after recording the deploy, before noting it in the job
    with cm.store.write() as conn:
        J.update_in(
            conn,
            job.id,
            None,
            step="deploy",
            status="running",
            deploy_seq=None,
            challenger=None,
            lease_owner="dead-worker",
            lease_until=now_us() - 1,
        )
    job = JobRunner(cm, settle_s=0).advance(job.id)
    assert job.status == "evaluating" and job.deploy_seq == deploys[-1].seq
    assert len([e for e in SL.history(cm.store, ep) if e.kind == "deploy"]) == 2  # not three

    # traffic split between champion and canary; the canary is right far more often
    client.app.state.gateway.live.refresh()  # type: ignore[attr-defined]
    drifted = make_data(320, 5, drifted=True)
    ids = predict_rows(client, ep, drifted)
    truth = drifted["target"].tolist()
    labels = [{"decision_id": i, "label": y} for i, y in zip(ids, truth, strict=True)]
    assert client.post("/v1/feedback", json={"labels": labels}).status_code == 200
    job = runner.advance(job.id)
    assert job.status == "awaiting_approval", job.evaluation
    assert job.evaluation is not None
    assert job.evaluation["comparison"]["design"] == "a/b"
    assert job.evaluation["decision"]["action"] == "ask"
    shown = _cli(settings, "job", str(job.id))
    assert f"chronoml approve {ep} {job.id}" in shown.output
    assert runner.advance(job.id).status == "awaiting_approval"  # waits, however often asked

    # a person says no: the canary is rolled back, the champion alone again
    out = _cli(
        settings,
        "approve",
        ep,
        str(job.id),
        "--reject",
        "--reason",
        "not on a Friday",
    )
    assert out.exit_code == 0, out.output
    assert (
        "retraining job" in out.output and "rejected" in out.output and "rolled back" in out.output
    )
    job = J.get(cm.store, job.id)  # type: ignore[assignment]
    assert job.status == "rolled_back"
    assert [v.model.version for v in cm.status(ep).variants] == [synth.v1]
    kinds = _kinds(cm, ep)
    assert kinds[-5:] == ["job_trained", "deploy", "experiment_verdict", "job_rejected", "rollback"]
    rb = SL.history(cm.store, ep)[-1]
    assert rb.payload["canary_seq"] == job.deploy_seq and rb.payload["job"]["role"] == "rollback"
    assert rb.actor.startswith("chronoml-retrain@")
    rejected = SL.history(cm.store, ep)[-2]
    # the person who answered, as the store knows them: their OS user on this host
    assert rejected.actor.startswith(f"os:{getpass.getuser()}@")
    assert rejected.payload["reason"] == "not on a Friday"
    out = _cli(settings, "approve", ep, str(job.id))
    assert out.exit_code == 1 and "not awaiting approval" in out.output
    listing = _cli(settings, "jobs", ep)
    assert f"#{job.id}" in listing.output and "rolled_back" in listing.output
    got = client.get(f"/v1/jobs/{job.id}").json()
    assert got["status"] == "rolled_back" and [s["step"] for s in got["steps"]][:3] == [
        "queued",
        "start",
        "snapshot",
    ]
    assert client.get("/v1/jobs", params={"endpoint": ep}).json()["jobs"][0]["id"] == job.id
    assert cfg.policy.approval == "manual"


@sqlite_only
def test_a_version_worse_on_the_holdout_is_never_deployed(
    cm: Any, settings: Any, synth: Synth, tmp_path: Path
) -> None:
    holdout = tmp_path / "holdout.csv"
    make_data(300, 9, drifted=False).to_csv(holdout, index=False)  # the old world
    RC.put(cm.store, config(synth, holdout=RC.Holdout(str(holdout), "target")))
    job, _ = JobRunner(cm).start_job(synth.endpoint, "alice")
    job = JobRunner(cm).advance(job.id)
    assert job.status == "failed" and "validation on the holdout failed" in (job.reason or "")
    assert "worse by" in (job.reason or "") and "not deployed" in (job.reason or "")
    assert _kinds(cm, synth.endpoint) == ["deploy", "job_started", "job_failed"]
    assert len(cm.status(synth.endpoint).variants) == 1


def test_a_schedule_queues_jobs_and_rest_starts_them(
    cm: Any, settings: Any, synth: Synth, client: TestClient
) -> None:
    ep = synth.endpoint
    t = now_us()
    cfg = replace(config(synth, "faulty:nothing"), model=synth.model, every_us=3_600_000_000)
    RC.put(cm.store, cfg, now=t)
    assert JobRunner(cm).run_once(now=t + 1) == []  # not due yet
    [ran] = JobRunner(cm).run_once(now=t + 3_600_000_000)
    assert ran.trigger == {"kind": "schedule", "every_us": 3_600_000_000}
    assert ran.status == "failed" and "registered no new version" in (ran.reason or "")
    assert RC.due(cm.store, t + 3_600_000_000) == []  # each run is claimed once

    r = client.post(f"/v1/endpoints/{ep}/retrain")
    assert r.status_code == 202 and r.json()["created"] is True
    queued = r.json()["job"]
    assert queued["status"] == "queued" and queued["trigger"]["kind"] == "manual"
    r2 = client.post(f"/v1/endpoints/{ep}/retrain")
    assert r2.status_code == 200 and r2.json()["created"] is False
    assert r2.json()["job"]["id"] == queued["id"]
    r = client.post(f"/v1/endpoints/{ep}/jobs/{queued['id']}/approve")
    assert r.status_code == 409
    out = _cli(settings, "retrain", "worker", "--once")
    assert out.exit_code == 0 and f"job {queued['id']}: failed" in out.output, out.output
    got = client.get(f"/v1/jobs/{queued['id']}", params={"log": "true"}).json()
    assert got["status"] == "failed" and "forgot to register" in got["log"]

    assert client.get(f"/v1/endpoints/{ep}/retraining").json()["endpoint"] == ep
    bad = client.put(f"/v1/endpoints/{ep}/retraining", json={"entrypoint": {}})
    assert bad.status_code == 422
    assert client.post("/v1/endpoints/ghost/retrain").status_code == 404
    assert client.get("/v1/jobs/999999").status_code == 404
    assert _cli(settings, "job", "999999").exit_code == 1


MLPROJECT = """\
name: synth
entry_points:
  main:
    parameters:
      data_version: {type: string}
      model_name: {type: string}
    command: "python train.py {data_version} {model_name}"
"""

PROJECT_TRAIN = """\
import sys

from train_synth import train

train(sys.argv[1], sys.argv[2])
"""


@sqlite_only
@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("CHRONOML_TEST_MLFLOW_RUN") != "1",
    reason="`mlflow run` costs 15-45 s here (its CLI, then the project's Python); "
    "set CHRONOML_TEST_MLFLOW_RUN=1 to run it. The command it runs is pinned by "
    "test_project_command_is_what_users_run and the rest of the job by the callable tests.",
)
def test_an_mlflow_project_entrypoint_runs_offline(cm: Any, synth: Synth) -> None:
    project = synth.workdir / "project"
    project.mkdir()
    (project / "MLproject").write_text(MLPROJECT)
    (project / "train.py").write_text(PROJECT_TRAIN)
    cfg = config(synth)
    cfg = replace(
        cfg,
        entrypoint=RC.Entrypoint(
            "project", str(project), {"model_name": synth.model}, workdir=str(synth.workdir)
        ),
    )
    RC.put(cm.store, cfg)
    job, _ = JobRunner(cm).start_job(synth.endpoint, "alice")
    job = JobRunner(cm).advance(job.id)
    assert job.status == "evaluating", (job.reason, job.log)
    assert f"trained on 600 rows of {job.snapshot_id}" in (job.log or "")
    assert cm.status(synth.endpoint).variants[1].shadow is True


@sqlite_only
def test_the_server_runs_the_jobs_it_is_asked_for(cm: Any, settings: Any, synth: Synth) -> None:
    RC.put(cm.store, replace(config(synth, "faulty:nothing"), model=synth.model))
    serving = replace(settings, retrain_interval_s=60, monitor_interval_s=0)
    with admin_client(create_app(serving, cm)) as c:
        r = c.post(f"/v1/endpoints/{synth.endpoint}/retrain")
        assert r.status_code == 202
        job_id = r.json()["job"]["id"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # woken at once, not after its 60 s interval
            got = c.get(f"/v1/jobs/{job_id}").json()
            if got["status"] == "failed":
                break
            time.sleep(0.05)
        assert got["status"] == "failed" and "registered no new version" in got["reason"]
        gw = c.app.state.gateway  # type: ignore[attr-defined]
    assert gw.jobs.started and not gw.jobs.running  # stopped with it
