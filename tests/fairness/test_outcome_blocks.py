"""Fairness read from outcome blocks gives exactly what the raw rows give: labels and
context sent after compaction, label updates, several versions, a window that cuts a block,
and after compaction folds the late labels in."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from chronoml.domain import codec
from chronoml.domain.reports import FairnessReport
from chronoml.ids import new_ids
from chronoml.monitor.fairness import fairness
from chronoml.monitor.feedback import Label
from chronoml.store import blocks, schema
from chronoml.store import decisions as D
from chronoml.store import outcome_blocks as OB
from chronoml.store import outcomes as O

SCHEMA = (("x", "float"),)
N = 900


def _populate(cm: Any) -> list[str]:
    layouts = D.Layouts(cm.store)
    layout = codec.layout_id(SCHEMA)
    layouts.ensure(layout, SCHEMA)
    rng = np.random.default_rng(11)
    ids = new_ids(N)
    groups = rng.choice(np.array(["a", "b", "c"]), N, p=[0.5, 0.3, 0.2])
    pred = rng.integers(0, 2, N)
    packed = codec.pack_rows(rng.normal(size=(N, 1)))
    rows = []
    for i in range(N):
        ctx = None if i % 10 == 0 else orjson.dumps({"group": str(groups[i])}).decode()
        version = "1" if i < 600 else "2"
        rows.append(
            (ids[i], 1000 + i, "e", f"m-v{version}", "m", version, 1, False, None, "0190a000-0000-7000-9000-0000000000ff",
             layout, packed[i], None, str(pred[i]), float(pred[i]), 1.0, None, ctx)
        )  # fmt: skip
    app = D.Appender(cm.store)
    app.append(rows)
    app.close()
    return ids


def _same(ra: FairnessReport, rb: FairnessReport) -> None:
    a, b = ra.as_dict(), rb.as_dict()
    assert a["window"]["rows"] == b["window"]["rows"]
    assert a["model"] == b["model"] and a["unlabelled"] == b["unlabelled"]
    ga = {g["group"]: g for g in a["groups"]}
    gb = {g["group"]: g for g in b["groups"]}
    assert set(ga) == set(gb)
    for k in ga:
        for m in ("count", "selection_rate", "true_positive_rate", "false_positive_rate"):
            assert ga[k][m] == pytest.approx(gb[k][m], nan_ok=True), (k, m)
    for k, d in a["disparities"].items():
        assert d["value"] == pytest.approx(b["disparities"][k]["value"], nan_ok=True), k


def _raw(cm: Any, **kw: Any) -> FairnessReport:
    """The same question answered from the rows: the blocks dropped, then rebuilt."""
    blocks.drop(cm.store, "e")
    try:
        assert OB.columns(cm.store, "e", 0, 10**6) is not None  # no blocks: all rows
        return fairness(cm.store, "e", "group", 0, 10**6, **kw)
    finally:
        blocks.compact(cm.store, ["e"], upto=10**6)


def test_outcome_blocks_answer_as_the_rows_do(cm: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = _populate(cm)
    rng = np.random.default_rng(12)
    truth = rng.integers(0, 2, N)
    cm.feedback([(ids[i], int(truth[i]), None) for i in range(0, N, 2)])
    before = fairness(cm.store, "e", "group", 0, 10**6)

    blocks.compact(cm.store, ["e"], upto=10**6)
    assert blocks.count(cm.store, "e") == N
    with cm.store.read() as conn:
        assert conn.execute(schema.outcome_blocks.select()).first() is not None
    _same(fairness(cm.store, "e", "group", 0, 10**6), before)

    # after compaction: more labels, changed labels, and context that moves decisions
    cm.feedback([(ids[i], int(truth[i]), None) for i in range(1, N, 2)])
    cm.feedback([(ids[i], int(1 - truth[i]), None) for i in range(0, 300, 6)], update=True)
    moved = [Label(ids[i], None, None, {"group": "c"}) for i in range(0, 300, 5)]
    cm.feedback(moved, update=True)
    got = fairness(cm.store, "e", "group", 0, 10**6)
    assert got.as_dict()["unlabelled"] == 0
    _same(got, _raw(cm))
    # a window that cuts the block, and another version
    for kw in ({"version": "2"}, {"version": "1"}):
        _same(fairness(cm.store, "e", "group", 0, 10**6, **kw), _raw(cm, **kw))
    cut = fairness(cm.store, "e", "group", 1100, 1700)
    blocks.drop(cm.store, "e")
    _same(cut, fairness(cm.store, "e", "group", 1100, 1700))
    blocks.compact(cm.store, ["e"], upto=10**6)

    # compaction folds the settled labels into the blocks: nothing is left to read late
    monkeypatch.setattr(OB, "SETTLE_US", 0)
    assert OB.refresh_labels(cm.store, "e") >= 1
    with cm.store.read() as conn:
        top = conn.execute(schema.feedback.select().order_by(schema.feedback.c.id.desc())).first()
        tos = {r.labels_to for r in conn.execute(schema.outcome_blocks.select()).all()}
    assert top is not None and tos == {top.id}
    _same(fairness(cm.store, "e", "group", 0, 10**6), got)
    cols = OB.columns(cm.store, "e", 0, 10**6)
    assert cols is not None and len(cols) == N
    labels = O.outcomes(cm.store, "e", 0, 10**6).labels
    assert np.array_equal(cols.labels, np.asarray(labels, dtype=float))


def test_blocks_from_before_outcome_blocks_fall_back_to_the_rows(cm: Any) -> None:
    ids = _populate(cm)
    cm.feedback([(ids[i], 1, None) for i in range(N)])
    blocks.compact(cm.store, ["e"], upto=10**6)
    with cm.store.write() as conn:
        conn.execute(schema.outcome_blocks.delete())
    assert OB.columns(cm.store, "e", 0, 10**6) is None
    rep = fairness(cm.store, "e", "group", 0, 10**6, version="1")
    assert rep.as_dict()["window"]["rows"] == 600 and rep.window.rows == 600


def test_an_outcome_block_that_no_longer_matches_its_block_is_not_read(cm: Any) -> None:
    """A block shortened after its outcome copy was built (as archiving a cut through it
    does) must not pair one row's outcome with another's: the rows answer instead."""
    ids = _populate(cm)
    cm.feedback([(ids[i], i % 2, None) for i in range(N)])
    blocks.compact(cm.store, ["e"], upto=10**6)
    assert OB.columns(cm.store, "e", 0, 10**6) is not None
    B = schema.decision_blocks
    with cm.store.write() as conn:
        first = conn.execute(B.select().order_by(B.c.id)).first()
        assert first is not None
        conn.execute(B.update().where(B.c.id == first.id).values(rows=first.rows - 1))
    assert OB.columns(cm.store, "e", 0, 10**6) is None
