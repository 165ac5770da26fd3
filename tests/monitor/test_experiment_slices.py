"""The A/B analysis per slice on the real decision log: each slice's figures equal the
domain analysis of that slice's outcomes, and the p-values are Holm-adjusted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.datasets import load_breast_cancer
from starlette.testclient import TestClient

from access_support import admin_client
from chronoml.cli.common import cli
from chronoml.domain.ab_stats import holm
from chronoml.domain.experiment import RateSummary, analyze
from chronoml.gateway.app import create_app
from chronoml.monitor.experiments import experiment
from chronoml.timeutil import now_us

DATA = load_breast_cancer(as_frame=True).frame
X = DATA.drop(columns=["target"])


@pytest.fixture
def client(cm: Any, settings: Any) -> Iterator[TestClient]:
    from dataclasses import replace

    quiet = replace(settings, retrain_interval_s=0, monitor_interval_s=0)
    with admin_client(create_app(quiet, cm)) as c:
        yield c


def _ab(c: TestClient, models: Any, n: int) -> tuple[int, list[tuple[str, str, str, int]]]:
    """An A/B test where the challenger converts better in the north, worse in the south."""
    start = now_us()
    r = c.put("/v1/endpoints/cancer", json={"model_uri": f"models:/cancer/{models.linked_v1}"})
    assert r.status_code == 200, r.text
    r = c.put(
        "/v1/endpoints/cancer",
        json={"model_uri": f"models:/cancer/{models.linked_v2}", "weight": 50},
    )
    assert r.status_code == 200, r.text
    rng = np.random.default_rng(5)
    v2 = f"cancer-v{models.linked_v2}"
    sent = []
    for i in range(n):
        region = "north" if i % 2 else "south"
        body = {
            "dataframe_split": {"columns": list(X.columns), "data": [X.iloc[i].tolist()]},
            "context": {"region": region},
        }
        r = c.post("/v1/endpoints/cancer/predict", json=body, headers={"X-Chronoml-Unit": f"u{i}"})
        assert r.status_code == 200, r.text
        got = r.json()
        rate = (0.85 if region == "north" else 0.15) if got["variant"] == v2 else 0.5
        sent.append((got["decision_ids"][0], got["variant"], region, int(rng.random() < rate)))
    labels = [{"decision_id": d, "label": y} for d, _, _, y in sent]
    assert c.post("/v1/feedback", json={"labels": labels}).status_code == 200
    return start, sent


def test_experiment_by_context_matches_the_analysis_of_each_slice(
    cm: Any, settings: Any, models: Any, client: TestClient
) -> None:
    start, sent = _ab(client, models, 240)
    end = now_us() + 1
    v1, v2 = f"cancer-v{models.linked_v1}", f"cancer-v{models.linked_v2}"
    rep = experiment(cm.store, "cancer", start, end, metric="label", min_samples=20, by="region")
    [cmp] = rep["comparisons"]
    by = cmp["by"]
    assert by["attribute"] == "region" and by["source"] == "context"
    assert by["adjustment"] == "holm"
    got = {s["slice"]: s for s in by["slices"]}
    assert set(got) == {"north", "south"}
    raw = []
    for region in ("north", "south"):
        a = [y for _, var, reg, y in sent if var == v1 and reg == region]
        b = [y for _, var, reg, y in sent if var == v2 and reg == region]
        want = analyze(
            RateSummary.from_outcomes(a),
            RateSummary.from_outcomes(b),
            metric_kind="rate",
            min_samples=20,
        )
        s = got[region]
        assert (s["control"]["outcomes"], s["treatment"]["outcomes"]) == (len(a), len(b))
        assert s["effect"] == pytest.approx(want.effect)
        assert s["p_value"] == pytest.approx(want.p_value)
        assert s["confidence_interval"]["low"] == pytest.approx(want.confidence_interval.low)
        raw.append(want.p_value)
    # Holm over two slices: the smaller p doubled, the larger kept (never below the first)
    lo, hi = sorted(raw)
    adjusted = [min(1.0, 2 * lo), max(min(1.0, 2 * lo), hi)]
    assert sorted(s["p_value_adjusted"] for s in got.values()) == pytest.approx(adjusted)
    assert got["north"]["effect"] > 0 > got["south"]["effect"]
    assert by["worst"] == "south" and got["south"]["worst"] and not got["north"]["worst"]
    assert got["south"]["significant"] and got["north"]["significant"]
    # the whole comparison is unchanged by asking for slices
    plain = experiment(cm.store, "cancer", start, end, metric="label", min_samples=20)
    assert plain["comparisons"][0]["effect"] == pytest.approx(cmp["effect"])
    assert "by" not in plain["comparisons"][0]

    # by a numeric model input: quantile bins over both arms' outcomes
    rep = experiment(
        cm.store, "cancer", start, end, metric="label", min_samples=20, by="mean radius", bins=3
    )
    by = rep["comparisons"][0]["by"]
    assert by["source"] == "input" and by["binning"]["bins"] == 3
    total = sum(s["control"]["outcomes"] + s["treatment"]["outcomes"] for s in by["slices"])
    assert total == len(sent)

    # REST and CLI
    params = {"window": "1h", "metric": "label", "min_samples": "20"}
    r = client.get("/v1/endpoints/cancer/experiment", params={**params, "by": "region"})
    assert r.status_code == 200, r.text
    assert r.json()["comparisons"][0]["by"]["worst"] == "south"
    r = client.get("/v1/endpoints/cancer/experiment", params={**params, "by": "planet"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "by"
    env = {"MLFLOW_TRACKING_URI": settings.tracking_uri, "CHRONOML_STORE": settings.store_url or ""}
    home = ["--home", str(settings.home)]
    args = [*home, "experiment", "cancer", "--window", "1h", "--metric", "label"]
    out = CliRunner().invoke(cli, [*args, "--min-samples", "20", "--by", "region"], env=env)
    assert out.exit_code == 0, out.output
    assert "p adjusted by Holm" in out.output
    south = next(line for line in out.output.splitlines() if line.strip().startswith("south"))
    assert "<- worst" in south
    out = CliRunner().invoke(cli, [*args, "--by", "region", "--json"], env=env)
    assert json.loads(out.output)["comparisons"][0]["by"]["attribute"] == "region"
    out = CliRunner().invoke(cli, [*args, "--by", "planet"], env=env)
    assert out.exit_code != 0 and "--by" in out.output


def test_experiment_by_on_an_empty_window_is_a_4xx(models: Any, client: TestClient) -> None:
    r = client.put("/v1/endpoints/cancer", json={"model_uri": f"models:/cancer/{models.linked_v1}"})
    r = client.put(
        "/v1/endpoints/cancer",
        json={"model_uri": f"models:/cancer/{models.linked_v2}", "weight": 50},
    )
    assert r.status_code == 200
    r = client.get("/v1/endpoints/cancer/experiment", params={"by": "region"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "window"


def test_holm() -> None:
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, float("nan"), 0.01]) == pytest.approx([0.5, float("nan"), 0.02], nan_ok=True)
    # step-down and monotone: 2 x 0.8 caps at 1, and the larger p is never adjusted below it
    assert holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])
    assert holm([0.2, 0.01]) == pytest.approx([0.2, 0.02])
