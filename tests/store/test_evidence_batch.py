"""Leaves and commitments computed a page at a time are the leaf encoder's, byte for byte,
and ``audit verify --decisions`` split across processes finds what one process finds."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from evidence_fill import Filled, _rows, deploy, drop_guards, fill, sql

from chronoml.domain import leaves as LV
from chronoml.evidence import audit as EA
from chronoml.evidence import decision_check as DC
from chronoml.store import Store
from chronoml.store import decisions as D
from chronoml.store import evidence as SE
from chronoml.store import evidence_batch as EB
from chronoml.store import evidence_preimages as EP
from chronoml.store import ledger as SL
from chronoml.store.decisions import COLUMNS as D_COLUMNS
from chronoml.window import Window

BASE = (
    "0190a000-0000-4000-b000-000000000000", 1_767_225_600_000_000, "churn", "v1", "churn", "3", 7, False, "user-1",
    "0190a000-0000-7000-9000-000000000001", "lay1", b"\x00" * 16, None, '{"p":0.5}', 0.5, 1.25, None, None,
)  # fmt: skip
VARIANTS = [
    {},
    {7: True, 8: None},
    {14: None},
    {14: math.nan, 15: math.inf},
    {14: -math.inf, 15: 0.0},
    {
        0: "0190a000-0000-4000-b000-00000000abcd",
        2: "",
        13: "\u00e9",
        8: "ré",
    },  # ids: UUIDv4 text, no time to prune by
    {1: -5, 6: 2**62},
    {15: 3},  # an integer latency encodes as its float
    {16: b"\x01\x02" * 8, 17: '{"region":"nord"}'},
    {12: "texte ✓", 11: b""},
]
SALT = b"s" * 16


def _row(change: dict[int, object]) -> tuple[object, ...]:
    row = list(BASE)
    for k, v in change.items():
        row[k] = v
    return tuple(row)


def test_a_page_of_leaves_matches_the_leaf_encoder() -> None:
    rows = [_row(c) for c in VARIANTS] * 2  # repeated values come from the page's cache
    coms = [LV.inputs_commitment(r[10], r[11], r[12], SALT) for r in rows]  # type: ignore[arg-type]
    want = [SE.decision_leaf(r, c).leaf_hash() for r, c in zip(rows, coms, strict=True)]
    assert EB.leaf_hashes(rows, coms) == want
    # with other columns in front, as the verify query reads them
    assert EB.leaf_hashes([("x", 1, *r) for r in rows], coms, offset=2) == want
    # the commitment holds the context where a row has one, and then the leaf holds none
    with_ctx = [LV.inputs_commitment(r[10], r[11], r[12], SALT, r[17]) for r in rows]  # type: ignore[arg-type]
    assert any(r[17] is not None for r in rows)
    assert EB.commitments(rows, [SALT] * len(rows)) == with_ctx
    assert EB.commitments([(0, *r) for r in rows], [SALT] * len(rows), offset=1) == with_ctx
    inside = [r[17] is not None for r in rows]
    assert EB.leaf_hashes(rows, with_ctx, 0, inside) == [
        SE.decision_leaf(r[:17] if i else r, c).leaf_hash()
        for r, c, i in zip(rows, with_ctx, inside, strict=True)
    ]


@pytest.mark.parametrize(
    ("change", "error"),
    [({2: 5}, TypeError), ({3: b"v1"}, TypeError), ({0: None}, AttributeError)],
)
def test_a_row_of_the_wrong_types_is_refused(change: dict[int, object], error: type) -> None:
    row = _row(change)
    with pytest.raises(error):
        EB.leaf_hashes([row], [b"c" * 32])


def test_a_bad_commitment_or_salt_is_refused() -> None:
    with pytest.raises(LV.LeafError):
        EB.leaf_hashes([BASE], [b"short"])
    with pytest.raises(LV.LeafError):
        EB.commitments([BASE], [b"short"])


def _problems(report: EA.EvidenceReport) -> list[tuple[int | None, str, str]]:
    return [(p.log_index, p.what, p.reason) for p in report.problems]


def test_verify_in_two_processes_agrees_with_one(store: Store, tmp_path: Path) -> None:
    filled: Filled = fill(store, tmp_path)
    one = EA.verify(store, decisions=True, workers=1)
    two = EA.verify(store, decisions=True, workers=2)
    assert one.ok and two.ok
    assert two.decisions == one.decisions == len(filled.decisions)
    drop_guards(store)
    # the last batch is the second process's range: its edits must come back named
    sql(
        store,
        "UPDATE decisions SET output = :v WHERE id = :k",
        {"v": "0.99", "k": "0190a000-0000-7000-8000-000000000008"},
    )
    sql(store, "DELETE FROM decisions WHERE id = :k", {"k": "0190a000-0000-7000-8000-000000000010"})
    sql(
        store,
        "UPDATE decisions SET latency_ms = :v WHERE id = :k",
        {"v": 9.0, "k": "0190a000-0000-7000-8000-000000000002"},
    )
    one = EA.verify(store, decisions=True, workers=1)
    two = EA.verify(store, decisions=True, workers=2)
    assert not two.ok
    assert _problems(two) == _problems(one)
    named = [p.what for p in two.problems]
    assert (
        "decision 0190a000-0000-7000-8000-000000000002" in named
        and "decision 0190a000-0000-7000-8000-000000000008" in named
    )
    assert any(
        "0190a000-0000-7000-8000-000000000010" in p.what and "deleted" in p.reason
        for p in two.problems
    )


def test_a_worker_process_reports_the_rows_of_its_range(store: Store, tmp_path: Path) -> None:
    fill(store, tmp_path)
    with store.read() as conn:
        last = max(int(e[0]) for e in SE.log_entries(conn) if e[1] == "decision")
    drop_guards(store)
    sql(
        store,
        "UPDATE decisions SET unit = :v WHERE id = :k",
        {"v": "user-9", "k": "0190a000-0000-7000-8000-000000000009"},
    )
    url = store.engine.url.render_as_string(hide_password=False)
    remote = DC._Remote.start(url, str(store.home))
    assert remote is not None, "the worker process did not start"
    try:
        got = remote.run([last])
        assert got is not None, "the worker process did not run"
        n, present, problems = got
        # a second piece on the same process: one start-up for every piece it is given
        again = remote.run([last])
    finally:
        remote.close()
    assert again is not None and again[:2] == (n, present)
    assert n == present == 6
    assert [(p.what, p.reason) for p in problems][:1] == [
        (
            "decision 0190a000-0000-7000-8000-000000000009",
            "its stored row no longer matches its committed leaf",
        )
    ]


@pytest.mark.parametrize("kind", ["decision", "feedback", "explanation"])
def test_the_spelled_out_batch_leaf_is_the_leaf_encoders(kind: str) -> None:
    root = bytes(range(32))
    for size, at in ((1, 0), (256, 1_767_225_600_000_000), (2**40, -1)):
        want = LV.BatchLeaf(kind, size, root, at).leaf_hash()
        assert EB.batch_leaf_hash(kind, size, root, at) == want
    with pytest.raises(LV.LeafError):
        EB.batch_leaf_hash(kind, 1, b"short", 0)


def test_commit_decisions_matches_the_leaf_encoder_for_new_and_old_rows() -> None:
    rows = [_row(c) for c in VARIANTS]  # enough rows for the page-at-a-time path
    assert len(rows) >= 8
    salts, coms, hashes = SE.commit_decisions(rows)
    assert len({bytes(s) for s in salts}) == len(rows)
    for r, s, c, h in zip(rows, salts, coms, hashes, strict=True):
        # the context is committed with the inputs (erasure removes both), not in the leaf
        assert c == LV.inputs_commitment(r[10], r[11], r[12], s, r[17])  # type: ignore[arg-type]
        assert h == SE.decision_leaf(r[:17] if r[17] is not None else r, c).leaf_hash()
    # rows of 16 columns (stores upgraded from before scores and context) take the other path
    old = [r[:16] for r in rows]
    salts, coms, hashes = SE.commit_decisions(old)
    for r, c, h in zip(old, coms, hashes, strict=True):
        assert h == SE.decision_leaf(r, c).leaf_hash()


def test_two_writers_and_the_ledger_interleave_into_one_log(store: Store, tmp_path: Path) -> None:
    # each writer keeps its own copy of the head; when another appended, its guarded
    # update misses and it must re-read the head, or the log would fork
    ev = SL.append(store, deploy("churn", "a"))
    a, b = D.Appender(store), D.Appender(store)
    try:
        a.append(_rows(2, 0, ev.seq))
        a.append(_rows(1, 2, ev.seq))  # a's copy is current: the guarded update path
        b.append(_rows(3, 3, ev.seq))  # b has no copy yet
        a.append(_rows(1, 6, ev.seq))  # a's copy is stale now
        SL.append(store, deploy("churn", "b", 2))
        b.append(_rows(2, 7, ev.seq))
        a.append(_rows(1, 9, ev.seq))
    finally:
        a.close()
        b.close()
    report = EA.verify(store, decisions=True)
    assert report.ok, report.problems[:3]
    assert report.decisions == 10 and report.entries == 8
    with store.read() as conn:
        assert [e[0] for e in SE.log_entries(conn)] == list(range(8))


@pytest.mark.parametrize("workers", [1, 2])
def test_a_decision_added_outside_chronoml_is_named(
    store: Store, tmp_path: Path, workers: int
) -> None:
    # verify skips the anti-join when every row was matched to its item; one more row
    # than the items matched must bring it back, in one process or split across two
    fill(store, tmp_path)
    cols = ", ".join(D_COLUMNS)
    sql(
        store,
        f"INSERT INTO decisions ({cols}) SELECT '0190a000-0000-7000-8000-00000000bad0', {cols.split(', ', 1)[1]} "
        "FROM decisions WHERE id = '0190a000-0000-7000-8000-000000000003'",
    )
    report = EA.verify(store, decisions=True, workers=workers)
    assert not report.ok
    assert [(p.what, p.reason) for p in report.problems] == [
        (
            "decision 0190a000-0000-7000-8000-00000000bad0",
            "it is not in the evidence log: added outside chronoml",
        )
    ]


def _leaf_of(store: Store, ref: str) -> bytes:
    with store.read() as conn:
        item = SE.item_in(conn, "decision", ref)
    assert item is not None
    return bytes(item[4])


def test_leaf_bytes_moved_between_two_decisions_are_named(store: Store, tmp_path: Path) -> None:
    # the two stored leaves, joined, are what they were: a page compared joined must
    # still see that each leaf is a 32-byte hash and check the rows one by one
    fill(store, tmp_path)
    a, b = (
        _leaf_of(store, "0190a000-0000-7000-8000-000000000005"),
        _leaf_of(store, "0190a000-0000-7000-8000-000000000006"),
    )
    drop_guards(store)
    change = "UPDATE evidence_items SET leaf = :v WHERE kind = 'decision' AND ref = :k"
    sql(store, change, {"v": a[:31], "k": "0190a000-0000-7000-8000-000000000005"})
    sql(store, change, {"v": a[31:] + b, "k": "0190a000-0000-7000-8000-000000000006"})
    report = EA.verify(store, decisions=True, workers=1)
    assert not report.ok
    assert report.problems[0].what == "decision 0190a000-0000-7000-8000-000000000005"


def _varied_rows(seq: int) -> list[tuple[object, ...]]:
    """Rows with every kind of value the encoding has: none, non-ASCII, scores, context."""
    rows = []
    for i, change in enumerate(c for c in VARIANTS if 14 not in c or c[14] is None):
        if 15 in change and not math.isfinite(float(change[15])):  # type: ignore[arg-type]
            continue
        row = list(_row(change))
        row[0] = f"{str(row[0])[:34]}{i + 1:02d}"
        row[6] = seq
        rows.append(tuple(row))
    return rows


def test_verify_hashes_whole_pages_of_varied_rows_without_the_row_by_row_path(
    store: Store,
) -> None:
    # a page that the fast path does not cover still verifies (row by row), so only this
    # shows the page-at-a-time encoding (the server's preimages on PostgreSQL) is right
    ev = SL.append(store, deploy("churn", "a"))
    app = D.Appender(store)
    try:
        rows = _varied_rows(ev.seq)
        app.append(rows)  # type: ignore[arg-type]
        app.append([(f"1{str(r[0])[1:]}", *r[1:]) for r in rows])  # type: ignore[arg-type]
    finally:
        app.close()
    with store.read() as conn:
        picked = [int(e[0]) for e in SE.log_entries(conn) if e[1] == "decision"]
    if store.is_sqlite:
        pages = list(EB.decision_items(store.engine, True, picked[0], picked[-1] + 1))
        got = [DC._fast(p) for p in pages]
    else:
        pages = list(EP.decision_preimages(store.engine, [(picked[0], picked[-1] + 1)]))
        got = [DC._fast_preimages(p) for p in pages]
    assert sum(len(p) for p in pages) == 2 * len(rows)
    assert all(g is not None for g in got)
    assert EA.verify(store, decisions=True, workers=1).ok


def test_a_page_with_values_the_fast_path_leaves_out_still_verifies(store: Store) -> None:
    # infinite outputs and latencies (SQLite keeps no NaN: it reads back as NULL)
    ev = SL.append(store, deploy("churn", "a"))
    kept = [c for c in VARIANTS if not any(v != v for v in c.values())]
    rows = [
        (f"0190a000-0000-7000-a000-{i:012d}", *_row(c)[1:6], ev.seq, *_row(c)[7:])
        for i, c in enumerate(kept)
    ]
    assert any(r[14] is not None and not math.isfinite(float(r[14])) for r in rows)  # type: ignore[arg-type]
    app = D.Appender(store)
    try:
        app.append(rows)  # type: ignore[arg-type]
    finally:
        app.close()
    report = EA.verify(store, decisions=True, workers=1)
    assert report.ok, report.problems[:3]
    assert report.decisions == len(rows)


def test_a_window_checks_its_batches_and_names_a_row_added_outside_chronoml(
    store: Store, tmp_path: Path
) -> None:
    # the anti-join over every row runs beside the window's check: its finding and the
    # window's own must both come back
    fill(store, tmp_path)
    with store.read() as conn:
        batches = [e for e in SE.log_entries(conn) if e[1] == "decision"]
    last = batches[-1]
    window = Window(int(last[5]), int(last[5]) + 1)
    report = EA.verify(store, decisions=True, window=window)
    assert report.ok, report.problems
    assert report.decisions == int(last[3])
    cols = ", ".join(D_COLUMNS)
    sql(
        store,
        f"INSERT INTO decisions ({cols}) SELECT '0190a000-0000-7000-8000-00000000bad0', {cols.split(', ', 1)[1]} "
        "FROM decisions WHERE id = '0190a000-0000-7000-8000-000000000003'",
    )
    drop_guards(store)
    sql(
        store,
        "UPDATE decisions SET output = :v WHERE id = :k",
        {"v": "0.99", "k": "0190a000-0000-7000-8000-000000000010"},
    )
    report = EA.verify(store, decisions=True, window=window)
    assert not report.ok
    named = [(p.what, p.reason) for p in report.problems if p.what.startswith("decision ")]
    assert named == [
        (
            "decision 0190a000-0000-7000-8000-000000000010",
            "its stored row no longer matches its committed leaf",
        ),
        (
            "decision 0190a000-0000-7000-8000-00000000bad0",
            "it is not in the evidence log: added outside chronoml",
        ),
    ]
    # a window before the edited batch does not see the edit, and still sees the row
    earlier = Window(int(batches[0][5]), int(batches[0][5]) + 1)
    report = EA.verify(store, decisions=True, window=earlier)
    assert [p.what for p in report.problems] == ["decision 0190a000-0000-7000-8000-00000000bad0"]
