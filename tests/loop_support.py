"""Shared pieces of the closed-loop tests: data that drifts, a first version, entrypoints."""

from __future__ import annotations

import textwrap
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

FEATURES = ["x0", "x1", "x2", "x3"]


def make_data(n: int, seed: int, drifted: bool) -> pd.DataFrame:
    """Before the drift the label is x0 + x1 > 0; after it the inputs shift and the
    label becomes x0 - x1 > 0, so a model trained before is right about half the time."""
    rng = np.random.default_rng(seed)
    x = rng.normal(1.5 if drifted else 0.0, 1.0, size=(n, len(FEATURES)))
    y = (x[:, 0] - x[:, 1] > 0) if drifted else (x[:, 0] + x[:, 1] > 0)
    df = pd.DataFrame(x, columns=FEATURES)
    df["target"] = y.astype(int)
    return df


# Training entrypoints, written into the job's working directory. `train`
# imports MLflow and scikit-learn; the faulty ones import nothing heavy so
# they fail (or hang) fast.
TRAIN_MODULE = textwrap.dedent(
    """
    import os

    import mlflow
    import sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    import chronoml
    from chronoml.retrain.entry import training_data


    def train(data_version, model_name, link="yes"):
        snap, df = training_data(data_version)
        X, y = df.drop(columns=["target"]), df["target"]
        model = LogisticRegression().fit(X, y)
        print(f"trained on {snap.rows} rows of {snap.id}")
        with mlflow.start_run():
            if link == "yes":
                chronoml.log_snapshot(snap)
            mlflow.sklearn.log_model(
                model,
                name="model",
                registered_model_name=model_name,
                signature=infer_signature(X, y),
                pip_requirements=[f"scikit-learn=={sklearn.__version__}"],
            )
    """
)

FAULTY_MODULE = textwrap.dedent(
    """
    import os
    import sys
    import time


    def fail(data_version, **params):
        print("loading", data_version)
        raise RuntimeError("the feature store is down")


    def hang(data_version, pidfile="", **params):
        if pidfile:
            with open(pidfile, "w") as f:
                f.write(str(os.getpid()))
        print("training forever", flush=True)
        time.sleep(600)


    def nothing(data_version, **params):
        print("trained, but forgot to register")
    """
)


@dataclass
class Synth:
    """An endpoint serving v1 of a model trained before the drift."""

    endpoint: str
    model: str
    v1: str
    workdir: Path
    fresh: Path  # the "fresh data" file the job snapshots: drifted data
    old: pd.DataFrame


def deploy_first_version(cm: Any, tmp_path: Path) -> Synth:
    import mlflow
    import sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    from chronoml.registry import configure, log_snapshot
    from chronoml.store import snapshots

    # the process's MLflow client may point at another test's store by now
    configure(cm.settings)
    tag = uuid.uuid4().hex[:8]
    model, endpoint = f"synth-{tag}", f"synth-{tag}"
    old = make_data(600, 1, drifted=False)
    snap = snapshots.take(cm.store, old, "synth")
    exp = mlflow.create_experiment(
        f"loop-{tag}", artifact_location=(tmp_path / "artifacts").as_uri()
    )
    X, y = old[FEATURES], old["target"]
    with mlflow.start_run(experiment_id=exp):
        log_snapshot(snap)
        info = mlflow.sklearn.log_model(
            LogisticRegression().fit(X, y),
            name="model",
            registered_model_name=model,
            signature=infer_signature(X, y),
            pip_requirements=[f"scikit-learn=={sklearn.__version__}"],
        )
    v1 = str(info.registered_model_version)
    cm.deploy(endpoint, f"models:/{model}/{v1}", actor="alice")
    workdir = tmp_path / "training"
    workdir.mkdir()
    (workdir / "train_synth.py").write_text(TRAIN_MODULE)
    (workdir / "faulty.py").write_text(FAULTY_MODULE)
    fresh = tmp_path / "fresh.csv"
    make_data(600, 2, drifted=True).to_csv(fresh, index=False)
    return Synth(endpoint, model, v1, workdir, fresh, old)


def config(s: Synth, target: str = "train_synth:train", **policy: Any) -> Any:
    from chronoml.domain.challenger import Policy
    from chronoml.domain.retraining import DataSource, Entrypoint, RetrainConfig

    params = {"model_name": s.model} if target.startswith("train_synth") else {}
    timeout = policy.pop("timeout_us", 120_000_000)
    holdout = policy.pop("holdout", None)
    return RetrainConfig(
        endpoint=s.endpoint,
        entrypoint=Entrypoint("callable", target, params, workdir=str(s.workdir)),
        data=DataSource(path=str(s.fresh), name="synth"),
        # latency limits far away: a loaded test machine must not trip them
        policy=Policy(
            **{"min_samples": 100, "max_p99_ratio": 1000.0, "canary_max_p99_ms": 60_000.0, **policy}
        ),
        timeout_us=timeout,
        holdout=holdout,
    )


def predict_rows(
    client: Any, endpoint: str, df: pd.DataFrame, *, per_request: int = 1
) -> list[str]:
    """Send ``df``'s feature rows, ``per_request`` at a time, each with a unit key of its own."""
    ids: list[str] = []
    for i in range(0, len(df), per_request):
        part = df.iloc[i : i + per_request]
        body = {"dataframe_split": {"columns": FEATURES, "data": part[FEATURES].values.tolist()}}
        r = client.post(
            f"/v1/endpoints/{endpoint}/predict",
            json=body,
            headers={"X-Chronoml-Unit": f"unit-{i}"},
        )
        assert r.status_code == 200, r.text
        ids.extend(r.json()["decision_ids"])
    return ids
