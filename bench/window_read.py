"""Reading a window of logged decisions column by column (the drift input).

Goal (monitoring issue): a window of 1,000,000 decisions with 30 numeric
inputs reads back in about a second. Anchor: parsing the same inputs stored
as one JSON text per row, the layout this storage replaces.

    .venv/bin/python bench/window_read.py [--rows 1000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
import pandas as pd

from chronoml.domain import codec
from chronoml.ids import new_id
from chronoml.store import Store
from chronoml.store import decisions as D


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        store = Store.open(f"sqlite:///{home / 'chronoml.db'}", home)
        store.upgrade()
        layouts = D.Layouts(store)
        cols = [f"f{i}" for i in range(30)]
        schema = tuple((c, "float") for c in cols)
        layout = codec.layout_id(schema)
        layouts.ensure(layout, schema)
        rng = np.random.default_rng(0)
        t0 = time.perf_counter()
        json_texts: list[bytes] = []
        for start in range(0, args.rows, 50_000):
            n = min(50_000, args.rows - start)
            df = pd.DataFrame(rng.normal(size=(n, 30)), columns=cols)
            nums, txts = codec.encode(df, schema)
            json_texts.extend(orjson.dumps(r) for r in df.to_dict(orient="records"))
            rows = [
                D.DecisionRow(
                    new_id(),
                    start + i,
                    "e",
                    "a",
                    "m",
                    "1",
                    1,
                    False,
                    None,
                    "r",
                    layout,
                    nums[i],
                    txts[i],
                    "0",
                    0.0,
                    1.0,
                )
                for i in range(n)
            ]
            D.insert_many(store, rows)
        populate = time.perf_counter() - t0
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            w = D.window(store, layouts, "e", 0, args.rows)
            times.append(time.perf_counter() - t0)
            assert w.rows == args.rows and len(w.columns) == 30
        anchor = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            recs = [orjson.loads(t) for t in json_texts]
            np.array([[r[c] for c in cols] for r in recs])
            anchor.append(time.perf_counter() - t0)
        store.close()
    med, amed = statistics.median(times), statistics.median(anchor)
    print(
        f"populated {args.rows:,} decisions in {populate:.1f} s ({args.rows / populate:,.0f} rows/s, group commits of 50k)"
    )
    print(
        f"window read, {args.rows:,} rows x 30 numeric inputs: median {med:.2f} s (runs: {', '.join(f'{t:.2f}' for t in times)})"
    )
    print(f"anchor, one JSON text per row (parse only, no database): median {amed:.2f} s")
    print(f"ratio anchor / chronoml: {amed / med:.1f}x")


if __name__ == "__main__":
    main()
