"""One scheduled monitor per store, however many server processes share it.

``chronoml server --workers N`` and independent replicas on one PostgreSQL
store each start a monitor. Without a leader every one of them would store
each window's results, log them to MLflow and evaluate the alert rules:
N copies of every metric and N webhooks for one breach.

The leader holds a lock that its operating system or database releases
when the process dies, so a crash never leaves monitoring unowned:

- SQLite: an exclusive ``flock`` on a file beside the database;
- PostgreSQL: a session advisory lock, keyed by the store's schema, on a
  connection of its own.

A process that is not the leader tries again before each pass. An explicit
``chronoml monitor run`` does not ask for the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from pathlib import Path
from typing import Any

from chronoml.store import Store

log = logging.getLogger("chronoml.monitor")


def _pg_key(role: str) -> str:
    return f"hashtext(current_schema() || '.chronoml-{role}')"


class Leadership:
    """Whether this process runs the scheduled monitoring passes of ``store`` (or, with
    another ``role``, whatever else one process per store should do: ``checkpoints``)."""

    def __init__(self, store: Store, role: str = "monitor") -> None:
        self.store = store
        self.role = role
        self._file: int | None = None  # SQLite: the locked file's descriptor
        self._conn: Any = None  # PostgreSQL: the session holding the advisory lock

    def held(self) -> bool:
        """True if this process leads, taking the lead when it is free."""
        try:
            return self._sqlite() if self.store.is_sqlite else self._postgresql()
        except Exception as exc:  # the store is away: nobody leads from here this time
            log.warning("cannot tell which process monitors this store: %s", exc)
            self.release()
            return False

    def release(self) -> None:
        fd, self._file = self._file, None
        if fd is not None:
            os.close(fd)  # closing the descriptor drops the flock
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # already gone: the lock went with it
                # unlocked before the session ends: its end reaches the server later
                # than close() returns, and the next leader must not wait for it
                with conn.cursor() as cur:
                    cur.execute(f"SELECT pg_advisory_unlock({_pg_key(self.role)})")
                conn.close()

    def _sqlite(self) -> bool:
        if self._file is not None:
            return True
        database = self.store.engine.url.database
        name = f"{self.role}-lock"
        path = Path(f"{database}.{name}") if database else self.store.home / name
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._file = fd
        return True

    def _postgresql(self) -> bool:
        if self._conn is not None:
            try:  # still connected, so still holding it
                with self._conn.cursor() as cur:
                    cur.execute("SELECT 1")
                return True
            except Exception:
                self.release()
        conn = self.store.engine.raw_connection()
        driver: Any = conn.driver_connection
        try:
            driver.autocommit = True
            with driver.cursor() as cur:
                cur.execute(f"SELECT pg_try_advisory_lock({_pg_key(self.role)})")
                row = cur.fetchone()
        except BaseException:
            conn.invalidate()
            raise
        if row is not None and row[0]:
            conn.detach()  # this session stays ours, outside the pool
            self._conn = driver
            return True
        driver.autocommit = False  # as the pool hands it out
        conn.close()
        return False
