"""An A/B experiment broken down by an input or a context attribute answers the same
after part of its window is archived."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from chronoml.domain import codec
from chronoml.domain import ledger as L
from chronoml.domain.archive import parse_target
from chronoml.domain.feedback import Label
from chronoml.ids import new_id
from chronoml.monitor import experiments as EX
from chronoml.store import Store
from chronoml.store import archive as SA
from chronoml.store import decision_reads as DR
from chronoml.store import decisions as D
from chronoml.store import feedback as FB
from chronoml.store import ledger as SL


def test_an_experiment_by_slice_is_the_same_after_archiving(store: Store, tmp_path: Path) -> None:
    for name, version, weight in (("a", "1", None), ("b", "2", 5000)):
        v = L.Variant(name=name, model=L.ModelRef("m", version, None, "ab" * 32), weight=0)
        change = L.Change("deploy", "e", "t", {"variant": v.to_dict(), "weight_bp": weight})
        SL.append(store, change, now=100)
    layouts = D.Layouts(store)
    sch = (("x", "float"),)
    layout = codec.layout_id(sch)
    layouts.ensure(layout, sch)
    nums, txts = codec.encode(pd.DataFrame({"x": np.random.default_rng(0).normal(size=200)}), sch)
    rows = [
        D.DecisionRow(
            new_id(), 1_000_000 + 10 * i, "e", "ab"[i % 2], "m", "12"[i % 2], 2, False, None,
            new_id(), layout, nums[i], txts[i], str(i % 3 % 2), float(i % 3 % 2), 1.0, None,
            '{"ch": "web"}' if i % 4 else '{"ch": "app"}',
        )
        for i in range(200)
    ]  # fmt: skip
    D.insert_many(store, rows)
    FB.record(store, [Label(r.id, k % 2) for k, r in enumerate(rows)], actor="test")

    def answers() -> list[object]:
        got: list[object] = [
            EX.experiment(store, "e", 0, 10**9, min_samples=5, by=by, bins=3)["comparisons"]
            for by in ("x", "ch")
        ]
        arm = DR.arm_rows(store, "e", 0, 10**9, "a", "1", False, [2], inputs=True, ids=True)
        return [*got, sorted(tuple(r) for r in arm)]

    before = answers()
    assert before[0][0]["by"] and before[1][0]["by"]  # type: ignore[index]
    target = parse_target(f"file://{tmp_path / 'objects'}")
    assert SA.archive(store, layouts, 1_001_000, target, settle_us=0).rows == 100
    assert answers() == before
