"""Judging canaries on this gateway's own traffic, and rolling them back.

Fed by the gateway's metrics (every request's status, every answer's
latency). A breach records the rollback on the ledger from a thread of its
own, then refreshes the live table; other gateways follow by polling. With
several server processes each judges the requests it served.
"""

from __future__ import annotations

import collections
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from chronoml.domain.canary import Breach, judge
from chronoml.gateway.live import Canary, Live
from chronoml.service import Chronoml, Refused

log = logging.getLogger("chronoml.canary")

_JUDGED = frozenset({200, 500, 504})  # answered, or failed by the model itself
_FAILED = frozenset({500, 504})
_SAMPLES = 2000  # latencies kept per canary (the most recent)


@dataclass
class _Watch:
    canary: Canary
    requests: int = 0
    errors: int = 0
    latencies_ms: collections.deque[float] = field(
        default_factory=lambda: collections.deque(maxlen=_SAMPLES)
    )
    tripped: bool = False


class Canaries:
    """Per-endpoint watches of the live canary, keyed by its deploy event."""

    def __init__(
        self, cm: Chronoml, live: Live, on_rollback: Callable[[str, str], None] | None = None
    ) -> None:
        self.cm = cm
        self.live = live
        self.on_rollback = on_rollback
        self.actor = f"chronoml-guardrail@{socket.gethostname()}"
        self._watches: dict[str, _Watch] = {}
        self._lock = threading.Lock()

    def _watch(self, endpoint: str, variant: str) -> _Watch | None:
        le = self.live.get(endpoint)
        if le is None or le.canary is None or le.canary.variant != variant:
            return None
        w = self._watches.get(endpoint)
        if w is None or w.canary.seq != le.canary.seq:
            w = self._watches[endpoint] = _Watch(le.canary)
        return w

    def _judged(self, endpoint: str, variant: str) -> bool:
        """Whether the variant is a live canary, asked without the lock (most are not)."""
        le = self.live.get(endpoint)
        return le is not None and le.canary is not None and le.canary.variant == variant

    def count(self, endpoint: str, variant: str, status: int) -> None:
        if status not in _JUDGED or not self._judged(endpoint, variant):
            return
        with self._lock:
            w = self._watch(endpoint, variant)
            if w is None or w.tripped:
                return
            w.requests += 1
            if status in _FAILED:
                w.errors += 1
                self._judge(endpoint, w)

    def latency(self, endpoint: str, variant: str, seconds: float) -> None:
        if not self._judged(endpoint, variant):
            return
        with self._lock:
            w = self._watch(endpoint, variant)
            if w is None or w.tripped:
                return
            w.latencies_ms.append(seconds * 1000)
            if w.requests >= w.canary.guardrails.min_requests and w.requests % 5 == 0:
                self._judge(endpoint, w)

    def _judge(self, endpoint: str, w: _Watch) -> None:
        breach = judge(w.canary.guardrails, w.requests, w.errors, list(w.latencies_ms))
        if breach is None:
            return
        w.tripped = True
        threading.Thread(
            target=self._roll_back,
            args=(endpoint, w.canary, breach),
            name="chronoml-canary-rollback",
            daemon=True,
        ).start()

    def _roll_back(self, endpoint: str, canary: Canary, breach: object) -> None:

        assert isinstance(breach, Breach)
        try:
            ev = self.cm.rollback_canary(endpoint, canary.seq, breach, actor=self.actor)
        except Refused as exc:  # someone else changed the endpoint first
            log.info("canary %s on %s: %s", canary.variant, endpoint, exc.message)
            return
        except Exception as exc:
            log.error("could not roll back canary %s on %s: %s", canary.variant, endpoint, exc)
            with self._lock:
                w = self._watches.get(endpoint)
                if w is not None and w.canary.seq == canary.seq:
                    w.tripped = False  # try again on the next request
            return
        log.warning(
            "rolled back canary %s on %s (event %d): %s",
            canary.variant,
            endpoint,
            ev.seq,
            breach.reason,
        )
        self.live.refresh()
        if self.on_rollback is not None:
            self.on_rollback(endpoint, breach.guardrail)
