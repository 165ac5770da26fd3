"""Outcome blocks: a compacted block's outcomes as columns, for fairness over large windows.

Beside each decision block (:mod:`chronoml.store.blocks`), compaction keeps what
fairness reads of its rows, dictionary-coded per column so that a million rows
decode with a few fancy indexes and one parse per distinct value: the ids
(fixed width), model names, outputs (as logged), context (as logged), the
latest label of each decision among the feedback rows up to ``labels_to``, and
the packed class scores (read by :mod:`chronoml.store.scored_blocks`).

Labels keep arriving after a block is built. A window read adds the feedback
rows after each block's ``labels_to`` (the latest one wins, as everywhere), and
:func:`refresh_labels` (run by every compaction) folds them into the blocks so
that the rows read late stay few. Only feedback recorded at least
``SETTLE_US`` ago is folded in, so a label whose insert commits late is still
read. Context added after the prediction is read from ``decision_context`` and
merged per decision, as for raw rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from sqlalchemy import func, select

from chronoml.store import archive_reads as AR
from chronoml.store import outcomes as O
from chronoml.store import schema, window_lock
from chronoml.store.database import Store
from chronoml.timeutil import now_us

OB = schema.outcome_blocks
B = schema.decision_blocks
D = schema.decisions
FB = schema.feedback
DC = schema.decision_context
ID_WIDTH = 36
SETTLE_US = 60_000_000


def _dictionary(texts: Sequence[str | None]) -> tuple[str, bytes]:
    seen: dict[str, int] = {}
    codes = np.fromiter(
        (-1 if t is None else seen.setdefault(t, len(seen)) for t in texts),
        dtype="<i4",
        count=len(texts),
    )
    return orjson.dumps(list(seen)).decode(), codes.tobytes()


def settled_feedback(conn: Any) -> int:
    """The highest feedback id recorded at least ``SETTLE_US`` ago (0 when none)."""
    q = select(func.coalesce(func.max(FB.c.id), 0)).where(FB.c.recorded_at < now_us() - SETTLE_US)
    return int(conn.execute(q).scalar_one())


def _latest_labels(conn: Any, ids: Sequence[str], upto: int) -> list[str | None]:
    """The latest label text of each of ``ids`` among feedback rows with id <= ``upto``."""
    q = (
        select(FB.c.decision_id, FB.c.label)
        .where(FB.c.decision_id >= min(ids), FB.c.decision_id <= max(ids), FB.c.id <= upto)
        .order_by(FB.c.id)
    )
    latest = dict(conn.execute(q).cursor.fetchall())
    return [latest.get(i) for i in ids]


def row_for(conn: Any, ids: Sequence[str], names: Sequence[str], outputs: Sequence[str],
            contexts: Sequence[str | None], upto: int,
            scores: Sequence[bytes | None]) -> dict[str, Any] | None:  # fmt: skip
    """The outcome block of one decision block's rows (None: ids of another width)."""
    if any(len(i) != ID_WIDTH for i in ids):
        return None
    lengths = np.fromiter(
        (-1 if b is None else len(b) for b in scores), dtype="<i4", count=len(scores)
    )
    labels = _latest_labels(conn, ids, upto)
    n_t, n_c = _dictionary(names)
    o_t, o_c = _dictionary(outputs)
    c_t, c_c = _dictionary(contexts)
    l_t, l_c = _dictionary(labels)
    return {
        "ids": "".join(ids).encode(),
        "id_min": min(ids),
        "id_max": max(ids),
        "names": n_t,
        "name_codes": n_c,
        "outputs": o_t,
        "output_codes": o_c,
        "contexts": c_t,
        "context_codes": c_c,
        "labels": l_t,
        "label_codes": l_c,
        "labels_to": upto,
        "scores": b"".join([bytes(b) for b in scores if b is not None]),
        "score_lengths": lengths.tobytes(),
    }


def refresh_labels(store: Store, endpoint: str) -> int:
    """Fold settled feedback into ``endpoint``'s outcome blocks; returns the blocks rebuilt.

    Only the blocks holding a decision labelled since their ``labels_to`` are rebuilt
    (found through the labelled decisions' time, variant and version); the others just
    move ``labels_to`` on.
    """
    with store.engine.connect() as conn:
        upto = settled_feedback(conn)
        mine = select(B.c.id).where(B.c.endpoint == endpoint).scalar_subquery()
        stale = dict(
            conn.execute(
                select(OB.c.block_id, OB.c.labels_to).where(
                    OB.c.block_id.in_(mine), OB.c.labels_to < upto
                )
            ).all()
        )
        if not stale:
            return 0
        low = min(int(v) for v in stale.values())
        touched = (
            select(B.c.id)
            .distinct()
            .select_from(
                FB.join(D, D.c.id == FB.c.decision_id).join(
                    B,
                    (B.c.endpoint == D.c.endpoint)
                    & (B.c.variant == D.c.variant)
                    & (B.c.model_version == D.c.model_version)
                    & (B.c.shadow == D.c.shadow)
                    & (D.c.ts >= B.c.ts_min)
                    & (D.c.ts <= B.c.ts_max),
                )
            )
            .where(FB.c.id > low, FB.c.id <= upto, D.c.endpoint == endpoint)
        )
        rebuilt = []
        for block_id, ids_b in conn.execute(
            select(OB.c.block_id, OB.c.ids).where(
                OB.c.block_id.in_(touched), OB.c.block_id.in_(list(stale))
            )
        ).all():
            texts = [i.decode() for i in np.frombuffer(ids_b, dtype=f"S{ID_WIDTH}").tolist()]
            rebuilt.append((block_id, _dictionary(_latest_labels(conn, texts, upto))))
    with store.write() as conn:
        for block_id, (labels, codes) in rebuilt:
            conn.execute(
                OB.update()
                .where(OB.c.block_id == block_id)
                .values(labels=labels, label_codes=codes, labels_to=upto)
            )
        conn.execute(
            # only the blocks seen stale above: one compacted since may hold labels not read
            OB.update()
            .where(OB.c.block_id.in_(list(stale)), OB.c.labels_to < upto)
            .values(labels_to=upto)
        )
    return len(rebuilt)


@dataclass
class Columns:
    """A window's served decisions as columns, one entry per decision: the blocked rows
    first (``ids``, fixed-width bytes, read only when later context or labels need them:
    else empty), then the raw tail (``tail_ids``). Numeric outputs
    and labels are float arrays (NaN: none), others object arrays (None: none)."""

    ids: np.ndarray[Any, Any]
    tail_ids: list[str]
    model_names: np.ndarray[Any, Any]
    versions: np.ndarray[Any, Any]
    outputs: np.ndarray[Any, Any]
    labels: np.ndarray[Any, Any]
    # context: per blocked row a code into ``context_texts``; the raw tail's merged dicts
    context_codes: np.ndarray[Any, Any]
    context_texts: list[str]
    tail_context: list[dict[str, Any]]
    later: dict[str, dict[str, Any]] = field(default_factory=dict)
    # who decided each row: an index into ``served`` (model name, version)
    served_codes: np.ndarray[Any, Any] = field(default_factory=lambda: np.empty(0, np.int64))
    served: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.context_codes) + len(self.tail_ids)

    def attribute(self, name: str) -> np.ndarray[Any, Any]:
        """Each decision's value of context attribute ``name`` (None where it has none)."""
        table = np.empty(len(self.context_texts) + 1, dtype=object)
        table[:-1] = [orjson.loads(t).get(name) for t in self.context_texts]
        table[-1] = None
        out = np.empty(len(self), dtype=object)
        nb = len(self.context_codes)
        out[:nb] = table[self.context_codes]
        out[nb:] = [c.get(name) for c in self.tail_context]
        if self.later:
            late = np.array(sorted(self.later), dtype=f"S{ID_WIDTH}")
            for i in np.flatnonzero(np.isin(self.ids, late)).tolist():
                extra = self.later[self.ids[i].decode()]
                if name in extra:
                    out[i] = extra[name]
        return out


def _table(texts: list[str | None], parse: bool) -> np.ndarray[Any, Any]:
    """A column's distinct values, then None (code -1). Numbers become a float table (NaN
    for none), so a numeric column decodes to a float array with one fancy index."""
    values = [orjson.loads(t) if parse and t is not None else t for t in texts]
    if parse and all(_number(v) for v in values):
        return np.array([*values, np.nan], dtype=np.float64)
    table = np.empty(len(values) + 1, dtype=object)
    table[:-1] = values
    table[-1] = None
    return table


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _objects(a: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """A float column as objects (NaN becomes None); others as they are."""
    if a.dtype.kind != "f":
        return a
    out = a.astype(object)
    out[np.isnan(a)] = None
    return out


def _cat(blocked: list[np.ndarray[Any, Any]], rest: Sequence[Any]) -> np.ndarray[Any, Any]:
    """Blocked parts then the raw tail; float when every part is, else object (None: none)."""
    if all(b.dtype.kind == "f" for b in blocked) and all(v is None or _number(v) for v in rest):
        tail = np.array([np.nan if v is None else v for v in rest], dtype=np.float64)
        return np.concatenate([*blocked, tail]) if blocked else tail
    out = np.empty(sum(len(b) for b in blocked) + len(rest), dtype=object)
    at = 0
    for b in blocked:
        out[at : at + len(b)] = _objects(b)
        at += len(b)
    out[at:] = list(rest)
    return out


@window_lock.guarded(1)
def columns(
    store: Store, endpoint: str, start: int, end: int, *, variant: str | None = None
) -> Columns | None:
    """The served decisions of ``[start, end)``: blocked history from the outcome blocks,
    the rest from the rows. None when a block in the window has no outcome block (built
    before they existed: ``chronoml db compact --rebuild``) or decisions of it are
    archived; read the rows then."""
    # lazy: blocks imports this module to build the outcome blocks as it compacts
    from chronoml.store import blocks

    mark = blocks.watermark(store, endpoint)
    stop = start if mark is None or start >= mark else min(end, mark)
    if AR.span(store, endpoint, start, end) is not None:
        return None  # archived decisions are in the window: the rows' path reads their files
    got: list[Any] = []
    late_rows: list[Any] = []
    dc_rows: list[Any] = []
    ts_of: dict[int, bytes] = {}
    ids_of: dict[int, bytes] = {}
    if stop > start:
        q = (
            select(
                B.c.id,
                B.c.ts_min,
                B.c.ts_max,
                B.c.model_version,
                OB.c.block_id,
                OB.c.names,
                OB.c.name_codes,
                OB.c.outputs,
                OB.c.output_codes,
                OB.c.contexts,
                OB.c.context_codes,
                OB.c.labels,
                OB.c.label_codes,
                OB.c.labels_to,
                OB.c.id_min,
                OB.c.id_max,
                B.c.rows,
            )
            .select_from(B.outerjoin(OB, OB.c.block_id == B.c.id))
            .where(B.c.endpoint == endpoint, B.c.ts_max >= start, B.c.ts_min < stop)
            .where(B.c.shadow.is_(False))
            .order_by(B.c.ts_min)
        )
        if variant is not None:
            q = q.where(B.c.variant == variant)
        with store.engine.connect() as conn:
            got = list(conn.execute(q).cursor.fetchall())  # type: ignore[union-attr]
            # no outcome block, or one that no longer matches its block's rows: the rows
            # answer, as for CBPE (a reader must never pair one row's outcome with another)
            if any(r[4] is None or len(r[6]) != 4 * int(r[16]) for r in got):
                return None
            if got:
                low = min(int(r[13]) for r in got)
                late_rows = list(
                    conn.execute(
                        select(FB.c.id, FB.c.decision_id, FB.c.label)
                        .where(FB.c.id > low)
                        .order_by(FB.c.id)
                    ).all()
                )
                # later context of ids in the blocks' range (the window's are picked below)
                dc_rows = list(
                    conn.execute(
                        select(DC.c.decision_id, DC.c.context)
                        .where(
                            DC.c.decision_id >= min(r[14] for r in got),
                            DC.c.decision_id <= max(r[15] for r in got),
                        )
                        .order_by(DC.c.id)
                    ).all()
                )
            # timestamps only for the blocks the window cuts; ids only when late rows need them
            edge = [r[0] for r in got if r[1] < start or r[2] >= stop]
            if edge:
                ts_of = dict(conn.execute(select(B.c.id, B.c.ts).where(B.c.id.in_(edge))).all())
            if late_rows or dc_rows:
                ids_of = dict(
                    conn.execute(
                        select(OB.c.block_id, OB.c.ids).where(
                            OB.c.block_id.in_([r[0] for r in got])
                        )
                    ).all()
                )
    ids, names, versions, outputs, labels, ctx_codes, labels_to = [], [], [], [], [], [], []
    ctx_texts: list[str] = []
    served: dict[tuple[str, str], int] = {}
    served_codes: list[np.ndarray[Any, Any]] = []
    for bid, _lo, _hi, version, _ob, n_t, n_c, o_t, o_c, c_t, c_c, l_t, l_c, upto, *_ in got:
        sel: Any = slice(None)
        if bid in ts_of:
            ts = np.frombuffer(ts_of[bid], dtype="<i8")
            sel = np.flatnonzero((ts >= start) & (ts < stop))
        codes = np.frombuffer(c_c, dtype="<i4")[sel]
        if not len(codes):
            continue
        if ids_of:
            ids.append(np.frombuffer(ids_of[bid], dtype=f"S{ID_WIDTH}")[sel])
        block_names = orjson.loads(n_t)
        name_codes = np.frombuffer(n_c, dtype="<i4")[sel]
        names.append(_table(block_names, False)[name_codes])
        keys = np.array([served.setdefault((n, version), len(served)) for n in block_names])
        served_codes.append(keys[name_codes])
        versions.append(np.full(len(codes), version, dtype=object))
        outputs.append(_table(orjson.loads(o_t), True)[np.frombuffer(o_c, dtype="<i4")[sel]])
        labels.append(_table(orjson.loads(l_t), True)[np.frombuffer(l_c, dtype="<i4")[sel]])
        # -1 (no context) points past the end of the shared table, at its None
        ctx_codes.append(np.where(codes < 0, -1, codes + len(ctx_texts)))
        ctx_texts += orjson.loads(c_t)
        labels_to.append(np.full(len(codes), int(upto), dtype=np.int64))
    blocked_ids = np.concatenate(ids) if ids else np.empty(0, dtype=f"S{ID_WIDTH}")
    if late_rows and len(blocked_ids):
        late = [(int(fid), did, orjson.loads(text)) for fid, did, text in late_rows]
        if not all(_number(v) for _, _, v in late):
            labels = [_objects(x) for x in labels]
        for part, upto_part, lab in zip(ids, labels_to, labels, strict=True):
            late_labels(part, lab, upto_part, late)
    later: dict[str, dict[str, Any]] = {}
    if dc_rows and len(blocked_ids):
        mine = np.array(sorted({r[0] for r in dc_rows}), dtype=f"S{ID_WIDTH}")
        present = {x.decode() for x in mine[np.isin(mine, blocked_ids)].tolist()}
        for did, text in dc_rows:
            if did in present:
                later.setdefault(did, {}).update(orjson.loads(text))
    tail = O.outcomes(store, endpoint, max(start, stop), end, variant=variant, held_from=start)
    codes_all = np.concatenate(ctx_codes) if ctx_codes else np.empty(0, dtype=np.int64)
    codes_all = np.where(codes_all < 0, len(ctx_texts), codes_all)
    served_codes.append(
        np.fromiter(
            (
                served.setdefault(k, len(served))
                for k in zip(tail.model_names, tail.versions, strict=True)
            ),
            dtype=np.int64,
            count=len(tail),
        )
    )
    return Columns(
        served_codes=np.concatenate(served_codes),
        served=list(served),
        ids=blocked_ids,
        tail_ids=tail.ids,
        model_names=_cat(names, tail.model_names),
        versions=_cat(versions, tail.versions),
        outputs=_cat(outputs, tail.outputs),
        labels=_cat(labels, tail.labels),
        context_codes=codes_all,
        context_texts=ctx_texts,
        tail_context=tail.context,
        later=later,
    )


def late_labels(
    ids: np.ndarray[Any, Any],
    labels: np.ndarray[Any, Any],
    labels_to: np.ndarray[Any, Any],
    late: Sequence[tuple[int, str, Any]],
) -> None:
    """Apply feedback rows newer than a block's labels, in id order (the latest wins)."""
    wanted = np.array(sorted({r[1] for r in late}), dtype=f"S{ID_WIDTH}")
    at = {ids[i].decode(): i for i in np.flatnonzero(np.isin(ids, wanted)).tolist()}
    for fid, did, value in late:
        i = at.get(did)
        if i is not None and fid > labels_to[i]:
            labels[i] = value
