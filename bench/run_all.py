"""Run the performance goals' scripts in turn at their default (goal) sizes.

``make bench`` calls this. Each script prints its medians and ratios; this
prints a summary at the end. A missed goal is reported, not fatal (the
numbers depend on the machine): the exit code is 1 only when a script fails
to run, or, with ``--strict``, when a goal is missed too.

    .venv/bin/python bench/run_all.py
    .venv/bin/python bench/run_all.py --only asof --strict
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# name -> script; every script exits 0 on success (2: a goal it checks was missed)
PATHS = {
    "asof": "asof.py",
    "decision_lookup": "decision_lookup.py",
    "cli_startup": "cli_startup.py",
    "window_read": "window_read.py",
    "drift": "drift/bench_drift.py",
    "drift_e2e": "drift/bench_e2e.py",
    "serving": "serving/bench.py",
    "explain": "explain/bench_explain.py",
    "ids": "ids.py",
    "scale": "scale/bench.py",
    "replicas": "replicas/bench.py",
    "ui": "ui/bench.py",
}
SCRIPTS = tuple(PATHS)
OUTCOME = {0: "ok", 2: "goal NOT met"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--only", action="append", choices=SCRIPTS, help="run only these (repeatable)")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed")
    args = ap.parse_args(argv)
    summary: list[tuple[str, int, float]] = []
    for name in args.only or SCRIPTS:
        print(f"=== bench/{PATHS[name]}", flush=True)
        t = time.perf_counter()
        code = subprocess.run([sys.executable, str(HERE / PATHS[name])], check=False).returncode
        summary.append((name, code, time.perf_counter() - t))
        print(flush=True)
    print("=== summary")
    for name, code, secs in summary:
        print(f"  {name:<16} {OUTCOME.get(code, f'failed (exit {code})'):<16} {secs:6.0f} s")
    failed = any(code not in OUTCOME for _, code, _ in summary)
    missed = any(code == 2 for _, code, _ in summary)
    return 1 if failed or (args.strict and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
