"""Goal: the as-of answer ``store.ledger.state_at(store, endpoint, t)`` has p99 <= 1 ms
with 1,000,000 ledger events across 1,000 endpoints, on SQLite and on PostgreSQL.

Anchors, measured in the same run and interleaved with the goal's queries:
- the pure ``domain.ledger.state_at`` over that endpoint's events already in memory
  (brute force: filter, sort, bisect), on a sample of endpoints; its answers
  are also the reference the store's answers are checked against;
- the same SQL on a held DB-API connection (no pool, no SQLAlchemy, no
  decoding): what the database itself costs;
- the same SQL forced to scan the whole table (no index), a few times.

Appending 1M events one by one through ``append()`` would take hours, so the
chain is planned with ``domain.ledger.plan`` (the pure function ``append()``
uses; endpoints in parallel processes, see below), sealed in seq order, and
bulk-loaded: ``executemany`` in big transactions on SQLite, ``COPY`` on
PostgreSQL; then ``ledger_head`` is moved to the last event. At 100,000
events or fewer (or with ``--verify``) ``store.ledger.verify`` recomputes the
whole chain to prove the load is a valid ledger.

    .venv/bin/python bench/asof.py                      # goal sizes, both stores
    .venv/bin/python bench/asof.py --events 50000 --endpoints 50 --queries 2000
"""

from __future__ import annotations

import argparse
import heapq
import math
import multiprocessing
import os
import pickle
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, select, text

from chronoml.domain import ledger as L
from chronoml.store import Store, schema
from chronoml.store import ledger as SL

GOAL_P99_MS = 1.0
DEFAULT_PG = os.environ.get(
    "CHRONOML_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
T0 = 1_735_689_600_000_000  # 2025-01-01T00:00:00Z in microseconds
YEAR_US = 365 * 24 * 3600 * 1_000_000
COLUMNS = list(schema.ledger_events.c.keys())


# --- statistics ------------------------------------------------------------


def pct(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), nearest-rank on sorted samples."""
    s = sorted(samples)
    k = max(0, min(len(s) - 1, math.ceil(q / 100 * len(s)) - 1))
    return s[k]


def ms(ns: float) -> str:
    return f"{ns / 1e6:.3f} ms"


# --- building a valid chain in memory ---------------------------------------
#
# ``plan`` computes each event's state from the endpoint's history; only its
# seal (``prev_hash`` and ``hash``) depends on the events of other endpoints.
# So endpoints are planned in parallel worker processes (planning a state
# change is the expensive part: routing-bucket rebalancing), each writing its
# events in seq order to a file, and one pass then merges the files by seq and
# seals every event onto the chain. The result is exactly what ``plan`` would
# produce if called in seq order with the real head hash.

_OWNERS: array[int] | None = None  # seq - 1 -> endpoint index; inherited by forked workers


@dataclass
class _Endpoint:
    index: int
    name: str
    rng: random.Random
    versions: int = 0
    alerts: int = 0
    last: L.LedgerEvent | None = None
    # recent state events by seq: rollback needs the event ``last.back`` points to
    recent: OrderedDict[int, L.LedgerEvent] = field(default_factory=OrderedDict)


def _model(ep: _Endpoint) -> L.ModelRef:
    rng = ep.rng
    ep.versions += 1
    v = ep.versions
    return L.ModelRef(
        name=f"model-{ep.index:04d}",
        version=str(v),
        run_id=uuid.UUID(int=rng.getrandbits(128)).hex,
        artifact_digest="sha256:" + rng.getrandbits(256).to_bytes(32, "big").hex(),
        artifact_uri=f"models:/model-{ep.index:04d}/{v}",
        data_snapshot={
            "id": "sha256:" + rng.getrandbits(256).to_bytes(32, "big").hex(),
            "name": "customers",
            "rows": rng.randrange(10_000, 5_000_000),
            "created_at": T0 - rng.randrange(YEAR_US),
        },
        code_version=rng.getrandbits(160).to_bytes(20, "big").hex(),
    )


def _deploy(ep: _Endpoint, answering: int, shadows: int) -> L.Change:
    ref = _model(ep)
    shadow = shadows == 0 and answering > 0 and ep.rng.random() < 0.05
    weight: int | None = None
    if not shadow and 0 < answering < 3 and ep.rng.random() < 0.6:
        weight = ep.rng.choice((1000, 2000, 2500, 5000))
    variant = L.Variant(name=f"{ref.name}-v{ref.version}", model=ref, weight=0, shadow=shadow)
    payload = {
        "variant": variant.to_dict(),
        "weight_bp": weight,
        "model_uri": ref.artifact_uri,
        "allow_unlinked_data": False,
    }
    return L.Change("deploy", ep.name, "deployer@example.com", payload)


def _split(names: list[str], rng: random.Random) -> dict[str, int]:
    cuts = sorted(rng.sample(range(1, 100), len(names) - 1)) if len(names) > 1 else []
    bounds = [0, *cuts, 100]
    return {n: (bounds[i + 1] - bounds[i]) * 100 for i, n in enumerate(names)}


def _alert(ep: _Endpoint, variant: str) -> L.Change:
    ep.alerts += 1
    kind = "alert_fired" if ep.alerts % 2 else "alert_resolved"
    payload = {
        "rule": "drift-share",
        "metric": "drift_share",
        "op": ">",
        "threshold": 0.5,
        "value": round(ep.rng.random(), 4),
        "variant": variant,
    }
    return L.Change(kind, ep.name, "monitor", payload)


def _next_event(ep: _Endpoint, seq: int, now: int) -> L.LedgerEvent:
    """The endpoint's next event, planned on a placeholder head (sealed later).

    The mix: 55% alerts (events that leave the state alone), deploys (alone,
    weighted, shadow), weight changes, rollbacks, retirements; 10% of changes
    scheduled up to an hour ahead.
    """
    rng = ep.rng
    last = ep.last
    state = last.state if last is not None and last.state is not None else ()
    answering = [v.name for v in state if not v.shadow]
    shadows = len(state) - len(answering)
    history: list[L.LedgerEvent] = [last] if last is not None else []
    r = rng.random()
    if not answering:
        change = _deploy(ep, 0, shadows)
    elif r < 0.55:
        change = _alert(ep, answering[0])
    elif r < 0.70:
        change = _deploy(ep, len(answering), shadows)
    elif r < 0.85:
        change = L.Change("set_weights", ep.name, "analyst", {"weights_bp": _split(answering, rng)})
    elif r < 0.93 and last is not None and last.back in ep.recent:
        history = [ep.recent[last.back], last]
        change = L.Change("rollback", ep.name, "oncall", {"reason": "p99 latency alert"})
    elif r < 0.95:
        change = L.Change("retire", ep.name, "deployer@example.com", {})
    else:
        change = _deploy(ep, len(answering), shadows)
    eff: int | None = None
    if change.kind in L.STATE_KINDS and rng.random() < 0.1:
        eff = now + rng.randrange(3600 * 1_000_000)
    if last is not None and (eff if eff is not None else now) < last.effective_at:
        eff = last.effective_at
    ev = L.plan(seq - 1, L.GENESIS_HASH, history, change, now, eff)
    if ev.sets_state:
        ep.last = ev
        ep.recent[ev.seq] = ev
        if len(ep.recent) > 64:
            ep.recent.popitem(last=False)
    return ev


def _plan_endpoints(task: tuple[int, int, list[int], str]) -> int:
    """Worker: plan every event of the endpoints ``indices``; append them to ``path``."""
    seed, step, indices, path = task
    assert _OWNERS is not None
    eps = {
        i: _Endpoint(i, f"endpoint-{i:04d}", random.Random(seed * 1_000_003 + i)) for i in indices
    }
    n = 0
    with open(path, "wb") as f:
        for seq0, owner in enumerate(_OWNERS):
            ep = eps.get(owner)
            if ep is not None:
                f.write(pickle.dumps(_next_event(ep, seq0 + 1, T0 + (seq0 + 1) * step), 5))
                n += 1
    return n


def _read_events(path: str) -> Iterator[L.LedgerEvent]:
    with open(path, "rb") as f:
        while True:
            try:
                yield pickle.load(f)
            except EOFError:
                return


def plan_chain(
    n_events: int, n_endpoints: int, seed: int, workers: int, tmp: Path
) -> tuple[list[str], float]:
    """Plan all events, ``workers`` processes in parallel; the files, and the seconds it took."""
    global _OWNERS
    rng = random.Random(seed)
    _OWNERS = array("H", (rng.randrange(n_endpoints) for _ in range(n_events)))
    step = max(1, YEAR_US // n_events)
    groups = [list(range(k, n_endpoints, workers)) for k in range(min(workers, n_endpoints))]
    tasks = [(seed, step, g, str(tmp / f"plan-{k}.pickle")) for k, g in enumerate(groups)]
    t = time.perf_counter()
    if len(tasks) == 1:
        _plan_endpoints(tasks[0])
    else:
        with multiprocessing.get_context("fork").Pool(len(tasks)) as pool:
            pool.map(_plan_endpoints, tasks)
    return [task[3] for task in tasks], time.perf_counter() - t


def seal_chain(paths: list[str]) -> Iterator[L.LedgerEvent]:
    """Merge the planned events by seq and seal each onto the chain."""
    prev = L.GENESIS_HASH
    expected = 1
    for ev in heapq.merge(*(_read_events(p) for p in paths), key=lambda e: e.seq):
        assert ev.seq == expected, f"planned events skip from {expected} to {ev.seq}"
        sealed = L.seal(replace(ev, prev_hash=prev))
        prev = sealed.hash
        expected += 1
        yield sealed


# --- stores ----------------------------------------------------------------


@dataclass
class Backend:
    name: str
    store: Store
    raw: Any  # a DB-API connection for bulk loading
    insert_s: float = 0.0


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


def bulk_insert(b: Backend, rows: list[dict[str, Any]]) -> None:
    t = time.perf_counter()
    tuples = [tuple(r[c] for c in COLUMNS) for r in rows]
    if b.name == "sqlite":
        cur = b.raw.cursor()
        cur.execute("BEGIN IMMEDIATE")
        cur.executemany(
            f"INSERT INTO ledger_events ({', '.join(COLUMNS)}) "
            f"VALUES ({', '.join('?' for _ in COLUMNS)})",
            tuples,
        )
        cur.execute("COMMIT")
        cur.close()
    else:
        with (
            b.raw.cursor() as cur,
            cur.copy(f"COPY ledger_events ({', '.join(COLUMNS)}) FROM STDIN") as cp,
        ):
            for tup in tuples:
                cp.write_row(tup)
        b.raw.commit()
    b.insert_s += time.perf_counter() - t


def set_head(b: Backend, seq: int, hash_: str) -> None:
    h = schema.ledger_head
    with b.store.write() as conn:
        conn.execute(h.update().where(h.c.id == 1).values(seq=seq, hash=hash_))
    with b.store.engine.connect() as conn:
        if b.name == "sqlite":
            # steady state: the bulk load's WAL folded into the main file
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        else:
            # what autovacuum would do shortly after a load this size
            conn.exec_driver_sql("ANALYZE ledger_events")
            conn.commit()


def state_query(endpoint: str, t: int) -> Any:
    E = schema.ledger_events
    # the statement store.ledger.state_at runs
    return (
        select(E)
        .where(E.c.endpoint == endpoint, E.c.sets_state.is_(True), E.c.effective_at <= t)
        .order_by(E.c.effective_at.desc(), E.c.seq.desc())
        .limit(1)
    )


def plan_text(b: Backend, endpoint: str, t: int) -> str:
    stmt = state_query(endpoint, t)
    with b.store.engine.connect() as conn:
        compiled = stmt.compile(dialect=conn.dialect)
        params = compiled.params
        sql = str(compiled)
        if b.name == "sqlite":
            rows = conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN " + sql, tuple(params[k] for k in compiled.positiontup or ())
            ).all()
            return "; ".join(str(r[-1]) for r in rows)
        rows = conn.exec_driver_sql("EXPLAIN " + sql, params).all()
        return " | ".join(str(r[0]).strip() for r in rows)


class Floor:
    """The same query on a held DB-API connection: no pool, no SQLAlchemy, no decoding."""

    def __init__(self, b: Backend) -> None:
        self.b = b
        cols = ", ".join(COLUMNS)
        order = "ORDER BY effective_at DESC, seq DESC LIMIT 1"
        if b.name == "sqlite":
            where = "endpoint = ? AND sets_state IS 1 AND effective_at <= ?"
        else:
            where = "endpoint = %s AND sets_state IS true AND effective_at <= %s"
        self.sql = f"SELECT {cols} FROM ledger_events WHERE {where} {order}"

    def __enter__(self) -> Callable[[str, int], float]:
        self.cur = self.b.raw.cursor()
        return self.run

    def run(self, endpoint: str, t: int) -> float:
        t0 = time.perf_counter_ns()
        self.cur.execute(self.sql, (endpoint, t))
        self.cur.fetchone()
        return time.perf_counter_ns() - t0

    def __exit__(self, *exc: object) -> None:
        self.cur.close()
        if self.b.name != "sqlite":
            self.b.raw.rollback()


def full_scan_ns(b: Backend, endpoint: str, t: int) -> float:
    """The same question without the index: a scan of the whole table."""
    cols = ", ".join(COLUMNS)
    where = "endpoint = :e AND sets_state AND effective_at <= :t"
    order = "ORDER BY effective_at DESC, seq DESC LIMIT 1"
    with b.store.engine.connect() as conn:
        if b.name == "sqlite":
            q = text(f"SELECT {cols} FROM ledger_events NOT INDEXED WHERE {where} {order}")
            t0 = time.perf_counter_ns()
            conn.execute(q, {"e": endpoint, "t": t}).first()
            return time.perf_counter_ns() - t0
        with conn.begin():
            for knob in ("enable_indexscan", "enable_bitmapscan", "enable_indexonlyscan"):
                conn.exec_driver_sql(f"SET LOCAL {knob} = off")
            q = text(f"SELECT {cols} FROM ledger_events WHERE {where} {order}")
            t0 = time.perf_counter_ns()
            conn.execute(q, {"e": endpoint, "t": t}).first()
            return time.perf_counter_ns() - t0


# --- the run ---------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--endpoints", type=int, default=1_000)
    ap.add_argument("--queries", type=int, default=10_000)
    ap.add_argument(
        "--anchor-endpoints",
        type=int,
        default=100,
        help="endpoints whose events are kept in memory for the pure anchor",
    )
    ap.add_argument("--scan-queries", type=int, default=5, help="full-table-scan anchor queries")
    ap.add_argument("--batch", type=int, default=20_000, help="events per bulk transaction")
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--pg-url", default=DEFAULT_PG, help="admin URL [env CHRONOML_BENCH_PG]")
    ap.add_argument("--verify", action="store_true", help="verify the chain even when large")
    ap.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="processes planning the chain [default: one per core]",
    )
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)

    names = [n.strip() for n in args.backends.split(",") if n.strip()]
    print(
        f"as-of: {args.events:,} events, {args.endpoints:,} endpoints, {args.queries:,} queries; "
        f"goal p99 <= {GOAL_P99_MS} ms; load average {os.getloadavg()[0]:.2f} "
        f"on {os.cpu_count()} cores"
    )
    tmp = Path(tempfile.mkdtemp(prefix="chronoml-bench-asof-"))
    backends: list[Backend] = []
    cleanups: list[Any] = []
    try:
        if "sqlite" in names:
            st = Store.open(f"sqlite:///{tmp / 'chronoml.db'}", tmp)
            st.upgrade()
            raw = st.engine.raw_connection()
            backends.append(Backend("sqlite", st, raw))
        if "postgresql" in names:
            why = pg_reachable(args.pg_url)
            if why is not None:
                print(f"postgresql: skipped, not reachable at {args.pg_url}: {why}")
            else:
                cm = pg_schema(args.pg_url)
                url = cm.__enter__()
                cleanups.append(cm)
                st = Store.open(url, tmp)
                st.upgrade()
                backends.append(Backend("postgresql", st, st.engine.raw_connection()))
        if not backends:
            print("no store to measure")
            return 1
        return _run(args, backends, tmp)
    finally:
        for b in backends:
            b.raw.close()
            b.store.close()
        for cm in cleanups:
            cm.__exit__(None, None, None)
        shutil.rmtree(tmp, ignore_errors=True)


def _run(args: argparse.Namespace, backends: list[Backend], tmp: Path) -> int:
    rng = random.Random(args.seed + 1)
    keep = {
        f"endpoint-{i:04d}"
        for i in rng.sample(range(args.endpoints), min(args.anchor_endpoints, args.endpoints))
    }
    kept: dict[str, list[L.LedgerEvent]] = {}
    t_start = time.perf_counter()
    paths, plan_s = plan_chain(args.events, args.endpoints, args.seed, args.workers, tmp)
    print(
        f"populate: planning {args.events:,} events with domain.ledger.plan, "
        f"{args.workers} processes: {plan_s:.1f} s ({args.events / plan_s:,.0f} events/s)",
        flush=True,
    )
    seal_s = 0.0
    batch: list[dict[str, Any]] = []
    last: L.LedgerEvent | None = None
    t_seal = time.perf_counter()
    for ev in seal_chain(paths):
        batch.append(SL._event_row(ev))
        if ev.endpoint in keep:
            kept.setdefault(ev.endpoint, []).append(ev)
        last = ev
        if len(batch) >= args.batch:
            seal_s += time.perf_counter() - t_seal
            for b in backends:
                bulk_insert(b, batch)
            batch = []
            t_seal = time.perf_counter()
            if last.seq * 10 // args.events != (last.seq - args.batch) * 10 // args.events:
                print(f"  ... {last.seq:,} events loaded", file=sys.stderr, flush=True)
    seal_s += time.perf_counter() - t_seal
    for p in paths:
        os.unlink(p)
    for b in backends:
        if batch:
            bulk_insert(b, batch)
    assert last is not None
    for b in backends:
        t = time.perf_counter()
        set_head(b, last.seq, last.hash)
        b.insert_s += time.perf_counter() - t
    total_s = time.perf_counter() - t_start
    print(f"  sealing the chain and making rows: {seal_s:.1f} s; populate in all {total_s:.1f} s")
    for b in backends:
        print(
            f"  {b.name}: bulk load {b.insert_s:.1f} s ({args.events / b.insert_s:,.0f} events/s)"
        )

    if args.verify or args.events <= 100_000:
        for b in backends:
            t = time.perf_counter()
            report = SL.verify(b.store)
            print(
                f"  {b.name}: audit verify {'ok' if report.ok else 'FAILED'} on {report.events:,} "
                f"events in {time.perf_counter() - t:.1f} s"
                + ("" if report.ok else f" at #{report.first_bad_seq}: {report.reason}")
            )
            if not report.ok:
                return 1

    t_lo = T0
    t_hi = T0 + args.events * max(1, YEAR_US // args.events) + 3600 * 1_000_000
    all_eps = [f"endpoint-{i:04d}" for i in range(args.endpoints)]
    qrng = random.Random(args.seed + 2)
    queries = [(qrng.choice(all_eps), qrng.randrange(t_lo, t_hi)) for _ in range(args.queries)]
    kept_eps = sorted(kept)
    anchor_queries = [
        (qrng.choice(kept_eps), qrng.randrange(t_lo, t_hi)) for _ in range(min(args.queries, 2_000))
    ]

    # the answers the pure function gives, to check the store against
    expected = [L.state_at(kept[ep], ep, t) for ep, t in anchor_queries]
    per_ep = args.events / args.endpoints
    ok = True
    for b in backends:
        print(f"{b.name}:")
        ep0, tq0 = queries[0]
        print(f"  plan: {plan_text(b, ep0, tq0)}")
        for ep, t in queries[: min(500, len(queries))]:  # warm the pool, caches, statement cache
            SL.state_at(b.store, ep, t)
        wrong = sum(
            SL.state_at(b.store, ep, t) != want
            for (ep, t), want in zip(anchor_queries, expected, strict=True)
        )
        # interleaved, so the goal and its anchors see the same noise
        samples: list[float] = []
        pure: list[float] = []
        floor: list[float] = []
        pc = time.perf_counter_ns
        with Floor(b) as run_floor:
            for i, (ep, t) in enumerate(queries):
                t0 = pc()
                SL.state_at(b.store, ep, t)
                samples.append(pc() - t0)
                floor.append(run_floor(ep, t))
                if i < len(anchor_queries):
                    aep, at = anchor_queries[i]
                    evs = kept[aep]
                    t0 = pc()
                    L.state_at(evs, aep, at)
                    pure.append(pc() - t0)
        scans = [full_scan_ns(b, ep, t) for ep, t in queries[: max(0, args.scan_queries)]]
        p50, p99 = pct(samples, 50), pct(samples, 99)
        a50, a99 = pct(pure, 50), pct(pure, 99)
        f50, f99 = pct(floor, 50), pct(floor, 99)
        met = p99 <= GOAL_P99_MS * 1e6
        ok = ok and met and wrong == 0
        print(
            f"  state_at ({len(samples):,} queries): p50 {ms(p50)}, p99 {ms(p99)}, "
            f"max {ms(max(samples))}  -> goal {'MET' if met else 'NOT MET'}"
        )
        print(
            f"  anchor, pure state_at over one endpoint's ~{per_ep:,.0f} events in memory "
            f"({len(pure):,} queries): p50 {ms(a50)}, p99 {ms(a99)}; "
            f"ratio store/pure {p50 / a50:.2f}x at p50, {p99 / a99:.2f}x at p99; "
            f"answers differing from the pure function: {wrong}"
        )
        print(
            f"  floor, the same SQL on a held DB-API connection: p50 {ms(f50)}, p99 {ms(f99)}; "
            f"state_at is {p50 / f50:.1f}x that at p50"
        )
        if scans:
            scan_med = statistics.median(scans)
            print(
                f"  anchor, the same query scanning the whole table ({len(scans)} queries): "
                f"median {ms(scan_med)}; the index answers {scan_med / p50:,.0f}x faster at p50"
            )
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    return 0 if ok else 2


if __name__ == "__main__":
    sys.exit(main())
