"""The CLI end to end: CliRunner in process, and a real server process over HTTP."""

from __future__ import annotations

import getpass
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from sklearn.datasets import load_breast_cancer

from access_support import token_for
from chronoml.cli.common import cli

X = load_breast_cancer(as_frame=True).frame.drop(columns=["target"])


def run(settings: Any, *args: str) -> Any:
    env = {"MLFLOW_TRACKING_URI": settings.tracking_uri, "CHRONOML_STORE": settings.store_url or ""}
    return CliRunner().invoke(
        cli, ["--home", str(settings.home), *args], env=env, catch_exceptions=False
    )


def test_help_lists_every_command() -> None:
    out = CliRunner().invoke(cli, ["--help"]).output
    for cmd in (
        "server",
        "snapshot",
        "deploy",
        "rollback",
        "status",
        "history",
        "decision",
        "audit",
        "db",
        "demo",
    ):
        assert re.search(rf"^\s+{cmd}\s", out, re.M), cmd


def test_deploy_status_history_rollback(cm: Any, settings: Any, models: Any) -> None:
    # the ledger records who opened the store (their OS user and host), not a chosen name
    r = run(settings, "deploy", "cancer", f"models:/cancer/{models.linked_v1}", "--actor", "alice")
    assert r.exit_code == 2 and "No such option '--actor'" in r.output
    r = run(settings, "deploy", "cancer", f"models:/cancer/{models.linked_v1}")
    assert r.exit_code == 0, r.output
    who = f"os:{getpass.getuser()}@{socket.gethostname()}"
    assert re.match(
        rf"ledger #1 .* {re.escape(who)}.*  cancer: deploy cancer v\d+ as cancer-v\d+ as the only "
        "variant",
        r.output,
    )
    t_after_first = time.time()
    time.sleep(0.01)
    r = run(settings, "deploy", "cancer", f"models:/cancer/{models.linked_v2}", "--weight", "20")
    assert r.exit_code == 0 and "at 20%" in r.output

    then = (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t_after_first))
        + f".{int(t_after_first % 1 * 1e6):06d}"
    )
    r = run(settings, "status", "cancer", "--at", then, "--json")
    st = json.loads(r.output)
    assert [(v["model"]["version"], v["weight"]) for v in st["variants"]] == [
        (models.linked_v1, 100)
    ]
    r = run(settings, "status", "cancer")
    assert "80%" in r.output and "20%" in r.output and models.snapshot_id in r.output

    r = run(settings, "rollback", "cancer", "--reason", "p99 too high")
    assert (
        r.exit_code == 0 and "rollback to the configuration of event 1 (p99 too high)" in r.output
    )
    r = run(settings, "history", "cancer")
    lines = r.output.strip().splitlines()
    assert len(lines) == 4 and who in lines[0] and "rollback" in lines[2]
    assert "restored:" in lines[3]
    r = run(settings, "audit", "verify")
    assert r.exit_code == 0 and r.output.startswith("ok: 3 events")


def test_errors_exit_1_with_a_message(cm: Any, settings: Any, models: Any) -> None:
    r = run(settings, "status", "ghost")
    assert r.exit_code == 1 and "unknown endpoint 'ghost'" in r.output
    r = run(settings, "decision", "0190aaaa-0000-7000-8000-000000000000")
    assert r.exit_code == 1 and "unknown decision" in r.output
    r = run(settings, "deploy", "cancer", "models:/nope/1")
    assert r.exit_code == 1 and "models:/nope/1" in r.output
    r = run(settings, "deploy", "cancer", f"models:/cancer/{models.unlinked_v3}")
    assert r.exit_code == 1 and "--allow-unlinked-data" in r.output
    r = run(
        settings,
        "deploy",
        "cancer",
        f"models:/cancer/{models.unlinked_v3}",
        "--allow-unlinked-data",
    )
    assert r.exit_code == 0 and "no linked data snapshot" in r.output
    r = run(settings, "status", "cancer", "--at", "yesterday-ish")
    assert r.exit_code == 1 and "ISO 8601" in r.output
    r = run(settings, "weights", "cancer", f"cancer-v{models.unlinked_v3}=70")
    assert r.exit_code == 1 and "add up to 100" in r.output


def test_audit_verify_names_a_tampered_event(cm: Any, settings: Any, models: Any) -> None:
    for v in (models.linked_v1, models.linked_v2):
        assert run(settings, "deploy", "cancer", f"models:/cancer/{v}").exit_code == 0
    with cm.store.engine.begin() as conn:
        if cm.store.is_sqlite:
            conn.exec_driver_sql("DROP TRIGGER ledger_no_update")
        else:
            conn.exec_driver_sql("DROP TRIGGER ledger_append_only ON ledger_events")
        conn.exec_driver_sql("UPDATE ledger_events SET actor = 'mallory' WHERE seq = 1")
    r = run(settings, "audit", "verify")
    assert r.exit_code == 1 and "ledger event #1" in r.output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_real_server_picks_up_a_cli_deploy_within_a_second(
    cm: Any, settings: Any, models: Any, tmp_path: Path
) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "CHRONOML_HOME": str(settings.home),
        "MLFLOW_TRACKING_URI": settings.tracking_uri,
        "CHRONOML_STORE": settings.store_url or "",
    }
    exe = [sys.executable, "-m", "chronoml.cli"]
    proc = subprocess.Popen(
        [*exe, "server", "--port", str(port), "--log-level", "warning", "--open-predict"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 120
        while True:
            try:
                if httpx.get(f"{base}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            assert time.time() < deadline, "server did not start"
            time.sleep(0.1)
        body = {"dataframe_split": {"columns": list(X.columns), "data": X.iloc[:2].values.tolist()}}
        assert httpx.post(f"{base}/v1/endpoints/cancer/predict", json=body).status_code == 404
        out = subprocess.run(
            [*exe, "deploy", "cancer", f"models:/cancer/{models.linked_v1}"],
            env=env,
            capture_output=True,
            text=True,
        )
        assert out.returncode == 0, out.stderr
        deployed_at = time.time()
        while True:
            r = httpx.post(f"{base}/v1/endpoints/cancer/predict", json=body)
            if r.status_code == 200:
                break
            assert time.time() - deployed_at < 1.0, "deploy not live within one second"
            time.sleep(0.02)
        ids = r.json()["decision_ids"]
        d = httpx.get(f"{base}/v1/decisions/{ids[0]}", headers=token_for(settings, "viewer")).json()
        assert (
            d["model"]["version"] == models.linked_v1
            and d["data_snapshot"]["id"] == models.snapshot_id
        )
    finally:
        proc.terminate()
        proc.wait(15)
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.mark.parametrize("command", ["drift", "quality", "experiment", "replay", "importance"])
@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--window", "soon"], "--window: not a duration: 'soon'"),
        (["--from", "yesterday"], "--from:"),
        (["--to", "2026-13-01"], "--to:"),
    ],
)
def test_every_time_range_option_names_what_it_cannot_read(
    command: str, args: list[str], says: str, tmp_path: Path
) -> None:
    r = CliRunner().invoke(cli, ["--home", str(tmp_path), command, "cancer", *args])
    assert r.exit_code == 1 and says in r.output, r.output


@pytest.mark.parametrize(("preset", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_the_server_keeps_openmp_threads_from_spinning_unless_told_otherwise(
    preset: str | None, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import chronoml.cli.server as cli_module
    from chronoml.store import Store

    store = Store.open(f"sqlite:///{tmp_path / 'chronoml.db'}", tmp_path)
    store.upgrade()
    store.close()
    monkeypatch.setenv("OMP_WAIT_POLICY", preset or "")  # restored after the test
    if preset is None:
        monkeypatch.delenv("OMP_WAIT_POLICY")
    seen: list[str | None] = []
    monkeypatch.setattr(
        cli_module, "_serve", lambda *a, **k: seen.append(os.environ.get("OMP_WAIT_POLICY"))
    )
    r = CliRunner().invoke(cli, ["--home", str(tmp_path), "server"])
    assert r.exit_code == 0, r.output
    assert seen == [expected]


def test_server_options_reach_the_settings_its_workers_get(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import chronoml.cli.server as cli_module
    from chronoml.store import Store

    store = Store.open(f"sqlite:///{tmp_path / 'chronoml.db'}", tmp_path)
    store.upgrade()
    store.close()
    seen: list[Any] = []
    monkeypatch.setattr(cli_module, "_serve", lambda cm, *a, **k: seen.append(cm.settings))
    args = [
        "--home",
        str(tmp_path),
        "server",
        "--retrain-interval",
        "0",
        "--monitor-interval",
        "60",
    ]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert seen[0].retrain_interval_s == 0 and seen[0].monitor_interval_s == 60
    r = CliRunner().invoke(cli, ["--home", str(tmp_path), "server", "--retrain-interval", "-1"])
    assert r.exit_code == 2 and "--retrain-interval" in r.output


def test_token_create_prints_the_secret_once_on_its_last_line(cm: Any, settings: Any) -> None:
    r = run(settings, "token", "create", "ci", "--role", "viewer", "--endpoint", "churn-*")
    assert r.exit_code == 0, r.output
    secret = r.output.strip().splitlines()[-1]
    assert secret.startswith("cml_") and len(secret) == 47
    listed = run(settings, "token", "list", "--json")
    assert secret not in listed.output
    (row,) = json.loads(listed.output)["tokens"]
    assert row["role"] == "viewer" and row["endpoint"] == "churn-*" and row["revoked_at"] is None
    assert run(settings, "token", "revoke", "ci").exit_code == 0
    assert json.loads(run(settings, "token", "list", "--json").output)["tokens"][0]["revoked_at"]
    r = run(settings, "token", "revoke", "ci")
    assert r.exit_code == 1 and "no active token" in r.output


def test_changes_go_through_a_server_as_the_tokens_principal(
    cm: Any, settings: Any, models: Any
) -> None:
    """With --url and CHRONOML_TOKEN a team without database credentials makes changes."""
    from chronoml.auth.access import create_token
    from chronoml.gateway.server import BackgroundServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = BackgroundServer(cm, "127.0.0.1", port)
    server.start()
    try:
        secret, _ = create_token(cm.store, "release-bot", "operator", by="tests")
        env = {"CHRONOML_URL": f"http://127.0.0.1:{port}", "CHRONOML_TOKEN": secret}
        uri = f"models:/cancer/{models.linked_v1}"
        r = CliRunner().invoke(cli, ["deploy", "cancer", uri], env=env, catch_exceptions=False)
        assert r.exit_code == 0, r.output
        assert re.match(r"ledger #1 .* token:release-bot@127\.0\.0\.1  cancer: deploy", r.output)
        r = CliRunner().invoke(cli, ["token", "create", "x", "--role", "admin"], env=env)
        assert r.exit_code == 1 and "HTTP 403" in r.output and "admin" in r.output
        bad = {**env, "CHRONOML_TOKEN": "cml_" + "B" * 43}
        r = CliRunner().invoke(cli, ["rollback", "cancer"], env=bad)
        assert r.exit_code == 1 and "HTTP 401" in r.output
    finally:
        server.stop()


def test_audit_reads_lists_who_read_raw_inputs(cm: Any, settings: Any) -> None:
    from chronoml.store import principals as SP

    SP.record_reads(
        cm.store,
        "token:auditor-1",
        ["0190a000-0000-7000-8000-000000000001", "0190a000-0000-7000-8000-000000000002"],
        "GET /v1/decisions/{id}",
        10,
    )
    r = run(
        settings, "audit", "reads", "--decision", "0190a000-0000-7000-8000-000000000002", "--json"
    )
    assert r.exit_code == 0, r.output
    (only,) = json.loads(r.output)["reads"]
    assert (
        only["principal"] == "token:auditor-1"
        and only["decision_id"] == "0190a000-0000-7000-8000-000000000002"
    )
    r = run(settings, "audit", "reads", "--principal", "token:nobody")
    assert r.exit_code == 0 and "no reads" in r.output
