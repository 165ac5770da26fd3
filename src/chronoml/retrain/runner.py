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
from typing import Any

from chronoml.context import Context
from chronoml.domain import ledger as L
from chronoml.errors import NotFound, Refused
from chronoml.retrain.base import JobSteps, StepFailed, champion_of
from chronoml.retrain.judging import Judging
from chronoml.retrain.training import Training
from chronoml.store import jobs as J
from chronoml.store import ledger as SL
from chronoml.store import retrain_configs as RC
from chronoml.store.database import Tx
from chronoml.timeutil import now_us
from chronoml.worker import Worker

log = logging.getLogger("chronoml.retrain")

__all__ = ["JobRunner", "JobSteps", "StepFailed", "approve", "champion_of"]


class JobRunner(Training, Judging):
    """Advances retraining jobs; one per process is enough (``chronoml server`` has one).

    ``settle_s``: a shadow's copies are logged just after the champion's
    answers, so a look ignores the last few seconds for its error rate.
    ``on_step`` is called with each job after every step (progress display).
    """

    def __init__(self, cm: Context, **kw: Any) -> None:
        super().__init__(cm, **kw)
        self._worker = Worker("chronoml-retrain", self._pass, self.interval_s)

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
