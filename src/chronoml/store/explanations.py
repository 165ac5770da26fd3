"""Stored explanations: one row per decision in ``explanations`` (migration 0003).

``contributions`` holds ``{feature: value}`` as JSON. ``background`` holds a
JSON object: the background's ``method``, ``snapshot_id``, ``rows``, ``seed``
and ``sample`` (row positions in the snapshot), plus what was explained:
``output`` (``{"class", "value"}``) and the ``note`` saying why a fallback
explainer was used. An explanation, once stored, is never changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError

from chronoml.domain.explanation import Background, Explanation
from chronoml.store import evidence, schema
from chronoml.store.database import Store
from chronoml.store.id_types import bindable
from chronoml.timeutil import iso, now_us

E = schema.explanations
COLUMNS = tuple(c.name for c in E.c)


def _row(decision_id: str, exp: Explanation, created_at: int) -> dict[str, Any]:
    background = {
        **exp.background.to_dict(),
        "output": {"class": exp.explained_class, "value": exp.output_value},
        "note": exp.note,
    }
    return {
        "decision_id": decision_id,
        "explainer": exp.explainer,
        "output_scale": exp.output_scale,
        "base_value": exp.base_value,
        "contributions": orjson.dumps(exp.contributions).decode(),
        "background": orjson.dumps(background).decode(),
        "created_at": created_at,
    }


def tuples(
    ids: Sequence[str], explanations: Sequence[Explanation], created_at: int
) -> list[tuple[Any, ...]]:
    """Rows in :data:`COLUMNS` order, for the decision log to commit with the decisions."""
    return [
        tuple(_row(did, exp, created_at)[c] for c in COLUMNS)
        for did, exp in zip(ids, explanations, strict=True)
    ]


def put_many(store: Store, items: Sequence[tuple[str, Explanation]]) -> list[dict[str, Any]]:
    """Store explanations in one transaction (committed, and fsync'd on SQLite, on return).

    Returns them in the REST shape. A decision that already has one keeps
    it: explanations are never replaced (read it back with :func:`get`).
    """
    if not items:
        return []
    t = now_us()
    rows = [_row(did, exp, t) for did, exp in items]
    ids = [r["decision_id"] for r in rows]
    try:
        with store.write() as conn:
            have = set(
                conn.execute(select(E.c.decision_id).where(E.c.decision_id.in_(ids))).scalars()
            )
            fresh = [r for r in rows if r["decision_id"] not in have]
            if fresh:
                conn.execute(E.insert(), fresh)
                _commit(conn, fresh)
    except IntegrityError:
        # another writer stored the same decision's explanation first: keep theirs
        for r in rows:
            with store.write() as conn:
                exists = conn.execute(
                    select(E.c.decision_id).where(E.c.decision_id == r["decision_id"])
                ).first()
                if exists is None:
                    conn.execute(E.insert(), [r])
                    _commit(conn, [r])
    return [to_dict(r) for r in rows]


def _commit(conn: Any, rows: Sequence[dict[str, Any]]) -> None:
    # one evidence entry per transaction that stores explanations
    tuples_ = [tuple(r[c] for c in COLUMNS) for r in rows]
    hashes = [evidence.explanation_leaf(t).leaf_hash() for t in tuples_]
    evidence.append_in(conn, [evidence.batch_entry("explanation", [t[0] for t in tuples_], hashes)])


_GET = select(E).where(E.c.decision_id == bindparam("id"))


def get(store: Store, decision_id: str) -> dict[str, Any] | None:
    """The stored explanation of a decision in the REST shape, or None."""
    with store.read() as conn:
        return get_in(conn, decision_id)


def get_in(conn: Any, decision_id: str) -> dict[str, Any] | None:
    """:func:`get` on a connection the caller holds."""
    row = conn.execute(_GET, {"id": bindable(conn, decision_id)}).mappings().first()
    return to_dict(row) if row is not None else None


def get_row_in(conn: Any, decision_id: str) -> tuple[Any, ...] | None:
    """The stored explanation row as a tuple in :data:`COLUMNS` order, or None."""
    row = conn.execute(_GET, {"id": bindable(conn, decision_id)}).mappings().first()
    return tuple(row[c] for c in COLUMNS) if row is not None else None


def to_dict(row: Any) -> dict[str, Any]:
    """A stored row (a mapping of :data:`COLUMNS`) in the REST shape."""
    bg = orjson.loads(row["background"])
    output = bg.pop("output", None) or {}
    note = bg.pop("note", None)
    return {
        "decision_id": row["decision_id"],
        "explainer": row["explainer"],
        "output_scale": row["output_scale"],
        "class": output.get("class"),
        "base_value": row["base_value"],
        "output_value": output.get("value"),
        "contributions": orjson.loads(row["contributions"]),
        "background": Background.from_dict(bg).to_dict(),
        "note": note,
        "created_at": iso(row["created_at"]),
    }
