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
import threading
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import Connection, and_, func, select, update
from sqlalchemy.exc import OperationalError

from chronoml.store import schema
from chronoml.store.database import Store
from chronoml.timeutil import iso, now_us

log = logging.getLogger("chronoml.alerts")

OB = schema.outbox

SIGNATURE_HEADER = "X-Chronoml-Signature"
DELIVERY_HEADER = "X-Chronoml-Delivery"


def sign(body: bytes, secret: str) -> str:
    """``sha256=<hex>``: the HMAC-SHA256 of ``body`` keyed with ``secret``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, secret: str, header: str | None) -> bool:
    """For receivers: whether ``header`` is the signature of ``body`` with ``secret``."""
    return header is not None and hmac.compare_digest(sign(body, secret), header)


def enqueue(
    conn: Connection, url: str, body: bytes, *, secret: str | None = None, now: int | None = None
) -> int:
    """Add a webhook to the outbox inside the caller's transaction; returns its id."""
    headers = {SIGNATURE_HEADER: sign(body, secret)} if secret else {}
    t = now if now is not None else now_us()
    result = conn.execute(
        OB.insert().values(
            kind="webhook",
            target=json.dumps({"url": url, "headers": headers}, sort_keys=True),
            payload=body.decode("utf-8"),
            created_at=t,
            attempts=0,
            next_attempt_at=t,
            delivered_at=None,
            last_error=None,
        )
    )
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


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
    ) -> None:
        self.store = store
        self._client = client
        self._own_client = client is None
        self.timeout_s = timeout_s
        self.poll_interval_s = poll_interval_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.batch = batch
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        """Deliver in a background thread until :meth:`stop`."""
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="chronoml-outbox", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stop the thread after the attempt in flight; undelivered rows stay for later."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        if self._own_client and self._client is not None:
            self._client.close()
            self._client = None

    def wake(self) -> None:
        """Look for due rows now rather than at the next poll."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            busy = False
            try:
                busy = len(self.deliver_due()) >= self.batch
            except Exception:  # keep delivering after a store hiccup
                log.exception("outbox: delivery pass failed")
            if not busy:
                self._wake.wait(self.poll_interval_s)
                self._wake.clear()

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
        done = []
        for i, row in enumerate(claimed):
            if self._stopping.is_set():
                self._release(claimed[i:])  # due again at once, here or after a restart
                break
            done.append(self._send(row, t if now is not None else now_us()))
        return done

    def _release(self, rows: list[Any]) -> None:
        with self.store.write() as conn:
            for r in rows:
                conn.execute(
                    update(OB)
                    .where(OB.c.id == r["id"], OB.c.delivered_at.is_(None))
                    .values(next_attempt_at=r["next_attempt_at"])
                )

    def _claim(self, t: int) -> list[Any]:
        """Take due rows for one attempt: push their next attempt past the send."""
        lease = t + int((self.timeout_s + 30) * 1_000_000)
        due = and_(OB.c.delivered_at.is_(None), OB.c.next_attempt_at <= t)
        for attempt in range(20):
            try:
                with self.store.write() as conn:
                    rows = (
                        conn.execute(
                            select(OB)
                            .where(due)
                            .order_by(OB.c.next_attempt_at, OB.c.id)
                            .limit(self.batch)
                        )
                        .mappings()
                        .all()
                    )
                    claimed = []
                    for r in rows:
                        res = conn.execute(
                            update(OB).where(OB.c.id == r["id"], due).values(next_attempt_at=lease)
                        )
                        if res.rowcount == 1:
                            claimed.append(r)
                    return claimed
            except OperationalError as exc:
                if "lock" not in str(exc.orig).lower() or attempt == 19:
                    raise
                self._stopping.wait(0.05 * (attempt + 1))
        return []  # pragma: no cover

    def _send(self, row: Any, t: int) -> Attempt:
        target = json.loads(row["target"])
        url = str(target["url"])
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "chronoml",
            DELIVERY_HEADER: str(row["id"]),
            **target.get("headers", {}),
        }
        error: str | None = None
        try:
            resp = self.client.post(url, content=row["payload"].encode("utf-8"), headers=headers)
            if not 200 <= resp.status_code < 300:
                error = f"HTTP {resp.status_code}: {resp.text[:200]}".strip()
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
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
        with self.store.write() as conn:
            conn.execute(update(OB).where(OB.c.id == row["id"]).values(**values))
        return Attempt(int(row["id"]), url, error is None, error)


def status(store: Store, errors: int = 10) -> dict[str, Any]:
    """Pending and delivered counts, and the latest errors of undelivered rows."""
    with store.read() as conn:
        pending = conn.execute(
            select(func.count(), func.min(OB.c.created_at)).where(OB.c.delivered_at.is_(None))
        ).one()
        delivered = conn.execute(
            select(func.count(), func.max(OB.c.delivered_at)).where(OB.c.delivered_at.is_not(None))
        ).one()
        failing = (
            conn.execute(
                select(OB)
                .where(OB.c.delivered_at.is_(None), OB.c.last_error.is_not(None))
                .order_by(OB.c.id.desc())
                .limit(errors)
            )
            .mappings()
            .all()
        )
    return {
        "pending": int(pending[0]),
        "oldest_pending": iso(pending[1]) if pending[1] is not None else None,
        "delivered": int(delivered[0]),
        "last_delivered": iso(delivered[1]) if delivered[1] is not None else None,
        "errors": [
            {
                "id": r["id"],
                "url": json.loads(r["target"])["url"],
                "attempts": r["attempts"],
                "last_error": r["last_error"],
                "next_attempt_at": iso(r["next_attempt_at"]),
                "created_at": iso(r["created_at"]),
            }
            for r in failing
        ],
    }
