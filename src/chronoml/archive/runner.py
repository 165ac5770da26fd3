"""Running the archive: once (``chronoml archive``) or every interval in the server.

An object store that cannot be reached pauses archiving: nothing is deleted
(files are checked before any row goes), the failure is recorded in the
store (``chronoml archive status``) and in ``/metrics``, and the next
attempt waits twice as long as the last one, up to :data:`MAX_BACKOFF_S`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from chronoml.context import Context
from chronoml.domain.archive import ArchiveError, Target, parse_target
from chronoml.monitor.leader import Leadership
from chronoml.settings import Settings
from chronoml.store import archive as SA
from chronoml.store import archive_erasure as AE
from chronoml.store.archive_objects import Unreachable
from chronoml.timeutil import now_us
from chronoml.worker import Worker

log = logging.getLogger("chronoml.archive")

FIRST_BACKOFF_S = 5.0
MAX_BACKOFF_S = 900.0


def target_from_settings(settings: Settings, store_home_default: Target) -> Target:
    """The target the settings name (``--archive-to`` and the S3 options), or the default."""
    if settings.archive_to is None:
        return store_home_default
    return parse_target(
        settings.archive_to,
        endpoint_url=settings.archive_s3_endpoint_url,
        access_key=settings.archive_access_key,
        secret_key=settings.archive_secret_key,
        profile=settings.archive_profile,
    )


def backoff_s(failures: int) -> float:
    """Seconds to wait after ``failures`` consecutive failures."""
    return float(min(MAX_BACKOFF_S, FIRST_BACKOFF_S * 2.0 ** max(0, failures - 1)))


def run(
    cm: Context,
    before: int,
    target: Target | None = None,
    *,
    settle_us: int = SA.SETTLE_US,
    attempts: int = 1,
    sleep: Callable[[float], None] = time.sleep,
) -> SA.Result:
    """Archive every settled decision before ``before``; retry an unreachable store
    ``attempts`` times in all, with backoff. Each outcome is recorded for ``archive status``."""
    target = target or SA.default_target(cm.store)
    for attempt in range(1, attempts + 1):
        try:
            AE.sweep(cm.store)  # objects of files an erasure replaced, if a crash left any
            result = SA.archive(cm.store, cm.layouts, before, target, settle_us=settle_us)
        except Unreachable as exc:
            wait = backoff_s(attempt)
            last = attempt == attempts
            SA.record_attempt(cm.store, exc.message, None if last else now_us() + int(wait * 1e6))
            if last:
                raise
            log.warning("archive paused: %s; retrying in %.0f s", exc.message, wait)
            sleep(wait)
        else:
            SA.record_attempt(cm.store, None, None)
            return result
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass
class Progress:
    """What the background archiver reports (for ``/metrics``)."""

    paused: bool = False
    failures: int = 0
    archived: int = 0
    last_success_at: int | None = None
    last_error: str | None = None


class Archiver(Worker):
    """Archives decisions older than ``after_us`` every ``interval_s``, backing off on failure."""

    def __init__(
        self,
        cm: Context,
        after_us: int,
        target: Target,
        interval_s: float = 300.0,
        on_pass: Callable[[Progress], None] | None = None,
    ) -> None:
        super().__init__("chronoml-archive", self._step, interval_s if after_us > 0 else 0)
        self.cm = cm
        self.after_us = after_us
        self.target = target
        self.on_pass = on_pass
        self.progress = Progress()
        self._not_before = 0.0
        self._leader: Leadership | None = None

    def start(self) -> None:
        """Start archiving; of several processes on one store, only the leader archives."""
        self._leader = Leadership(self.cm.store, "archive")
        super().start()

    def stop(self, timeout_s: float = 10.0) -> None:
        super().stop(timeout_s)
        if self._leader is not None:
            self._leader.release()

    def _step(self) -> bool:
        if time.monotonic() < self._not_before:
            return False
        if self._leader is not None and not self._leader.held():
            return False  # another process archives this store
        p = self.progress
        try:
            result = SA.archive(
                self.cm.store, self.cm.layouts, now_us() - self.after_us, self.target
            )
        except (Unreachable, ArchiveError) as exc:
            p.failures += 1
            p.paused, p.last_error = True, exc.message
            wait = backoff_s(p.failures)
            self._not_before = time.monotonic() + wait
            SA.record_attempt(self.cm.store, exc.message, now_us() + int(wait * 1e6))
            log.warning("archive paused: %s; retrying in %.0f s", exc.message, wait)
        else:
            p.failures, p.paused, p.last_error = 0, False, None
            p.archived += result.rows
            p.last_success_at = now_us()
            SA.record_attempt(self.cm.store, None, None)
        if self.on_pass is not None:
            self.on_pass(p)
        return False
