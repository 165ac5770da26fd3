"""``chronoml snapshot take|list|show|resolve`` and ``chronoml.load_snapshot`` inside a run:
real SQLite store, real MLflow store, real ledger."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
import sklearn
from click.testing import CliRunner
from mlflow.models import infer_signature
from sklearn.linear_model import LogisticRegression

import chronoml
from chronoml.cli.common import cli
from chronoml.service import Chronoml
from chronoml.settings import Settings


@dataclass(frozen=True)
class Home:
    settings: Settings
    csv: Path

    def run(self, *args: str) -> Any:
        env = {"MLFLOW_TRACKING_URI": self.settings.tracking_uri, "CHRONOML_STORE": ""}
        return CliRunner().invoke(
            cli, ["--home", str(self.settings.home), *args], env=env, catch_exceptions=False
        )


@pytest.fixture
def home(tmp_path: Path) -> Home:
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    s = Settings.from_env({}, home=tmp_path / "home", mlflow_tracking_uri=tracking)
    rng = np.random.default_rng(7)
    frame = pd.DataFrame({"x1": rng.normal(size=80), "x2": rng.normal(size=80)})
    frame["y"] = (frame["x1"] + frame["x2"] > 0).astype("int64")
    csv = tmp_path / "customers.csv"
    frame.to_csv(csv, index=False)
    return Home(s, csv)


def train_in_run(home: Home, ref: str, model: str) -> str:
    """A user's training script: reads the snapshot by reference, registers a model."""
    mlflow.set_tracking_uri(home.settings.tracking_uri)
    mlflow.set_registry_uri(home.settings.tracking_uri)
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("t")
    exp_id = (
        exp.experiment_id
        if exp
        else client.create_experiment("t", artifact_location=(home.csv.parent / "art").as_uri())
    )
    with mlflow.start_run(experiment_id=exp_id) as run:
        data = chronoml.load_snapshot(ref, settings=home.settings)
        chronoml.load_snapshot(ref, settings=home.settings)  # a second read links nothing more
        X, y = data[["x1", "x2"]], data["y"]
        mlflow.sklearn.log_model(
            LogisticRegression().fit(X, y),
            name="model",
            registered_model_name=model,
            signature=infer_signature(X.head(), y.head()),
            serialization_format="cloudpickle",
            pip_requirements=[f"scikit-learn=={sklearn.__version__}"],
        )
    return str(run.info.run_id)


def test_snapshot_take_list_resolve_show_with_runs_versions_and_endpoints(home: Home) -> None:
    r = home.run("snapshot", str(home.csv), "--name", "customers")  # the old spelling works
    assert r.exit_code == 0, r.output
    sid = r.stdout.strip().splitlines()[0]
    assert sid.startswith("sha256:") and len(sid) == 71

    r = home.run("snapshot", "resolve", "customers", "--at", "2999-01-01")
    assert r.stdout.strip() == sid
    r = home.run("snapshot", "list", "--json")
    listed = json.loads(r.stdout)
    assert [s["id"] for s in listed] == [sid]
    assert listed[0]["taken_by"]  # the OS user who took it

    run_id = train_in_run(home, "customers@latest", "churn")
    tags = mlflow.MlflowClient().get_run(run_id).data.tags
    assert tags["chronoml.snapshot.id"] == sid
    inputs = mlflow.MlflowClient().get_run(run_id).inputs.dataset_inputs
    assert len(inputs) == 1  # linked once, not once per read

    cm = Chronoml.open(home.settings)
    try:
        cm.deploy("churn-api", "models:/churn/1")
    finally:
        cm.close()

    r = home.run("snapshot", "show", "customers@latest", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["id"] == sid and d["rows"] == 80
    assert [(c["name"], c["type"]) for c in d["columns"]] == [
        ("x1", "float64"),
        ("x2", "float64"),
        ("y", "int64"),
    ]
    assert [r["run_id"] for r in d["runs"]] == [run_id]
    assert d["runs"][0]["versions"] == [{"name": "churn", "version": "1"}]
    assert [(e["endpoint"], e["live_now"]) for e in d["endpoints"]] == [("churn-api", True)]

    r = home.run("snapshot", "show", sid[:20])
    assert r.exit_code == 0, r.output
    assert f"snapshot {sid}" in r.stdout
    assert "churn-api: churn v1" in r.stdout
    assert run_id in r.stdout


def test_a_ref_that_matches_nothing_is_a_clean_error(home: Home) -> None:
    r = home.run("snapshot", "show", "customers@latest")
    assert r.exit_code == 1
    assert "no snapshot named 'customers'" in r.output
    r = home.run("snapshot", "resolve", "customers", "--at", "not-a-time")
    assert r.exit_code == 1
    assert "not an ISO 8601 time" in r.output
