"""Group metrics and CBPE over 1M decisions, and CBPE against NannyML 0.13's.

Goals: group metrics of 1M labelled decisions in at most 2 s; CBPE (fit on the
reference, estimate 1M decisions in windows) in at most 2 s; the same
estimates as NannyML's CBPE within 0.01.

Data (generated, seeded): binary scores ``s`` uniform in [0, 1] with a known
miscalibration, ``P(y = 1 | s) = s ** 2``, so calibration is needed and its
truth is known; multiclass, 3 classes, labels drawn from a softmax of normal
logits and scores from a softmax of 0.6 x the logits (an under-confident
model). Reference 100k rows with labels; analysis 1M rows in ten windows of
100k. Group metrics: four groups, a model that favours one.

NannyML pins old libraries, so it runs in its own venv
(``bench/.work/nannyml-venv``, created with pip on first use) in a subprocess
that reads the same data from Parquet and writes its estimates to a file.
The anchor for group metrics is fairlearn's ``MetricFrame`` (and its three
disparity functions) on the raw rows, at ``--anchor-rows`` rows (it walks
every row in Python: about 40 s at 1M) and scaled linearly to 1M.

    .venv/bin/python bench/fairness/bench.py
    .venv/bin/python bench/fairness/bench.py --runs 3 --skip-nannyml
"""

from __future__ import annotations

import argparse
import json
import os
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
DATA = WORK / "fairness-data"
VENV = WORK / "nannyml-venv"
VENV_PY = VENV / "bin" / "python"
# statsmodels is imported by NannyML 0.13.1 but not declared as a dependency
REQS = ["nannyml==0.13.1", "pandas<3", "statsmodels"]
ROWS, REF_ROWS, WINDOW = 1_000_000, 100_000, 100_000
METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")
GOAL_S, GOAL_DIFF = 2.0, 0.01


def binary(n: int, rng: np.random.Generator) -> pd.DataFrame:
    s = rng.random(n)
    y = (rng.random(n) < s**2).astype(int)
    return pd.DataFrame({"p": s, "y_pred": (s >= 0.5).astype(int), "y": y})


def multiclass(n: int, rng: np.random.Generator) -> pd.DataFrame:
    logits = rng.normal(size=(n, 3)) * 2
    truth = np.exp(logits)
    truth /= truth.sum(axis=1, keepdims=True)
    y = (truth.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    score = np.exp(0.6 * logits)
    score /= score.sum(axis=1, keepdims=True)
    df = pd.DataFrame({f"p_{k}": score[:, k] for k in range(3)})
    df["y_pred"] = score.argmax(axis=1)
    df["y"] = y
    return df


def write_data() -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(20261201)
    frames = {
        "reference": binary(REF_ROWS, rng),
        "analysis": binary(ROWS, rng),
        "reference_mc": multiclass(REF_ROWS, rng),
        "analysis_mc": multiclass(ROWS, rng),
    }
    DATA.mkdir(parents=True, exist_ok=True)
    for name, df in frames.items():
        df.to_parquet(DATA / f"{name}.parquet", index=False)
    return frames


def ensure_venv() -> None:
    """Create NannyML's venv when it is missing (NannyML 0.13 needs Python < 3.13)."""
    if VENV_PY.exists():
        return
    if sys.version_info >= (3, 13):
        raise SystemExit("NannyML 0.13 needs Python < 3.13 for its venv")
    print(f"creating {VENV.relative_to(HERE.parent.parent)} (pip install {' '.join(REQS)})")
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(VENV_PY), "-m", "pip", "install", "--quiet", *REQS], check=True)


def run_nannyml() -> dict[str, Any]:
    ensure_venv()
    out = WORK / "nannyml-estimates.json"
    t = time.perf_counter()
    env = {**os.environ, "NML_DISABLE_USAGE_LOGGING": "1"}  # no usage statistics sent
    subprocess.run(
        [str(VENV_PY), str(HERE / "nannyml_run.py"), str(DATA), str(out), str(WINDOW)],
        check=True,
        env=env,
    )
    result: dict[str, Any] = json.loads(out.read_text())
    result["wall_s"] = time.perf_counter() - t
    return result


def ours_cbpe(
    frames: dict[str, pd.DataFrame], mc: bool
) -> tuple[float, float, list[dict[str, float]]]:
    from chronoml.fairness import estimate, fit_calibrator

    ref = frames["reference_mc" if mc else "reference"]
    ana = frames["analysis_mc" if mc else "analysis"]
    cols = [f"p_{k}" for k in range(3)] if mc else ["p"]
    ref_scores = ref[cols].to_numpy() if mc else ref["p"].to_numpy()
    scores = ana[cols].to_numpy() if mc else ana["p"].to_numpy()
    windows = np.arange(len(ana)) // WINDOW
    t = time.perf_counter()
    cal = fit_calibrator(ref_scores, ref["y"].to_numpy())
    t1 = time.perf_counter()
    report = estimate(cal, scores, ana["y_pred"].to_numpy(), windows)
    t2 = time.perf_counter()
    values = [{m: w.estimated[m].value or float("nan") for m in METRICS} for w in report.windows]
    return t1 - t, t2 - t1, values


def group_data(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    group = rng.choice(np.array(["a", "b", "c", "d"]), n, p=[0.4, 0.3, 0.2, 0.1])
    y_true = rng.integers(0, 2, n)
    right = rng.random(n) < np.where(group == "a", 0.85, 0.75)
    return y_true, np.where(right, y_true, 1 - y_true), group


def time_groups(runs: int) -> float:
    from chronoml.fairness import group_report

    y_true, y_pred, group = group_data(ROWS)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        group_report(y_true, y_pred, {"group": group}, attribute="group")
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def time_fairlearn_raw(n: int) -> float:
    from fairlearn.metrics import (
        MetricFrame,
        demographic_parity_difference,
        demographic_parity_ratio,
        equalized_odds_difference,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )
    from sklearn.metrics import accuracy_score

    y_true, y_pred, group = group_data(n)
    t = time.perf_counter()
    MetricFrame(
        metrics={
            "selection_rate": selection_rate,
            "true_positive_rate": true_positive_rate,
            "false_positive_rate": false_positive_rate,
            "accuracy": accuracy_score,
        },
        y_true=y_true,
        y_pred=y_pred,
        sensitive_features=group,
    )
    for f in (demographic_parity_difference, demographic_parity_ratio, equalized_odds_difference):
        f(y_true, y_pred, sensitive_features=group)
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--anchor-rows", type=int, default=100_000)
    ap.add_argument("--skip-nannyml", action="store_true")
    args = ap.parse_args(argv)

    import fairlearn.metrics  # noqa: F401
    import sklearn.isotonic  # noqa: F401

    import chronoml.fairness  # noqa: F401  (imports are not part of the timings)

    frames = write_data()
    missed = False

    g = time_groups(args.runs)
    raw = time_fairlearn_raw(args.anchor_rows) * ROWS / args.anchor_rows
    print(f"group metrics, {ROWS:,} rows, 4 groups: median {g:.3f} s (goal <= {GOAL_S} s)")
    print(
        f"  fairlearn MetricFrame + 3 disparities on raw rows: {raw:.1f} s "
        f"(measured at {args.anchor_rows:,} rows, scaled); ratio {raw / g:.0f}x"
    )
    missed |= g > GOAL_S

    ours: dict[str, list[dict[str, float]]] = {}
    ours_s: dict[str, float] = {}
    for name, mc in (("binary", False), ("multiclass", True)):
        fits, ests = [], []
        for _ in range(args.runs):
            fit_s, est_s, ours[name] = ours_cbpe(frames, mc)
            fits.append(fit_s)
            ests.append(est_s)
        fit, est = statistics.median(fits), statistics.median(ests)
        print(
            f"CBPE {name}: fit on {REF_ROWS:,} rows median {fit:.3f} s (once per reference); "
            f"estimate {ROWS:,} rows in 10 windows median {est:.3f} s (goal <= {GOAL_S} s); "
            f"both {fit + est:.3f} s"
        )
        missed |= est > GOAL_S
        ours_s[name] = fit + est

    if not args.skip_nannyml:
        nm = run_nannyml()
        print(f"NannyML {nm['nannyml']} (own venv, subprocess wall {nm['wall_s']:.1f} s)")
        for name in ("binary", "multiclass"):
            theirs = nm[name]
            t_nm = theirs["fit_s"] + theirs["estimate_s"]
            diffs = {
                m: max(abs(a[m] - b[m]) for a, b in zip(ours[name], theirs["windows"], strict=True))
                for m in METRICS
            }
            worst = max(diffs.values())
            print(
                f"  {name}: NannyML fit {theirs['fit_s']:.2f} s + estimate "
                f"{theirs['estimate_s']:.2f} s = {t_nm:.2f} s; ours (fit + estimate) "
                f"{ours_s[name]:.3f} s; ratio {t_nm / ours_s[name]:.1f}x"
            )
            print(
                "    largest difference of estimates over 10 windows: "
                + ", ".join(f"{m} {d:.4f}" for m, d in diffs.items())
                + f" (max {worst:.2g}, goal <= {GOAL_DIFF})"
            )
            missed |= worst > GOAL_DIFF
    return 2 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
