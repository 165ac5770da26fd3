"""Durable webhook delivery: rows written with what caused them, sent until delivered.

A webhook is enqueued (:func:`enqueue`) in the same transaction as the alert
state change that caused it, so a crash either loses both or neither. The
:class:`Outbox` deliverer is the only code that touches the network: it
POSTs due rows, marks them delivered on a 2xx and otherwise retries with
exponential backoff (1 s, 2 s, 4 s ... capped at 5 minutes). Delivery is at
least once: receivers dedupe on the ``X-Chronoml-Delivery`` header, which is
the row's id and stays the same across retries and restarts.

A webhook row keeps its URL and precomputed headers (the signature is an
HMAC-SHA256 of the exact body) in ``target``, and the body in ``payload``,
so delivery needs neither the rule nor its secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from typing import Any

import httpx

from chronoml.auth import AuthError, SecretResolver, redact
from chronoml.auth.policy import deliverable_url
from chronoml.store import outbox as SO
from chronoml.store.database import Store, Tx
from chronoml.store.outbox import status
from chronoml.timeutil import now_us
from chronoml.worker import Worker

log = logging.getLogger("chronoml.alerts")

__all__ = ["Attempt", "Outbox", "enqueue", "sign", "status", "verify_signature"]

SIGNATURE_HEADER = "X-Chronoml-Signature"
DELIVERY_HEADER = "X-Chronoml-Delivery"


def sign(body: bytes, secret: str) -> str:
    """``sha256=<hex>``: the HMAC-SHA256 of ``body`` keyed with ``secret``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, secret: str, header: str | None) -> bool:
    """For receivers: whether ``header`` is the signature of ``body`` with ``secret``."""
    return header is not None and hmac.compare_digest(sign(body, secret), header)


def enqueue(
    conn: Tx, url: str, body: bytes, *, secret: str | None = None, now: int | None = None
) -> int:
    """Add a webhook to the outbox inside the caller's transaction; returns its id."""
    headers = {SIGNATURE_HEADER: sign(body, secret)} if secret else {}
    return SO.enqueue(conn, url, body, headers, now=now)


@dataclass(frozen=True)
class Attempt:
    """One delivery attempt: which row, and whether it was delivered."""

    id: int
    url: str
    delivered: bool
    error: str | None


class Outbox:
    """Delivers pending webhooks from the ``outbox`` table.

    ``start()`` runs a background thread; ``deliver_due(now)`` makes one
    pass (tests call it directly). Several deliverers on one store (replicas)
    each claim a row before sending it, so they rarely send it twice.
    """

    def __init__(
        self,
        store: Store,
        *,
        client: httpx.Client | None = None,
        timeout_s: float = 10.0,
        poll_interval_s: float = 1.0,
        backoff_s: float = 1.0,
        max_backoff_s: float = 300.0,
        batch: int = 50,
        allow_hosts: tuple[str, ...] = (),
        secrets: SecretResolver | None = None,
    ) -> None:
        self.store = store
        self.allow_hosts = allow_hosts  # private hosts webhooks may reach (--allow-webhook-host)
        self.secrets = secrets or SecretResolver()
        self._client = client
        self._own_client = client is None
        self.timeout_s = timeout_s
        self.poll_interval_s = poll_interval_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.batch = batch
        self._worker = Worker(
            "chronoml-outbox", lambda: len(self.deliver_due()) >= self.batch, poll_interval_s
        )

    # --- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        """Deliver in a background thread until :meth:`stop`."""
        self._worker.start()
        self._worker.wake()  # a first pass now: rows may be waiting from before a restart

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stop the thread after the attempt in flight; undelivered rows stay for later."""
        self._worker.stop(timeout_s)
        if self._own_client and self._client is not None:
            self._client.close()
            self._client = None

    @property
    def running(self) -> bool:
        """Whether the delivery thread is alive."""
        return self._worker.running

    def wake(self) -> None:
        """Look for due rows now rather than at the next poll."""
        self._worker.wake()

    # --- delivery ----------------------------------------------------------

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(timeout=self.timeout_s, follow_redirects=False)
        return self._client

    def backoff_us(self, attempts: int) -> int:
        """The wait after the ``attempts``-th failed attempt (1 s, 2 s, 4 s ... capped)."""
        seconds = min(self.backoff_s * 2 ** max(attempts - 1, 0), self.max_backoff_s)
        return int(seconds * 1_000_000)

    def deliver_due(self, now: int | None = None) -> list[Attempt]:
        """Send every row due at ``now`` (default: the clock); one attempt each."""
        t = now if now is not None else now_us()
        claimed = self._claim(t)
        done: list[Attempt] = []
        try:
            for row in claimed:
                if self._worker.stopping:
                    break
                done.append(self._send(row, t if now is not None else now_us()))
        finally:
            # rows not attempted (a stop) or whose attempt broke in a way _send does not
            # record (a bug, the store going away) are due again at once, here or after
            # a restart, not held until their claim runs out
            if len(done) < len(claimed):
                self._release(claimed[len(done) :])
        return done

    def _release(self, rows: list[Any]) -> None:
        SO.release(self.store, rows)

    def _claim(self, t: int) -> list[Any]:
        """Take due rows for one attempt: push their next attempt past the send."""
        return SO.claim(self.store, t, t + int((self.timeout_s + 30) * 1_000_000), self.batch)

    def _send(self, row: Any, t: int) -> Attempt:
        target = json.loads(row["target"])
        stored = str(target["url"])
        url = redact(stored)  # what logs and errors show
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "chronoml",
            DELIVERY_HEADER: str(row["id"]),
            **target.get("headers", {}),
        }
        error: str | None = None
        try:
            # checked at each attempt: a name may resolve elsewhere by now
            real = deliverable_url(stored, self.allow_hosts, self.secrets)
            resp = self.client.post(real, content=row["payload"].encode("utf-8"), headers=headers)
            if not 200 <= resp.status_code < 300:
                error = f"HTTP {resp.status_code}: {resp.text[:200]}".strip()
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        except AuthError as exc:
            error = f"refused: {exc.message}"[:500]
        attempts = int(row["attempts"]) + 1
        values: dict[str, Any] = {"attempts": attempts, "last_error": error}
        if error is None:
            values["delivered_at"] = t
        else:
            values["next_attempt_at"] = t + self.backoff_us(attempts)
            log.warning(
                "webhook %s to %s failed (attempt %d, next in %gs): %s",
                row["id"],
                url,
                attempts,
                self.backoff_us(attempts) / 1e6,
                error,
            )
        SO.record_attempt(self.store, int(row["id"]), values)
        return Attempt(int(row["id"]), url, error is None, error)
