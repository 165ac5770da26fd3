"""Feedback rows: the labels decisions received, append-only, newest wins."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from sqlalchemy import bindparam, func, select

from chronoml.domain.codec import storable_number
from chronoml.domain.feedback import FeedbackError, Label, check_label
from chronoml.store import archive_reads as AR
from chronoml.store import evidence, outcomes, partitions, schema
from chronoml.store.database import Store
from chronoml.store.id_types import may_hold
from chronoml.timeutil import iso, now_us

F = schema.feedback
D = schema.decisions


def _latest(conn: Any, ids: Iterable[str]) -> dict[str, Any]:
    ids = list(ids)
    if not ids:
        return {}
    last = (
        select(F.c.decision_id, func.max(F.c.id).label("id"))
        .where(F.c.decision_id.in_(ids))
        .group_by(F.c.decision_id)
        .subquery()
    )
    rows = conn.execute(
        select(F.c.decision_id, F.c.label, F.c.recorded_at).join(last, F.c.id == last.c.id)
    ).all()
    return {r.decision_id: (orjson.loads(r.label), r.recorded_at) for r in rows}


def record(
    store: Store, labels: Iterable[Label], *, actor: str, update: bool = False
) -> dict[str, int]:
    """Attach labels (and context), all or nothing; returns counts of new labels, updates
    and decisions given context."""
    items = list(labels)
    if not items:
        raise FeedbackError("no labels given", status=400)
    seen: set[str] = set()
    for it in items:
        if it.decision_id in seen:
            raise FeedbackError(f"decision {it.decision_id} appears twice", field="decision_id")
        seen.add(it.decision_id)
    now = now_us()
    with store.write() as conn:
        outputs = dict(partitions.rows_by_ids(conn, [D.c.id, D.c.output], list(seen)))
        # a label may arrive after its decision was archived
        for r in AR.found_in(conn, [i for i in seen if i not in outputs]):
            outputs[r[0]] = r[13]
        missing = [i for i in seen if i not in outputs]
        if missing:
            raise FeedbackError(f"unknown decision {missing[0]!r}", status=404, field="decision_id")
        existing = _latest(conn, seen)
        rows = []
        updates = 0
        for it in items:
            if it.label is None:
                if not it.context:
                    raise FeedbackError(
                        f"decision {it.decision_id}: give a label, a context or both",
                        field="label",
                    )
                continue
            value = check_label(orjson.loads(outputs[it.decision_id]), it.label)
            if it.decision_id in existing:
                old, when = existing[it.decision_id]
                if not update:
                    raise FeedbackError(
                        f"decision {it.decision_id} already has label {old!r} (recorded {iso(when)}); "
                        "send it as an update (update=true, --update) to change it: "
                        "the old label stays in the history",
                        status=409,
                        field="decision_id",
                    )
                updates += 1
            rows.append(
                {
                    "decision_id": it.decision_id,
                    "label": orjson.dumps(value).decode(),
                    "label_num": storable_number(value)
                    if isinstance(value, int | float) and not isinstance(value, bool)
                    else None,
                    "observed_at": it.observed_at,
                    "recorded_at": now,
                    "actor": actor,
                }
            )
        if rows:
            # ids matched by decision (each appears once): the form that returns them in
            # parameter order casts each column to one type, and an id column's type (uuid
            # or text) is the store's
            got: dict[str, int] = dict(
                conn.execute(F.insert().returning(F.c.decision_id, F.c.id), rows).all()
            )
            ids = [got[str(r["decision_id"])] for r in rows]
            hashes = [
                evidence.feedback_leaf({**r, "id": i}).leaf_hash()
                for r, i in zip(rows, ids, strict=True)
            ]
            evidence.append_in(
                conn, [evidence.batch_entry("feedback", [str(i) for i in ids], hashes, now)]
            )
        given = outcomes.add_context(
            conn, [(it.decision_id, it.context) for it in items if it.context], actor=actor, at=now
        )
    out = {"labelled": len(rows) - updates, "updated": updates}
    if given:
        out["context"] = given
    return out


_HISTORY = select(F).where(F.c.decision_id == bindparam("id")).order_by(F.c.id)


def history(store: Store, decision_id: str) -> list[dict[str, Any]]:
    """Every label a decision received, oldest first."""
    with store.read() as conn:
        return history_in(conn, decision_id)


def history_in(conn: Any, decision_id: str) -> list[dict[str, Any]]:
    """:func:`history` on a connection the caller holds."""
    if not may_hold(conn, decision_id):
        return []
    rows = conn.execute(_HISTORY, {"id": decision_id}).all()
    return [
        {
            "label": orjson.loads(r.label),
            "recorded_at": iso(r.recorded_at),
            "observed_at": iso(r.observed_at) if r.observed_at is not None else None,
            "actor": r.actor,
        }
        for r in rows
    ]


def labels_of(store: Store, ids: Iterable[str]) -> Mapping[str, Any]:
    """The current label of each decision that has one."""
    with store.read() as conn:
        return {k: v for k, (v, _) in _latest(conn, ids).items()}
