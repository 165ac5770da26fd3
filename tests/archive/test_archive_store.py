"""Archiving at the store level: windows, lookups and the evidence log are the same after."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from archive_support import log

from chronoml.domain.archive import ArchiveError, parse_target
from chronoml.domain.feedback import Label
from chronoml.evidence import audit
from chronoml.ids import new_id
from chronoml.store import Store, blocks
from chronoml.store import archive as SA
from chronoml.store import decision_reads as DR
from chronoml.store import decisions as D
from chronoml.store import feedback as FB
from chronoml.store import timed_columns as TC
from chronoml.store import timeline_reads as TR
from chronoml.store.archive_objects import Folder


@pytest.fixture
def store(store_url: str, tmp_path: Path) -> Any:
    s = Store.open(store_url, tmp_path / "home")
    s.upgrade()
    yield s
    s.close()


def canon(w: D.Window) -> pd.DataFrame:
    df = pd.DataFrame(
        {**{c: list(v) for c, v in w.columns.items()}, "out": w.outputs, "variant": w.variants}
    )
    if w.context is not None:  # each row's context, as it came and as added since
        df["context"] = [json.dumps(c, sort_keys=True) for c in w.context]
    return df.sort_values(["variant", "x", "k"], na_position="first").reset_index(drop=True)


CASES = [(0, 10**9, None, False), (1_003_000, 1_012_000, "b", False), (0, 10**9, None, True)]


def charts(store: Store, layouts: D.Layouts) -> Any:
    """What the UI's charts read: served decisions, labels as they arrived, and the drift
    grid's timed columns (each version's decisions in time order)."""
    s = TR.served(store, "e", 0, 10**9)
    versions = [s.versions[v] for v in s.version]
    served = sorted(zip(s.ts.tolist(), versions, s.latency_ms.tolist(), strict=True))
    labelled = TR.labels_since(store, "e", 0)
    by_version: dict[tuple[str, str], list[TC.TimedPart]] = {}
    for p in TC.parts(store, layouts, "e", 0, 10**9):
        by_version.setdefault((p.variant, p.version), []).append(p)
    timed = {}
    for key, ps in sorted(by_version.items()):
        ts = np.concatenate([p.ts for p in ps])
        order = np.argsort(ts, kind="stable")
        cols = {c: np.concatenate([p.columns[c] for p in ps])[order] for c in ps[0].columns}
        outs = np.concatenate([p.outputs for p in ps])[order]
        frame = pd.DataFrame({"ts": ts[order], **cols, "out": outs})
        timed[key] = frame.astype({"city": object})
    return served, labelled, timed


def answers(store: Store, layouts: D.Layouts, ids: list[str]) -> Any:
    wins = [
        canon(D.window(store, layouts, "e", s, e, variant=v, include_shadow=sh, with_context=c))
        for s, e, v, sh in CASES
        for c in (False, True)
    ]
    rows = [D.get(store, i) for i in ids[::97]]
    keys = DR.keys(store, "e", 0, 10**9, include_shadow=True)
    frames = [b.frame for b in DR.batches(store, layouts, "e", 0, 10**9, include_shadow=False)]
    some = [b.ids for b in DR.batches(store, layouts, "e", 0, 0, include_shadow=False, ids=ids[:7])]
    lab = sorted(map(tuple, DR.outputs_and_labels(store, "e", 0, 10**9)), key=repr)
    frame = pd.concat(frames, ignore_index=True)
    return wins, rows, keys, frame, some, lab, D.count(store, "e"), charts(store, layouts)


def test_archived_windows_lookups_and_evidence_match(store: Store, tmp_path: Path) -> None:
    layouts = D.Layouts(store)
    ids = log(store, layouts, 1500, 1_000_000, "a")
    ids += log(store, layouts, 900, 1_004_000, "b")
    ids += log(store, layouts, 200, 1_002_000, "b", shadow=True)
    blocks.compact(store, upto=1_008_000)  # a block spans the cut below
    labels = [Label(i, k % 2) for k, i in enumerate(ids[::11])]
    FB.record(store, labels, actor="test")
    later = [Label(i, None, context={"region": f"r{k % 3}"}) for k, i in enumerate(ids[1::13])]
    FB.record(store, later, actor="test")
    before = answers(store, layouts, ids)
    served, labelled, timed = before[-1]
    answered = [k for k in range(0, 2600, 11) if k < 2400]  # the last 200 are shadow
    assert len(served) == 2400 and len(labelled) == len(answered)
    assert sum(len(f) for f in timed.values()) == 2400

    target = parse_target(f"file://{tmp_path / 'objects'}")
    got = SA.archive(store, layouts, 1_006_000, target, settle_us=0, chunk_rows=700)
    assert got.rows > 0 and got.files >= 2
    status = SA.status(store)["endpoints"][0]
    assert status["archived_decisions"] == got.rows > 0 and status["archived_to"] == 1_006_000
    assert status["live_decisions"] + status["archived_decisions"] == 2600
    # every file is named by its digest
    for p in (tmp_path / "objects").iterdir():
        assert p.name == hashlib.sha256(p.read_bytes()).hexdigest() + ".parquet"
    mid = answers(store, layouts, ids)
    SA.archive(store, layouts, 10**9, target, settle_us=0)
    after = answers(store, layouts, ids)
    for b, m, a in zip(before, mid, after, strict=True):
        for x, y in ((b, m), (b, a)):
            if isinstance(x, list) and x and isinstance(x[0], pd.DataFrame):
                for fx, fy in zip(x, y, strict=True):
                    pd.testing.assert_frame_equal(fx, fy)
            elif isinstance(x, pd.DataFrame):
                pd.testing.assert_frame_equal(x, y)
            elif isinstance(x, tuple) and len(x) == 3 and isinstance(x[2], dict):  # charts
                assert x[:2] == y[:2]
                assert list(x[2]) == list(y[2])
                for k in x[2]:
                    pd.testing.assert_frame_equal(x[2][k], y[2][k])
            else:
                assert x == y
    assert SA.status(store)["endpoints"][0]["live_decisions"] == 0
    report = audit.verify(store, decisions=True)
    assert report.ok, report.reason
    assert report.decisions == 2600


def test_a_changed_or_missing_archive_file_is_named(store: Store, tmp_path: Path) -> None:
    layouts = D.Layouts(store)
    log(store, layouts, 300, 1_000_000, "a")
    folder = tmp_path / "objects"
    SA.archive(store, layouts, 10**9, parse_target(f"file://{folder}"), settle_us=0)
    (path,) = list(folder.iterdir())
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    report = audit.verify(store, decisions=True)
    assert not report.ok
    assert report.first_bad == f"archive file {path.name.removesuffix('.parquet')}"
    assert (
        report.reason
        == "archive file " + path.name.removesuffix(".parquet") + " no longer matches its digest"
    )
    path.unlink()
    report = audit.verify(store, decisions=True)
    assert not report.ok and "missing" in report.reason


def test_nothing_is_deleted_when_the_file_does_not_read_back(store: Store, tmp_path: Path) -> None:
    layouts = D.Layouts(store)
    log(store, layouts, 50, 1_000_000, "a")

    class Lossy(Folder):
        def get(self, key: str) -> bytes:  # a store that corrupts what it keeps
            return super().get(key)[:-1] + b"\x00"

    target = parse_target(f"file://{tmp_path / 'objects'}")
    with pytest.raises(ArchiveError, match="another digest"):
        SA.archive(store, layouts, 10**9, target, settle_us=0, objects=Lossy(target))
    assert D.count(store, "e") == 50 and SA.status(store)["endpoints"][0]["files"] == 0
    assert audit.verify(store, decisions=True).ok


def test_ingest_blocks_of_one_time_split_across_chunks_archive_whole(
    store: Store, tmp_path: Path
) -> None:
    """Two requests logged at the same microsecond, the second past a chunk's room: the
    chunk ends before that time, and the next one takes both blocks."""
    from chronoml.domain import codec
    from chronoml.ids import new_block_ids, new_id
    from chronoml.store import ingest

    sch = (("x", "float"),)
    layout = codec.layout_id(sch)
    D.Layouts(store).ensure(layout, sch)
    app = D.Appender(store)
    ids: list[str] = []
    for ts in (1_000_000, 1_000_000, 1_000_500):
        block_id, held = new_block_ids(40)
        nums = [codec.encode(pd.DataFrame({"x": [float(i)]}), sch)[0][0] for i in range(40)]
        block = ingest.Block(
            block_id, held, ts, "e", "a", "m", "1", 1, False, "u", new_id(), layout, 1.0,
            nums, [None] * 40, ["0"] * 40, [0.0] * 40, None, None,
        )  # fmt: skip
        app.append([], (), [block])
        ids += held
    app.close()
    target = parse_target(f"file://{tmp_path / 'objects'}")
    got = SA.archive(store, D.Layouts(store), 10**9, target, settle_us=0, chunk_rows=60)
    assert got.rows == 120
    assert D.count(store, "e") == 120
    assert sorted(d.id for d in (D.get(store, i) for i in ids) if d is not None) == sorted(ids)
    assert audit.verify(store, decisions=True).ok


def test_a_decision_logged_late_into_the_range_is_not_deleted_unarchived(
    store: Store, tmp_path: Path
) -> None:
    """The commit deletes the archived range by time; decisions that landed in it after
    the rows were read (in no file) make the count differ: nothing is deleted."""
    layouts = D.Layouts(store)
    ids = log(store, layouts, 300, 1_000_000, "a")
    late: list[str] = []

    class Late(Folder):
        def put(self, key: str, data: bytes) -> None:  # decisions logged meanwhile
            super().put(key, data)
            if not late:
                late.extend(log(store, layouts, 5, 1_000_005, "a"))

    target = parse_target(f"file://{tmp_path / 'objects'}")
    with pytest.raises(ArchiveError, match="decisions in the range at commit"):
        SA.archive(store, layouts, 10**9, target, settle_us=0, objects=Late(target))
    assert D.count(store, "e") == 305 and SA.status(store)["endpoints"][0]["files"] == 0
    got = SA.archive(store, layouts, 10**9, target, settle_us=0)
    assert got.rows == 305 and D.count(store, "e") == 305
    assert {d.id for d in (D.get(store, i) for i in [*ids, *late]) if d is not None} == {
        *ids,
        *late,
    }
    assert audit.verify(store, decisions=True).ok


def test_an_archived_window_of_numeric_inputs_is_the_live_one_bit_for_bit(
    store: Store, tmp_path: Path
) -> None:
    """Numeric inputs are decoded straight into the window's arrays: split floats,
    decimals, few-valued floats and integers come back as the database gave them."""
    from chronoml.domain import codec

    sch = (("x", "float"), ("amount", "float"), ("c", "float"), ("k", "int"))
    layout = codec.layout_id(sch)
    layouts = D.Layouts(store)
    layouts.ensure(layout, sch)
    rng = np.random.default_rng(3)
    rows = []
    request = new_id()
    for i in range(3000):
        df = pd.DataFrame(
            {
                "x": [rng.normal() if i != 7 else np.nan],
                "amount": [round(float(rng.lognormal(3, 1)), 2)],
                "c": [0.5],
                "k": [int(rng.integers(-9, 9))],
            }
        )
        num, txt = codec.encode(df, sch)
        variant = "a" if i % 4 else "b"
        rows.append(
            D.DecisionRow(
                new_id(), 1_000_000 + 10 * i, "e", variant, "m", "1" if variant == "a" else "2",
                1, i % 9 == 0, f"u{i % 7}", request, layout, num[0], txt[0], "0", 0.0, 1.0,
            )
        )  # fmt: skip
    D.insert_many(store, rows)
    cases = [(0, 10**9, None, False), (1_004_005, 1_021_000, "b", False), (0, 10**9, None, True)]

    def windows() -> list[D.Window]:
        return [
            D.window(store, layouts, "e", s, e, variant=v, include_shadow=sh)
            for s, e, v, sh in cases
        ]

    def bits(w: D.Window) -> dict[str, Any]:
        order = np.lexsort([w.outputs, w.variants.astype(str)])
        got = {c: v[order].view("<i8").tolist() for c, v in w.columns.items()}
        return {**got, "variants": w.variants[order].tolist(), "rows": w.rows}

    live = [bits(w) for w in windows()]
    target = parse_target(f"file://{tmp_path / 'objects'}")
    got = SA.archive(store, layouts, 10**9, target, settle_us=0, file_rows=700)
    assert got.rows == 3000 and got.files > 4
    assert [bits(w) for w in windows()] == live


def test_fairness_over_archived_blocks_answers_as_before(store: Store, tmp_path: Path) -> None:
    # the outcome blocks end where the archive starts: the archived part is read from its files
    from chronoml.monitor.fairness import fairness

    layouts = D.Layouts(store)
    ids = log(store, layouts, 1500, 1_000_000, "a")
    FB.record(store, [Label(i, k % 2) for k, i in enumerate(ids[::3])], actor="test")
    blocks.compact(store, upto=1_008_000)

    def report() -> Any:
        return fairness(store, "e", "ch", 0, 10**9, min_group_size=1)

    before = report()
    assert before.report["rows"] == 500
    target = parse_target(f"file://{tmp_path / 'objects'}")
    SA.archive(store, layouts, 1_004_000, target, settle_us=0)  # a block spans the cut
    assert report() == before
    SA.archive(store, layouts, 10**9, target, settle_us=0)  # past the blocks' watermark
    assert report() == before
