"""Fair selection: a challenger that wins on quality but breaks a fairness guardrail is
held back, and the ledger says which guardrail with its numbers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from access_support import admin_client
from chronoml.cli.common import cli
from chronoml.domain.challenger import FairnessJudgement, Policy, PolicyError, decide
from chronoml.gateway.app import create_app
from chronoml.retrain.runner import JobRunner
from chronoml.store import ledger as SL
from chronoml.store import retrain_configs as RC
from loop_support import FEATURES, Synth, config, deploy_first_version, make_data

sqlite_only = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)


@pytest.fixture
def synth(cm: Any, tmp_path: Path) -> Synth:
    return deploy_first_version(cm, tmp_path)


@pytest.fixture
def client(cm: Any, settings: Any) -> Iterator[TestClient]:
    quiet = replace(settings, retrain_interval_s=0, monitor_interval_s=0)
    with admin_client(create_app(quiet, cm)) as c:
        yield c


def _serve(client: TestClient, endpoint: str, n: int, challenger: str) -> list[dict[str, Any]]:
    """Drifted traffic, one row a request, with a group in the context. The labels make
    the challenger right for group A and wrong for group B: accurate overall (most rows
    are A), and its error rates differ completely between the groups."""
    df = make_data(n, 7, drifted=True)
    groups = np.where(np.random.default_rng(8).random(n) < 0.88, "A", "B")
    labels = []
    for i in range(n):
        body = {
            "dataframe_split": {"columns": FEATURES, "data": [df[FEATURES].iloc[i].tolist()]},
            "context": {"group": str(groups[i])},
        }
        r = client.post(
            f"/v1/endpoints/{endpoint}/predict",
            json=body,
            headers={"X-Chronoml-Unit": uuid.uuid4().hex},
        )
        assert r.status_code == 200, r.text
        got = r.json()
        truth = int(df["target"].iloc[i])
        if got["variant"] == challenger:
            pred = got["predictions"][0]
            truth = pred if groups[i] == "A" else 1 - pred
        labels.append({"decision_id": got["decision_ids"][0], "label": truth})
    return labels


def test_an_accurate_but_unfair_challenger_is_held_back(
    cm: Any, settings: Any, synth: Synth, client: TestClient
) -> None:
    ep = synth.endpoint
    RC.put(
        cm.store,
        config(
            synth,
            deploy="canary",
            share=50,
            max_gap=("equalized_odds_difference=0.2",),
            fairness_attributes=("group",),
        ),
    )
    runner = JobRunner(cm, settle_s=0)
    job, _ = runner.start_job(ep, "alice")
    job = runner.advance(job.id)
    assert job.status == "evaluating", (job.reason, job.log)
    client.app.state.gateway.live.refresh()  # type: ignore[attr-defined]
    labels = _serve(client, ep, 480, job.challenger or "")
    assert client.post("/v1/feedback", json={"labels": labels}).status_code == 200

    job = runner.advance(job.id)
    assert job.status == "rolled_back", (job.reason, job.evaluation)
    ev = job.evaluation
    assert ev is not None
    # it won on quality...
    c = ev["comparison"]
    assert c["verdict"] == "B better" or "not worse" in ev["decision"]["reason"]
    # ...and broke the guardrail, which the decision names with its numbers
    assert ev["decision"]["action"] == "rollback"
    assert "fairness guardrail" in ev["decision"]["reason"]
    assert "equalized_odds_difference" in ev["decision"]["reason"]
    [check] = ev["fairness"]["verdict"]["checks"]
    assert check["status"] == "fail" and check["attribute"] == "group"
    assert check["challenger"] > 0.9 and check["bound"] == 0.2
    verdict = next(e for e in SL.history(cm.store, ep) if e.kind == "experiment_verdict")
    assert verdict.payload["fairness"]["verdict"]["checks"][0]["challenger"] == check["challenger"]
    assert "fairness guardrail" in verdict.payload["decision"]["reason"]
    assert [v.model.version for v in cm.status(ep).variants] == [synth.v1]


def test_the_policy_decides_on_fairness_after_quality() -> None:
    pol = Policy(max_gap=("group:equalized_odds_difference=0.1",))
    assert pol.has_fairness and pol.fairness_attributes_used == ("group",)
    assert Policy.from_dict(pol.to_dict()) == pol  # stored as JSON and read back
    # no quality verdict yet: a failing fairness check alone does not act
    d = decide(pol, None, None, elapsed_us=0, challenger_decisions=0,
               fairness=FairnessJudgement("fail", "x"))  # fmt: skip
    assert d.action == "wait"


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"max_gap": ("equalized_odds_difference",)}, "max_gap"),
        ({"max_gap": ("equalized_odds_difference=-1",)}, "max_gap"),
        ({"fairness_margin": ("group_accuracy=0.02",)}, "fairness_attribute"),
        ({"max_gap": "equalized_odds_difference=0.1"}, "max_gap"),
    ],
)
def test_bad_fairness_settings(kw: dict[str, Any], field: str) -> None:
    with pytest.raises(PolicyError) as err:
        Policy(**kw)
    assert err.value.field == field


@sqlite_only
def test_configure_fairness_from_the_cli(settings: Any, synth: Synth) -> None:
    env = {"MLFLOW_TRACKING_URI": settings.tracking_uri, "CHRONOML_STORE": settings.store_url or ""}
    base = ["--home", str(settings.home), "retrain", "configure", synth.endpoint]
    base += ["--callable", "train_synth:train", "--data", str(synth.fresh)]
    run = CliRunner().invoke
    out = run(
        cli,
        [*base, "--max-gap", "equalized_odds_difference=0.05", "--fairness-attribute", "sex",
         "--fairness-margin", "group_accuracy=0.02"],
        env=env,
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "fairness    equalized_odds_difference=0.05; group_accuracy=0.02 vs champion" in (
        out.output
    )
    out = run(
        cli, [*base, "--max-gap", "group_accuracy=0.02", "--fairness-attribute", "sex"], env=env
    )
    assert out.exit_code == 1 and "margin" in out.output
    out = run(cli, [*base, "--max-gap", "kindness=0.1", "--fairness-attribute", "sex"], env=env)
    assert out.exit_code == 1 and "unknown fairness metric" in out.output
