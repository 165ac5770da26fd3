"""Goal: ``Chronoml.decision(id)`` (a decision with its full lineage: the row, the
ledger events that routed it and made its version live, the input layout and
the decoded inputs) has p99 <= 2 ms with 1,000,000 decisions of 30 float
inputs each, on SQLite and on PostgreSQL.

Anchors, measured in the same run and interleaved with the lookups so both
see the same noise:
- the bare primary-key SELECT of the row through the store
  (``store.decisions.get``), so the ratio shows what lineage assembly costs;
- the same SELECT on a held DB-API connection (no SQLAlchemy): the floor.

The table is filled through the durable write path, ``store.decisions.insert_many``,
in batches of ``--batch`` rows (the gateway's decision log commits up to 4,096
rows at once), with inputs packed by ``gateway.inputs.encode``; its rate is
printed. A few real ledger events (``store.ledger.append``) give every row a
state event whose state holds its variant, so the lineage resolves.

    .venv/bin/python bench/decision_lookup.py                  # goal sizes, both stores
    .venv/bin/python bench/decision_lookup.py --decisions 100000 --queries 2000
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
from sqlalchemy import create_engine, text

from chronoml.domain import ledger as L
from chronoml.domain.codec import Schema, encode, layout_id
from chronoml.ids import new_id
from chronoml.service import Chronoml
from chronoml.settings import Settings
from chronoml.store import Store
from chronoml.store import decisions as D
from chronoml.store import ledger as SL

GOAL_P99_MS = 2.0
DEFAULT_PG = os.environ.get(
    "CHRONOML_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
SCHEMA: Schema = tuple((f"f{i:02d}", "float") for i in range(30))


def pct(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), nearest-rank on sorted samples."""
    s = sorted(samples)
    k = max(0, min(len(s) - 1, math.ceil(q / 100 * len(s)) - 1))
    return s[k]


def ms(ns: float) -> str:
    return f"{ns / 1e6:.3f} ms"


@contextmanager
def pg_schema(admin_url: str) -> Iterator[str]:
    """A fresh schema on PostgreSQL, dropped afterwards."""
    name = "bench_" + uuid.uuid4().hex[:12]
    admin = create_engine(admin_url)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {name}"))
    try:
        yield f"{admin_url}?options=-csearch_path%3D{name}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {name} CASCADE"))
        admin.dispose()


def pg_reachable(url: str) -> str | None:
    try:
        eng = create_engine(url)
        with eng.connect() as conn:
            conn.execute(text("SELECT 1"))
        eng.dispose()
        return None
    except Exception as exc:
        return str(exc).splitlines()[0]


# --- populating ------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """What a decision row points at: an endpoint, a state event and a variant in it."""

    endpoint: str
    event_seq: int
    variant: L.Variant


def _ref(name: str, version: int, rng: random.Random) -> L.ModelRef:
    return L.ModelRef(
        name=name,
        version=str(version),
        run_id=uuid.UUID(int=rng.getrandbits(128)).hex,
        artifact_digest="sha256:" + rng.getrandbits(256).to_bytes(32, "big").hex(),
        artifact_uri=f"models:/{name}/{version}",
        data_snapshot={
            "id": "sha256:" + rng.getrandbits(256).to_bytes(32, "big").hex(),
            "name": f"{name}-training",
            "rows": 250_000 + version,
            "created_at": 1_760_000_000_000_000 + version,
        },
        code_version=rng.getrandbits(160).to_bytes(20, "big").hex(),
    )


def _deploy(endpoint: str, ref: L.ModelRef, weight_bp: int | None, shadow: bool) -> L.Change:
    v = L.Variant(name=f"{ref.name}-v{ref.version}", model=ref, weight=0, shadow=shadow)
    payload = {
        "variant": v.to_dict(),
        "weight_bp": weight_bp,
        "model_uri": ref.artifact_uri,
        "allow_unlinked_data": False,
    }
    return L.Change("deploy", endpoint, "bench", payload)


def ledger(store: Store, rng: random.Random) -> list[Route]:
    """Real events through ``append``: per endpoint a deploy, a 20% challenger,
    a 50/50 split and a shadow; every variant of every state is a route."""
    routes: list[Route] = []
    for endpoint in ("churn", "fraud", "credit"):
        refs = [_ref(endpoint, v, rng) for v in (1, 2, 3)]
        changes = [
            _deploy(endpoint, refs[0], None, False),
            _deploy(endpoint, refs[1], 2000, False),
            L.Change(
                "set_weights",
                endpoint,
                "bench",
                {"weights_bp": {f"{endpoint}-v1": 5000, f"{endpoint}-v2": 5000}},
            ),
            _deploy(endpoint, refs[2], None, True),
        ]
        for change in changes:
            ev = SL.append(store, change)
            routes.extend(Route(endpoint, ev.seq, v) for v in ev.state or ())
    return routes


def build_rows(
    n: int, routes: Sequence[Route], layout: str, rng: np.random.Generator, t0_us: int
) -> list[D.DecisionRow]:
    x = rng.normal(size=(n, len(SCHEMA)))
    df = pd.DataFrame(x, columns=[c for c, _ in SCHEMA])
    nums, txts = encode(df, SCHEMA)
    outputs = rng.random(n)
    latency = rng.gamma(2.0, 2.0, n)
    pick = rng.integers(0, len(routes), n)
    units = rng.integers(0, 1_000_000, n)
    rows = []
    for i in range(n):
        r = routes[int(pick[i])]
        out = float(outputs[i])
        rows.append(
            D.DecisionRow(
                id=new_id(),
                ts=t0_us + i,
                endpoint=r.endpoint,
                variant=r.variant.name,
                model_name=r.variant.model.name,
                model_version=r.variant.model.version,
                event_seq=r.event_seq,
                shadow=r.variant.shadow,
                unit=f"customer-{int(units[i])}",
                request_id=new_id(),
                layout=layout,
                num=nums[i],
                txt=txts[i],
                output=orjson.dumps(out).decode(),
                output_num=out,
                latency_ms=float(latency[i]),
            )
        )
    return rows


# --- measuring ---------------------------------------------------------------


def measure(name: str, store: Store, home: Path, url: str | None, args: argparse.Namespace) -> bool:
    print(f"{name}:")
    store.upgrade()
    rng = random.Random(args.seed)
    routes = ledger(store, rng)
    layout = layout_id(SCHEMA)
    D.Layouts(store).ensure(layout, SCHEMA)

    nrng = np.random.default_rng(args.seed)
    ids: list[str] = []
    build_s = insert_s = 0.0
    t0_us = time.time_ns() // 1000
    done = 0
    while done < args.decisions:
        n = min(args.batch, args.decisions - done)
        t = time.perf_counter()
        rows = build_rows(n, routes, layout, nrng, t0_us + done)
        t1 = time.perf_counter()
        D.insert_many(store, rows)
        t2 = time.perf_counter()
        build_s += t1 - t
        insert_s += t2 - t1
        ids.extend(r.id for r in rows)
        done += n
        if done * 10 // args.decisions != (done - n) * 10 // args.decisions:
            print(f"  ... {done:,} decisions", file=sys.stderr, flush=True)
    print(
        f"  populate: {args.decisions:,} decisions in {build_s + insert_s:.1f} s; "
        f"insert_many ({args.batch:,} rows per commit) {args.decisions / insert_s:,.0f} rows/s, "
        f"building rows with encode() {args.decisions / build_s:,.0f} rows/s"
    )
    with store.engine.connect() as conn:
        if store.is_sqlite:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        else:
            conn.exec_driver_sql("ANALYZE decisions")  # what autovacuum would do soon after
            conn.commit()

    cm = Chronoml(Settings(home=home, store_url=url), store)
    qrng = random.Random(args.seed + 1)
    lookups = [qrng.choice(ids) for _ in range(args.queries)]
    anchors = [qrng.choice(ids) for _ in range(args.queries)]
    floors = [qrng.choice(ids) for _ in range(args.queries)]

    # warm the pool, the statement caches and the layout cache; check the lineage resolves
    for i in lookups[:500]:
        d = cm.decision(i)
        if d.served_by is None or d.event is None or len(d.inputs or {}) != len(SCHEMA):
            print(f"  lineage did not resolve for {i}: {d}")
            return False
        D.get(store, i)

    raw = store.engine.raw_connection()
    cur = raw.cursor()
    sql = "SELECT * FROM decisions WHERE id = " + ("?" if store.is_sqlite else "%s")
    got: list[float] = []
    base: list[float] = []
    floor: list[float] = []
    pc = time.perf_counter_ns
    for a, b, c in zip(lookups, anchors, floors, strict=True):
        t = pc()
        cm.decision(a)
        got.append(pc() - t)
        t = pc()
        D.get(store, b)
        base.append(pc() - t)
        t = pc()
        cur.execute(sql, (c,))
        cur.fetchone()
        floor.append(pc() - t)
    cur.close()
    if not store.is_sqlite:
        raw.rollback()
    raw.close()

    p50, p99 = pct(got, 50), pct(got, 99)
    b50, b99 = pct(base, 50), pct(base, 99)
    f50, f99 = pct(floor, 50), pct(floor, 99)
    met = p99 <= GOAL_P99_MS * 1e6
    print(
        f"  decision(id) ({len(got):,} lookups): p50 {ms(p50)}, p99 {ms(p99)}, max {ms(max(got))}"
        f"  -> goal {'MET' if met else 'NOT MET'}"
    )
    print(
        f"  anchor, primary-key SELECT via store.decisions.get: p50 {ms(b50)}, p99 {ms(b99)}; "
        f"lineage assembly makes it {p50 / b50:.2f}x at p50, {p99 / b99:.2f}x at p99"
    )
    print(
        f"  floor, the same SELECT on a held DB-API connection: p50 {ms(f50)}, p99 {ms(f99)}; "
        f"decision(id) is {p50 / f50:.1f}x that at p50"
    )
    return met


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--decisions", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=4096, help="rows per insert_many commit")
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--pg-url", default=DEFAULT_PG, help="admin URL [env CHRONOML_BENCH_PG]")
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.backends.split(",") if n.strip()]
    print(
        f"decision lookup: {args.decisions:,} decisions x {len(SCHEMA)} float inputs, "
        f"{args.queries:,} lookups; goal p99 <= {GOAL_P99_MS} ms; "
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"
    )
    ok = True
    for name in names:
        tmp = Path(tempfile.mkdtemp(prefix="chronoml-bench-decisions-"))
        try:
            if name == "sqlite":
                store = Store.open(f"sqlite:///{tmp / 'chronoml.db'}", tmp)
                try:
                    ok = measure(name, store, tmp, None, args) and ok
                finally:
                    store.close()
            elif name == "postgresql":
                why = pg_reachable(args.pg_url)
                if why is not None:
                    print(f"postgresql: skipped, not reachable at {args.pg_url}: {why}")
                    continue
                with pg_schema(args.pg_url) as url:
                    store = Store.open(url, tmp)
                    try:
                        ok = measure(name, store, tmp, url, args) and ok
                    finally:
                        store.close()
            else:
                print(f"unknown backend {name!r}")
                ok = False
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    return 0 if ok else 2


if __name__ == "__main__":
    sys.exit(main())
