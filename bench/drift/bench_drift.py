"""chronoml's drift_report against Evidently 0.7.23's DataDriftPreset.

Both tools get the same generated data: 25 features (20 numeric, 5
categorical), drift in 5 numeric features and 1 categorical one, N rows for
the reference and N for the current window. Evidently runs in its own venv
(``bench/.work/evidently-venv``, created on first use: Evidently 0.7.23 does
not import with pandas 3) in a subprocess; chronoml runs in a subprocess of
this venv so that each tool's peak RSS is its own. Each child times its
report in-process (chronoml: ``build_profile`` once, then ``drift_report`` on
numpy arrays) and prints its verdicts; this script compares them.

    .venv/bin/python bench/drift/bench_drift.py                  # 10k, 100k and 1M rows
    .venv/bin/python bench/drift/bench_drift.py --sizes 10000,100000 --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
WORK = HERE.parent / ".work"
EVIDENTLY_VENV = WORK / "evidently-venv"
EVIDENTLY_PY = EVIDENTLY_VENV / "bin" / "python"
EVIDENTLY_REQS = ["evidently==0.7.23", "pandas<3"]

NUMERIC = [f"num_{i:02d}" for i in range(20)]
CATEGORICAL = [f"cat_{i}" for i in range(5)]
DRIFTED = {*NUMERIC[:5], CATEGORICAL[0]}

# Evidently's display names -> chronoml's method names.
EVIDENTLY_METHODS = {
    "Wasserstein distance (normed)": "wasserstein",
    "Jensen-Shannon distance": "jensenshannon",
    "K-S p_value": "ks",
    "chi-square p_value": "chisquare",
    "Z-test p_value": "z",
    "PSI": "psi",
}


def generate(n: int, *, current: bool, seed: int) -> pd.DataFrame:
    """One side of the benchmark data; ``current=True`` applies the drift.

    The numeric features mix shapes (normal, log-normal, uniform, exponential,
    rounded values, an integer column and a column with missing values) so that
    ties, NaN handling and the integer path are exercised; four string
    categoricals and one integer categorical (5 values) make up the rest.
    """
    rng = np.random.default_rng(seed)
    cols: dict[str, Any] = {}
    for i, name in enumerate(NUMERIC):
        shift = 0.0
        scale = 1.0
        if current and name in DRIFTED:
            shift, scale = [(0.5, 1.0), (0.0, 1.6), (0.3, 1.0), (0.8, 1.0), (0.25, 1.3)][i]
        shape = i % 5
        if shape == 0:
            x = rng.normal(10.0 + shift, 2.0 * scale, n)
        elif shape == 1:
            x = np.exp(rng.normal(shift / 2, 0.5 * scale, n))
        elif shape == 2:
            x = rng.uniform(shift, 1.0 + shift, n) * scale
        elif shape == 3:
            x = rng.exponential(1.0 + shift, n)
        else:
            x = np.round(rng.normal(shift, scale, n), 2)
        cols[name] = x
    # An integer feature with many values (numeric by Evidently's rule) ...
    cols[NUMERIC[18]] = rng.integers(18, 90, n)
    # ... and one with 1% missing values.
    nums = rng.normal(0.0, 1.0, n)
    nums[rng.random(n) < 0.01] = np.nan
    cols[NUMERIC[19]] = nums
    for j, name in enumerate(CATEGORICAL):
        k = 3 + j
        p = np.linspace(1.0, 2.0, k)
        if current and name in DRIFTED:
            p = p[::-1] ** 2
        p = p / p.sum()
        labels = np.array([f"{name}_v{v}" for v in range(k)], dtype=object)
        cols[name] = labels[rng.choice(k, size=n, p=p)]
    # An integer categorical (<= 10 distinct values): categorical for both tools.
    cols[CATEGORICAL[4]] = rng.choice(5, size=n, p=[0.1, 0.2, 0.3, 0.25, 0.15]).astype(np.int64)
    return pd.DataFrame(cols)


def data_paths(n: int) -> tuple[Path, Path]:
    """Parquet files of the reference and current frames for size ``n`` (made once)."""
    ref, cur = WORK / f"drift_ref_{n}.parquet", WORK / f"drift_cur_{n}.parquet"
    if not (ref.exists() and cur.exists()):
        WORK.mkdir(parents=True, exist_ok=True)
        generate(n, current=False, seed=1).to_parquet(ref)
        generate(n, current=True, seed=2).to_parquet(cur)
    return ref, cur


def ensure_evidently() -> None:
    """Create the Evidently venv when it is missing."""
    if EVIDENTLY_PY.exists():
        return
    print(f"creating {EVIDENTLY_VENV} ({' '.join(EVIDENTLY_REQS)}) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(EVIDENTLY_VENV)], check=True)
    subprocess.run(
        [str(EVIDENTLY_PY), "-m", "pip", "install", "--quiet", *EVIDENTLY_REQS], check=True
    )


def peak_rss_mib() -> float:
    """Peak resident set size of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- children ---------------------------------------------------------------------------


def run_evidently(ref_path: str, cur_path: str, runs: int) -> dict[str, Any]:
    """Child side, in the Evidently venv: time DataDriftPreset and return its verdicts."""
    t0 = time.perf_counter()
    from evidently import Report
    from evidently.presets import DataDriftPreset

    import_s = time.perf_counter() - t0
    ref = pd.read_parquet(ref_path)
    cur = pd.read_parquet(cur_path)
    rss_loaded = peak_rss_mib()
    times = []
    snapshot = None
    for _ in range(runs):
        t = time.perf_counter()
        snapshot = Report([DataDriftPreset()], include_tests=True).run(cur, ref)
        times.append(time.perf_counter() - t)
    assert snapshot is not None
    result = snapshot.dict()
    verdicts: dict[str, Any] = {}
    for metric in result["metrics"]:
        config = metric["config"]
        if config["type"].endswith("ValueDrift"):
            verdicts[config["column"]] = {
                "method": EVIDENTLY_METHODS.get(config["method"], config["method"]),
                "statistic": float(metric["value"]),
                "threshold": config["threshold"],
            }
        elif config["type"].endswith("DriftedColumnsCount"):
            share = float(metric["value"]["share"])
    for test in result["tests"]:
        column = test["metric_config"]["params"].get("column")
        if column in verdicts:
            verdicts[column]["drifted"] = test["status"] == "FAIL"
    return {
        "times": times,
        "import_s": import_s,
        "rss_loaded_mib": rss_loaded,
        "peak_rss_mib": peak_rss_mib(),
        "features": verdicts,
        "drifted_share": share,
        "dataset_drift": share >= 0.5,
    }


def run_chronoml(ref_path: str, cur_path: str, runs: int, workers: int) -> dict[str, Any]:
    """Child side, in chronoml's venv: profile once, then time drift_report on numpy arrays."""
    sys.path.insert(0, str(HERE.parents[1] / "src"))
    from chronoml.domain.drift import drift_report
    from chronoml.domain.profiling import build_profile
    from chronoml.worker import parallel

    ref = pd.read_parquet(ref_path)
    cur = pd.read_parquet(cur_path)
    t = time.perf_counter()
    profile = build_profile(ref)
    profile_s = time.perf_counter() - t
    blob = profile.to_bytes()
    arrays = {name: cur[name].to_numpy() for name in cur.columns}
    del cur, ref
    rss_loaded = peak_rss_mib()
    times, cpu = [], []
    report = None
    for _ in range(runs):
        t, c = time.perf_counter(), time.process_time()
        report = drift_report(profile, arrays, map_features=parallel(workers))
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    assert report is not None
    # Equal sizes let the Wasserstein pieces collapse to one kind; a window of
    # 90% of the reference's size shows the general case.
    unequal = {name: values[: len(values) * 9 // 10] for name, values in arrays.items()}
    uneven = []
    for _ in range(runs):
        t = time.perf_counter()
        drift_report(profile, unequal, map_features=parallel(workers))
        uneven.append(time.perf_counter() - t)
    return {
        "times": times,
        "cpu": cpu,
        "times_unequal": uneven,
        "profile_s": profile_s,
        "profile_bytes": len(blob),
        "rss_loaded_mib": rss_loaded,
        "peak_rss_mib": peak_rss_mib(),
        "features": {
            f.feature: {
                "method": f.method,
                "statistic": f.statistic,
                "threshold": f.threshold,
                "drifted": f.drifted,
                "note": f.note,
            }
            for f in report.features
        },
        "drifted_share": report.drifted_share,
        "dataset_drift": report.dataset_drift,
    }


# -- driver -----------------------------------------------------------------------------


def child(python: Path | str, args: list[str]) -> dict[str, Any]:
    out = subprocess.run(
        [str(python), __file__, *args], check=True, capture_output=True, text=True
    ).stdout
    parsed: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return parsed


def compare(n: int, ours: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    """Lines describing every verdict (or method) that differs."""
    lines = []
    for name, e in theirs["features"].items():
        c = ours["features"].get(name)
        if c is None:
            lines.append(f"  {name}: missing from chronoml's report")
            continue
        if c["method"] != e["method"] or c["drifted"] != e["drifted"]:
            lines.append(
                f"  {name}: chronoml {c['method']} {c['statistic']:.6g} drifted={c['drifted']}"
                f" | Evidently {e['method']} {e['statistic']:.6g} drifted={e['drifted']}"
                + (f"  [{c['note']}]" if c.get("note") else "")
            )
    if ours["dataset_drift"] != theirs["dataset_drift"]:
        lines.append(
            f"  dataset drift: chronoml {ours['dataset_drift']} ({ours['drifted_share']:.3f})"
            f" | Evidently {theirs['dataset_drift']} ({theirs['drifted_share']:.3f})"
        )
    return lines


def max_stat_gap(ours: dict[str, Any], theirs: dict[str, Any]) -> float:
    gaps = [
        abs(ours["features"][k]["statistic"] - v["statistic"])
        for k, v in theirs["features"].items()
        if k in ours["features"] and ours["features"][k]["statistic"] is not None
    ]
    return max(gaps) if gaps else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="rows per side, comma list")
    parser.add_argument("--runs", type=int, default=3, help="report runs per size (median shown)")
    parser.add_argument(
        "--evidently-runs-1m", type=int, default=1, help="Evidently runs at >= 1M rows (slow)"
    )
    parser.add_argument("--workers", type=int, default=1, help="chronoml drift_report threads")
    parser.add_argument("--skip-evidently", action="store_true", help="time chronoml only")
    parser.add_argument("--child", choices=["evidently", "chronoml"], help=argparse.SUPPRESS)
    parser.add_argument("--ref", help=argparse.SUPPRESS)
    parser.add_argument("--cur", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child == "evidently":
        print(json.dumps(run_evidently(args.ref, args.cur, args.runs)))
        return
    if args.child == "chronoml":
        print(json.dumps(run_chronoml(args.ref, args.cur, args.runs, args.workers)))
        return

    if not args.skip_evidently:
        ensure_evidently()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, workers={args.workers}")
    for n in [int(s) for s in args.sizes.split(",")]:
        ref, cur = data_paths(n)
        common = ["--ref", str(ref), "--cur", str(cur)]
        ours = child(
            sys.executable,
            [
                "--child",
                "chronoml",
                "--runs",
                str(max(args.runs, 3)),
                "--workers",
                str(args.workers),
                *common,
            ],
        )
        c_med = statistics.median(ours["times"])
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"\n== {n:,} rows per side, 25 features (load average {load})")
        print(
            f"chronoml  drift_report median {c_med:.3f} s (runs {', '.join(f'{t:.3f}' for t in ours['times'])};"
            f" cpu median {statistics.median(ours['cpu']):.3f} s), peak RSS {ours['peak_rss_mib']:.0f} MiB"
            f" (data loaded {ours['rss_loaded_mib']:.0f}); build_profile {ours['profile_s']:.2f} s,"
            f" profile {ours['profile_bytes'] / 2**20:.1f} MiB as bytes"
        )
        print(
            f"          window of 0.9 x the rows: median"
            f" {statistics.median(ours['times_unequal']):.3f} s;"
            f" drifted {sum(f['drifted'] for f in ours['features'].values())}/25,"
            f" dataset_drift={ours['dataset_drift']}"
        )
        if args.skip_evidently:
            continue
        runs = args.evidently_runs_1m if n >= 1_000_000 else args.runs
        theirs = child(EVIDENTLY_PY, ["--child", "evidently", "--runs", str(runs), *common])
        e_med = statistics.median(theirs["times"])
        print(
            f"Evidently report median {e_med:.3f} s (runs {', '.join(f'{t:.2f}' for t in theirs['times'])};"
            f" import {theirs['import_s']:.1f} s), peak RSS {theirs['peak_rss_mib']:.0f} MiB"
            f" (data loaded {theirs['rss_loaded_mib']:.0f})"
        )
        print(
            f"          drifted {sum(f['drifted'] for f in theirs['features'].values())}/25,"
            f" dataset_drift={theirs['dataset_drift']}"
        )
        print(f"ratio     Evidently / chronoml = {e_med / c_med:.0f}x")
        print(f"max |statistic difference| = {max_stat_gap(ours, theirs):.3g}")
        diffs = compare(n, ours, theirs)
        print("differing verdicts: " + ("none" if not diffs else ""))
        for line in diffs:
            print(line)


if __name__ == "__main__":
    main()
