"""A window read and an archive pass of the same endpoint at once: the read sees every
decision exactly once, and the archive commit waits for the read to end."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from archive_support import log

from chronoml.domain.archive import parse_target
from chronoml.store import Store, window_lock
from chronoml.store import archive as SA
from chronoml.store import decision_reads as DR
from chronoml.store import decisions as D

T0 = 1_000_000


def test_an_archive_pass_during_a_window_read_neither_hides_nor_doubles_decisions(
    store: Store, tmp_path: Path
) -> None:
    layouts = D.Layouts(store)
    ids = log(store, layouts, 3000, T0, "a")  # decision i at T0 + 10 i
    target = parse_target(f"file://{tmp_path / 'objects'}")
    SA.archive(store, layouts, T0 + 10_000, target, settle_us=0)  # the first 1000
    objects = tmp_path / "objects"
    first_files = len(list(objects.iterdir()))
    # a read in pages: the archived part comes first, the rows left after it
    pages = DR.batches(store, layouts, "e", 0, 10**9, include_shadow=False, size=500)
    seen = list(next(pages).ids)
    done: list[Any] = []
    # meanwhile an archive pass moves the next 1000 out of the rows
    mover = threading.Thread(
        target=lambda: done.append(SA.archive(store, layouts, T0 + 20_000, target, settle_us=0))
    )
    mover.start()
    # its files are written before its commit; the commit then waits for the read
    deadline = time.monotonic() + 60
    while len(list(objects.iterdir())) == first_files and time.monotonic() < deadline:
        time.sleep(0.01)
    mover.join(0.5)
    assert mover.is_alive(), "the archive committed while a window read was in flight"
    for page in pages:
        seen += page.ids
    mover.join(60)
    assert not mover.is_alive() and done[0].rows == 1000  # it went on once the read ended
    assert len(seen) == len(set(seen)) == 3000 and set(seen) == set(ids)
    status = SA.status(store)["endpoints"][0]
    assert status["archived_decisions"] == 2000 and status["live_decisions"] == 1000


def test_a_read_closed_early_lets_the_archive_commit(store: Store, tmp_path: Path) -> None:
    layouts = D.Layouts(store)
    log(store, layouts, 1200, T0, "a")
    target = parse_target(f"file://{tmp_path / 'objects'}")
    pages = DR.batches(store, layouts, "e", 0, 10**9, include_shadow=False, size=100)
    next(pages)
    pages.close()  # a report that stopped reading: its lock goes with it
    got = SA.archive(store, layouts, T0 + 6_000, target, settle_us=0)
    assert got.rows == 600


def test_nested_reads_of_one_endpoint_share_the_outer_lock(store: Store, tmp_path: Path) -> None:
    # an archive commit waiting for the outer read must not hold up the inner one
    layouts = D.Layouts(store)
    log(store, layouts, 400, T0, "a")
    target = parse_target(f"file://{tmp_path / 'objects'}")
    done: list[Any] = []
    with window_lock.reading(store, "e"):
        mover = threading.Thread(
            target=lambda: done.append(SA.archive(store, layouts, T0 + 2_000, target, settle_us=0))
        )
        mover.start()
        mover.join(0.5)
        assert mover.is_alive()
        inner = threading.Event()
        reader = threading.Thread(
            target=lambda: (DR.count(store, "e", 0, 10**9, include_shadow=False), inner.set())
        )
        # the same thread reads again (as outcomes() inside scored() does): no wait
        assert DR.count(store, "e", 0, 10**9, include_shadow=False) == 400
        reader.start()
    mover.join(60)
    reader.join(60)
    assert inner.is_set() and done[0].rows == 200


def test_the_lock_file_is_private(tmp_path: Path) -> None:
    # SQLite's lock is a file beside the database (PostgreSQL holds it in the database)
    s = Store.open(f"sqlite:///{tmp_path / 'home' / 'chronoml.db'}", tmp_path / "home")
    try:
        with window_lock.reading(s, "e"):
            pass
        assert window_lock.lock_file(s).stat().st_mode & 0o777 == 0o600
        assert window_lock.gate_file(s).stat().st_mode & 0o777 == 0o600
    finally:
        s.close()


def test_a_held_window_read_leaves_the_lookup_connections_to_lookups(store: Store) -> None:
    # a long drift read must not take a connection decision lookups wait for
    before = store.lookup_engine.pool.checkedout()  # type: ignore[attr-defined]
    with window_lock.reading(store, "e"):
        assert store.lookup_engine.pool.checkedout() == before  # type: ignore[attr-defined]
    assert store.lookup_engine.pool.checkedout() == before  # type: ignore[attr-defined]


def test_reads_that_start_while_an_archive_commit_waits_go_after_it(
    store: Store, tmp_path: Path
) -> None:
    # overlapping reads must not keep an archive commit waiting until it gives up
    layouts = D.Layouts(store)
    log(store, layouts, 400, T0, "a")
    objects = tmp_path / "objects"
    target = parse_target(f"file://{objects}")
    order: list[str] = []

    def archive() -> None:
        order.append(f"archived {SA.archive(store, layouts, T0 + 2_000, target, settle_us=0).rows}")

    def read() -> None:
        order.append(f"read {DR.count(store, 'e', 0, 10**9, include_shadow=False)}")

    with window_lock.reading(store, "e"):  # a long read in flight
        mover = threading.Thread(target=archive)
        mover.start()
        deadline = time.monotonic() + 60
        while not (objects.exists() and any(objects.iterdir())) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.5)  # its file is written and checked: the commit waits for the lock
        assert mover.is_alive() and not order
        reader = threading.Thread(target=read)  # a read that starts now
        reader.start()
        reader.join(0.5)
        assert reader.is_alive(), "a new read went ahead of the waiting archive commit"
    mover.join(60)
    reader.join(60)
    assert order == ["archived 200", "read 400"]
