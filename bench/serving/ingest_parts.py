"""Where a 1000-row request's time goes, step by step, in one process (SQLite, durable).

The steps a 1000-row ``dataframe_split`` request takes, each timed alone on
the bench's model (GradientBoostingClassifier, 100 trees of depth 3, 30
features), medians of ``--runs``:

- the body into a float matrix (``gateway.inputs.float_matrix``: orjson and numpy),
  and orjson's parse alone (the floor the issue names);
- the model's own ``predict_proba`` on a frame, and the validated-once tree path;
- 1001 ids; the packed inputs and scores;
- the evidence entry of the batch (salted input commitments and leaf hashes);
- the durable append (``store.decisions.Appender``: rows, evidence items,
  Merkle nodes, commit with fsync), the same request as one ingest block (its
  evidence entry alone, then its whole durable append), and, for comparison on the same
  database, the decisions rows alone and one row holding all 1000 packed
  (what a columnar block per request would write), and the rows with a
  16-byte binary primary key instead of the 36-character text id.

    .venv/bin/python bench/serving/ingest_parts.py --runs 15
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
from sklearn.datasets import make_classification
from sklearn.ensemble import GradientBoostingClassifier

from chronoml.domain import codec
from chronoml.gateway import inputs
from chronoml.ids import new_block_ids, new_ids
from chronoml.registry.trees import fast_trees
from chronoml.store import decisions as D
from chronoml.store import ingest
from chronoml.store.database import Store

FEATURES = [f"f{i:02d}" for i in range(30)]


def median_ms(fn: Callable[[], Any], runs: int) -> float:
    fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--rows", type=int, default=1000)
    args = ap.parse_args()
    n, runs = args.rows, args.runs
    X, y = make_classification(n_samples=4000, n_features=30, n_informative=12, random_state=0)
    frame = pd.DataFrame(X, columns=FEATURES)
    model = GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=0).fit(frame, y)
    schema = tuple((c, "float") for c in FEATURES)
    body = json.dumps({"dataframe_split": {"columns": FEATURES, "data": X[:n].tolist()}}).encode()
    fast = fast_trees(model, FEATURES)
    assert fast is not None and fast.predict_proba is not None
    mat = inputs.float_matrix(body, schema)
    assert mat is not None
    df = pd.DataFrame(mat, columns=pd.Index(FEATURES, dtype=object))
    out: dict[str, float] = {}
    out["orjson.loads(body)"] = median_ms(lambda: orjson.loads(body), runs)
    out["body -> float matrix (float_matrix)"] = median_ms(
        lambda: inputs.float_matrix(body, schema), runs
    )
    out["model's own predict_proba (frame)"] = median_ms(lambda: model.predict_proba(df), runs)
    out["model's own predict (frame)"] = median_ms(lambda: model.predict(df), runs)
    out["tree fast path predict_proba"] = median_ms(lambda: fast.predict_proba(mat), runs)  # type: ignore[misc]
    out["1001 ids"] = median_ms(lambda: new_ids(n + 1), runs)
    proba = fast.predict_proba(mat)
    out["pack inputs and scores"] = median_ms(
        lambda: (codec.pack_rows(mat), codec.pack_rows(proba)), runs
    )

    def tuples() -> list[D.DecisionTuple]:
        ids = new_ids(n + 1)
        packed, scores = codec.pack_rows(mat), codec.pack_rows(proba)
        ts = time.time_ns() // 1000
        return [
            (ids[i + 1], ts, "bench", "v1", "bench", "1", 3, False, None, ids[0], "layout1",
             packed[i], None, "1", 1.0, 0.5, scores[i], None)
            for i in range(n)
        ]  # fmt: skip

    out["evidence entry (commitments, leaf hashes)"] = median_ms(
        lambda: D.decision_entry(tuples()), runs
    )

    def block() -> ingest.Block:
        block_id, ids = new_block_ids(n)
        packed, scores = codec.pack_rows(mat), codec.pack_rows(proba)
        ts = time.time_ns() // 1000
        return ingest.Block(
            block_id, ids, ts, "bench", "v1", "bench", "1", 3, False, None, new_ids(1)[0],
            "layout1", 0.5, packed, [None] * n, ["1"] * n, [1.0] * n, scores, None,
        )  # fmt: skip

    out["ingest block: its evidence entry"] = median_ms(
        lambda: D.decision_entry([], [block()]), runs
    )
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        store = Store.open(f"sqlite:///{home / 'db.sqlite'}", home)
        store.upgrade()
        ap_ = D.Appender(store)
        batches = [tuples() for _ in range(runs + 1)]
        it = iter(batches)
        out["Appender.append (all of the durable write)"] = median_ms(
            lambda: ap_.append(next(it)), runs
        )
        held = iter([block() for _ in range(runs + 1)])
        out["Appender.append of one ingest block (all of its durable write)"] = median_ms(
            lambda: ap_.append([], (), [next(held)]), runs
        )
        db = ap_._connection().driver_connection
        db.execute(
            "CREATE TABLE blob_ids (id BLOB PRIMARY KEY, ts INTEGER, endpoint TEXT, variant TEXT,"
            " model_name TEXT, model_version TEXT, event_seq INTEGER, shadow INTEGER, unit TEXT,"
            " request_id BLOB, layout TEXT, num BLOB, txt TEXT, output TEXT, output_num REAL,"
            " latency_ms REAL, scores BLOB, context TEXT)"
        )
        db.execute("CREATE INDEX ix_blob_ids ON blob_ids (endpoint, ts)")
        db.execute(
            "CREATE TABLE blocks_per_request (id TEXT PRIMARY KEY, ts INTEGER, endpoint TEXT,"
            " n INTEGER, num BLOB, outputs BLOB, scores BLOB)"
        )

        def in_tx(
            write: Callable[[list[Any]], None], prepare: Callable[[Any], Any] = list
        ) -> float:
            rows = [prepare(tuples()) for _ in range(runs + 1)]
            times = []
            for r in rows:
                t = time.perf_counter()
                db.execute("BEGIN IMMEDIATE")
                write(r)
                db.execute("COMMIT")
                times.append(time.perf_counter() - t)
            return 1000 * statistics.median(times[1:])

        sql = D.Appender(store)._sqlite_sql
        out["decision rows alone + commit"] = in_tx(lambda r: db.executemany(sql, r))
        blob_sql = f"INSERT INTO blob_ids VALUES ({', '.join('?' * 18)})"
        out["decision rows, 16-byte ids + commit"] = in_tx(
            lambda r: db.executemany(blob_sql, r),
            lambda r: [(uuid.UUID(t[0]).bytes, *t[1:9], uuid.UUID(t[9]).bytes, *t[10:]) for t in r],
        )
        out["one packed row for all + commit"] = in_tx(
            lambda r: db.execute(
                "INSERT INTO blocks_per_request VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    r[0][9], r[0][1], "bench", len(r), b"".join(t[11] for t in r),
                    np.array([t[14] for t in r]).tobytes(), b"".join(t[16] for t in r),
                ),
            )
        )  # fmt: skip
        ap_.close()
        store.close()
    width = max(len(k) for k in out)
    for k, v in out.items():
        print(f"{k:<{width}}  {v:8.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
