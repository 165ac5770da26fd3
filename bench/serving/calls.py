"""Function calls per single-row request, counted: chronoml's server against older code.

Timings on a shared machine move by 1.5-2x between runs; call counts do not. This
serves the bench's model and 90/10 split (``bench.setup``) from a wrapper that
counts every Python call and every call of a C function, in every thread of the
server, then sends the same requests, one at a time on one connection (so every
request is a batch of its own in both servers), and prints per request:

- the calls of each thread (event loop, model thread, log writer, ...),
- the calls by package (chronoml, starlette, uvicorn, sqlalchemy, numpy, ...),
- with ``--before``, the functions whose counts differ most between the two.

    .venv/bin/python bench/serving/calls.py --before OLD_SRC --requests 400
    .venv/bin/python bench/serving/calls.py --open --top 40

The counter slows the server down several times over, so only the counts mean
anything here, not the time the run takes.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench

ENTRY = r"""
import collections, json, os, signal, sys, threading

counters = []
names = {}


def make_counter():
    counts = collections.Counter()
    counters.append((threading.current_thread(), counts))

    def count(frame, event, arg):
        if event == "call":
            counts[frame.f_code] += 1
        elif event == "c_call":
            counts[arg] += 1

    return count


def first(frame, event, arg):  # the first event of a new thread installs its own counter
    fn = make_counter()
    sys.setprofile(fn)
    fn(frame, event, arg)


def label(key):
    code = getattr(key, "co_filename", None)
    if code is not None:
        return f"{key.co_filename}:{key.co_firstlineno}:{key.co_qualname}"
    mod = getattr(key, "__module__", None) or type(getattr(key, "__self__", None)).__module__
    return f"<c>{mod}:{getattr(key, '__qualname__', repr(key))}"


def reset(*_):
    for _thread, counts in counters:
        counts.clear()


def dump(*_):
    out = {}
    for thread, counts in list(counters):
        mine = out.setdefault(thread.name.split("(")[0].rstrip("-0123456789") or "thread", {})
        for key, n in list(counts.items()):
            mine[label(key)] = mine.get(label(key), 0) + n
    with open(os.environ["CALLS_OUT"], "w") as f:
        json.dump(out, f)


signal.signal(signal.SIGUSR1, reset)
signal.signal(signal.SIGUSR2, dump)
threading.setprofile(first)
sys.setprofile(make_counter())
from chronoml.cli import main
sys.argv[0] = "chronoml"
main()
"""

GROUPS = (
    "chronoml", "starlette", "uvicorn", "sqlalchemy", "sklearn", "numpy", "pandas", "orjson",
    "httptools", "uvloop", "asyncio", "concurrent", "threading", "hashlib", "sqlite3", "psycopg",
    "anyio", "logging", "queue", "json", "typing", "mlflow",
)  # fmt: skip


def group(label: str) -> str:
    for g in GROUPS:
        if (
            f"/{g}/" in label
            or f"/{g}.py" in label
            or label.startswith(f"<c>{g}")
            or (label.startswith("<c>_") and label[4:].startswith(g))
        ):
            return g
    return "builtins/other C" if label.startswith("<c>") else "other Python"


def short(label: str) -> str:
    """Drop the directory part of a Python label (``/x/y/chronoml/a/b.py:10:f`` -> ``chronoml/a/b.py:10:f``)."""
    if label.startswith("<c>"):
        return label
    path, _, rest = label.partition(".py:")
    parts = path.split("/")
    for i, p in enumerate(parts):
        if p in ("chronoml", "site-packages") or p.startswith("python3"):
            keep = (
                parts[i + 1 :] if p in ("site-packages",) or p.startswith("python3") else parts[i:]
            )
            return "/".join(keep) + ".py:" + rest
    return label


def count(
    name: str, env: dict[str, str], work: Path, body: bytes, n: int, open_: bool, conns: int
) -> dict:
    port = bench.free_port()
    (work / "calls_entry.py").write_text(ENTRY)
    out = work / f"calls-{name}.json"
    flags = bench._open_flags(["-m", "chronoml.cli"], env, work) if open_ else []
    cmd = [sys.executable, str(work / "calls_entry.py"), "server", "--port", str(port),
           "--log-level", "warning", *flags]  # fmt: skip
    log = open(work / f"calls-{name}.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        cmd, env={**env, "CALLS_OUT": str(out)}, cwd=work, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        bench.wait_http(f"http://127.0.0.1:{port}/health", proc)
        headers = {"Content-Type": "application/json"}
        if not open_ and env.get("BENCH_AUTH"):
            headers["Authorization"] = env["BENCH_AUTH"]

        def one_conn(k: int) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            for _ in range(k):
                conn.request("POST", "/v1/endpoints/bench/predict", body=body, headers=headers)
                r = conn.getresponse()
                r.read()
                if r.status != 200:
                    raise SystemExit(f"{name}: HTTP {r.status}")
            conn.close()

        def send(k: int) -> None:
            with concurrent.futures.ThreadPoolExecutor(conns) as pool:
                for f in [pool.submit(one_conn, k // conns) for _ in range(conns)]:
                    f.result()

        send(max(n // 4, 50))  # warm up: caches, first batches, lazy imports
        time.sleep(1.0)
        os.kill(proc.pid, signal.SIGUSR1)
        time.sleep(0.2)
        send(n)
        time.sleep(1.0)  # the log writer's last group commit
        os.kill(proc.pid, signal.SIGUSR2)
        for _ in range(100):
            if out.exists() and out.stat().st_size:
                break
            time.sleep(0.1)
        time.sleep(0.5)
        return json.loads(out.read_text())
    finally:
        bench.stop(proc)
        log.close()


def per_request(
    got: dict, n: int, only: str | None = None
) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """Calls per request by thread, by package, and by function (of thread ``only``, or all)."""
    threads: dict[str, float] = collections.Counter()
    groups: dict[str, float] = collections.Counter()
    funcs: dict[str, float] = collections.Counter()
    for thread, counts in got.items():
        for label, c in counts.items():
            threads[thread] += c / n
            groups[group(label)] += c / n
            if only is None or thread == only:
                funcs[short(label)] += c / n
    return threads, groups, funcs


def show(title: str, cols: list[str], rows: dict[str, list[float]], top: int | None = None) -> None:
    print(f"\n{title}")
    print(" | ".join(["", *cols]))
    items = sorted(rows.items(), key=lambda kv: -max(abs(v) for v in kv[1]))
    for key, vals in items[:top]:
        print(" | ".join([key, *(f"{v:,.1f}" for v in vals)]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--before", type=Path, default=None, help="also count this copy of src")
    ap.add_argument("--open", action="store_true", help="serve with --open-predict --no-access-log")
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument(
        "--thread", default=None, help="list the functions of this thread only (e.g. MainThread)"
    )
    ap.add_argument(
        "--conns", type=int, default=1,
        help="connections at once [1: every request a batch of its own]; with more, requests "
        "share model calls and group commits as under the bench's load",
    )  # fmt: skip
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        envs = {"chronoml": bench.setup(work)}
        if args.before:
            envs["before"] = bench.setup(work, args.before.resolve())
        one, _ = bench.bodies(work)
        body = one.read_bytes()
        results = {}
        for name, env in envs.items():
            open_ = args.open or name == "before"
            got = count(name, env, work, body, args.requests, open_, args.conns)
            results[name] = per_request(got, args.requests, args.thread)
    names = list(results)
    for i, title in enumerate(("calls per request, by thread", "calls per request, by package")):
        keys = set().union(*(r[i] for r in results.values()))
        show(title, names, {k: [results[n][i].get(k, 0.0) for n in names] for k in keys})
    total = {n: sum(results[n][0].values()) for n in names}
    print("\ntotal calls per request: " + ", ".join(f"{n} {t:,.1f}" for n, t in total.items()))
    funcs = {n: results[n][2] for n in names}
    if len(names) == 2:
        a, b = names
        keys = set(funcs[a]) | set(funcs[b])
        diff = {
            k: [
                funcs[a].get(k, 0.0) - funcs[b].get(k, 0.0),
                funcs[a].get(k, 0.0),
                funcs[b].get(k, 0.0),
            ]
            for k in keys
        }
        show(f"functions whose calls per request differ most ({a} - {b}, {a}, {b})",
             ["difference", a, b], {k: v for k, v in diff.items() if abs(v[0]) >= 0.5}, args.top)  # fmt: skip
    else:
        show("functions with the most calls per request", names,
             {k: [v] for k, v in funcs[names[0]].items()}, args.top)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
