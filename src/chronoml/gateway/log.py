"""The durable decision log writer: one thread, group commit.

Requests hand their rows to the writer and wait; the writer takes everything
queued, writes it in one transaction and only then releases the waiters.
A 2xx is therefore never sent for a decision that is not committed, and many
concurrent requests share one fsync. With a commit wait (``--commit-wait-ms``)
the writer waits that long before each commit for more rows to join it (no
transaction is open while it waits): fewer, larger commits on a store many
replicas share, for that much more latency. On SQLite a second thread
checkpoints the WAL now and then, so no commit pays for a checkpoint.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from chronoml.store import decisions as D
from chronoml.store import ingest
from chronoml.store.database import Store

log = logging.getLogger("chronoml.log")

# called in the writer's thread once the rows are committed (None) or not (the error)
Done = Callable[[BaseException | None], None]
_Item = tuple[Sequence[D.DecisionTuple], Sequence[tuple[Any, ...]], Done, Sequence[ingest.Block]]

CHECKPOINT_INTERVAL_S = 1.0


class DecisionLog:
    """Group-committing writer for decision rows (tuples in :data:`D.COLUMNS` order)."""

    def __init__(
        self,
        store: Store,
        max_rows_per_commit: int = 4096,
        on_commit: Callable[[int, float], None] | None = None,
        commit_wait_s: float = 0.0,
    ) -> None:
        self.store = store
        self.max_rows = max_rows_per_commit
        self.commit_wait_s = commit_wait_s  # how long a commit waits for more rows to join
        self.on_commit = on_commit
        self._appender = D.Appender(store)
        self._q: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._pending = 0
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chronoml-decision-log", daemon=True)
        self._thread.start()
        self._checkpointer: threading.Thread | None = None
        if store.is_sqlite:
            self._checkpointer = threading.Thread(
                target=self._checkpoint_loop, name="chronoml-wal-checkpoint", daemon=True
            )
            self._checkpointer.start()

    @property
    def depth(self) -> int:
        """Groups of rows waiting to be committed."""
        return self._pending

    def submit(
        self,
        rows: Sequence[D.DecisionTuple],
        explanations: Sequence[tuple[Any, ...]],
        done: Done,
        blocks: Sequence[ingest.Block] = (),
    ) -> None:
        """Queue rows, ingest blocks and explanations; ``done`` is called once they are
        committed, with None, or with the error if they could not be."""
        if self._closed.is_set():
            done(RuntimeError("the decision log is closed"))
            return
        with self._lock:
            self._pending += 1
        self._q.put((rows, explanations, done, blocks))

    def close(self, timeout: float = 30.0) -> None:
        """Flush everything queued, then stop."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._q.put(None)
        self._thread.join(timeout)
        if self._checkpointer is not None:
            self._checkpointer.join(timeout)
        self._appender.close()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            item = self._q.get()
            if item is None:
                break
            batch: list[_Item] = [item]
            n = len(item[0]) + sum(b.rows for b in item[3])
            until = time.monotonic() + self.commit_wait_s
            while n < self.max_rows:
                try:
                    wait = until - time.monotonic()
                    nxt = self._q.get(timeout=wait) if wait > 0 else self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stopping = True
                    break
                batch.append(nxt)
                n += len(nxt[0]) + sum(b.rows for b in nxt[3])
            rows = [r for rs, _, _, _ in batch for r in rs] if len(batch) > 1 else batch[0][0]
            explanations = [e for _, es, _, _ in batch for e in es]
            blocks = [b for _, _, _, bs in batch for b in bs]
            t0 = time.perf_counter()
            try:
                self._appender.append(rows, explanations, blocks)
            except Exception as exc:  # the store is down: every waiter learns it
                log.error("decision log write failed: %s", str(exc).splitlines()[0])
                outcome: BaseException | None = exc
            else:
                outcome = None
                if self.on_commit is not None:
                    self.on_commit(
                        len(rows) + sum(b.rows for b in blocks), time.perf_counter() - t0
                    )
            with self._lock:
                self._pending -= len(batch)
            for _, _, done, _ in batch:
                try:
                    done(outcome)
                except Exception:  # one waiter's bug must not stop the writer
                    log.exception("decision log callback failed")

    def _checkpoint_loop(self) -> None:
        while not self._closed.wait(CHECKPOINT_INTERVAL_S):
            try:
                self._appender.checkpoint()
            except Exception as exc:  # read-only or locked: the next tick tries again
                log.debug("WAL checkpoint skipped: %s", exc)
