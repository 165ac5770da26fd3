"""Durable retraining jobs: the ``jobs`` and ``job_steps`` tables.

A job is a row that moves through steps (see :mod:`chronoml.retrain.runner`).
At most one unfinished job per endpoint: ``jobs.active`` holds the endpoint
until the job finishes and is UNIQUE, so the database refuses a second one
however many triggers race. A worker advancing a job holds its lease
(``lease_owner`` until ``lease_until``) and renews it while it works; every
update it makes is fenced by that lease, so a worker that lost it (paused
past its lease) cannot overwrite what the next one did.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection, or_, select, update
from sqlalchemy.exc import IntegrityError

from chronoml.domain.retraining import RetrainConfig
from chronoml.store import schema
from chronoml.store.database import Store
from chronoml.timeutil import iso, now_us

J = schema.jobs
S = schema.job_steps
T = TypeVar("T")

UNFINISHED = ("queued", "running", "evaluating", "awaiting_approval")
FINISHED = ("promoted", "rolled_back", "failed")
LOG_LIMIT = 256 * 1024  # characters of an entrypoint's output kept (the end of it)


@dataclass(frozen=True)
class Job:
    """One retraining job as stored."""

    id: int
    endpoint: str
    status: str
    step: str
    step_state: str
    trigger: Mapping[str, Any]
    config: RetrainConfig
    created_at: int
    updated_at: int
    finished_at: int | None
    lease_owner: str | None
    lease_until: int | None
    snapshot_id: str | None
    model_name: str | None
    model_version: str | None
    run_id: str | None
    champion: str | None
    challenger: str | None
    deploy_seq: int | None
    verdict_seq: int | None
    final_seq: int | None
    evaluation: Mapping[str, Any] | None
    reason: str | None
    log: str | None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def to_dict(self, *, log: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id,
            "endpoint": self.endpoint,
            "status": self.status,
            "step": self.step,
            "trigger": dict(self.trigger),
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "finished_at": iso(self.finished_at) if self.finished_at else None,
            "worker": self.lease_owner
            if self.lease_until and self.lease_until > now_us()
            else None,
            "snapshot_id": self.snapshot_id,
            "model": {"name": self.model_name, "version": self.model_version, "run_id": self.run_id}
            if self.model_version
            else None,
            "champion": self.champion,
            "challenger": self.challenger,
            "deploy_seq": self.deploy_seq,
            "verdict_seq": self.verdict_seq,
            "final_seq": self.final_seq,
            "evaluation": dict(self.evaluation) if self.evaluation else None,
            "reason": self.reason,
            "policy": self.config.policy.to_dict(),
        }
        if log:
            d["log"] = self.log or ""
        return d


def _job(row: Any) -> Job:
    return Job(
        id=int(row["id"]),
        endpoint=row["endpoint"],
        status=row["status"],
        step=row["step"],
        step_state=row["step_state"],
        trigger=json.loads(row["trigger"]),
        config=RetrainConfig.from_dict(json.loads(row["spec"])),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        finished_at=row["finished_at"],
        lease_owner=row["lease_owner"],
        lease_until=row["lease_until"],
        snapshot_id=row["snapshot_id"],
        model_name=row["model_name"],
        model_version=row["model_version"],
        run_id=row["run_id"],
        champion=row["champion"],
        challenger=row["challenger"],
        deploy_seq=row["deploy_seq"],
        verdict_seq=row["verdict_seq"],
        final_seq=row["final_seq"],
        evaluation=json.loads(row["evaluation"]) if row["evaluation"] else None,
        reason=row["reason"],
        log=row["log"],
    )


def retrying(store: Store, fn: Callable[[Connection], T]) -> T:
    """Run ``fn`` in a write transaction, again if a concurrent writer got in first."""
    return store.write_retrying(fn, "the job")


def active_in(conn: Connection, endpoint: str) -> Job | None:
    row = conn.execute(select(J).where(J.c.active == endpoint)).mappings().first()
    return _job(row) if row is not None else None


def enqueue_in(
    conn: Connection, cfg: RetrainConfig, trigger: Mapping[str, Any], *, now: int | None = None
) -> tuple[Job, bool]:
    """Queue a job for ``cfg.endpoint`` in the caller's transaction.

    Returns ``(job, True)`` for a new job, or ``(the unfinished job, False)``
    when the endpoint already has one: two triggers make one job. The insert
    runs in a savepoint, so losing a race to another writer leaves the
    caller's transaction usable (PostgreSQL aborts a transaction on error).
    """
    existing = active_in(conn, cfg.endpoint)
    if existing is not None:
        return existing, False
    t = now_us() if now is None else now
    values = {
        "endpoint": cfg.endpoint,
        "active": cfg.endpoint,
        "status": "queued",
        "step": "snapshot",
        "step_state": "pending",
        "trigger": json.dumps(dict(trigger), sort_keys=True, default=str),
        "spec": json.dumps(cfg.to_dict(), sort_keys=True),
        "created_at": t,
        "updated_at": t,
    }
    try:
        with conn.begin_nested():
            job_id = conn.execute(J.insert().values(**values)).inserted_primary_key[0]  # type: ignore[index]
            conn.execute(
                S.insert().values(
                    job_id=job_id,
                    at=t,
                    step="queued",
                    status="done",
                    detail=json.dumps({"trigger": dict(trigger)}, default=str),
                )
            )
    except IntegrityError:
        existing = active_in(conn, cfg.endpoint)
        if existing is None:  # pragma: no cover - the winner finished in between
            raise
        return existing, False
    row = conn.execute(select(J).where(J.c.id == job_id)).mappings().one()
    return _job(row), True


def enqueue(
    store: Store, cfg: RetrainConfig, trigger: Mapping[str, Any], *, now: int | None = None
) -> tuple[Job, bool]:
    return retrying(store, lambda conn: enqueue_in(conn, cfg, trigger, now=now))


def get(store: Store, job_id: int) -> Job | None:
    with store.read() as conn:
        row = conn.execute(select(J).where(J.c.id == job_id)).mappings().first()
    return _job(row) if row is not None else None


def get_in(conn: Connection, job_id: int) -> Job:
    return _job(conn.execute(select(J).where(J.c.id == job_id)).mappings().one())


def listing(store: Store, endpoint: str | None = None, limit: int = 50) -> list[Job]:
    """Jobs, newest first."""
    q = select(J).order_by(J.c.id.desc()).limit(limit)
    if endpoint is not None:
        q = q.where(J.c.endpoint == endpoint)
    with store.read() as conn:
        return [_job(r) for r in conn.execute(q).mappings().all()]


def unfinished(store: Store) -> list[Job]:
    with store.read() as conn:
        rows = (
            conn.execute(select(J).where(J.c.active.is_not(None)).order_by(J.c.id)).mappings().all()
        )
    return [_job(r) for r in rows]


def claim(store: Store, job_id: int, owner: str, lease_us: int) -> Job | None:
    """Take the job's lease if it is free (never held, released, or expired)."""
    t = now_us()

    def go(conn: Connection) -> Job | None:
        won = conn.execute(
            update(J)
            .where(
                J.c.id == job_id,
                J.c.active.is_not(None),
                or_(J.c.lease_until.is_(None), J.c.lease_until < t, J.c.lease_owner == owner),
            )
            .values(lease_owner=owner, lease_until=t + lease_us)
        ).rowcount
        return get_in(conn, job_id) if won else None

    return retrying(store, go)


def renew(store: Store, job_id: int, owner: str, lease_us: int) -> bool:
    """Extend the lease; False if it is no longer ours."""
    t = now_us()
    return retrying(
        store,
        lambda conn: bool(
            conn.execute(
                update(J)
                .where(J.c.id == job_id, J.c.lease_owner == owner)
                .values(lease_until=t + lease_us)
            ).rowcount
        ),
    )


def release(store: Store, job_id: int, owner: str) -> None:
    retrying(
        store,
        lambda conn: conn.execute(
            update(J)
            .where(J.c.id == job_id, J.c.lease_owner == owner)
            .values(lease_owner=None, lease_until=None)
        ),
    )


class LeaseLost(RuntimeError):
    """Another worker holds the job now; this one must stop touching it."""


def update_in(conn: Connection, job_id: int, owner: str | None, **values: Any) -> None:
    """Change the job's columns, fenced by the lease (``owner`` None: unfenced)."""
    values.setdefault("updated_at", now_us())
    for k in ("evaluation",):
        if k in values and values[k] is not None and not isinstance(values[k], str):
            values[k] = json.dumps(values[k], sort_keys=True, default=str)
    if "status" in values and values["status"] in FINISHED:
        values["active"] = None
        values.setdefault("finished_at", values["updated_at"])
        values["lease_owner"] = None
        values["lease_until"] = None
    if "log" in values and values["log"] is not None:
        values["log"] = values["log"][-LOG_LIMIT:]
    q = update(J).where(J.c.id == job_id)
    if owner is not None:
        q = q.where(J.c.lease_owner == owner)
    if not conn.execute(q.values(**values)).rowcount:
        raise LeaseLost(f"job {job_id} is no longer held by {owner}")


def step_in(
    conn: Connection,
    job_id: int,
    step: str,
    status: str,
    detail: Mapping[str, Any] | None = None,
    *,
    ledger_seq: int | None = None,
    now: int | None = None,
) -> None:
    """Record one step's progress (append-only)."""
    conn.execute(
        S.insert().values(
            job_id=job_id,
            at=now_us() if now is None else now,
            step=step,
            status=status,
            detail=json.dumps(dict(detail), sort_keys=True, default=str) if detail else None,
            ledger_seq=ledger_seq,
        )
    )


def steps(store: Store, job_id: int) -> list[dict[str, Any]]:
    with store.read() as conn:
        rows = conn.execute(select(S).where(S.c.job_id == job_id).order_by(S.c.id)).all()
    return [
        {
            "at": iso(r.at),
            "step": r.step,
            "status": r.status,
            "detail": json.loads(r.detail) if r.detail else None,
            "ledger_seq": r.ledger_seq,
        }
        for r in rows
    ]


def last_detail(store: Store, job_id: int, step: str, status: str) -> dict[str, Any] | None:
    with store.read() as conn:
        raw = conn.execute(
            select(S.c.detail)
            .where(S.c.job_id == job_id, S.c.step == step, S.c.status == status)
            .order_by(S.c.id.desc())
            .limit(1)
        ).scalar()
    return json.loads(raw) if raw else None
