"""The evidence log's tables: every SQL statement about the Merkle log lives here.

Each write that records evidence appends to the log *in its own transaction*:
a ledger event is one entry (its :class:`~chronoml.domain.leaves.LedgerEventLeaf`),
a group commit of decisions, feedback or explanations is one entry (a
:class:`~chronoml.domain.leaves.BatchLeaf` over the batch's item leaves). The
head row holds the log's right edge (a :class:`~chronoml.domain.merkle.CompactRange`),
locked by the writer, so appending costs O(log n) hashes and a few rows, and
the subtree nodes each append completes go to ``evidence_nodes`` for proofs.

Leaf hashes are computed in Python before any statement runs (:func:`plan`), so
the database only stores bytes. Two executors write a plan: :func:`append_in`
on a SQLAlchemy connection, :class:`RawAppend` on the driver connection of the
decision log's fast path.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, String, bindparam, cast, select, update

from chronoml.domain import leaves as LV
from chronoml.domain import ledger as L
from chronoml.domain import merkle
from chronoml.store import evidence_batch as EB
from chronoml.store import id_types, schema
from chronoml.store import ingest_reads as IR
from chronoml.store.evidence_batch import decision_leaf_hash as decision_leaf_hash
from chronoml.timeutil import now_us

LOG = schema.evidence_log
NODES = schema.evidence_nodes
HEAD = schema.evidence_head
ITEMS = schema.evidence_items

SALT_BYTES = 16

LOG_COLUMNS = ("idx", "kind", "ref", "size", "root", "committed_at", "leaf")
ITEM_COLUMNS = ("kind", "ref", "log_index", "position", "leaf", "salt", "commitment")


# --- leaves of stored rows ------------------------------------------------------


def event_leaf(ev: L.LedgerEvent, sets_state: bool) -> LV.LedgerEventLeaf:
    """The leaf of a ledger event with the ``sets_state`` value stored beside it."""
    return LV.LedgerEventLeaf(ev.seq, L.canonical_json(ev.content()), ev.hash, bool(sets_state))


def decision_leaf(r: Sequence[Any], commitment: bytes) -> LV.DecisionLeaf:
    """The leaf of a decision given as a tuple in ``decisions.COLUMNS`` order."""
    out = r[14]
    return LV.DecisionLeaf(
        r[0],
        int(r[1]),
        r[2],
        r[3],
        r[4],
        r[5],
        int(r[6]),
        bool(r[7]),
        r[8],
        r[9],
        r[10],
        commitment,
        r[13],
        None if out is None else float(out),
        float(r[15]),
        _scores_digest(r),
        r[17] if len(r) > 17 else None,
    )


def _scores_digest(r: Sequence[Any]) -> bytes | None:
    return None if len(r) <= 16 or r[16] is None else hashlib.sha256(bytes(r[16])).digest()


def commit_decisions(rows: Sequence[Sequence[Any]]) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """Fresh salts, input commitments and leaf hashes for decision tuples (COLUMNS order)."""
    pool = os.urandom(SALT_BYTES * len(rows))
    salts = [pool[i * SALT_BYTES : (i + 1) * SALT_BYTES] for i in range(len(rows))]
    # a page at a time pays off once its strings repeat; a few rows go one by one. The
    # context is committed with the inputs, not in the leaf (erasure removes it with them)
    if len(rows) >= 8 and all(len(r) == 18 for r in rows):
        commitments = EB.commitments(rows, salts)
        inside = [r[17] is not None for r in rows]
        return salts, commitments, EB.leaf_hashes(rows, commitments, 0, inside)
    ctx = [r[17] if len(r) > 17 else None for r in rows]
    commitments = [LV.inputs_commitment(r[10], bytes(r[11]), r[12], s, c) for r, s, c in zip(rows, salts, ctx, strict=True)]  # fmt: skip
    hashes = [decision_leaf_hash(r if c is None else r[:17], m) for r, c, m in zip(rows, ctx, commitments, strict=True)]  # fmt: skip
    return salts, commitments, hashes


def feedback_leaf(r: Any) -> LV.FeedbackLeaf:
    """The leaf of a stored feedback row (a mapping of its columns)."""
    num = r["label_num"]
    obs = r["observed_at"]
    return LV.FeedbackLeaf(
        int(r["id"]),
        r["decision_id"],
        r["label"],
        None if num is None else float(num),
        None if obs is None else int(obs),
        int(r["recorded_at"]),
        r["actor"],
    )


def explanation_leaf(r: Sequence[Any]) -> LV.ExplanationLeaf:
    """The leaf of an explanation as a tuple in ``explanations`` column order."""
    return LV.ExplanationLeaf(r[0], r[1], r[2], float(r[3]), r[4], r[5], int(r[6]))


# --- planning an append -----------------------------------------------------------


@dataclass
class Entry:
    """One log entry to append, with its batched items (ref, leaf, salt, commitment)."""

    kind: str
    ref: int | None
    size: int
    root: bytes | None
    committed_at: int
    leaf: bytes
    refs: Sequence[str] = ()
    leaves: Sequence[bytes] = ()
    salts: Sequence[bytes | None] | None = None
    commitments: Sequence[bytes | None] | None = None
    # items stored packed, after ``refs``: (kind, ref, first position, leaves, salts,
    # commitments), each blob the rows' values end to end
    packed: Sequence[tuple[str, str, int, bytes, bytes | None, bytes | None]] = ()


def event_entry(ev: L.LedgerEvent) -> Entry:
    """The log entry of a ledger event just sealed."""
    leaf = event_leaf(ev, ev.sets_state).leaf_hash()
    return Entry("ledger_event", ev.seq, 1, None, ev.recorded_at, leaf)


def batch_entry(
    kind: str,
    refs: Sequence[str],
    leaf_hashes: Sequence[bytes],
    committed_at: int | None = None,
    *,
    salts: Sequence[bytes | None] | None = None,
    commitments: Sequence[bytes | None] | None = None,
) -> Entry:
    """The log entry of one group commit of ``kind`` items (their leaf hashes, in order)."""
    t = now_us() if committed_at is None else committed_at
    root = LV.batch_root(list(leaf_hashes))
    leaf = EB.batch_leaf_hash(kind, len(leaf_hashes), root, t)
    return Entry(kind, None, len(leaf_hashes), root, t, leaf, refs, leaf_hashes, salts, commitments)


def rooted_entry(kind: str, size: int, root: bytes) -> Entry:
    """The log entry of one group commit of ``size`` items whose root the caller computed
    (items then given as :attr:`Entry.refs` and :attr:`Entry.packed`)."""
    t = now_us()
    return Entry(kind, None, size, root, t, EB.batch_leaf_hash(kind, size, root, t))


def split_peaks(size: int, blob: bytes) -> merkle.CompactRange:
    """The head row's peaks column as a compact range."""
    raw = bytes(blob)
    return merkle.CompactRange(
        int(size), [raw[i : i + merkle.HASH_SIZE] for i in range(0, len(raw), merkle.HASH_SIZE)]
    )


@dataclass
class Plan:
    """The rows one append writes."""

    log: list[tuple[Any, ...]] = field(default_factory=list)
    nodes: list[tuple[int, int, bytes]] = field(default_factory=list)
    items: list[tuple[Any, ...]] = field(default_factory=list)
    size: int = 0
    peaks: bytes = b""


def plan(rng: merkle.CompactRange, entries: Sequence[Entry]) -> Plan:
    """Append ``entries`` to ``rng`` (in place) and list the rows that record it."""
    p = Plan()
    for e in entries:
        idx = rng.size
        p.nodes.extend(rng.append(e.leaf))
        p.log.append((idx, e.kind, e.ref, e.size, e.root, e.committed_at, e.leaf))
        for pos, (ref, leaf) in enumerate(zip(e.refs, e.leaves, strict=True)):
            salt = e.salts[pos] if e.salts is not None else None
            com = e.commitments[pos] if e.commitments is not None else None
            p.items.append((e.kind, ref, idx, pos, leaf, salt, com))
        for kind, ref, pos, leaf, salt, com in e.packed:
            p.items.append((kind, ref, idx, pos, leaf, salt, com))
    p.size = rng.size
    p.peaks = b"".join(rng.peaks)
    return p


# --- writing ----------------------------------------------------------------------


def append_in(conn: Connection, entries: Sequence[Entry]) -> Plan:
    """Append ``entries`` inside the caller's write transaction (locks the head row)."""
    if not entries:
        return Plan()
    head = conn.execute(
        select(HEAD.c.size, HEAD.c.peaks).where(HEAD.c.id == 1).with_for_update()
    ).one()
    p = plan(split_peaks(head.size, head.peaks), entries)
    conn.execute(LOG.insert(), [dict(zip(LOG_COLUMNS, r, strict=True)) for r in p.log])
    conn.execute(NODES.insert(), [{"level": lv, "idx": i, "hash": h} for lv, i, h in p.nodes])
    if p.items:
        conn.execute(ITEMS.insert(), [dict(zip(ITEM_COLUMNS, r, strict=True)) for r in p.items])
    conn.execute(update(HEAD).where(HEAD.c.id == 1).values(size=p.size, peaks=p.peaks))
    return p


class RawAppend:
    """Writes a plan on a driver connection (sqlite3 or psycopg) inside its open transaction.

    The decision log's group commit runs below SQLAlchemy; this is its evidence
    step: one head update (and a head read when another writer appended since)
    and three inserts per commit.
    """

    def __init__(self, is_sqlite: bool) -> None:
        self.is_sqlite = is_sqlite
        ph = "?" if is_sqlite else "%s"
        lock = "" if is_sqlite else " FOR UPDATE"  # SQLite's BEGIN IMMEDIATE already serialises
        self._head = f"SELECT size, peaks FROM evidence_head WHERE id = 1{lock}"
        self._log = (
            f"INSERT INTO evidence_log ({', '.join(LOG_COLUMNS)}) VALUES ({', '.join([ph] * 7)})"
        )
        self._nodes = f"INSERT INTO evidence_nodes (level, idx, hash) VALUES ({ph}, {ph}, {ph})"
        self._items = (
            f"INSERT INTO evidence_items ({', '.join(ITEM_COLUMNS)}) VALUES ({', '.join([ph] * 7)})"
        )
        self._items_copy = f"COPY evidence_items ({', '.join(ITEM_COLUMNS)}) FROM STDIN"
        self._update = f"UPDATE evidence_head SET size = {ph}, peaks = {ph} WHERE id = 1"
        self._update_if = f"{self._update} AND size = {ph} AND peaks = {ph}"
        # the last head this writer saw: its peaks need no re-parsing while no one else appends
        self._cached: tuple[int, bytes, merkle.CompactRange] | None = None

    def _plan(self, cur: Any, entries: Sequence[Entry]) -> tuple[Plan, merkle.CompactRange]:
        """Lock the head and plan on it: one guarded UPDATE while this writer's copy is current.

        The UPDATE succeeds only if the head is still exactly what this writer
        last wrote (no other writer appended), so the plan made on that copy is
        the plan the head gives; otherwise the head is read and planned on.
        """
        c = self._cached
        if c is not None:
            rng = c[2].copy()
            p = plan(rng, entries)
            cur.execute(self._update_if, (p.size, p.peaks, c[0], c[1]))
            if cur.rowcount == 1:
                return p, rng
        cur.execute(self._head)
        size, peaks = cur.fetchone()
        rng = split_peaks(size, bytes(peaks))
        p = plan(rng, entries)
        cur.execute(self._update, (p.size, p.peaks))
        return p, rng

    def write(self, db: Any, entries: Sequence[Entry]) -> None:
        """Append ``entries``; ``db`` is the driver connection with a transaction open."""
        if self.is_sqlite:
            p, rng = self._plan(db.cursor(), entries)
            db.executemany(self._log, p.log)
            db.executemany(self._nodes, p.nodes)
            if p.items:
                db.executemany(self._items, p.items)
        else:
            with db.cursor() as cur:
                p, rng = self._plan(cur, entries)
                cur.executemany(self._log, p.log)
                cur.executemany(self._nodes, p.nodes)
            if p.items:
                with db.cursor() as cur, cur.copy(self._items_copy) as copy:
                    for r in p.items:
                        copy.write_row(r)
        self._cached = (p.size, p.peaks, rng)

    def forget(self) -> None:
        """Drop the cached head (after a failed commit)."""
        self._cached = None


# --- reading ----------------------------------------------------------------------


@dataclass(frozen=True)
class Head:
    """The log's stored head: origin, size and root."""

    origin: str
    size: int
    root: bytes

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"origin": self.origin, "size": self.size, "root": self.root.hex()}


def head_in(conn: Connection) -> Head:
    """The head row (origin, size, root from its peaks)."""
    head = find_head(conn)
    if head is None:
        raise merkle.MerkleError("the evidence log has no head row: run audit verify", "head")
    return head


def find_head(conn: Connection) -> Head | None:
    """The head row, or None when it is gone or unreadable."""
    q = select(HEAD.c.origin, HEAD.c.size, HEAD.c.peaks).where(HEAD.c.id == 1)
    row = conn.execute(q).first()
    if row is None:
        return None
    try:
        return Head(row.origin, int(row.size), split_peaks(row.size, row.peaks).root())
    except merkle.MerkleError:
        return Head(row.origin, int(row.size), b"")


def log_entries(conn: Connection) -> list[tuple[Any, ...]]:
    """Every log entry in order, as tuples in :data:`LOG_COLUMNS` order."""
    q = select(*[LOG.c[c] for c in LOG_COLUMNS]).order_by(LOG.c.idx)
    return [tuple(r) for r in conn.execute(q)]


_LOG_ENTRY = select(*[LOG.c[c] for c in LOG_COLUMNS]).where(LOG.c.idx == bindparam("idx"))


def log_entry(conn: Connection, idx: int) -> tuple[Any, ...] | None:
    """One log entry, or None."""
    r = conn.execute(_LOG_ENTRY, {"idx": idx}).first()
    return tuple(r) if r is not None else None


def event_entry_index(conn: Connection, seq: int) -> int | None:
    """The log index of ledger event ``seq``."""
    q = select(LOG.c.idx).where(LOG.c.kind == "ledger_event", LOG.c.ref == seq)
    v = conn.execute(q).scalar()
    return None if v is None else int(v)


def all_nodes(conn: Connection) -> Iterator[tuple[int, int, bytes]]:
    """Every stored subtree node, (level, idx, hash)."""
    for r in conn.execute(select(NODES.c.level, NODES.c.idx, NODES.c.hash)):
        yield int(r[0]), int(r[1]), bytes(r[2])


def nodes_in(conn: Connection, wanted: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    """The stored hashes of the ``(level, idx)`` nodes asked for (those that exist): one query."""
    if not wanted:
        return {}
    by_level: dict[int, list[int]] = {}
    for lv, i in wanted:
        by_level.setdefault(int(lv), []).append(int(i))
    # integers we computed, inlined; one OR term per level so each is a primary-key search
    # (a row-value IN list makes SQLite scan the whole table)
    terms = " OR ".join(
        f"(level = {lv} AND idx IN ({', '.join(map(str, sorted(set(ix))))}))"
        for lv, ix in sorted(by_level.items())
    )
    q = f"SELECT level, idx, hash FROM evidence_nodes WHERE {terms}"
    return {(int(lv), int(i)): bytes(h) for lv, i, h in conn.exec_driver_sql(q)}


_ITEM = select(*[ITEMS.c[c] for c in ITEM_COLUMNS]).where(
    ITEMS.c.kind == bindparam("kind"), ITEMS.c.ref == bindparam("ref")
)


def item_in(conn: Connection, kind: str, ref: str) -> tuple[Any, ...] | None:
    """An item's evidence row in :data:`ITEM_COLUMNS` order, or None.

    A decision logged in an ingest block has its row cut from its block's item."""
    r = conn.execute(_ITEM, {"kind": kind, "ref": ref}).first()
    if r is None and kind == "decision":
        return IR.item_in(conn, ref)
    return tuple(r) if r is not None else None


def batch_leaves_in(conn: Connection, log_index: int) -> list[tuple[int, bytes]]:
    """The (position, leaf) of every item of the batch at ``log_index``, in order."""
    q = (
        "SELECT position, leaf FROM evidence_items WHERE log_index = "
        f"{int(log_index)} ORDER BY position"
    )
    # the driver's tuples: a batch holds up to thousands of items
    cur = conn.exec_driver_sql(q).cursor
    assert cur is not None
    out: list[tuple[int, bytes]] = []
    for p, h in cur.fetchall():
        raw = bytes(h)
        # an ingest block's item: its rows' leaves end to end, from its first position
        for k in range(0, len(raw), merkle.HASH_SIZE):
            out.append((int(p) + k // merkle.HASH_SIZE, raw[k : k + merkle.HASH_SIZE]))
    return out


def ledger_rows(conn: Connection) -> Iterator[Any]:
    """Every ledger event row (a mapping of its columns), in seq order."""
    E = schema.ledger_events
    yield from conn.execute(select(E).order_by(E.c.seq)).mappings()


def feedback_items(conn: Connection) -> Iterator[Any]:
    """Feedback evidence rows joined to their feedback row (absent: NULL columns)."""
    F = schema.feedback
    q = (
        select(ITEMS.c.log_index, ITEMS.c.position, ITEMS.c.ref, ITEMS.c.leaf, *F.c)
        .select_from(ITEMS.outerjoin(F, cast(F.c.id, String(64)) == ITEMS.c.ref))
        .where(ITEMS.c.kind == "feedback")
        .order_by(ITEMS.c.log_index, ITEMS.c.position)
    )
    yield from conn.execute(q).mappings()


def explanation_items(conn: Connection) -> Iterator[Any]:
    """Explanation evidence rows joined to their explanation row."""
    X = schema.explanations
    q = (
        select(ITEMS.c.log_index, ITEMS.c.position, ITEMS.c.ref, ITEMS.c.leaf, *X.c)
        .select_from(ITEMS.outerjoin(X, X.c.decision_id == id_types.ref_as_id(conn, ITEMS.c.ref)))
        .where(ITEMS.c.kind == "explanation")
        .order_by(ITEMS.c.log_index, ITEMS.c.position)
    )
    yield from conn.execute(q).mappings()


def uncommitted(conn: Connection, kind: str, limit: int = 1) -> list[str]:
    """Rows of ``kind`` that have no evidence item (written outside chronoml)."""
    if kind == "feedback":
        t = schema.feedback
        key: Any = cast(t.c.id, String(64))
        ident = t.c.id
    elif kind == "explanation":
        t = schema.explanations
        ident = t.c.decision_id
        key = cast(ident, String(64))  # the id as its text: uuid or text, as the ref is
    else:
        t = schema.decisions
        ident = t.c.id
        key = cast(ident, String(64))
    q = (
        select(ident)
        .select_from(t.outerjoin(ITEMS, (ITEMS.c.kind == kind) & (ITEMS.c.ref == key)))
        .where(ITEMS.c.ref.is_(None))
        .limit(limit)
    )
    out = [str(v) for v in conn.execute(q).scalars()]
    if kind == "decision" and len(out) < limit:
        out += IR.uncommitted(conn, limit - len(out))
    return out


def sets_state_in(conn: Connection, seqs: Sequence[int]) -> list[tuple[int, bool]]:
    """The stored ``sets_state`` column of the given ledger events."""
    E = schema.ledger_events
    q = select(E.c.seq, E.c.sets_state).where(E.c.seq.in_(list(seqs)))
    return [(int(a), bool(b)) for a, b in conn.execute(q)]


def feedback_rows_in(conn: Connection, decision_id: str) -> list[Any]:
    """Every feedback row of a decision (mappings), oldest first."""
    F = schema.feedback
    q = select(F).where(F.c.decision_id == id_types.bindable(conn, decision_id)).order_by(F.c.id)
    return list(conn.execute(q).mappings())
