"""What starts a retraining job besides a person: an alert rule's retrain action."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, select

from chronoml.domain.alerts import NO_RETRAINING
from chronoml.retrain.config import RetrainConfig
from chronoml.store import jobs as J
from chronoml.store import schema


def alert_hook(conn: Connection, job: str, evidence: Mapping[str, Any]) -> str:
    """The alert engine's retrain action: queue a job for endpoint ``job``.

    ``job`` names the endpoint whose retraining configuration runs (usually
    the alerting endpoint itself). Runs inside the alert's transaction, so the
    job exists exactly when the alert's state change does; while the endpoint
    has an unfinished job no second one starts. Returns what happened, for
    the alert's ledger event and webhooks.
    """
    C = schema.retrain_configs
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
