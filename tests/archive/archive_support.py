"""Decisions with every kind of stored value, logged at chosen times, for the archive tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

from chronoml.domain import codec
from chronoml.ids import new_id
from chronoml.store import Store
from chronoml.store import decisions as D

SCHEMA = (("x", "float"), ("k", "int"), ("city", "string"), ("flag", "bool"))


def log(
    store: Store, layouts: D.Layouts, n: int, t0: int, variant: str, shadow: bool = False
) -> list[str]:
    rng = np.random.default_rng(t0)
    df = pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "k": rng.integers(-5, 5, size=n),
            "city": rng.choice(["oslo", "lima", None], size=n),
            "flag": rng.integers(0, 2, size=n).astype(bool),
        }
    )
    df.loc[3, "x"] = np.nan
    layout = codec.layout_id(SCHEMA)
    layouts.ensure(layout, SCHEMA)
    nums, txts = codec.encode(df, SCHEMA)
    rows = [
        D.DecisionRow(
            new_id(),
            t0 + 10 * i,
            "e",
            variant,
            "m",
            "1" if variant == "a" else "2",
            1,
            shadow,
            f"u{i}" if i % 3 else None,
            "0190a000-0000-7000-9000-0000000000ff",
            layout,
            nums[i],
            txts[i],
            str(i % 2),
            float(i % 2),
            1.5,
            None if i % 4 else b"\x00" * 16,
            '{"ch": "web"}' if i % 5 == 0 else None,
        )
        for i in range(n)
    ]
    D.insert_many(store, rows)
    return [r.id for r in rows]
