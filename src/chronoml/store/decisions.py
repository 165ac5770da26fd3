"""Decision log persistence: group inserts, lookup by id, and columnar window reads."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import IntegrityError

from chronoml.domain import codec, merkle
from chronoml.domain.codec import NUMERIC_KINDS, Schema
from chronoml.ids import block_of
from chronoml.store import archive_reads, blocks, evidence, ingest, ingest_reads, partitions, schema
from chronoml.store import window_lock as WL
from chronoml.store.archive_schema import live
from chronoml.store.database import Store
from chronoml.store.id_types import may_hold

D = schema.decisions
IL = schema.input_layouts


@dataclass(frozen=True)
class DecisionRow:
    """One logged prediction as stored."""

    id: str
    ts: int
    endpoint: str
    variant: str
    model_name: str
    model_version: str
    event_seq: int
    shadow: bool
    unit: str | None
    request_id: str
    layout: str
    num: bytes
    txt: str | None
    output: str
    output_num: float | None
    latency_ms: float
    scores: bytes | None = None
    context: str | None = None


class Layouts:
    """Interns input schemas; a small cache in front of ``input_layouts``."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._known: dict[str, Schema] = {}

    def ensure(self, layout: str, sch: Schema) -> None:
        if layout in self._known:
            return
        try:
            with self.store.write() as conn:
                exists = conn.execute(select(IL.c.id).where(IL.c.id == layout)).first()
                if exists is None:
                    conn.execute(
                        IL.insert().values(
                            id=layout, columns=orjson.dumps([list(c) for c in sch]).decode()
                        )
                    )
        except IntegrityError:
            pass  # another thread or process interned the same layout first
        self._known[layout] = sch

    def get(self, layout: str) -> Schema:
        if layout not in self._known:
            with self.store.read() as conn:
                raw = conn.execute(select(IL.c.columns).where(IL.c.id == layout)).scalar_one()
            self._known[layout] = tuple((c, k) for c, k in orjson.loads(raw))
        return self._known[layout]


def insert_many(store: Store, rows: Sequence[DecisionRow]) -> None:
    """Write rows in one transaction: committed (and on SQLite fsync'd) on return."""
    if not rows:
        return
    payload = [r.__dict__ for r in rows]
    entry = decision_entry([tuple(r.__dict__[c] for c in COLUMNS) for r in rows])
    with store.write() as conn:
        conn.execute(D.insert(), payload)
        evidence.append_in(conn, [entry])


def decision_entry(
    rows: Sequence[Sequence[Any]], blocks: Sequence[ingest.Block] = ()
) -> evidence.Entry:
    """The evidence log entry of one group commit of decision tuples (COLUMNS order) and
    ingest blocks: every decision one leaf of the batch, the rows' first, then each
    block's in order (a block's leaves, salts and commitments stored as one item)."""
    salts, commitments, hashes = evidence.commit_decisions(rows) if rows else ([], [], [])
    if not blocks:
        return evidence.batch_entry(
            "decision", [r[0] for r in rows], hashes, salts=salts, commitments=commitments
        )
    leaves = bytearray().join(hashes)
    packed = []
    for b in blocks:
        b_salts, b_coms, b_leaves = ingest.commit(b)
        packed.append(
            (ingest.ITEM_KIND, b.id, len(leaves) // ingest.HASH, b_leaves, b_salts, b_coms)
        )
        leaves += b_leaves
    # the batch's root over every leaf, end to end (no list of 32-byte objects per block)
    e = evidence.rooted_entry("decision", len(leaves) // ingest.HASH, merkle.root_of_packed(leaves))
    e.refs, e.leaves = [r[0] for r in rows], hashes
    e.salts, e.commitments, e.packed = salts, commitments, packed
    return e


def explanation_entry(rows: Sequence[Sequence[Any]]) -> evidence.Entry:
    """The evidence log entry of explanations committed with their decisions."""
    hashes = [evidence.explanation_leaf(r).leaf_hash() for r in rows]
    return evidence.batch_entry("explanation", [r[0] for r in rows], hashes)


_GET = select(D).where(D.c.id == bindparam("id"))
# on PostgreSQL's time partitions: the span of ts the id implies reads one partition
_GET_SPAN = _GET.where(D.c.ts >= bindparam("lo"), D.c.ts < bindparam("hi"))


def get(store: Store, decision_id: str) -> DecisionRow | None:
    with store.engine.connect() as conn:
        return get_in(conn, decision_id)


def get_in(conn: Any, decision_id: str) -> DecisionRow | None:
    """The decision row, on a connection the caller holds (archived ones too)."""
    if block_of(decision_id) is not None:  # logged in an ingest block, or archived since
        in_block = ingest_reads.get_in(conn, decision_id)
        if in_block is not None:
            return DecisionRow(*in_block)
        archived = archive_reads.find(conn, decision_id)
        return DecisionRow(*archived) if archived is not None else None
    row = None
    if may_hold(conn, decision_id):  # text that is no uuid is in no uuid column
        span = None if conn.dialect.name == "sqlite" else partitions.id_span(decision_id)
        if span is not None:
            params = {"id": decision_id, "lo": span[0], "hi": span[1]}
            row = conn.execute(_GET_SPAN, params).mappings().first()
        if row is None:  # not where its id says (or not there at all): every partition
            row = conn.execute(_GET, {"id": decision_id}).mappings().first()
    if row is not None:
        return DecisionRow(**row)
    archived = archive_reads.find(conn, decision_id)
    return DecisionRow(*archived) if archived is not None else None


def count(store: Store, endpoint: str | None = None) -> int:
    """Decisions logged (archived ones included)."""
    q = select(func.count()).select_from(D)
    A = schema.archive_files  # files a rewrite replaced hold the same decisions again
    qa = select(func.coalesce(func.sum(A.c.rows), 0)).where(live())
    if endpoint is not None:
        q = q.where(D.c.endpoint == endpoint)
        qa = qa.where(A.c.endpoint == endpoint)
    with store.read() as conn:
        return (
            int(conn.execute(q).scalar_one())
            + int(conn.execute(qa).scalar_one())
            + ingest_reads.count_in(conn, endpoint)
        )


@dataclass
class Window:
    """A window of decisions read column by column; ``variants`` and ``versions`` give, per
    row, who decided it (a version's rows may come in several runs: archived, blocks, rows)."""

    rows: int
    columns: dict[str, np.ndarray[Any, Any]]
    outputs: np.ndarray[Any, Any]
    variants: np.ndarray[Any, Any]
    versions: np.ndarray[Any, Any]
    context: list[dict[str, Any]] | None = None  # with_context: each row's, merged ({}: none)


@WL.guarded(2)
def window(
    store: Store,
    layouts: Layouts,
    endpoint: str,
    start: int,
    end: int,
    *,
    variant: str | None = None,
    include_shadow: bool = False,
    with_context: bool = False,
) -> Window:
    """Decisions of ``endpoint`` with ``start <= ts < end`` as columns.

    One query per (variant, version, layout) fetches only the packed inputs
    and the numeric output; the packed rows are joined into one buffer and
    viewed as a matrix, with no per-value parsing. ``with_context`` also reads
    each row's context (the archive files' too); the blocks do not hold it, so the
    rows are read then. No archive commit of the endpoint runs meanwhile.
    """
    # archived history from its Parquet files, then blocks below the compaction mark
    parts, start, stored = archive_reads.window_parts(
        store, endpoint, start, end, variant=variant, include_shadow=include_shadow,
        with_context=with_context,
    )  # fmt: skip
    contexts: list[dict[str, Any]] = []
    for ids, texts in stored:  # the archived decisions' context, and any added since
        contexts += _merged(ids, texts, _later_context_of(store, ids))
    if with_context:
        raw_start = start
    else:
        blocked, raw_start = blocks.read(
            store, layouts, endpoint, start, end, variant=variant, include_shadow=include_shadow
        )
        parts += blocked
    later = _later_context(store, endpoint, start, end) if with_context else {}
    where = [D.c.endpoint == endpoint, D.c.ts >= raw_start, D.c.ts < end]
    if variant is not None:
        where.append(D.c.variant == variant)
    if not include_shadow:
        where.append(D.c.shadow.is_(False))
    key = (D.c.variant, D.c.model_version, D.c.layout)
    with store.engine.connect() as conn:
        groups = conn.execute(select(*key, func.count()).where(*where).group_by(*key)).all()
    for vname, version, layout, _n in groups:
        sch = layouts.get(layout)
        numeric = [c for c, k in sch if k in NUMERIC_KINDS]
        other = [c for c, k in sch if k not in NUMERIC_KINDS]
        cols = [D.c.num, D.c.output_num, D.c.txt if other else D.c.layout]
        if with_context:
            cols += [D.c.id, D.c.context]
        match = [*where, D.c.variant == vname, D.c.model_version == version, D.c.layout == layout]
        q = select(*cols).where(*match).order_by(D.c.ts)
        with store.engine.connect() as conn:
            # the driver's own tuples: no per-row result processing
            data = conn.execute(q).cursor.fetchall()  # type: ignore[union-attr]
        n = len(data)
        got = codec.decode_numeric(sch, n, b"".join([r[0] for r in data]) if numeric else b"")
        if other:
            got.update(codec.decode_others(sch, n, [r[2] for r in data]))
        # None (a non-numeric output) becomes NaN
        outs = np.array([r[1] for r in data], dtype=np.float64)
        parts.append((vname, version, got, outs))
        if with_context:
            contexts += _merged([r[3] for r in data], [r[4] for r in data], later)
    # and the window's decisions held in ingest blocks
    held = ingest_reads.parts(
        store, layouts.get, endpoint, start, end, variant=variant,
        include_shadow=include_shadow, with_context=with_context,
    )  # fmt: skip
    if with_context and held:
        ids = [i for p in held for i in p.ids or ()]
        later_held = _later_context_of(store, ids)
        for p in held:
            contexts += _merged(p.ids or [], p.context or [], later_held)
    parts += [(p.variant, p.version, p.columns, p.outputs) for p in held]
    total = sum(len(p[3]) for p in parts)
    names = list(dict.fromkeys(c for p in parts for c in p[2]))
    columns: dict[str, np.ndarray[Any, Any]] = {}
    for c in names:
        chunks = []
        for _, _, got, outs in parts:
            if c in got:
                chunks.append(got[c])
            else:  # a layout without this column: missing values
                chunks.append(np.full(len(outs), np.nan))
        columns[c] = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
    return Window(
        rows=total,
        columns=columns,
        outputs=np.concatenate([p[3] for p in parts]) if parts else np.empty(0),
        variants=np.repeat(
            np.array([p[0] for p in parts], dtype=object), [len(p[3]) for p in parts]
        ),
        versions=np.repeat(
            np.array([p[1] for p in parts], dtype=object), [len(p[3]) for p in parts]
        ),
        context=contexts if with_context else None,
    )


def _later_context(store: Store, endpoint: str, start: int, end: int) -> dict[str, dict[str, Any]]:
    """Context added after the fact to the window's decisions, merged per decision."""
    DC = schema.decision_context
    q = (
        select(DC.c.decision_id, DC.c.context)
        .join(D, D.c.id == DC.c.decision_id)
        .where(D.c.endpoint == endpoint, D.c.ts >= start, D.c.ts < end)
        .order_by(DC.c.id)
    )
    out: dict[str, dict[str, Any]] = {}
    with store.read() as conn:
        for did, text in conn.execute(q).all():
            out.setdefault(did, {}).update(orjson.loads(text))
    return out


def _later_context_of(store: Store, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Context added after the fact to the decisions of ``ids``, merged per decision."""
    DC = schema.decision_context
    out: dict[str, dict[str, Any]] = {}
    with store.read() as conn:
        for i in range(0, len(ids), 500):
            q = (
                select(DC.c.decision_id, DC.c.context)
                .where(DC.c.decision_id.in_(list(ids[i : i + 500])))
                .order_by(DC.c.id)
            )
            for did, text in conn.execute(q).all():
                out.setdefault(did, {}).update(orjson.loads(text))
    return out


def _merged(
    ids: Sequence[str], texts: Sequence[str | None], later: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Each row's context: what came with the prediction, then later keys (read only)."""
    parsed: dict[str, dict[str, Any]] = {}
    out: list[dict[str, Any]] = []
    for did, text in zip(ids, texts, strict=True):
        if text is None:
            base: dict[str, Any] = {}
        else:
            got = parsed.get(text)
            if got is None:
                got = parsed[text] = dict(orjson.loads(text))
            base = got
        out.append({**base, **later[did]} if did in later else base)
    return out


# --- the fast write path of the gateway ---------------------------------------

# Column order of the tuples the gateway hands to :class:`Appender`.
COLUMNS = (
    "id",
    "ts",
    "endpoint",
    "variant",
    "model_name",
    "model_version",
    "event_seq",
    "shadow",
    "unit",
    "request_id",
    "layout",
    "num",
    "txt",
    "output",
    "output_num",
    "latency_ms",
    "scores",
    "context",
)
DecisionTuple = tuple[
    str, int, str, str, str, str, int, bool, str | None, str, str, bytes, str | None, str,
    float | None, float, bytes | None, str | None,
]  # fmt: skip


class Appender:
    """Appends decision tuples in one transaction per call, on a connection of its own.

    Below SQLAlchemy on purpose: the driver's own ``executemany`` (SQLite) or
    ``COPY`` (PostgreSQL) is several times cheaper per row, and this is the
    path every prediction takes. A failed call drops the connection, so the
    next one reconnects: the log recovers when the store comes back.
    On SQLite this connection never checkpoints the WAL itself
    (:meth:`checkpoint` does, from another thread), so no commit waits for one.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._conn: Any = None
        cols = ", ".join(COLUMNS)
        self._sqlite_sql = (
            f"INSERT INTO decisions ({cols}) VALUES ({', '.join('?' * len(COLUMNS))})"
        )
        self._copy_sql = f"COPY decisions ({cols}) FROM STDIN"
        # explanations computed with the request (?explain=true) commit with its decisions
        ecols = [c.name for c in schema.explanations.c]
        self._explain_sql = (
            f"INSERT INTO explanations ({', '.join(ecols)}) VALUES ({', '.join('?' * len(ecols))})"
        )
        self._explain_pg_sql = self._explain_sql.replace("?", "%s")
        bcols = ", ".join(ingest.COLUMNS)
        self._block_sql = (
            f"INSERT INTO ingest_blocks ({bcols}) VALUES ({', '.join('?' * len(ingest.COLUMNS))})"
        )
        self._block_pg_sql = self._block_sql.replace("?", "%s")
        self._evidence = evidence.RawAppend(store.is_sqlite)

    def _connection(self) -> Any:
        if self._conn is None:
            raw = self.store.engine.raw_connection()
            if self.store.is_sqlite:
                raw.driver_connection.execute("PRAGMA wal_autocheckpoint=0")  # type: ignore[union-attr]
            self._conn = raw
        return self._conn

    def append(
        self,
        rows: Sequence[DecisionTuple],
        explanations: Sequence[tuple[Any, ...]] = (),
        blocks: Sequence[ingest.Block] = (),
    ) -> None:
        """Committed (and on SQLite fsync'd) on return, with ``explanations`` and the
        ingest ``blocks``; raises if not."""
        if not rows and not blocks:
            return
        # leaf hashes before the transaction: the write lock is held only for the rows
        entries = [decision_entry(rows, blocks)]
        stored = [b.stored() for b in blocks]
        if explanations:
            entries.append(explanation_entry(explanations))
        conn = self._connection()
        try:
            if self.store.is_sqlite:
                db = conn.driver_connection
                db.execute("BEGIN IMMEDIATE")
                try:
                    if rows:
                        db.executemany(self._sqlite_sql, rows)
                    if stored:
                        db.executemany(self._block_sql, stored)
                    if explanations:
                        db.executemany(self._explain_sql, explanations)
                    self._evidence.write(db, entries)
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
            else:
                db = conn.driver_connection
                if rows:
                    with db.cursor() as cur, cur.copy(self._copy_sql) as copy:
                        for r in rows:
                            copy.write_row(r)
                if stored:
                    with db.cursor() as cur:
                        cur.executemany(self._block_pg_sql, stored)
                if explanations:
                    with db.cursor() as cur:
                        cur.executemany(self._explain_pg_sql, explanations)
                self._evidence.write(db, entries)
                db.commit()
        except BaseException:
            self._evidence.forget()
            self.close(broken=True)
            raise

    def checkpoint(self) -> None:
        """Move committed WAL pages into the database file (SQLite; a no-op elsewhere)."""
        if not self.store.is_sqlite:
            return
        raw = self.store.engine.raw_connection()
        try:
            raw.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")  # type: ignore[union-attr]
        finally:
            raw.close()

    def close(self, broken: bool = False) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if broken:
                conn.invalidate()
            else:
                conn.close()
        except Exception:  # already gone; nothing to give back to the pool
            pass


def recent_ids(store: Store, endpoint: str, limit: int = 20) -> list[str]:
    """Ids of ``endpoint``'s latest logged decisions, newest first (for the web UI)."""
    q = select(D.c.id).where(D.c.endpoint == endpoint).order_by(D.c.ts.desc()).limit(limit)
    IB = schema.ingest_blocks
    qb = select(IB.c.id, IB.c.rows, IB.c.ts).where(IB.c.endpoint == endpoint)
    with store.engine.connect() as conn:
        got = [str(r[0]) for r in conn.execute(q.add_columns(D.c.ts))]
        newest = conn.execute(qb.order_by(IB.c.ts.desc()).limit(limit)).all()
    if newest:
        with store.engine.connect() as conn:
            timed = [(int(t), str(i)) for i, t in conn.execute(q.add_columns(D.c.ts))]
        for bid, n, ts in newest:
            timed += [(int(ts), i) for i in ingest.decision_ids(str(bid), int(n))]
        timed.sort(reverse=True)
        got = [i for _, i in timed[:limit]]
    if len(got) < limit:
        got += archive_reads.recent_ids(store, endpoint, limit - len(got))
    return got
