"""The store object: connections it hands out, and what happens when it closes."""

from __future__ import annotations

import gc
import threading
import warnings
from pathlib import Path

from sqlalchemy import Engine, text

from chronoml.store import Store


def test_a_connection_busy_when_the_store_closes_is_closed_when_it_comes_back(
    pg_url: str, tmp_path: Path
) -> None:
    # dispose() only closes the connections in the pool; one a background
    # thread still holds must not stay open until garbage collection
    store = Store.open(pg_url, tmp_path)
    holding, release = threading.Event(), threading.Event()

    def busy(engine: Engine = store.engine) -> None:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            holding.set()
            release.wait(10)

    worker = threading.Thread(target=busy)
    worker.start()
    assert holding.wait(10)
    store.close()
    release.set()
    worker.join(10)
    with store.read() as conn:  # a late reader, after close
        assert conn.execute(text("SELECT 1")).scalar() == 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del store
        gc.collect()
    leaked = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaked == []


def test_lookups_see_what_was_committed_after_their_connection_was_pooled(
    store_url: str, tmp_path: Path
) -> None:
    from chronoml.domain import ledger as L
    from chronoml.store import ledger as SL

    store = Store.open(store_url, tmp_path / "home")
    try:
        store.upgrade()
        assert SL.state_at(store, "e", 2**62).variants == ()
        for version in ("1", "2"):
            model = L.ModelRef("m", version, None, "0" * 64)
            variant = L.Variant(name="v" + version, model=model, weight=0, shadow=False)
            payload = {"variant": variant.to_dict(), "allow_unlinked_data": True}
            SL.append(store, L.Change("deploy", "e", "test", payload))
            live = SL.state_at(store, "e", 2**62).variants
            assert [(v.model.version, v.weight) for v in live] == [(version, 10_000)]
    finally:
        store.close()


def test_a_read_sees_one_snapshot_while_others_commit(store_url: str, tmp_path: Path) -> None:
    # Two statements of one read agree even when a write commits between them: the
    # outbox's pending and delivered counts of one row could otherwise both be 1.
    from chronoml.monitor import outbox

    store = Store.open(store_url, tmp_path / "home")
    try:
        store.upgrade()
        with store.write() as conn:
            row = outbox.enqueue(conn, "https://hooks.example.com/x", b"{}")
        with store.read() as conn:
            pending = conn.execute(text("SELECT count(*) FROM outbox WHERE delivered_at IS NULL"))
            assert pending.scalar_one() == 1
            with store.write() as other:  # another connection, committed at once
                other.execute(text("UPDATE outbox SET delivered_at = 1 WHERE id = :i"), {"i": row})
            delivered = conn.execute(text("SELECT count(*) FROM outbox WHERE delivered_at > 0"))
            assert delivered.scalar_one() == 0  # as of the read's snapshot
        assert outbox.status(store)["delivered"] == 1  # a new read sees the commit
    finally:
        store.close()


def test_a_read_cannot_write(pg_url: str, tmp_path: Path) -> None:
    import pytest
    from sqlalchemy.exc import InternalError

    store = Store.open(pg_url, tmp_path)
    try:
        store.upgrade()
        with pytest.raises(InternalError, match="read-only transaction"), store.read() as conn:
            conn.execute(text("DELETE FROM outbox"))
        with store.write() as conn:  # the connection goes back to the pool as it was
            assert conn.execute(text("SHOW transaction_read_only")).scalar_one() == "off"
    finally:
        store.close()
