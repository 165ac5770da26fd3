"""Columnar blocks: a window reads the same with or without compaction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from chronoml.domain import codec
from chronoml.ids import new_id
from chronoml.store import Store, blocks
from chronoml.store import decisions as D


@pytest.fixture
def store(store_url: str, tmp_path: Path) -> Any:
    s = Store.open(store_url, tmp_path / "home")
    s.upgrade()
    yield s
    s.close()


def _log(
    store: Store,
    layouts: D.Layouts,
    n: int,
    t0: int,
    variant: str,
    version: str,
    shadow: bool = False,
) -> pd.DataFrame:
    rng = np.random.default_rng(t0)
    df = pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "k": rng.integers(0, 5, size=n),
            "city": rng.choice(["oslo", "lima", "pune"], size=n),
        }
    )
    schema = (("x", "float"), ("k", "int"), ("city", "string"))
    layout = codec.layout_id(schema)
    layouts.ensure(layout, schema)
    nums, txts = codec.encode(df, schema)
    rows = [
        D.DecisionRow(
            new_id(),
            t0 + i,
            "e",
            variant,
            "m",
            version,
            1,
            shadow,
            None,
            "0190a000-0000-7000-9000-0000000000ff",
            layout,
            nums[i],
            txts[i],
            str(i % 2),
            float(i % 2),
            1.0,
        )
        for i in range(n)
    ]
    D.insert_many(store, rows)
    return df


def _canon(w: D.Window) -> pd.DataFrame:
    df = pd.DataFrame(
        {
            **{c: list(v) for c, v in w.columns.items()},
            "out": w.outputs,
            "variant": w.variants,
            "version": w.versions,
        }
    )
    return df.sort_values(["variant", "x"]).reset_index(drop=True)


def test_windows_match_across_compaction(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(blocks, "BLOCK_ROWS", 700)  # several blocks per group
    layouts = D.Layouts(store)
    _log(store, layouts, 2000, 1_000_000, "a", "1")
    _log(store, layouts, 1500, 1_000_500, "b", "2")
    _log(store, layouts, 300, 1_000_200, "b", "2", shadow=True)
    cases = [
        (0, 10**9, None, False),
        (1_000_100, 1_001_900, None, False),
        (1_000_600, 1_003_000, "b", False),
        (0, 10**9, None, True),
    ]
    before = [
        _canon(D.window(store, layouts, "e", s, e, variant=v, include_shadow=sh))
        for s, e, v, sh in cases
    ]

    # compact part of the history: windows straddle the watermark and cut blocks
    assert blocks.compact(store, upto=1_001_000) == 1000 + 500 + 300
    assert blocks.watermark(store, "e") == 1_001_000
    mid = [
        _canon(D.window(store, layouts, "e", s, e, variant=v, include_shadow=sh))
        for s, e, v, sh in cases
    ]
    assert blocks.compact(store, upto=10**9) == 3800 - 1800
    after = [
        _canon(D.window(store, layouts, "e", s, e, variant=v, include_shadow=sh))
        for s, e, v, sh in cases
    ]
    for b, m, a in zip(before, mid, after, strict=True):
        pd.testing.assert_frame_equal(b, m)
        pd.testing.assert_frame_equal(b, a)
    assert blocks.count(store, "e") == 3800
    # a second compactor finds nothing left to do; late rows above the watermark still count
    assert blocks.compact(store, upto=10**9) == 0
    _log(store, layouts, 10, 2_000_000_000, "a", "1")
    assert D.window(store, layouts, "e", 0, 2**62).rows == 3500 + 10
    blocks.drop(store)
    assert D.window(store, layouts, "e", 0, 2**62).rows == 3510


def test_postgresql_caps_a_blocks_inputs_by_bytes() -> None:
    # 30 floats a row: 65,536 rows would be 15.7 MB, which an erasure rewrites whole there
    assert blocks.block_rows(True, 240) == blocks.BLOCK_ROWS
    assert blocks.block_rows(False, 240) == 2048
    assert blocks.block_rows(False, 240) * 240 <= blocks.PG_BLOCK_BYTES
    assert blocks.block_rows(False, 8) == blocks.BLOCK_ROWS  # narrow rows: the row cap
    assert blocks.block_rows(False, 80_000) == blocks.MIN_BLOCK_ROWS  # wide rows: a floor
    assert blocks.block_rows(False, 0) == blocks.BLOCK_ROWS


def test_windows_match_across_byte_capped_blocks(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(blocks, "PG_BLOCK_BYTES", 16 * 256)  # 16-byte rows: 256 a block
    monkeypatch.setattr(blocks, "MIN_BLOCK_ROWS", 64)
    layouts = D.Layouts(store)
    _log(store, layouts, 1000, 1_000_000, "a", "1")
    before = _canon(D.window(store, layouts, "e", 0, 10**9))
    assert blocks.compact(store, upto=10**9) == 1000
    with store.read() as conn:
        sizes = sorted(r for (r,) in conn.exec_driver_sql("SELECT rows FROM decision_blocks"))
    assert sizes == ([1000] if store.is_sqlite else [232, 256, 256, 256])
    pd.testing.assert_frame_equal(before, _canon(D.window(store, layouts, "e", 0, 10**9)))
