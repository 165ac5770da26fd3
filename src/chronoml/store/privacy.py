"""Privacy persistence: endpoint policies, and erasing decisions' inputs where they are stored.

Erasure rewrites: a decision's packed inputs become NaN of the same width, its
text inputs and context NULL, the salt of its input commitment NULL (the
evidence triggers allow exactly that change), its later context rows are
deleted and its row in a columnar block is blanked and flagged. The leaf keeps
the commitment, so every proof still verifies. On SQLite the erasing
connection runs with ``secure_delete`` (freed bytes are zeroed) and the WAL is
checkpointed and truncated afterwards, so no copy of the old pages remains in
the files; on PostgreSQL the affected tables are vacuumed (see :func:`vacuum`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.engine import Connection

from chronoml.domain import leaves as LV
from chronoml.domain import ledger as L
from chronoml.domain.codec import layout_id
from chronoml.domain.privacy import Policy
from chronoml.errors import Refused
from chronoml.ids import block_of
from chronoml.store import ingest_erase as IE
from chronoml.store import ledger as SL
from chronoml.store import schema
from chronoml.store.database import Store

P = schema.privacy_policies
D = schema.decisions
B = schema.decision_blocks
I = schema.evidence_items  # noqa: E741 - the evidence items table, as elsewhere
DC = schema.decision_context
EXP = schema.explanations

# rows erased per statement: bounded parameter lists on both databases
_CHUNK = 500


@dataclass(frozen=True)
class StoredPolicy:
    endpoint: str
    policy: Policy
    event_seq: int
    updated_at: int
    actor: str


def _row(r: Any) -> StoredPolicy:
    return StoredPolicy(
        r.endpoint, Policy.from_dict(orjson.loads(r.policy)), int(r.event_seq), int(r.updated_at),
        r.actor,
    )  # fmt: skip


def get(store: Store, endpoint: str) -> StoredPolicy | None:
    with store.read() as conn:
        r = conn.execute(select(P).where(P.c.endpoint == endpoint)).first()
    return _row(r) if r is not None else None


def all_policies(store: Store) -> dict[str, StoredPolicy]:
    """Every endpoint's policy (one small table: the gateway reads it when the ledger moves)."""
    with store.read() as conn:
        return {r.endpoint: _row(r) for r in conn.execute(select(P))}


def put(store: Store, change: L.Change, policy: Policy) -> tuple[L.LedgerEvent, StoredPolicy]:
    """Record the policy and its ledger event in one transaction."""

    def tx(conn: Connection) -> tuple[L.LedgerEvent, StoredPolicy]:
        ev = SL.append_in(conn, change)
        values = {
            "policy": orjson.dumps(policy.to_dict()).decode(),
            "event_seq": ev.seq,
            "updated_at": ev.recorded_at,
            "actor": change.actor,
        }
        done = conn.execute(update(P).where(P.c.endpoint == change.endpoint).values(**values))
        if not done.rowcount:
            conn.execute(P.insert().values(endpoint=change.endpoint, **values))
        return ev, StoredPolicy(change.endpoint, policy, ev.seq, ev.recorded_at, change.actor)

    return store.write_retrying(tx, "the privacy policy")


def leaf_row(r: Sequence[Any], salt: bytes | None, commitment: bytes) -> Sequence[Any]:
    """The decision tuple its leaf hashes: without the context when the context is in the
    input commitment (decisions logged since 0014), with it when it is in the leaf (before).

    A row whose salt is gone was erased; an erased row keeps a context only if it was
    committed in the leaf.
    """
    context = r[17] if len(r) > 17 else None
    if context is None or salt is None:
        return r
    inside = LV.inputs_commitment(r[10], bytes(r[11]), r[12], bytes(salt), context)
    return r[:17] if inside == commitment else r


# --- erasure ---------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A decision whose inputs are to be erased, with its input commitment."""

    id: str
    ts: int
    endpoint: str
    variant: str
    model_version: str
    layout: str
    shadow: bool
    num: bytes
    txt: str | None
    context: str | None
    salt: bytes
    commitment: bytes


_COLS = (
    D.c.id, D.c.ts, D.c.endpoint, D.c.variant, D.c.model_version, D.c.layout, D.c.shadow,
    D.c.num, D.c.txt, D.c.context,
)  # fmt: skip


def _targets(conn: Connection, rows: Sequence[Any]) -> list[Target]:
    """The rows whose inputs are not erased yet (their commitment's salt is there).

    Two index seeks rather than a join: without statistics SQLite would scan the
    evidence items for the join.
    """
    out: list[Target] = []
    for i in range(0, len(rows), _CHUNK):
        part = rows[i : i + _CHUNK]
        q = select(I.c.ref, I.c.salt, I.c.commitment).where(
            I.c.kind == "decision", I.c.ref.in_([r[0] for r in part]), I.c.salt.is_not(None)
        )
        items = {str(ref): (bytes(salt), bytes(com)) for ref, salt, com in conn.execute(q)}
        for r in part:
            got = items.get(str(r[0]))
            if got is None:
                continue
            ident, ts, endpoint, variant, version, layout, shadow, num, txt, ctx = r
            t = Target(str(ident), int(ts), str(endpoint), str(variant), str(version), str(layout),
                       bool(shadow), bytes(num), txt, ctx, *got)  # fmt: skip
            out.append(t)
    return out


def by_units(conn: Connection, units: Sequence[str]) -> list[Target]:
    """Decisions of these unit keys whose inputs are not erased yet (an index seek)."""
    got = _targets(conn, conn.execute(select(*_COLS).where(D.c.unit.in_(list(units)))).all())
    return got + [_target(c) for c in IE.by_units(conn, units)]


def _target(c: Sequence[Any]) -> Target:
    ident, ts, endpoint, variant, version, layout, shadow, num, txt, ctx, salt, com = c
    return Target(str(ident), int(ts), str(endpoint), str(variant), str(version), str(layout),
                  bool(shadow), bytes(num), txt, ctx, bytes(salt), bytes(com))  # fmt: skip


def older_than(
    conn: Connection, endpoint: str, since: int, before: int, limit: int
) -> tuple[list[Target], int, int]:
    """Of the endpoint's first ``limit`` decisions in ``[since, before)``, those whose
    inputs are not erased yet; with how many were read and the last one's time."""
    q = (
        select(*_COLS)
        .where(D.c.endpoint == endpoint, D.c.ts >= since, D.c.ts < before)
        .order_by(D.c.ts)
        .limit(limit)
    )
    rows = conn.execute(q).all()
    got = _targets(conn, rows)
    last = int(rows[-1][1]) if rows else since
    if len(rows) == limit:  # more rows after these: the blocks up to them now, the rest later
        before = last
    held, nxt = IE.older_than(conn, endpoint, since, before)
    got += [_target(c) for c in held]
    if nxt is not None:  # more blocks after these: go on from there
        return got, limit, min(nxt, last) if len(rows) == limit else nxt
    return got, len(rows), last


def erase_in(conn: Connection, targets: Sequence[Target]) -> None:
    """Erase the targets' inputs in the caller's transaction (rows, blocks, context)."""
    if not targets:
        return
    # serialises with compaction, which writes blocks under this lock (PostgreSQL)
    W = schema.block_watermarks
    endpoints = sorted({t.endpoint for t in targets})
    conn.execute(select(W.c.endpoint).where(W.c.endpoint.in_(endpoints)).with_for_update()).all()
    held = [t.id for t in targets if block_of(t.id) is not None]
    if held:
        IE.erase(conn, held)
        for i in range(0, len(held), _CHUNK):
            conn.execute(delete(DC).where(DC.c.decision_id.in_(held[i : i + _CHUNK])))
        targets = [t for t in targets if block_of(t.id) is None]
    for part in _chunks(targets):
        ids = [t.id for t in part]
        # same width of NaN: window reads stay aligned, and nothing of the value is left
        by_shape: dict[tuple[int, bool], list[str]] = {}
        for t in part:
            by_shape.setdefault((len(t.num), _context_in_leaf(t)), []).append(t.id)
        for (width, keep_context), group in by_shape.items():
            blank = np.full(width // 8, np.nan, dtype="<f8").tobytes()
            values: dict[str, Any] = {"num": blank, "txt": None}
            if not keep_context:
                values["context"] = None
            conn.execute(update(D).where(D.c.id.in_(group)).values(**values))
        conn.execute(update(I).where(I.c.kind == "decision", I.c.ref.in_(ids)).values(salt=None))
        conn.execute(delete(DC).where(DC.c.decision_id.in_(ids)))
    _erase_in_blocks(conn, targets)


def _context_in_leaf(t: Target) -> bool:
    """A decision logged before 0014 has its context verbatim in its leaf: erasing it
    would break the proof, so it stays (its inputs go)."""
    if t.context is None:
        return False
    inside = LV.inputs_commitment(t.layout, t.num, t.txt, t.salt, t.context)
    return inside != t.commitment


def _chunks(items: Sequence[Target]) -> Iterator[Sequence[Target]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def _erase_in_blocks(conn: Connection, targets: Sequence[Target]) -> None:
    """Blank each target's row in the block holding it and flag it erased.

    A block holds rows of one (endpoint, variant, version, layout, shadow) in
    time order; a row is found by its timestamp and its packed inputs (rows of
    one request share a timestamp). On SQLite the row's bytes are overwritten in
    place (incremental blob I/O), so erasing one row does not rewrite a block of
    65,536; PostgreSQL rewrites the block's value in one UPDATE (its blocks are
    capped at about 512 KiB of inputs for that: ``blocks.PG_BLOCK_BYTES``).
    """
    by_block: dict[int, list[Target]] = {}
    for t in targets:
        q = select(B.c.id).where(
            B.c.endpoint == t.endpoint,
            B.c.variant == t.variant,
            B.c.model_version == t.model_version,
            B.c.layout == t.layout,
            B.c.shadow.is_(t.shadow),
            B.c.ts_max >= t.ts,
            B.c.ts_min <= t.ts,
        )
        for bid in conn.execute(q).scalars():
            by_block.setdefault(int(bid), []).append(t)
    if by_block:
        # a block's outcome copy holds its rows' context: it goes (readers fall back to the
        # rows for a block without one), so erased context is nowhere in a block
        OB = schema.outcome_blocks
        conn.execute(delete(OB).where(OB.c.block_id.in_(sorted(by_block))))
    in_place = conn.dialect.name == "sqlite"
    for bid, members in by_block.items():
        q = select(B.c.rows, B.c.ts, B.c.txt, B.c.codes, B.c.erased, func.length(B.c.num))
        n, ts_b, txt, codes, erased, size = conn.execute(q.where(B.c.id == bid)).one()
        ts = np.frombuffer(ts_b, dtype="<i8")
        flags = np.frombuffer(erased, dtype=np.uint8).copy() if erased else np.zeros(n, np.uint8)
        width = int(size) // n if n else 0
        values: dict[str, Any] = {}
        if in_place:
            db = conn.connection.driver_connection
            was = flags.copy()
            with db.blobopen("decision_blocks", "num", bid) as blob:  # type: ignore[union-attr]
                hit = _blank(members, ts, flags, width, blob.seek, blob.read, blob.write)
            if hit and erased is not None and len(erased) == n:
                # the flags too, in place: updating a column would rewrite the whole block
                with db.blobopen("decision_blocks", "erased", bid) as blob:  # type: ignore[union-attr]
                    for i in np.flatnonzero(flags != was).tolist():
                        blob.seek(i)
                        blob.write(b"\x01")
                if txt is None or codes is None:
                    continue
        else:
            # read only the candidate rows, and overwrite them in one statement on the server
            pieces: list[int] = []

            def read_at(pos: int, n: int, bid: int = bid) -> bytes:
                q = select(func.substring(B.c.num, pos + 1, n)).where(B.c.id == bid)
                return bytes(conn.execute(q).scalar_one())

            cursor = _Cursor(read_at, pieces.append)
            hit = _blank(members, ts, flags, width, cursor.seek, cursor.read, cursor.write)
            if hit:
                # one statement per block: each UPDATE writes a new version of the row
                sets = ["erased = :erased"]
                params: dict[str, Any] = {"id": bid, "erased": flags.tobytes()}
                if width and pieces:
                    expr = "num"
                    params["w"] = width
                    params["blank"] = np.full(width // 8, np.nan, dtype="<f8").tobytes()
                    for k, pos in enumerate(pieces):
                        expr = f"overlay({expr} placing :blank from :p{k} for :w)"
                        params[f"p{k}"] = pos + 1
                    sets.append(f"num = {expr}")
                if txt is not None and codes is not None:
                    params["txt"], params["codes"] = _reencode_texts(txt, codes, n, flags)
                    sets += ["txt = :txt", "codes = :codes"]
                sql = f"UPDATE decision_blocks SET {', '.join(sets)} WHERE id = :id"
                conn.execute(text(sql), params)
            continue
        if not hit:
            continue
        values["erased"] = flags.tobytes()
        if txt is not None and codes is not None:
            values["txt"], values["codes"] = _reencode_texts(txt, codes, n, flags)
        conn.execute(update(B).where(B.c.id == bid).values(**values))


class _Cursor:
    """seek/read/write as a SQLite blob offers them, reading from the server and
    noting where writes go (PostgreSQL)."""

    def __init__(self, read_at: Any, note: Any) -> None:
        self.read_at, self.note, self.pos = read_at, note, 0

    def seek(self, pos: int) -> None:
        self.pos = pos

    def read(self, n: int) -> bytes:
        return bytes(self.read_at(self.pos, n))

    def write(self, data: bytes) -> None:
        self.note(self.pos)


def _blank(
    members: Sequence[Target],
    ts: np.ndarray[Any, Any],
    flags: np.ndarray[Any, Any],
    width: int,
    seek: Any,
    read: Any,
    write: Any,
) -> bool:
    """Overwrite each member's row with NaN and flag it; True if any was found."""
    blank = np.full(width // 8, np.nan, dtype="<f8").tobytes()
    hit = False
    for t in members:
        for i in np.flatnonzero(ts == t.ts).tolist():
            if flags[i]:
                continue
            if width:
                seek(i * width)
                if read(width) != t.num:
                    continue
                seek(i * width)
                write(blank)
            flags[i] = 1
            hit = True
            break
    return hit


def _reencode_texts(
    txt: str, codes: bytes, n: int, flags: np.ndarray[Any, Any]
) -> tuple[str, bytes]:
    """The block's dictionary without the erased rows' values (a value only they held
    must not stay in the dictionary)."""
    uniques = orjson.loads(txt)
    width = len(uniques)
    mat = np.frombuffer(codes, dtype="<i4").reshape(n, width).copy()
    mat[flags.astype(bool)] = -1
    fresh: list[list[Any]] = []
    for j in range(width):
        used = np.unique(mat[:, j][mat[:, j] >= 0])
        remap = np.full(len(uniques[j]) + 1, -1, dtype="<i4")
        remap[used] = np.arange(len(used), dtype="<i4")
        mat[:, j] = remap[mat[:, j]]  # -1 indexes the last slot, which stays -1
        fresh.append([uniques[j][k] for k in used.tolist()])
    return orjson.dumps(fresh).decode(), mat.tobytes()


def erased_mask(erased: bytes | None, n: int) -> np.ndarray[Any, Any] | None:
    """A block's erased rows as a bool array, or None when none are."""
    if not erased:
        return None
    mask = np.frombuffer(erased, dtype=np.uint8).astype(bool)
    return mask if mask.any() else None


def is_erased_in(conn: Connection, decision_id: str) -> bool:
    """Whether a decision's inputs were erased (its commitment's salt is gone)."""
    held = IE.is_erased_in(conn, decision_id)
    if held is not None:
        return held
    r = conn.execute(select(I.c.salt).where(I.c.kind == "decision", I.c.ref == decision_id)).first()
    return r is not None and r[0] is None


def erasure_events_in(conn: Connection, endpoint: str) -> list[L.LedgerEvent]:
    """The endpoint's erasure events, oldest first."""
    E = schema.ledger_events
    q = select(E.c.seq).where(E.c.endpoint == endpoint, E.c.kind == "erasure").order_by(E.c.seq)
    out = []
    for seq in conn.execute(q).scalars():
        ev = SL.get_event(conn, int(seq))
        if ev is not None:
            out.append(ev)
    return out


def scrub(store: Store, attempts: int = 40) -> bool:
    """Leave no copy of erased bytes in the store's files.

    SQLite: the erasing transaction ran with ``secure_delete`` on, so freed
    cells and pages were zeroed; a ``TRUNCATE`` checkpoint then copies the
    newest pages into the database file and empties the WAL, which still held
    the pages as they were before. PostgreSQL: ``VACUUM`` of the changed
    tables prunes the dead row versions (and their TOAST chunks) so their
    space is reused; see the README for what that does not promise.

    Returns False when SQLite could not truncate the WAL (a reader held it
    through every attempt): the old pages may then still be in it until the
    next checkpoint.
    """
    raw = store.engine.raw_connection()
    try:
        db = raw.driver_connection
        if store.is_sqlite:
            for _ in range(attempts):
                busy = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]  # type: ignore[union-attr]
                if not busy:
                    return True
                time.sleep(0.05)  # a reader is in the WAL: it finishes within moments
            return False
        else:
            db.autocommit = True  # type: ignore[union-attr]
            with db.cursor() as cur:  # type: ignore[union-attr]
                for table in (
                    "decisions",
                    "ingest_blocks",
                    "decision_blocks",
                    "outcome_blocks",
                    "evidence_items",
                    "decision_context",
                ):
                    # pruning the changed pages is what frees the old versions' bytes; the
                    # index pass (a scan of every index, seconds over 1M rows) only recycles
                    # line pointers, whose index entries hold keys, never inputs: autovacuum
                    # does it later
                    cur.execute(f"VACUUM (INDEX_CLEANUP OFF, TRUNCATE OFF) {table}")
        return True
    finally:
        raw.invalidate() if not store.is_sqlite else raw.close()


@contextmanager
def zeroing_freed(conn: Connection, is_sqlite: bool) -> Iterator[None]:
    """SQLite: bytes freed inside the block are zeroed (``secure_delete``), not left in free
    pages; the pooled connection's own setting (a build may default to on) is put back."""
    if not is_sqlite:
        yield
        return
    was = int(conn.exec_driver_sql("PRAGMA secure_delete").scalar() or 0)
    conn.exec_driver_sql("PRAGMA secure_delete=ON")
    try:
        yield
    finally:
        conn.exec_driver_sql(f"PRAGMA secure_delete={was}")


def check_inputs_whole(store: Store, decision_id: str, layout: str, model_schema: Any) -> None:
    """Refuse, saying why, to re-run a decision whose inputs were erased or stored under a
    policy that hashed or dropped some (the model would get other inputs than it did)."""
    with store.read() as conn:
        erased = is_erased_in(conn, decision_id)
    if erased:
        raise Refused(f"the inputs of decision {decision_id} were erased", "decision_id")
    if model_schema is not None and layout != layout_id(tuple(model_schema)):
        raise Refused(
            f"decision {decision_id} was logged under a privacy policy that hashed or dropped "
            "some of its inputs: it cannot be re-run",
            "decision_id",
        )
