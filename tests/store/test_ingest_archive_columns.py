"""The archiver reads ingest blocks' decisions as columns, without decoding them row by
row: every value comes out as the row-by-row decoding gives it (which readers use)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest
from ingest_support import fill
from sqlalchemy import select

from chronoml.store import Store, ingest, schema
from chronoml.store import archive_columns as AC

IB = schema.ingest_blocks


@pytest.fixture
def store(store_url: str, tmp_path: Path) -> Store:
    s = Store.open(store_url, tmp_path / "home")
    s.upgrade()
    return s


def test_blocks_read_as_columns_equal_their_decoded_rows(store: Store) -> None:
    fill(store)  # text and numeric layouts, class scores, context, a shadow block
    with store.read() as conn:
        q = select(*[IB.c[c] for c in ingest.COLUMNS]).where(IB.c.endpoint == "held")
        stored = sorted(conn.execute(q).all(), key=lambda r: (int(r[1]), str(r[0])))
    got = AC.of_blocks(stored)
    want = AC.of_rows([t for r in stored for t in ingest.from_stored(tuple(r)).tuples()])
    assert len(got) == len(want) == 480
    for name, col in want.arrays.items():
        assert AC.texts(got.arrays[name]).cast(col.type).equals(col), name
    assert got.num.equals(want.num)
    assert got.packed() == want.packed()
    ts = got.ts
    assert list(ts) == sorted(ts)
    store.close()


@pytest.mark.parametrize(
    "lists",
    [
        [["0", "1", ""], ["héllo", "x,y", "[0.25, 0.75]", "]["]],  # no escape: taken as is
        [["0"], ['"cat"', "a\\b"]],  # escapes: parsed
        [["0", None]],  # a null value: parsed
    ],
)
def test_output_lists_read_as_the_json_parser_reads_them(lists: list[list[str | None]]) -> None:
    texts = [orjson.dumps(v).decode() for v in lists]
    rows = [(t,) for t in texts]
    counts = np.array([len(v) for v in lists])
    got = AC._texts(rows, "id", counts)  # the first column of these one-column rows
    assert got.to_pylist() == [x for v in lists for x in v]
