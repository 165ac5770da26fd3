"""Erasing one subject's inputs among many decisions (goal: 1M decisions, at most 1 s).

Fills a store with ``--decisions`` decisions of 30 float inputs, 10 per unit key
spread evenly over the whole log (so one subject's decisions sit in 10 different
columnar blocks), compacts the history into blocks, then erases ``--units``
different subjects one after the other with :func:`chronoml.privacy.erasure.erase_unit`
(the rows, the blocks, the salts, the ledger event, and on SQLite the WAL
checkpoint that leaves no old page behind). Reports the median and the worst
wall time per erasure, and checks that ``audit verify --decisions`` still passes
on the smaller runs.

    .venv/bin/python bench/evidence/bench_erase.py                    # 1M decisions, SQLite
    .venv/bin/python bench/evidence/bench_erase.py --decisions 100000
    .venv/bin/python bench/evidence/bench_erase.py --store postgresql+psycopg://postgres@127.0.0.1/test
"""

from __future__ import annotations

import argparse
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

from chronoml.context import Context
from chronoml.domain import ledger as L
from chronoml.evidence import audit as EA
from chronoml.ids import new_id
from chronoml.privacy import erasure
from chronoml.settings import Settings
from chronoml.store import Store
from chronoml.store import blocks as SB
from chronoml.store import decisions as D
from chronoml.store import ledger as SL

T0 = 1_767_225_600_000_000
SCHEMA = tuple((f"f{i}", "float") for i in range(30))
PER_UNIT = 10


def rows(n: int, start: int, seq: int, units: int) -> list[D.DecisionTuple]:
    out: list[D.DecisionTuple] = []
    for i in range(start, start + n):
        num = struct.pack("<30d", *([i * 0.001] * 30))
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
            app.append(rows(min(4096, args.decisions - start), start, seq, units))
        app.close()
        fill_s = time.perf_counter() - t
        t = time.perf_counter()
        SB.compact(store, upto=T0 + args.decisions + 1)
        compact_s = time.perf_counter() - t
        if not args.store:  # as the server's checkpointer does every second
            with store.engine.connect() as c:
                c.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        settings = Settings.from_env({}, home=home, store_url=args.store and url)
        cm = Context(settings, store)
        times = []
        for k in range(args.units):
            unit = f"user-{(k * 7919) % units}"
            t = time.perf_counter()
            got = erasure.erase_unit(cm, unit, "bench")
            times.append(time.perf_counter() - t)
            assert got["decisions"] == PER_UNIT, got
        med, worst = statistics.median(times), max(times)
        print(
            f"{'PostgreSQL' if args.store else 'SQLite'}: {args.decisions:,} decisions "
            f"(filled in {fill_s:.0f} s, compacted in {compact_s:.0f} s); erasing one unit "
            f"({PER_UNIT} decisions in {PER_UNIT} blocks): median {med * 1000:.0f} ms, "
            f"worst {worst * 1000:.0f} ms over {args.units} (goal {args.goal_s:g} s)"
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
