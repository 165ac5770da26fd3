"""What the token check and the access line cost a predict, in one process.

Times, on a real store with a predictor token, the steps the guarded predict
path adds to the open one, each alone (medians of ``--runs`` rounds of
``--calls`` calls, microseconds per call):

- ``Access.refuse`` (Host, Content-Type and size from the raw headers),
- ``Access.principal`` of a kept principal (the cached answer),
- the route's role check (``check`` on the predict rule),
- the access line (``write_line``) to a file on the store's disk, as the
  server writes it to a redirected standard error,

and, beside them, how long requests wait for their principal under steady
traffic (16 requests with one token every millisecond for ``--seconds``): the
rounds in which the kept principal's lifetime ended and a store read ran. Run it with the
code before a change first on ``PYTHONPATH`` to compare.

    .venv/bin/python bench/serving/guard_parts.py
    PYTHONPATH=OLD_SRC .venv/bin/python bench/serving/guard_parts.py
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def per_call_us(fn: Callable[[], Any], calls: int, runs: int) -> float:
    fn()
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        out.append((time.perf_counter() - t) / calls)
    return 1e6 * statistics.median(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=5.0, help="of steady requests [5]")
    args = ap.parse_args()

    from chronoml.auth.access import create_token
    from chronoml.gateway import access as GA
    from chronoml.gateway import rules as GR
    from chronoml.gateway import server
    from chronoml.settings import Settings
    from chronoml.store import Store

    work = Path(tempfile.mkdtemp(prefix="chronoml-guard-parts-"))
    settings = Settings.from_env({}, home=work / "home")
    store = Store.open(settings.database_url, settings.home)
    store.upgrade()
    secret, _ = create_token(store, "bench", "predictor", by="bench")
    access = GA.Access(store, settings)
    scope: dict[str, Any] = {
        "type": "http",
        "method": "POST",
        "path": "/v1/endpoints/bench/predict",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"authorization", f"Bearer {secret}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", b"420"),
            (b"x-chronoml-unit", b"u-1"),
        ],
        "client": ("127.0.0.1", 50000),
    }
    rule = GR.ACTIONS[("POST", "/v1/endpoints/{endpoint}/predict")]
    assert rule is not None

    # the access log as the server sets it up, with standard error sent to a file
    saved = os.dup(2)
    log_fd = os.open(work / "access.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log_fd, 2)
    try:
        server.access_lines(True)
        loop = asyncio.new_event_loop()
        principal = loop.run_until_complete(access.principal(scope))

        started = time.perf_counter()
        results = {
            "refuse": per_call_us(
                lambda: access.refuse(scope, predict=True), args.calls, args.runs
            ),
            # in the running loop, as the request path awaits it (a kept answer does not suspend)
            "principal": loop.run_until_complete(
                _awaited_us(lambda: access.principal(scope), args.calls, args.runs)
            ),
            "role check": per_call_us(
                lambda: GR.check(principal, rule, "bench"), args.calls, args.runs
            ),
            "access line": per_call_us(
                lambda: access.write_line(principal, "POST", "/v1/...", 200, started),
                args.calls,
                args.runs,
            ),
        }
        waits = _steady(access, loop, scope, args.seconds)
        import logging

        for h in logging.getLogger("chronoml.access").handlers:
            h.flush()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(log_fd)
    for name, us in results.items():
        print(f"{name:<20} {us:7.2f} us")
    print(f"{'sum':<20} {sum(results.values()):7.2f} us")
    waits.sort()
    slow = [w for w in waits if w > 0.1]
    print(
        f"16 requests a millisecond for {args.seconds:g} s: {len(waits)} rounds, "
        f"{len(slow)} waited over 0.1 ms for their principal; slowest round's wait p99 "
        f"{waits[int(0.99 * (len(waits) - 1))]:.3f} ms, max {waits[-1]:.3f} ms"
    )
    store.close()
    return 0


async def _awaited_us(make: Any, calls: int, runs: int) -> float:
    """Median over ``runs`` of the microseconds per awaited call, ``calls`` per run."""
    await make()
    got = []
    for _ in range(runs):
        t = time.perf_counter()
        for _ in range(calls):
            await make()
        got.append((time.perf_counter() - t) / calls * 1e6)
    return statistics.median(got)


def _steady(
    access: Any, loop: asyncio.AbstractEventLoop, scope: Any, seconds: float
) -> list[float]:
    """16 requests with one token every millisecond for ``seconds``: each round's slowest
    wait for its principal, in ms (the rounds in which a lookup ran are the slow ones)."""

    async def one() -> float:
        t = time.perf_counter()
        await access.principal(scope)
        return time.perf_counter() - t

    async def rounds() -> list[float]:
        out = []
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            out.append(1000 * max(await asyncio.gather(*(one() for _ in range(16)))))
            await asyncio.sleep(0.001)
        return out

    return loop.run_until_complete(rounds())


if __name__ == "__main__":
    sys.exit(main())
