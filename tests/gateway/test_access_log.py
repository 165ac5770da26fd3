"""The access log's writer: every line, in order, whole, off the requests' thread."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from chronoml.gateway.access_log import PIPE_BUF, AccessLines


def _read_all(fd: int, out: list[bytes]) -> None:
    while chunk := os.read(fd, 65536):
        out.append(chunk)


class Recorded(AccessLines):
    """The handler, noting the size of each write it makes."""

    def __init__(self, fd: int) -> None:
        super().__init__(fd)
        self.sizes: list[int] = []

    def _write(self, data: bytes) -> None:
        self.sizes.append(len(data))
        super()._write(data)


def test_lines_reach_a_pipe_in_order_and_whole_in_writes_a_pipe_keeps_atomic() -> None:
    r, w = os.pipe()
    chunks: list[bytes] = []
    reader = threading.Thread(target=_read_all, args=(r, chunks))
    reader.start()
    handler = Recorded(w)
    sent = [
        json.dumps({"n": i, "route": "/v1/endpoints/{endpoint}/predict", "pad": "x" * (i % 90)})
        for i in range(3000)
    ]
    for line in sent:
        handler.write(line.encode() + b"\n")
    handler.close()  # writes what is still queued
    os.close(w)
    reader.join(30)
    os.close(r)
    got = b"".join(chunks).decode().splitlines()
    assert got == sent
    # every write was whole lines of at most PIPE_BUF bytes (a pipe's atomic size), so
    # lines from several worker processes sharing standard error cannot interleave
    assert handler.sizes and all(n <= PIPE_BUF for n in handler.sizes)


def test_flush_writes_queued_lines_before_it_returns(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        handler = AccessLines(fd, gather_s=60.0)  # the thread would wait a minute
        handler.write(b'{"status": 200}\n')
        handler.write(b'{"status": 401}\n')
        handler.flush()
        assert path.read_bytes() == b'{"status": 200}\n{"status": 401}\n'
    finally:
        os.close(fd)


def test_the_server_freezes_what_its_start_up_made_out_of_the_collectors_view() -> None:
    """A full collection does not walk the libraries and models (in a process of its own:
    a frozen test process would keep every later app's garbage)."""
    code = """
import gc
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from chronoml.gateway.server import frozen_after_start

app = frozen_after_start(Starlette(routes=[Route("/", lambda r: PlainTextResponse("ok"))]))
assert gc.get_freeze_count() == 0
with TestClient(app) as client:
    assert client.get("/").text == "ok"
    print(gc.get_freeze_count())
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    assert int(out.strip()) > 10_000
