"""Erasing inputs in archived decisions: each archive file holding them is rewritten.

Archive files are immutable and named by their sha256, so an erasure cannot blank
a row in place. :func:`plan_units` and :func:`plan_older` find the files holding
decisions whose inputs must go (and whose commitments still have their salt), and
write for each a new file with the same decisions (ids, times, outputs, unit keys,
scores, lineage), the erased ones' packed inputs NaN of the same width, their text
inputs and context missing, as erasure leaves a row in the database. Each new file
is read back and checked (digest, rows, ids, inputs) before any transaction.

:func:`commit_in` runs in the erasing transaction: it records each new file,
commits it by a new ``archive`` entry in the evidence log, records which file it
replaces (the old file's row and its log entry stay: the log is append-only, and
readers skip a replaced file) and drops the erased commitments' salts. Only after
that commit does :func:`sweep` delete the old objects from their stores. A crash
before the commit leaves the old file in use and at most an orphan new file (the
next erasure writes the same bytes under the same name); a crash after it leaves
the old object in its store, replaced, until the next sweep (every erasure,
retention pass and archive run starts with one) deletes it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Connection, delete, select, update

from chronoml.domain import leaves as LV
from chronoml.domain.archive import ArchiveError, Target, file_name, may_hold
from chronoml.store import archive as SA
from chronoml.store import archive_evidence as AE
from chronoml.store import archive_parquet as AP
from chronoml.store import archive_reads as AR
from chronoml.store import archive_write as AW
from chronoml.store import evidence, schema
from chronoml.store.archive_objects import Unreachable, open_objects
from chronoml.store.archive_schema import live
from chronoml.store.database import Store
from chronoml.timeutil import now_us
from chronoml.worker import parallel

F = schema.archive_files
R = schema.archive_replacements
C = schema.archive_cleared
U = schema.archive_units
I = schema.evidence_items  # noqa: E741 - the evidence items table, as elsewhere
log = logging.getLogger("chronoml.privacy")

_CHUNK = 500  # ids per statement
REWRITERS = min(4, os.cpu_count() or 1)  # files rewritten at once by one erasure


class Stale(Exception):
    """The archive changed between the plan and its commit: plan again."""


@dataclass
class Rewrite:
    """One archive file written again without some decisions' inputs, not yet committed."""

    old: Any  # the old file's archive_files row
    new: AW.Written
    ids: list[str]  # the decisions whose inputs the new file no longer holds
    erased_before: int | None


@dataclass
class Plan:
    """The rewrites of one erasure, and the live files it looked at."""

    seen: set[str] = field(default_factory=set)
    endpoint: str | None = None  # None: every endpoint's files were looked at
    rewrites: list[Rewrite] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for rw in self.rewrites:
            out[rw.old.endpoint] = out.get(rw.old.endpoint, 0) + len(rw.ids)
        return out


def _unerased(conn: Connection, ids: Sequence[str]) -> dict[str, tuple[bytes, bytes]]:
    """Of ``ids``, the decisions whose commitment still has its salt: (salt, commitment)."""
    out: dict[str, tuple[bytes, bytes]] = {}
    for i in range(0, len(ids), _CHUNK):
        q = select(I.c.ref, I.c.salt, I.c.commitment).where(
            I.c.kind == "decision", I.c.ref.in_(list(ids[i : i + _CHUNK])), I.c.salt.is_not(None)
        )
        out.update({str(r): (bytes(s), bytes(c)) for r, s, c in conn.execute(q)})
    return out


def _context_in_leaf(
    table: pa.Table, rows: np.ndarray[Any, Any], items: dict[str, tuple[bytes, bytes]]
) -> np.ndarray[Any, Any]:
    """Which of the (physical) table's rows keep their context: a decision logged before
    0014 has it verbatim in its leaf, where erasing it would break the proof (its inputs
    still go). Only the ``rows`` erased are looked at."""
    keep = np.zeros(table.num_rows, dtype=bool)
    if table.column("context").null_count == table.num_rows or not len(rows):
        return keep
    sch = AP.layout_of(table)
    some = AP.logical(table.take(pa.array(rows)))
    packed = AP.packed_inputs(some, sch)
    ids, layouts, texts, contexts = (
        some.column(c).to_pylist() for c in ("id", "layout", "txt", "context")
    )
    for j, i in enumerate(rows.tolist()):
        if contexts[j] is None:
            continue
        salt, commitment = items[ids[j]]
        num = packed[j].tobytes()
        inside = LV.inputs_commitment(layouts[j], num, texts[j], salt, contexts[j])
        keep[i] = inside != commitment
    return keep


def _rewrite(
    store: Store,
    f: Any,
    rows: Callable[[pa.Table], np.ndarray[Any, Any]],
    erased_before: int | None,
) -> Rewrite | None:
    """The file ``f`` written again without the inputs of those of ``rows(table)`` (the
    candidates, as row numbers of its physical table) whose salt is left; None if none is.

    The file is rewritten from its physical columns: every column but the erased inputs
    keeps its values and its encoding, so nothing is decoded to Python values but the
    candidates' ids."""
    table = AP.read_physical(AR.file_bytes(f.sha256, f.target))
    candidates = rows(table)
    if not len(candidates):
        return None
    ids = AP.logical(table.select(["id"]).take(pa.array(candidates))).column("id").to_pylist()
    with store.read() as conn:
        items = _unerased(conn, sorted(set(ids)))
    if not items:
        return None
    hit = candidates[np.fromiter((i in items for i in ids), dtype=bool, count=len(ids))]
    erased = np.zeros(table.num_rows, dtype=bool)
    erased[hit] = True
    keep = _context_in_leaf(table, hit, items)
    objs = open_objects(Target.from_dict(AR.target_of(f.target)))
    new = AW.write_table(objs, AP.erased(table, erased, keep), f, _committed_index(store, f))
    return Rewrite(f, new, sorted(items), erased_before)


def _committed_index(store: Store, f: Any) -> bytes | None:
    """The file's unit index, for its rewrite, once checked against the file's leaf in
    the evidence log (a rewrite must not commit an edited index anew); None: it has none."""
    with store.read() as conn:
        index = conn.execute(select(U.c.units).where(U.c.sha256 == f.sha256)).scalar()
        if index is None:
            return None
        q = select(I.c.leaf).where(I.c.kind == "archive", I.c.ref == f.sha256)
        leaves = {bytes(x) for x in conn.execute(q).scalars()}
    leaf = AE.file_leaf({**f._mapping, "units": index})
    if leaf is None or leaf.leaf_hash() not in leaves:
        raise ArchiveError(
            f"archive file {f.sha256}: its unit index does not match its evidence leaf "
            "(run audit verify); nothing was erased",
            "archive",
        )
    return bytes(index)


def _live_files(store: Store, endpoint: str | None) -> list[Any]:
    q = select(F).where(live()).order_by(F.c.ts_min)
    if endpoint is not None:
        q = q.where(F.c.endpoint == endpoint)
    with store.read() as conn:
        return list(conn.execute(q).all())


def _indexes(store: Store) -> dict[str, bytes]:
    """The unit index of every live file that has one."""
    q = select(U.c.sha256, U.c.units).join(F, F.c.sha256 == U.c.sha256).where(live())
    with store.read() as conn:
        return {str(a): bytes(b) for a, b in conn.execute(q).all()}


def plan_units(store: Store, units: Sequence[str]) -> Plan:
    """Rewrites of the files holding decisions of these unit keys (as sent, or hashed).

    Only the files whose unit index may hold one of them are read (and every file
    archived before there were indexes)."""
    files = _live_files(store, None)
    plan = Plan(seen={f.sha256 for f in files})
    if not files:
        return plan
    cleared = _cleared(store)
    indexes = _indexes(store)
    wanted = pa.array(list(units), pa.string())

    def of_units(table: pa.Table) -> np.ndarray[Any, Any]:
        mask = pc.is_in(table.column("unit"), value_set=wanted)
        return np.flatnonzero(mask.to_numpy(zero_copy_only=False))

    def rewrite(f: Any) -> Rewrite | None:
        return _rewrite(store, f, of_units, cleared.get(f.sha256))

    holding = [
        f
        for f in files
        if (index := indexes.get(f.sha256)) is None or any(may_hold(index, u) for u in units)
    ]
    # each file's read, write and read back run in pyarrow, without the GIL
    for rw in parallel(REWRITERS)(rewrite, holding):
        if rw is not None:
            plan.rewrites.append(rw)
    return plan


def plan_older(store: Store, endpoint: str, before: int) -> Plan:
    """Rewrites of the endpoint's files holding inputs of decisions older than ``before``.

    A file a retention rewrite already cleared up to the cut is skipped unread, and so is
    one none of whose id range has a salt left."""
    files = _live_files(store, endpoint)
    plan = Plan(seen={f.sha256 for f in files}, endpoint=endpoint)
    if not files:
        return plan
    cleared = _cleared(store)

    def older(table: pa.Table) -> np.ndarray[Any, Any]:
        return np.flatnonzero(table.column("ts").to_numpy() < before)

    for f in files:
        done = cleared.get(f.sha256)
        if f.ts_min >= before or (done is not None and done >= min(before, int(f.ts_max) + 1)):
            continue
        cut = before if done is None else max(before, done)
        rw = _rewrite(store, f, older, cut)
        if rw is not None:
            plan.rewrites.append(rw)
        else:  # erased before they were archived: the file never needs reading for this cut
            _note_cleared(store, f.sha256, cut)
    return plan


def _cleared(store: Store) -> dict[str, int]:
    """Files, by digest, holding no input older than a time: made by a retention rewrite,
    or found so by a retention pass."""
    q = select(R.c.new_sha256, R.c.erased_before).where(R.c.erased_before.is_not(None))
    with store.read() as conn:
        got = {str(a): int(b) for a, b in conn.execute(q).all()}
        for a, b in conn.execute(select(C.c.sha256, C.c.erased_before)).all():
            got[str(a)] = max(int(b), got.get(str(a), int(b)))
    return got


def _note_cleared(store: Store, sha: str, before: int) -> None:
    with store.write() as conn:
        conn.execute(delete(C).where(C.c.sha256 == sha))
        conn.execute(C.insert().values(sha256=sha, erased_before=before))


def discard(store: Store, plan: Plan) -> None:
    """Delete the new files of a plan that was not committed (they are recorded nowhere)."""
    for rw in plan.rewrites:
        target = Target.from_dict(AR.target_of(rw.old.target))
        SA.discard(store, open_objects(target), [rw.new.leaf.sha256])


def lock_in(conn: Connection) -> None:
    """Serialise with the archiver's commit, which takes the same lock first (PostgreSQL;
    SQLite's write lock already does): an erasure and an archive run never both move
    a decision's inputs."""
    LH = schema.ledger_head
    conn.execute(select(LH.c.seq).where(LH.c.id == 1).with_for_update()).all()


def commit_in(conn: Connection, plan: Plan, reason: str, at: int | None = None) -> dict[str, int]:
    """Record the plan's rewrites in the erasing transaction; the decisions erased per
    endpoint. Raises :class:`Stale` when the archive changed since the plan."""
    q = select(F.c.sha256).where(live())
    if plan.endpoint is not None:
        q = q.where(F.c.endpoint == plan.endpoint)
    now_live = set(conn.execute(q).scalars())
    if now_live - plan.seen or any(rw.old.sha256 not in now_live for rw in plan.rewrites):
        raise Stale("the archive changed meanwhile")
    if not plan.rewrites:
        return {}
    t = now_us() if at is None else at
    fresh = [rw for rw in plan.rewrites if SA.absent_in(conn, rw.new.leaf.sha256)]
    if fresh:
        conn.execute(
            F.insert(),
            [
                {
                    "sha256": rw.new.leaf.sha256,
                    "endpoint": rw.old.endpoint,
                    "layout": rw.old.layout,
                    "ts_min": rw.old.ts_min,
                    "ts_max": rw.old.ts_max,
                    "rows": rw.old.rows,
                    "bytes": rw.new.size,
                    "min_id": rw.old.min_id,
                    "max_id": rw.old.max_id,
                    "target": rw.old.target,
                    "created_at": t,
                }
                for rw in fresh
            ],
        )
        SA.record_units_in(conn, [rw.new for rw in fresh])
        leaves = [rw.new.leaf for rw in fresh]
        entry = evidence.batch_entry(
            "archive", [x.sha256 for x in leaves], [x.leaf_hash() for x in leaves], t
        )
        evidence.append_in(conn, [entry])
    conn.execute(
        R.insert(),
        [
            {
                "old_sha256": rw.old.sha256,
                "new_sha256": rw.new.leaf.sha256,
                "reason": reason,
                "erased_before": rw.erased_before,
                "replaced_at": t,
                "old_deleted_at": None,
            }
            for rw in plan.rewrites
        ],
    )
    ids = [i for rw in plan.rewrites for i in rw.ids]
    for k in range(0, len(ids), _CHUNK):
        part = ids[k : k + _CHUNK]
        conn.execute(update(I).where(I.c.kind == "decision", I.c.ref.in_(part)).values(salt=None))
    return plan.counts()


def sweep(store: Store) -> int:
    """Delete the objects of replaced files from their stores; how many went.

    An unreachable store leaves them for the next sweep (they are replaced already: no
    reader uses them)."""
    q = (
        select(R.c.old_sha256, F.c.target)
        .select_from(R.join(F, F.c.sha256 == R.c.old_sha256))
        .where(R.c.old_deleted_at.is_(None))
    )
    with store.read() as conn:
        pending = list(conn.execute(q).all())
    done = 0
    for sha, target_json in pending:
        try:
            open_objects(Target.from_dict(AR.target_of(target_json))).delete(file_name(sha))
        except Unreachable as exc:
            log.warning("a replaced archive file stays until the next sweep: %s", exc.message)
            continue
        AR.forget(sha)
        with store.write() as conn:
            conn.execute(update(R).where(R.c.old_sha256 == sha).values(old_deleted_at=now_us()))
        done += 1
    return done
