"""Where a request's CPU goes: py-spy samples of `chronoml server` under the bench's load.

Sets up the same model and 90/10 deployment as ``bench.py``, serves it, drives
it with wrk (single rows at 16 connections, or 1000-row requests at one), and
records the server with py-spy at the same time (``--threads``, every thread,
idle samples dropped). It prints, per thread, the share of samples and the
functions with the most samples inside them (inclusive), as microseconds of
CPU per request (samples x interval / requests served).

    .venv/bin/python bench/serving/profile.py --load one --duration 8
    .venv/bin/python bench/serving/profile.py --load many --before OLD_SRC

Needs ``wrk`` and ``py-spy`` (``pip install py-spy``; it reads the server's
memory, so it needs ptrace rights: root, or ``kernel.yama.ptrace_scope=0``).
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench

RATE = 997  # samples per second (a prime, so it does not beat with a timer)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--load", choices=["one", "many"], default="one")
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--before", type=Path, default=None, help="profile this copy of src instead")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--open", action="store_true", help="serve with --open-predict")
    ap.add_argument(
        "--gil", action="store_true", help="only samples holding the GIL (Python's own CPU)"
    )
    args = ap.parse_args()
    spy = Path(sys.executable).parent / "py-spy"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = bench.setup(work, args.before)
        one, many = bench.bodies(work)
        name = "before" if args.before else ("chronoml-open" if args.open else "chronoml")
        proc, url, _ = bench.serve(name, bench.free_port(), env, work, 1)
        try:
            body, conns = (one, 16) if args.load == "one" else (many, 1)
            bench.wrk(url, body, conns, 2, work, env.get("BENCH_AUTH", ""))  # warm up
            out = work / "spy.txt"
            recorder = subprocess.Popen(
                [
                    str(spy), "record", "--pid", str(proc.pid), "--threads", "--format", "raw",
                    "--rate", str(RATE), "--duration", str(int(args.duration) + 2),
                    "--output", str(out), "--nonblocking", *(["--gil"] if args.gil else []),
                ],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            auth = "" if args.open else env.get("BENCH_AUTH", "")
            cpu0 = bench.tree_cpu_seconds(proc.pid)
            got = bench.wrk(url, body, conns, args.duration, work, auth)
            cpu = bench.tree_cpu_seconds(proc.pid) - cpu0
            recorder.wait()
        finally:
            bench.stop(proc)
        print(
            f"{got['rps']:.0f} req/s, p50 {got['p50']:.2f} ms, p99 {got['p99']:.2f} ms; "
            f"server CPU {1e6 * cpu / max(got['requests'], 1):.1f} us/request (/proc)"
        )
        report(out, got["requests"], args.top)
    return 0


def report(path: Path, requests: int, top: int) -> None:
    """Inclusive samples per function within each thread, as us of CPU per request."""
    per_us = 1e6 / RATE / max(requests, 1)
    threads: collections.Counter[str] = collections.Counter()
    inclusive: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    own: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        thread = _thread_name(frames)
        threads[thread] += n
        seen = set()
        for f in frames[1:]:
            fn = _short(f)
            if fn not in seen:
                inclusive[thread][fn] += n
                seen.add(fn)
        if len(frames) > 1:
            own[thread][_short(frames[-1])] += n
    total = sum(threads.values())
    print(f"{requests} requests; {total * per_us:.1f} us of sampled CPU per request")
    for thread, n in threads.most_common():
        print(f"\n== {thread}: {n * per_us:.1f} us/request ({100 * n / total:.0f}%)")
        print("   inclusive")
        for fn, k in inclusive[thread].most_common(top):
            print(f"   {k * per_us:8.1f}  {fn}")
        print("   self")
        for fn, k in own[thread].most_common(top // 2):
            print(f"   {k * per_us:8.1f}  {fn}")


def _thread_name(frames: list[str]) -> str:
    """A thread named by what it runs: the target under ``Thread.run``, else the event loop."""
    names = [_short(f) for f in frames[1:]]
    for i, fn in enumerate(names[:-1]):
        if fn.startswith("Thread.run ") or fn.startswith("Worker._loop "):
            nxt = names[i + 1]
            return "worker " + nxt if fn.startswith("Worker.") else nxt
    return "event loop (main thread)"


def _short(frame: str) -> str:
    """'fn (path/to/module.py:123)' -> 'fn (module.py)'."""
    name, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0].rstrip(")")
    parts = file.split(os.sep)
    return f"{name} ({'/'.join(parts[-2:])})"


if __name__ == "__main__":
    raise SystemExit(main())
