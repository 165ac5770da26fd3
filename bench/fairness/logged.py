"""Scores in the serving path, and fairness and CBPE over decisions read from the log.

1. The model thread's added cost of logging class scores: per batch, the
   model's ``predict`` alone against ``predict`` + ``predict_proba`` + packing
   the scores (what the gateway does for a classifier), for batch sizes 1, 64
   and 256, on a logistic regression and a gradient-boosting classifier over
   30 float inputs. Medians of many calls.
2. ``chronoml fairness`` and ``quality --estimate`` end to end over N logged
   decisions with scores, context and labels in a SQLite store: the read of
   the window (the part the core benchmarks in bench.py leave out) and the
   computation. Fairness and CBPE once from the rows, then compacted (as the
   server's compactor does) and from the outcome blocks.

    .venv/bin/python bench/fairness/logged.py [--rows 1000000] [--repeats 3] [--skip-hot]
        [--reuse DIR]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from chronoml.domain import codec
from chronoml.domain.ledger import ModelRef
from chronoml.ids import new_ids
from chronoml.monitor.estimated import estimated_quality
from chronoml.monitor.fairness import fairness
from chronoml.registry.models import LoadedModel, _add_scores, labels_of, matrix_predictor
from chronoml.store import Store, blocks, schema
from chronoml.store import decisions as D
from chronoml.store import outcome_blocks as OB
from chronoml.store import outcomes as O
from chronoml.store import scored_blocks as SB

COLS = [f"f{i}" for i in range(30)]
SCHEMA = tuple((c, "float") for c in COLS)


def _median_us(fn: Any, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def hot_path() -> None:
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(5000, 30))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    print("model thread, per batch (median us): predict alone | predict + predict_proba "
          "| predict_proba alone, labels from the scores")  # fmt: skip
    for est in (LogisticRegression(), GradientBoostingClassifier(n_estimators=50, max_depth=3)):
        raw = est.fit(x, y)
        ref = ModelRef("m", "1", "r", "sha256:x")
        model = LoadedModel(ref, Path("."), SCHEMA, raw.predict, "sklearn", raw)
        model.predict_matrix = matrix_predictor(raw, SCHEMA)
        _add_scores(model, raw, SCHEMA)
        assert model.predict_matrix is not None and model.proba_matrix is not None
        assert model.labels_from_scores
        classes = np.asarray(raw.classes_)
        for n in (1, 64, 256):
            mat = np.ascontiguousarray(x[:n])
            pm, pp = model.predict_matrix, model.proba_matrix
            alone = _median_us(lambda: pm(mat), 2000 if n < 256 else 500)  # noqa: B023

            def two_calls() -> None:
                pm(mat)  # noqa: B023
                codec.pack_rows(np.asarray(pp(mat), dtype=np.float64))  # noqa: B023

            def one_call() -> None:
                # what the gateway does when predict is the argmax of the scores
                p = np.asarray(pp(mat), dtype=np.float64)  # noqa: B023
                labels_of(p, classes, lambda rows: pm(mat[rows]))  # noqa: B023
                codec.pack_rows(p)

            reps = 2000 if n < 256 else 500
            two = _median_us(two_calls, reps)
            one = _median_us(one_call, reps)
            print(
                f"  {type(raw).__name__:<28} batch {n:>3}: {alone:8.1f} | two calls {two:8.1f} "
                f"({two / alone:.2f}x) | one call {one:8.1f} ({one / alone:.2f}x)"
            )


def populate(store: Store, rows: int) -> None:
    layouts = D.Layouts(store)
    layout = codec.layout_id(SCHEMA)
    layouts.ensure(layout, SCHEMA)
    O.ensure_classes(store, "m", "1", [0, 1])
    rng = np.random.default_rng(1)
    app = D.Appender(store)
    groups = np.array(["A", "B", "C", "D"])
    ctx_texts = [orjson.dumps({"group": g}).decode() for g in groups]
    chunk = 50_000
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        s = rng.random(n)
        p = np.column_stack([1 - s, s])
        pred = (s > 0.5).astype(int)
        label = (rng.random(n) < s**2).astype(int)
        g = rng.choice(4, size=n, p=[0.4, 0.3, 0.2, 0.1])
        packed = codec.pack_rows(rng.normal(size=(n, 30)))
        scores = codec.pack_rows(p)
        ids = new_ids(n)
        tuples = [
            (ids[i], start + i, "e", "a", "m", "1", 1, False, None, "r", layout, packed[i],
             None, str(pred[i]), float(pred[i]), 1.0, scores[i], ctx_texts[g[i]])
            for i in range(n)
        ]  # fmt: skip
        app.append(tuples)
        with store.write() as conn:
            conn.execute(
                schema.feedback.insert(),
                [
                    {"decision_id": ids[i], "label": str(label[i]), "label_num": float(label[i]),
                     "observed_at": None, "recorded_at": 0, "actor": "bench"}
                    for i in range(n)
                ],
            )  # fmt: skip
    app.close()


def logged(rows: int, repeats: int, reuse: Path | None = None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = reuse or Path(tmp)
        home.mkdir(parents=True, exist_ok=True)
        again = (home / "chronoml.db").exists()
        store = Store.open(f"sqlite:///{home / 'chronoml.db'}", home)
        if not again:
            store.upgrade()
            t0 = time.perf_counter()
            populate(store, rows)
            print(f"populated {rows} decisions with scores, context and labels in "
                  f"{time.perf_counter() - t0:.1f} s")  # fmt: skip
        half = rows // 2

        def timed(name: str, fn: Any, n: int) -> None:
            times = []
            for _ in range(n):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            print(f"  {name:<48} median {statistics.median(times):.2f} s over {n}")

        def estimate() -> Any:
            return estimated_quality(store, "e", half, rows, reference_start=0, reference_end=half)

        if not again:
            # before compaction: every decision read as a row
            timed("fairness by group, from the rows", lambda: fairness(store, "e", "group", 0, rows), 1)  # fmt: skip
            timed("quality --estimate, from the rows", estimate, 1)
            t0 = time.perf_counter()
            blocks.compact(store, ["e"], upto=rows)
            print(f"compacted into blocks and outcome blocks in {time.perf_counter() - t0:.1f} s")
        else:
            print(f"reusing the compacted store in {home} (built by an earlier --reuse run)")
            estimate()  # warm: the first call loads scikit-learn and fills the page cache
        for name, fn in (
            ("read window (outcome blocks)", lambda: OB.columns(store, "e", 0, rows)),
            ("fairness by group (outcome blocks)", lambda: fairness(store, "e", "group", 0, rows)),
            (
                "read CBPE's two windows (outcome blocks)",
                lambda: (
                    SB.scored(store, "e", 0, half, version="1"),
                    SB.scored(store, "e", half, rows, variant="a", version="1"),
                ),
            ),
            ("quality --estimate (ref = first half, blocks)", estimate),
        ):
            timed(name, fn, repeats)
        store.close()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-log", action="store_true", help="Only the serving-path part.")
    ap.add_argument("--skip-hot", action="store_true", help="Only the part over the log.")
    ap.add_argument(
        "--reuse",
        type=Path,
        help="Keep the populated, compacted store in this folder; a later run with the same "
        "folder times the outcome-block part alone (to compare two versions of the code on "
        "the same data: run it with each one's src on PYTHONPATH).",
    )
    args = ap.parse_args()
    if not args.skip_hot:
        hot_path()
    if not args.skip_log:
        logged(args.rows, args.repeats, args.reuse)


if __name__ == "__main__":
    main()
