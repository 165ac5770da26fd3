"""Archiving the decision log: rate, bytes per decision, drift over an archived window.

Goals (issue 15): archiving runs at least half as fast as pyarrow writing the same
rows to Parquet on its own; archived bytes per decision are at most 1/5 of the live
table's; a drift report over an archived 1M-decision window is no slower than over
a live one.

One run: N decisions (30 float inputs, the gateway's encoding, evidence committed)
are logged to a fresh SQLite store (or PostgreSQL with --pg URL) and compacted into
columnar blocks as the server does. Then, in order: the drift report over the live
window (median of --runs); the anchor, pyarrow writing the same rows (already in
memory as Arrow columns) to one zstd Parquet file; `chronoml archive` of every
decision into a local folder (write, read back, check, commit, delete); the drift
report over the archived window. The two drift reports must agree exactly.

    .venv/bin/python bench/archive/bench.py                  # 1M decisions, SQLite
    .venv/bin/python bench/archive/bench.py --rows 100000 --runs 3
    .venv/bin/python bench/archive/bench.py --pg postgresql+psycopg://127.0.0.1/test
    .venv/bin/python bench/archive/bench.py --inputs mixed   # amounts, counts, 5 floats
    .venv/bin/python bench/archive/bench.py --before OLD_SRC  # and other code, same store

``--before SRC`` (SQLite): the same store, copied once logged, is also archived by the
code in SRC (another checkout's ``src``) in a child process, before this code archives
it, and the drift over that archived window is timed there too.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import create_engine, text

from chronoml.domain import codec
from chronoml.domain.archive import parse_target
from chronoml.domain.ledger import ModelRef
from chronoml.domain.profiling import build_profile
from chronoml.ids import new_block_ids, new_id
from chronoml.monitor.reports import drift
from chronoml.store import Store, blocks, ingest
from chronoml.store import archive as SA
from chronoml.store import decisions as D

ENDPOINT = "bench"
DIGEST = "sha256:" + "0" * 64
FEATURES = [f"f{i}" for i in range(30)]
T0 = 1_000_000_000_000_000  # 2001-09-09: long settled


def inputs(rng: np.random.Generator, n: int, kind: str) -> np.ndarray[Any, Any]:
    """``n`` rows of the 30 inputs: all full-precision normal floats (the worst case for
    compression), or ``mixed``: 20 amounts with two decimals, 5 counts, 5 full-precision
    floats, as tabular features are usually recorded."""
    x = rng.normal(0.1, 1.0, size=(n, 30))
    if kind == "mixed":
        x[:, :20] = np.round(rng.lognormal(3.0, 1.0, size=(n, 20)), 2)
        x[:, 20:25] = rng.poisson(3.0, size=(n, 5))
    return x


def populate(
    store: Store, rows: int, seed: int = 0, kind: str = "normal", request_rows: int = 1
) -> tuple[float, pa.Table]:
    """Log ``rows`` decisions; returns the time and the same rows as an Arrow table.

    ``request_rows`` > 1: requests of that many rows, each logged as one ingest block (as
    the gateway logs a request of 16 rows or more: one time, unit and request id)."""
    rng = np.random.default_rng(seed)
    ref = pd.DataFrame(rng.normal(size=(100_000, 30)), columns=FEATURES)
    store.put_profile(DIGEST, "bench-model", "1", "sha256:bench", build_profile(ref).to_bytes())
    schema = tuple((c, "float") for c in FEATURES)
    layout = codec.layout_id(schema)
    D.Layouts(store).ensure(layout, schema)
    chunks: list[pa.Table] = []
    t0 = time.perf_counter()
    for start in range(0, rows, 50_000):
        n = min(50_000, rows - start)
        x = inputs(rng, n, kind)
        df = pd.DataFrame(x, columns=FEATURES)
        nums, txts = codec.encode(df, schema)
        out = rng.integers(0, 2, size=n)
        batch = [
            D.DecisionRow(
                new_id(),
                T0 + start + i,
                ENDPOINT,
                "a",
                "bench-model",
                "1",
                1,
                False,
                f"user-{(start + i) % 5000}",
                new_id(),
                layout,
                nums[i],
                txts[i],
                str(int(out[i])),
                float(out[i]),
                0.8 + (i % 7) * 0.01,
            )
            for i in range(n)
        ]
        if request_rows > 1:
            batch = _as_requests(store, batch, request_rows)
        else:
            D.insert_many(store, batch)
        cols: dict[str, Any] = {
            c: [getattr(r, c) for r in batch]
            for c in ("id", "ts", "endpoint", "variant", "model_name", "model_version",
                      "event_seq", "shadow", "unit", "request_id", "layout", "output",
                      "output_num", "latency_ms")
        }  # fmt: skip
        cols.update({f"input.{c}": x[:, j] for j, c in enumerate(FEATURES)})
        chunks.append(pa.table(cols))
    return time.perf_counter() - t0, pa.concat_tables(chunks)


def _as_requests(store: Store, batch: list[D.DecisionRow], per: int) -> list[D.DecisionRow]:
    """Log ``batch`` as requests of ``per`` rows, one ingest block each (the first row's
    time, unit and request id for all of them); returns the rows as logged."""
    app = D.Appender(store)
    blocks, logged = [], []
    for k in range(0, len(batch), per):
        part = batch[k : k + per]
        first = part[0]
        block_id, ids = new_block_ids(len(part))
        outs = [r.output for r in part]
        blocks.append(
            ingest.Block(
                block_id, ids, first.ts, first.endpoint, first.variant, first.model_name,
                first.model_version, first.event_seq, first.shadow, first.unit,
                first.request_id, first.layout, first.latency_ms, [r.num for r in part],
                [r.txt for r in part], outs, [r.output_num for r in part], None, None,
            )
        )  # fmt: skip
        logged += [
            dataclasses.replace(
                r, id=i, ts=first.ts, unit=first.unit, request_id=first.request_id,
                latency_ms=first.latency_ms,
            )
            for i, r in zip(ids, part, strict=True)
        ]  # fmt: skip
        if len(blocks) == 64:
            app.append([], (), blocks)
            blocks = []
    app.append([], (), blocks)
    app.close()
    return logged


def db_bytes(store: Store, url: str) -> dict[str, int]:
    """The database's size: the whole file (SQLite, after a checkpoint) or the decision
    tables' total relation size with their partitions and indexes (PostgreSQL: decisions,
    evidence items, columnar and ingest blocks), and the decisions table alone."""
    with store.engine.connect() as conn:
        if store.is_sqlite:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            path = url.removeprefix("sqlite:///")
            try:
                table = conn.exec_driver_sql(
                    "SELECT SUM(pgsize) FROM dbstat WHERE name IN "
                    "('decisions', 'ix_decisions_endpoint_ts', 'sqlite_autoindex_decisions_1')"
                ).scalar()
            except Exception:  # dbstat not compiled in
                table = None
            return {"database": os.path.getsize(path), "decisions": int(table or 0)}
        size: dict[str, int] = {}
        for t in ("decisions", "evidence_items", "decision_blocks", "ingest_blocks"):
            # a partitioned table's own size is 0: sum its partitions (a plain table has
            # no partition tree: its own size)
            q = (
                "SELECT COALESCE((SELECT SUM(pg_total_relation_size(relid)) "
                f"FROM pg_partition_tree('{t}')), pg_total_relation_size('{t}'))"
            )
            size[t] = int(conn.execute(text(q)).scalar_one() or 0)
        return {"database": sum(size.values()), "decisions": size["decisions"]}


def time_drift(store: Store, rows: int, runs: int) -> tuple[list[float], Any]:
    """The drift report over the window, ``runs`` times (and, apart, the window's read
    alone before each: see :data:`WINDOW_S`)."""
    layouts = D.Layouts(store)
    ref = ModelRef("bench-model", "1", None, DIGEST)
    times, report = [], None
    reads = []
    for _ in range(runs):
        t = time.perf_counter()
        D.window(store, layouts, ENDPOINT, T0, T0 + rows)
        reads.append(round(time.perf_counter() - t, 3))
        t = time.perf_counter()
        report = drift(store, layouts, ENDPOINT, T0, T0 + rows, {("a", "1"): ref})
        times.append(time.perf_counter() - t)
    WINDOW_S.append(reads)
    return times, report


WINDOW_S: list[list[float]] = []  # the window reads of each time_drift call, in order


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument(
        "--inputs",
        choices=("normal", "mixed"),
        default="normal",
        help="the inputs' values (see inputs())",
    )
    ap.add_argument("--pg", help="a PostgreSQL URL (a fresh schema is used and dropped)")
    ap.add_argument(
        "--file-rows", type=int, default=SA.FILE_ROWS, help="decisions per archive file"
    )
    ap.add_argument(
        "--request-rows",
        type=int,
        default=1,
        help="log requests of this many rows, each as one ingest block (default: rows)",
    )
    ap.add_argument("--before", help="also archive a copy with the code in this src (SQLite)")
    ap.add_argument(
        "--interleave",
        action="store_true",
        help="after archiving, time drift over a live copy and the archive in turn (SQLite)",
    )
    ap.add_argument("--archive-copy", help=argparse.SUPPRESS)  # the child of --before
    args = ap.parse_args()
    if args.archive_copy:
        print(json.dumps(_archive_copy(Path(args.archive_copy), args)))
        return
    schema = f"bench_archive_{uuid.uuid4().hex[:8]}"
    admin = create_engine(args.pg) if args.pg else None
    if admin is not None:  # a schema of its own, dropped at the end: nothing else is touched
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        out = _run(args, schema)
    finally:
        if admin is not None:
            with admin.begin() as conn:
                conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
            admin.dispose()
    print(json.dumps(out, indent=2))


def _run(args: argparse.Namespace, schema: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        url = (
            f"{args.pg}?options=-csearch_path%3D{schema}"
            if args.pg
            else f"sqlite:///{home / 'chronoml.db'}"
        )
        store = Store.open(url, home)
        store.upgrade()
        log_s, table = populate(store, args.rows, kind=args.inputs, request_rows=args.request_rows)
        blocks.compact(store, upto=T0 + args.rows + 1)
        live = db_bytes(store, url)
        live_times, live_report = time_drift(store, args.rows, args.runs)

        anchor = []
        for _ in range(args.runs):
            t = time.perf_counter()
            pq.write_table(table, home / "anchor.parquet", compression="zstd")
            anchor.append(time.perf_counter() - t)
        anchor_bytes = (home / "anchor.parquet").stat().st_size
        del table
        before = _before(args, home) if args.before and store.is_sqlite else None
        if args.interleave and store.is_sqlite:  # a live copy, for drift runs side by side
            (home / "live").mkdir()
            shutil.copy(home / "chronoml.db", home / "live" / "chronoml.db")

        target = parse_target(f"file://{home / 'archive'}")
        t = time.perf_counter()
        result = SA.archive(
            store,
            D.Layouts(store),
            T0 + args.rows + 1,
            target,
            settle_us=0,
            file_rows=args.file_rows,
        )
        archive_s = time.perf_counter() - t
        assert result.rows == args.rows, result
        if store.is_sqlite:
            raw = store.engine.raw_connection()
            try:
                raw.driver_connection.execute("VACUUM")  # type: ignore[union-attr]
            finally:
                raw.close()
        after = db_bytes(store, url)
        arch_times, arch_report = time_drift(store, args.rows, args.runs)
        arch_reads = WINDOW_S[-1]
        assert json.dumps(arch_report, default=str) == json.dumps(live_report, default=str)
        side = _interleaved(store, home / "live", args) if args.interleave else None
        store.close()

    n = args.rows
    a_med = statistics.median(anchor)
    out = {
        "rows": n,
        "store": "postgresql" if args.pg else "sqlite",
        "file_rows": args.file_rows,
        "request_rows": args.request_rows,
        "files": result.files,
        "inputs": args.inputs,
        "log_s": round(log_s, 1),
        "archive_s": round(archive_s, 2),
        "archive_rows_per_s": round(n / archive_s),
        "pyarrow_write_s": round(a_med, 2),
        "pyarrow_rows_per_s": round(n / a_med),
        "archive_vs_pyarrow": round(a_med / archive_s, 3),
        "live_bytes_per_decision_database": round(live["database"] / n, 1),
        "live_bytes_per_decision_table": round(live["decisions"] / n, 1)
        if live["decisions"]
        else None,
        "archived_file_bytes_per_decision": round(result.bytes / n, 1),
        "pyarrow_file_bytes_per_decision": round(anchor_bytes / n, 1),
        "database_bytes_per_decision_after_archive": round(after["database"] / n, 1),
        "drift_live_s": [round(x, 3) for x in live_times],
        "drift_archived_s": [round(x, 3) for x in arch_times],
        "drift_archived_vs_live": round(
            statistics.median(arch_times) / statistics.median(live_times), 3
        ),
        "window_read_live_s": WINDOW_S[0],
        "window_read_archived_s": arch_reads,
    }
    if side is not None:
        out["interleaved"] = side
    if before is not None:
        out["before"] = {
            **before,
            "archive_vs_pyarrow": round(a_med / before["archive_s"], 3),
            "drift_archived_vs_live": round(
                statistics.median(before["drift_archived_s"]) / statistics.median(live_times), 3
            ),
        }
    return out


def _interleaved(store: Store, live_home: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Drift over the live copy and over the archived store, one run of each in turn:
    the load of a shared machine moves between the two halves of a run, less so
    between neighbours."""
    live = Store.open(f"sqlite:///{live_home / 'chronoml.db'}", live_home)
    pairs = [
        (time_drift(live, args.rows, 1)[0][0], time_drift(store, args.rows, 1)[0][0])
        for _ in range(args.runs)
    ]
    live.close()
    ls, ar = [p[0] for p in pairs], [p[1] for p in pairs]
    return {
        "drift_live_s": [round(x, 3) for x in ls],
        "drift_archived_s": [round(x, 3) for x in ar],
        "drift_archived_vs_live": round(statistics.median(ar) / statistics.median(ls), 3),
        "each_archived_vs_live": [round(a / b, 3) for b, a in pairs],
    }


def _before(args: argparse.Namespace, home: Path) -> dict[str, Any]:
    """Archive a copy of the logged store with the code in ``args.before`` (a child
    process), and time the drift over its archived window there."""
    copy = home / "before"
    copy.mkdir()
    shutil.copy(home / "chronoml.db", copy / "chronoml.db")  # checkpointed by db_bytes
    cmd = [sys.executable, __file__, "--archive-copy", str(copy), "--rows", str(args.rows)]
    cmd += ["--runs", str(args.runs), "--file-rows", str(args.file_rows)]
    env = {**os.environ, "PYTHONPATH": args.before}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    shutil.rmtree(copy)
    got: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return got


def _archive_copy(home: Path, args: argparse.Namespace) -> dict[str, Any]:
    store = Store.open(f"sqlite:///{home / 'chronoml.db'}", home)
    target = parse_target(f"file://{home / 'archive'}")
    t = time.perf_counter()
    result = SA.archive(
        store, D.Layouts(store), T0 + args.rows + 1, target, settle_us=0, file_rows=args.file_rows
    )
    archive_s = time.perf_counter() - t
    assert result.rows == args.rows, result
    times, _ = time_drift(store, args.rows, args.runs)
    store.close()
    return {
        "archive_s": round(archive_s, 2),
        "files": result.files,
        "archived_file_bytes_per_decision": round(result.bytes / args.rows, 1),
        "drift_archived_s": [round(x, 3) for x in times],
        "window_read_archived_s": WINDOW_S[-1],
    }


if __name__ == "__main__":
    main()
