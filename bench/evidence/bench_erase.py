"""Erasing one subject's inputs among many decisions (goal: 1M decisions, at most 1 s).

Fills a store with ``--decisions`` decisions of 30 float inputs, 10 per unit key
spread evenly over the whole log (so one subject's decisions sit in 10 different
columnar blocks), compacts the history into blocks, then erases ``--units``
different subjects one after the other with :func:`chronoml.privacy.erasure.erase_unit`
(the rows, the blocks, the salts, the ledger event, and on SQLite the WAL
checkpoint that leaves no old page behind). Reports the median and the worst
wall time per erasure, and checks that ``audit verify --decisions`` still passes
on the smaller runs.

``--compare-blocks`` (PostgreSQL) also times the window read of the whole log
(the drift input) with the blocks as compaction makes them there (capped at
``blocks.PG_BLOCK_BYTES`` of inputs) and, compacted again into blocks of
65,536 rows as before the cap, the same read and the same erasures, in the same run.

    .venv/bin/python bench/evidence/bench_erase.py                    # 1M decisions, SQLite
    .venv/bin/python bench/evidence/bench_erase.py --decisions 100000
    .venv/bin/python bench/evidence/bench_erase.py --store postgresql+psycopg://postgres@127.0.0.1/test
    .venv/bin/python bench/evidence/bench_erase.py --store ... --compare-blocks
    .venv/bin/python bench/evidence/bench_erase.py --archived      # from archive files

``--archived`` archives every decision into Parquet files (a local folder) before
erasing: each erasure then rewrites the files holding the subject's decisions (found
by the files' unit indexes); ``--file-rows`` sets how many decisions a file holds.
"""

from __future__ import annotations

import argparse
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sqlalchemy import text

from chronoml.context import Context
from chronoml.domain import ledger as L
from chronoml.evidence import audit as EA
from chronoml.ids import new_id
from chronoml.privacy import erasure
from chronoml.settings import Settings
from chronoml.store import Store
from chronoml.store import archive as SA
from chronoml.store import blocks as SB
from chronoml.store import decisions as D
from chronoml.store import ledger as SL

T0 = 1_767_225_600_000_000
SCHEMA = tuple((f"f{i}", "float") for i in range(30))
PER_UNIT = 10


def rows(n: int, start: int, seq: int, units: int, normal: bool) -> list[D.DecisionTuple]:
    """``n`` decisions; their inputs the ramp ``i * 0.001`` (30 times), or with ``normal``
    30 full-precision normal floats (which compress the least: an archive file's rewrite
    writes the most bytes)."""
    out: list[D.DecisionTuple] = []
    rng = np.random.default_rng(start)
    x = rng.normal(0.1, 1.0, size=(n, 30))
    for i in range(start, start + n):
        num = x[i - start].tobytes() if normal else struct.pack("<30d", *([i * 0.001] * 30))
        out.append(
            (
                new_id(), T0 + i, "churn", "a", "churn", "1", seq, False, f"user-{i % units}",
                new_id(), "lay30", num, None, "0.5", 0.5, 0.8, None, None,
            )
        )  # fmt: skip
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--decisions", type=int, default=1_000_000)
    ap.add_argument("--units", type=int, default=5, help="subjects erased, one after the other")
    ap.add_argument("--store", help="a PostgreSQL URL (default: SQLite in a temporary folder)")
    ap.add_argument("--goal-s", type=float, default=1.0)
    ap.add_argument("--inputs", choices=("ramp", "normal"), default="ramp", help="see rows()")
    ap.add_argument(
        "--archived",
        action="store_true",
        help="archive every decision first (Parquet files in a folder): erasure rewrites them",
    )
    ap.add_argument(
        "--file-rows",
        type=int,
        default=SA.FILE_ROWS,
        help="with --archived: decisions per archive file",
    )
    ap.add_argument(
        "--compare-blocks",
        action="store_true",
        help="also window reads and erasures with 65,536-row blocks (PostgreSQL)",
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        url = args.store or f"sqlite:///{home / 'chronoml.db'}"
        if args.store:
            schema = f"bench_erase_{new_id()[:8]}".replace("-", "")
            admin = Store.open(args.store, home)
            with admin.engine.begin() as c:
                c.execute(text(f"CREATE SCHEMA {schema}"))
            admin.close()
            url = f"{args.store}?options=-csearch_path%3D{schema}"
        store = Store.open(url, home)
        store.upgrade()
        D.Layouts(store).ensure("lay30", SCHEMA)
        model = L.ModelRef("churn", "1", None, "ab" * 32)
        v = L.Variant(name="a", model=model, weight=0, shadow=False)
        seq = SL.append(store, L.Change("deploy", "churn", "bench", {"variant": v.to_dict()})).seq
        units = max(1, args.decisions // PER_UNIT)
        t = time.perf_counter()
        app = D.Appender(store)
        for start in range(0, args.decisions, 4096):
            n = min(4096, args.decisions - start)
            app.append(rows(n, start, seq, units, args.inputs == "normal"))
        app.close()
        fill_s = time.perf_counter() - t
        settings = Settings.from_env({}, home=home, store_url=args.store and url)
        cm = Context(settings, store)
        layouts = D.Layouts(store)

        def compact() -> float:
            t = time.perf_counter()
            SB.compact(store, upto=T0 + args.decisions + 1)
            took = time.perf_counter() - t
            if not args.store:  # as the server's checkpointer does every second
                with store.engine.connect() as c:
                    c.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            else:  # as autovacuum does after a bulk insert (else the first erasure pays it)
                raw = store.engine.raw_connection()
                raw.driver_connection.autocommit = True  # type: ignore[union-attr]
                with raw.driver_connection.cursor() as cur:  # type: ignore[union-attr]
                    cur.execute("VACUUM (ANALYZE)")
                raw.close()
            return took

        def window_read_s() -> float:
            got = []
            for _ in range(3):
                t = time.perf_counter()
                w = D.window(store, layouts, "churn", T0, T0 + args.decisions + 1)
                got.append(time.perf_counter() - t)
                assert w.rows == args.decisions
            return statistics.median(got)

        def erase(offset: int) -> list[float]:
            times = []
            for k in range(args.units):
                unit = f"user-{(k * 7919 + offset) % units}"
                t = time.perf_counter()
                got = erasure.erase_unit(cm, unit, "bench")
                times.append(time.perf_counter() - t)
                assert got.decisions == PER_UNIT, got
            return times

        def n_blocks() -> int:
            with store.read() as c:
                return int(c.execute(text("SELECT count(*) FROM decision_blocks")).scalar_one())

        compact_s = compact()
        blocks_now = n_blocks()
        where = f"{PER_UNIT} blocks"
        if args.archived:
            t = time.perf_counter()
            got = SA.archive(
                store, layouts, T0 + args.decisions + 1, settle_us=0, file_rows=args.file_rows
            )
            print(
                f"archived {got.rows:,} decisions into {got.files} files "
                f"({got.bytes / 1e6:.0f} MB) in {time.perf_counter() - t:.0f} s"
            )
            where = f"{got.files} archive files"
            if not args.store:  # the archive's deletes, as the server's checkpointer does
                with store.engine.connect() as c:
                    c.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        read_s = window_read_s() if args.compare_blocks else None
        times = erase(0)
        med, worst = statistics.median(times), max(times)
        print(
            f"{'PostgreSQL' if args.store else 'SQLite'}: {args.decisions:,} decisions "
            f"(filled in {fill_s:.0f} s, compacted in {compact_s:.0f} s into {blocks_now} "
            f"blocks); erasing one unit ({PER_UNIT} decisions in {where}): median "
            f"{med * 1000:.0f} ms, worst {worst * 1000:.0f} ms over {args.units} "
            f"(goal {args.goal_s:g} s; each: {', '.join(f'{x * 1000:.0f}' for x in times)} ms)"
        )
        if args.compare_blocks and read_s is not None:
            SB.drop(store)
            with_cap = SB.PG_BLOCK_BYTES
            SB.PG_BLOCK_BYTES = 1 << 62  # 65,536 rows a block, as before the cap
            try:
                compact()
            finally:
                SB.PG_BLOCK_BYTES = with_cap
            old_blocks = n_blocks()
            old_read = window_read_s()
            old = erase(1)
            print(
                f"window read of all {args.decisions:,} decisions (median of 3): "
                f"{read_s:.2f} s in {blocks_now} blocks, {old_read:.2f} s in {old_blocks} "
                f"blocks of 65,536 rows (ratio {read_s / old_read:.2f}); erasing one unit "
                f"from blocks of 65,536 rows: median {statistics.median(old) * 1000:.0f} ms, "
                f"worst {max(old) * 1000:.0f} ms"
            )
        if args.decisions <= 200_000:
            report = EA.verify(store, decisions=True)
            print(f"audit verify --decisions after the erasures: ok={report.ok}")
            assert report.ok
        store.close()
        if args.store:
            admin = Store.open(args.store, home)
            with admin.engine.begin() as c:
                c.execute(text(f"DROP SCHEMA {schema} CASCADE"))
            admin.close()
        return 0 if worst <= args.goal_s else 1


if __name__ == "__main__":
    sys.exit(main())
