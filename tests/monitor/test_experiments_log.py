"""A/B analysis on the real decision log and its labels, checked against the domain
statistics computed by hand from what the gateway answered (and against scipy)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats
from sklearn.datasets import load_breast_cancer
from starlette.testclient import TestClient

from access_support import admin_client
from chronoml.cli.common import cli
from chronoml.domain.experiment import (
    SEQUENTIAL_METHOD,
    MeanSummary,
    RateSummary,
    TrafficSplit,
    analyze,
)
from chronoml.gateway.app import create_app
from chronoml.monitor.experiments import experiment
from chronoml.timeutil import iso, now_us

DATA = load_breast_cancer(as_frame=True).frame
X, Y = DATA.drop(columns=["target"]), DATA["target"]


@pytest.fixture
def client(cm: Any, settings: Any) -> Iterator[TestClient]:
    from dataclasses import replace

    quiet = replace(settings, retrain_interval_s=0, monitor_interval_s=0)
    with admin_client(create_app(quiet, cm)) as c:
        yield c


def _send(c: TestClient, rows: range, tag: str) -> list[tuple[str, str, int, int]]:
    """(decision id, variant, prediction, truth) of one single-row request per unit."""
    out = []
    for i in rows:
        body = {"dataframe_split": {"columns": list(X.columns), "data": [X.iloc[i].tolist()]}}
        r = c.post(
            "/v1/endpoints/cancer/predict", json=body, headers={"X-Chronoml-Unit": f"{tag}-{i}"}
        )
        assert r.status_code == 200, r.text
        res = r.json()
        out.append((res["decision_ids"][0], res["variant"], res["predictions"][0], int(Y.iloc[i])))
    return out


def test_ab_on_the_log_matches_the_domain_analysis(
    cm: Any, settings: Any, models: Any, client: TestClient
) -> None:
    c = client
    v1, v2 = f"cancer-v{models.linked_v1}", f"cancer-v{models.linked_v2}"
    start = now_us()
    assert (
        c.put(
            "/v1/endpoints/cancer", json={"model_uri": f"models:/cancer/{models.linked_v1}"}
        ).status_code
        == 200
    )
    before = _send(c, range(0, 20), "early")  # v1 alone: not part of the comparison
    r = c.put(
        "/v1/endpoints/cancer",
        json={"model_uri": f"models:/cancer/{models.linked_v2}", "weight": 30},
    )
    assert r.status_code == 200, r.text
    during = _send(c, range(20, 320), "ab")
    labels = [{"decision_id": d, "label": y} for d, _, _, y in before + during]
    assert c.post("/v1/feedback", json={"labels": labels}).status_code == 200
    end = now_us() + 1

    report = experiment(cm.store, "cancer", start, end, metric="accuracy", min_samples=50)
    assert report["champion"]["variant"] == v1
    assert report["sequential_method"] == SEQUENTIAL_METHOD
    [cmp] = report["comparisons"]
    assert cmp["design"] == "a/b"
    assert (cmp["control"]["variant"], cmp["treatment"]["variant"]) == (v1, v2)

    # by hand, from the answers themselves: only requests made while both were live
    arms = {v: [int(p == y) for _, var, p, y in during if var == v] for v in (v1, v2)}
    a, b = RateSummary.from_outcomes(arms[v1]), RateSummary.from_outcomes(arms[v2])
    assert cmp["control"]["decisions"] == a.n and cmp["treatment"]["decisions"] == b.n
    assert a.n + b.n == 300 and 45 < b.n < 135  # a 70/30 split
    expected = analyze(
        a, b, metric_kind="rate", min_samples=50, expected_split=TrafficSplit(70, 30)
    ).to_dict()
    for key, value in expected.items():
        assert _close(cmp[key], value), key
    assert cmp["srm"]["expected_shares"] == pytest.approx([0.7, 0.3])
    assert cmp["test"] == "two-proportion z-test"
    # the fixed-horizon p-value is scipy's uncorrected chi-square on the 2x2 table
    table = [[a.successes, a.n - a.successes], [b.successes, b.n - b.successes]]
    if 0 < a.successes + b.successes < a.n + b.n:
        assert cmp["p_value"] == pytest.approx(stats.chi2_contingency(table, correction=False)[1])

    # a business metric sent as feedback: the label itself, a mean (Welch)
    rng = np.random.default_rng(0)
    revenue = {d: int(rng.integers(0, 100)) for d, _, _, _ in during}
    r = c.post(
        "/v1/feedback",
        json={
            "labels": [{"decision_id": d, "label": v} for d, v in revenue.items()],
            "update": True,
        },
    )
    assert r.status_code == 200, r.text
    rep = experiment(cm.store, "cancer", start, end, metric="label", min_samples=50)
    [money] = rep["comparisons"]
    va = [revenue[d] for d, var, _, _ in during if var == v1]
    vb = [revenue[d] for d, var, _, _ in during if var == v2]
    want = analyze(
        MeanSummary.from_values(va),
        MeanSummary.from_values(vb),
        metric_kind="mean",
        min_samples=50,
        expected_split=TrafficSplit(70, 30),
    )
    assert money["test"] == "Welch's t-test" and money["verdict"] == want.verdict
    assert money["effect"] == pytest.approx(want.effect)
    assert money["p_value"] == pytest.approx(stats.ttest_ind(vb, va, equal_var=False).pvalue)
    assert money["always_valid_p_value"] == pytest.approx(want.always_valid_p_value)

    # the same report over REST and the CLI
    q = {"from": iso(start), "to": iso(end), "metric": "label", "min_samples": "50"}
    got = c.get("/v1/endpoints/cancer/experiment", params=q)
    assert got.status_code == 200 and got.json()["comparisons"] == json.loads(
        json.dumps(rep["comparisons"])
    )
    env = {"MLFLOW_TRACKING_URI": settings.tracking_uri, "CHRONOML_STORE": settings.store_url or ""}
    run = CliRunner().invoke
    args = [
        "--home",
        str(settings.home),
        "experiment",
        "cancer",
        "--from",
        iso(start),
        "--to",
        iso(end),
    ]
    out = run(cli, [*args, "--metric", "label", "--min-samples", "50", "--json"], env=env)
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["comparisons"] == json.loads(json.dumps(rep["comparisons"]))
    out = run(cli, [*args, "--min-samples", "50"], env=env)
    assert out.exit_code == 0, out.output
    assert "always-valid p=" in out.output and "verdict:" in out.output and "mSPRT" in out.output

    # bad questions get clean errors
    assert c.get("/v1/endpoints/cancer/experiment", params={"metric": "vibes"}).status_code == 400
    assert c.get("/v1/endpoints/ghost/experiment").status_code == 404
    out = run(cli, [*args, "--metric", "vibes"], env=env)
    assert out.exit_code == 1 and "unknown metric" in out.output


def _close(got: Any, want: Any) -> bool:
    if isinstance(want, dict):
        return all(_close(got[k], v) for k, v in want.items())
    if isinstance(want, list | tuple):
        return all(_close(g, w) for g, w in zip(got, want, strict=True))
    if isinstance(want, float):
        return bool(got == pytest.approx(want))
    return bool(got == want)


def test_one_variant_has_nothing_to_compare(cm: Any, models: Any, client: TestClient) -> None:
    start = now_us()
    client.put("/v1/endpoints/cancer", json={"model_uri": f"models:/cancer/{models.linked_v1}"})
    rep = experiment(cm.store, "cancer", start, now_us() + 1)
    assert rep["comparisons"] == [] and "fewer than two variants" in rep["note"]
