"""Background work: one life cycle for every periodic thread, one pool for parallel maps.

A :class:`Worker` calls a function every interval (or sooner, when woken) in a
daemon thread until stopped; a failing pass is logged and the next one runs on
schedule. The outbox, the monitor, the retraining runner and the gateway's
ledger watcher are all workers. :func:`read_ahead` reads pages in a thread while the
caller works on the previous one.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger("chronoml.worker")


class Worker:
    """Runs ``step`` every ``interval_s`` seconds in a thread named ``name``.

    ``step`` returns True when it has more to do at once (a full batch), so
    the next pass starts without waiting. :meth:`wake` starts a pass now.
    """

    def __init__(self, name: str, step: Callable[[], bool | None], interval_s: float) -> None:
        self.name = name
        self.step = step
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.started = False  # whether a thread was ever started (and maybe stopped since)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the thread (once); an interval of 0 or less never starts one.

        A thread still finishing a pass from before a :meth:`stop` that timed out is
        not doubled: the start is refused until that pass ends.
        """
        if self.interval_s <= 0:
            return
        if self._thread is not None:
            if not self._thread.is_alive():
                self._thread = None  # it ended after its stop timed out
            elif self._stop.is_set():
                raise RuntimeError(f"{self.name}: the pass before its stop has not ended yet")
            else:
                return
        self._stop.clear()
        self.started = True
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Start a pass now rather than at the end of the interval."""
        self._wake.set()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop after the pass in flight, waiting at most ``timeout_s`` for it."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                # kept, so `running` stays true and a start cannot add a second thread
                log.warning("%s: still in a pass %gs after its stop", self.name, timeout_s)
            else:
                self._thread = None

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _loop(self) -> None:
        busy = False
        while not self._stop.is_set():
            if not busy:
                self._wake.wait(self.interval_s)
                self._wake.clear()
                if self._stop.is_set():
                    return
            try:
                busy = bool(self.step())
            except Exception:  # keep going after a store hiccup; the next pass retries
                log.exception("%s: pass failed", self.name)
                busy = False


def parallel(workers: int) -> Callable[[Callable[[T], R], Sequence[T]], Iterable[R]]:
    """A ``map`` over ``workers`` threads (in order), for work that releases the GIL."""

    def run(fn: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        if workers <= 1 or len(items) <= 1:
            return map(fn, items)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return iter(list(pool.map(fn, items)))

    return run


_END = object()


def read_ahead(
    make: Callable[[], Iterator[T]], depth: int = 2, name: str = "read-ahead"
) -> Iterator[T]:
    """The items of ``make()``, produced in a thread up to ``depth`` ahead of the consumer.

    For reading pages while the caller works on the previous one: a database driver
    waiting on its server or its file does so without the GIL. The iterator is made,
    run and closed in the thread (so a connection it holds is opened and given back
    there); an error in it is raised to the consumer; a consumer that stops early
    stops the thread.
    """
    q: queue.Queue[object] = queue.Queue(depth)
    stop = threading.Event()
    failed: list[BaseException] = []

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        items = make()
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            failed.append(exc)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()
        put(_END)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                if failed:
                    raise failed[0]
                return
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()
