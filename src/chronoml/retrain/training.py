"""The steps that make a challenger: begin, snapshot, train, register, validate, deploy."""

from __future__ import annotations

import json
import logging
from typing import Any

from chronoml import endpoints
from chronoml.context import Context
from chronoml.domain import ledger as L
from chronoml.domain.canary import Guardrails
from chronoml.errors import NotFound, Refused
from chronoml.registry import SNAPSHOT_TAG, ensure_experiment
from chronoml.retrain import entrypoint as EP
from chronoml.retrain.base import JobSteps, StepFailed, champion_of
from chronoml.retrain.entry import snapshot_record
from chronoml.retrain.validate import validate
from chronoml.store import jobs as J
from chronoml.store import snapshots
from chronoml.store.database import Tx
from chronoml.store.sources import read_query

log = logging.getLogger("chronoml.retrain")


class Training(JobSteps):
    """From a queued job to a deployed challenger."""

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
            snapshot_json=json.dumps(snapshot_record(snap)) if snap else None,
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


def _latest_version(cm: Context, model: str) -> int:
    try:
        versions = cm.registry.client.search_model_versions(f"name='{model}'")
    except Exception:
        return 0
    return max((int(v.version) for v in versions), default=0)
