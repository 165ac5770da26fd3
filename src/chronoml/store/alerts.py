"""Alert rules and their per-subject state: rows of ``alert_rules`` and ``alert_state``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select, update

from chronoml.domain import alerts as A
from chronoml.store import schema
from chronoml.store.database import Store, Tx

R = schema.alert_rules
S = schema.alert_state


def rule(store: Store, name: str) -> A.AlertRule | None:
    with store.read() as conn:
        spec = conn.execute(select(R.c.spec).where(R.c.name == name)).scalar()
    return A.parse_rule(json.loads(spec)) if spec is not None else None


def rules(store: Store) -> list[A.AlertRule]:
    with store.read() as conn:
        specs = conn.execute(select(R.c.spec).order_by(R.c.name)).scalars().all()
    return [A.parse_rule(json.loads(s)) for s in specs]


def remove(store: Store, name: str) -> bool:
    """Delete a rule and its state; False if there was no such rule."""
    with store.write() as conn:
        gone = conn.execute(delete(R).where(R.c.name == name)).rowcount
        conn.execute(delete(S).where(S.c.rule == name))
    return bool(gone)


def upsert(store: Store, specs: Sequence[A.AlertRule], now: int) -> None:
    """Create or replace each rule by name, all in one transaction."""

    def write(conn: Tx) -> None:
        for r in specs:
            spec = json.dumps(r.to_dict(), sort_keys=True)
            changed = conn.execute(
                update(R).where(R.c.name == r.name).values(spec=spec, updated_at=now)
            ).rowcount
            if not changed:
                conn.execute(
                    R.insert().values(name=r.name, spec=spec, created_at=now, updated_at=now)
                )

    store.write_retrying(write, "alert rules")


def all_states(store: Store) -> list[tuple[str, str, A.AlertState]]:
    """``(rule, subject, state)`` of every subject a rule has seen."""
    with store.read() as conn:
        rows = conn.execute(select(S).order_by(S.c.rule, S.c.subject)).mappings().all()
    return [(row["rule"], row["subject"], _state(row)) for row in rows]


def lock_states(conn: Tx, subject: str, names: Sequence[str]) -> dict[str, A.AlertState]:
    """The states of ``names`` on ``subject``, locked for the caller's transaction."""
    rows = (
        conn.execute(
            select(S).where(S.c.subject == subject, S.c.rule.in_(list(names))).with_for_update()
        )
        .mappings()
        .all()
    )
    return {row["rule"]: _state(row) for row in rows}


def save_state(conn: Tx, rule: str, key: str, st: A.AlertState, *, exists: bool) -> None:
    values: dict[str, Any] = {
        "firing": st.firing,
        "since": st.since,
        "last_fired_at": st.last_fired_at,
        "last_value": st.last_value,
    }
    if exists:
        conn.execute(update(S).where(S.c.rule == rule, S.c.subject == key).values(**values))
    else:
        conn.execute(S.insert().values(rule=rule, subject=key, **values))


def _state(row: Any) -> A.AlertState:
    return A.AlertState(
        firing=bool(row["firing"]),
        since=int(row["since"]),
        last_fired_at=row["last_fired_at"],
        last_value=row["last_value"],
    )
