"""Goal: point-in-time training sets, 1M label rows x 3 feature tables of 2M rows each.

chronoml's ``build_training_set`` must be no slower than DuckDB's own ASOF join on the same
files, at least 10x faster than Feast's ``get_historical_features`` with its file offline
store, use less memory than either, and drop no label row.

Contenders, each run in its own fresh process (so its peak RSS is its own), interleaved
run by run, on the same Parquet files:
- ``chronoml``: ``build_training_set(labels_path, spec)``, 30-day TTL on each table;
- ``duckdb``: the floor, one hand-written query with three ``ASOF LEFT JOIN`` and the
  TTL as ``CASE`` expressions, fetched as a pandas DataFrame (no tie-break, no order);
- ``chronoml+created``: the same join also honouring the ``created`` column (a value
  recorded after the label's time is never used); reported, not a goal;
- ``feast-file`` and ``feast-duckdb``: Feast's ``get_historical_features(...).to_df()``
  with its file (Dask) and DuckDB offline stores, in a venv of their own created here.

Data (seeded): ``rows / 10`` entities, 20 rows per entity per table spread over a year
(2% of them repeat the previous row's time, 1% recorded days late), 5 float features per
table; labels over the same year plus 10 days before it, 2% of them for entities no table
knows, 5% at exactly a feature row's time, 1% exact duplicates of another label row.

    .venv/bin/python bench/pit/bench.py                 # goal size: 5 runs, Feast's file store once (~12 min)
    .venv/bin/python bench/pit/bench.py --rows 100000 --runs 1
    .venv/bin/python bench/pit/bench.py --skip-feast    # only chronoml and DuckDB
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
WORK = ROOT / "bench" / ".work" / "pit"
FEAST_VENV = ROOT / "bench" / ".work" / "feast-venv"
FEAST_REQ = ["feast[duckdb]==0.67.0"]
TABLES = 3
FEATURES = 5
PER_ENTITY = 20
TTL_DAYS = 30
US = 1_000_000
T0 = 1_735_689_600 * US  # 2025-01-01T00:00:00Z
DAY = 86_400 * US


# --- data ------------------------------------------------------------------------------


def generate(rows: int, out: Path, seed: int) -> None:
    """Write labels.parquet and features_{i}.parquet for ``rows`` label rows."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    meta = out / "meta.json"
    want = {"rows": rows, "seed": seed, "version": 1}
    if meta.exists() and json.loads(meta.read_text()) == want:
        return
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    n_ent = max(1, rows // 10)
    first_t = first_e = None
    for ti in range(TABLES):
        n = n_ent * PER_ENTITY
        ent = np.repeat(np.arange(n_ent, dtype=np.int64), PER_ENTITY)
        t = T0 + rng.integers(0, 365 * 86_400, size=n) * US
        t = np.sort(t.reshape(n_ent, PER_ENTITY), axis=1).reshape(-1)
        dup = rng.random(n) < 0.02
        dup[::PER_ENTITY] = False
        idx = np.nonzero(dup)[0]
        t[idx] = t[idx - 1]
        created = t + rng.integers(0, 3600, size=n) * US
        late = rng.random(n) < 0.01
        created[late] += rng.integers(1, 10, size=int(late.sum())) * DAY
        cols: dict[str, Any] = {
            "entity_id": ent,
            "event_timestamp": pa.array(t, pa.timestamp("us")),
            "created": pa.array(created, pa.timestamp("us")),
        }
        for j in range(FEATURES):
            cols[f"t{ti}_f{j}"] = rng.standard_normal(n)
        pq.write_table(pa.table(cols), out / f"features_{ti}.parquet")
        if ti == 0:
            first_t, first_e = t, ent
    assert first_t is not None and first_e is not None
    ent = rng.integers(0, int(n_ent * 1.02) + 1, size=rows)
    t = T0 - 10 * DAY + rng.integers(0, 385 * 86_400, size=rows) * US
    exact = rng.random(rows) < 0.05
    pick = rng.integers(0, len(first_t), size=int(exact.sum()))
    ent[exact], t[exact] = first_e[pick], first_t[pick]
    dups = np.nonzero(rng.random(rows) < 0.01)[0]
    src = rng.integers(0, rows, size=len(dups))
    ent[dups], t[dups] = ent[src], t[src]
    labels = {
        "entity_id": ent,
        "event_timestamp": pa.array(t, pa.timestamp("us")),
        "label": rng.integers(0, 2, size=rows),
    }
    pq.write_table(pa.table(labels), out / "labels.parquet")
    meta.write_text(json.dumps(want))


# --- the contenders (each runs in its own process) --------------------------------------


def _columns() -> list[str]:
    return [f"t{i}_f{j}" for i in range(TABLES) for j in range(FEATURES)]


def run_chronoml(data: Path, created: bool) -> Any:
    from chronoml.datasets import FeatureSpec, JoinSpec, build_training_set

    spec = JoinSpec(
        "entity_id",
        "event_timestamp",
        tuple(
            FeatureSpec(
                f"t{i}",
                data / f"features_{i}.parquet",
                ttl=TTL_DAYS * DAY,
                created_at="created" if created else None,
                columns=tuple(f"t{i}_f{j}" for j in range(FEATURES)),
            )
            for i in range(TABLES)
        ),
    )
    return build_training_set(data / "labels.parquet", spec).frame


def run_duckdb(data: Path) -> Any:
    import duckdb

    con = duckdb.connect()
    sel = ", ".join(
        f"CASE WHEN f{i}.event_timestamp >= l.event_timestamp - INTERVAL {TTL_DAYS} DAY "
        f"THEN f{i}.t{i}_f{j} END AS t{i}_f{j}"
        for i in range(TABLES)
        for j in range(FEATURES)
    )
    joins = " ".join(
        f"ASOF LEFT JOIN read_parquet('{data}/features_{i}.parquet') f{i} "
        f"ON l.entity_id = f{i}.entity_id AND l.event_timestamp >= f{i}.event_timestamp"
        for i in range(TABLES)
    )
    sql = f"SELECT l.*, {sel} FROM read_parquet('{data}/labels.parquet') l {joins}"
    return con.sql(sql).df()


def run_feast(data: Path, store_kind: str) -> Any:
    from datetime import timedelta

    import pandas as pd
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
    from feast.types import Float64

    repo = data / f"feast-{store_kind}"
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir()
    (repo / "feature_store.yaml").write_text(
        "project: pitbench\n"
        f"registry: {repo}/registry.db\n"
        "provider: local\n"
        f"online_store:\n  type: sqlite\n  path: {repo}/online.db\n"
        f"offline_store:\n  type: {store_kind}\n"
        "entity_key_serialization_version: 3\n"
    )
    store = FeatureStore(repo_path=str(repo))
    entity = Entity(name="entity", join_keys=["entity_id"], value_type=ValueType.INT64)
    views = [
        FeatureView(
            name=f"t{i}",
            entities=[entity],
            ttl=timedelta(days=TTL_DAYS),
            schema=[Field(name=f"t{i}_f{j}", dtype=Float64) for j in range(FEATURES)],
            source=FileSource(
                name=f"t{i}_source",
                path=str(data / f"features_{i}.parquet"),
                timestamp_field="event_timestamp",
            ),
            online=False,
        )
        for i in range(TABLES)
    ]
    store.apply([entity, *views])
    started = time.perf_counter()
    labels = pd.read_parquet(data / "labels.parquet")
    refs = [f"t{i}:t{i}_f{j}" for i in range(TABLES) for j in range(FEATURES)]
    frame = store.get_historical_features(entity_df=labels, features=refs).to_df()
    return frame, started


def worker(name: str, data: Path) -> None:
    """Run one contender once and print one JSON line about it."""
    import pyarrow.parquet as pq

    label_rows = pq.read_metadata(data / "labels.parquet").num_rows
    # Imports are not timed (Feast's registry set-up is not either, see run_feast).
    if name.startswith("chronoml"):
        import chronoml.datasets  # noqa: F401
    elif name == "duckdb":
        import duckdb  # noqa: F401
        import pandas  # noqa: F401
    started = time.perf_counter()
    if name == "chronoml":
        frame = run_chronoml(data, created=False)
    elif name == "chronoml+created":
        frame = run_chronoml(data, created=True)
    elif name == "duckdb":
        frame = run_duckdb(data)
    elif name in ("feast-file", "feast-duckdb"):
        # Registry set-up is not timed: only reading labels and the historical retrieval.
        frame, started = run_feast(data, name.split("-", 1)[1])
    else:
        raise SystemExit(f"unknown contender {name}")
    seconds = time.perf_counter() - started
    nulls = [int(frame[c].isna().sum()) for c in _columns() if c in frame.columns]
    result = {
        "name": name,
        "seconds": seconds,
        "label_rows": label_rows,
        "rows": len(frame),
        "dropped": label_rows - len(frame),
        "null_cells": sum(nulls),
        "missing_columns": [c for c in _columns() if c not in frame.columns],
        "maxrss_self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(json.dumps(result), flush=True)


# --- the driver ----------------------------------------------------------------------


def ensure_feast_venv() -> Path:
    """Feast in a venv of its own; created on first use."""
    python = FEAST_VENV / "bin" / "python"
    if not python.exists():
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(FEAST_VENV)], check=True)
    check = subprocess.run([str(python), "-c", "import feast, ibis, duckdb"], capture_output=True)
    if check.returncode != 0:
        subprocess.run([str(python), "-m", "pip", "install", "-q", *FEAST_REQ], check=True)
    return python


def run_one(python: str, name: str, data: Path, env: dict[str, str]) -> dict[str, Any]:
    out_path = data / f".{name}.out"
    err_path = data / f".{name}.err"
    with out_path.open("w") as out, err_path.open("w") as err:
        proc = subprocess.Popen(
            [python, str(Path(__file__)), "--worker", name, "--work", str(data)],
            stdout=out,
            stderr=err,
            env=env,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = err_path.read_text()[-2000:]
        return {"name": name, "error": f"exit {proc.returncode}: {tail}"}
    lines = [ln for ln in out_path.read_text().splitlines() if ln.startswith("{")]
    result: dict[str, Any] = json.loads(lines[-1])
    result["maxrss_mb"] = usage.ru_maxrss / 1024  # Linux reports KiB
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="label rows (features: 2x)")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument(
        "--feast-runs", type=int, default=1, help="runs of Feast's file store (minutes each)"
    )
    p.add_argument("--seed", type=int, default=12)
    p.add_argument("--work", type=Path, default=None)
    p.add_argument("--skip-feast", action="store_true")
    p.add_argument("--only", default="", help="comma-separated contenders")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args.worker, args.work)
        return 0

    data = (args.work or WORK).resolve()
    t = time.perf_counter()
    generate(args.rows, data, args.seed)
    print(
        f"data: {args.rows:,} labels, {TABLES} x {args.rows * 2:,} feature rows in {data} "
        f"({time.perf_counter() - t:.1f} s)"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    env["FEAST_USAGE"] = "False"  # no telemetry
    contenders: list[tuple[str, str]] = [
        ("chronoml", sys.executable),
        ("duckdb", sys.executable),
        ("chronoml+created", sys.executable),
    ]
    if not args.skip_feast:
        feast_python = str(ensure_feast_venv())
        contenders += [("feast-file", feast_python), ("feast-duckdb", feast_python)]
    if args.only:
        keep = set(args.only.split(","))
        contenders = [c for c in contenders if c[0] in keep]

    results: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in contenders}
    for run in range(args.runs):
        for name, python in contenders:
            if name == "feast-file" and run >= args.feast_runs:
                continue
            r = run_one(python, name, data, env)
            results[name].append(r)
            if "error" in r:
                print(f"run {run + 1} {name}: FAILED {r['error']}")
            else:
                print(
                    f"run {run + 1} {name:17s} {r['seconds']:7.2f} s  "
                    f"{r['maxrss_mb']:7.0f} MB  dropped {r['dropped']:,}  nulls {r['null_cells']:,}"
                )
    return report(results)


def report(results: dict[str, list[dict[str, Any]]]) -> int:
    summary: dict[str, dict[str, Any]] = {}
    print(
        f"\n{'contender':18s} {'median s':>9s} {'peak RSS MB':>12s} {'rows out':>10s} "
        f"{'dropped':>9s} {'null cells':>11s}"
    )
    for name, runs in results.items():
        ok = [r for r in runs if "error" not in r]
        if not ok:
            print(f"{name:18s} failed: {runs[0]['error'][:300]}")
            continue
        s = {
            "seconds": statistics.median(r["seconds"] for r in ok),
            "rss": statistics.median(r["maxrss_mb"] for r in ok),
            "rows": ok[0]["rows"],
            "dropped": ok[0]["dropped"],
            "nulls": ok[0]["null_cells"],
            "label_rows": ok[0]["label_rows"],
        }
        summary[name] = s
        print(
            f"{name:18s} {s['seconds']:9.2f} {s['rss']:12.0f} {s['rows']:10,} "
            f"{s['dropped']:9,} {s['nulls']:11,}"
        )
    goals: list[tuple[str, bool]] = []
    me = summary.get("chronoml")
    if me is None:
        return 1
    goals.append(("0 label rows dropped", me["dropped"] == 0))
    if "duckdb" in summary:
        d = summary["duckdb"]
        print(
            f"\nchronoml / duckdb time: {me['seconds'] / d['seconds']:.2f}x, "
            f"RSS {me['rss'] / d['rss']:.2f}x"
        )
        goals.append(("no slower than DuckDB's ASOF join", me["seconds"] <= d["seconds"]))
        goals.append(("less memory than DuckDB's ASOF join", me["rss"] < d["rss"]))
    for name in ("feast-file", "feast-duckdb"):
        if name in summary:
            f = summary[name]
            print(
                f"{name} / chronoml time: {f['seconds'] / me['seconds']:.1f}x, "
                f"RSS {f['rss'] / me['rss']:.1f}x, dropped {f['dropped']:,} "
                f"({100 * f['dropped'] / max(1, f['label_rows']):.1f}%)"
            )
            goals.append((f"less memory than {name}", me["rss"] < f["rss"]))
    if "feast-file" in summary:
        ratio = summary["feast-file"]["seconds"] / me["seconds"]
        goals.append(("at least 10x faster than Feast's file store", ratio >= 10))
    print()
    for text, met in goals:
        print(f"{'met ' if met else 'MISSED'} {text}")
    return 0 if all(met for _, met in goals) else 2


if __name__ == "__main__":
    sys.exit(main())
