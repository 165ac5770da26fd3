"""Model cards written at deploy, stored as MLflow artifacts of the version's run, shown by
``chronoml card``; a card that cannot be written is reported and does not stop the deploy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import mlflow
import sklearn
from click.testing import CliRunner
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from access_support import admin_client
from chronoml.cli.common import cli
from chronoml.gateway.app import create_app
from chronoml.monitor import cards

DATA = load_breast_cancer(as_frame=True).frame
X, Y = DATA.drop(columns=["target"]), DATA["target"]
FOLDER = "chronoml/model_cards"


def _env(settings: Any) -> dict[str, str]:
    return {
        "MLFLOW_TRACKING_URI": settings.tracking_uri,
        "CHRONOML_STORE": settings.store_url or "",
    }


def test_deploy_writes_the_card_and_card_shows_it(cm: Any, settings: Any, models: Any) -> None:
    client = MlflowClient(models.tracking_uri, registry_uri=models.tracking_uri)
    client.update_model_version(
        "cancer", models.linked_v1, description="screening aid, not a diagnosis"
    )
    try:
        with admin_client(create_app(settings, cm)) as c:
            r = c.put(
                "/v1/endpoints/cards-ep", json={"model_uri": f"models:/cancer/{models.linked_v1}"}
            )
            assert r.status_code == 200, r.text
            body = r.json()
    finally:
        client.update_model_version("cancer", models.linked_v1, description="")
    assert "warnings" not in body
    written = body["model_card"]
    folder = f"{FOLDER}/cards-ep"
    assert sorted(written["stored"]) == sorted(
        f"{folder}/model_card.{x}" for x in ("html", "json", "md")
    )
    run_id = written["run_id"]
    names = {a.path for a in client.list_artifacts(run_id, folder)}
    assert names == set(written["stored"])
    # the ledger event says where the card is
    ev = cm.history("cards-ep").events[-1]
    assert ev.payload["model_card"] == written

    stored = cards.stored_card(cm, "cards-ep")
    assert stored is not None and stored["model"]["version"] == models.linked_v1
    assert stored["intended_use"] == "screening aid, not a diagnosis"
    assert stored["training_data"]["id"] == models.snapshot_id
    md = Path(client.download_artifacts(run_id, f"{folder}/model_card.md", str(settings.home)))
    assert md.read_text() == cards.to_markdown(stored)

    base = ["--home", str(settings.home), "card", "cards-ep"]
    out = CliRunner().invoke(cli, [*base, "--format", "json"], env=_env(settings))
    assert out.exit_code == 0, out.output
    assert "the card stored in MLflow run" in out.output
    shown = json.loads(out.output[out.output.index("{") :])
    assert shown == json.loads(json.dumps(stored))
    out = CliRunner().invoke(cli, [*base, "--format", "html"], env=_env(settings))
    assert out.exit_code == 0 and "<h1>Model card: cancer" in out.output


def test_a_card_that_cannot_be_stored_is_reported_and_the_deploy_goes_on(
    cm: Any, settings: Any, models: Any, tmp_path: Path
) -> None:
    mlflow.set_tracking_uri(models.tracking_uri)
    mlflow.set_registry_uri(models.tracking_uri)
    exp = mlflow.create_experiment(
        f"cards-{tmp_path.name}", artifact_location=(tmp_path / "artifacts").as_uri()
    )
    with mlflow.start_run(experiment_id=exp) as run:
        info = mlflow.sklearn.log_model(
            make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, Y),
            name="model",
            registered_model_name="cards-broken",
            signature=infer_signature(X.head(), Y.head()),
            pip_requirements=[f"scikit-learn=={sklearn.__version__}"],
            serialization_format="cloudpickle",
        )
    # a file where the card's folder must go: every write of the card fails, even as root
    artifacts = Path(urlparse(run.info.artifact_uri).path)
    artifacts.mkdir(parents=True, exist_ok=True)
    (artifacts / "chronoml").write_text("in the way")
    uri = f"models:/cards-broken/{info.registered_model_version}"
    with admin_client(create_app(settings, cm)) as c:
        r = c.put("/v1/endpoints/broken-ep", json={"model_uri": uri, "allow_unlinked_data": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"]["variants"][0]["model"]["name"] == "cards-broken"
    assert body["model_card"]["stored"] == [] and body["model_card"]["error"]
    assert body["warnings"][0].startswith("the model card was not stored: ")
    ev = cm.history("broken-ep").events[-1]
    assert ev.payload["model_card"]["error"] == body["model_card"]["error"]

    out = CliRunner().invoke(
        cli,
        [
            "--home",
            str(settings.home),
            "deploy",
            "broken-ep2",
            uri,
            "--allow-unlinked-data",
        ],
        env=_env(settings),
    )
    assert out.exit_code == 0, out.output
    assert "ledger #" in out.output and "warning: the model card was not stored" in out.output
