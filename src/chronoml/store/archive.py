"""Moving decisions out of the database into content-addressed Parquet files.

:func:`archive` takes, per endpoint, the decisions with ``ts`` below a cut in
time order, a chunk at a time. For each chunk it writes one Parquet file per
input layout to the object store under the file's sha256, reads it back and
checks the digest, the row count, the ids and the packed inputs rebuilt from
the columns. Only then, in one transaction, it records the files, appends an
``archive`` entry to the evidence log (one leaf per file), deletes the rows
(by endpoint and time range, checking the count), trims the columnar blocks
and moves the endpoint's archive mark. A crash anywhere before that commit
leaves every row in the database (and at most an orphan file, which the next
run writes again under the same name); a crash after it leaves them archived.

The decisions' own evidence items (leaf, salt, commitment) stay in the
database: they are the log. Erasure rewrites the archive files holding a
subject's inputs (:mod:`chronoml.store.archive_erasure`: files are immutable, so
a rewrite is a new file committed by a new ``archive`` entry, which replaces the
old one for every reader). The archive's commit checks that no erasure ran since
its rows were read, else it reads them again.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from sqlalchemy import Connection, String, cast, delete, func, select, update

from chronoml.domain.archive import (
    ArchiveError,
    Target,
    file_name,
)
from chronoml.store import archive_columns as AC
from chronoml.store import evidence, schema, window_lock
from chronoml.store.archive_objects import Objects, Unreachable, open_objects
from chronoml.store.archive_schema import live
from chronoml.store.archive_trim import deleting, trim_blocks
from chronoml.store.archive_write import Written, write_file
from chronoml.store.database import Store
from chronoml.timeutil import now_us
from chronoml.worker import parallel, read_ahead

if TYPE_CHECKING:
    from chronoml.store.decisions import Layouts

D = schema.decisions
ITEMS = schema.evidence_items
F = schema.archive_files
M = schema.archive_marks
S = schema.archive_state
B = schema.decision_blocks
IB = schema.ingest_blocks

# rows per file: erasing one subject rewrites each file holding one of its decisions, so
# a file's size bounds that work (and a file is one row group of the Parquet writer)
FILE_ROWS = 32_768
WRITERS = min(2, os.cpu_count() or 1)  # files of one chunk written at once
# rows per transaction: bounds memory and how long the write lock is held; a whole number
# of files for each writer (a chunk of 200k decisions made 7 files, the last written alone)
CHUNK_ROWS = 6 * FILE_ROWS
SETTLE_US = 60_000_000  # decisions are stamped before they commit: archive only settled ones
MIN_TS = -(2**62)


def default_target(store: Store) -> Target:
    """The local folder under CHRONOML_HOME."""
    return Target(f"file://{(store.home / 'archive').resolve()}")


@dataclass
class Result:
    """What one archive run moved."""

    files: int = 0
    rows: int = 0
    bytes: int = 0
    endpoints: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "rows": self.rows,
            "bytes": self.bytes,
            "endpoints": self.endpoints,
        }


def mark_in(conn: Connection, endpoint: str) -> int | None:
    v = conn.execute(select(M.c.archived_to).where(M.c.endpoint == endpoint)).scalar()
    return None if v is None else int(v)


def archive(
    store: Store,
    layouts: Layouts,
    before: int,
    target: Target | None = None,
    *,
    endpoints: Iterable[str] | None = None,
    settle_us: int = SETTLE_US,
    chunk_rows: int = CHUNK_ROWS,
    file_rows: int = FILE_ROWS,
    objects: Objects | None = None,
) -> Result:
    """Archive every decision with ``ts < before`` (and settled) of ``endpoints`` (default all)."""
    target = target or default_target(store)
    objs = objects or open_objects(target)
    cut = min(before, now_us() - settle_us)
    if endpoints is None:
        with store.read() as conn:
            endpoints = sorted(
                set(conn.execute(select(D.c.endpoint).distinct()).scalars())
                | set(conn.execute(select(IB.c.endpoint).distinct()).scalars())
            )
    with store.read() as conn:
        chunk_rows = AC.rows_per_read(conn, chunk_rows)
    result = Result()
    for endpoint in endpoints:
        before_rows = result.rows
        _endpoint(store, layouts, endpoint, cut, objs, (chunk_rows, file_rows), target, result)
        if result.rows > before_rows:
            result.endpoints.append(endpoint)
    return result


@dataclass
class _Read:
    """One chunk's decisions, read after the endpoint's mark ``mark``."""

    mark: int | None
    lo: int
    upto: int
    erasures: int | None  # the endpoint's last erasure before the rows were read
    data: AC.Chunk
    held: int  # how many of them were in ingest blocks


@dataclass
class _Chunk:
    """One chunk's files, written and checked, not yet committed."""

    read: _Read
    written: list[Written]


def _endpoint(
    store: Store,
    layouts: Layouts,
    endpoint: str,
    cut: int,
    objs: Objects,
    rows: tuple[int, int],
    target: Target,
    result: Result,
) -> None:
    """Archive ``endpoint``'s decisions below ``cut``, a chunk at a time, in a pipeline:
    the next chunks are read on one thread, a chunk's files are written (on two), and
    the chunk before commits on another (deleting its rows is mostly the database's own
    I/O). Each chunk starts where the one before ends, and its commit, which checks the
    mark it expects, waits for that one's; a refused commit drops the chunks read after
    it, and the endpoint is looked at again from its mark."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="archive-commit") as committer:
        while True:
            with store.read() as conn:
                mark = mark_in(conn, endpoint)
            if _pass(store, layouts, endpoint, mark, cut, objs, rows, target, result, committer):
                return


def _pass(
    store: Store,
    layouts: Layouts,
    endpoint: str,
    mark: int | None,
    cut: int,
    objs: Objects,
    rows: tuple[int, int],
    target: Target,
    result: Result,
    committer: ThreadPoolExecutor,
) -> bool:
    """Archive from ``mark`` on; False when a commit was refused (another archiver moved
    the mark, or an erasure ran): look again, with no unrecorded copy left (it may hold
    inputs erased since they were read)."""
    chunk_rows, file_rows = rows
    committing: tuple[Future[bool], _Chunk] | None = None

    def settled() -> bool:
        nonlocal committing
        if committing is None:
            return True
        (done, chunk), committing = committing, None
        if done.result():
            result.files += len(chunk.written)
            result.rows += len(chunk.read.data)
            result.bytes += sum(w.size for w in chunk.written)
            return True
        discard(store, objs, [w.leaf.sha256 for w in chunk.written])
        return False

    reads = read_ahead(
        lambda: _reads(store, endpoint, mark, cut, chunk_rows), depth=1, name="archive-read"
    )
    try:
        for got in reads:
            chunk = _Chunk(got, _write_files(objs, layouts, endpoint, got.data, file_rows))
            if not settled():
                discard(store, objs, [w.leaf.sha256 for w in chunk.written])
                return False
            committing = (committer.submit(_commit_chunk, store, endpoint, chunk, target), chunk)
        return settled()
    finally:
        reads.close()  # type: ignore[attr-defined]
        if committing is not None:  # an error: the commit in flight ends on its own
            with contextlib.suppress(Exception):
                settled()


def _commit_chunk(store: Store, endpoint: str, chunk: _Chunk, target: Target) -> bool:
    r = chunk.read
    n = len(r.data)
    return window_lock.excluding(store, endpoint, lambda: _commit(
        store, endpoint, r.mark, r.lo, r.upto, chunk.written, target, n - r.held, r.erasures,
        r.held,
    ))  # fmt: skip


def _reads(
    store: Store, endpoint: str, mark: int | None, cut: int, chunk_rows: int
) -> Iterator[_Read]:
    """The chunks of ``endpoint`` from ``mark`` to ``cut``, each read after the one before
    (as if it had been committed)."""
    while (MIN_TS if mark is None else mark) < cut:
        got = _read(store, endpoint, mark, cut, chunk_rows)
        yield got
        mark = got.upto


def _read(store: Store, endpoint: str, mark: int | None, cut: int, chunk_rows: int) -> _Read:
    """The next chunk of ``endpoint`` after ``mark`` and below ``cut`` (at most
    ``chunk_rows`` decisions, all of a timestamp in one chunk)."""
    lo = MIN_TS if mark is None else mark
    # an erasure between this read and the commit would leave its inputs in a file
    with store.read() as conn:
        erasures = last_erasure_in(conn, endpoint)
    with store.engine.connect() as conn:
        data = AC.read(conn, endpoint, lo, cut, chunk_rows)
        upto = cut
        if len(data) == chunk_rows:
            ts = data.ts
            upto = int(ts[-1])
            keep = int(np.searchsorted(ts, upto))  # the rows before the last timestamp
            if keep:
                data = data.head(keep)
            else:  # one timestamp fills the chunk: take every row of it
                data = AC.read(conn, endpoint, upto, upto + 1, None)
                upto += 1
        # the decisions held in ingest blocks of the range (a block is one time)
        upto, held, held_n = AC.held(conn, endpoint, lo, upto, chunk_rows - len(data))
        data = data.head(int(np.searchsorted(data.ts, upto)))
        if len(data):
            _all_committed(conn, endpoint, lo, upto, len(data))
    if held is not None:  # (held comes in (ts, id) order: alone, it needs no sort)
        data = AC.joined(data, held) if len(data) else held
    return _Read(mark, lo, upto, erasures, data, held_n)


def _write_files(
    objs: Objects, layouts: Layouts, endpoint: str, data: AC.Chunk, file_rows: int
) -> list[Written]:
    """Write a chunk's files (at most ``file_rows`` decisions each), each checked."""
    pieces = [
        (layout, piece) for layout, part in data.by_layout() for piece in part.pieces(file_rows)
    ]
    for layout, _ in pieces:
        layouts.get(layout)  # cached here, before the writers share it

    def write(item: tuple[str, AC.Chunk]) -> Written:
        return write_file(objs, endpoint, item[0], item[1], layouts)

    # each file is written, fsync'd and read back on its own thread: pyarrow, zstd,
    # sha256 and the file system release the GIL
    return list(parallel(WRITERS)(write, pieces))


def _all_committed(conn: Connection, endpoint: str, lo: int, upto: int, n: int) -> None:
    """Refuse to archive a decision the evidence log does not commit (added outside chronoml):
    in a file it would look committed by the file's leaf."""
    on = (ITEMS.c.kind == "decision") & (ITEMS.c.ref == cast(D.c.id, String(64)))  # uuid or text
    q = (
        select(func.count())
        .select_from(D.join(ITEMS, on))
        .where(D.c.endpoint == endpoint, D.c.ts >= lo, D.c.ts < upto)
    )
    if int(conn.execute(q).scalar_one()) != n:
        missing = (
            select(D.c.id)
            .select_from(D.outerjoin(ITEMS, on))
            .where(D.c.endpoint == endpoint, D.c.ts >= lo, D.c.ts < upto, ITEMS.c.ref.is_(None))
        )
        raise ArchiveError(
            f"decision {conn.execute(missing.limit(1)).scalar()} is not in the evidence log "
            "(added outside chronoml): run audit verify; nothing was archived",
            "decision",
        )


def _commit(
    store: Store,
    endpoint: str,
    mark: int | None,
    lo: int,
    upto: int,
    written: Sequence[Written],
    target: Target,
    expected: int,
    erasures: int | None,
    expected_held: int = 0,
) -> bool:
    target_json = orjson.dumps(target.to_dict()).decode()
    t = now_us()
    with store.write() as conn:
        window_lock.exclude_in(conn, endpoint)  # first: it waits holding no other lock
        # the lock an erasure takes first (PostgreSQL): it commits wholly before or after
        LH = schema.ledger_head
        conn.execute(select(LH.c.seq).where(LH.c.id == 1).with_for_update()).all()
        now_mark = conn.execute(
            select(M.c.archived_to).where(M.c.endpoint == endpoint).with_for_update()
        ).scalar()
        if now_mark != mark or last_erasure_in(conn, endpoint) != erasures:
            return False  # look again: the rows moved, or some lost their inputs
        with deleting(conn, store.is_sqlite):
            fresh = [w for w in written if absent_in(conn, w.leaf.sha256)]
            if fresh:
                conn.execute(
                    F.insert(),
                    [
                        {
                            "sha256": w.leaf.sha256,
                            "endpoint": endpoint,
                            "layout": w.leaf.layout,
                            "ts_min": w.leaf.ts_min,
                            "ts_max": w.leaf.ts_max,
                            "rows": w.leaf.rows,
                            "bytes": w.size,
                            "min_id": w.leaf.min_id,
                            "max_id": w.leaf.max_id,
                            "target": target_json,
                            "created_at": t,
                        }
                        for w in fresh
                    ],
                )
                record_units_in(conn, fresh)
                entry = evidence.batch_entry(
                    "archive",
                    [w.leaf.sha256 for w in fresh],
                    [w.leaf.leaf_hash() for w in fresh],
                    t,
                )
                evidence.append_in(conn, [entry])
            gone = conn.execute(
                delete(D).where(D.c.endpoint == endpoint, D.c.ts >= lo, D.c.ts < upto)
            ).rowcount
            held = conn.execute(
                select(func.coalesce(func.sum(IB.c.rows), 0)).where(
                    IB.c.endpoint == endpoint, IB.c.ts >= lo, IB.c.ts < upto
                )
            ).scalar_one()
            conn.execute(delete(IB).where(IB.c.endpoint == endpoint, IB.c.ts >= lo, IB.c.ts < upto))
            if gone != expected or int(held) != expected_held:
                # a decision landed in the range after it was read: roll back, nothing moves
                raise ArchiveError(
                    f"{endpoint}: {gone + int(held)} decisions in the range at commit, "
                    f"{expected + expected_held} archived; "
                    "nothing was deleted (try again, or archive an older cut)",
                    "before",
                )
            trim_blocks(conn, endpoint, upto)
            if mark is None:
                conn.execute(M.insert().values(endpoint=endpoint, archived_to=upto))
            else:
                conn.execute(update(M).where(M.c.endpoint == endpoint).values(archived_to=upto))
    return True


def record_units_in(conn: Connection, written: Sequence[Written]) -> None:
    """Record the unit index of each file written with one."""
    rows = [{"sha256": w.leaf.sha256, "units": w.units} for w in written if w.units is not None]
    if rows:
        conn.execute(schema.archive_units.insert(), rows)


def last_erasure_in(conn: Connection, endpoint: str) -> int | None:
    """The seq of the endpoint's latest erasure event (None: none yet)."""
    E = schema.ledger_events
    q = select(func.max(E.c.seq)).where(E.c.endpoint == endpoint, E.c.kind == "erasure")
    v = conn.execute(q).scalar()
    return None if v is None else int(v)


def discard(store: Store, objs: Objects, shas: Sequence[str]) -> None:
    """Delete the objects of files written but not recorded."""
    for sha in shas:
        with store.read() as conn:
            if not absent_in(conn, sha):
                continue
        # unreachable: an orphan, recorded nowhere, so no reader sees it
        with contextlib.suppress(Unreachable):
            objs.delete(file_name(sha))


def absent_in(conn: Connection, sha: str) -> bool:
    """Whether no file of this digest is recorded."""
    return conn.execute(select(F.c.sha256).where(F.c.sha256 == sha)).first() is None


# --- the archiver's state and what is where ----------------------------------------


def record_attempt(store: Store, error: str | None, next_at: int | None) -> int:
    """Remember how the last background pass went; returns the consecutive failures."""
    t = now_us()
    with store.write() as conn:
        row = conn.execute(select(S.c.failures).where(S.c.id == 1)).first()
        failures = 0 if error is None else (int(row[0]) + 1 if row is not None else 1)
        values: dict[str, Any] = {
            "failures": failures,
            "last_error": error,
            "last_attempt_at": t,
            "next_attempt_at": next_at,
        }
        if error is None:
            values["last_success_at"] = t
        if row is None:
            conn.execute(S.insert().values(id=1, **values))
        else:
            conn.execute(update(S).where(S.c.id == 1).values(**values))
    return failures


def status(store: Store) -> dict[str, Any]:
    """Per endpoint: decisions in the database, archived decisions, files and bytes, the mark."""
    with store.read() as conn:
        in_db: dict[str, int] = dict(
            conn.execute(select(D.c.endpoint, func.count()).group_by(D.c.endpoint)).all()
        )
        held = select(IB.c.endpoint, func.sum(IB.c.rows)).group_by(IB.c.endpoint)
        for e, n in conn.execute(held).all():
            in_db[e] = in_db.get(e, 0) + int(n)
        arch = conn.execute(
            select(F.c.endpoint, func.count(), func.sum(F.c.rows), func.sum(F.c.bytes))
            .where(live())
            .group_by(F.c.endpoint)
        ).all()
        marks = dict(conn.execute(select(M.c.endpoint, M.c.archived_to)).all())
        targets = sorted(set(conn.execute(select(F.c.target).where(live()).distinct()).scalars()))
        state = conn.execute(select(S)).mappings().first()
    by = {e: (int(n), int(r or 0), int(b or 0)) for e, n, r, b in arch}
    endpoints = []
    for e in sorted(set(in_db) | set(by) | set(marks)):
        files, rows, size = by.get(e, (0, 0, 0))
        endpoints.append(
            {
                "endpoint": e,
                "live_decisions": int(in_db.get(e, 0)),
                "archived_decisions": rows,
                "files": files,
                "bytes": size,
                "archived_to": marks.get(e),
            }
        )
    return {
        "endpoints": endpoints,
        "targets": [orjson.loads(t)["url"] for t in targets],
        "state": dict(state) if state is not None else None,
    }


def files_holding(store: Store, decision_ids: Sequence[str]) -> list[str]:
    """The archive files whose id range covers any of ``decision_ids`` (the live ones:
    a file replaced by a rewrite holds nothing a reader uses)."""
    out: set[str] = set()
    with store.read() as conn:
        for did in decision_ids:
            q = select(F.c.sha256).where(F.c.min_id <= did, F.c.max_id >= did, live())
            out.update(conn.execute(q).scalars())
    return sorted(out)
