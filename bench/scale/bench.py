"""The decision log at scale on PostgreSQL: the numbers behind docs/scale.md.

Measured in one run, on fresh schemas of the PostgreSQL at --pg:

1. ingest through the real durable path (``store.decisions.Appender``: COPY of
   the rows and their evidence-log items, one transaction per call) into the
   unpartitioned table of migration 0012 and the day-partitioned table of 0012,
   interleaved batch by batch: rows/s of wall time, and rows per CPU second of
   the PostgreSQL backend doing the COPY (read from /proc: the server is local)
   and of this client process;
2. bytes per decision live: ``pg_total_relation_size`` of ``decisions`` (all
   partitions, indexes and TOAST) and of ``evidence_items`` over the rows;
3. bytes per decision archived: the same rows written to Parquet by pyarrow
   (zstd), as stored (inputs one binary column) and with the inputs as 30
   float64 columns;
4. migration 0012 on the filled unpartitioned table: rows/s;
5. commits per second of 1, 4 and 16 concurrent appenders (one connection each,
   as replicas have) with batches of 1 and 16 rows: every commit appends to
   the one evidence log and so locks its head row until it commits; anchor:
   bare one-row commits on as many connections, in the same run;
6. lookups by id with 7, 30, 180 and 365 day partitions: a hit (pruned to the
   id's partition) and a miss (every partition probed), median microseconds;
7. ingest of requests logged as ingest blocks (``--block-rows`` decisions each,
   ``--batch`` decisions per commit) into the unpartitioned ``ingest_blocks`` of
   migration 0018 and the day-partitioned one of 0020, interleaved: rows/s; then
   migration 0020 of the filled unpartitioned table;
8. lookups of a block's decision by id: on the unpartitioned table of 0018
   holding a year of blocks, and with 7, 30, 180 and 365 day partitions of 0020;
9. ids as 16-byte ``uuid`` values against today's 36-character text: the same
   rows COPYed into two copies of ``decisions`` that differ only in the type of
   ``id`` and ``request_id``, interleaved: bytes per row, rows per backend CPU
   second, and a lookup by id;
10. the live tables' ids as text (0021) and ``uuid`` (0022, ``live_ids.py``): the same
   rows through ``Appender`` into both, interleaved; bytes per decision live, a lookup
   by id, then migration 0022 of the filled text store.

Rows look like the gateway's: 30 float inputs (make_classification), a class
output and two class scores, time-ordered ids.

    .venv/bin/python bench/scale/bench.py                    # ~5-10 min
    .venv/bin/python bench/scale/bench.py --rows 50000 --batch 4096
    .venv/bin/python bench/scale/bench.py --only 7,9 --rows 500000   # blocks, id types
    .venv/bin/python bench/scale/bench.py --only 10 --rows 500000     # live ids, 0022
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from blocks import block_ingest, block_lookups, id_types
from common import (
    COLS,
    PG,
    SCHEMA,
    cpu_of,
    features,
    id_at,
    schema_store,
    time_lookups,
    tuples,
)
from live_ids import live_ids
from sqlalchemy import create_engine, text

from chronoml.domain import codec
from chronoml.store import Store, partitions
from chronoml.store import decisions as D
from chronoml.timeutil import now_us


def relation_bytes(store: Store, table: str) -> int:
    with store.read() as conn:
        parts = [p.name for p in partitions.partitions(conn)] or [table]
        if table != "decisions":
            parts = [table]
        return sum(
            int(conn.execute(text("SELECT pg_total_relation_size(:t)"), {"t": p}).scalar_one())
            for p in parts
        )


def ingest(stores: dict[str, Store], x: np.ndarray[Any, Any], batch: int) -> dict[str, Any]:
    layout = codec.layout_id(SCHEMA)
    apps = {}
    for name, st in stores.items():
        D.Layouts(st).ensure(layout, SCHEMA)
        apps[name] = D.Appender(st)
        apps[name].append(tuples(x[:10], layout, now_us()))  # connect, warm up
    stats: dict[str, dict[str, list[float]]] = {
        n: {"wall": [], "pg": [], "client": []} for n in stores
    }
    for lo in range(0, len(x), batch):
        chunk = x[lo : lo + batch]
        for name, app in apps.items():
            rows = tuples(chunk, layout, now_us())
            pid = app._connection().driver_connection.info.backend_pid
            pg0, c0, t0 = cpu_of(pid), time.process_time(), time.perf_counter()
            app.append(rows)
            t1, c1, pg1 = time.perf_counter(), time.process_time(), cpu_of(pid)
            s = stats[name]
            s["wall"].append(t1 - t0)
            s["client"].append(c1 - c0)
            s["pg"].append(pg1 - pg0)
    for app in apps.values():
        app.close()
    n = len(x)
    return {
        name: {
            "rows_per_s": n / sum(s["wall"]),
            "rows_per_pg_cpu_s": n / max(sum(s["pg"]), 1e-9),
            "rows_per_client_cpu_s": n / max(sum(s["client"]), 1e-9),
            "median_commit_ms": statistics.median(s["wall"]) * 1000,
        }
        for name, s in stats.items()
    }


def parquet_bytes(store: Store, work: Path) -> dict[str, float]:
    # lazy: pyarrow only for the archived-size estimate
    import pyarrow as pa
    import pyarrow.parquet as pq

    with store.engine.connect() as conn:
        result = conn.execute(text("SELECT * FROM decisions ORDER BY ts"))
        names = list(result.keys())
        rows = result.cursor.fetchall()  # type: ignore[union-attr]
    cols = list(zip(*rows, strict=True))
    table = pa.table({k: list(v) for k, v in zip(names, cols, strict=True)})
    n = table.num_rows
    out = {}
    path = work / "as_stored.parquet"
    pq.write_table(table, path, compression="zstd")
    out["as_stored"] = path.stat().st_size / n
    mat = np.frombuffer(b"".join(table.column("num").to_pylist()), dtype="<f8").reshape(n, 30)
    wide = table.drop_columns(["num"])
    for i, c in enumerate(COLS):
        wide = wide.append_column(c, pa.array(mat[:, i]))
    path = work / "columns.parquet"
    pq.write_table(wide, path, compression="zstd")
    out["inputs_as_columns"] = path.stat().st_size / n
    return out


def lookups(admin: Any, work: Path, per_day: int, queries: int) -> list[dict[str, Any]]:
    """Lookups by id on stores of 7, 30, 180 and 365 day partitions, queried in turn
    (round robin, so each store sees the same noise of this shared machine)."""
    layout = codec.layout_id(SCHEMA)
    today = partitions.day_start(now_us())
    x = features(per_day, seed=3)
    sizes = (7, 30, 180, 365)
    with contextlib.ExitStack() as stack:
        stores, hits = [], []
        for days in sizes:
            st = stack.enter_context(schema_store(admin, work))
            st.upgrade()
            D.Layouts(st).ensure(layout, SCHEMA)
            with st.write() as conn:
                partitions.create_ahead(conn, today - (days - 1) * partitions.DAY_US, days)
            app = D.Appender(st)
            mine: list[str] = []
            for k in range(days):
                t = today - k * partitions.DAY_US + 3_600_000_000
                rows = [(id_at(r[0], t), *r[1:]) for r in tuples(x, layout, t)]
                app.append(rows)  # type: ignore[arg-type]
                mine += [r[0] for r in rows[:: max(1, per_day // 20)]]
            app.close()
            with st.write() as conn:
                conn.execute(text("ANALYZE decisions"))
            stores.append(st)
            hits.append(mine)
        out = time_lookups(stores, hits, lambda h: h[:-4] + "ffff", queries, 0)
    return out


def concurrent_commits(
    admin: Any, work: Path, writers: int, rows: int, seconds: float
) -> dict[str, float]:
    """``writers`` appenders (a connection each, as replicas have) committing ``rows``-row
    batches as fast as they can: every commit also appends to the one evidence log,
    whose head row each transaction locks until it commits."""
    layout = codec.layout_id(SCHEMA)
    x = features(rows, seed=5)
    with schema_store(admin, work) as st:
        st.upgrade()
        D.Layouts(st).ensure(layout, SCHEMA)
        apps = [D.Appender(st) for _ in range(writers)]
        for app in apps:
            app.append(tuples(x, layout, now_us()))
        counts = [0] * writers
        stop = time.perf_counter() + seconds

        def loop(j: int) -> None:
            while time.perf_counter() < stop:
                apps[j].append(tuples(x, layout, now_us()))
                counts[j] += 1

        t0 = time.perf_counter()
        with ThreadPoolExecutor(writers) as pool:
            list(pool.map(loop, range(writers)))
        dt = time.perf_counter() - t0
        for app in apps:
            app.close()
    commits = sum(counts)
    return {"commits_per_s": commits / dt, "rows_per_s": commits * rows / dt}


def bare_commits(admin: Any, work: Path, writers: int, seconds: float) -> float:
    """The anchor of ``concurrent_commits``: one-row INSERT and COMMIT into a table of
    one integer on ``writers`` connections (PostgreSQL's own group flush of the WAL)."""
    with schema_store(admin, work) as st:
        with st.write() as conn:
            conn.execute(text("CREATE TABLE probe (x integer)"))
        counts = [0] * writers
        stop = time.perf_counter() + seconds

        def loop(j: int) -> None:
            raw = st.engine.raw_connection()
            try:
                db = raw.driver_connection
                while time.perf_counter() < stop:
                    db.execute("INSERT INTO probe VALUES (1)")  # type: ignore[union-attr]
                    db.commit()  # type: ignore[union-attr]
                    counts[j] += 1
            finally:
                raw.close()

        t0 = time.perf_counter()
        with ThreadPoolExecutor(writers) as pool:
            list(pool.map(loop, range(writers)))
        return sum(counts) / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--pg", default=PG)
    ap.add_argument("--rows", type=int, default=200_000, help="rows ingested per table [200000]")
    ap.add_argument("--batch", type=int, default=4096, help="rows per commit [4096]")
    ap.add_argument("--per-day", type=int, default=200, help="rows per day in the lookup test")
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--block-rows", type=int, default=256, help="decisions per ingest block")
    ap.add_argument(
        "--block-per-day", type=int, default=1024, help="decisions a day in the block lookup test"
    )
    ap.add_argument(
        "--only",
        default="",
        help="comma-separated sections to run, of rows (1-6), 7, 8, 9, 10 [all]",
    )
    a = ap.parse_args(argv)
    only = set(a.only.split(",")) if a.only else {"rows", "7", "8", "9", "10"}
    admin = create_engine(a.pg)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        x = features(a.rows)
        if "rows" in only:
            rows_sections(admin, work, x, a)
        if "7" in only:
            section_7(admin, work, x, a)
        if "8" in only:
            section_8(admin, work, a)
        if "9" in only:
            section_9(admin, work, x, a)
        if "10" in only:
            section_10(admin, work, x, a)
    print(f"\nload average {os.getloadavg()[0]:.1f}")
    admin.dispose()
    return 0


def section_7(admin: Any, work: Path, x: np.ndarray[Any, Any], a: argparse.Namespace) -> None:
    """Section 7: ingest blocks into the table of 0018 and the partitioned one of 0020."""
    with schema_store(admin, work) as plain, schema_store(admin, work) as parted:
        plain.upgrade("0018")
        parted.upgrade()
        got = block_ingest(
            {"unpartitioned": plain, "partitioned": parted}, x, a.batch, a.block_rows
        )
        print(
            f"\n7. ingest blocks, {a.rows} decisions in blocks of {a.block_rows},"
            f" commits of {a.batch} decisions:"
        )
        for name, r in got.items():
            print(
                f"  {name:14} {r['rows_per_s']:9.0f} rows/s wall  "
                f"{r['rows_per_pg_cpu_s']:9.0f} rows/s per PostgreSQL backend CPU s  "
                f"median commit {r['median_commit_ms']:.1f} ms"
            )
        with plain.read() as conn:
            blocks, held = conn.execute(
                text("SELECT count(*), coalesce(sum(rows), 0) FROM ingest_blocks")
            ).one()
        t0 = time.perf_counter()
        plain.upgrade()
        dt = time.perf_counter() - t0
        print(
            f"  migration 0020 of {blocks} blocks ({held} decisions): {dt:.1f} s,"
            f" {held / dt:.0f} decisions/s"
        )


def section_8(admin: Any, work: Path, a: argparse.Namespace) -> None:
    """Section 8: lookups of a block's decision by id, by partition count."""
    print(
        f"\n8. lookup of a block's decision by id ({a.block_per_day} decisions a day in blocks"
        f" of {min(a.block_rows, a.block_per_day)}, {a.queries} queries, median):"
    )
    for r in block_lookups(admin, work, a.block_per_day, a.block_rows, a.queries):
        what = (
            "unpartitioned (0018)" if r["revision"] == "0018" else f"{r['partitions']} partitions"
        )
        print(
            f"  {what:20} {r['days']:3} days: hit {r['hit_us']:6.0f} us "
            f"(p99 {r['hit_p99_us']:.0f}), miss {r['miss_us']:6.0f} us"
        )


def section_9(admin: Any, work: Path, x: np.ndarray[Any, Any], a: argparse.Namespace) -> None:
    """Section 9: ids as text and as uuid."""
    print(f"\n9. ids as text and as uuid, {a.rows} rows in commits of {a.batch}:")
    for t, r in id_types(admin, work, x, a.batch).items():
        print(
            f"  {t:9} {r['bytes_per_row']:5.0f} B/row (primary key {r['pkey_bytes_per_row']:.0f})"
            f"  {r['rows_per_pg_cpu_s']:9.0f} rows/s per backend CPU s"
            f"  lookup by id {r['lookup_us']:5.0f} us"
        )


def section_10(admin: Any, work: Path, x: np.ndarray[Any, Any], a: argparse.Namespace) -> None:
    """Section 10: the live tables' ids as text (0021) and as uuid (0022)."""
    got = live_ids(admin, work, x, a.batch, a.queries)
    n = got["rows"]
    print(f"\n10. live ids, {n} decisions through Appender in commits of {a.batch}:")
    for t, r in got["ingest"].items():
        print(
            f"  {t:5} {r['rows_per_s']:9.0f} rows/s wall  "
            f"{r['rows_per_pg_cpu_s']:9.0f} rows/s per PostgreSQL backend CPU s"
        )
    for t, b in got["bytes"].items():
        parts = "  ".join(f"{k} {v / n:.0f}" for k, v in b.items())
        print(f"  {t:15} B per decision: {parts}")
    for t, r in got["lookup"].items():
        print(f"  {t:15} lookup by id: hit {r['hit_us']:5.0f} us, miss {r['miss_us']:5.0f} us")
    print(f"  migration 0022 of {n} decisions: {got['migration_s']:.1f} s")


def rows_sections(admin: Any, work: Path, x: np.ndarray[Any, Any], a: argparse.Namespace) -> None:
    """Sections 1-6: the decision rows."""
    with schema_store(admin, work) as plain, schema_store(admin, work) as parted:
        plain.upgrade("0011")
        parted.upgrade()
        got = ingest({"unpartitioned": plain, "partitioned": parted}, x, a.batch)
        print(f"\n1. ingest, {a.rows} rows in commits of {a.batch} (Appender, COPY):")
        for name, r in got.items():
            print(
                f"  {name:14} {r['rows_per_s']:9.0f} rows/s wall  "
                f"{r['rows_per_pg_cpu_s']:9.0f} rows/s per PostgreSQL backend CPU s  "
                f"{r['rows_per_client_cpu_s']:9.0f} rows/s per client CPU s  "
                f"median commit {r['median_commit_ms']:.1f} ms"
            )
        with parted.write() as conn:
            conn.execute(text("ANALYZE decisions"))
        n = D.count(parted)
        live = relation_bytes(parted, "decisions") / n
        items = relation_bytes(parted, "evidence_items") / n
        print(f"\n2. live bytes per decision ({n} rows): decisions {live:.0f}, "
              f"evidence_items {items:.0f}, total {live + items:.0f}")  # fmt: skip
        pq_sizes = parquet_bytes(parted, work)
        print(
            f"\n3. Parquet (zstd) bytes per decision: as stored {pq_sizes['as_stored']:.0f}, "
            f"inputs as columns {pq_sizes['inputs_as_columns']:.0f} "
            f"(live/archived {live / pq_sizes['inputs_as_columns']:.1f}x)"
        )
        with plain.read() as conn:  # the store at 0011 has no archive tables for D.count
            rows = int(conn.execute(text("SELECT count(*) FROM decisions")).scalar_one())
        t0 = time.perf_counter()
        plain.upgrade()
        dt = time.perf_counter() - t0
        print(f"\n4. migration 0012 of {rows} rows: {dt:.1f} s, {rows / dt:.0f} rows/s")
    print("\n5. concurrent appenders (a connection each), commits of 1 and 16 rows, 5 s:")
    for writers in (1, 4, 16):
        bare = bare_commits(admin, work, writers, 5.0)
        print(f"  {writers:2} writers, bare one-row commits (anchor): {bare:6.0f} commits/s")
        for rows in (1, 16):
            r = concurrent_commits(admin, work, writers, rows, 5.0)
            print(
                f"  {writers:2} writers x {rows:2} rows: {r['commits_per_s']:6.0f} commits/s"
                f"  {r['rows_per_s']:7.0f} rows/s"
            )
    print(f"\n6. lookup by id ({a.per_day} rows a day, {a.queries} queries, median):")
    for r in lookups(admin, work, a.per_day, a.queries):
        print(
            f"  {r['partitions']:4} partitions: hit {r['hit_us']:6.0f} us "
            f"(p99 {r['hit_p99_us']:.0f}), miss (all partitions) {r['miss_us']:6.0f} us"
        )


if __name__ == "__main__":
    sys.exit(main())
