"""The access log: one JSON line per request, written off the event loop.

A line is built where the request ends (orjson, a cached time of day) and
handed to :class:`AccessLines`, whose thread writes what has gathered over
20 ms in one ``write`` of whole lines (a stop writes what is left). The event loop never waits on the file: a write to a
disk that is committing its journal (the decision log fsyncs the same disk
hundreds of times a second) can block for milliseconds, and every request in
flight would wait with it.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from typing import Any

import orjson

from chronoml.auth import Principal
from chronoml.timeutil import iso, now_us

access_log = logging.getLogger("chronoml.access")

# lines of one write: at most this many bytes, so a pipe never splits one write
# (and the lines of several worker processes never interleave)
PIPE_BUF = 4096


def write_line(
    principal: Principal | None, method: str, route: str, status: int, started: float
) -> None:
    """One structured line per request: time, principal, client, method, route, status,
    latency (logger ``chronoml.access``)."""
    line = orjson.dumps(
        {
            "time": _line_time(),
            "principal": principal.actor if principal else None,
            "client": principal.client if principal else None,
            "method": method,
            "route": route,
            "status": status,
            "latency_ms": round((time.perf_counter() - started) * 1000, 3),
        },
        option=orjson.OPT_APPEND_NEWLINE,
    )
    handlers = access_log.handlers
    if len(handlers) == 1 and type(handlers[0]) is AccessLines and not access_log.filters:
        # as the server configures it: the line as is, with no log record to build
        handlers[0].write(line)
    else:
        access_log.info(line[:-1].decode())


def flush() -> None:
    """Write every access line still queued (the server is stopping)."""
    for handler in access_log.handlers:
        handler.flush()


class AccessLines(logging.Handler):
    """The access log's handler: lines go to a file descriptor (standard error) from a
    thread of their own, gathered into writes of whole lines.

    :meth:`flush` (and :meth:`close`) writes what is queued before returning.
    """

    def __init__(self, fd: int = 2, gather_s: float = 0.02) -> None:
        super().__init__(logging.INFO)
        self.fd = fd
        self.gather_s = gather_s  # how long the thread lets lines gather after a wake-up
        self._lines: collections.deque[bytes] = collections.deque()
        self._wake = threading.Event()
        self._writing = threading.Lock()  # one writer at a time, so lines keep their order
        self._closed = False
        self._thread: threading.Thread | None = None
        self._started = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        self.write((self.format(record) + "\n").encode())

    def write(self, line: bytes) -> None:
        """Queue one line (ending in a newline); the thread writes it soon."""
        self._lines.append(line)
        if self._thread is None:
            self._start()
        if not self._wake.is_set():
            self._wake.set()

    def flush(self) -> None:
        """Write every queued line now."""
        self._drain()

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(5)
        self._drain()
        super().close()

    def _start(self) -> None:
        with self._started:
            if self._thread is None and not self._closed:
                thread = threading.Thread(target=self._run, name="chronoml-access-log", daemon=True)
                thread.start()
                self._thread = thread

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait()
            self._wake.clear()
            if self.gather_s > 0 and not self._closed:
                time.sleep(self.gather_s)  # the lines of the next few requests join this write
            self._drain()

    def _drain(self) -> None:
        with self._writing:
            lines = self._lines
            chunk: list[bytes] = []
            size = 0
            while lines:
                line = lines.popleft()
                if chunk and size + len(line) > PIPE_BUF:
                    self._write(b"".join(chunk))
                    chunk, size = [], 0
                chunk.append(line)
                size += len(line)
            if chunk:
                self._write(b"".join(chunk))

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.fd, view) :]
        except OSError:
            pass  # standard error is gone: there is nowhere left to say so


# the access line's time: the date and time to the second are formatted once a second
_second: list[Any] = [None, ""]


def _line_time() -> str:
    us = now_us()
    sec = us // 1_000_000
    if sec != _second[0]:
        _second[0], _second[1] = sec, iso(sec * 1_000_000)[:-8]
    return f"{_second[1]}.{us % 1_000_000:06d}Z"
