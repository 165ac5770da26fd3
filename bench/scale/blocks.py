"""Sections 7-9 of the scale benchmark: ingest blocks partitioned by day, and id types."""

from __future__ import annotations

import contextlib
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import SCHEMA, cpu_of, features, id_at, schema_store, time_lookups, tuples
from sqlalchemy import text

from chronoml.domain import codec
from chronoml.ids import new_block_ids, new_ids
from chronoml.store import Store, partitions
from chronoml.store import decisions as D
from chronoml.store.ingest import Block
from chronoml.timeutil import now_us


def blocks_of(x: np.ndarray[Any, Any], layout: str, ts: int, per: int) -> list[Block]:
    """The rows of ``x`` as requests of ``per`` rows, each logged as one ingest block whose
    ids carry ``ts`` (so each block lands where its ids point)."""
    packed = codec.pack_rows(x)
    out = []
    for lo in range(0, len(x), per):
        n = min(per, len(x) - lo)
        bid, ids = new_block_ids(n)
        bid, ids = id_at(bid, ts), [id_at(i, ts) for i in ids]
        outs = [str(i % 2) for i in range(n)]
        scores = [np.array([1 - (i % 7) / 7, (i % 7) / 7], dtype="<f8").tobytes() for i in range(n)]
        block = Block(
            bid, ids, ts + lo, "churn", "a", "churn", "3", 1, False, None, new_ids(1)[0],
            layout, 1.2, packed[lo : lo + n], [None] * n, outs, [float(o) for o in outs],
            scores, None,
        )  # fmt: skip
        out.append(block)
    return out


def block_ingest(
    stores: dict[str, Store], x: np.ndarray[Any, Any], batch: int, per: int
) -> dict[str, Any]:
    """Section 1 for requests logged as ingest blocks: ``batch`` decisions per commit."""
    layout = codec.layout_id(SCHEMA)
    apps = {}
    for name, st in stores.items():
        D.Layouts(st).ensure(layout, SCHEMA)
        apps[name] = D.Appender(st)
        apps[name].append([], (), blocks_of(x[:per], layout, now_us(), per))  # warm up
    wall: dict[str, list[float]] = {n: [] for n in stores}
    pg: dict[str, list[float]] = {n: [] for n in stores}
    for lo in range(0, len(x), batch):
        chunk = x[lo : lo + batch]
        for name, app in apps.items():
            made = blocks_of(chunk, layout, now_us(), per)
            pid = app._connection().driver_connection.info.backend_pid
            pg0, t0 = cpu_of(pid), time.perf_counter()
            app.append([], (), made)
            t1, pg1 = time.perf_counter(), cpu_of(pid)
            wall[name].append(t1 - t0)
            pg[name].append(pg1 - pg0)
    for app in apps.values():
        app.close()
    n = len(x)
    return {
        name: {
            "rows_per_s": n / sum(wall[name]),
            "rows_per_pg_cpu_s": n / max(sum(pg[name]), 1e-9),
            "median_commit_ms": statistics.median(wall[name]) * 1000,
        }
        for name in stores
    }


def block_lookups(
    admin: Any, work: Path, per_day: int, per: int, queries: int
) -> list[dict[str, Any]]:
    """Lookups of a block's decision by id: a year of blocks on the unpartitioned table of
    0018, then 7, 30, 180 and 365 day partitions of 0020; queried round robin."""
    layout = codec.layout_id(SCHEMA)
    today = partitions.day_start(now_us())
    x = features(per_day, seed=4)
    sizes = (("0018", 365), ("head", 7), ("head", 30), ("head", 180), ("head", 365))
    with contextlib.ExitStack() as stack:
        stores, hits = [], []
        for rev, days in sizes:
            st = stack.enter_context(schema_store(admin, work))
            st.upgrade(rev)
            D.Layouts(st).ensure(layout, SCHEMA)
            if rev == "head":
                with st.write() as conn:
                    start = today - (days - 1) * partitions.DAY_US
                    partitions.create_ahead(conn, start, days, partitions.BLOCKS)
            app = D.Appender(st)
            mine: list[str] = []
            for k in range(days):
                made = blocks_of(x, layout, today - k * partitions.DAY_US + 3_600_000_000, per)
                app.append([], (), made)
                mine += [b.ids[len(b.ids) // 2] for b in made]
            app.close()
            with st.write() as conn:
                conn.execute(text("ANALYZE ingest_blocks"))
            stores.append(st)
            hits.append(mine)
        # a block id with other random bits: no such block
        timed = time_lookups(
            stores, hits, lambda h: h[:24] + "ffffffff" + h[32:], queries, 1, partitions.BLOCKS
        )
        out = [
            {"revision": size[0], "days": size[1], **row}
            for size, row in zip(sizes, timed, strict=True)
        ]
    return out


def id_types(admin: Any, work: Path, x: np.ndarray[Any, Any], batch: int) -> dict[str, Any]:
    """Section 9: the same rows in a ``decisions`` table with text ids and in one with
    ``uuid`` ids (no evidence, no partitions: only the type differs)."""
    layout = codec.layout_id(SCHEMA)
    cols = ", ".join(D.COLUMNS)
    out: dict[str, Any] = {}
    with schema_store(admin, work) as st:
        st.upgrade()
        with st.write() as conn:
            for t in ("ids_text", "ids_uuid"):
                conn.execute(text(f"CREATE TABLE {t} (LIKE decisions INCLUDING DEFAULTS)"))
                conn.execute(text(f"ALTER TABLE {t} ADD PRIMARY KEY (id)"))
                conn.execute(text(f"CREATE INDEX ix_{t}_endpoint_ts ON {t} (endpoint, ts)"))
            conn.execute(
                text(
                    "ALTER TABLE ids_uuid ALTER COLUMN id TYPE uuid USING id::uuid,"
                    " ALTER COLUMN request_id TYPE uuid USING request_id::uuid"
                )
            )
        raw = st.engine.raw_connection()
        db: Any = raw.driver_connection
        pid = db.info.backend_pid
        cpu = {"ids_text": 0.0, "ids_uuid": 0.0}
        ids: list[str] = []
        try:
            for lo in range(0, len(x), batch):
                rows = tuples(x[lo : lo + batch], layout, now_us())
                ids += [r[0] for r in rows[::97]]
                for t in cpu:
                    c0 = cpu_of(pid)
                    with db.cursor() as cur, cur.copy(f"COPY {t} ({cols}) FROM STDIN") as cp:
                        for r in rows:
                            cp.write_row(r)
                    db.commit()
                    cpu[t] += cpu_of(pid) - c0
            db.execute("ANALYZE ids_text")
            db.execute("ANALYZE ids_uuid")
            db.commit()
            times: dict[str, list[float]] = {t: [] for t in cpu}
            for i in ids * 3:
                for t in cpu:
                    t0 = time.perf_counter()
                    db.execute(f"SELECT * FROM {t} WHERE id = %s", (i,)).fetchone()
                    times[t].append(time.perf_counter() - t0)
            db.rollback()
            for t in cpu:
                size = db.execute("SELECT pg_total_relation_size(%s)", (t,)).fetchone()[0]
                key = db.execute("SELECT pg_relation_size(%s)", (f"{t}_pkey",)).fetchone()[0]
                out[t] = {
                    "bytes_per_row": size / len(x),
                    "pkey_bytes_per_row": key / len(x),
                    "rows_per_pg_cpu_s": len(x) / max(cpu[t], 1e-9),
                    "lookup_us": statistics.median(times[t]) * 1e6,
                }
        finally:
            raw.close()
    return out
