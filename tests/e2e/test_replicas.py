"""Several server processes on one store: `--workers N`, and independent replicas
on PostgreSQL that see each other's changes within a second."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sklearn.datasets import load_breast_cancer
from test_faults import Server, _open, _settings

X = load_breast_cancer(as_frame=True).frame.drop(columns=["target"])
BODY = {"dataframe_split": {"columns": list(X.columns), "data": X.iloc[:2].values.tolist()}}


def _live_within(base: str, version: str, seconds: float, since: float) -> None:
    while True:
        r = httpx.post(f"{base}/v1/endpoints/cancer/predict", json=BODY, timeout=10)
        if r.status_code == 200 and r.json()["model"]["version"] == version:
            return
        assert time.time() - since < seconds, f"{base} still serves {r.text[:200]}"
        time.sleep(0.02)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_workers_share_the_store(
    backend: str, tmp_path: Path, models: Any, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    s = _settings(tmp_path, models, store_url=url)
    cm = _open(s)
    cm.deploy("cancer", f"models:/cancer/{models.linked_v1}")
    cm.close()
    server = Server(s, "--workers", "2")
    try:
        with httpx.Client(base_url=server.base, timeout=10, headers=server.auth) as c:
            ids = []
            for i in range(40):
                r = c.post(
                    "/v1/endpoints/cancer/predict", json=BODY, headers={"X-Chronoml-Unit": str(i)}
                )
                assert r.status_code == 200, r.text
                ids += r.json()["decision_ids"]
            assert c.get(f"/v1/decisions/{ids[-1]}").json()["model"]["version"] == models.linked_v1
            # a change through the API of one worker is live on every worker
            r = c.put(
                "/v1/endpoints/cancer", json={"model_uri": f"models:/cancer/{models.linked_v2}"}
            )
            assert r.status_code == 200, r.text
            changed = time.time()
            for _ in range(20):  # whichever worker answers
                _live_within(server.base, models.linked_v2, 1.0, changed)
    finally:
        server.close()


@pytest.mark.slow
def test_independent_replicas_on_postgresql_follow_each_other(
    tmp_path: Path, models: Any, pg_url: str
) -> None:
    s = _settings(tmp_path, models, store_url=pg_url)
    cm = _open(s)
    cm.deploy("cancer", f"models:/cancer/{models.linked_v1}")
    cm.close()
    # separate homes: replicas share only the database, as on separate machines
    replicas = [Server(_settings(tmp_path / f"r{i}", models, store_url=pg_url)) for i in range(2)]
    try:
        a, b = (r.base for r in replicas)
        for base in (a, b):
            _live_within(base, models.linked_v1, 5.0, time.time())
        # through replica A's API: live on B within a second
        r = httpx.put(
            f"{a}/v1/endpoints/cancer",
            json={"model_uri": f"models:/cancer/{models.linked_v2}"},
            headers=replicas[0].auth,
            timeout=30,
        )
        assert r.status_code == 200, r.text
        changed = time.time()
        _live_within(b, models.linked_v2, 1.0, changed)
        _live_within(a, models.linked_v2, 1.0, changed)
        # through the CLI: live on both within a second
        env = {"CHRONOML_STORE": pg_url, "MLFLOW_TRACKING_URI": models.tracking_uri}
        out = subprocess.run(
            [sys.executable, "-m", "chronoml.cli", "--home", str(s.home), "rollback", "cancer"],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
        )
        assert out.returncode == 0, out.stderr
        changed = time.time()
        for base in (a, b):
            _live_within(base, models.linked_v1, 1.0, changed)
    finally:
        for r in replicas:
            r.close()
