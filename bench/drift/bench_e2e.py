"""End to end: chronoml's drift report over N decisions read from its own log.

The monitoring goal: over 1,000,000 logged decisions, the report (read the
window from the decision log, compare it with the stored reference profile)
takes <= 3 s, at least 50x faster than Evidently's in-memory DataDriftPreset,
with less peak memory, and the same verdicts on every feature.

The data are bench_drift.py's (25 features: 20 numeric, 5 categorical; drift
in 5 numeric and 1 categorical). The current side is written to a fresh
SQLite store as decisions through the gateway's own encoding. Then one child
process times the report against the store. Another child, in Evidently's
venv, times DataDriftPreset on the same frames in memory. Each child's peak
RSS is its own.

    .venv/bin/python bench/drift/bench_e2e.py                 # 1M rows per side
    .venv/bin/python bench/drift/bench_e2e.py --rows 100000 --runs 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1] / "src"))

import bench_drift as bd  # noqa: E402

ENDPOINT = "bench"
DIGEST = "sha256:" + "0" * 64


def populate(home: Path, ref_path: Path, cur_path: Path) -> tuple[float, float]:
    """Store the reference profile, log the current frame as decisions, compact them.

    Returns the logging time and the compaction time (the server compacts
    settled history at every monitoring pass, off the request path).
    """
    from chronoml.domain import codec
    from chronoml.domain.ledger import ModelRef  # noqa: F401 - documents what DIGEST stands for
    from chronoml.domain.profiling import build_profile
    from chronoml.ids import new_id
    from chronoml.store import Store
    from chronoml.store import decisions as D

    store = Store.open(f"sqlite:///{home / 'chronoml.db'}", home)
    store.upgrade()
    ref = pd.read_parquet(ref_path)
    store.put_profile(DIGEST, "bench-model", "1", "sha256:bench", build_profile(ref).to_bytes())
    cur = pd.read_parquet(cur_path)
    schema = codec.schema_from_frame(cur)
    layout = codec.layout_id(schema)
    D.Layouts(store).ensure(layout, schema)
    t0 = time.perf_counter()
    chunk = 50_000
    for start in range(0, len(cur), chunk):
        part = cur.iloc[start : start + chunk]
        nums, txts = codec.encode(part, schema)
        rows = [
            D.DecisionRow(
                new_id(),
                start + i,
                ENDPOINT,
                "a",
                "bench-model",
                "1",
                1,
                False,
                None,
                "r",
                layout,
                nums[i],
                txts[i],
                "0",
                None,
                1.0,
            )
            for i in range(len(part))
        ]
        D.insert_many(store, rows)
    elapsed = time.perf_counter() - t0
    from chronoml.store import blocks

    t0 = time.perf_counter()
    blocks.compact(store, upto=len(cur) + 1)
    compact_s = time.perf_counter() - t0
    store.close()
    return elapsed, compact_s


def run_report(home: str, rows: int, runs: int) -> dict[str, Any]:
    """Child: time the whole report (window read + statistics) against the store."""
    from chronoml.domain.ledger import ModelRef
    from chronoml.monitor.reports import drift
    from chronoml.store import Store
    from chronoml.store import decisions as D

    store = Store.open(f"sqlite:///{Path(home) / 'chronoml.db'}", Path(home))
    layouts = D.Layouts(store)
    ref = ModelRef("bench-model", "1", None, DIGEST)
    times, cpu = [], []
    report: dict[str, Any] = {}
    for _ in range(runs):
        t, c = time.perf_counter(), time.process_time()
        report = drift(store, layouts, ENDPOINT, 0, rows + 1, {("a", "1"): ref})
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    # time the read alone once, to say where the time goes
    t = time.perf_counter()
    D.window(store, layouts, ENDPOINT, 0, rows + 1)
    read_s = time.perf_counter() - t
    v = report["variants"][0]
    return {
        "times": times,
        "cpu": cpu,
        "read_s": read_s,
        "rows": v["rows"],
        "peak_rss_mib": bd.peak_rss_mib(),
        "features": {f["feature"]: f for f in v["features"]},
        "drifted_share": v["drifted_share"],
        "dataset_drift": v["dataset_drift"],
    }


def child(python: Path | str, args: list[str]) -> dict[str, Any]:
    out = subprocess.run([str(python), *args], check=True, capture_output=True, text=True).stdout
    parsed: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return parsed


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--evidently-runs", type=int, default=1)
    ap.add_argument(
        "--child-report", nargs=3, metavar=("HOME", "ROWS", "RUNS"), help=argparse.SUPPRESS
    )
    args = ap.parse_args()
    if args.child_report:
        home, rows, runs = args.child_report
        print(json.dumps(run_report(home, int(rows), int(runs)), default=float))
        return

    n = args.rows
    ref_path, cur_path = bd.data_paths(n)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        populate_s, compact_s = populate(home, ref_path, cur_path)
        ours = child(
            sys.executable, [__file__, "--child-report", str(home), str(n), str(args.runs)]
        )
    bd.ensure_evidently()
    theirs = child(
        bd.EVIDENTLY_PY,
        [
            str(HERE / "bench_drift.py"),
            "--child",
            "evidently",
            "--runs",
            str(args.evidently_runs),
            "--ref",
            str(ref_path),
            "--cur",
            str(cur_path),
        ],
    )
    ours_med = statistics.median(ours["times"])
    ev_med = statistics.median(theirs["times"])
    print(
        f"rows per side: {n:,}  (decisions logged in {populate_s:.1f} s, {n / populate_s:,.0f} rows/s;"
        f" compacted into columnar blocks once, off the request path, in {compact_s:.1f} s)"
    )
    print(
        f"chronoml, read from the decision log + report: median {ours_med:.2f} s "
        f"(runs {', '.join(f'{t:.2f}' for t in ours['times'])}; window read alone {ours['read_s']:.2f} s; "
        f"CPU {statistics.median(ours['cpu']):.2f} s), peak RSS {ours['peak_rss_mib']:.0f} MiB"
    )
    print(
        f"Evidently 0.7.23 DataDriftPreset, in memory: median {ev_med:.2f} s "
        f"(+{theirs['import_s']:.1f} s import), peak RSS {theirs['peak_rss_mib']:.0f} MiB"
    )
    print(
        f"ratio Evidently / chronoml: {ev_med / ours_med:.1f}x time, "
        f"{theirs['peak_rss_mib'] / ours['peak_rss_mib']:.2f}x memory"
    )
    diffs = []
    for name, e in theirs["features"].items():
        o = ours["features"].get(name)
        if o is None:
            diffs.append(f"{name}: missing in chronoml's report")
        elif o["drifted"] != e.get("drifted") or o["method"] != e["method"]:
            diffs.append(
                f"{name}: evidently {e['method']} {e['statistic']:.4g} drifted={e.get('drifted')}, "
                f"chronoml {o['method']} {o['statistic']:.4g} drifted={o['drifted']}"
            )
    if ours["dataset_drift"] != theirs["dataset_drift"]:
        diffs.append(
            f"dataset drift: evidently {theirs['dataset_drift']}, chronoml {ours['dataset_drift']}"
        )
    print(
        "verdicts: identical on every feature"
        if not diffs
        else "verdicts that differ:\n  " + "\n  ".join(diffs)
    )
    _ = np  # numpy is imported for the children's pickling of arrays


if __name__ == "__main__":
    main()
