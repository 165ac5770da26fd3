"""A window's scored decisions for estimated quality: from the outcome blocks, else the rows.

CBPE reads, per decision, who decided it (variant, model name, version), its
output, its latest label and its packed class scores. Below the watermark
these come from the outcome blocks (:mod:`chronoml.store.outcome_blocks`),
decoded per column and block; labels recorded after a block's ``labels_to``
are read from the feedback table and applied in id order, as for fairness.
The whole window is read from the rows (:func:`chronoml.store.outcomes.outcomes`)
when one of its blocks has no outcome block or no scores (built before 0016,
or dropped by an erasure), or when part of it is archived; both paths give the
same values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from sqlalchemy import select

from chronoml.store import archive_reads as AR
from chronoml.store import outcome_blocks as OBK
from chronoml.store import outcomes as O
from chronoml.store import schema, window_lock
from chronoml.store.database import Store

OB = schema.outcome_blocks
B = schema.decision_blocks
FB = schema.feedback
CHUNK = 65_536


@dataclass
class Scored:
    """One entry per served decision, in time order within the blocked part and the tail.

    ``outputs`` and ``labels`` are object arrays of the decoded JSON values (None:
    none); the scores are the packed bytes end to end with each row's byte length
    (-1: none)."""

    variants: np.ndarray[Any, Any]
    model_names: np.ndarray[Any, Any]
    versions: np.ndarray[Any, Any]
    outputs: np.ndarray[Any, Any]
    labels: np.ndarray[Any, Any]
    score_lengths: np.ndarray[Any, Any]
    score_bytes: bytes

    def __len__(self) -> int:
        return len(self.score_lengths)

    def groups(self) -> list[tuple[str, str, str]]:
        """The distinct (variant, model name, version), in first-seen order."""
        cols = (self.variants.tolist(), self.model_names.tolist(), self.versions.tolist())
        return list(dict.fromkeys(zip(*cols, strict=True)))

    def take(self, order: np.ndarray[Any, Any]) -> Scored:
        """The decisions at positions ``order``, in that order."""
        lengths = self.score_lengths
        ends = np.cumsum(np.maximum(lengths, 0))
        starts = ends - np.maximum(lengths, 0)
        blob = self.score_bytes
        packed = b"".join([blob[starts[i] : ends[i]] for i in order.tolist()])
        return Scored(
            variants=self.variants[order],
            model_names=self.model_names[order],
            versions=self.versions[order],
            outputs=self.outputs[order],
            labels=self.labels[order],
            score_lengths=lengths[order],
            score_bytes=packed,
        )

    def scores(self, width: int) -> np.ndarray[Any, Any]:
        """An ``(n, width)`` float64 matrix; NaN rows where a row has no scores of that width."""
        n = len(self)
        lengths = self.score_lengths
        want = 8 * width
        if n and width and len(self.score_bytes) == n * want and bool((lengths == want).all()):
            return np.frombuffer(self.score_bytes, dtype="<f8").reshape(n, width).copy()
        out = np.full((n, width), np.nan)
        buf = np.frombuffer(self.score_bytes, dtype=np.uint8)
        starts = np.concatenate([[0], np.cumsum(np.maximum(lengths, 0))[:-1]]).astype(np.int64)
        rows = np.flatnonzero(lengths == want)
        span = np.arange(want, dtype=np.int64)
        for i in range(0, len(rows), CHUNK):
            part = rows[i : i + CHUNK]
            taken = buf[starts[part][:, None] + span].reshape(-1)
            out[part] = taken.view("<f8").reshape(len(part), width)
        return out


def _objects(values: list[Any]) -> np.ndarray[Any, Any]:
    # fromiter keeps a list value whole where assigning a list of lists would broadcast it
    return np.fromiter(values, dtype=object, count=len(values))


def from_outcomes(got: O.Outcomes) -> Scored:
    """The rows' answer in the same shape."""
    return Scored(
        variants=_objects(got.variants),
        model_names=_objects(got.model_names),
        versions=_objects(got.versions),
        outputs=_objects(got.outputs),
        labels=_objects(got.labels),
        score_lengths=np.fromiter(
            (-1 if b is None else len(b) for b in got.scores), dtype=np.int64, count=len(got)
        ),
        score_bytes=b"".join([bytes(b) for b in got.scores if b is not None]),
    )


def _table(texts: list[str | None]) -> np.ndarray[Any, Any]:
    """A column's distinct values decoded, then None (code -1)."""
    return _objects([*(None if t is None else orjson.loads(t) for t in texts), None])


def _blocked(
    store: Store, endpoint: str, start: int, stop: int, variant: str | None, version: str | None
) -> list[Any] | None:
    q = (
        select(
            B.c.id,
            B.c.ts_min,
            B.c.ts_max,
            B.c.rows,
            B.c.variant,
            B.c.model_version,
            OB.c.block_id,
            OB.c.names,
            OB.c.name_codes,
            OB.c.outputs,
            OB.c.output_codes,
            OB.c.labels,
            OB.c.label_codes,
            OB.c.labels_to,
            OB.c.scores,
            OB.c.score_lengths,
        )
        .select_from(B.outerjoin(OB, OB.c.block_id == B.c.id))
        .where(B.c.endpoint == endpoint, B.c.ts_max >= start, B.c.ts_min < stop)
        .where(B.c.shadow.is_(False))
        .order_by(B.c.ts_min)
    )
    if variant is not None:
        q = q.where(B.c.variant == variant)
    if version is not None:
        q = q.where(B.c.model_version == version)
    with store.engine.connect() as conn:
        got = list(conn.execute(q).cursor.fetchall())  # type: ignore[union-attr]
    for r in got:
        # no outcome block, no scores, or one that no longer matches its block (trimmed)
        if r[6] is None or r[14] is None or r[15] is None or len(r[15]) != 4 * int(r[3]):
            return None
    return got


@window_lock.guarded(1)
def scored(
    store: Store,
    endpoint: str,
    start: int,
    end: int,
    *,
    variant: str | None = None,
    version: str | None = None,
) -> Scored:
    """The served decisions of ``endpoint`` in ``[start, end)`` with what CBPE reads."""
    # lazy: blocks imports outcome_blocks, which this module imports
    from chronoml.store import blocks

    mark = blocks.watermark(store, endpoint)
    stop = start if mark is None or start >= mark else min(end, mark)
    got: list[Any] | None = []
    if stop > start:
        got = None if AR.span(store, endpoint, start, stop) else _blocked(
            store, endpoint, start, stop, variant, version
        )  # fmt: skip
    if got is None:
        return from_outcomes(
            O.outcomes(store, endpoint, start, end, variant=variant, version=version,
                       with_context=False)
        )  # fmt: skip
    return _decode(store, got, start, stop, endpoint, end, variant, version)


def _decode(
    store: Store,
    got: list[Any],
    start: int,
    stop: int,
    endpoint: str,
    end: int,
    variant: str | None,
    version: str | None,
) -> Scored:
    ts_of: dict[int, bytes] = {}
    late: list[tuple[int, str, Any]] = []
    ids_of: dict[int, bytes] = {}
    with store.engine.connect() as conn:
        if got:
            # every block's times: the rows come in (time, id) order, as from the rows
            q1 = select(B.c.id, B.c.ts).where(B.c.id.in_([r[0] for r in got]))
            ts_of = dict(conn.execute(q1).all())
            low = min(int(r[13]) for r in got)
            q = select(FB.c.id, FB.c.decision_id, FB.c.label).where(FB.c.id > low)
            late = [(int(f), d, orjson.loads(t)) for f, d, t in conn.execute(q.order_by(FB.c.id))]
            if late:
                q2 = select(OB.c.block_id, OB.c.ids).where(OB.c.block_id.in_([r[0] for r in got]))
                ids_of = dict(conn.execute(q2).all())
    variants, names, versions, outputs, labels, lengths, blobs = [], [], [], [], [], [], []
    times: list[np.ndarray[Any, Any]] = []
    kept: list[tuple[int, Any]] = []
    shaped = False  # an output that is the scores themselves, somewhere
    for bid, lo, hi, _n, vname, ver, _ob, n_t, n_c, o_t, o_c, l_t, l_c, upto, sc, sl in got:
        lens = np.frombuffer(sl, dtype="<i4").astype(np.int64)
        ts = np.frombuffer(ts_of[bid], dtype="<i8")
        sel: Any = slice(None)
        if lo < start or hi >= stop:
            sel = np.flatnonzero((ts >= start) & (ts < stop))
        n_names = np.frombuffer(n_c, dtype="<i4")[sel]
        if not len(n_names):
            continue
        name_table = _objects([*orjson.loads(n_t), None])
        block_labels = _table(orjson.loads(l_t))[np.frombuffer(l_c, dtype="<i4")[sel]]
        if late:
            ids = np.frombuffer(ids_of[bid], dtype=f"S{OBK.ID_WIDTH}")[sel]
            upto_a = np.full(len(ids), int(upto), dtype=np.int64)
            OBK.late_labels(ids, block_labels, upto_a, late)
        if isinstance(sel, slice):
            blob = sc
        else:
            cum = np.concatenate([[0], np.cumsum(np.maximum(lens, 0))])
            blob = b"".join([sc[cum[i] : cum[i + 1]] for i in sel.tolist()])
            lens = lens[sel]
        output_table = _table(orjson.loads(o_t))
        shaped = shaped or any(isinstance(v, dict | list) for v in output_table.tolist())
        block_outputs = output_table[np.frombuffer(o_c, dtype="<i4")[sel]]
        times.append(ts[sel])
        kept.append((bid, sel))
        variants.append(np.full(len(n_names), vname, dtype=object))
        names.append(name_table[n_names])
        versions.append(np.full(len(n_names), ver, dtype=object))
        outputs.append(block_outputs)
        labels.append(block_labels)
        lengths.append(lens)
        blobs.append(blob)
    head = Scored(
        variants=_cat(variants),
        model_names=_cat(names),
        versions=_cat(versions),
        outputs=_cat(outputs),
        labels=_cat(labels),
        score_lengths=np.concatenate(lengths) if lengths else np.empty(0, np.int64),
        score_bytes=b"".join(blobs),
    )
    order = _row_order(store, times, kept)
    head_ts = np.concatenate(times) if times else np.empty(0, np.int64)
    if order is not None:
        head, head_ts = head.take(order), head_ts[order]
    if shaped:
        _label_score_outputs(store, head)
    rest = O.outcomes(store, endpoint, max(start, stop), end, variant=variant, version=version,
                      with_context=False, held_from=start)  # fmt: skip
    tail = from_outcomes(rest)
    both = Scored(
        variants=_cat([head.variants, tail.variants]),
        model_names=_cat([head.model_names, tail.model_names]),
        versions=_cat([head.versions, tail.versions]),
        outputs=_cat([head.outputs, tail.outputs]),
        labels=_cat([head.labels, tail.labels]),
        score_lengths=np.concatenate([head.score_lengths, tail.score_lengths]),
        score_bytes=head.score_bytes + tail.score_bytes,
    )
    if not len(head_ts) or not len(rest.ts) or rest.ts.min() > head_ts[-1]:
        return both
    # decisions of ingest blocks inside the blocks' span come in the tail: merged into
    # (time, id) order, as the rows' path gives them
    ts = np.concatenate([head_ts, rest.ts])
    if not (np.diff(np.sort(ts)) == 0).any():
        return both.take(np.argsort(ts, kind="stable"))
    head_ids = _block_ids(store, kept)
    if order is not None:
        head_ids = head_ids[order]
    ids = np.concatenate([head_ids, np.array(rest.ids, dtype=f"S{OBK.ID_WIDTH}")])
    return both.take(np.lexsort((ids, ts)))


def _row_order(
    store: Store, times: list[np.ndarray[Any, Any]], kept: list[tuple[int, Any]]
) -> np.ndarray[Any, Any] | None:
    """The order that puts the blocks' decisions in (time, id) order, the rows' order
    (blocks of several variants or layouts interleave in time; ids are read only when
    times tie); None when they are in it."""
    if not times:
        return None
    ts = np.concatenate(times)
    if not (np.diff(ts) <= 0).any():
        return None
    if not (np.diff(np.sort(ts)) == 0).any():
        return np.argsort(ts, kind="stable")
    return np.lexsort((_block_ids(store, kept), ts))


def _block_ids(store: Store, kept: list[tuple[int, Any]]) -> np.ndarray[Any, Any]:
    """The ids of the blocks' kept decisions, block after block."""
    with store.engine.connect() as conn:
        q = select(OB.c.block_id, OB.c.ids).where(OB.c.block_id.in_([b for b, _ in kept]))
        ids_of = dict(conn.execute(q).all())
    return np.concatenate(
        [np.frombuffer(ids_of[b], dtype=f"S{OBK.ID_WIDTH}")[sel] for b, sel in kept]
    )


def _cat(parts: list[np.ndarray[Any, Any]]) -> np.ndarray[Any, Any]:
    return np.concatenate(parts) if parts else np.empty(0, dtype=object)


def _label_score_outputs(store: Store, got: Scored) -> None:
    """As the rows do: an output that is the scores themselves (a dict or list, with packed
    scores) stands for the class of the highest score."""
    rows = [
        i
        for i, o in enumerate(got.outputs.tolist())
        if isinstance(o, dict | list) and got.score_lengths[i] >= 0
    ]
    if not rows:
        return
    by: dict[tuple[str, str], list[int]] = {}
    for i in rows:
        by.setdefault((got.model_names[i], got.versions[i]), []).append(i)
    for (name, ver), idx in by.items():
        classes = O.classes_of(store, name, ver)
        if classes is None:
            continue
        p = got.scores(len(classes))[idx]
        for i, row in zip(idx, p, strict=True):
            if not np.isnan(row).any():
                got.outputs[i] = classes[int(row.argmax())]
