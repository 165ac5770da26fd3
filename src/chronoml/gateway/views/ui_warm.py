"""The endpoint pages' charts built once at server start, in the background.

The timeline and the drift grid keep what can no longer change, but after a
start they hold nothing: the first view of an endpoint would read a week of
decisions, labels and blocks (seconds at a million decisions). So once the
server has started, a thread builds each endpoint's default view (the charts
of the last :data:`~chronoml.gateway.views.ui.DEFAULT_WINDOW` to now), one
endpoint after the other, and later views find it built.

A page of an endpoint takes that endpoint's lock while it builds its charts:
a view asked for during the start-up build waits for it and then reads what it
built, instead of reading the same rows a second time next to it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)


class Warmer:
    """Builds ``build(endpoint)`` for every endpoint in a background thread, once."""

    def __init__(self, endpoints: Callable[[], list[str]], build: Callable[[str], None]) -> None:
        self._endpoints = endpoints
        self._build = build
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: set once every endpoint was built (or the build gave up)
        self.done = threading.Event()
        #: seconds the start-up build took, once done
        self.took_s: float | None = None

    @contextmanager
    def lock(self, endpoint: str) -> Iterator[None]:
        """Held while ``endpoint``'s charts are built, by the start-up build or a page."""
        with self._guard:
            lk = self._locks.setdefault(endpoint, threading.Lock())
        with lk:
            yield

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="chronoml-ui-warm", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def _run(self) -> None:
        started = time.perf_counter()
        try:
            for endpoint in self._endpoints():
                if self._stop.is_set():
                    return
                try:
                    with self.lock(endpoint):
                        self._build(endpoint)
                except Exception:  # its first view builds what this could not
                    log.exception("building the charts of endpoint %r at start failed", endpoint)
        except Exception:
            log.exception("listing the endpoints to build their charts at start failed")
        finally:
            self.took_s = time.perf_counter() - started
            self.done.set()
