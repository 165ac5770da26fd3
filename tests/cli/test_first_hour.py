"""What a new user meets first: ports, missing stores, drift labels, rollbacks in history."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from sklearn.datasets import load_breast_cancer

from access_support import admin_client
from chronoml.cli.common import cli
from chronoml.cli.monitor import format_drift
from chronoml.cli.ports import port_holder
from chronoml.gateway.app import create_app
from chronoml.store import snapshots

DATA = load_breast_cancer(as_frame=True).frame
X = DATA.drop(columns=["target"])


def run(settings: Any, *args: str) -> Any:
    env = {"MLFLOW_TRACKING_URI": settings.tracking_uri, "CHRONOML_STORE": settings.store_url or ""}
    return CliRunner().invoke(
        cli, ["--home", str(settings.home), *args], env=env, catch_exceptions=False
    )


def test_a_read_only_command_never_creates_a_store(tmp_path: Path) -> None:
    home = tmp_path / "elsewhere" / ".chronoml"
    for args in (["status", "churn"], ["history", "churn"], ["endpoints"], ["audit", "verify"]):
        r = CliRunner().invoke(cli, ["--home", str(home), *args], env={"CHRONOML_STORE": ""})
        assert r.exit_code == 1, (args, r.output)
        assert f"no chronoml store at {home} (CHRONOML_HOME)" in r.output, r.output
        assert "chronoml db upgrade" in r.output
    assert not home.exists()


def test_not_found_names_the_store(cm: Any, settings: Any) -> None:
    r = run(settings, "status", "nope")
    assert r.exit_code == 1
    where = settings.store_url.split("@")[-1] if settings.store_url else str(settings.home)
    assert "nope" in r.output and f"(store: {where})" in r.output, r.output


def test_server_names_what_holds_its_port(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        held = port_holder("127.0.0.1", port)
        assert held is not None and f"pid {os.getpid()}" in held
        r = CliRunner().invoke(
            cli,
            ["--home", str(tmp_path / "h"), "server", "--port", str(port)],
            env={"CHRONOML_STORE": ""},
        )
    assert r.exit_code == 1
    assert f"port {port} on 127.0.0.1 is in use by pid {os.getpid()}" in r.output, r.output
    assert "--port" in r.output
    # refused before the store opened: nothing was created
    assert not (tmp_path / "h").exists()
    assert port_holder("127.0.0.1", port) is None


def test_drift_report_labels_p_values_and_distances_and_warns_on_few_rows(
    cm: Any, settings: Any, models: Any
) -> None:
    # the training snapshot is in this store, so deploy builds the reference profile
    assert snapshots.take(cm.store, DATA, "cancer").id == models.snapshot_id
    with admin_client(create_app(settings, cm)) as c:
        r = c.put("/v1/endpoints/cancer", json={"model_uri": f"models:/cancer/{models.linked_v1}"})
        assert r.status_code == 200, r.text
        rows = X.iloc[::50].head(5)
        body = {"dataframe_split": {"columns": list(rows.columns), "data": rows.values.tolist()}}
        assert c.post("/v1/endpoints/cancer/predict", json=body).status_code == 200
    r = run(settings, "drift", "cancer")
    assert r.exit_code == 0, r.output
    assert "warning: only 5 decisions" in r.output, r.output
    # the reference is 569 rows, so the small-sample methods: KS p-values
    assert "p=" in r.output and "(drift if <= 0.05)" in r.output
    r = run(settings, "drift", "cancer", "--method", "mean radius=wasserstein")
    line = next(ln for ln in r.output.splitlines() if ln.strip().startswith("mean radius "))
    assert "distance=" in line and "(drift if > 0.1)" in line, line


def test_format_drift_has_no_warning_on_enough_rows() -> None:
    feature = {
        "feature": "x",
        "status": "ok",
        "method": "psi",
        "statistic": 0.3,
        "threshold": 0.1,
        "drifted": True,
        "is_p_value": False,
    }
    rep = {
        "endpoint": "e",
        "window": {"rows": 500, "from": "a", "to": "b"},
        "variants": [
            {
                "variant": "v",
                "model": {"name": "m", "version": "1"},
                "rows": 500,
                "drifted_share": 1.0,
                "dataset_drift": True,
                "features": [feature],
                "prediction": None,
            }
        ],
    }
    text = format_drift(rep)
    assert "warning" not in text and "distance=0.3 (drift if > 0.1)" in text


def test_history_says_what_a_rollback_restored(cm: Any, settings: Any, models: Any) -> None:
    assert run(settings, "deploy", "cancer", f"models:/cancer/{models.linked_v1}").exit_code == 0
    r = run(settings, "deploy", "cancer", f"models:/cancer/{models.linked_v2}", "--weight", "30")
    assert r.exit_code == 0, r.output
    assert run(settings, "rollback", "cancer").exit_code == 0
    r = run(settings, "history", "cancer")
    lines = r.output.splitlines()
    at = next(i for i, ln in enumerate(lines) if "rollback to the configuration of event" in ln)
    assert (
        lines[at + 1].strip()
        == f"restored: cancer-v{models.linked_v1} (cancer v{models.linked_v1}, 100%)"
    )
