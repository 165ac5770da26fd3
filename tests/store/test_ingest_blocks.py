"""Ingest blocks: a request logged as one block answers every read exactly as the same
request logged as rows does (lookup, labels, windows, proofs, erasure, archive), and
``audit verify --decisions`` names an edited or deleted block's decisions."""

from __future__ import annotations

import json
import struct
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner, Result
from ingest_support import MARK, T0, Twins, fill
from sqlalchemy import select, text

from chronoml.cli import cli
from chronoml.domain.archive import parse_target
from chronoml.domain.feedback import FeedbackError, Label
from chronoml.evidence import audit
from chronoml.ids import block_of, new_block_ids
from chronoml.store import Store, schema
from chronoml.store import archive as SA
from chronoml.store import decision_reads as DR
from chronoml.store import decisions as D
from chronoml.store import evidence as SE
from chronoml.store import feedback as SF
from chronoml.store import outcomes as O
from chronoml.store import timed_columns as TC
from chronoml.store import timeline_reads as TR
from chronoml.verify import main as verify_main

END = T0 + 10**9


def run(home: Path, url: str, *args: str) -> Result:
    base = ["--home", str(home)]
    if not url.startswith("sqlite"):
        base += ["--store", url]
    return CliRunner().invoke(cli, [*base, *args], catch_exceptions=False)


@pytest.fixture
def home(tmp_path: Path, store_url: str) -> Path:
    h = tmp_path / "home"
    assert run(h, store_url, "db", "upgrade").exit_code == 0
    return h


def _open(home: Path, url: str) -> Store:
    return Store.open(
        url if not url.startswith("sqlite") else f"sqlite:///{home / 'chronoml.db'}", home
    )


@pytest.fixture
def filled(home: Path, store_url: str) -> tuple[Store, Twins]:
    store = _open(home, store_url)
    twins = fill(store)
    yield store, twins
    store.close()


def _canon(w: D.Window) -> pd.DataFrame:
    df = pd.DataFrame(
        {**{c: list(v) for c, v in w.columns.items()}, "out": w.outputs, "variant": w.variants,
         "version": w.versions}
    )  # fmt: skip
    if w.context is not None:
        df["ctx"] = [json.dumps(c, sort_keys=True) for c in w.context]
    return df.sort_values(list(df.columns), na_position="first").reset_index(drop=True)


def answers(store: Store, endpoint: str, ids: list[str]) -> list[Any]:
    """Every window read of ``endpoint``, and the decisions of ``ids`` by id (ids dropped)."""
    layouts = D.Layouts(store)
    cases = [(T0, END, None, False, False), (T0 + 3000, T0 + 9000, "a", False, True),
             (T0, END, None, True, True), (T0, END, "b", True, False)]  # fmt: skip
    wins = [
        _canon(D.window(store, layouts, endpoint, s, e, variant=v, include_shadow=sh,
                        with_context=cx))
        for s, e, v, sh, cx in cases
    ]  # fmt: skip
    rows = []
    for i in ids:
        r = D.get(store, i)
        assert r is not None, i
        rows.append({k: v for k, v in asdict(r).items() if k not in ("id", "endpoint")})
    keys = [(k.variant, k.model_name, k.model_version, k.event_seq)
            for k in DR.keys(store, endpoint, T0, END, include_shadow=True)]  # fmt: skip
    frames = pd.concat(
        [b.frame for b in DR.batches(store, layouts, endpoint, T0, END, include_shadow=False)],
        ignore_index=True,
    )
    labels = sorted(map(tuple, DR.outputs_and_labels(store, endpoint, T0, END)), key=str)
    oc = O.outcomes(store, endpoint, T0, END)
    outcomes = (oc.ts.tolist(), oc.variants, oc.outputs, oc.labels, oc.scores, oc.context)
    served = TR.served(store, endpoint, T0, END)
    timed = sorted(
        (p.variant, p.version, p.ts.tolist(), p.outputs.tolist(),
         {c: [None if v != v else v for v in a.tolist()] for c, a in p.columns.items()})
        for p in TC.parts(store, layouts, endpoint, T0, END)
    )  # fmt: skip
    lat = sorted(map(tuple, DR.latencies(store, endpoint, T0, END)))
    count = (D.count(store, endpoint), DR.count(store, endpoint, T0, END, include_shadow=False))
    return [wins, rows, keys, frames, labels, outcomes, served.ts.tolist(),
            served.latency_ms.tolist(), timed, lat, count]  # fmt: skip


def assert_same(a: list[Any], b: list[Any]) -> None:
    for x, y in zip(a, b, strict=True):
        if isinstance(x, list) and x and isinstance(x[0], pd.DataFrame):
            for fx, fy in zip(x, y, strict=True):
                pd.testing.assert_frame_equal(fx, fy)
        elif isinstance(x, pd.DataFrame):
            pd.testing.assert_frame_equal(x, y)
        else:
            assert x == y


def test_ids_name_their_block_and_row() -> None:
    block, ids = new_block_ids(3)
    assert [block_of(i) for i in ids] == [(block, 0), (block, 1), (block, 2)]
    assert block_of(block) is None and len(set(ids)) == 3 and all(len(i) == 36 for i in ids)
    _, more = new_block_ids(2)
    assert ids[-1] < more[0]  # time-ordered like every other id
    with pytest.raises(ValueError):
        new_block_ids(0)


def test_a_block_answers_every_read_as_its_rows_do(filled: tuple[Store, Twins]) -> None:
    store, twins = filled
    pairs = twins.pairs()
    # labels on the same decisions of both, and a second label refused the same way
    for k, (a, b) in enumerate(pairs[::9]):
        SF.record(store, [Label(a, k % 2)], actor="bob")
        SF.record(store, [Label(b, k % 2)], actor="bob")
        for did in (a, b):
            with pytest.raises(FeedbackError, match="already has label"):
                SF.record(store, [Label(did, 1)], actor="bob")
    with pytest.raises(FeedbackError, match="unknown decision"):
        SF.record(store, [Label(twins.block_ids[0][:32] + "ffff", 1)], actor="bob")
    rows = answers(store, "rows", [a for a, _ in pairs[::7]])
    held = answers(store, "held", [b for _, b in pairs[::7]])
    assert_same(rows, held)
    assert rows[-1][0] == 480
    # the blocks hold them: one row per request, no decision rows
    with store.read() as conn:
        n_rows = conn.execute(
            select(schema.decisions.c.id).where(schema.decisions.c.endpoint == "held")
        ).all()
        assert n_rows == [] and len(conn.execute(select(schema.ingest_blocks.c.id)).all()) == 12
        # one evidence item per block, each decision a leaf at its position in the batch
        a, b = pairs[45]
        ia, ib = SE.item_in(conn, "decision", a), SE.item_in(conn, "decision", b)
        assert ia is not None and ib is not None
        assert ia[2] == ib[2] and ib[3] == ia[3] + 40  # the block's leaves follow the rows'
        leaves = dict(SE.batch_leaves_in(conn, int(ib[2])))
        assert leaves[int(ib[3])] == bytes(ib[4]) and len(leaves) == 80
    report = audit.verify(store, decisions=True)
    assert report.ok, report.reason
    assert report.decisions == 960


def test_a_proof_of_a_block_decision_verifies_offline(
    filled: tuple[Store, Twins], home: Path, store_url: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    _, twins = filled
    did = twins.held[2][17]
    vkey = run(home, store_url, "audit", "key").output.strip()
    out = tmp_path / "bundle"
    r = run(home, store_url, "audit", "export", "--decision", did, "--out", str(out))
    assert r.exit_code == 0, r.output
    capsys.readouterr()
    assert verify_main([str(out), "--key", vkey]) == 0
    r = run(home, store_url, "decision", did, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["id"] == did


def _verify(home: Path, url: str) -> tuple[int, str]:
    r = run(home, url, "audit", "verify", "--decisions")
    return r.exit_code, r.output


@pytest.mark.parametrize("column", ["num", "outputs", "output_num", "scores"])
def test_an_edited_block_byte_is_named(
    filled: tuple[Store, Twins], home: Path, store_url: str, column: str
) -> None:
    store, twins = filled
    assert _verify(home, store_url)[0] == 0
    bid = twins.block_ids[5]
    IB = schema.ingest_blocks
    with store.write() as conn:
        raw = conn.execute(select(IB.c[column]).where(IB.c.id == bid)).scalar_one()
        if column == "outputs":
            texts = json.loads(raw)
            texts[11] = "1" if texts[11] == "0" else "0"
            edited: Any = json.dumps(texts)
        else:
            data = bytearray(bytes(raw))
            data[11 * (len(data) // 40) + 3] ^= 0x10  # a byte of row 11
            edited = bytes(data)
        conn.execute(IB.update().where(IB.c.id == bid).values({column: edited}))
    code, out = _verify(home, store_url)
    assert code != 0
    assert f"decision {twins.held[5][11]}" in out
    assert twins.held[5][10] not in out and twins.held[5][12] not in out


def test_a_deleted_block_is_named(filled: tuple[Store, Twins], home: Path, store_url: str) -> None:
    store, twins = filled
    IB = schema.ingest_blocks
    with store.write() as conn:
        conn.execute(IB.delete().where(IB.c.id == twins.block_ids[3]))
    code, out = _verify(home, store_url)
    assert code != 0 and "it was deleted" in out and twins.held[3][0] in out


def test_a_block_written_outside_chronoml_is_named(
    filled: tuple[Store, Twins], home: Path, store_url: str
) -> None:
    store, twins = filled
    IB = schema.ingest_blocks
    with store.write() as conn:
        r = conn.execute(select(IB).where(IB.c.id == twins.block_ids[1])).mappings().one()
        forged, ids = new_block_ids(int(r["rows"]))
        conn.execute(IB.insert().values({**r, "id": forged}))
    code, out = _verify(home, store_url)
    assert code != 0 and f"decision {ids[0]}" in out and "added outside chronoml" in out


def _stored_bytes(store: Store) -> bytes:
    out = []
    with store.read() as conn:
        for table in (schema.ingest_blocks, schema.decisions, schema.decision_context):
            for row in conn.execute(select(table)):
                for v in row:
                    out.append(bytes(v) if isinstance(v, bytes | memoryview) else str(v).encode())
    return b"\x00".join(out)


def test_erasing_a_unit_blanks_its_block_and_keeps_every_proof(
    filled: tuple[Store, Twins], home: Path, store_url: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    store, twins = filled
    q = twins.units.index("u-erase")
    assert struct.pack("<d", MARK) in _stored_bytes(store)
    r = run(home, store_url, "erase", "--unit", "u-erase", "--json")
    assert r.exit_code == 0, r.output
    got = json.loads(r.output)
    # the rows' and the block's decisions of the unit: both endpoints, every row
    assert got["endpoints"] == {"held": 40, "rows": 40}
    assert struct.pack("<d", MARK) not in _stored_bytes(store)
    for a, b in zip(twins.rows[q], twins.held[q], strict=True):
        ra, rb = D.get(store, a), D.get(store, b)
        assert ra is not None and rb is not None
        assert (rb.num, rb.txt, rb.context, rb.output) == (ra.num, ra.txt, ra.context, ra.output)
        assert np.isnan(np.frombuffer(rb.num, dtype="<f8")).all()
    # the other requests' inputs stay, and both endpoints still read alike
    other = D.get(store, twins.held[q + 1][0])
    assert other is not None and not np.isnan(np.frombuffer(other.num, dtype="<f8")).all()
    assert_same(answers(store, "rows", twins.rows[q]), answers(store, "held", twins.held[q]))
    assert _verify(home, store_url)[0] == 0
    vkey = run(home, store_url, "audit", "key").output.strip()
    out = tmp_path / "bundle"
    r = run(home, store_url, "audit", "export", "--decision", twins.held[q][3], "--out", str(out))
    assert r.exit_code == 0, r.output
    capsys.readouterr()
    assert verify_main([str(out), "--key", vkey]) == 0
    assert "inputs erased" in capsys.readouterr().out
    r = run(home, store_url, "erase", "--unit", "u-erase", "--json")
    assert json.loads(r.output)["decisions"] == 0


def test_retention_erases_old_block_inputs(
    filled: tuple[Store, Twins], home: Path, store_url: str
) -> None:
    store, twins = filled
    from chronoml.privacy import erasure
    from chronoml.service import Chronoml
    from chronoml.settings import Settings

    s = Settings.from_env(
        {}, home=home, store_url=None if store_url.startswith("sqlite") else store_url
    )
    cm = Chronoml(s, store)
    got = erasure.erase_older(cm, 1_000, "monitor:retention", now=T0 + 1000 * 6 + 1_000 - 1)
    assert dict(got.endpoints) == {"held": 200, "rows": 200}  # requests 0-4 of each
    assert D.get(store, twins.held[4][0]).txt is None  # type: ignore[union-attr]
    assert D.get(store, twins.held[5][0]).txt is not None  # type: ignore[union-attr]
    assert _verify(home, store_url)[0] == 0


def test_archived_blocks_read_back_the_same(
    filled: tuple[Store, Twins], home: Path, store_url: str, tmp_path: Path
) -> None:
    store, twins = filled
    SF.record(store, [Label(twins.held[1][2], 1)], actor="bob")
    SF.record(store, [Label(twins.rows[1][2], 1)], actor="bob")
    ids = [b for _, b in twins.pairs()[::11]]
    before = answers(store, "held", ids)
    target = parse_target(f"file://{tmp_path / 'objects'}")
    layouts = D.Layouts(store)
    got = SA.archive(store, layouts, T0 + 6500, target, settle_us=0, chunk_rows=100)
    assert got.rows == 2 * 6 * 40
    with store.read() as conn:
        left = conn.execute(text("SELECT count(*) FROM ingest_blocks")).scalar_one()
    assert left == 6
    held_status = [e for e in SA.status(store)["endpoints"] if e["endpoint"] == "held"]
    assert held_status[0]["live_decisions"] == 240 and held_status[0]["archived_decisions"] == 240
    row_ids = [a for a, _ in twins.pairs()[::11]]
    after = answers(store, "held", ids)
    assert_same(answers(store, "rows", row_ids), after)
    # what archiving keeps of a decision: all but the context of archived windows
    for k in (0, 3):
        pd.testing.assert_frame_equal(before[0][k], after[0][k])
    # lookups, keys and labels; the frames come file by file (as for rows: compared above)
    assert_same(before[1:3], after[1:3])
    assert before[4] == after[4]
    SF.record(store, [Label(twins.held[0][5], 0)], actor="bob")  # a label after archiving
    SF.record(store, [Label(twins.rows[0][5], 0)], actor="bob")
    assert _verify(home, store_url)[0] == 0
    SA.archive(store, layouts, END, target, settle_us=0)
    assert_same(answers(store, "rows", row_ids), answers(store, "held", ids))
    assert before[2] == answers(store, "held", ids)[2]
    assert _verify(home, store_url)[0] == 0
