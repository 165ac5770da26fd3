"""Replicas: 1, 2 and 4 independent ``chronoml server`` processes on one PostgreSQL store.

Single-row predicts with the durable log on (each answer waits for its COPY to
commit), the model and 90/10 split of ``bench/serving/bench.py`` (100-tree
GradientBoosting on 30 features, a predictor token on every request). The load
comes from separate processes: one ``wrk`` (one thread) per replica, the total
number of connections fixed (``--connections``, split evenly), all started at
once. Reported per replica count, medians of ``--repeats`` runs:

- req/s: the sum over the replicas;
- p50 / p99: the median p50 and the worst p99 of the replicas' wrk runs;
- server CPU ms per request: user+system of every replica's process tree;
- PostgreSQL CPU ms per request: the backends the replicas opened (found in
  ``pg_stat_activity`` by their ``application_name``);
- decisions logged against 2xx answers counted by wrk (wrk stops without
  reading the last answers in flight, so logged may exceed answered);
- commits/s: the decision log's commits (entries of the evidence log) a second.

``--commit-wait-ms 0 3`` runs every replica count with each commit wait of the
servers (``chronoml server --commit-wait-ms``).

Everything (replicas, wrk, PostgreSQL) shares this machine's cores: on 2 cores
more replicas cannot add throughput, they only show what one more process
costs. See docs/scale.md.

    apt-get install wrk
    .venv/bin/python bench/replicas/bench.py                 # ~3-4 min
    .venv/bin/python bench/replicas/bench.py --replicas 1 2 --duration 5 --repeats 1
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

HERE = Path(__file__).resolve().parent
PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
APP = "chronoml_bench_replicas"


def _serving() -> Any:
    spec = importlib.util.spec_from_file_location("serving_bench", HERE.parent / "serving/bench.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["serving_bench"] = mod
    spec.loader.exec_module(mod)
    return mod


S = _serving()


def pg_cpu(admin: Any) -> float:
    """CPU seconds so far of the PostgreSQL backends the replicas opened."""
    with admin.connect() as conn:
        pids = conn.execute(
            text("SELECT pid FROM pg_stat_activity WHERE application_name = :a"), {"a": APP}
        ).scalars()
        total = 0.0
        for pid in pids:
            try:
                raw = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            f = raw[raw.rindex(")") + 2 :].split()
            total += (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    return total


def decisions(admin: Any, schema: str) -> int:
    with admin.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {schema}.decisions")).scalar_one())


def commits(admin: Any, schema: str) -> int:
    with admin.connect() as conn:
        q = f"SELECT count(*) FROM {schema}.evidence_log WHERE kind = 'decision'"
        return int(conn.execute(text(q)).scalar_one())


def run(
    n: int, wait_ms: float, env: dict[str, str], work: Path, one: Path, a: argparse.Namespace,
    admin: Any, schema: str,
) -> dict[str, Any]:  # fmt: skip
    procs, urls = [], []
    flags = ["--commit-wait-ms", f"{wait_ms:g}"]
    try:
        for i in range(n):
            proc, url, _ = S.serve(f"chronoml-r{i}", S.free_port(), env, work, 1, flags)
            procs.append(proc)
            urls.append(url)
        auth = env["BENCH_AUTH"]
        per = max(1, a.connections // n)
        dirs = []
        for i in range(n):
            d = work / f"wrk{i}"
            d.mkdir(exist_ok=True)
            dirs.append(d)
        with ThreadPoolExecutor(n) as pool:
            list(pool.map(lambda i: S.wrk(urls[i], one, per, 2, dirs[i], auth), range(n)))
        got = []
        for _ in range(a.repeats):
            cpu0 = sum(S.tree_cpu_seconds(p.pid) for p in procs)
            pg0, logged0, commits0 = pg_cpu(admin), decisions(admin, schema), commits(admin, schema)
            with ThreadPoolExecutor(n) as pool:
                rs = list(
                    pool.map(
                        lambda i: S.wrk(urls[i], one, per, a.duration, dirs[i], auth), range(n)
                    )
                )
            cpu = sum(S.tree_cpu_seconds(p.pid) for p in procs) - cpu0
            pg = pg_cpu(admin) - pg0
            time.sleep(0.5)  # the last commits of requests wrk stopped waiting for
            logged = decisions(admin, schema) - logged0
            made = commits(admin, schema) - commits0
            reqs = sum(r["requests"] for r in rs)
            got.append(
                {
                    "rps": sum(r["rps"] for r in rs),
                    "p50": statistics.median(r["p50"] for r in rs),
                    "p99": max(r["p99"] for r in rs),
                    "cpu": 1000 * cpu / max(reqs, 1),
                    "pg": 1000 * pg / max(reqs, 1),
                    "errors": sum(r["errors"] for r in rs),
                    "answered": reqs,
                    "logged": logged,
                    "commits": made / a.duration,
                }
            )
    finally:
        for p in procs:
            S.stop(p)
    keys = ("rps", "p50", "p99", "cpu", "pg", "commits")
    med = {k: statistics.median(g[k] for g in got) for k in keys}
    med.update(
        replicas=n,
        wait=wait_ms,
        errors=sum(g["errors"] for g in got),
        answered=sum(g["answered"] for g in got),
        logged=sum(g["logged"] for g in got),
    )
    return med


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--pg", default=PG)
    ap.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--connections", type=int, default=32, help="total, split evenly [32]")
    ap.add_argument("--duration", type=float, default=10, help="seconds per run [10]")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="keep the work folder and schema")
    ap.add_argument(
        "--commit-wait-ms", type=float, nargs="+", default=[0.0], help="the servers' [0]"
    )
    a = ap.parse_args(argv)
    if shutil.which("wrk") is None:
        print("needs wrk: apt-get install wrk", file=sys.stderr)
        return 1
    admin = create_engine(a.pg)
    schema = "bench_" + uuid.uuid4().hex[:10]
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    work = Path(tempfile.mkdtemp(prefix="chronoml-replicas-"))
    sep = "&" if "?" in a.pg else "?"
    store_url = f"{a.pg}{sep}options=-csearch_path%3D{schema}&application_name={APP}"
    try:
        home = work / "home"
        base = {**os.environ, "CHRONOML_STORE": store_url, "CHRONOML_HOME": str(home)}
        cli = [sys.executable, "-m", "chronoml.cli"]
        subprocess.run([*cli, "db", "upgrade"], env=base, check=True, stdout=subprocess.DEVNULL)
        os.environ["CHRONOML_STORE"] = store_url
        env = S.setup(work)
        one, _ = S.bodies(work)
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
        results = [
            run(n, w, env, work, one, a, admin, schema)
            for w in a.commit_wait_ms
            for n in a.replicas
        ]
        print(f"load average {os.getloadavg()[0]:.1f}")
        print(
            f"\nsingle-row predict, durable log on PostgreSQL, {a.connections} connections in all,"
            f" {a.duration:g} s runs, median of {a.repeats}\n"
        )
        print("| commit wait ms | replicas | req/s | p50 ms | p99 ms | server CPU ms/req "
              "| PostgreSQL CPU ms/req | commits/s | errors | answered | logged |")  # fmt: skip
        print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for r in results:
            print(
                f"| {r['wait']:g} | {r['replicas']} | {r['rps']:.0f} | {r['p50']:.1f} "
                f"| {r['p99']:.1f} | {r['cpu']:.3f} | {r['pg']:.3f} | {r['commits']:.0f} "
                f"| {r['errors']} | {r['answered']} | {r['logged']} |"
            )
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
            with admin.begin() as conn:
                conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
