"""MLflow's artifacts in the same S3-compatible store: a model logged there deploys and serves."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def own_mlflow_uris() -> Iterator[None]:
    """MLflow's tracking and registry URIs are process-wide: put the session's back after."""
    import mlflow

    before = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    yield
    mlflow.set_tracking_uri(before[0])
    mlflow.set_registry_uri(before[1])


def test_a_model_with_artifacts_in_s3_deploys_and_serves(
    tmp_path: Path,
    s3_server: Any,
    s3_keys: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    own_mlflow_uris: None,
) -> None:
    import mlflow
    import sklearn
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    import chronoml
    from access_support import admin_client
    from chronoml.gateway.app import create_app
    from chronoml.service import Chronoml
    from chronoml.settings import Settings
    from chronoml.store import Store

    # how MLflow's S3 artifact store is pointed at a non-AWS server
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", s3_server.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_keys["CHRONOML_TEST_S3_KEY"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_keys["CHRONOML_TEST_S3_SECRET"])
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(tracking)
    mlflow.set_registry_uri(tracking)
    root = f"s3://{s3_server.bucket}/mlflow-{uuid.uuid4().hex[:8]}"
    exp = mlflow.create_experiment("s3-artifacts", artifact_location=root)
    X, y = load_iris(return_X_y=True, as_frame=True)
    settings = Settings.from_env({}, home=tmp_path / "home", mlflow_tracking_uri=tracking)
    snap = chronoml.snapshot(X.assign(target=y), name="iris", settings=settings)
    with mlflow.start_run(experiment_id=exp):
        chronoml.log_snapshot(snap)
        info = mlflow.sklearn.log_model(
            LogisticRegression(max_iter=300).fit(X, y),
            name="model",
            registered_model_name="iris-s3",
            signature=infer_signature(X.head(), y.head()),
            pip_requirements=[f"scikit-learn=={sklearn.__version__}"],
            serialization_format="cloudpickle",
        )
    assert info.artifact_path and str(mlflow.get_run(info.run_id).info.artifact_uri).startswith(
        root
    )
    listed = s3_server.client().list_objects_v2(
        Bucket=s3_server.bucket, Prefix=root.split("/", 3)[3]
    )
    assert any(o["Key"].endswith("MLmodel") for o in listed["Contents"])

    store = Store.open(settings.database_url, settings.home)
    store.upgrade()
    cm = Chronoml(settings, store)
    try:
        with admin_client(create_app(settings, cm)) as c:
            r = c.put("/v1/endpoints/iris", json={"model_uri": "models:/iris-s3/1"})
            assert r.status_code == 200, r.text
            body = {
                "dataframe_split": {"columns": list(X.columns), "data": X.iloc[:3].values.tolist()}
            }
            r = c.post("/v1/endpoints/iris/predict", json=body)
            assert r.status_code == 200, r.text
            assert r.json()["predictions"] == [0, 0, 0]
    finally:
        cm.close()
