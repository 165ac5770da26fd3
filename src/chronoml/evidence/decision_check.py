"""``audit verify --decisions``: every stored decision re-encoded and checked against its batch.

The decisions of the log entries asked for are read in pages of about
``PAGE`` (their evidence rows joined to their rows, in log order), in a thread
that reads the next page while this one is hashed. On SQLite each page's input
commitments and leaves are recomputed at once from its rows
(:mod:`chronoml.store.evidence_batch`); on PostgreSQL the server lays out each
row's leaf and commitment preimage and verify hashes them, so three values per
row cross the wire instead of eighteen. Then each batch's root is recomputed
from its leaves. A page with anything wrong in it (a preimage that does not
hash to what was committed, a stored hash that is not 32 bytes) is read again
in full and redone row by row, so the report names each row that fails and why.

Over a large log the work is split into contiguous pieces of log entries
(about ``CHUNK`` decisions each), checked by the caller's process and one worker
process per other core, each taking the next piece when it is done with one, so
a worker's start-up and a core busy with other work even out; their problems are
merged. A worker is a fresh interpreter (``python -m
chronoml.evidence.decision_check``: the store's URL on its stdin, then one piece a
line; its findings as a JSON line each on stdout), so nothing of the caller
(threads, open connections, its main module) is forked or re-imported; a piece a
worker cannot check (it did not start, or failed) is checked in the caller's
process instead. Each piece is checked exactly as a single process would check it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import queue
import struct
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np

from chronoml import worker
from chronoml.domain import leaves as LV
from chronoml.domain import merkle
from chronoml.evidence.findings import Found, Problem, check_batches
from chronoml.store import Store
from chronoml.store import archive_evidence as AE
from chronoml.store import evidence as SE
from chronoml.store import evidence_batch as EB
from chronoml.store import evidence_preimages as EP
from chronoml.store import partitions as PT

log = logging.getLogger("chronoml.audit")

# decisions; below this a process start costs more than it saves
PARALLEL_FROM = 200_000
MAX_WORKERS = 8
PAGE = 20_000  # decisions read (and hashed) at a time
CHUNK = 2 * PAGE  # decisions in each piece of the log handed to a process

Group = tuple[int, list[tuple[int, str, bytes | None]]]

# columns of a page of full rows (evidence_batch.decision_items) and of preimages
# (evidence_preimages.decision_preimages)
_IDX, _POS, _REF, _LEAF_AT = itemgetter(0), itemgetter(1), itemgetter(2), itemgetter(3)
_SALT, _COM, _ID, _CTX = itemgetter(4), itemgetter(5), itemgetter(6), itemgetter(23)
_PRE_STORED_COM, _PRE_LEAF, _PRE_COM, _PRE_ERASED = (
    itemgetter(4),
    itemgetter(5),
    itemgetter(6),
    itemgetter(7),
)


def _page_slow(page: list[tuple[Any, ...]], f: Found, archived: AE.Archived) -> list[bytes | None]:
    """Row by row, naming each row that does not verify (and why) in log order.

    A decision moved to an archive file is read back from the file. Its context is
    either inside its input commitment (decisions logged since context was committed
    with the inputs) or in its leaf (before): both verify."""
    out: list[bytes | None] = []
    commitment_of = LV.inputs_commitment
    for r in page:
        idx, ref = int(r[0]), str(r[2])
        h: bytes | None = None
        what = f"decision {ref}"
        row = r[6:] if r[6] is not None else archived.get(ref)
        for bad, why in archived.problems:
            f.add(idx, bad, why)
        archived.problems.clear()
        if row is None:
            f.add(idx, what, "it was deleted: the evidence log committed it")
        else:
            salt, com = r[4], r[5]
            try:
                if salt is not None:
                    ctx = row[17] if len(row) > 17 else None
                    got = commitment_of(row[10], bytes(row[11]), row[12], bytes(salt), ctx)
                    if got == bytes(com) and ctx is not None:
                        row = row[:17]  # the context is inside the commitment
                    elif got != bytes(com) and (
                        ctx is None
                        or commitment_of(row[10], bytes(row[11]), row[12], bytes(salt))
                        != bytes(com)
                    ):
                        f.add(idx, what, "its stored inputs no longer match their commitment")
                h = SE.decision_leaf_hash(row, bytes(com))
            except (LV.LeafError, TypeError, ValueError, AttributeError) as exc:
                f.add(idx, what, f"its row cannot be read: {exc}")
            if h is not None and h != bytes(r[3]):
                f.add(idx, what, "its stored row no longer matches its committed leaf")
        out.append(h)
    return out


_LEAF = merkle.HASH_SIZE


def _all_hashes(values: list[Any]) -> bool:
    """Every value is a 32-byte hash: so joined values compare as the values would."""
    return set(map(type, values)) == {bytes} and set(map(len, values)) == {_LEAF}


def _fast(page: list[tuple[Any, ...]]) -> list[bytes] | None:
    """The leaves of a page of full rows when every row verifies, else None (then the
    careful pass names what does not)."""
    n = len(page)
    if list(map(_ID, page)).count(None):
        return None  # a decision is gone (or archived): row by row
    salts = list(map(_SALT, page))
    coms = list(map(_COM, page))
    leaves = list(map(_LEAF_AT, page))
    if not (_all_hashes(coms) and _all_hashes(leaves)):
        return None
    try:
        erased = salts.count(None)
        if erased == 0:
            got = EB.commitments(page, salts, 6)
            if b"".join(got) != b"".join(coms):
                # a context in the leaf (decisions logged before it was committed with the
                # inputs) or an edit: the careful pass tells which
                return None
        else:
            salted = [r for r in page if r[4] is not None]
            got = EB.commitments(salted, [r[4] for r in salted], 6)
            if b"".join(got) != b"".join([r[5] for r in salted]):
                return None
        # where the commitment matched with the context inside, the leaf holds none
        ctx = list(map(_CTX, page))
        inside = None
        if ctx.count(None) < n:
            inside = [c is not None and s is not None for c, s in zip(ctx, salts, strict=True)]
        hashes = EB.leaf_hashes(page, coms, 6, inside)
    except (LV.LeafError, TypeError, ValueError, AttributeError, IndexError, struct.error):
        return None
    return hashes if b"".join(hashes) == b"".join(leaves) else None


def _fast_preimages(page: list[tuple[Any, ...]]) -> list[bytes] | None:
    """PostgreSQL's page of preimages: the leaves when every row verifies, else None."""
    sha = hashlib.sha256
    pre = list(map(_PRE_LEAF, page))
    coms = list(map(_PRE_STORED_COM, page))
    leaves = list(map(_LEAF_AT, page))
    if pre.count(None) or not (_all_hashes(coms) and _all_hashes(leaves)):
        return None
    inputs = list(map(_PRE_COM, page))
    gone = list(map(_PRE_ERASED, page))
    if gone.count(True) == 0:
        if inputs.count(None):
            return None
        if b"".join([sha(p).digest() for p in inputs]) != b"".join(coms):
            return None
    else:
        kept = [(p, c) for p, c, g in zip(inputs, coms, gone, strict=True) if not g]
        if any(p is None for p, _ in kept):
            return None
        if b"".join([sha(p).digest() for p, _ in kept]) != b"".join([c for _, c in kept]):
            return None
    hashes = [sha(p).digest() for p in pre]
    return hashes if b"".join(hashes) == b"".join(leaves) else None


def _page(page: list[tuple[Any, ...]], f: Found, archived: AE.Archived) -> list[bytes | None]:
    """The recomputed leaf of each row of a page (None where the decision is gone)."""
    got = _fast(page)
    return list(got) if got is not None else _page_slow(page, f, archived)


Columns = tuple[list[int], list[int], list[str], list[bytes | None]]


def _ranges(picked: list[int], entries: dict[int, tuple[Any, ...]]) -> list[tuple[int, int]]:
    """``picked`` (ascending log indexes) as ranges of about ``PAGE`` decisions each."""
    out: list[tuple[int, int]] = []
    start, acc = picked[0], 0
    for i in picked:
        acc += int(entries[i][3])
        if acc >= PAGE:
            out.append((start, i + 1))
            start, acc = i + 1, 0
    if acc:
        out.append((start, picked[-1] + 1))
    return out


def _pages(
    store: Store,
    picked: list[int],
    entries: dict[int, tuple[Any, ...]],
    f: Found,
    present: list[int],
) -> Iterator[Columns]:
    """Each page's log indexes, positions, refs and recomputed leaves, in log order.

    Pages are read in a thread while the previous one is hashed. On PostgreSQL the
    server lays out the preimages; a page where anything differs is read again in
    full and checked row by row in Python."""
    archived = AE.Archived(store)  # decisions moved to archive files are read back from them
    engine, sqlite = store.engine, store.is_sqlite
    lo, hi = picked[0], picked[-1] + 1

    def read() -> Iterator[list[tuple[Any, ...]]]:
        if sqlite:
            return EB.decision_items(engine, True, lo, hi, PAGE)
        return EP.decision_preimages(engine, _ranges(picked, entries))

    for page in worker.read_ahead(read, name="chronoml-verify-read"):
        hashes: list[bytes | None] | None = None
        if not sqlite:
            fast = _fast_preimages(page)
            if fast is not None:
                hashes = list(fast)
                present[0] += len(page)
            else:
                first, last = page[0], page[-1]
                # where the server found rows, look for them in the partitions their ids
                # point to; a page of none (archived, in blocks, or gone) in all of them
                refs = list(map(_REF, page))
                found = list(map(_PRE_LEAF, page)).count(None) < len(page)
                span = PT.ids_span([min(refs), max(refs)]) if found else None
                page = EB.decision_items_span(
                    engine, False, (first[0], first[1]), (last[0], last[1]), span
                )
        if hashes is None:
            present[0] += len(page) - list(map(_ID, page)).count(None)
            hashes = _page(page, f, archived)
        yield list(map(_IDX, page)), list(map(_POS, page)), list(map(_REF, page)), hashes


def _groups(
    store: Store,
    picked: list[int],
    entries: dict[int, tuple[Any, ...]],
    f: Found,
    present: list[int],
) -> Iterable[Group]:
    cur: int | None = None
    group: list[tuple[int, str, bytes | None]] = []
    for idxs, poss, refs, hashes in _pages(store, picked, entries, f, present):
        n = len(idxs)
        at = np.fromiter(idxs, dtype=np.int64, count=n)
        cuts = (np.flatnonzero(at[1:] != at[:-1]) + 1).tolist()
        for a, b in zip([0, *cuts], [*cuts, n], strict=True):
            items = list(zip(poss[a:b], refs[a:b], hashes[a:b], strict=True))
            if idxs[a] == cur:
                group.extend(items)
                continue
            if cur is not None:
                yield cur, group
            cur, group = int(idxs[a]), items
    if cur is not None:
        yield cur, group


def _check_range(
    store: Store, entries: dict[int, tuple[Any, ...]], picked: list[int], f: Found
) -> tuple[int, int]:
    """(decisions the batches hold, how many of them have their row)."""
    present = [0]
    n = check_batches(
        "decision", _groups(store, picked, entries, f, present), entries, f, set(picked)
    )
    return n, present[0]


def _run_range(store: Store, picked: list[int]) -> tuple[int, int, list[Problem]]:
    with store.read() as conn:
        entries = EB.log_entries_between(conn, picked[0], picked[-1] + 1)
    f = Found()
    n, present = _check_range(store, entries, picked, f)
    return n, present, f.items


class _Remote:
    """A worker process: sent one piece of the log at a time (a JSON line of log
    indexes), it answers each with a JSON line of its findings."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc

    @classmethod
    def start(cls, url: str, home: str) -> _Remote | None:
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "chronoml.evidence.decision_check"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
        except OSError:
            return None
        assert proc.stdin is not None
        try:
            # on stdin, not argv: the URL may hold a password
            proc.stdin.write(json.dumps({"url": url, "home": home}).encode() + b"\n")
            proc.stdin.flush()
        except OSError:  # it died at once: its pieces are checked here instead
            proc.kill()
            proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                with contextlib.suppress(OSError):
                    if pipe is not None:
                        pipe.close()
            return None
        return cls(proc)

    def run(self, picked: list[int]) -> tuple[int, int, list[Problem]] | None:
        """The findings of the piece ``picked``; None when the worker could not check it."""
        stdin, stdout = self.proc.stdin, self.proc.stdout
        assert stdin is not None and stdout is not None
        try:
            stdin.write(json.dumps(picked).encode() + b"\n")
            stdin.flush()
            line = stdout.readline()
            got = json.loads(line)
            problems = [Problem(a, b, c, d) for a, b, c, d in got["problems"]]
            return int(got["n"]), int(got["present"]), problems
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def close(self) -> None:
        stdin, stdout = self.proc.stdin, self.proc.stdout
        assert stdin is not None and stdout is not None
        with contextlib.suppress(OSError):  # a worker that died has closed its end
            stdin.close()
        stdout.close()
        self.proc.wait()


def main() -> int:
    """A worker: the store's URL on the first line of stdin, then one piece of the log
    a line; the findings of each as a line of JSON on stdout, until stdin ends."""
    job = json.loads(sys.stdin.readline())
    store = Store.open(str(job["url"]), Path(str(job["home"])))
    try:
        for line in sys.stdin:
            n, present, problems = _run_range(store, [int(i) for i in json.loads(line)])
            rows = [[p.log_index, p.what, p.reason, p.rank] for p in problems]
            sys.stdout.write(json.dumps({"n": n, "present": present, "problems": rows}) + "\n")
            sys.stdout.flush()
    finally:
        store.close()
    return 0


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _split(picked: list[int], entries: dict[int, tuple[Any, ...]], parts: int) -> list[list[int]]:
    """``picked`` in ``parts`` contiguous runs with about as many decisions each."""
    total = sum(int(entries[i][3]) for i in picked)
    out: list[list[int]] = [[]]
    acc = 0
    for i in picked:
        if out[-1] and acc >= total * len(out) / parts and len(out) < parts:
            out.append([])
        out[-1].append(i)
        acc += int(entries[i][3])
    return out


def check(
    store: Store,
    entries: dict[int, tuple[Any, ...]],
    picked: list[int],
    f: Found,
    workers: int | None = None,
) -> tuple[int, int]:
    """Check the decision batches at the log indexes ``picked``.

    Returns how many decisions the batches hold and how many of those still
    have their row (the caller compares it with the decision count).
    """
    if not picked:
        return 0, 0
    if workers is None:
        total = sum(int(entries[i][3]) for i in picked)
        workers = min(_cores(), MAX_WORKERS) if total >= PARALLEL_FROM else 1
    workers = max(1, min(workers, len(picked)))
    if workers == 1:
        return _check_range(store, entries, picked, f)
    # pieces of about CHUNK decisions, each to whichever process is free: the workers'
    # start-up (this process begins at once) and an unevenly busy machine even out
    total = sum(int(entries[i][3]) for i in picked)
    cut = _split(picked, entries, max(workers, min(len(picked), -(-total // CHUNK))))
    # each worker's first piece is one of the last, given at its start (so every worker
    # checks at least one); the others go in log order to whichever process is free
    firsts = cut[len(cut) - workers + 1 :][::-1]
    pieces: queue.SimpleQueue[list[int]] = queue.SimpleQueue()
    for piece in cut[: len(cut) - workers + 1]:
        pieces.put(piece)
    url = store.engine.url.render_as_string(hide_password=False)
    done: list[tuple[int, int, list[Problem]]] = []
    redo: list[list[int]] = []  # pieces a worker could not check, checked here

    def feed(remote: _Remote, piece: list[int]) -> None:
        try:
            while True:
                got = remote.run(piece)
                if got is None:
                    log.warning("a verify worker failed; checking its log entries in this process")
                    redo.append(piece)
                    return
                done.append(got)
                try:
                    piece = pieces.get_nowait()
                except queue.Empty:
                    return
        finally:
            remote.close()

    feeders = []
    for first in firsts:
        remote = _Remote.start(url, str(store.home))
        if remote is None:
            redo.append(first)
            continue
        t = threading.Thread(target=feed, args=(remote, first), name="chronoml-verify-feed")
        t.start()
        feeders.append(t)
    n = present = 0
    while True:
        try:
            piece = pieces.get_nowait()
        except queue.Empty:
            break
        k, p = _check_range(store, entries, piece, f)
        n, present = n + k, present + p
    for t in feeders:
        t.join()
    for piece in redo:
        k, p = _check_range(store, entries, piece, f)
        n, present = n + k, present + p
    for k, p, problems in done:
        n, present = n + k, present + p
        f.extend(problems)
    return n, present


if __name__ == "__main__":
    sys.exit(main())
