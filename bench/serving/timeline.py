"""Where a 1000-row request's wall time goes inside `chronoml server`, step by step.

Sets up the model and 90/10 deployment of ``bench.py``, serves it with each step of
the request path wrapped in a timer (the body's parse, the model call, the batch's
encoding, the evidence entry, the durable append, the answer handed back to the
event loop) and the garbage collector's passes recorded, then sends ``--requests``
1000-row requests one after the other. Per step it prints the median wall time and
the median CPU time of its thread (``time.thread_time``): where the two differ, the
step waited (for a core, the disk, or the lock other threads hold). It also prints
the collector's time inside each request (median, mean, worst). With ``--before
SRC`` the same is done for that copy of the code, alternating, ``--rounds`` times.

    .venv/bin/python bench/serving/timeline.py --requests 200
    .venv/bin/python bench/serving/timeline.py --requests 200 --before OLD_SRC --rounds 2
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench

# run as the server's main module: wraps the steps, then starts `chronoml server`
LAUNCHER = r"""
import gc, json, os, sys, threading, time
from chronoml.gateway import batching, fast, gateway
from chronoml.store import decisions
T = []
def wrap(owner, name, label):
    f = getattr(owner, name)
    def timed(*a, **k):
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            return f(*a, **k)
        finally:
            T.append((label, t0, time.perf_counter(), time.thread_time() - c0))
    setattr(owner, name, timed)
def awrap(owner, name, label):
    f = getattr(owner, name)
    async def timed(*a, **k):
        t0 = time.perf_counter()
        try:
            return await f(*a, **k)
        finally:
            T.append((label, t0, time.perf_counter(), 0.0))
    setattr(owner, name, timed)
wrap(gateway.Gateway, "_rows", "parse")
wrap(batching.Batcher, "_predict", "model call and packing")
wrap(batching.Batcher, "_compute", "batch (model call, ids, block)")
wrap(decisions, "decision_entry", "evidence entry (hashes)")
wrap(decisions.Appender, "append", "durable append (entry, SQL, commit)")
wrap(batching, "_settle", "answer settled on the loop")
awrap(fast.GatewayApp, "_serve", "request")
awrap(gateway.Gateway, "answer", "answer")
started = {}
def on_gc(phase, info):
    if phase == "start":
        started["t"] = time.perf_counter()
    else:
        T.append(("gc", started.get("t", 0.0), time.perf_counter(), 0.0))
gc.callbacks.append(on_gc)
OUT = sys.argv.pop()
def dump():
    while True:
        time.sleep(0.5)
        with open(OUT + ".tmp", "w") as f:
            json.dump(list(T), f)
        os.replace(OUT + ".tmp", OUT)
threading.Thread(target=dump, daemon=True).start()
sys.argv = ["chronoml", *sys.argv[1:]]
from chronoml.cli import main
main()
"""
STEPS = [
    "parse",
    "batch (model call, ids, block)",
    "model call and packing",
    "evidence entry (hashes)",
    "durable append (entry, SQL, commit)",
    "answer settled on the loop",
]


def run_one(work: Path, env: dict[str, str], body: bytes, requests: int) -> dict[str, Any]:
    """Serve with the timers, send the requests, return the per-step medians."""
    import httpx

    launcher = work / "timeline_launch.py"
    launcher.write_text(LAUNCHER)
    out = work / "timeline.json"
    out.unlink(missing_ok=True)
    port = bench.free_port()
    with open(work / "timeline.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(launcher), "server", "--port", str(port), "--log-level",
             "warning", str(out)],
            env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            bench.wait_http(f"http://127.0.0.1:{port}/health", proc)
            url = f"http://127.0.0.1:{port}/v1/endpoints/bench/predict"
            headers = {
                "Content-Type": "application/json",
                "Authorization": env.get("BENCH_AUTH", ""),
            }
            client_ms = []
            with httpx.Client(timeout=30) as c:
                for i in range(requests + 20):  # the first 20 warm up
                    headers["X-Chronoml-Unit"] = f"customer-{i}"
                    t = time.perf_counter()
                    r = c.post(url, content=body, headers=headers)
                    if r.status_code != 200:
                        raise RuntimeError(f"predict answered {r.status_code}: {r.text[:200]}")
                    if i >= 20:
                        client_ms.append(1000 * (time.perf_counter() - t))
            time.sleep(1.2)  # the last dump
        finally:
            bench.stop(proc)
    spans = json.loads(out.read_text())
    served = sorted((s for s in spans if s[0] == "request"), key=lambda s: s[1])[20:]
    got: dict[str, Any] = {"client p50": statistics.median(client_ms)}
    got["request"] = statistics.median(1000 * (s[2] - s[1]) for s in served)
    for step in STEPS:
        inside = [t for s in served for t in spans if t[0] == step and s[1] <= t[1] <= s[2]]
        if inside:
            got[step] = (
                statistics.median(1000 * (t[2] - t[1]) for t in inside),
                statistics.median(1000 * t[3] for t in inside),
            )
    got["gaps"] = _gaps(served, spans)
    gcs = [t for t in spans if t[0] == "gc"]
    per = [sum(g[2] - g[1] for g in gcs if s[1] <= g[1] <= s[2]) * 1000 for s in served]
    got["gc"] = (statistics.median(per), statistics.mean(per), max(per))
    return got


# the time between the timed steps, each as (label, the span it starts after and which
# end of it, the span it ends at and which end): the token check and the body's
# arrival, hand-offs between threads, the answer's JSON, the response and access line
GAPS = [
    ("token check, headers, body received", ("request", 1), ("answer", 1)),
    ("answer until the parse", ("answer", 1), ("parse", 1)),
    ("parse to the model thread", ("parse", 2), ("batch (model call, ids, block)", 1)),
    ("model thread to the log writer", ("batch (model call, ids, block)", 2),
     ("durable append (entry, SQL, commit)", 1)),
    ("log writer back to the loop", ("durable append (entry, SQL, commit)", 2),
     ("answer settled on the loop", 1)),
    ("the answer's JSON", ("answer settled on the loop", 2), ("answer", 2)),
    ("response sent, access line", ("answer", 2), ("request", 2)),
]  # fmt: skip


def _gaps(served: list[Any], spans: list[Any]) -> dict[str, float]:
    """Per gap of :data:`GAPS`, its median over the requests (ms)."""
    out: dict[str, list[float]] = {g[0]: [] for g in GAPS}
    for s in served:
        inside: dict[str, Any] = {s[0]: s}
        for t in spans:
            if t[0] != "request" and s[1] <= t[1] <= s[2]:
                inside.setdefault(t[0], t)  # the first of each in the request
        for label, (a, ea), (b, eb) in GAPS:
            if a in inside and b in inside:
                out[label].append(1000 * (inside[b][eb] - inside[a][ea]))
    return {k: statistics.median(v) for k, v in out.items() if v}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--before", type=Path, help="a copy of chronoml's src: measured in turn")
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="chronoml-bench-timeline-"))
    try:
        envs = {"chronoml": bench.setup(work)}
        if args.before:
            envs["before"] = bench.setup(work, args.before.resolve())
        _, many = bench.bodies(work)
        body = many.read_bytes()
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in envs}
        for i in range(args.rounds):
            names = list(envs) if i % 2 == 0 else list(reversed(envs))
            for name in names:
                results[name].append(run_one(work, envs[name], body, args.requests))
        for name, runs in results.items():
            print(f"\n== {name} ({len(runs)} round(s) of {args.requests} requests; medians, ms)")
            for key in ("client p50", "request"):
                print(f"{key:<40} {statistics.median(r[key] for r in runs):8.2f}")
            for step in STEPS:
                vals = [r[step] for r in runs if step in r]
                if vals:
                    wall = statistics.median(v[0] for v in vals)
                    cpu = statistics.median(v[1] for v in vals)
                    print(f"{step:<40} {wall:8.2f} wall {cpu:8.2f} CPU")
            print("between the steps (wall):")
            for label, *_ in GAPS:
                gaps = [r["gaps"][label] for r in runs if label in r["gaps"]]
                if gaps:
                    print(f"  {label:<38} {statistics.median(gaps):8.2f}")
            g = [r["gc"] for r in runs]
            print(
                f"{'collector inside a request':<40} median {statistics.median(x[0] for x in g):.2f}"
                f", mean {statistics.median(x[1] for x in g):.2f}, worst {max(x[2] for x in g):.1f}"
            )
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
