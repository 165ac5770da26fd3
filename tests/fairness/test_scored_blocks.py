"""Estimated quality read from the outcome blocks gives exactly what the raw rows give:
two variants interleaved in time, tied timestamps, rows without scores, outputs that are
the scores themselves, labels sent and changed after compaction, a window that cuts a
block; and blocks without scores fall back to the rows."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest
from sqlalchemy import func, select

from chronoml.domain import codec
from chronoml.ids import new_block_ids, new_ids
from chronoml.monitor.estimated import estimated_quality
from chronoml.store import blocks, ingest, schema
from chronoml.store import decisions as D
from chronoml.store import outcome_blocks as OB
from chronoml.store import outcomes as O
from chronoml.store import scored_blocks as SB

SCHEMA = (("x", "float"),)
N = 1200
WINDOW = (1000 + N // 2, 10**6)
REFERENCE = (0, 1000 + N // 2)


def _populate(cm: Any) -> list[str]:
    layouts = D.Layouts(cm.store)
    layout = codec.layout_id(SCHEMA)
    layouts.ensure(layout, SCHEMA)
    O.ensure_classes(cm.store, "m", "1", [0, 1])
    rng = np.random.default_rng(21)
    ids = new_ids(N)
    s = rng.random(N)
    scores = codec.pack_rows(np.column_stack([1 - s, s]))
    packed = codec.pack_rows(rng.normal(size=(N, 1)))
    rows = []
    for i in range(N):
        variant = "b" if i % 3 == 0 else "a"
        # every ninth: a pyfunc answering with its class scores
        p1 = float(s[i])
        output = orjson.dumps([1 - p1, p1]).decode() if i % 9 == 4 else str(int(p1 > 0.5))
        score = None if i % 17 == 0 else scores[i]
        ts = 1000 + i - (i % 2)  # pairs of decisions share a timestamp
        rows.append(
            (ids[i], ts, "e", variant, "m", "1", 1, False, None, "0190a000-0000-7000-9000-0000000000ff", layout, packed[i],
             None, output, float(s[i] > 0.5), 1.0, score, None)
        )  # fmt: skip
    app = D.Appender(cm.store)
    app.append(rows)
    app.close()
    truth = (rng.random(N) < s**2).astype(int)
    cm.feedback([(ids[i], int(truth[i]), None) for i in range(0, N) if i % 5 != 0])
    return ids


def _estimate(cm: Any, **kw: Any) -> dict[str, Any]:
    return estimated_quality(
        cm.store, "e", *WINDOW, reference_start=REFERENCE[0], reference_end=REFERENCE[1], **kw
    ).as_dict()


def _same(a: SB.Scored, b: SB.Scored) -> None:
    assert len(a) == len(b)
    for name in ("variants", "model_names", "versions", "outputs", "labels"):
        assert getattr(a, name).tolist() == getattr(b, name).tolist(), name
    assert np.array_equal(a.scores(2), b.scores(2), equal_nan=True)


def _rows(cm: Any, start: int, end: int, **kw: Any) -> SB.Scored:
    return SB.from_outcomes(O.outcomes(cm.store, "e", start, end, with_context=False, **kw))


def test_scored_blocks_answer_as_the_rows_do(cm: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = _populate(cm)
    before = _estimate(cm)
    assert before["variants"] and before["variants"][0]["reference"]["rows"] >= 50

    monkeypatch.setattr(OB, "SETTLE_US", 0)  # the labels so far go into the blocks
    mark = 1000 + N - 100
    blocks.compact(cm.store, ["e"], upto=mark)  # the last 100 stay rows
    with cm.store.read() as conn:
        assert conn.execute(schema.outcome_blocks.select()).first() is not None
    # the blocked part must not be read from the rows
    real = O.outcomes
    seen: list[tuple[int, int]] = []

    def spy(store: Any, endpoint: str, start: int, end: int, **kw: Any) -> O.Outcomes:
        seen.append((start, end))
        return real(store, endpoint, start, end, **kw)

    monkeypatch.setattr(O, "outcomes", spy)
    assert _estimate(cm) == before
    assert seen and all(s >= min(e, mark) for s, e in seen)
    monkeypatch.setattr(O, "outcomes", real)
    _same(SB.scored(cm.store, "e", 0, 10**6), _rows(cm, 0, 10**6))

    # labels sent and changed after compaction are read late, in id order
    cm.feedback([(ids[i], 1, None) for i in range(0, N, 5)])
    cm.feedback([(ids[i], 0, None) for i in range(1, N, 7)], update=True)
    for start, end, kw in (
        (0, 10**6, {}),
        (1300, 1900, {}),  # cuts blocks
        (0, 10**6, {"variant": "b"}),
        (0, 10**6, {"version": "1"}),
    ):
        _same(SB.scored(cm.store, "e", start, end, **kw), _rows(cm, start, end, **kw))
    after = _estimate(cm)
    blocks.drop(cm.store, "e")
    assert _estimate(cm) == after


def test_blocks_without_scores_fall_back_to_the_rows(cm: Any) -> None:
    _populate(cm)
    before = _estimate(cm)
    blocks.compact(cm.store, ["e"], upto=10**6)
    OBT = schema.outcome_blocks
    # an erasure drops the outcome blocks it touches: their windows are read from the rows
    with cm.store.write() as conn:
        first = conn.execute(select(func.min(OBT.c.block_id))).scalar_one()
        conn.execute(OBT.delete().where(OBT.c.block_id == first))
    _same(SB.scored(cm.store, "e", 0, 10**6), _rows(cm, 0, 10**6))
    assert _estimate(cm) == before
    # blocks built before their scores were kept
    blocks.drop(cm.store, "e")
    blocks.compact(cm.store, ["e"], upto=10**6)
    with cm.store.write() as conn:
        conn.execute(OBT.update().values(scores=None, score_lengths=None))
    _same(SB.scored(cm.store, "e", 0, 10**6), _rows(cm, 0, 10**6))
    assert _estimate(cm) == before


def test_ingest_blocks_inside_the_compacted_span_come_in_time_order(cm: Any) -> None:
    # a request of many rows logged as one ingest block, amid single-row decisions that
    # are then compacted: the blocks' path merges it in where the rows' path has it
    _populate(cm)
    per = 40
    block_id, held = new_block_ids(per)
    s = np.random.default_rng(5).random(per)
    scores = codec.pack_rows(np.column_stack([1 - s, s]))
    layout = codec.layout_id(SCHEMA)
    block = ingest.Block(
        block_id, held, 1000 + N // 3, "e", "a", "m", "1", 1, False, None, new_ids(1)[0],
        layout, 2.0, codec.pack_rows(np.zeros((per, 1))), [None] * per,
        [str(int(p > 0.5)) for p in s], [float(p > 0.5) for p in s], scores, None,
    )  # fmt: skip
    app = D.Appender(cm.store)
    app.append([], (), [block])
    app.close()
    rows = _rows(cm, 0, 10**6)
    blocks.compact(cm.store, ["e"], upto=10**6)
    assert blocks.watermark(cm.store, "e") == 10**6
    _same(SB.scored(cm.store, "e", 0, 10**6), rows)
