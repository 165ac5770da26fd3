"""The drift report's multivariate section: a change in how inputs move together that
leaves every marginal unchanged is caught, and nothing is flagged without one."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from starlette.testclient import TestClient

from access_support import admin_client
from chronoml.gateway.app import create_app
from chronoml.monitor.scheduler import compute
from chronoml.timeutil import iso, now_us

COLS = ["a", "b", "c"]


def _data(n: int, seed: int, joint: bool) -> pd.DataFrame:
    """a and b strongly correlated (or not, with the same normal marginals); c independent."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    noise = rng.normal(size=n)
    b = 0.95 * a + np.sqrt(1 - 0.95**2) * noise if joint else noise
    return pd.DataFrame({"a": a, "b": b, "c": rng.normal(size=n)})


@pytest.fixture
def endpoint(cm: Any, tmp_path: Path) -> str:
    import mlflow
    import sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    from chronoml.registry import configure, log_snapshot
    from chronoml.store import snapshots

    configure(cm.settings)  # the process's MLflow client may point at another test's store
    tag = uuid.uuid4().hex[:8]
    df = _data(4000, 1, joint=True)
    df["target"] = (df["a"] + df["c"] > 0).astype(int)
    snap = snapshots.take(cm.store, df, "joint")
    exp = mlflow.create_experiment(f"mv-{tag}", artifact_location=(tmp_path / "a").as_uri())
    with mlflow.start_run(experiment_id=exp):
        log_snapshot(snap)
        info = mlflow.sklearn.log_model(
            LogisticRegression().fit(df[COLS], df["target"]),
            name="model",
            registered_model_name=f"mv-{tag}",
            signature=infer_signature(df[COLS], df["target"]),
            pip_requirements=[f"scikit-learn=={sklearn.__version__}"],
        )
    cm.deploy(f"mv-{tag}", f"models:/mv-{tag}/{info.registered_model_version}", actor="alice")
    return f"mv-{tag}"


@pytest.fixture
def client(cm: Any, settings: Any, endpoint: str) -> Iterator[TestClient]:
    with admin_client(create_app(settings, cm)) as c:
        yield c


def _send(client: TestClient, endpoint: str, df: pd.DataFrame) -> tuple[str, str]:
    start = iso(now_us())
    for i in range(0, len(df), 200):
        part = df.iloc[i : i + 200]
        body = {"dataframe_split": {"columns": COLS, "data": part.values.tolist()}}
        assert client.post(f"/v1/endpoints/{endpoint}/predict", json=body).status_code == 200
    return start, iso(now_us() + 1)


def test_a_joint_shift_with_unchanged_marginals_is_caught(
    client: TestClient, cm: Any, endpoint: str
) -> None:
    same = _send(client, endpoint, _data(1000, 2, joint=True))
    shifted = _send(client, endpoint, _data(1000, 3, joint=False))
    url = f"/v1/endpoints/{endpoint}/drift"

    r = client.get(url, params={"from": same[0], "to": same[1]})
    assert r.status_code == 200, r.text
    mv = r.json()["multivariate"]
    assert mv["status"] == "ok" and mv["features"] == COLS and not mv["drifted"]

    r = client.get(url, params={"from": shifted[0], "to": shifted[1]})
    rep = r.json()
    # every marginal is what it was: no per-feature test sees a thing
    assert not rep["dataset_drift"]
    assert not any(f["drifted"] for f in rep["features"]), rep["features"]
    mv = rep["multivariate"]
    assert mv["drifted"] and mv["error"] > mv["high"]

    # the monitoring pass keeps the figure, for alert rules
    [res] = compute(cm, endpoint, now_us() - 3_600_000_000, now_us() + 1)
    assert res.metrics["multivariate_error"] is not None
