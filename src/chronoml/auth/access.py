"""Tokens in a store: create, look up (briefly cached), list and revoke; the reads log.

The gateway authenticates every request with :class:`TokenCache`: a secret's
record is read from the store at most once per ``ttl_s`` (a quarter second by
default), so a revocation takes effect on every server of the store within
that time without a query on every request.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chronoml.auth.roles import Principal, Role
from chronoml.auth.tokens import TokenRecord, new_token
from chronoml.store import principals as SP
from chronoml.store.database import Store
from chronoml.timeutil import now_us

ADMIN_TOKEN_FILE = "admin.token"


def _record(row: dict[str, Any]) -> TokenRecord:
    return TokenRecord(
        name=row["name"],
        role=Role(row["role"]),
        endpoints=row["endpoints"],
        secret_sha256=row["secret_sha256"],
        created_at=row["created_at"],
        created_by=row["created_by"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
    )


def create_token(
    store: Store,
    name: str,
    role: str,
    *,
    by: Principal | str,
    endpoints: str = "*",
    expires: str | None = None,
) -> tuple[str, TokenRecord]:
    """A new token: its secret (shown once, never stored) and its stored record."""
    actor = by if isinstance(by, str) else by.actor
    secret, record = new_token(
        name, role, created_by=actor, now_us=now_us(), endpoints=endpoints, expires=expires
    )
    SP.add_token(
        store,
        {
            "name": record.name,
            "role": record.role.value,
            "endpoints": record.endpoints,
            "secret_sha256": record.secret_sha256,
            "created_at": record.created_at,
            "created_by": record.created_by,
            "expires_at": record.expires_at,
        },
    )
    return secret, record


def list_tokens(store: Store) -> list[TokenRecord]:
    return [_record(r) for r in SP.tokens(store)]


def revoke_token(store: Store, name: str, *, by: Principal | str) -> bool:
    actor = by if isinstance(by, str) else by.actor
    return SP.revoke_token(store, name, actor, now_us())


def ensure_admin_token(store: Store, home: Path) -> Path | None:
    """On a store with no tokens, create ``admin`` and write its secret to ``home/admin.token``
    (mode 0600). Returns the file's path when it was written now."""
    if SP.count_tokens(store):
        return None
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = home / ADMIN_TOKEN_FILE
    secret, _ = create_token(store, "admin", Role.ADMIN.value, by="chronoml (first start)")
    fd = _create_private(path)
    with open(fd, "w", encoding="ascii") as fh:
        fh.write(secret + "\n")
    return path


def _create_private(path: Path) -> int:
    if path.exists():
        path.unlink()
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)


class TokenCache:
    """Token records by secret hash, each read from the store at most once per ``ttl_s``.

    ``clock`` is the monotonic clock the ages are measured on (seconds).
    """

    def __init__(
        self, store: Store, ttl_s: float = 0.25, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.clock = clock
        self._entries: dict[str, tuple[float, list[TokenRecord]]] = {}
        self._lock = threading.Lock()
        self._generation = 0  # counts forget() calls

    def entry(self, secret_sha256: str) -> tuple[float, list[TokenRecord]] | None:
        """When the records were read (on :attr:`clock`) and the records, if less than
        ``ttl_s`` ago (no store access), else None."""
        got = self._entries.get(secret_sha256)
        if got is not None and self.clock() - got[0] < self.ttl_s:
            return got
        return None

    def cached(self, secret_sha256: str) -> list[TokenRecord] | None:
        """The records if read less than ``ttl_s`` ago (no store access), else None."""
        got = self.entry(secret_sha256)
        return None if got is None else got[1]

    def __call__(self, secret_sha256: str) -> list[TokenRecord]:
        got = self.cached(secret_sha256)
        if got is not None:
            return got
        return self.read(secret_sha256)

    def read(self, secret_sha256: str) -> list[TokenRecord]:
        """The records as the store has them now (kept for ``ttl_s``)."""
        generation = self._generation
        read_at = self.clock()
        records = [_record(r) for r in SP.tokens_with_hash(self.store, secret_sha256)]
        with self._lock:
            if len(self._entries) > 10_000:  # many unknown secrets: start over
                self._entries.clear()
            # a read that began before forget() may predate the change: answer with it, once
            if generation == self._generation:
                self._entries[secret_sha256] = (read_at, records)
        return records

    def forget(self) -> None:
        """Drop every entry (this server just created or revoked a token)."""
        with self._lock:
            self._entries.clear()
            self._generation += 1


def reads_logger(store: Store) -> Callable[[Principal, list[str], str], None]:
    """A function recording that a principal read the raw inputs of some decisions."""

    def log(principal: Principal, decision_ids: list[str], route: str) -> None:
        SP.record_reads(store, principal.actor, decision_ids, route, now_us())

    return log
