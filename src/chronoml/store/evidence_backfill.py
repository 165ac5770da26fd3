"""Commit to the evidence log every row stored before it existed (migration 0008)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from chronoml.store import schema
from chronoml.store.evidence import (
    Entry,
    append_in,
    batch_entry,
    commit_decisions,
    event_leaf,
    explanation_leaf,
    feedback_leaf,
    ledger_rows,
)
from chronoml.store.ledger import _row_to_event

_BACKFILL_BATCH = 4096


def backfill(conn: Connection) -> int:
    """Commit every row stored before the log existed; returns the entries appended.

    Ledger events first (in seq order), then decisions in time order in
    batches, then feedback and explanations. Run by the migration that
    creates the log, in its transaction.
    """
    entries = [
        Entry(
            "ledger_event",
            int(r["seq"]),
            1,
            None,
            int(r["recorded_at"]),
            event_leaf(_row_to_event(r), r["sets_state"]).leaf_hash(),
        )
        for r in ledger_rows(conn)
    ]
    n = len(entries)
    append_in(conn, entries)
    D = schema.decisions
    cols = [D.c[c] for c in _DECISION_COLS]
    batch: list[tuple[Any, ...]] = []
    for r in conn.execute(select(*cols).order_by(D.c.ts, D.c.id)):
        batch.append(tuple(r))
        if len(batch) >= _BACKFILL_BATCH:
            n += _backfill_decisions(conn, batch)
            batch = []
    if batch:
        n += _backfill_decisions(conn, batch)
    F = schema.feedback
    fb = list(conn.execute(select(F).order_by(F.c.id)).mappings())
    for i in range(0, len(fb), _BACKFILL_BATCH):
        chunk = fb[i : i + _BACKFILL_BATCH]
        hashes = [feedback_leaf(r).leaf_hash() for r in chunk]
        append_in(conn, [batch_entry("feedback", [str(r["id"]) for r in chunk], hashes)])
        n += 1
    X = schema.explanations
    xs = [tuple(r) for r in conn.execute(select(*X.c).order_by(X.c.created_at, X.c.decision_id))]
    for i in range(0, len(xs), _BACKFILL_BATCH):
        part = xs[i : i + _BACKFILL_BATCH]
        xh = [explanation_leaf(r).leaf_hash() for r in part]
        append_in(conn, [batch_entry("explanation", [r[0] for r in part], xh)])
        n += 1
    return n


_DECISION_COLS = (
    "id", "ts", "endpoint", "variant", "model_name", "model_version", "event_seq", "shadow",
    "unit", "request_id", "layout", "num", "txt", "output", "output_num", "latency_ms",
)  # fmt: skip


def _backfill_decisions(conn: Connection, rows: list[tuple[Any, ...]]) -> int:
    salts, commitments, hashes = commit_decisions(rows)
    entry = batch_entry(
        "decision", [r[0] for r in rows], hashes, salts=salts, commitments=commitments
    )
    append_in(conn, [entry])
    return 1
