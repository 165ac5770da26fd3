"""Ledger persistence: append under the head lock, answer state_at by index."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import orjson
from sqlalchemy import Connection, bindparam, select, update

from chronoml.domain import ledger as L
from chronoml.store import evidence, schema
from chronoml.store.database import Store

E = schema.ledger_events


def _row_to_event(row: Any) -> L.LedgerEvent:
    state = row["state"]
    return L.LedgerEvent(
        seq=row["seq"],
        kind=row["kind"],
        endpoint=row["endpoint"],
        actor=row["actor"],
        recorded_at=row["recorded_at"],
        effective_at=row["effective_at"],
        payload=json.loads(row["payload"]),
        prev_hash=row["prev_hash"],
        hash=row["hash"],
        state=tuple(L.Variant.from_dict(v) for v in json.loads(state))
        if state is not None
        else None,
        back=row["back"],
    )


def _event_row(e: L.LedgerEvent) -> dict[str, Any]:
    return {
        "seq": e.seq,
        "hash": e.hash,
        "prev_hash": e.prev_hash,
        "kind": e.kind,
        "endpoint": e.endpoint,
        "actor": e.actor,
        "recorded_at": e.recorded_at,
        "effective_at": e.effective_at,
        "payload": L.canonical_json(e.payload).decode(),
        "state": L.canonical_json([v.to_dict() for v in e.state]).decode()
        if e.state is not None
        else None,
        "back": e.back,
        "sets_state": e.sets_state,
    }


def _last_state_event(conn: Connection, endpoint: str) -> L.LedgerEvent | None:
    row = (
        conn.execute(
            select(E)
            .where(E.c.endpoint == endpoint, E.c.sets_state.is_(True))
            .order_by(E.c.seq.desc())
            .limit(1)
        )
        .mappings()
        .first()
    )
    return _row_to_event(row) if row is not None else None


def append(
    store: Store, change: L.Change, *, effective_at: int | None = None, now: int | None = None
) -> L.LedgerEvent:
    """Seal ``change`` onto the chain. Raises LedgerError if it is not allowed."""
    return store.write_retrying(
        lambda conn: append_in(conn, change, effective_at=effective_at, now=now), "the ledger event"
    )


def append_in(
    conn: Connection,
    change: L.Change,
    *,
    effective_at: int | None = None,
    now: int | None = None,
) -> L.LedgerEvent:
    """Seal ``change`` onto the chain inside the caller's write transaction.

    For writes that must commit together with the event (an alert's state
    and its deliveries); the caller retries on IntegrityError as
    :func:`append` does.
    """
    h = schema.ledger_head
    head = conn.execute(select(h.c.seq, h.c.hash).where(h.c.id == 1).with_for_update()).one()
    history: list[L.LedgerEvent] = []
    if change.kind in L.STATE_KINDS:
        last = _last_state_event(conn, change.endpoint)
        if last is not None:
            if change.kind == "rollback" and last.back is not None:
                target = get_event(conn, last.back)
                if target is not None:
                    history.append(target)
            history.append(last)
    t = now if now is not None else time.time_ns() // 1000
    ev = L.plan(head.seq, head.hash, history, change, t, effective_at)
    conn.execute(E.insert().values(**_event_row(ev)))
    conn.execute(update(h).where(h.c.id == 1).values(seq=ev.seq, hash=ev.hash))
    # committed with the event, so the evidence log never lags the chain
    evidence.append_in(conn, [evidence.event_entry(ev)])
    return ev


def get_event(conn: Connection, seq: int) -> L.LedgerEvent | None:
    row = conn.execute(_EVENT, {"seq": seq}).mappings().first()
    return _row_to_event(row) if row is not None else None


_CACHED_EVENTS = 65_536


def cached_event(store: Store, conn: Connection, seq: int) -> L.LedgerEvent | None:
    """:func:`get_event` through the store's cache of immutable events."""
    ev = store.events.get(seq)
    if ev is None:
        ev = get_event(conn, seq)
        if ev is not None:
            if len(store.events) >= _CACHED_EVENTS:
                store.events.clear()
            store.events[seq] = ev
    return ev


def event(store: Store, seq: int) -> L.LedgerEvent | None:
    with store.read() as conn:
        return get_event(conn, seq)


# Built once: composing a select per call costs more than the query itself.
_STATE_AT = (
    select(E.c.seq, E.c.state)
    .where(
        E.c.endpoint == bindparam("endpoint"),
        E.c.sets_state.is_(True),
        E.c.effective_at <= bindparam("t"),
    )
    .order_by(E.c.effective_at.desc(), E.c.seq.desc())
    .limit(1)
)
_STATE_EVENT_AT = (
    select(E)
    .where(
        E.c.endpoint == bindparam("endpoint"),
        E.c.sets_state.is_(True),
        E.c.effective_at <= bindparam("t"),
    )
    .order_by(E.c.effective_at.desc(), E.c.seq.desc())
    .limit(1)
)
_EVENT = select(E).where(E.c.seq == bindparam("seq"))


def state_at(store: Store, endpoint: str, t: int) -> L.EndpointState:
    """What was live on ``endpoint`` at ``t``: one seek on ix_ledger_state."""
    with store.lookup() as conn:
        row = conn.execute(_STATE_AT, {"endpoint": endpoint, "t": t}).first()
    if row is None:
        return L.EndpointState(endpoint)
    variants = store.states.get(row.seq)
    if variants is None:
        variants = tuple(L.Variant.from_dict(v) for v in orjson.loads(row.state))
        if len(store.states) >= _CACHED_EVENTS:
            store.states.clear()
        store.states[row.seq] = variants
    return L.EndpointState(endpoint, variants, row.seq)


def state_event_at(store: Store, endpoint: str, t: int) -> L.LedgerEvent | None:
    """The event whose state was in force on ``endpoint`` at ``t``."""
    with store.lookup() as conn:
        row = conn.execute(_STATE_EVENT_AT, {"endpoint": endpoint, "t": t}).mappings().first()
    return _row_to_event(row) if row is not None else None


def history(store: Store, endpoint: str, limit: int | None = None) -> list[L.LedgerEvent]:
    """The endpoint's events in the order they were recorded."""
    q = select(E).where(E.c.endpoint == endpoint).order_by(E.c.seq.desc())
    if limit is not None:
        q = q.limit(limit)
    with store.read() as conn:
        rows = conn.execute(q).mappings().all()
    return [_row_to_event(r) for r in reversed(rows)]


def exists(store: Store, endpoint: str) -> bool:
    with store.read() as conn:
        return (
            conn.execute(select(E.c.seq).where(E.c.endpoint == endpoint).limit(1)).first()
            is not None
        )


def endpoints(store: Store) -> list[str]:
    with store.read() as conn:
        return list(conn.execute(select(E.c.endpoint).distinct().order_by(E.c.endpoint)).scalars())


def head(store: Store) -> tuple[int, str]:
    h = schema.ledger_head
    with store.read() as conn:
        row = conn.execute(select(h.c.seq, h.c.hash).where(h.c.id == 1)).one()
    return int(row.seq), str(row.hash)


def changed_since(store: Store, seq: int) -> set[str]:
    """Endpoints whose state changed in events after ``seq``."""
    with store.read() as conn:
        return set(
            conn.execute(
                select(E.c.endpoint).where(E.c.seq > seq, E.c.sets_state.is_(True)).distinct()
            ).scalars()
        )


def iter_events(store: Store, batch: int = 5000) -> Iterator[L.LedgerEvent]:
    """Every event in chain order, read in pages."""
    after = 0
    while True:
        with store.read() as conn:
            rows = (
                conn.execute(select(E).where(E.c.seq > after).order_by(E.c.seq).limit(batch))
                .mappings()
                .all()
            )
        if not rows:
            return
        for r in rows:
            yield _row_to_event(r)
        after = rows[-1]["seq"]


def verify(store: Store) -> L.ChainReport:
    """Recompute the chain, and check the head row agrees with its last event."""
    report = L.verify_chain(iter_events(store))
    if not report.ok:
        return report
    seq, h = head(store)
    if seq != report.events or h != report.head:
        return L.ChainReport(
            False,
            report.events,
            report.head,
            min(seq, report.events) + 1,
            f"ledger head says seq {seq}, but the chain ends at {report.events}: "
            "events were removed or added outside chronoml",
        )
    return report


def events_with_flags(conn: Connection) -> Iterator[tuple[int, L.LedgerEvent | None, bool]]:
    """Every event in seq order with its stored ``sets_state`` column (for the audit).

    An event whose stored columns cannot be read back (JSON edited into
    something else) comes as None, so the audit can name it.
    """
    for r in conn.execute(select(E).order_by(E.c.seq)).mappings():
        try:
            ev: L.LedgerEvent | None = _row_to_event(r)
        except (ValueError, TypeError, KeyError):
            ev = None
        yield int(r["seq"]), ev, bool(r["sets_state"])


def head_in(conn: Connection) -> tuple[int, str]:
    """The ledger head row, on the caller's connection."""
    h = schema.ledger_head
    row = conn.execute(select(h.c.seq, h.c.hash).where(h.c.id == 1)).one()
    return int(row.seq), str(row.hash)
