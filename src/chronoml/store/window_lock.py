"""Window reads and archive commits of an endpoint, never at the same time.

A window read takes its archived part, its ingest blocks and its rows in
statements of their own. An archive commit between them would move decisions
out of the rows after the archived part was read, and the read would miss
them (or, for a read that takes the rows first, count them twice). So a window
read holds a shared lock on its endpoint from start to end, and an archive
commit takes it exclusively before it changes anything: it waits for the reads
in flight, and reads that start meanwhile wait for it (one commit, well under a
second). The lock spans processes and replicas, and the database or the
operating system releases it when its holder dies:

- PostgreSQL: an advisory lock keyed by the schema and the endpoint, shared on
  a connection of the store's lock pool that the read holds (not one lookups
  need), exclusive inside the archive's transaction;
- SQLite: ``flock`` on a file beside the database (one lock for all endpoints),
  with a second file as a gate: a read passes the gate (shared, for a moment)
  before it takes the lock, and a commit holds the gate exclusively while it
  waits for the lock, so reads that start meanwhile queue behind it, as they do
  behind PostgreSQL's waiting exclusive lock (plain ``flock`` would let
  overlapping reads hold the commit off until it gives up).

A read inside another read in the same thread shares the outer one's lock
(on SQLite whatever its endpoint: the lock is one): a second shared request
would queue behind an archive commit waiting for the first.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import Connection, text
from sqlalchemy.exc import OperationalError

from chronoml.store.database import Store

log = logging.getLogger("chronoml.archive")

P = ParamSpec("P")
T = TypeVar("T")

# how long an archive commit waits for the window reads in flight before it gives up
# (the chunk is archived again on the next pass)
WAIT_S = 120.0
_KEY = "hashtext(current_schema() || '.chronoml-window.' || :endpoint)"
_local = threading.local()


class Busy(Exception):
    """Window reads held the endpoint for longer than :data:`WAIT_S`."""


def _depths() -> dict[tuple[int, str], int]:
    got: dict[tuple[int, str], int] | None = getattr(_local, "depths", None)
    if got is None:
        got = _local.depths = {}
    return got


def lock_file(store: Store) -> Path:
    """The SQLite store's lock file, beside its database."""
    return Path(f"{store.engine.url.database}.windows")


def gate_file(store: Store) -> Path:
    """The SQLite store's gate: held by an archive commit waiting for the lock."""
    return Path(f"{store.engine.url.database}.windows-gate")


def _open(path: Path) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)


@contextlib.contextmanager
def reading(store: Store, endpoint: str) -> Iterator[None]:
    """Hold ``endpoint`` for a window read: no archive commit of it until the block ends."""
    depths = _depths()
    key = (id(store), "" if store.is_sqlite else endpoint)
    if depths.get(key):
        depths[key] += 1
        try:
            yield
        finally:
            depths[key] -= 1
        return
    with _shared(store, endpoint):
        depths[key] = 1
        try:
            yield
        finally:
            depths.pop(key, None)


@contextlib.contextmanager
def _shared(store: Store, endpoint: str) -> Iterator[None]:
    if store.is_sqlite:
        fd = _open(lock_file(store))
        try:
            gate = _open(gate_file(store))
            try:
                fcntl.flock(gate, fcntl.LOCK_SH)  # waits while an archive commit waits
                fcntl.flock(fd, fcntl.LOCK_SH)
            finally:
                os.close(gate)
            yield
        finally:
            os.close(fd)  # and with it the lock
        return
    conn = store.lock_engine.connect()  # autocommit: the lock is the session's
    try:
        conn.execute(text(f"SELECT pg_advisory_lock_shared({_KEY})"), {"endpoint": endpoint})
    except BaseException:
        conn.invalidate()
        conn.close()
        raise
    try:
        yield
    finally:
        try:
            conn.execute(text(f"SELECT pg_advisory_unlock_shared({_KEY})"), {"endpoint": endpoint})
        except BaseException:
            # not known to be unlocked: the session must end, not go back to the pool
            conn.invalidate()
            raise
        finally:
            conn.close()


@contextlib.contextmanager
def archiving(store: Store) -> Iterator[None]:
    """Around an archive commit's transaction (SQLite): wait for the reads in flight.

    Raises :class:`Busy` after :data:`WAIT_S`. On PostgreSQL the commit calls
    :func:`exclude_in` first in its transaction instead."""
    if not store.is_sqlite:
        yield
        return
    deadline = time.monotonic() + WAIT_S
    gate = _open(gate_file(store))
    try:
        _exclusive(gate, deadline)  # new reads wait from here on
        fd = _open(lock_file(store))
        try:
            _exclusive(fd, deadline)  # the reads in flight have ended
            yield
        finally:
            os.close(fd)
    finally:
        os.close(gate)


def _exclusive(fd: int, deadline: float) -> None:
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise Busy() from None
            time.sleep(0.01)


def exclude_in(conn: Connection, endpoint: str) -> None:
    """In an archive commit's transaction (PostgreSQL): wait for the reads of ``endpoint``
    in flight; the lock is held until the transaction ends. Raises :class:`Busy`."""
    if conn.dialect.name == "sqlite":
        return
    conn.execute(text(f"SET LOCAL lock_timeout = '{int(WAIT_S * 1000)}ms'"))
    try:
        conn.execute(text(f"SELECT pg_advisory_xact_lock({_KEY})"), {"endpoint": endpoint})
    except OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) == "55P03":  # lock_not_available
            raise Busy() from exc
        raise
    conn.execute(text("SET LOCAL lock_timeout = 0"))


def excluding(store: Store, endpoint: str, commit: Callable[[], bool]) -> bool:
    """``commit()`` (an archive commit of ``endpoint``, which calls :func:`exclude_in` first
    in its transaction) once no window read holds the endpoint; False, as for a refused
    commit, when reads held it for longer than :data:`WAIT_S`."""
    try:
        with archiving(store):
            return commit()
    except Busy:
        log.warning(
            "%s: window reads held the endpoint for %gs; its archive commit is tried again",
            endpoint,
            WAIT_S,
        )
        return False


def guarded(at: int) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """A window read whose store is its first argument and endpoint its ``at``-th."""

    def wrap(fn: Callable[P, T]) -> Callable[P, T]:
        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> T:
            with reading(_store(args), _endpoint(args, kwargs, at)):
                return fn(*args, **kwargs)

        return run

    return wrap


def guarded_iter(at: int) -> Callable[[Callable[P, Iterator[T]]], Callable[P, Iterator[T]]]:
    """:func:`guarded` for a read that yields: held until the iterator ends or is closed."""

    def wrap(fn: Callable[P, Iterator[T]]) -> Callable[P, Iterator[T]]:
        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> Iterator[T]:
            with reading(_store(args), _endpoint(args, kwargs, at)):
                yield from fn(*args, **kwargs)

        return run

    return wrap


def _store(args: tuple[Any, ...]) -> Store:
    store = args[0]
    assert isinstance(store, Store)
    return store


def _endpoint(args: tuple[Any, ...], kwargs: dict[str, Any], at: int) -> str:
    return str(args[at] if len(args) > at else kwargs["endpoint"])
