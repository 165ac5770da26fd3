"""What the sections of the scale benchmark share: the store, the rows, the clock."""

from __future__ import annotations

import os
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import text

from chronoml.domain import codec
from chronoml.ids import new_ids
from chronoml.store import Store, partitions
from chronoml.store import decisions as D

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TICK = os.sysconf("SC_CLK_TCK")
COLS = [f"f{i}" for i in range(30)]
SCHEMA = tuple((c, "float") for c in COLS)


def cpu_of(pid: int) -> float:
    raw = Path(f"/proc/{pid}/stat").read_text()
    f = raw[raw.rindex(")") + 2 :].split()
    return (int(f[11]) + int(f[12])) / TICK


@contextmanager
def schema_store(admin: Any, home: Path) -> Iterator[Store]:
    name = "bench_" + uuid.uuid4().hex[:10]
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {name}"))
    store = Store.open(f"{PG}?options=-csearch_path%3D{name}", home / name)
    try:
        yield store
    finally:
        store.close()
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {name} CASCADE"))


def features(n: int, seed: int = 0) -> np.ndarray[Any, Any]:
    # lazy: scikit-learn only for the benchmark's data
    from sklearn.datasets import make_classification

    x, _ = make_classification(n_samples=n, n_features=30, n_informative=12, random_state=seed)
    return np.asarray(x, dtype=np.float64)


def tuples(x: np.ndarray[Any, Any], layout: str, ts: int) -> list[D.DecisionTuple]:
    ids = new_ids(len(x) + 1)
    packed = codec.pack_rows(x)
    out: list[D.DecisionTuple] = []
    for i in range(len(x)):
        p = float(i % 7) / 7
        sc = np.array([1 - p, p], dtype="<f8").tobytes()
        out.append(
            (ids[i + 1], ts + i, "churn", "a", "churn", "3", 1, False, None, ids[0], layout,
             packed[i], None, str(i % 2), float(i % 2), 1.2, sc, None)
        )  # fmt: skip
    return out


def id_at(decision_id: str, ts_us: int) -> str:
    """The id with its millisecond prefix set to ``ts_us``, so the row lands where it points."""
    h = decision_id.replace("-", "")
    h = f"{ts_us // 1000:012x}" + h[12:]
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def time_lookups(
    stores: list[Store],
    hits: list[list[str]],
    missing: Callable[[str], str],
    queries: int,
    seed: int,
    table: str = partitions.PARENT,
) -> list[dict[str, Any]]:
    """Lookups by id of a stored decision and of ``missing(id)`` (an id that is not
    stored), in each store in turn, ``queries`` rounds: medians in us, by store."""
    t_hit: list[list[float]] = [[] for _ in stores]
    t_miss: list[list[float]] = [[] for _ in stores]
    rng = np.random.default_rng(seed)
    for q in range(queries):
        for j, st in enumerate(stores):
            h = hits[j][int(rng.integers(0, len(hits[j])))]
            m = missing(h)
            with st.lookup() as conn:
                t0 = time.perf_counter()
                found = D.get_in(conn, h)
                t1 = time.perf_counter()
                D.get_in(conn, m)
                t2 = time.perf_counter()
            assert found is not None
            if q >= 20:  # the first queries of a connection warm its caches
                t_hit[j].append(t1 - t0)
                t_miss[j].append(t2 - t1)
    out = []
    for j, st in enumerate(stores):
        with st.read() as conn:
            nparts = len(partitions.partitions(conn, table))
        th = sorted(t_hit[j])
        out.append(
            {
                "partitions": nparts,
                "hit_us": statistics.median(th) * 1e6,
                "hit_p99_us": th[int(0.99 * len(th))] * 1e6,
                "miss_us": statistics.median(t_miss[j]) * 1e6,
            }
        )
    return out
