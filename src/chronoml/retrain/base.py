"""What every retraining step shares: the job's store and lease, and how a step records itself.

:class:`JobSteps` holds a runner's settings and the helpers each step uses to
move a job on (with its ledger event in the same transaction), to fail it, or
to find the event a step already made. The steps themselves are in
:mod:`.training` and :mod:`.judging`; :mod:`.runner` drives them.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from chronoml.context import Context
from chronoml.domain import ledger as L
from chronoml.store import jobs as J
from chronoml.store import ledger as SL
from chronoml.store.database import Tx
from chronoml.timeutil import now_us

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


class JobSteps:
    """A runner's settings and the helpers its steps share."""

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
