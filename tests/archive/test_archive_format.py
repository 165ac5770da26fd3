"""The archive's compact encodings give back every stored value exactly, odd ones included."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from chronoml.domain import codec
from chronoml.domain.archive import parse_target
from chronoml.evidence import audit
from chronoml.ids import new_id
from chronoml.store import Store, id_convert, id_types
from chronoml.store import archive as SA
from chronoml.store import archive_parquet as AP
from chronoml.store import decisions as D

SCHEMA = (("price", "float"), ("count", "float"), ("x", "float"), ("k", "int"), ("c", "string"))
TEXTS = ["", 'a "quoted", comma', "two\nlines", "ünï ☃", "\\x00ff", "NULL", None]
# (SQLite keeps neither NaN nor -0.0 in a REAL column: those are tried as inputs)
FLOATS = [0.0, math.inf, -math.inf, 1e-300, None, 0.1, 5e-324]


@pytest.fixture
def store(store_url: str, tmp_path: Path) -> Any:
    s = Store.open(store_url, tmp_path / "home")
    s.upgrade()
    if not s.is_sqlite:  # ids no uuid column can hold: a PostgreSQL store that kept text (0022)
        with s.write() as conn:
            id_convert.unconvert(conn)
        id_types.forget(s.engine, s.lookup_engine)
    yield s
    s.close()


def _log(store: Store, layouts: D.Layouts, endpoint: str, ids: list[str]) -> None:
    n = len(ids)
    rng = np.random.default_rng(7)
    x = rng.normal(size=n)
    x[:4] = [-0.0, math.nan, math.inf, 5e-324]
    df = pd.DataFrame(
        {
            "price": np.round(rng.uniform(0, 500, size=n), 2),
            "count": rng.integers(0, 40, size=n).astype(float),
            "x": x,
            "k": rng.integers(-(2**40), 2**40, size=n),
            "c": [TEXTS[i % len(TEXTS)] for i in range(n)],
        }
    )
    layout = codec.layout_id(SCHEMA)
    layouts.ensure(layout, SCHEMA)
    nums, txts = codec.encode(df, SCHEMA)
    rows = []
    for i, did in enumerate(ids):
        out = FLOATS[i % len(FLOATS)]
        rows.append(
            D.DecisionRow(
                did, 1_000_000 + 10 * i, endpoint, "a", "m,1", "1", 1, i % 2 == 0,
                TEXTS[(i + 1) % len(TEXTS)], new_id() if i % 3 else "req,\"1\"", layout,
                nums[i], txts[i], TEXTS[(i + 2) % len(TEXTS)] or "none", out,
                math.inf if i % 5 == 0 else 0.25 * i,
                None if i % 4 == 0 else bytes(range(i % 7)) * 3,
                None if i % 3 else '{"note": "a,\\nb"}',
            )
        )  # fmt: skip
    D.insert_many(store, rows)


def _same(a: Any, b: Any) -> bool:
    """Decisions equal field by field, NaN equal to NaN and -0.0 apart from 0.0."""
    for x, y in zip(a.__dict__.values(), b.__dict__.values(), strict=True):
        if isinstance(x, float) and isinstance(y, float):
            if math.copysign(1, x) != math.copysign(1, y) or not (
                x == y or (math.isnan(x) and math.isnan(y))
            ):
                return False
        elif x != y:
            return False
    return True


def test_odd_values_and_both_id_kinds_come_back_exactly(store: Store, tmp_path: Path) -> None:
    layouts = D.Layouts(store)
    uuids = [new_id() for _ in range(300)]
    others = [f"legacy-{i:04d}" for i in range(150)] + [new_id().upper() for _ in range(150)]
    _log(store, layouts, "u", uuids)
    _log(store, layouts, "o", others)
    before = {i: D.get(store, i) for i in uuids + others}

    folder = tmp_path / "objects"
    got = SA.archive(store, layouts, 10**9, parse_target(f"file://{folder}"), settle_us=0)
    assert got.rows == 600
    assert [e["live_decisions"] for e in SA.status(store)["endpoints"]] == [0, 0]

    for i, row in before.items():
        back = D.get(store, i)
        assert back is not None and _same(back, row), i
    report = audit.verify(store, decisions=True)
    assert report.ok and report.decisions == 600, report.reason

    # the compact encodings were used where they apply, and only there
    kinds = {}
    for p in folder.iterdir():
        sch = pq.read_schema(p)
        ids = AP.read(p.read_bytes(), columns=["id"]).column("id").to_pylist()
        kinds[ids[0][:6]] = sch
        assert sch.field("input.price").type == pa.int64()  # two decimals: integers
        assert sch.field("input.count").type == pa.int64()
        # -0.0, NaN, inf: as floats, split into their low and high bits
        assert sch.field("input.x").type == pa.int64()
        assert sch.field("input.x:hi").type == pa.uint16()
        assert sch.field("request_id").type == pa.string()  # not every one a UUID
    assert kinds["legacy"].field("id").type == pa.string()
    (uuid_schema,) = [s for k, s in kinds.items() if k != "legacy"]
    assert uuid_schema.field("id").type == pa.binary(16)


def test_an_id_that_is_no_uuid_finds_nothing_in_a_file_of_uuids(
    store: Store, tmp_path: Path
) -> None:
    layouts = D.Layouts(store)
    uuids = [new_id() for _ in range(50)]
    _log(store, layouts, "u", uuids)
    SA.archive(store, layouts, 10**9, parse_target(f"file://{tmp_path / 'o'}"), settle_us=0)
    assert D.get(store, uuids[7]) is not None
    assert D.get(store, uuids[7].upper()) is None
    assert D.get(store, "not-an-id") is None


def test_decimal_scale_is_exact_or_none() -> None:
    prices = np.round(np.random.default_rng(1).uniform(-1e6, 1e6, 10_000), 3)
    assert AP.decimal_scale(prices) == 3
    assert AP.decimal_scale(np.arange(1000, dtype=float)) == 0
    assert AP.decimal_scale(np.random.default_rng(2).normal(size=1000)) is None
    assert AP.decimal_scale(np.array([1.5, -0.0])) is None
    assert AP.decimal_scale(np.array([1.5, math.nan])) is None
    assert AP.decimal_scale(np.array([2.0**60, 1.0])) is None  # beyond exact integers


def test_split_floats_come_back_bit_for_bit() -> None:
    """Floats stored as their low and high bits: every bit pattern returns, NaN
    payloads, subnormals and signed zeros included, and erasing rows keeps the others."""
    sch = (("x", "float"), ("y", "float"))
    rng = np.random.default_rng(3)
    odd = [-0.0, 0.0, math.inf, -math.inf, math.nan, 5e-324, -2.2e-308, 1.7976931348623157e308]
    payload = np.array([0x7FF8_0000_DEAD_BEEF, 0xFFF0_0000_0000_0001], dtype="<u8").view("<f8")
    x = np.concatenate([rng.normal(size=200), odd, payload])
    mat = np.stack([x, x[::-1]], axis=1)
    n = len(x)
    rows = [
        (new_id(), 10 + i, "e", "a", "m", "1", 1, False, f"u{i % 9}", None, "l",
         mat[i].tobytes(), None, "0", 0.0, 1.0, None, None)
        for i in range(n)
    ]  # fmt: skip
    data, packed = AP.encode(rows, sch)
    stored = pq.read_schema(pa.BufferReader(data))
    assert stored.field("input.x").type == pa.int64()
    assert stored.field("input.x:hi").type == pa.uint16()
    back = AP.read(data)
    assert AP.packed_inputs(back, sch).tobytes() == packed
    assert back.column_names == AP.read(data, columns=back.column_names).column_names
    only = AP.read(data, columns=["input.y"])
    assert only.column_names == ["input.y"]
    assert only.column("input.y").to_numpy().view("<u8").tolist() == mat[:, 1].view("<u8").tolist()
    # erasing rows: theirs NaN, every other value's bits as they were
    gone = np.zeros(n, dtype=bool)
    gone[[0, 5, n - 1]] = True
    table = AP.erased(AP.read_physical(data), gone, np.zeros(n, dtype=bool))
    after = AP.packed_inputs(AP.logical(table), sch)
    assert np.isnan(after[gone]).all()
    assert after[~gone].view("<u8").tolist() == mat[~gone].view("<u8").tolist()
