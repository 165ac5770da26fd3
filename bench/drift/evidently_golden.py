"""Print Evidently 0.7.23's drift values for the deterministic frames of tests/test_drift.py.

Run with the Evidently venv (see bench_drift.py, which creates it):

    bench/.work/evidently-venv/bin/python bench/drift/evidently_golden.py

The output is pasted into ``EVIDENTLY_GOLDEN`` in tests/test_drift.py, so
that the test suite checks chronoml against Evidently without installing it.
The frames use integer arithmetic only, so they are the same everywhere.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd


def golden_frame(n: int, *, current: bool) -> pd.DataFrame:
    """The frame both this script and the tests build (keep the two in step)."""
    i = np.arange(n, dtype=np.int64)
    k = 3 if current else 1
    cats = np.array(["a", "b", "c", "d"], dtype=object)
    return pd.DataFrame(
        {
            "num": ((i * 7919 * k) % 3001) / 100.0,
            "num_shift": ((i * 7919 * k) % 3001) / 100.0 + (2.5 if current else 0.0),
            "few": ((i * k) % 4).astype(np.float64) + (i % 7 == 0) * (1.0 if current else 0.0),
            "bin": ((i * k) % 2 + (i % 5 == 0 if current else 0)).clip(0, 1).astype(np.float64),
            "ints": (i * 37 * k) % 101 + (i % 3 if current else 0),
            "cat": cats[(i * i * k + (i % 3 if current else 0)) % 4],
        }
    )


SCENARIOS: dict[str, dict[str, Any]] = {
    "large": {"ref": 3000, "cur": 2500, "methods": None},
    "small": {"ref": 400, "cur": 600, "methods": None},
    "large_overrides": {
        "ref": 3000,
        "cur": 2500,
        "methods": {
            "num": "psi",
            "num_shift": "ks",
            "few": "psi",
            "ints": "jensenshannon",
            "cat": "psi",
        },
    },
    "small_overrides": {
        "ref": 400,
        "cur": 600,
        "methods": {
            "num": "wasserstein",
            "num_shift": "jensenshannon",
            "ints": "psi",
            "cat": "jensenshannon",
        },
    },
}

NAMES = {
    "Wasserstein distance (normed)": "wasserstein",
    "Jensen-Shannon distance": "jensenshannon",
    "K-S p_value": "ks",
    "chi-square p_value": "chisquare",
    "Z-test p_value": "z",
    "PSI": "psi",
}


def main() -> None:
    from evidently import Report
    from evidently.presets import DataDriftPreset

    out: dict[str, dict[str, list[Any]]] = {}
    for name, sc in SCENARIOS.items():
        ref = golden_frame(sc["ref"], current=False)
        cur = golden_frame(sc["cur"], current=True)
        preset = DataDriftPreset(per_column_method=sc["methods"])
        result = Report([preset], include_tests=True).run(cur, ref).dict()
        cols: dict[str, list[Any]] = {}
        for metric in result["metrics"]:
            config = metric["config"]
            if config["type"].endswith("ValueDrift"):
                method = NAMES.get(config["method"], config["method"])
                cols[config["column"]] = [method, float(metric["value"])]
        for test in result["tests"]:
            column = test["metric_config"]["params"].get("column")
            if column in cols:
                cols[column].append(test["status"] == "FAIL")
        out[name] = cols
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
