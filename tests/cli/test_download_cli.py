"""``chronoml download`` and ``chronoml verify-model``: real MLflow store, real files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
import sklearn
from click.testing import CliRunner
from mlflow.models import infer_signature
from sklearn.linear_model import LogisticRegression

import chronoml
from chronoml.cli.common import cli
from chronoml.settings import Settings

FRAME = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0], "y": [0, 0, 0, 1, 1, 1]})


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    s = Settings.from_env({}, home=tmp_path / "home", mlflow_tracking_uri=tracking)
    mlflow.set_tracking_uri(tracking)
    mlflow.set_registry_uri(tracking)
    exp = mlflow.create_experiment("t", artifact_location=(tmp_path / "art").as_uri())
    snap = chronoml.snapshot(FRAME, name="train", settings=s)
    with mlflow.start_run(experiment_id=exp):
        chronoml.log_snapshot(snap)
        X, y = FRAME[["x"]], FRAME["y"]
        mlflow.sklearn.log_model(
            LogisticRegression().fit(X, y),
            name="model",
            registered_model_name="pinned",
            signature=infer_signature(X, y),
            pip_requirements=[f"scikit-learn=={sklearn.__version__}"],
            serialization_format="cloudpickle",
        )
    return s


def run(settings: Settings, *args: str) -> Any:
    env = {"MLFLOW_TRACKING_URI": settings.tracking_uri, "CHRONOML_STORE": ""}
    return CliRunner().invoke(cli, ["--home", str(settings.home), *args], env=env)


def test_download_writes_checked_files_and_their_lineage(
    settings: Settings, tmp_path: Path
) -> None:
    dest = tmp_path / "downloaded_model"
    r = run(settings, "download", "models:/pinned/1", "-d", str(dest), "--json")
    assert r.exit_code == 0, r.output
    lineage = json.loads(r.stdout)
    on_disk = json.loads((dest / "chronoml-lineage.json").read_text())
    assert on_disk == lineage
    assert lineage["model"]["name"] == "pinned" and lineage["model"]["version"] == "1"
    assert lineage["artifact_digest"].startswith("sha256:")
    assert lineage["data_snapshot"]["name"] == "train"
    assert lineage["data_snapshot"]["id"].startswith("sha256:")
    assert lineage["run_id"]
    assert (dest / "MLmodel").is_file()

    r = run(settings, "verify-model", str(dest))
    assert r.exit_code == 0, r.output
    assert "pinned v1, byte for byte" in r.stdout
    assert lineage["data_snapshot"]["id"] in r.stdout

    r = run(settings, "download", "models:/pinned/1", "-d", str(dest))
    assert r.exit_code == 1
    assert "not an empty folder" in r.output

    (dest / "MLmodel").write_text((dest / "MLmodel").read_text() + "\n# edited\n")
    (dest / "extra.txt").write_text("x")
    r = run(settings, "verify-model", str(dest), "--json")
    assert r.exit_code == 1
    d = json.loads(r.stdout)
    assert d["matches"] is False
    assert d["differences"] == {"added": ["extra.txt"], "removed": [], "changed": ["MLmodel"]}
    assert "changed MLmodel" in d["message"] and "added extra.txt" in d["message"]


def test_a_folder_mlflow_downloaded_is_checked_by_its_run(
    settings: Settings, tmp_path: Path
) -> None:
    got = Path(
        mlflow.artifacts.download_artifacts("models:/pinned/1", dst_path=str(tmp_path / "m"))
    )
    r = run(settings, "verify-model", str(tmp_path / "m"))
    assert r.exit_code == 0, r.output
    assert "pinned v1" in r.stdout
    assert got.is_dir()


def test_artifacts_changed_in_mlflow_after_their_digest_was_recorded_are_refused(
    settings: Settings, tmp_path: Path
) -> None:
    r = run(settings, "download", "models:/pinned/1", "-d", str(tmp_path / "first"))
    assert r.exit_code == 0, r.output
    source = mlflow.MlflowClient().get_model_version_download_uri("pinned", "1")
    folder = Path(source.removeprefix("file://"))
    (folder / "MLmodel").write_text((folder / "MLmodel").read_text() + "\n# swapped\n")
    r = run(settings, "download", "models:/pinned/1", "-d", str(tmp_path / "second"))
    assert r.exit_code == 1
    assert "was recorded in the registry; refusing it" in r.output
    assert not (tmp_path / "second").exists()
