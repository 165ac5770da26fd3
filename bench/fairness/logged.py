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
    .venv/bin/python bench/fairness/logged.py --skip-hot --store PG_URL --compare-blocks

On PostgreSQL blocks are capped at ``blocks.PG_BLOCK_BYTES`` of inputs (so an
erasure rewrites little); ``--compare-blocks`` times the same reads again from
blocks of 65,536 rows, as compaction made them before the cap.
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
from sqlalchemy import text

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


def _pg_schema(url: str, home: Path, sql: str) -> None:
    admin = Store.open(url, home)
    with admin.engine.begin() as c:
        c.execute(text(sql))
    admin.close()


def logged(
    rows: int,
    repeats: int,
    reuse: Path | None = None,
    pg: str | None = None,
    compare: bool = False,
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = reuse or Path(tmp)
        home.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{home / 'chronoml.db'}"
        again = pg is None and (home / "chronoml.db").exists()
        if pg is not None:
            name = f"bench_logged_{new_ids(1)[0][:8]}".replace("-", "")
            _pg_schema(pg, home, f"CREATE SCHEMA {name}")
            url = f"{pg}?options=-csearch_path%3D{name}"
        store = Store.open(url, home)
        if not again:
            store.upgrade()
            t0 = time.perf_counter()
            populate(store, rows)
            if pg is not None:  # as autovacuum does after a bulk insert
                raw = store.engine.raw_connection()
                raw.driver_connection.autocommit = True  # type: ignore[union-attr]
                with raw.driver_connection.cursor() as cur:  # type: ignore[union-attr]
                    cur.execute("VACUUM (ANALYZE)")
                raw.close()
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
            # before compaction: every decision read as a row (on SQLite: PostgreSQL takes
            # minutes there, and the blocks are what this compares)
            if pg is None:
                timed("fairness by group, from the rows", lambda: fairness(store, "e", "group", 0, rows), 1)  # fmt: skip
                timed("quality --estimate, from the rows", estimate, 1)
            t0 = time.perf_counter()
            blocks.compact(store, ["e"], upto=rows)
            print(f"compacted into blocks and outcome blocks in {time.perf_counter() - t0:.1f} s")
        else:
            print(f"reusing the compacted store in {home} (built by an earlier --reuse run)")
            estimate()  # warm: the first call loads scikit-learn and fills the page cache
        reads(store, rows, repeats, timed, estimate)
        if compare:  # the same reads from blocks of 65,536 rows (PostgreSQL caps them)
            blocks.drop(store)
            cap = blocks.PG_BLOCK_BYTES
            blocks.PG_BLOCK_BYTES = 1 << 62
            try:
                blocks.compact(store, ["e"], upto=rows)
            finally:
                blocks.PG_BLOCK_BYTES = cap
            print("compacted again into blocks of 65,536 rows:")
            reads(store, rows, repeats, timed, estimate)
        store.close()
        if pg is not None:
            _pg_schema(pg, home, f"DROP SCHEMA {name} CASCADE")


def reads(store: Store, rows: int, repeats: int, timed: Any, estimate: Any) -> None:
    half = rows // 2
    with store.read() as conn:
        n = conn.execute(text("SELECT count(*) FROM decision_blocks")).scalar_one()
    print(f"  ({n} blocks)")
    layouts = D.Layouts(store)
    for name, fn in (
        ("read the drift window (blocks)", lambda: D.window(store, layouts, "e", 0, rows)),
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
        "the same data: run it with each one's src on PYTHONPATH). SQLite only.",
    )
    ap.add_argument("--store", help="a PostgreSQL URL (default: SQLite in a temporary folder)")
    ap.add_argument(
        "--compare-blocks",
        action="store_true",
        help="the reads again from blocks of 65,536 rows (the size before PostgreSQL's cap)",
    )
    args = ap.parse_args()
    if args.reuse is not None and args.store is not None:
        ap.error("--reuse keeps a SQLite store: give it without --store")
    if not args.skip_hot:
        hot_path()
    if not args.skip_log:
        logged(args.rows, args.repeats, args.reuse, args.store, args.compare_blocks)


if __name__ == "__main__":
    main()
