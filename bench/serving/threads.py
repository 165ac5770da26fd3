"""Where a single-row request's CPU goes: user and system time of each server thread.

Sets up the model and 90/10 deployment of ``bench.py`` and drives each server with the
same closed-loop load (wrk, 16 connections, single rows, ``--duration`` seconds). Around
each run it reads every thread's user and system time, its context switches and the
process's disk writes from ``/proc``, and names the threads by what they run (the server
is started from a small wrapper that lists its threads' native ids and targets). It
prints, per request:

- microseconds of user and of system CPU in each thread (event loop, model threads, the
  decision log's writer, the access-log writer, the background workers, ...),
- voluntary and involuntary context switches (each hand-off between threads is one
  wake-up at least),
- bytes written to disk and write calls,

for ``chronoml`` (this checkout's code), the empty ASGI app on the same stack (its one
thread is the floor: HTTP parsing and the answer), and, with ``--before SRC``, an older
copy of the code. Rounds alternate the order and report medians. CPU times are per-tick
counts from the kernel (10 ms), summed over thousands of requests: they hold up on a
loaded machine far better than throughput does.

    .venv/bin/python bench/serving/threads.py --duration 5 --rounds 3
    .venv/bin/python bench/serving/threads.py --before OLD_SRC --open --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench

ENTRY = r"""
import json, os, signal, sys, threading


def dump(*_):
    out = {}
    for t in threading.enumerate():
        target = getattr(t, "_target", None)
        what = getattr(target, "__qualname__", None) or t.name.split("(")[0].rstrip("-0123456789")
        if t is threading.main_thread():
            what = "event loop"
        out[str(t.native_id)] = what
    with open(os.environ["THREADS_OUT"], "w") as f:
        json.dump(out, f)


signal.signal(signal.SIGUSR2, dump)
from chronoml.cli import main
sys.argv[0] = "chronoml"
main()
"""

TICK = os.sysconf("SC_CLK_TCK")


def snapshot(pid: int) -> dict[str, dict[str, float]]:
    """Per thread id: user and system seconds, context switches; and the process's io."""
    got: dict[str, dict[str, float]] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            raw = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
            status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        except OSError:
            continue  # the thread ended between the listing and the read
        f = raw[raw.rindex(")") + 2 :].split()
        row = {"user": int(f[11]) / TICK, "sys": int(f[12]) / TICK}
        for line in status.splitlines():
            key, _, value = line.partition(":")
            if key in ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"):
                row[key.split("_")[0]] = float(value)
        got[tid] = row
    io = dict(
        line.split(": ")
        for line in Path(f"/proc/{pid}/io").read_text().splitlines()
        if ": " in line
    )
    got["io"] = {"write_bytes": float(io["write_bytes"]), "syscw": float(io["syscw"])}
    return got


def run(
    name: str, env: dict[str, str], work: Path, body: Path, duration: float, open_: bool
) -> dict[str, dict[str, float]]:
    """One load run; per thread label: each quantity per request."""
    port = bench.free_port()
    out = work / f"threads-{name}.json"
    out.unlink(missing_ok=True)
    log = open(work / f"threads-{name}.log", "wb")  # noqa: SIM115 - closed with the process
    if name == "empty":
        proc, url, _ = bench.serve("empty", port, env, work, 1)
    else:
        (work / "threads_entry.py").write_text(ENTRY)
        flags = bench._open_flags(["-m", "chronoml.cli"], env, work) if open_ else []
        cmd = [sys.executable, str(work / "threads_entry.py"), "server", "--port", str(port),
               "--log-level", "warning", *flags]  # fmt: skip
        proc = subprocess.Popen(
            cmd, env={**env, "THREADS_OUT": str(out)}, cwd=work, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}/v1/endpoints/bench/predict"
        bench.wait_http(f"http://127.0.0.1:{port}/health", proc)
    auth = "" if open_ or name == "empty" else env.get("BENCH_AUTH", "")
    try:
        bench.wrk(url, body, 16, 2, work, auth)  # warm up: first batches, lazy imports
        time.sleep(0.5)
        a = snapshot(proc.pid)
        got = bench.wrk(url, body, 16, duration, work, auth)
        time.sleep(0.3)  # the log writer's last group commit
        b = snapshot(proc.pid)
        if name == "empty":
            names = {tid: "event loop" for tid in b if tid != "io"}
        else:
            os.kill(proc.pid, signal.SIGUSR2)
            for _ in range(100):
                if out.exists() and out.stat().st_size:
                    break
                time.sleep(0.05)
            time.sleep(0.1)
            names = json.loads(out.read_text())
    finally:
        bench.stop(proc)
        log.close()
    n = got["requests"]
    if got["errors"]:
        raise SystemExit(f"{name}: {got['errors']} errors under load")
    per: dict[str, dict[str, float]] = {}
    for tid, row in b.items():
        label = "io" if tid == "io" else names.get(tid, "other")
        before = a.get(tid, dict.fromkeys(row, 0.0))
        mine = per.setdefault(label, {})
        for k, v in row.items():
            mine[k] = mine.get(k, 0.0) + (v - before.get(k, 0.0)) / n
    per["requests"] = {"rps": got["rps"], "p99": got["p99"]}
    return per


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per load run [5]")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--before", type=Path, default=None, help="also measure this copy of src")
    ap.add_argument(
        "--open", action="store_true", help="serve chronoml with --open-predict --no-access-log"
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        envs = {"chronoml": bench.setup(work)}
        if args.before:
            envs["before"] = bench.setup(work, args.before.resolve())
        one, _ = bench.bodies(work)
        order = ["empty", *envs]
        results: dict[str, list[dict[str, dict[str, float]]]] = {k: [] for k in order}
        for r in range(args.rounds):
            for name in order if r % 2 == 0 else order[::-1]:
                env = envs.get(name, envs["chronoml"])
                results[name].append(
                    run(name, env, work, one, args.duration, args.open or name == "before")
                )
    for name, runs in results.items():
        show(name, runs)
    return 0


def show(name: str, runs: list[dict[str, dict[str, float]]]) -> None:
    def med(label: str, key: str, scale: float = 1.0) -> float:
        return statistics.median(r.get(label, {}).get(key, 0.0) * scale for r in runs)

    labels = sorted({k for r in runs for k in r if k not in ("io", "requests")})
    labels.sort(key=lambda k: -med(k, "user") - med(k, "sys"))
    print(
        f"\n== {name}: {med('requests', 'rps'):,.0f} req/s, p99 {med('requests', 'p99'):.2f} ms "
        f"(medians of {len(runs)} runs; per request)"
    )
    print(f"{'thread':<34}{'user us':>9}{'sys us':>9}{'vol cs':>8}{'invol cs':>9}")
    tot = [0.0, 0.0, 0.0, 0.0]
    for k in labels:
        row = [med(k, "user", 1e6), med(k, "sys", 1e6), med(k, "voluntary"), med(k, "nonvoluntary")]
        if row[0] + row[1] < 0.05 and row[2] < 0.005:
            continue
        tot = [a + b for a, b in zip(tot, row, strict=True)]
        print(f"{k[:33]:<34}{row[0]:>9.1f}{row[1]:>9.1f}{row[2]:>8.2f}{row[3]:>9.2f}")
    print(f"{'all threads':<34}{tot[0]:>9.1f}{tot[1]:>9.1f}{tot[2]:>8.2f}{tot[3]:>9.2f}")
    print(
        f"disk: {med('io', 'write_bytes') / 1024:.2f} KiB written, "
        f"{med('io', 'syscw'):.2f} write calls per request"
    )


if __name__ == "__main__":
    raise SystemExit(main())
