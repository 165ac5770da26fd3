"""Time partitions of the decision log on PostgreSQL (SQLite keeps one table).

``decisions`` is partitioned by RANGE on ``ts`` (microseconds), one partition
per UTC day (``decisions_pYYYYMMDD``), plus a DEFAULT partition that catches a
row no day partition covers yet, so an insert never fails for want of one.
Day partitions are created ahead of time (:func:`maintain`, run by the
server's background worker and by ``chronoml db partitions``); a partition
whose rows an archive has taken away is detached and dropped behind.

Detaching never loses a decision: only a partition that is wholly older than
the cut and holds no rows is detached, under a lock that keeps writers out
between the check and the detach. A partition that still holds rows is kept
and reported: its rows go when ``chronoml archive`` has archived them.

The primary key of a partitioned table must contain the partition key, so it
is ``(id, ts)``. Ids are time-ordered (UUIDv7, :mod:`chronoml.ids`): a lookup
by id adds the span of ``ts`` its id implies (:func:`id_span`) and so reads
one partition; a row outside that span (an id made elsewhere, a clock step)
is still found by the unpruned lookup that follows a miss.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, select, text
from sqlalchemy.exc import OperationalError

from chronoml.ids import block_of
from chronoml.store import ingest, ingest_reads, schema
from chronoml.store.database import Store
from chronoml.timeutil import now_us
from chronoml.worker import Worker

log = logging.getLogger("chronoml.partitions")

PARENT = "decisions"
DEFAULT = "decisions_default"
DAY_US = 86_400_000_000
AHEAD_DAYS = 7
# a decision's ts is its request's arrival, its id is made when the model has
# answered: the id's time follows ts by the request's time in the server
ID_SPAN_BEFORE_US = 600_000_000
ID_SPAN_AFTER_US = 60_000_000
# one maintainer at a time across the replicas of a store; advisory locks are per
# database, so the key names the store's schema (stores in other schemas go on)
_LOCK_KEY = "hashtext(current_schema() || '.chronoml-partitions')"
# DDL waits at most this long for a lock, so writers never queue behind it for long
_LOCK_TIMEOUT = "2s"

_BOUND = re.compile(r"FOR VALUES FROM \('?(-?\d+)'?\) TO \('?(-?\d+)'?\)")
_UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[78][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


@dataclass(frozen=True)
class Partition:
    """One partition of ``decisions``: ``[start, end)`` in microseconds (None: DEFAULT)."""

    name: str
    start: int | None
    end: int | None


@dataclass
class Report:
    """What one maintenance pass did."""

    created: list[str]
    detached: list[str]
    kept: list[tuple[str, int]]  # old partitions still holding rows (not yet archived)
    moved: int = 0  # rows moved out of the DEFAULT partition into a new day partition
    busy: bool = False  # a step waited too long for other transactions' locks: next pass


def day_start(us: int) -> int:
    return us - us % DAY_US


def name_for(start_us: int) -> str:
    return f"{PARENT}_p{datetime.fromtimestamp(start_us / 1e6, UTC):%Y%m%d}"


def id_time_us(decision_id: str) -> int | None:
    """The time a UUIDv7 id was made (its 48-bit millisecond prefix), or None for another id."""
    s = decision_id.lower()
    if not _UUID7.match(s):
        return None
    return int(s[:8] + s[9:13], 16) * 1000


def id_span(decision_id: str) -> tuple[int, int] | None:
    """``[lo, hi)`` of ``ts`` a decision with this id almost surely has (None: no idea)."""
    t = id_time_us(decision_id)
    if t is None:
        return None
    return t - ID_SPAN_BEFORE_US, t + ID_SPAN_AFTER_US


def ids_span(ids: list[str]) -> tuple[int, int] | None:
    """The span of ``ts`` covering every one of ``ids`` (None if one is not time-ordered)."""
    spans = [id_span(i) for i in ids]
    if not spans or any(s is None for s in spans):
        return None
    return min(s[0] for s in spans if s), max(s[1] for s in spans if s)


def rows_by_ids(conn: Connection, columns: Sequence[Any], ids: Sequence[str]) -> list[Any]:
    """Driver rows of ``columns`` (the first is ``decisions.id``) for the decisions of ``ids``.

    On PostgreSQL the first query reads only the partitions the ids point to;
    ids not found there are looked for in every partition.
    """
    d = schema.decisions
    # decisions logged in ingest blocks are read from their blocks, the others as rows
    in_blocks = [i for i in ids if block_of(i) is not None]
    ids = [i for i in ids if block_of(i) is None] if in_blocks else ids
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


def is_partitioned(conn: Connection) -> bool:
    if conn.dialect.name != "postgresql":
        return False
    kind = conn.execute(
        text("SELECT relkind FROM pg_class WHERE oid = to_regclass(:t)"), {"t": PARENT}
    ).scalar()
    return kind == "p"


def partitions(conn: Connection) -> list[Partition]:
    """The partitions of ``decisions``, day partitions in time order, DEFAULT last."""
    rows = conn.execute(
        text(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
            " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(:t)"
        ),
        {"t": PARENT},
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


def _create_day(conn: Connection, start: int) -> int:
    """Create the day partition starting at ``start``; returns rows moved from DEFAULT."""
    end = start + DAY_US
    name = _quote(name_for(start))
    has_default = conn.execute(text("SELECT to_regclass(:t)"), {"t": DEFAULT}).scalar()
    waiting = 0
    if has_default is not None:
        waiting = int(
            conn.execute(
                text(f"SELECT count(*) FROM {DEFAULT} WHERE ts >= :lo AND ts < :hi"),
                {"lo": start, "hi": end},
            ).scalar_one()
        )
    if waiting == 0:
        conn.execute(
            text(f"CREATE TABLE {name} PARTITION OF {PARENT} FOR VALUES FROM ({start}) TO ({end})")
        )
        return 0
    # rows that arrived before their day's partition: move them in with it, in
    # one transaction (a day partition may not be attached over DEFAULT's rows)
    conn.execute(
        text(f"CREATE TABLE {name} (LIKE {PARENT} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
    )
    conn.execute(
        text(
            f"WITH moved AS (DELETE FROM {DEFAULT} WHERE ts >= :lo AND ts < :hi RETURNING *)"
            f" INSERT INTO {name} SELECT * FROM moved"
        ),
        {"lo": start, "hi": end},
    )
    conn.execute(
        text(f"ALTER TABLE {PARENT} ATTACH PARTITION {name} FOR VALUES FROM ({start}) TO ({end})")
    )
    return waiting


def _guard(conn: Connection) -> bool:
    """Take the maintainers' lock for this transaction; False if another holds it."""
    conn.execute(text(f"SET LOCAL lock_timeout = '{_LOCK_TIMEOUT}'"))
    return bool(conn.execute(text(f"SELECT pg_try_advisory_xact_lock({_LOCK_KEY})")).scalar())


def create_ahead(conn: Connection, now: int, days: int = AHEAD_DAYS) -> tuple[list[str], int]:
    """Create the day partitions of today and the next ``days`` days that are missing."""
    have = {p.start for p in partitions(conn)}
    created, moved = [], 0
    today = day_start(now)
    for k in range(days + 1):
        start = today + k * DAY_US
        if start not in have:
            moved += _create_day(conn, start)
            created.append(name_for(start))
    return created, moved


def detach_empty(conn: Connection, before: int) -> tuple[list[str], list[tuple[str, int]]]:
    """Detach and drop the day partitions wholly before ``before`` that hold no rows.

    The parent is locked first (the order writers take locks in), so no row can
    be routed into a partition between the check that it is empty and its detach.
    Returns the partitions detached and those kept with their row counts.
    """
    old = [p for p in partitions(conn) if p.end is not None and p.end <= before]
    if not old:
        return [], []
    conn.execute(text(f"LOCK TABLE {PARENT} IN ACCESS EXCLUSIVE MODE"))
    detached, kept = [], []
    for p in old:
        name = _quote(p.name)
        if conn.execute(text(f"SELECT EXISTS (SELECT 1 FROM {name})")).scalar():
            n = int(conn.execute(text(f"SELECT count(*) FROM {name}")).scalar_one())
            kept.append((p.name, n))
            continue
        conn.execute(text(f"ALTER TABLE {PARENT} DETACH PARTITION {name}"))
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
    again). None on SQLite or an unpartitioned store, or when another replica
    is maintaining right now (its pass does the same work).
    """
    if store.is_sqlite:
        return None
    t = now_us() if now is None else now
    report = Report([], [], [])
    with store.read() as conn:
        if not is_partitioned(conn):
            return None

    def ahead(conn: Connection) -> None:
        report.created, report.moved = create_ahead(conn, t, ahead_days)

    def behind(conn: Connection) -> None:
        assert detach_after_us is not None
        report.detached, report.kept = detach_empty(conn, day_start(t - detach_after_us))

    steps = [ahead] + ([behind] if detach_after_us is not None else [])
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
    """Each partition with its row estimate (planner statistics) and bytes on disk."""
    with store.read() as conn:
        parts = partitions(conn)
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


# --- conversion of an existing table (migration 0012) ------------------------


def _index_defs(conn: Connection, table: str) -> list[tuple[str, str, bool, bool]]:
    return [
        (r[0], r[1], bool(r[2]), bool(r[3]))
        for r in conn.execute(
            text(
                "SELECT c.relname, pg_get_indexdef(i.indexrelid), i.indisprimary, i.indisunique"
                " FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                " WHERE i.indrelid = to_regclass(:t)"
            ),
            {"t": table},
        ).all()
    ]


def convert(conn: Connection, now: int, ahead_days: int = AHEAD_DAYS) -> int:
    """Turn a plain ``decisions`` table into the partitioned one, keeping every row.

    Columns, defaults and checks are copied from the table as it is (whatever
    earlier migrations made of it); the primary key gains ``ts``; other
    indexes are made again on the parent (so on every partition). Day
    partitions are made for each day that has rows and for today and the days
    ahead. Returns the rows copied.
    """
    if is_partitioned(conn) or conn.dialect.name != "postgresql":
        return 0
    old = f"{PARENT}_unpartitioned"
    defs = _index_defs(conn, PARENT)
    pkey = conn.execute(
        text(
            "SELECT conname FROM pg_constraint WHERE conrelid = to_regclass(:t) AND contype = 'p'"
        ),
        {"t": PARENT},
    ).scalar()
    conn.execute(text(f"ALTER TABLE {PARENT} RENAME TO {old}"))
    if pkey is not None:
        conn.execute(text(f"ALTER TABLE {old} RENAME CONSTRAINT {pkey} TO {old}_pkey"))
    for name, _, primary, _ in defs:
        if not primary:
            conn.execute(text(f"ALTER INDEX {_quote(name)} RENAME TO {_quote(name + '_old')}"))
    conn.execute(
        text(
            f"CREATE TABLE {PARENT} (LIKE {old} INCLUDING DEFAULTS INCLUDING CONSTRAINTS"
            " INCLUDING STORAGE INCLUDING COMMENTS) PARTITION BY RANGE (ts)"
        )
    )
    conn.execute(text(f"ALTER TABLE {PARENT} ADD CONSTRAINT {PARENT}_pkey PRIMARY KEY (id, ts)"))
    on_table = re.compile(r" ON (?:ONLY )?\S+ USING ")
    for _name, ddl, primary, unique in defs:
        if primary:
            continue
        made = on_table.sub(f" ON {PARENT} USING ", ddl, count=1)
        if unique and "ts" not in re.findall(r"\w+", made.split(" USING ", 1)[1]):
            # a unique index must hold the partition key too
            made = made.rstrip(")") + ", ts)"
        conn.execute(text(made))
    conn.execute(text(f"CREATE TABLE {DEFAULT} PARTITION OF {PARENT} DEFAULT"))
    days = [
        int(d)
        for (d,) in conn.execute(
            text(f"SELECT DISTINCT ts - ts % {DAY_US} FROM {old} ORDER BY 1")
        ).all()
    ]
    today = day_start(now)
    for start in sorted(set(days) | {today + k * DAY_US for k in range(ahead_days + 1)}):
        conn.execute(
            text(
                f"CREATE TABLE {_quote(name_for(start))} PARTITION OF {PARENT}"
                f" FOR VALUES FROM ({start}) TO ({start + DAY_US})"
            )
        )
    copied = conn.execute(text(f"INSERT INTO {PARENT} SELECT * FROM {old}")).rowcount
    conn.execute(text(f"DROP TABLE {old}"))
    return int(copied or 0)


def unconvert(conn: Connection) -> None:
    """The reverse of :func:`convert`: one plain table with ``id`` as its key, rows kept."""
    if not is_partitioned(conn):
        return
    old = f"{PARENT}_partitioned"
    defs = _index_defs(conn, PARENT)
    conn.execute(text(f"ALTER TABLE {PARENT} RENAME TO {old}"))
    conn.execute(text(f"ALTER TABLE {old} RENAME CONSTRAINT {PARENT}_pkey TO {old}_pkey"))
    for name, _, primary, _ in defs:
        if not primary:
            conn.execute(text(f"ALTER INDEX {_quote(name)} RENAME TO {_quote(name + '_old')}"))
    conn.execute(
        text(
            f"CREATE TABLE {PARENT} (LIKE {old} INCLUDING DEFAULTS INCLUDING CONSTRAINTS"
            " INCLUDING STORAGE INCLUDING COMMENTS)"
        )
    )
    conn.execute(text(f"ALTER TABLE {PARENT} ADD CONSTRAINT {PARENT}_pkey PRIMARY KEY (id)"))
    on_table = re.compile(r" ON (?:ONLY )?\S+ USING ")
    for _, ddl, primary, _ in defs:
        if not primary:
            conn.execute(text(on_table.sub(f" ON {PARENT} USING ", ddl, count=1)))
    conn.execute(text(f"INSERT INTO {PARENT} SELECT * FROM {old}"))
    conn.execute(text(f"DROP TABLE {old} CASCADE"))


def explain(conn: Connection, sql: str, params: dict[str, Any]) -> list[str]:
    """The partitions a statement's plan reads (from EXPLAIN), for tests and benchmarks."""
    plan = conn.execute(text(f"EXPLAIN (FORMAT JSON) {sql}"), params).scalar_one()
    found: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        rel = node.get("Relation Name")
        if rel and rel.startswith(PARENT + "_"):
            found.append(rel)
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    return sorted(set(found))
