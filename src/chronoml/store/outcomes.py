"""Decisions with what is known about them after the fact: scores, context, labels.

The gateway logs each classifier decision's class scores as packed float64
bytes (``decisions.scores``), in the class order kept once per model version
(``model_classes``). Context that is not a model input (a sensitive attribute,
a region, a channel) comes with the prediction (``decisions.context``) or
later (``decision_context``, append-only; later keys win). Quality, fairness
and estimated quality read them here, one window at a time, as columns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from chronoml.store import archive_reads as AR
from chronoml.store import ingest, ingest_reads, schema, window_lock
from chronoml.store.database import Store
from chronoml.timeutil import now_us

D = schema.decisions
FB = schema.feedback
MC = schema.model_classes
DC = schema.decision_context


# --- the class order of each model version ------------------------------------


def ensure_classes(store: Store, model_name: str, version: str, classes: Sequence[Any]) -> None:
    """Record the class order of ``model_name`` ``version``'s scores (once; later calls agree)."""
    text = orjson.dumps(list(classes)).decode()
    try:
        with store.write() as conn:
            known = conn.execute(
                select(MC.c.classes).where(
                    MC.c.model_name == model_name, MC.c.model_version == version
                )
            ).scalar()
            if known is None:
                conn.execute(
                    MC.insert().values(
                        model_name=model_name,
                        model_version=version,
                        classes=text,
                        created_at=now_us(),
                    )
                )
    except IntegrityError:
        pass  # another replica recorded the same version's classes first


def classes_of(store: Store, model_name: str, version: str) -> list[Any] | None:
    """The class order of a version's logged scores, or None when it logs none."""
    with store.read() as conn:
        raw = conn.execute(
            select(MC.c.classes).where(MC.c.model_name == model_name, MC.c.model_version == version)
        ).scalar()
    return None if raw is None else list(orjson.loads(raw))


def unpack_scores(packed: Sequence[bytes | None], width: int) -> np.ndarray[Any, Any]:
    """Rows of packed scores as an ``(n, width)`` float64 matrix; NaN rows where none."""
    out = np.full((len(packed), width), np.nan)
    have = [i for i, b in enumerate(packed) if b is not None and len(b) == 8 * width]
    if have:
        buf = b"".join([packed[i] for i in have])  # type: ignore[misc]
        out[have] = np.frombuffer(buf, dtype="<f8").reshape(len(have), width)
    return out


# --- context ------------------------------------------------------------------


def add_context(
    conn: Any, items: Iterable[tuple[str, Mapping[str, Any]]], *, actor: str, at: int
) -> int:
    """Append context for decisions, in the caller's transaction; returns the rows written."""
    rows = [
        {
            "decision_id": did,
            "context": orjson.dumps(dict(ctx)).decode(),
            "recorded_at": at,
            "actor": actor,
        }
        for did, ctx in items
    ]
    if rows:
        conn.execute(DC.insert(), rows)
    return len(rows)


def _later_context(conn: Any, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for i in range(0, len(ids), 500):
        part = list(ids[i : i + 500])
        q = select(DC.c.decision_id, DC.c.context).where(DC.c.decision_id.in_(part))
        for did, text in conn.execute(q.order_by(DC.c.id)).all():
            out.setdefault(did, {}).update(orjson.loads(text))
    return out


def contexts(store: Store, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The context of each of ``ids`` that has any: sent with predict, then later additions."""
    out: dict[str, dict[str, Any]] = {}
    with store.read() as conn:
        for i in range(0, len(ids), 500):
            part = list(ids[i : i + 500])
            q = select(D.c.id, D.c.context).where(D.c.id.in_(part), D.c.context.is_not(None))
            for did, text in conn.execute(q).all():
                out[did] = dict(orjson.loads(text))
        for t in ingest_reads.tuples_by_ids(conn, ids):
            if t[ingest.AT["context"]] is not None:
                out[t[0]] = dict(orjson.loads(t[ingest.AT["context"]]))
        # an archived decision's, from its file (COLUMNS order: the context is last)
        for r in AR.found_in(conn, [i for i in ids if i not in out]):
            if r[-1] is not None:
                out[r[0]] = dict(orjson.loads(r[-1]))
        for did, ctx in _later_context(conn, ids).items():
            out.setdefault(did, {}).update(ctx)
    return out


# --- a window of decisions with their outcomes ---------------------------------


@dataclass
class Outcomes:
    """The served decisions of one window, as columns (one entry per decision)."""

    ids: list[str]
    ts: np.ndarray[Any, Any]
    variants: list[str]
    model_names: list[str]
    versions: list[str]
    outputs: list[Any]  # decoded from the logged JSON
    labels: list[Any]  # the latest label, or None
    scores: list[bytes | None]  # packed class scores, or None
    # merged context ({} when none); rows with the same context share one dict: read only
    context: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, idx: Sequence[int]) -> Outcomes:
        """The decisions at positions ``idx``, in that order."""
        return Outcomes(
            ids=[self.ids[i] for i in idx],
            ts=self.ts[list(idx)] if len(idx) else self.ts[:0],
            variants=[self.variants[i] for i in idx],
            model_names=[self.model_names[i] for i in idx],
            versions=[self.versions[i] for i in idx],
            outputs=[self.outputs[i] for i in idx],
            labels=[self.labels[i] for i in idx],
            scores=[self.scores[i] for i in idx],
            context=[self.context[i] for i in idx],
        )

    def groups(self) -> dict[tuple[str, str, str], list[int]]:
        """Row positions by (variant, model name, version), in first-seen order."""
        out: dict[tuple[str, str, str], list[int]] = {}
        for i, key in enumerate(zip(self.variants, self.model_names, self.versions, strict=True)):
            out.setdefault(key, []).append(i)
        return out


@window_lock.guarded(1)
def outcomes(
    store: Store,
    endpoint: str,
    start: int,
    end: int,
    *,
    variant: str | None = None,
    version: str | None = None,
    with_context: bool = True,
    held_from: int | None = None,
) -> Outcomes:
    """The served (not shadow) decisions of ``endpoint`` in ``[start, end)``, in time order.

    ``held_from``: take the decisions held in ingest blocks from there on instead (a
    reader of compacted blocks below ``start`` asks for those too: they are never in one).
    """
    held_start = start if held_from is None else min(start, held_from)
    if held_start >= end:
        return Outcomes([], np.empty(0, dtype=np.int64), [], [], [], [], [], [], [])
    # the latest label of each decision, looked up through the (decision_id, id) index: a
    # cost per decision of the window, where a join to "latest per decision" grouped over
    # the whole feedback table costs as much for a minute's window as for a month's
    latest = (
        select(FB.c.label)
        .where(FB.c.decision_id == D.c.id)
        .order_by(FB.c.id.desc())
        .limit(1)
        .correlate(D)
        .scalar_subquery()
    )
    cols = [
        D.c.id,
        D.c.ts,
        D.c.variant,
        D.c.model_name,
        D.c.model_version,
        D.c.output,
        latest,
        D.c.scores,
        D.c.context,
    ]
    q = select(*cols).where(
        D.c.endpoint == endpoint, D.c.ts >= start, D.c.ts < end, D.c.shadow.is_(False)
    )
    if variant is not None:
        q = q.where(D.c.variant == variant)
    if version is not None:
        q = q.where(D.c.model_version == version)
    # the archived part of the window, older than every row left in the database
    names = ("id", "ts", "variant", "model_name", "model_version", "output", "scores", "context")
    archived = AR.rows(
        store, endpoint, start, end, names, shadow=False, variant=variant, version=version
    )
    # and the decisions held in ingest blocks, read the same way (merged in time order below)
    blocked = ingest_reads.rows(
        store, endpoint, held_start, end, names, shadow=False, variant=variant, version=version
    )
    archived += blocked
    arch_ids = [r[0] for r in archived]
    labels = AR.label_texts(store, arch_ids)
    rows: list[Any] = [(*r[:6], labels.get(r[0]), *r[6:]) for r in archived]
    with store.read() as conn:
        rows += conn.execute(q.order_by(D.c.ts, D.c.id)).cursor.fetchall()  # type: ignore[union-attr]
        later: dict[str, dict[str, Any]] = {}
        if with_context and arch_ids:
            for i in range(0, len(arch_ids), 500):
                aq = (
                    select(DC.c.decision_id, DC.c.context)
                    .where(DC.c.decision_id.in_(arch_ids[i : i + 500]))
                    .order_by(DC.c.id)
                )
                for did, text in conn.execute(aq).all():
                    later.setdefault(did, {}).update(orjson.loads(text))
        if with_context and rows:
            # only the decisions that received context later are looked up one by one
            lq = (
                select(DC.c.decision_id, DC.c.context)
                .join(D, D.c.id == DC.c.decision_id)
                .where(D.c.endpoint == endpoint, D.c.ts >= start, D.c.ts < end)
                .order_by(DC.c.id)
            )
            for did, text in conn.execute(lq).all():
                later.setdefault(did, {}).update(orjson.loads(text))
    if not rows:
        return Outcomes([], np.empty(0, dtype=np.int64), [], [], [], [], [], [], [])
    if blocked:
        rows.sort(key=lambda r: (r[1], r[0]))
    c = list(zip(*rows, strict=True))
    ids = list(c[0])
    ctx: list[dict[str, Any]] = []
    if with_context:
        # context texts repeat (a few groups, a few channels): parse each distinct one once
        parsed: dict[str, dict[str, Any]] = {}
        for did, text in zip(ids, c[8], strict=True):
            if text is None:
                base: dict[str, Any] = {}
            else:
                got = parsed.get(text)
                if got is None:
                    got = parsed[text] = dict(orjson.loads(text))
                base = got
            if did in later:
                base = {**base, **later[did]}
            ctx.append(base)
    else:
        ctx = [{} for _ in ids]
    out = Outcomes(
        ids=ids,
        ts=np.asarray(c[1], dtype=np.int64),
        variants=list(c[2]),
        model_names=list(c[3]),
        versions=list(c[4]),
        outputs=_json_list(c[5]),
        labels=_json_list(c[6]),
        scores=list(c[7]),
        context=ctx,
    )
    _label_score_outputs(store, out)
    return out


def _label_score_outputs(store: Store, got: Outcomes) -> None:
    """A model that answers with its class scores (a pyfunc returning probabilities) decided
    the class of the highest score: that class stands for its output here."""
    rows = [
        i
        for i, o in enumerate(got.outputs)
        if isinstance(o, dict | list) and got.scores[i] is not None
    ]
    by: dict[tuple[str, str], list[int]] = {}
    for i in rows:
        by.setdefault((got.model_names[i], got.versions[i]), []).append(i)
    for (name, version), idx in by.items():
        classes = classes_of(store, name, version)
        if classes is None:
            continue
        p = unpack_scores([got.scores[i] for i in idx], len(classes))
        for i, row in zip(idx, p, strict=True):
            if not np.isnan(row).any():
                got.outputs[i] = classes[int(row.argmax())]


def _json_list(texts: Sequence[str | None]) -> list[Any]:
    """Many JSON texts (None for null) decoded in one call rather than one each."""
    return list(orjson.loads("[" + ",".join(["null" if t is None else t for t in texts]) + "]"))


@window_lock.guarded(1)
def shadow_outcomes(
    store: Store, endpoint: str, start: int, end: int, *, variant: str, version: str
) -> Outcomes:
    """A shadow's decisions in ``[start, end)``, each with the label and context of the
    answered decision it copied (same time and same inputs); unpaired copies have none."""
    answered = outcomes(store, endpoint, start, end)
    cols = (D.c.ts, D.c.num, D.c.txt)
    key_q = select(D.c.id, *cols).where(
        D.c.endpoint == endpoint, D.c.ts >= start, D.c.ts < end, D.c.shadow.is_(False)
    )
    shadow_q = (
        select(D.c.id, *cols, D.c.model_name, D.c.output, D.c.scores)
        .where(
            D.c.endpoint == endpoint,
            D.c.ts >= start,
            D.c.ts < end,
            D.c.shadow.is_(True),
            D.c.variant == variant,
            D.c.model_version == version,
        )
        .order_by(D.c.ts, D.c.id)
    )
    # archived decisions of the range first (all older than the rows left)
    keys: list[Any] = AR.rows(store, endpoint, start, end, ("id", "ts", "num", "txt"), shadow=False)
    names = ("id", "ts", "num", "txt", "model_name", "output", "scores")
    shadows: list[Any] = AR.rows(
        store, endpoint, start, end, names, shadow=True, variant=variant, version=version
    )
    keys += ingest_reads.rows(store, endpoint, start, end, ("id", "ts", "num", "txt"), shadow=False)
    shadows += ingest_reads.rows(
        store, endpoint, start, end, names, shadow=True, variant=variant, version=version
    )
    with store.read() as conn:
        keys += conn.execute(key_q).cursor.fetchall()  # type: ignore[union-attr]
        shadows += conn.execute(shadow_q).cursor.fetchall()  # type: ignore[union-attr]
    shadows.sort(key=lambda r: (r[1], r[0]))
    where = {did: i for i, did in enumerate(answered.ids)}
    by_input: dict[tuple[int, bytes, str | None], int] = {}
    for did, ts, num, txt in keys:
        by_input.setdefault((ts, bytes(num), txt), where[did])
    labels: list[Any] = []
    context: list[dict[str, Any]] = []
    for _, ts, num, txt, *_rest in shadows:
        i = by_input.get((ts, bytes(num), txt))
        labels.append(answered.labels[i] if i is not None else None)
        context.append(answered.context[i] if i is not None else {})
    return Outcomes(
        ids=[r[0] for r in shadows],
        ts=np.asarray([r[1] for r in shadows], dtype=np.int64),
        variants=[variant] * len(shadows),
        model_names=[r[4] for r in shadows],
        versions=[version] * len(shadows),
        outputs=[orjson.loads(r[5]) for r in shadows],
        labels=labels,
        scores=[r[6] for r in shadows],
        context=context,
    )
