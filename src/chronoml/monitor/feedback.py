"""Late-arriving labels (feedback) attached to logged decisions.

Labels are append-only: a second label for the same decision is accepted
only as an explicit update, and the earlier value stays in the history.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import bindparam, func, select

from chronoml.store import schema
from chronoml.store.database import Store
from chronoml.timeutil import iso, now_us, parse_time

F = schema.feedback
D = schema.decisions


class FeedbackError(ValueError):
    """A label that cannot be recorded; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 422, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.field = field


@dataclass(frozen=True)
class Label:
    decision_id: str
    label: Any
    observed_at: int | None = None


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "int" if v.is_integer() else "float"
    if isinstance(v, str):
        return "str"
    return "other"


def check_label(output: Any, label: Any) -> Any:
    """The label, if its type fits the decision's output; FeedbackError otherwise.

    A classifier that answered 0/1 takes integer labels (1.0 counts as 1), one
    that answered strings takes strings; a regressor takes any finite number.
    """
    out, lab = _kind(output), _kind(label)
    if lab == "other" or label is None:
        raise FeedbackError(
            f"label must be a number, string or boolean, got {label!r}", field="label"
        )
    if isinstance(label, float) and not math.isfinite(label):
        raise FeedbackError("label must be finite", field="label")
    if out == "float":
        if lab in ("int", "float"):
            return float(label)
    elif out == "int":
        if lab == "int":
            return int(label)
    elif out == lab:
        return label
    raise FeedbackError(
        f"label {label!r} does not fit this model's outputs (it answered {output!r}): "
        f"expected {'a number' if out == 'float' else 'an integer' if out == 'int' else 'a ' + out}",
        field="label",
    )


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
    """Attach labels, all or nothing; returns counts of new labels and updates."""
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
        outputs = dict(conn.execute(select(D.c.id, D.c.output).where(D.c.id.in_(list(seen)))).all())
        missing = [i for i in seen if i not in outputs]
        if missing:
            raise FeedbackError(f"unknown decision {missing[0]!r}", status=404, field="decision_id")
        existing = _latest(conn, seen)
        rows = []
        updates = 0
        for it in items:
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
                    "label_num": float(value)
                    if isinstance(value, int | float) and not isinstance(value, bool)
                    else None,
                    "observed_at": it.observed_at,
                    "recorded_at": now,
                    "actor": actor,
                }
            )
        conn.execute(F.insert(), rows)
    return {"labelled": len(rows) - updates, "updated": updates}


_HISTORY = select(F).where(F.c.decision_id == bindparam("id")).order_by(F.c.id)


def history(store: Store, decision_id: str) -> list[dict[str, Any]]:
    """Every label a decision received, oldest first."""
    with store.read() as conn:
        return history_in(conn, decision_id)


def history_in(conn: Any, decision_id: str) -> list[dict[str, Any]]:
    """:func:`history` on a connection the caller holds."""
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


def read_file(path: str | os.PathLike[str]) -> list[Label]:
    """Labels from a CSV or Parquet file with columns decision_id, label[, time]."""
    from chronoml.domain.snapshot import SnapshotError
    from chronoml.store.snapshots import read_table

    try:
        df = read_table(path)
    except SnapshotError as exc:
        raise FeedbackError(str(exc), status=400) from None
    missing = [c for c in ("decision_id", "label") if c not in df.columns]
    if missing:
        raise FeedbackError(
            f"{path}: missing column {missing[0]!r} (need decision_id, label[, time])"
        )
    out = []
    for i, rec in enumerate(df.to_dict(orient="records")):
        t = rec.get("time")
        try:
            observed = parse_time(str(t)) if t is not None and t == t else None
        except ValueError as exc:
            raise FeedbackError(f"{path} row {i + 1}: {exc}", field="time") from None
        label = rec["label"]
        if hasattr(label, "item"):
            label = label.item()
        out.append(Label(str(rec["decision_id"]), label, observed))
    return out


def labels_of(store: Store, ids: Iterable[str]) -> Mapping[str, Any]:
    """The current label of each decision that has one."""
    with store.read() as conn:
        return {k: v for k, (v, _) in _latest(conn, ids).items()}
