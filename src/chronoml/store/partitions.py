"""Time partitions of the decision log on PostgreSQL (SQLite keeps one table each).

Both tables of decisions, ``decisions`` (a row each) and ``ingest_blocks`` (a
request of many rows as one row), are partitioned by RANGE on ``ts``
(microseconds), one partition per UTC day (``decisions_pYYYYMMDD``,
``ingest_blocks_pYYYYMMDD``), plus a DEFAULT partition each that catches a
row no day partition covers yet, so an insert never fails for want of one.
Day partitions are created ahead of time (:func:`maintain`, run by the
server's background worker and by ``chronoml db partitions``); a partition
whose rows an archive has taken away is detached and dropped behind.

Detaching never loses a decision: only a partition that is wholly older than
the cut and holds no rows is detached, under a lock that keeps writers out
between the check and the detach. A partition that still holds rows is kept
and reported: its rows go when ``chronoml archive`` has archived them.

The primary key of a partitioned table must contain the partition key, so it
is ``(id, ts)``. Ids are time-ordered (UUIDv7, :mod:`chronoml.ids`; a block's
id and its decisions' ids keep the 48-bit time of the id they were made from):
a lookup by id adds the span of ``ts`` its id implies (:func:`id_span`) and so
reads one partition; a row outside that span (an id made elsewhere, a clock
step) is still found by the unpruned lookup that follows a miss.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, select, text
from sqlalchemy.exc import OperationalError

from chronoml.ids import block_of
from chronoml.store import ingest, ingest_reads, schema
from chronoml.store.database import Store
from chronoml.store.id_types import held
from chronoml.store.spans import ID_SPAN_AFTER_US as ID_SPAN_AFTER_US
from chronoml.store.spans import ID_SPAN_BEFORE_US as ID_SPAN_BEFORE_US
from chronoml.store.spans import id_span as id_span
from chronoml.store.spans import id_time_us as id_time_us
from chronoml.store.spans import ids_span as ids_span
from chronoml.timeutil import now_us
from chronoml.worker import Worker

log = logging.getLogger("chronoml.partitions")

PARENT = "decisions"
DEFAULT = "decisions_default"
BLOCKS = "ingest_blocks"
# every table partitioned by day, in the order a maintenance pass takes them
TABLES = (PARENT, BLOCKS)
DAY_US = 86_400_000_000
AHEAD_DAYS = 7
# one maintainer at a time across the replicas of a store; advisory locks are per
# database, so the key names the store's schema (stores in other schemas go on)
_LOCK_KEY = "hashtext(current_schema() || '.chronoml-partitions')"
# DDL waits at most this long for a lock, so writers never queue behind it for long
_LOCK_TIMEOUT = "2s"

_BOUND = re.compile(r"FOR VALUES FROM \('?(-?\d+)'?\) TO \('?(-?\d+)'?\)")


@dataclass(frozen=True)
class Partition:
    """One partition of a table: ``[start, end)`` in microseconds (None: DEFAULT)."""

    name: str
    start: int | None
    end: int | None


@dataclass
class Report:
    """What one maintenance pass did."""

    created: list[str]
    detached: list[str]
    kept: list[tuple[str, int]]  # old partitions still holding rows (not yet archived)
    moved: int = 0  # decision rows moved out of the DEFAULT partition into a day partition
    busy: bool = False  # a step waited too long for other transactions' locks: next pass
    moved_blocks: int = 0  # the same for ingest blocks (each a request of many decisions)


def day_start(us: int) -> int:
    return us - us % DAY_US


def name_for(start_us: int, parent: str = PARENT) -> str:
    return f"{parent}_p{datetime.fromtimestamp(start_us / 1e6, UTC):%Y%m%d}"


def default_of(parent: str) -> str:
    """The name of ``parent``'s DEFAULT partition."""
    return f"{parent}_default"


def rows_by_ids(conn: Connection, columns: Sequence[Any], ids: Sequence[str]) -> list[Any]:
    """Driver rows of ``columns`` (the first is ``decisions.id``) for the decisions of ``ids``.

    On PostgreSQL the first query reads only the partitions the ids point to;
    ids not found there are looked for in every partition.
    """
    d = schema.decisions
    # decisions logged in ingest blocks are read from their blocks, the others as rows
    in_blocks = [i for i in ids if block_of(i) is not None]
    ids = [i for i in ids if block_of(i) is None] if in_blocks else ids
    ids = held(conn, list(ids))  # text that is no uuid is in no uuid column
    rows: list[Any] = []
    if in_blocks:
        at = [ingest.AT[c.name] for c in columns]
        rows += [tuple(t[k] for k in at) for t in ingest_reads.tuples_by_ids(conn, in_blocks)]
    if not ids:
        return rows
    q = select(*columns).where(d.c.id.in_(list(ids)))
    span = None if conn.dialect.name == "sqlite" else ids_span(list(ids))
    if span is None:
        return rows + list(conn.execute(q).cursor.fetchall())  # type: ignore[union-attr]
    pruned = q.where(d.c.ts >= span[0], d.c.ts < span[1])
    rows += list(conn.execute(pruned).cursor.fetchall())  # type: ignore[union-attr]
    missing = set(ids).difference(r[0] for r in rows)
    if missing:
        rest = select(*columns).where(d.c.id.in_(sorted(missing)))
        rows += conn.execute(rest).cursor.fetchall()  # type: ignore[union-attr]
    return rows


def is_partitioned(conn: Connection, parent: str = PARENT) -> bool:
    if conn.dialect.name != "postgresql":
        return False
    kind = conn.execute(
        text("SELECT relkind FROM pg_class WHERE oid = to_regclass(:t)"), {"t": parent}
    ).scalar()
    return kind == "p"


def partitions(conn: Connection, parent: str = PARENT) -> list[Partition]:
    """The partitions of ``parent``, day partitions in time order, DEFAULT last."""
    rows = conn.execute(
        text(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
            " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(:t)"
        ),
        {"t": parent},
    ).all()
    days, default = [], []
    for name, bound in rows:
        m = _BOUND.search(bound)
        if m is None:
            default.append(Partition(name, None, None))
        else:
            days.append(Partition(name, int(m.group(1)), int(m.group(2))))
    return sorted(days, key=lambda p: p.start or 0) + default


def _quote(name: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        raise ValueError(f"not a partition name: {name!r}")
    return f'"{name}"'


def _create_day(conn: Connection, start: int, parent: str = PARENT) -> int:
    """Create the day partition starting at ``start``; returns rows moved from DEFAULT."""
    end = start + DAY_US
    name = _quote(name_for(start, parent))
    has_default = conn.execute(text("SELECT to_regclass(:t)"), {"t": default_of(parent)}).scalar()
    parent, default = _quote(parent), _quote(default_of(parent))
    waiting = 0
    if has_default is not None:
        waiting = int(
            conn.execute(
                text(f"SELECT count(*) FROM {default} WHERE ts >= :lo AND ts < :hi"),
                {"lo": start, "hi": end},
            ).scalar_one()
        )
    if waiting == 0:
        conn.execute(
            text(f"CREATE TABLE {name} PARTITION OF {parent} FOR VALUES FROM ({start}) TO ({end})")
        )
        return 0
    # rows that arrived before their day's partition: move them in with it, in
    # one transaction (a day partition may not be attached over DEFAULT's rows)
    conn.execute(
        text(f"CREATE TABLE {name} (LIKE {parent} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
    )
    conn.execute(
        text(
            f"WITH moved AS (DELETE FROM {default} WHERE ts >= :lo AND ts < :hi RETURNING *)"
            f" INSERT INTO {name} SELECT * FROM moved"
        ),
        {"lo": start, "hi": end},
    )
    conn.execute(
        text(f"ALTER TABLE {parent} ATTACH PARTITION {name} FOR VALUES FROM ({start}) TO ({end})")
    )
    return waiting


def _guard(conn: Connection) -> bool:
    """Take the maintainers' lock for this transaction; False if another holds it."""
    conn.execute(text(f"SET LOCAL lock_timeout = '{_LOCK_TIMEOUT}'"))
    return bool(conn.execute(text(f"SELECT pg_try_advisory_xact_lock({_LOCK_KEY})")).scalar())


def create_ahead(
    conn: Connection, now: int, days: int = AHEAD_DAYS, parent: str = PARENT
) -> tuple[list[str], int]:
    """Create ``parent``'s missing day partitions of today and the next ``days`` days."""
    have = {p.start for p in partitions(conn, parent)}
    created, moved = [], 0
    today = day_start(now)
    for k in range(days + 1):
        start = today + k * DAY_US
        if start not in have:
            moved += _create_day(conn, start, parent)
            created.append(name_for(start, parent))
    return created, moved


def detach_empty(
    conn: Connection, before: int, parent: str = PARENT
) -> tuple[list[str], list[tuple[str, int]]]:
    """Detach and drop the day partitions wholly before ``before`` that hold no rows.

    The parent is locked first (the order writers take locks in), so no row can
    be routed into a partition between the check that it is empty and its detach.
    Returns the partitions detached and those kept with their row counts.
    """
    old = [p for p in partitions(conn, parent) if p.end is not None and p.end <= before]
    if not old:
        return [], []
    conn.execute(text(f"LOCK TABLE {_quote(parent)} IN ACCESS EXCLUSIVE MODE"))
    detached, kept = [], []
    for p in old:
        name = _quote(p.name)
        if conn.execute(text(f"SELECT EXISTS (SELECT 1 FROM {name})")).scalar():
            n = int(conn.execute(text(f"SELECT count(*) FROM {name}")).scalar_one())
            kept.append((p.name, n))
            continue
        conn.execute(text(f"ALTER TABLE {_quote(parent)} DETACH PARTITION {name}"))
        conn.execute(text(f"DROP TABLE {name}"))
        detached.append(p.name)
    return detached, kept


def maintain(
    store: Store,
    *,
    now: int | None = None,
    ahead_days: int = AHEAD_DAYS,
    detach_after_us: int | None = None,
) -> Report | None:
    """One maintenance pass: partitions created ahead, empty old ones detached behind.

    Each step is a transaction of its own that waits at most 2 s for the locks
    it needs (``busy`` in the report when it gave up; the next pass tries
    again). Each partitioned table of :data:`TABLES` is taken in turn, a
    transaction per table and step. None on SQLite or an unpartitioned store,
    or when another replica is maintaining right now (its pass does the same work).
    """
    if store.is_sqlite:
        return None
    t = now_us() if now is None else now
    report = Report([], [], [])
    with store.read() as conn:
        tables = [p for p in TABLES if is_partitioned(conn, p)]
    if PARENT not in tables:
        return None

    def ahead(parent: str) -> Callable[[Connection], None]:
        def step(conn: Connection) -> None:
            made, moved = create_ahead(conn, t, ahead_days, parent)
            report.created += made
            if parent == PARENT:
                report.moved += moved
            else:
                report.moved_blocks += moved

        return step

    def behind(parent: str) -> Callable[[Connection], None]:
        def step(conn: Connection) -> None:
            assert detach_after_us is not None
            gone, kept = detach_empty(conn, day_start(t - detach_after_us), parent)
            report.detached += gone
            report.kept += kept

        return step

    steps = [ahead(p) for p in tables]
    if detach_after_us is not None:
        steps += [behind(p) for p in tables]
    for step in steps:
        try:
            with store.write() as conn:
                if not _guard(conn):
                    return None
                step(conn)
        except OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) != "55P03":  # lock_not_available
                raise
            report.busy = True
    return report


def sizes(store: Store) -> list[tuple[Partition, int, int]]:
    """Each partition of each table with its row estimate (planner statistics) and bytes
    on disk (an ingest block's row is a request of many decisions)."""
    with store.read() as conn:
        parts = [p for t in TABLES for p in partitions(conn, t)]
        out = []
        for p in parts:
            rows, size = conn.execute(
                text(
                    "SELECT greatest(reltuples, 0)::bigint, pg_total_relation_size(oid)"
                    " FROM pg_class WHERE oid = to_regclass(:n)"
                ),
                {"n": p.name},
            ).one()
            out.append((p, int(rows), int(size)))
    return out


class PartitionWorker(Worker):
    """The server's maintainer: a pass at start and then every ``interval_s`` seconds."""

    def __init__(self, store: Store, interval_s: float, detach_after_us: int | None = None) -> None:
        self.store = store
        self.detach_after_us = detach_after_us
        super().__init__("chronoml-partitions", self._pass, interval_s)

    def _pass(self) -> bool:
        report = maintain(self.store, detach_after_us=self.detach_after_us)
        if report is not None and (report.created or report.detached):
            log.info("partitions created %s, detached %s", report.created, report.detached)
        if report is not None and report.kept:
            log.info("old partitions kept until archived: %s", report.kept)
        return False


def explain(conn: Connection, sql: str, params: dict[str, Any]) -> list[str]:
    """The partitions a statement's plan reads (from EXPLAIN), for tests and benchmarks."""
    plan = conn.execute(text(f"EXPLAIN (FORMAT JSON) {sql}"), params).scalar_one()
    found: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        rel = node.get("Relation Name")
        if rel and rel.startswith(tuple(t + "_" for t in TABLES)):
            found.append(rel)
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    return sorted(set(found))
