"""Reads of archived decisions that the UI, feedback and replay make, and the window lock.

N decisions (30 float inputs, as `bench.py` logs them) are archived into files of
--file-rows decisions; then, medians of --runs:

- labels for --labels archived decisions, spread over every file (`feedback.record`,
  which looks each decision up to check the label against its output);
- the same decisions read back by id (`decision_reads.batches(ids=...)`, as a replay
  of a sample does);
- the UI's served read (time, latency, version) over the whole archived window, and how
  many decisions it found;
- one window lock taken and released (SQLite: the lock file and the gate).

    .venv/bin/python bench/archive/reads.py [--rows 200000] [--labels 500] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from bench import ENDPOINT, T0, populate

from chronoml.domain.archive import parse_target
from chronoml.domain.feedback import Label
from chronoml.store import Store, window_lock
from chronoml.store import archive as SA
from chronoml.store import decision_reads as DR
from chronoml.store import decisions as D
from chronoml.store import feedback as FB
from chronoml.store import timeline_reads as TR


def median_s(fn: Callable[[], Any], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--labels", type=int, default=500)
    ap.add_argument("--file-rows", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        store = Store.open(f"sqlite:///{home / 'chronoml.db'}", home)
        store.upgrade()
        populate(store, args.rows)
        layouts = D.Layouts(store)
        ids = [k.id for k in DR.keys(store, ENDPOINT, 0, 2**62, include_shadow=True)]
        target = parse_target(f"file://{home / 'archive'}")
        got = SA.archive(
            store, layouts, T0 + args.rows + 1, target, settle_us=0, file_rows=args.file_rows
        )
        pick = ids[:: max(1, len(ids) // args.labels)][: args.labels]
        out: dict[str, Any] = {"archived": got.rows, "files": got.files, "labels": len(pick)}

        def label() -> None:
            FB.record(store, [Label(i, 1) for i in pick], actor="bench", update=True)

        def by_ids() -> None:
            n = sum(
                len(b.ids)
                for b in DR.batches(store, layouts, ENDPOINT, 0, 0, include_shadow=True, ids=pick)
            )
            assert n == len(pick)

        seen: list[int] = []

        def served() -> None:
            seen.append(len(TR.served(store, ENDPOINT, 0, 2**62).ts))

        def lock() -> None:
            for _ in range(1000):
                with window_lock.reading(store, ENDPOINT):
                    pass

        out["labels for archived decisions, s"] = median_s(label, args.runs)
        out["the same decisions by id, s"] = median_s(by_ids, args.runs)
        out["served over the archived window, s"] = median_s(served, args.runs)
        out["served decisions found"] = seen[-1]
        out["one window lock, us"] = median_s(lock, args.runs) * 1000
        store.close()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
