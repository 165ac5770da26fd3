"""The steps that decide about a challenger: evaluate, then promote or roll back."""

from __future__ import annotations

import logging
from typing import Any

from chronoml import endpoints
from chronoml.domain import challenger as P
from chronoml.domain import experiment as X
from chronoml.domain import ledger as L
from chronoml.errors import NotFound, Refused
from chronoml.monitor.experiments import Arm, compare
from chronoml.retrain import fair_selection
from chronoml.retrain.base import JobSteps, StepFailed
from chronoml.store import jobs as J
from chronoml.store import ledger as SL
from chronoml.timeutil import iso, now_us

log = logging.getLogger("chronoml.retrain")


class Judging(JobSteps):
    """From a deployed challenger to a promoted or rolled back one."""

    def evaluate(self, job: J.Job, now: int | None = None) -> dict[str, Any]:
        """One look at the challenger against the champion, and the policy's decision."""

        policy = job.config.policy
        deploy = SL.event(self.store, job.deploy_seq or 0)
        assert deploy is not None and deploy.state is not None
        t = now_us() if now is None else now
        start = deploy.effective_at
        champ = next((v for v in deploy.state if v.name == job.champion), None)
        chal = next((v for v in deploy.state if v.name == job.challenger), None)
        if champ is None or chal is None:
            raise StepFailed("the deploy event does not hold both the champion and the challenger")
        control = Arm(champ.name, champ.model.name, champ.model.version, False, champ.since)
        treatment = Arm(chal.name, chal.model.name, chal.model.version, chal.shadow, chal.since)
        c = compare(
            self.store,
            job.endpoint,
            control,
            treatment,
            start,
            t,
            metric=policy.metric,
            alpha=policy.alpha,
            min_samples=policy.min_samples,
            max_samples=policy.max_samples,
            equivalence_margin=policy.margin,
            higher_is_better=policy.higher_is_better,
            settle_us=self.settle_us,
        )
        guard: X.GuardrailResult | None = None
        if c.decisions[1] >= policy.min_samples and c.decisions[0] > 0:
            # quality is judged by the sequential test (with the margin), not by point estimates
            guard = X.guardrail_check(
                X.ServingStats(c.champion_serving.error_rate, c.champion_serving.p99_latency_ms),
                X.ServingStats(
                    c.challenger_serving.error_rate, c.challenger_serving.p99_latency_ms
                ),
                max_error_rate_increase=policy.max_error_rate_increase,
                max_p99_ratio=policy.max_p99_ratio,
                max_quality_drop=policy.margin,
            )
        has_outcomes = min(c.labelled) > 0
        fair = (
            fair_selection.judge(self.store, job.endpoint, policy, control, treatment, start, t)
            if policy.has_fairness
            else None
        )
        decision = P.decide(
            policy,
            c.result if has_outcomes else None,
            guard,
            elapsed_us=t - start,
            challenger_decisions=c.decisions[1],
            fairness=fair.judgement if fair is not None else None,
        )
        out = {
            "at": iso(t),
            "window": {"from": iso(start), "to": iso(t)},
            "metric": policy.metric,
            "comparison": c.to_dict(),
            "guardrails": _guardrails_dict(guard, c.decisions[1], policy.min_samples),
            "decision": decision.to_dict(),
        }
        if fair is not None:
            out["fairness"] = fair.to_dict()
        return out

    def _evaluate(self, job: J.Job, now: int | None) -> None:
        gone = self._challenger_gone(job)
        if gone is not None:
            self._removed(job, gone)
            return
        ev = self.evaluate(job, now)
        action = ev["decision"]["action"]
        if action == "wait":
            self._write(
                lambda conn: J.update_in(conn, job.id, self.owner, evaluation=ev, reason=None)
            )
            return
        cmp = ev["comparison"]
        payload = {
            "job": {"id": job.id},
            "metric": ev["metric"],
            "window": ev["window"],
            "control": {
                k: cmp["control"][k] for k in ("variant", "model", "decisions", "labelled")
            },
            "treatment": {
                k: cmp["treatment"][k] for k in ("variant", "model", "decisions", "labelled")
            },
            "design": cmp["design"],
            "experiment": {
                k: cmp[k]
                for k in (
                    "verdict",
                    "reason",
                    "control",
                    "treatment",
                    "effect",
                    "confidence_interval",
                    "p_value",
                    "test",
                    "always_valid_p_value",
                    "confidence_sequence",
                    "sequential_method",
                    "srm",
                    "mde",
                    "mde_sequential",
                )
            },
            "serving": cmp["serving"],
            "guardrails": ev["guardrails"],
            "decision": ev["decision"],
        }
        if "fairness" in ev:
            payload["fairness"] = ev["fairness"]
        step = {"promote": "promote", "rollback": "rollback", "ask": "approval"}[action]
        status = "awaiting_approval" if action == "ask" else "running"
        self._move(
            job,
            "evaluate",
            {"decision": ev["decision"]},
            event=L.Change("experiment_verdict", job.endpoint, self.actor, payload),
            evaluation=ev,
            verdict_seq=None,  # filled in with the verdict event's seq
            step=step,
            status=status,
            reason=ev["decision"]["reason"],
        )

    def _removed(self, job: J.Job, gone: L.LedgerEvent) -> None:
        """The challenger left the endpoint without this job: say how, and stop."""
        _, state = self._state(job)
        who = f"event #{gone.seq} ({gone.kind} by {gone.actor}: {L.event_summary(gone)})"
        only = state.answering
        if len(only) == 1 and only[0].name == job.challenger:
            self._finish(job, "promoted", f"promoted outside the job by {who}", gone.seq)
        else:
            self._finish(job, "rolled_back", f"the challenger was removed by {who}", gone.seq)

    def _promote(self, job: J.Job) -> None:
        ev = self._mine(job, "promotion")
        if ev is None:
            gone = self._challenger_gone(job)
            if gone is not None:
                self._removed(job, gone)
                return
            uri = f"models:/{job.model_name}/{job.model_version}"
            try:
                ev = endpoints.deploy(
                    self.cm,
                    job.endpoint,
                    uri,
                    variant=job.challenger,
                    actor=self.actor,
                    extra={
                        "job": {"id": job.id, "role": "promotion", "verdict_seq": job.verdict_seq},
                        "reason": job.reason,
                    },
                )
            except (Refused, NotFound) as exc:
                raise StepFailed(f"cannot promote {uri}: {exc}") from None
        self._move(
            job,
            "promote",
            {"event": ev.seq},
            status="promoted",
            final_seq=ev.seq,
        )

    def _rollback(self, job: J.Job) -> None:
        ev = self._mine(job, "rollback")
        if ev is None:
            gone = self._challenger_gone(job)
            if gone is not None:
                self._removed(job, gone)
                return
            mark = {"id": job.id, "role": "rollback", "verdict_seq": job.verdict_seq}
            latest, state = self._state(job)
            reason = job.reason or "rolled back by the retraining policy"
            if latest is not None and latest.seq == job.deploy_seq:
                change = L.Change(
                    "rollback",
                    job.endpoint,
                    self.actor,
                    {"reason": reason, "canary_seq": job.deploy_seq, "job": mark},
                )
            else:
                v = state.variant(job.challenger or "")
                if v is None or v.shadow:
                    raise StepFailed(
                        f"cannot roll back the shadow {job.challenger}: the endpoint changed "
                        f"after it was deployed (event #{latest.seq if latest else '?'}); "
                        "remove it by hand"
                    )
                others = [x for x in state.answering if x.name != v.name]
                scaled = L.scale_weights([x.weight for x in others], L.TOTAL_WEIGHT)
                weights = {x.name: w for x, w in zip(others, scaled, strict=True)}
                weights[v.name] = 0
                change = L.Change(
                    "set_weights",
                    job.endpoint,
                    self.actor,
                    {"weights_bp": weights, "reason": reason, "job": mark},
                )
            try:
                ev = SL.append(self.store, change)
            except L.LedgerError as exc:
                raise StepFailed(f"cannot roll back {job.challenger}: {exc}") from None
        self._move(job, "rollback", {"event": ev.seq}, status="rolled_back", final_seq=ev.seq)


def _guardrails_dict(g: X.GuardrailResult | None, n: int, needed: int) -> dict[str, Any]:
    if g is None:
        return {"judged": False, "reason": f"{n} challenger decisions, judged from {needed}"}
    return {
        "judged": True,
        "passed": g.passed,
        "checks": [
            {
                "name": c.name,
                "passed": c.passed,
                "observed": c.observed if c.observed == c.observed else None,
                "limit": c.limit,
                "reason": c.reason,
            }
            for c in g.checks
        ],
        "quality": "judged by the sequential A/B test against the margin",
    }
