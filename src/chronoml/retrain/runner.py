"""The retraining runner: takes a job from fresh data to a promoted or rolled back challenger.

Steps, each recorded in ``job_steps`` (and the decisions on the ledger):

``snapshot``  snapshot the configured path or query (content-addressed);
``train``     run the entrypoint with the snapshot id, under the timeout;
``register``  find the new version of the model, linked to that snapshot;
``validate``  score it on the holdout, if one is configured (``job_trained``);
``deploy``    deploy it as a shadow or a canary, per the policy;
``evaluate``  at every pass, A/B analysis and guardrails against the champion
              (:func:`chronoml.domain.challenger.decide`); a decision is an
              ``experiment_verdict`` event with its numbers;
``approval``  with ``approval=manual``, wait for ``chronoml approve``;
``promote``   deploy the challenger as the only answering variant, or
``rollback``  undo its deploy.

Restarts. A job is advanced by whichever worker holds its lease; a worker
that dies stops renewing it, and the next pass of any worker takes the job
over where it stopped. Every step is safe to run again except training: a
job found with its entrypoint started and never finished is failed with
that reason, never re-run. Each change of what is live carries
``{"job": {"id", "role"}}`` in its ledger payload, and a step looks for its
own event before it makes one, so a worker that died between recording a
deploy and noting it in the job never deploys twice.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from chronoml import endpoints
from chronoml.context import Context
from chronoml.domain import challenger as P
from chronoml.domain import experiment as X
from chronoml.domain import ledger as L
from chronoml.errors import NotFound, Refused
from chronoml.registry import ensure_experiment
from chronoml.retrain import entrypoint as EP
from chronoml.store import jobs as J
from chronoml.store import ledger as SL
from chronoml.store import retrain_configs as RC
from chronoml.store import snapshots
from chronoml.store.database import Tx
from chronoml.store.sources import read_query
from chronoml.timeutil import iso, now_us
from chronoml.worker import Worker

log = logging.getLogger("chronoml.retrain")


class StepFailed(Exception):
    """The job cannot go on; ``reason`` says why (and ``log`` what the entrypoint printed)."""

    def __init__(self, reason: str, log: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.log = log


def champion_of(state: L.EndpointState, exclude: str | None = None) -> L.Variant | None:
    """The answering variant with the largest share (the earliest on a tie)."""
    answering = [v for v in state.answering if v.name != exclude]
    if not answering:
        return None
    return max(answering, key=lambda v: (v.weight, -(v.since or 0)))


class JobRunner:
    """Advances retraining jobs; one per process is enough (``chronoml server`` has one).

    ``settle_s``: a shadow's copies are logged just after the champion's
    answers, so a look ignores the last few seconds for its error rate.
    ``on_step`` is called with each job after every step (progress display).
    """

    def __init__(
        self,
        cm: Context,
        *,
        lease_s: float = 60.0,
        settle_s: float = 5.0,
        interval_s: float = 10.0,
        owner: str | None = None,
        on_step: Callable[[J.Job], None] | None = None,
    ) -> None:
        self.cm = cm
        self.store = cm.store
        self.lease_us = int(lease_s * 1_000_000)
        self.settle_us = int(settle_s * 1_000_000)
        self.interval_s = interval_s
        host = socket.gethostname()
        self.owner = owner or f"{host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.actor = f"chronoml-retrain@{host}"
        self.on_step = on_step
        self._worker = Worker("chronoml-retrain", self._pass, interval_s)

    # --- triggers ------------------------------------------------------------

    def start_job(self, endpoint: str, actor: str) -> tuple[J.Job, bool]:
        """Queue a job by hand; ``(the unfinished job, False)`` if there already is one."""
        cfg = RC.get(self.store, endpoint)
        if cfg is None:
            raise NotFound(
                f"no retraining configured for {endpoint!r}: "
                f"chronoml retrain configure {endpoint} --callable module:function --data PATH"
            )
        return J.enqueue(self.store, cfg, {"kind": "manual", "actor": actor})

    def run_once(self, now: int | None = None) -> list[J.Job]:
        """Queue scheduled jobs that are due, then advance every unfinished job."""
        t = now_us() if now is None else now
        for cfg in RC.due(self.store, t):
            job, created = J.enqueue(
                self.store, cfg, {"kind": "schedule", "every_us": cfg.every_us}
            )
            if not created:
                log.info(
                    "scheduled retraining of %s: job %d still unfinished", cfg.endpoint, job.id
                )
        return [self.advance(job.id, now=now) for job in J.unfinished(self.store)]

    def _pass(self) -> None:
        self.run_once()

    def start(self) -> None:
        """Advance jobs every ``interval_s`` in a background thread (0: never)."""
        self._worker.start()

    def wake(self) -> None:
        """Run a pass now (a job was queued or approved)."""
        self._worker.wake()

    @property
    def started(self) -> bool:
        return self._worker.started

    @property
    def running(self) -> bool:
        return self._worker.running

    def stop(self) -> None:
        self._worker.stop()

    # --- advancing -----------------------------------------------------------

    def advance(self, job_id: int, now: int | None = None) -> J.Job:
        """Take the job as far as it can go now; returns it as it then stands.

        A job another live worker holds is left alone. ``now`` (default: the
        clock) ends the evaluation window.
        """
        job = J.claim(self.store, job_id, self.owner, self.lease_us)
        if job is None:
            current = J.get(self.store, job_id)
            if current is None:
                raise NotFound(f"unknown job {job_id}")
            return current
        try:
            while not job.finished:
                before = (job.step, job.status)
                try:
                    self._step(job, now)
                except StepFailed as exc:
                    self._fail(job, exc.reason, exc.log)
                except J.LeaseLost:
                    raise
                except Exception as exc:
                    if job.deploy_seq is None:
                        log.exception("job %d failed at %s", job.id, job.step)
                        self._fail(job, f"internal error at {job.step}: {exc}")
                    else:
                        # something is live: keep the job, try again at the next pass
                        log.exception("job %d: %s failed, retried later", job.id, job.step)
                        self._note(job_id, f"retrying {job.step}: {exc}")
                        break
                job = self._get(job_id)
                if self.on_step is not None:
                    self.on_step(job)
                if (job.step, job.status) == before:
                    break  # waiting: for data, an approval, or the next pass
        except J.LeaseLost as exc:
            log.warning("%s", exc)
        finally:
            J.release(self.store, job_id, self.owner)
        return self._get(job_id)

    def _note(self, job_id: int, reason: str) -> None:
        def go(conn: Tx) -> None:
            J.update_in(conn, job_id, self.owner, reason=reason)

        self._write(go)

    def _get(self, job_id: int) -> J.Job:
        job = J.get(self.store, job_id)
        assert job is not None
        return job

    def _step(self, job: J.Job, now: int | None) -> None:
        if job.status == "queued":
            self._begin(job)
            return
        handler = {
            "snapshot": self._snapshot,
            "train": self._train,
            "register": self._register,
            "validate": self._validate,
            "deploy": self._deploy,
            "evaluate": lambda j: self._evaluate(j, now),
            "approval": lambda j: None,
            "promote": self._promote,
            "rollback": self._rollback,
        }[job.step]
        handler(job)

    # --- helpers -------------------------------------------------------------

    def _write(self, fn: Callable[[Tx], Any]) -> Any:
        return J.retrying(self.store, fn)

    def _move(
        self,
        job: J.Job,
        step_done: str,
        detail: Mapping[str, Any] | None,
        *,
        event: L.Change | None = None,
        **values: Any,
    ) -> L.LedgerEvent | None:
        """Finish ``step_done``: optionally record a ledger event, update the job, log the step."""

        def go(conn: Tx) -> L.LedgerEvent | None:
            ev = SL.append_in(conn, event) if event is not None else None
            if ev is not None and "verdict_seq" in values and values["verdict_seq"] is None:
                values["verdict_seq"] = ev.seq
            J.update_in(conn, job.id, self.owner, **values)
            J.step_in(conn, job.id, step_done, "done", detail, ledger_seq=ev.seq if ev else None)
            return ev

        ev: L.LedgerEvent | None = self._write(go)
        return ev

    def _fail(self, job: J.Job, reason: str, output: str | None = None) -> None:
        step = job.step
        change = L.Change(
            "job_failed",
            job.endpoint,
            self.actor,
            {"job": {"id": job.id}, "step": step, "reason": reason},
        )

        def go(conn: Tx) -> None:
            ev = SL.append_in(conn, change)
            values: dict[str, Any] = {"status": "failed", "reason": reason, "final_seq": ev.seq}
            if output is not None:
                values["log"] = output
            J.update_in(conn, job.id, self.owner, **values)
            J.step_in(conn, job.id, step, "failed", {"reason": reason}, ledger_seq=ev.seq)

        self._write(go)
        log.warning("retraining job %d of %s failed at %s: %s", job.id, job.endpoint, step, reason)

    def _finish(self, job: J.Job, status: str, reason: str, seq: int | None) -> None:
        def go(conn: Tx) -> None:
            J.update_in(conn, job.id, self.owner, status=status, reason=reason, final_seq=seq)
            J.step_in(conn, job.id, job.step, "done", {"outcome": status, "reason": reason})

        self._write(go)

    def _mine(self, job: J.Job, role: str) -> L.LedgerEvent | None:
        """This job's own state change of ``role``, if an earlier attempt recorded it."""
        for e in reversed(SL.history(self.store, job.endpoint)):
            j = e.payload.get("job")
            if isinstance(j, Mapping) and j.get("id") == job.id and j.get("role") == role:
                return e
            if e.seq < (job.deploy_seq or 0):
                break
        return None

    def _state(self, job: J.Job) -> tuple[L.LedgerEvent | None, L.EndpointState]:
        ev = SL.state_event_at(self.store, job.endpoint, now_us())
        return ev, L.state_of(ev, job.endpoint)

    def _challenger_gone(self, job: J.Job) -> L.LedgerEvent | None:
        """The event that took the challenger off the endpoint, if one did."""
        _, state = self._state(job)
        v = state.variant(job.challenger or "")
        if v is not None and v.model.version == job.model_version:
            return None
        for e in SL.history(self.store, job.endpoint):
            if e.seq > (job.deploy_seq or 0) and e.sets_state:
                names = {(x.name, x.model.version) for x in e.state or ()}
                if (job.challenger, job.model_version) not in names:
                    return e
        return None

    # --- the steps -----------------------------------------------------------

    def _begin(self, job: J.Job) -> None:
        cfg = job.config
        payload = {
            "job": {"id": job.id},
            "trigger": dict(job.trigger),
            "entrypoint": {"kind": cfg.entrypoint.kind, "target": cfg.entrypoint.target},
            "data": {"path": cfg.data.path, "query": cfg.data.query},
            "policy": cfg.policy.to_dict(),
        }
        self._move(
            job,
            "start",
            {"worker": self.owner},
            event=L.Change("job_started", job.endpoint, self.actor, payload),
            status="running",
            step="snapshot",
        )

    def _snapshot(self, job: J.Job) -> None:
        src = job.config.data
        try:
            if src.path is not None:
                snap = snapshots.take(self.store, src.path, src.name)
            else:
                assert src.query is not None
                df = read_query(self.store, src.query, src.query_url)
                snap = snapshots.take(self.store, df, src.name)
        except Exception as exc:
            raise StepFailed(f"cannot snapshot the training data: {exc}") from None
        self._move(
            job,
            "snapshot",
            {"snapshot": snap.to_dict()},
            snapshot_id=snap.id,
            step="train",
            step_state="pending",
        )

    def _model_name(self, job: J.Job) -> str:
        if job.config.model:
            return job.config.model
        _, state = self._state(job)
        champ = champion_of(state)
        if champ is None:
            raise StepFailed(f"endpoint {job.endpoint!r} has nothing live to retrain")
        return champ.model.name

    def _train(self, job: J.Job) -> None:
        if job.step_state == "started":
            raise StepFailed(
                "interrupted: the worker running the entrypoint stopped before it finished "
                "(restart or crash); an entrypoint is never run twice by one job, since it "
                "may have registered a version: start a new job"
            )
        cfg = job.config
        assert job.snapshot_id is not None
        snap = self.store.get_snapshot(job.snapshot_id)
        model = self._model_name(job)
        before = _latest_version(self.cm, model)
        experiment = f"{EP.TRAINING_EXPERIMENT}-{job.endpoint}"
        try:
            ensure_experiment(self.cm.settings, experiment)
        except Exception as exc:
            raise StepFailed(f"cannot create the MLflow experiment {experiment!r}: {exc}") from None
        argv, cwd = EP.command(cfg.entrypoint, job.snapshot_id, experiment)
        env = EP.environment(
            self.cm.settings,
            cfg.entrypoint,
            experiment,
            job.snapshot_id,
            snap.path if snap else None,
            job.id,
        )

        def started(conn: Tx) -> None:
            J.update_in(conn, job.id, self.owner, step_state="started", model_name=model)
            J.step_in(
                conn,
                job.id,
                "train",
                "started",
                {"argv": argv, "cwd": cwd, "model": model, "versions_before": before},
            )

        self._write(started)

        def heartbeat() -> None:
            if not J.renew(self.store, job.id, self.owner, self.lease_us):
                log.warning("job %d: lost its lease while training", job.id)

        out = EP.run(
            argv,
            cwd,
            env,
            cfg.timeout_us / 1_000_000,
            heartbeat=heartbeat,
            heartbeat_s=max(0.5, self.lease_us / 3_000_000),
        )
        if out.timed_out:
            raise StepFailed(
                f"the entrypoint did not finish within {cfg.timeout_us / 1_000_000:g} s "
                "and was killed; nothing is deployed",
                out.log,
            )
        if out.returncode != 0:
            last = next((ln for ln in reversed(out.log.splitlines()) if ln.strip()), "")
            raise StepFailed(
                f"the entrypoint exited with code {out.returncode}"
                + (f": {last.strip()}" if last else "")
                + "; nothing is deployed",
                out.log,
            )
        self._move(
            job,
            "train",
            {"seconds": round(out.seconds, 3), "argv": argv},
            step="register",
            step_state="pending",
            log=out.log,
        )

    def _register(self, job: J.Job) -> None:
        from chronoml.registry import SNAPSHOT_TAG

        started = J.last_detail(self.store, job.id, "train", "started") or {}
        model = str(started.get("model") or job.model_name)
        before = int(started.get("versions_before") or 0)
        client = self.cm.registry.client
        try:
            versions = client.search_model_versions(f"name='{model}'")
        except Exception as exc:
            raise StepFailed(f"cannot read the versions of {model!r}: {exc}") from None
        new = sorted(
            (v for v in versions if int(v.version) > before), key=lambda v: -int(v.version)
        )
        linked = []
        for v in new:
            tags = dict(client.get_run(v.run_id).data.tags) if v.run_id else {}
            if tags.get(SNAPSHOT_TAG) == job.snapshot_id:
                linked.append(v)
        if not linked:
            if new:
                shown = ", ".join(f"v{v.version}" for v in new)
                raise StepFailed(
                    f"the entrypoint registered {model} {shown}, but none is linked to the "
                    f"job's snapshot {job.snapshot_id}: call chronoml.log_snapshot(snap) in the "
                    "run that registers the model (snap from "
                    "chronoml.retrain.entry.training_data(data_version)); nothing is deployed"
                )
            raise StepFailed(
                f"the entrypoint finished but registered no new version of {model!r} "
                f"(latest is still v{before}); nothing is deployed"
            )
        v = linked[0]
        self._move(
            job,
            "register",
            {"model": model, "version": str(v.version), "run_id": v.run_id},
            model_name=model,
            model_version=str(v.version),
            run_id=v.run_id,
            step="validate",
        )

    def _validate(self, job: J.Job) -> None:
        from chronoml.retrain.validate import validate

        cfg = job.config
        uri = f"models:/{job.model_name}/{job.model_version}"
        detail: dict[str, Any] | None = None
        if cfg.holdout is not None:
            try:
                new = self.cm.registry.resolve(uri).ref
                _, state = self._state(job)
                champ = champion_of(state)
                result = validate(
                    self.cm, new, champ.model if champ else None, cfg.holdout, cfg.policy
                )
            except Exception as exc:
                raise StepFailed(f"cannot validate {uri} on the holdout: {exc}") from None
            detail = result.to_dict()
            if not result.passed:
                raise StepFailed(f"validation on the holdout failed: {result.reason}; not deployed")
        snap = self.store.get_snapshot(job.snapshot_id or "")
        payload: dict[str, Any] = {
            "job": {"id": job.id},
            "snapshot": snap.to_dict() if snap else {"id": job.snapshot_id},
            "model": {"name": job.model_name, "version": job.model_version, "run_id": job.run_id},
        }
        if detail is not None:
            payload["validation"] = detail
        self._move(
            job,
            "validate",
            detail or {"holdout": None},
            event=L.Change("job_trained", job.endpoint, self.actor, payload),
            step="deploy",
        )

    def _deploy(self, job: J.Job) -> None:
        policy = job.config.policy
        uri = f"models:/{job.model_name}/{job.model_version}"
        ev = self._mine(job, "challenger")
        _, state = self._state(job)
        if ev is None:
            champ = champion_of(state)
            if champ is None:
                raise StepFailed(f"endpoint {job.endpoint!r} has nothing live to compare with")
            canary = None
            if policy.deploy == "canary":
                from chronoml.domain.canary import Guardrails

                canary = Guardrails(
                    max_error_rate=policy.canary_max_error_rate,
                    max_p99_ms=policy.canary_max_p99_ms,
                    min_requests=policy.min_samples,
                )
            try:
                ev = endpoints.deploy(
                    self.cm,
                    job.endpoint,
                    uri,
                    shadow=policy.deploy == "shadow",
                    weight=policy.share if policy.deploy == "canary" else None,
                    canary=canary,
                    actor=self.actor,
                    extra={
                        "job": {
                            "id": job.id,
                            "role": "challenger",
                            "champion": champ.name,
                            "policy": policy.deploy,
                        }
                    },
                )
            except (Refused, NotFound) as exc:
                raise StepFailed(f"cannot deploy {uri}: {exc}") from None
            champion = champ.name
        else:
            champion = str(ev.payload["job"].get("champion"))
        variant = ev.payload["variant"]["variant"]
        self._move(
            job,
            "deploy",
            {"event": ev.seq, "variant": variant, "as": policy.deploy, "champion": champion},
            deploy_seq=ev.seq,
            challenger=variant,
            champion=champion,
            step="evaluate",
            status="evaluating",
        )

    def evaluate(self, job: J.Job, now: int | None = None) -> dict[str, Any]:
        """One look at the challenger against the champion, and the policy's decision."""
        from chronoml.monitor.experiments import Arm, compare

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
        decision = P.decide(
            policy,
            c.result if has_outcomes else None,
            guard,
            elapsed_us=t - start,
            challenger_decisions=c.decisions[1],
        )
        return {
            "at": iso(t),
            "window": {"from": iso(start), "to": iso(t)},
            "metric": policy.metric,
            "comparison": c.to_dict(),
            "guardrails": _guardrails_dict(guard, c.decisions[1], policy.min_samples),
            "decision": decision.to_dict(),
        }

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


def approve(
    cm: Context,
    endpoint: str,
    job_id: int,
    actor: str,
    *,
    reject: bool = False,
    reason: str | None = None,
) -> J.Job:
    """A person's answer to a job awaiting approval: promote, or (``reject``) roll back."""
    job = J.get(cm.store, job_id)
    if job is None or job.endpoint != endpoint:
        raise NotFound(f"no job {job_id} on endpoint {endpoint!r}")
    if job.status != "awaiting_approval":
        raise Refused(
            f"job {job_id} is {job.status.replace('_', ' ')} (step {job.step}), "
            "not awaiting approval",
            "job",
        )
    kind = "job_rejected" if reject else "job_approved"
    payload: dict[str, Any] = {"job": {"id": job.id}, "verdict_seq": job.verdict_seq}
    if reason:
        payload["reason"] = reason

    def go(conn: Tx) -> None:
        current = J.get_in(conn, job_id)
        if current.status != "awaiting_approval":
            raise Refused(f"job {job_id} was answered meanwhile ({current.status})", "job")
        ev = SL.append_in(conn, L.Change(kind, endpoint, actor, payload))
        why = f"{'rejected' if reject else 'approved'} by {actor}" + (
            f": {reason}" if reason else ""
        )
        J.update_in(
            conn,
            job_id,
            None,
            status="running",
            step="rollback" if reject else "promote",
            reason=why,
        )
        J.step_in(
            conn, job_id, "approval", "done", {"by": actor, "reject": reject}, ledger_seq=ev.seq
        )

    J.retrying(cm.store, go)
    after = J.get(cm.store, job_id)
    assert after is not None
    return after


def _latest_version(cm: Context, model: str) -> int:
    try:
        versions = cm.registry.client.search_model_versions(f"name='{model}'")
    except Exception:
        return 0
    return max((int(v.version) for v in versions), default=0)


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
