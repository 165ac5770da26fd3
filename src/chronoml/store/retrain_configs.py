"""Retraining configurations: one per endpoint, and the schedule that claims their runs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, delete, select, update

from chronoml.domain.alerts import NO_RETRAINING
from chronoml.domain.retraining import (
    DEFAULT_TIMEOUT_US,
    ConfigError,
    DataSource,
    Entrypoint,
    Holdout,
    RetrainConfig,
)
from chronoml.store import jobs as J
from chronoml.store import schema
from chronoml.store.database import Store
from chronoml.timeutil import now_us

C = schema.retrain_configs

__all__ = [
    "DEFAULT_TIMEOUT_US",
    "ConfigError",
    "DataSource",
    "Entrypoint",
    "Holdout",
    "RetrainConfig",
    "alert_hook",
    "due",
    "get",
    "put",
    "remove",
]


def put(store: Store, cfg: RetrainConfig, *, now: int | None = None) -> RetrainConfig:
    """Create or replace the endpoint's configuration (the schedule restarts from now)."""
    t = now_us() if now is None else now
    spec = json.dumps(cfg.to_dict(), sort_keys=True)
    nxt = t + cfg.every_us if cfg.every_us else None
    with store.write() as conn:
        changed = conn.execute(
            update(C)
            .where(C.c.endpoint == cfg.endpoint)
            .values(spec=spec, updated_at=t, next_run_at=nxt)
        ).rowcount
        if not changed:
            conn.execute(
                C.insert().values(
                    endpoint=cfg.endpoint, spec=spec, created_at=t, updated_at=t, next_run_at=nxt
                )
            )
    return cfg


def get(store: Store, endpoint: str) -> RetrainConfig | None:
    with store.read() as conn:
        spec = conn.execute(select(C.c.spec).where(C.c.endpoint == endpoint)).scalar()
    return RetrainConfig.from_dict(json.loads(spec)) if spec is not None else None


def remove(store: Store, endpoint: str) -> bool:
    with store.write() as conn:
        return bool(conn.execute(delete(C).where(C.c.endpoint == endpoint)).rowcount)


def due(store: Store, now: int) -> list[RetrainConfig]:
    """Scheduled configurations whose next run has come; their next run moves on.

    Claimed with a conditional update, so of several workers one starts each run.
    """
    with store.read() as conn:
        rows = conn.execute(
            select(C.c.endpoint, C.c.spec, C.c.next_run_at).where(
                C.c.next_run_at.is_not(None), C.c.next_run_at <= now
            )
        ).all()
    out = []
    for r in rows:
        cfg = RetrainConfig.from_dict(json.loads(r.spec))
        if not cfg.every_us:
            continue
        with store.write() as conn:
            won = conn.execute(
                update(C)
                .where(C.c.endpoint == r.endpoint, C.c.next_run_at == r.next_run_at)
                .values(next_run_at=now + cfg.every_us)
            ).rowcount
        if won:
            out.append(cfg)
    return out


def alert_hook(conn: Connection, job: str, evidence: Mapping[str, Any]) -> str:
    """The alert engine's retrain action: queue a job for endpoint ``job``.

    ``job`` names the endpoint whose retraining configuration runs (usually
    the alerting endpoint itself). Runs inside the alert's transaction, so the
    job exists exactly when the alert's state change does; while the endpoint
    has an unfinished job no second one starts. Returns what happened, for
    the alert's ledger event and webhooks.
    """
    spec = conn.execute(select(C.c.spec).where(C.c.endpoint == job)).scalar()
    if spec is None:
        return NO_RETRAINING
    cfg = RetrainConfig.from_dict(json.loads(spec))
    trigger = {
        "kind": "alert",
        "rule": evidence.get("rule"),
        "endpoint": evidence.get("endpoint"),
        "variant": evidence.get("variant"),
        "metric": evidence.get("metric"),
        "value": evidence.get("value"),
        "window": evidence.get("window"),
    }
    found, created = J.enqueue_in(conn, cfg, trigger)
    if created:
        return f"job {found.id} queued"
    return f"job {found.id} already {found.status.replace('_', ' ')}: not started again"
