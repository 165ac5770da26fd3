"""The principal cache of a server: one store read for many requests, and a revoked token
refused however its lookups and the revocation interleave."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import replace
from typing import Any

import pytest

from chronoml.auth import Authenticator
from chronoml.auth.access import TokenCache, create_token, revoke_token
from chronoml.auth.errors import Unauthenticated
from chronoml.auth.tokens import TokenRecord
from chronoml.gateway.access import Access
from chronoml.store import principals as SP


class HeldLookups(TokenCache):
    """The store's token cache, counting its store reads."""

    def __init__(self, store: Any, ttl_s: float) -> None:
        super().__init__(store, ttl_s)
        self.reads = 0

    def read(self, secret_sha256: str) -> list[TokenRecord]:
        self.reads += 1
        return super().read(secret_sha256)


def _access(cm: Any, settings: Any, ttl_s: float = 60.0) -> tuple[Access, HeldLookups]:
    access = Access(cm.store, replace(settings, poll_interval_s=ttl_s))
    held = HeldLookups(cm.store, ttl_s)
    access.tokens = held
    access.authenticator = Authenticator(held)
    return access, held


def _scope(secret: str) -> dict[str, Any]:
    return {
        "type": "http",
        "headers": [(b"authorization", f"Bearer {secret}".encode())],
        "client": ("127.0.0.1", 50000),
    }


def test_concurrent_requests_share_one_store_read(cm: Any, settings: Any) -> None:
    secret, _ = create_token(cm.store, "bench", "predictor", by="test")
    access, held = _access(cm, settings)

    async def many() -> list[Any]:
        return await asyncio.gather(*(access.principal(_scope(secret)) for _ in range(16)))

    got = asyncio.run(many())
    assert {p.actor for p in got} == {"token:bench"} and held.reads == 1

    async def unknown() -> list[Any]:
        bad = "cml_" + "A" * 43
        return await asyncio.gather(
            *(access.principal(_scope(bad)) for _ in range(4)), return_exceptions=True
        )

    refused = asyncio.run(unknown())
    assert all(isinstance(e, Unauthenticated) for e in refused) and held.reads == 2


def test_a_token_revoked_during_its_lookup_is_refused_next(
    cm: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attack: a store read that found the token valid, finishing after this server
    revoked it, was kept in the cache, and the revoked token went on working for the
    cache's lifetime."""
    secret, _ = create_token(cm.store, "ci", "viewer", by="test")
    access, _held = _access(cm, settings)
    read_done, go_on = threading.Event(), threading.Event()
    real = SP.tokens_with_hash

    def read_then_wait(store: Any, secret_sha256: str) -> Any:
        rows = real(store, secret_sha256)  # the real store, before the revocation
        if not go_on.is_set():
            read_done.set()
            go_on.wait(30)
        return rows

    monkeypatch.setattr(SP, "tokens_with_hash", read_then_wait)

    async def race() -> None:
        first = asyncio.ensure_future(access.principal(_scope(secret)))
        while not read_done.is_set():  # the store said "valid"; nothing is cached yet
            await asyncio.sleep(0.01)
        assert revoke_token(cm.store, "ci", by="test")
        access.forget()  # as DELETE /v1/tokens/{name} does
        go_on.set()
        # that request ran alongside the revocation: either answer is fair for it
        await asyncio.gather(first, return_exceptions=True)

    asyncio.run(race())
    with pytest.raises(Unauthenticated, match="revoked"):
        asyncio.run(access.principal(_scope(secret)))


def test_a_token_revoked_elsewhere_is_refused_once_the_cache_expires(
    cm: Any, settings: Any
) -> None:
    """Another server of the store revokes it: this one refuses it after its cache's
    lifetime (a quarter second by default), not later."""
    secret, _ = create_token(cm.store, "ci", "viewer", by="test")
    access, _held = _access(cm, settings, ttl_s=0.05)
    assert asyncio.run(access.principal(_scope(secret))).actor == "token:ci"
    assert revoke_token(cm.store, "ci", by="another server")
    time.sleep(0.2)
    with pytest.raises(Unauthenticated, match="revoked"):
        asyncio.run(access.principal(_scope(secret)))


class Clock:
    """A monotonic clock the test moves by hand (seconds)."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _from(secret: str, address: str) -> dict[str, Any]:
    return {**_scope(secret), "client": (address, 50000)}


def _clocked(cm: Any, settings: Any, ttl_s: float) -> tuple[Access, HeldLookups, Clock]:
    access, held = _access(cm, settings, ttl_s=ttl_s)
    clock = Clock()
    access.clock = held.clock = clock
    return access, held, clock


def test_a_principal_is_kept_no_longer_than_the_token_records_it_was_built_from(
    cm: Any, settings: Any
) -> None:
    """Attack: a second client of a token found the records another client's request had
    read, and kept its principal for a whole cache lifetime from then on, so a token revoked
    on another server went on working here for up to twice the promised lifetime."""
    secret, _ = create_token(cm.store, "ci", "viewer", by="test")
    access, _held, clock = _clocked(cm, settings, ttl_s=10.0)
    assert asyncio.run(access.principal(_from(secret, "10.0.0.1"))).actor == "token:ci"
    clock.t = 9.0  # the records are 9 s old: a new client's principal is built from them
    assert asyncio.run(access.principal(_from(secret, "10.0.0.2"))).actor == "token:ci"
    assert revoke_token(cm.store, "ci", by="another server")
    clock.t = 10.5  # the records are past their lifetime, the second principal is not
    with pytest.raises(Unauthenticated, match="revoked"):
        asyncio.run(access.principal(_from(secret, "10.0.0.2")))


def test_a_kept_principal_is_refused_from_its_tokens_expiry_on(cm: Any, settings: Any) -> None:
    """Attack: a principal kept for the cache's lifetime outlived its token's expiry."""
    secret, record = create_token(cm.store, "ci", "viewer", by="test", expires="1h")
    assert record.expires_at is not None
    access, held, clock = _clocked(cm, settings, ttl_s=7200.0)
    wall0 = record.created_at
    access.authenticator = Authenticator(held, clock=lambda: wall0 + int(clock.t * 1_000_000))
    assert asyncio.run(access.principal(_scope(secret))).actor == "token:ci"
    clock.t = 3599.0
    assert asyncio.run(access.principal(_scope(secret))).actor == "token:ci"
    clock.t = 3601.0
    with pytest.raises(Unauthenticated, match="expired"):
        asyncio.run(access.principal(_scope(secret)))


def test_a_kept_principal_is_looked_up_again_in_the_background_before_it_expires(
    cm: Any, settings: Any
) -> None:
    """From half its lifetime on, requests are answered with the kept principal while one
    store read runs beside them; a revocation that read finds is heard by the next request."""
    secret, _ = create_token(cm.store, "ci", "viewer", by="test")
    access, held, clock = _clocked(cm, settings, ttl_s=10.0)

    async def until_reads(n: int) -> None:
        deadline = time.monotonic() + 30
        while held.reads < n and time.monotonic() < deadline:
            await asyncio.sleep(0.005)

    async def scenario() -> None:
        assert (await access.principal(_scope(secret))).actor == "token:ci"
        clock.t = 6.0  # past half the lifetime: 16 requests, no waiting, one store read
        got = await asyncio.gather(*(access.principal(_scope(secret)) for _ in range(16)))
        assert {p.actor for p in got} == {"token:ci"}
        await until_reads(2)
        assert held.reads == 2
        assert revoke_token(cm.store, "ci", by="another server")
        clock.t = 12.0  # the kept answer (read at 6 s) still serves, and a read starts
        assert (await access.principal(_scope(secret))).actor == "token:ci"
        # still within the lifetime of the kept answer: only that read can refuse it
        deadline = time.monotonic() + 30
        refused: Unauthenticated | None = None
        while refused is None and time.monotonic() < deadline:
            try:
                await access.principal(_scope(secret))
            except Unauthenticated as exc:
                refused = exc
            else:
                await asyncio.sleep(0.005)
        assert refused is not None and "revoked" in refused.message

    asyncio.run(scenario())
    assert held.reads == 3
