"""``chronoml run PROJECT -P data_version=REF``: resolved first, run in a run already linked
to the snapshot, versions tagged after; real SQLite and MLflow stores."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
import sklearn
from click.testing import CliRunner
from mlflow.models import infer_signature
from sklearn.linear_model import LogisticRegression

from chronoml import projects
from chronoml.cli.common import cli
from chronoml.registry.lineage import code_version_of
from chronoml.service import Chronoml
from chronoml.settings import Settings
from chronoml.store import snapshots as snapshot_store

FRAME = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0], "y": [0, 0, 0, 1, 1, 1]})
MLPROJECT = """name: tiny
entry_points:
  main:
    parameters:
      data_version: string
      c: {type: float, default: 1.0}
    command: "python train.py {data_version} {c}"
"""
TRAIN = """import sys, mlflow, chronoml, sklearn
from sklearn.linear_model import LogisticRegression
df = chronoml.load_snapshot(sys.argv[1])
with mlflow.start_run():
    mlflow.sklearn.log_model(LogisticRegression(C=float(sys.argv[2])).fit(df[["x"]], df["y"]),
        name="model", registered_model_name="pinned",
        pip_requirements=["scikit-learn==" + sklearn.__version__],
        serialization_format="cloudpickle")
"""


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return Settings.from_env({}, home=tmp_path / "home", mlflow_tracking_uri=tracking)


def cli_run(settings: Settings, *args: str) -> Any:
    env = {"MLFLOW_TRACKING_URI": settings.tracking_uri, "CHRONOML_STORE": ""}
    return CliRunner().invoke(cli, ["--home", str(settings.home), *args], env=env)


def test_a_ref_that_does_not_resolve_stops_before_anything_runs(
    settings: Settings, tmp_path: Path
) -> None:
    (tmp_path / "MLproject").write_text(MLPROJECT)
    r = cli_run(settings, "run", str(tmp_path), "-P", "data_version=customers@2024-06-01")
    assert r.exit_code == 1
    assert "no snapshot named 'customers'" in r.output
    r = cli_run(settings, "run", str(tmp_path), "-P", "c=1")
    assert r.exit_code == 1
    assert "data_version=REF is needed" in r.output
    client = mlflow.MlflowClient(settings.tracking_uri)
    assert client.get_experiment_by_name("chronoml") is None  # no experiment, so no run


def test_the_run_and_its_versions_are_linked_with_no_call_in_the_project(
    settings: Settings, tmp_path: Path
) -> None:
    cm = Chronoml.open(settings)
    seen: list[tuple[list[str], dict[str, str]]] = []

    def project(argv: Sequence[str], env: Mapping[str, str], cwd: str | None) -> int:
        """What `mlflow run` does with this argv: the project's code runs in the given run
        and registers a version, never calling log_snapshot."""
        seen.append((list(argv), dict(env)))
        run_id = argv[argv.index("--run-id") + 1]
        mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
        mlflow.set_registry_uri(env["MLFLOW_REGISTRY_URI"])
        with mlflow.start_run(run_id=run_id):
            X, y = FRAME[["x"]], FRAME["y"]
            mlflow.sklearn.log_model(
                LogisticRegression().fit(X, y),
                name="model",
                registered_model_name="pinned",
                signature=infer_signature(X, y),
                pip_requirements=[f"scikit-learn=={sklearn.__version__}"],
                serialization_format="cloudpickle",
            )
        return 0

    try:
        snap = snapshot_store.take(cm.store, FRAME, "train")
        done = projects.run_project(
            cm,
            str(tmp_path),
            {"data_version": "train@latest", "c": "0.5"},
            entry_point="fit",
            runner=project,
        )
    finally:
        cm.close()
    argv, env = seen[0]
    assert argv[1:6] == ["-m", "mlflow", "run", str(tmp_path), "-e"]
    assert argv[6] == "fit"
    assert f"data_version={snap.id}" in argv and "c=0.5" in argv
    assert argv[argv.index("--env-manager") + 1] == "local"
    assert env["CHRONOML_HOME"] == str(settings.home)
    assert done.succeeded and done.snapshot.id == snap.id
    assert done.versions == (("pinned", "1"),)
    client = mlflow.MlflowClient(settings.tracking_uri)
    run = client.get_run(done.run_id)
    assert run.data.tags["chronoml.snapshot.id"] == snap.id
    assert run.data.params == {"data_version": snap.id, "c": "0.5"}
    assert run.info.status == "FINISHED"
    assert client.get_model_version("pinned", "1").tags["chronoml.snapshot.id"] == snap.id


def test_code_version_is_the_commit_of_the_training_code(tmp_path: Path) -> None:
    repo = tmp_path / "code"
    repo.mkdir()
    (repo / "train.py").write_text("print('hi')\n")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "train.py"], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    head = subprocess.run(
        [*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    assert code_version_of(repo / "train.py") == head
    assert code_version_of(tmp_path) is None or code_version_of(tmp_path) != head


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("CHRONOML_TEST_MLFLOW_RUN") != "1",
    reason="`mlflow run` costs 15-45 s here (its CLI, then the project's Python); set "
    "CHRONOML_TEST_MLFLOW_RUN=1 to run it. The command it builds and the linking are "
    "pinned by test_the_run_and_its_versions_are_linked_with_no_call_in_the_project.",
)
def test_chronoml_run_runs_a_real_project_offline(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the project's Python imports this chronoml, wherever it runs from
    monkeypatch.setenv("PYTHONPATH", str(Path(projects.__file__).parents[1]))
    project = tmp_path / "project"
    project.mkdir()
    (project / "MLproject").write_text(MLPROJECT)
    (project / "train.py").write_text(TRAIN)
    data = tmp_path / "train.csv"
    FRAME.to_csv(data, index=False)
    r = cli_run(settings, "snapshot", str(data), "--name", "train")
    assert r.exit_code == 0, r.output
    r = cli_run(settings, "run", str(project), "-P", "data_version=train@latest", "--json")
    assert r.exit_code == 0, r.output
    done = json.loads(r.stdout[r.stdout.index("{") :])
    assert done["versions"] == [{"name": "pinned", "version": "1"}]
    r = cli_run(settings, "snapshot", "show", "train@latest", "--json")
    shown = json.loads(r.stdout)
    assert [x["run_id"] for x in shown["runs"]] == [done["run_id"]]
