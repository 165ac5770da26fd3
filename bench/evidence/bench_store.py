"""The evidence log in the store: what commitments cost the write path, verify and proofs.

Three measurements on an embedded (SQLite) store in a temporary folder, in one run:

1. group commit with commitments on vs off: CPU per single-row commit of the
   gateway's writer (``store.decisions.Appender``), the anchor being the same
   writer with the evidence step removed; the ratio against the gateway's
   measured server CPU per single-row request (``--request-cpu-ms``) is the
   share of the goal (at most 10%).
   The same with 16 rows per commit, per decision: what a gateway under load
   commits (its group commit takes every request queued meanwhile).
2. ``audit verify --decisions`` over ``--decisions`` decisions (goal 1M in 10 s),
   in one process and in one per core (the default), wall clock and CPU.
3. a decision's proof made from the node table (goal 5 ms) and checked (1 ms).

    .venv/bin/python bench/evidence/bench_store.py                 # 1M decisions, a few minutes
    .venv/bin/python bench/evidence/bench_store.py --decisions 100000
    .venv/bin/python bench/evidence/bench_store.py --only verify,proof \
        --store postgresql+psycopg://postgres@127.0.0.1/test --before OLD_SRC

The decisions are spread over the last ``--days`` days (30 by default; their ids made
at their time, as the gateway makes them), so on PostgreSQL they fill 30 day
partitions as a month of traffic would; ``--days 0`` puts them all in one second.

``--store`` fills a fresh schema of that PostgreSQL database (dropped at the end)
instead of a SQLite file. ``--before OLD_SRC`` also runs verify and the proofs with
the code under ``OLD_SRC`` (a ``src`` folder of an older checkout), in a child process
on the same store, each run right after the current code's, so the ratios come from
one run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import text

from chronoml.context import Context
from chronoml.domain import leaves as LV
from chronoml.domain import ledger as L
from chronoml.domain import merkle
from chronoml.evidence import audit as EA
from chronoml.evidence import checkpoints as EC
from chronoml.evidence import keys, proofs
from chronoml.ids import new_id
from chronoml.settings import Settings
from chronoml.store import Store
from chronoml.store import decisions as D
from chronoml.store import ledger as SL
from chronoml.store import partitions as P
from chronoml.timeutil import now_us

T0 = 1_767_225_600_000_000
SCHEMA = tuple((f"f{i}", "float") for i in range(30))


def id_at(ts_us: int) -> str:
    """A UUIDv7 id made at ``ts_us``, as the gateway would have made it then."""
    h = new_id().replace("-", "")
    h = f"{ts_us // 1000:012x}" + h[12:]
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def rows(
    n: int, start: int, seq: int, spread: tuple[int, int] | None = None
) -> list[D.DecisionTuple]:
    """``n`` decisions from number ``start``; ``spread`` = (first ts, us between two):
    decisions over that many days, their ids made at their time (else all at T0, ids now)."""
    out: list[D.DecisionTuple] = []
    for i in range(start, start + n):
        num = struct.pack("<30d", *([i * 0.001] * 30))
        ts = T0 + i if spread is None else spread[0] + i * spread[1]
        did = new_id() if spread is None else id_at(ts + 2_000)
        out.append(
            (
                did, ts, "churn", "a", "churn", "1", seq, False, f"user-{i % 1000}",
                new_id(), "lay30", num, None, "0.5", 0.5, 0.8, None, None,
            )
        )  # fmt: skip
    return out


def open_store(home: Path, url: str | None = None) -> tuple[Store, int]:
    store = Store.open(url or f"sqlite:///{home / 'chronoml.db'}", home)
    store.upgrade()
    D.Layouts(store).ensure("lay30", SCHEMA)
    model = L.ModelRef("churn", "1", None, "ab" * 32)
    v = L.Variant(name="a", model=model, weight=0, shadow=False)
    ev = SL.append(store, L.Change("deploy", "churn", "bench", {"variant": v.to_dict()}))
    return store, ev.seq


def commit_cost(home: Path, commits: int, repeats: int, per: int = 1) -> tuple[float, float]:
    """Median CPU ms per commit of ``per`` rows, evidence on and off."""
    store, seq = open_store(home)
    on: list[float] = []
    off: list[float] = []
    for rep in range(repeats):
        for mode, sink in (("on", on), ("off", off)):
            app = D.Appender(store)
            if mode == "off":
                # the writer as it was before the log: no leaf hashing, no evidence rows
                app._evidence.write = lambda db, entries: None  # type: ignore[method-assign]
                saved = D.decision_entry
                D.decision_entry = lambda rs: None  # type: ignore[assignment,return-value]
            base = (rep * 2 + (mode == "off")) * commits * per
            batch = [rows(per, base + i * per, seq) for i in range(commits)]
            t = time.process_time()
            for r in batch:
                app.append(r)
            sink.append((time.process_time() - t) * 1000 / commits)
            if mode == "off":
                D.decision_entry = saved
            app.close()
            app.checkpoint()
    store.close()
    return statistics.median(on), statistics.median(off)


def fill(store: Store, seq: int, n: int, batch: int, days: int = 0) -> float:
    """``n`` decisions in commits of ``batch``; with ``days``, spread evenly over the
    last ``days`` days (on PostgreSQL each day in its own partition, made first)."""
    spread = None
    if days:
        first = now_us() - days * P.DAY_US
        spread = (first, days * P.DAY_US // n)
        if not store.is_sqlite:
            with store.write() as conn:
                P.create_ahead(conn, first, days + P.AHEAD_DAYS)
    app = D.Appender(store)
    t = time.perf_counter()
    for start in range(0, n, batch):
        app.append(rows(min(batch, n - start), start, seq, spread))
    app.close()
    return time.perf_counter() - t


def verify_once(store: Store, workers: int | None) -> dict[str, float]:
    t, c0, k0 = time.perf_counter(), time.process_time(), _children_cpu()
    report = EA.verify(store, decisions=True, workers=workers)
    wall = time.perf_counter() - t
    cpu = time.process_time() - c0 + _children_cpu() - k0
    assert report.ok, report.problems[:3]
    return {"wall": wall, "cpu": cpu, "decisions": float(report.decisions or 0)}


def proofs_once(store: Store, home: Path, url: str, ids: list[str]) -> dict[str, float]:
    key = keys.generate("bench")
    EC.issue(store, key)
    settings = Settings.from_env({}, home=home, store_url=None if url.startswith("sqlite") else url)
    cm = Context(settings, store)
    made: list[float] = []
    made_cpu: list[float] = []
    checked: list[float] = []
    for did in ids:
        t, c0 = time.perf_counter(), time.process_time()
        p: dict[str, Any] = proofs.decision_proof(cm, key, did)
        made.append((time.perf_counter() - t) * 1000)
        made_cpu.append((time.process_time() - c0) * 1000)
        t = time.perf_counter()
        ok = check(p)
        checked.append((time.perf_counter() - t) * 1000)
        assert ok
    return {
        "made": statistics.median(made),
        "cpu": statistics.median(made_cpu),
        "checked": statistics.median(checked),
    }


def child(args: argparse.Namespace) -> int:
    """Run one measurement with whatever ``chronoml`` this interpreter imports."""
    home = Path(args.home)
    store = Store.open(args.url, home)
    try:
        if args.child == "verify":
            got = verify_once(store, None if args.workers == 0 else args.workers)
        else:
            got = proofs_once(store, home, args.url, json.loads(sys.stdin.read()))
    finally:
        store.close()
    print(json.dumps(got))
    return 0


def run_before(
    src: str, what: str, url: str, home: Path, workers: int = 0, ids: list[str] | None = None
) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": src}
    cmd = [sys.executable, __file__, "--child", what, "--url", url, "--home", str(home)]
    cmd += ["--workers", str(workers)]
    out = subprocess.run(
        cmd, env=env, input=json.dumps(ids or []), capture_output=True, text=True, check=True
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--decisions", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=256, help="rows per group commit when filling")
    ap.add_argument("--commits", type=int, default=2000, help="single-row commits per run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--proofs", type=int, default=200)
    ap.add_argument(
        "--request-cpu-ms",
        type=float,
        default=0.58,
        help="the gateway's server CPU per single-row request (bench/serving)",
    )
    ap.add_argument("--only", default="commit,verify,proof", help="which measurements")
    ap.add_argument("--store", help="a PostgreSQL URL (default: SQLite in a temporary folder)")
    ap.add_argument("--before", help="the src folder of older code to run beside this one")
    ap.add_argument("--rounds", type=int, default=1, help="verify runs of each code")
    ap.add_argument(
        "--days",
        type=int,
        default=30,
        help="spread the decisions over this many days (one partition each on PostgreSQL); "
        "0: all in one second",
    )
    ap.add_argument("--child", choices=["verify", "proof"], help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--home", help=argparse.SUPPRESS)
    ap.add_argument("--workers", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    only = set(args.only.split(","))
    missed = False
    with tempfile.TemporaryDirectory() as tmp:
        if "commit" in only:
            missed |= commit_costs(Path(tmp), args)
        if not only & {"verify", "proof"}:
            return 2 if missed else 0
        home = Path(tmp) / "big"
        home.mkdir()
        url = f"sqlite:///{home / 'chronoml.db'}"
        schema_name = None
        if args.store:
            schema_name = f"bench_store_{new_id()[:8]}".replace("-", "")
            admin = Store.open(args.store, home)
            with admin.engine.begin() as c:
                c.execute(text(f"CREATE SCHEMA {schema_name}"))
            admin.close()
            url = f"{args.store}?options=-csearch_path%3D{schema_name}"
        store, seq = open_store(home, url)
        try:
            missed |= measure_store(store, seq, home, url, only, args)
        finally:
            store.close()
            if schema_name is not None:
                admin = Store.open(args.store, home)
                with admin.engine.begin() as c:
                    c.execute(text(f"DROP SCHEMA {schema_name} CASCADE"))
                admin.close()
    return 2 if missed else 0


def commit_costs(tmp: Path, args: argparse.Namespace) -> bool:
    on, off = commit_cost(tmp / "commit", args.commits, args.repeats)
    added = on - off
    share = added / args.request_cpu_ms
    print(f"single-row commit CPU: on {on:.3f} ms, off {off:.3f} ms (anchor), ratio {on / off:.2f}")
    print(
        f"  commitments add {added * 1000:.0f} us = {share:.1%} of "
        f"{args.request_cpu_ms} ms server CPU per request (goal <= 10%)"
    )
    on16, off16 = commit_cost(tmp / "commit16", args.commits // 4, args.repeats, 16)
    print(
        f"16-row commit CPU: on {on16:.3f} ms, off {off16:.3f} ms; commitments add "
        f"{(on16 - off16) * 1000 / 16:.0f} us per decision (what a busy gateway's commits hold)"
    )
    return share > 0.10


def measure_store(
    store: Store, seq: int, home: Path, url: str, only: set[str], args: argparse.Namespace
) -> bool:
    missed = False
    kind = "PostgreSQL" if args.store else "SQLite"
    fill_s = fill(store, seq, args.decisions, args.batch, args.days)
    print(
        f"{kind}: filled {args.decisions:,} decisions in {fill_s:.1f} s ({args.batch} per "
        f"commit, over {args.days} days)"
    )
    if not store.is_sqlite:  # as autovacuum would have by then
        with store.engine.connect() as c:
            c.exec_driver_sql("ANALYZE")
            c.commit()
    if store.is_sqlite:  # as the server's checkpointer does every second
        with store.engine.connect() as c:
            c.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    goal = 10.0 * args.decisions / 1_000_000
    if "verify" in only:
        for workers in (1, None):
            label = "1 process" if workers else "one per core"
            for _ in range(args.rounds):
                now = verify_once(store, workers)
                print(
                    f"verify --decisions ({label}): {now['wall']:.1f} s for "
                    f"{int(now['decisions']):,} decisions, {now['cpu']:.1f} s of CPU "
                    f"({now['wall'] / max(now['decisions'], 1) * 1e6:.1f} us each; goal {goal:.1f} s)"
                )
                missed |= workers is None and now["wall"] > goal
                if args.before:
                    old = run_before(args.before, "verify", url, home, workers or 0)
                    print(
                        f"  before: {old['wall']:.1f} s, {old['cpu']:.1f} s of CPU; "
                        f"now/before wall {now['wall'] / old['wall']:.2f}, "
                        f"CPU {now['cpu'] / old['cpu']:.2f}"
                    )
    if "proof" in only:
        with store.read() as conn:
            ids = [
                r[0]
                for r in conn.exec_driver_sql(
                    f"SELECT id FROM decisions ORDER BY random() LIMIT {args.proofs}"
                )
            ]
        for _ in range(args.rounds):
            got = proofs_once(store, home, url, ids)
            print(
                f"proof made {got['made']:.3f} ms (goal 5; {got['cpu']:.3f} ms of CPU), "
                f"checked {got['checked']:.3f} ms (goal 1), medians of {len(ids)}"
            )
            missed |= got["made"] > 5 or got["checked"] > 1
            if args.before:
                old = run_before(args.before, "proof", url, home, ids=ids)
                print(
                    f"  before: made {old['made']:.3f} ms ({old['cpu']:.3f} ms of CPU), "
                    f"checked {old['checked']:.3f} ms; now/before made "
                    f"{got['made'] / old['made']:.2f}, CPU {got['cpu'] / old['cpu']:.2f}"
                )
    return missed


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def check(p: dict[str, Any]) -> bool:
    """What an offline checker does with a proof: re-encode, both paths, compare."""
    import base64

    leaf = LV.DecisionLeaf.from_dict(p["leaf"]).leaf_hash()
    b = p["batch"]
    root = merkle.root_from_inclusion_proof(
        b["index"], b["size"], leaf, [bytes.fromhex(h) for h in b["path"]]
    )
    if root is None:
        return False
    entry = LV.BatchLeaf("decision", b["size"], root, b["committed_at"]).leaf_hash()
    cp_root = base64.b64decode(p["checkpoint"].splitlines()[2])
    path = [bytes.fromhex(h) for h in p["log_path"]]
    return merkle.verify_inclusion(p["log_index"], p["log_size"], entry, path, cp_root)


if __name__ == "__main__":
    sys.exit(main())
