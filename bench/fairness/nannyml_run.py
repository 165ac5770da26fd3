"""NannyML's CBPE on the benchmark's data; run by bench.py inside NannyML's own venv.

Usage: python nannyml_run.py DATA_DIR OUT.json
Reads reference.parquet and analysis.parquet (binary) and reference_mc.parquet /
analysis_mc.parquet (multiclass) from DATA_DIR, writes the estimates per chunk and
the time of fit and estimate.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings

import pandas as pd

warnings.filterwarnings("ignore")
# NannyML sends usage statistics unless told not to; this must be set before the import
os.environ["NML_DISABLE_USAGE_LOGGING"] = "1"

import nannyml as nml  # noqa: E402

METRICS = ["accuracy", "precision", "recall", "f1", "roc_auc"]


def run(ref: pd.DataFrame, ana: pd.DataFrame, chunk: int, multiclass: bool) -> dict[str, object]:
    if multiclass:
        classes = sorted(c for c in ref.columns if c.startswith("p_"))
        proba: object = {c[2:]: c for c in classes}
        kind = "classification_multiclass"
    else:
        proba, kind = "p", "classification_binary"
    est = nml.CBPE(
        y_pred_proba=proba,
        y_pred="y_pred",
        y_true="y",
        problem_type=kind,
        metrics=METRICS,
        chunk_size=chunk,
    )
    t0 = time.perf_counter()
    est.fit(ref)
    t1 = time.perf_counter()
    res = est.estimate(ana.drop(columns=["y"]))
    t2 = time.perf_counter()
    df = res.filter(period="analysis").to_df()
    windows = []
    for i in range(len(df)):
        windows.append({m: float(df[(m, "value")].iloc[i]) for m in METRICS})
    return {"fit_s": t1 - t0, "estimate_s": t2 - t1, "windows": windows}


def main() -> None:
    data, out = sys.argv[1], sys.argv[2]
    chunk = int(sys.argv[3])
    result = {"nannyml": nml.__version__}
    for name, mc in (("binary", False), ("multiclass", True)):
        suffix = "_mc" if mc else ""
        ref = pd.read_parquet(f"{data}/reference{suffix}.parquet")
        ana = pd.read_parquet(f"{data}/analysis{suffix}.parquet")
        if mc:
            for frame in (ref, ana):
                frame["y"] = frame["y"].astype(str)
                frame["y_pred"] = frame["y_pred"].astype(str)
        result[name] = run(ref, ana, chunk, mc)
    with open(out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
