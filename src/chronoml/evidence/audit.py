"""Verify the evidence log against the rows it commits to, and against a published checkpoint.

Nothing stored is trusted: every leaf is recomputed from the row it stands for
(a ledger event's columns, ``sets_state`` included; a decision's columns and
the commitment to its inputs; a feedback or explanation row), every batch
root from its items, the whole tree from those leaves, and the head, the
stored subtree nodes and the stored checkpoints are compared with the result.
A checkpoint given from outside (signed by the store's key) must be a prefix
of the recomputed tree: a consistency proof (RFC 9162) shows it, and a
rewrite, truncation or reordering of anything it covers fails it.

The report names the first problem in log order: the ledger event, decision,
feedback row or explanation whose stored columns no longer match what was
committed, or the log entry, node or checkpoint that does not fit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from chronoml import worker
from chronoml.domain import leaves as LV
from chronoml.domain import ledger as L
from chronoml.domain import merkle, note
from chronoml.evidence import decision_check
from chronoml.evidence.checkpoints import TIME_PREFIX, TIMESTAMPED
from chronoml.evidence.findings import Found as _Found
from chronoml.evidence.findings import Problem, check_batches
from chronoml.evidence.signatures import signature_problem
from chronoml.store import Store
from chronoml.store import archive_evidence as AE
from chronoml.store import checkpoints as SC
from chronoml.store import decisions as SD
from chronoml.store import evidence as SE
from chronoml.store import evidence_batch as EB
from chronoml.store import ledger as SL
from chronoml.timeutil import iso
from chronoml.window import Window


@dataclass(frozen=True)
class CheckpointResult:
    """A checkpoint compared with the recomputed log."""

    source: str  # "given" or "stored #id"
    size: int
    root: str
    consistent: bool
    signed: bool | None = None  # by every trusted key (None: no key to check with)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "source": self.source,
            "size": self.size,
            "root": self.root,
            "consistent": self.consistent,
            "signed": self.signed,
        }


@dataclass
class EvidenceReport:
    """What ``chronoml audit verify`` found in the evidence log."""

    ok: bool = True
    origin: str = ""
    entries: int = 0
    root: str = ""
    events: int = 0
    decisions: int | None = None
    feedback: int = 0
    explanations: int = 0
    checkpoints: list[CheckpointResult] = field(default_factory=list)
    first_bad: str | None = None
    reason: str | None = None
    problems: list[Problem] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (the ``evidence`` object of GET /v1/audit/verify)."""
        return {
            "ok": self.ok,
            "origin": self.origin,
            "entries": self.entries,
            "root": self.root,
            "events": self.events,
            "decisions": self.decisions,
            "feedback": self.feedback,
            "explanations": self.explanations,
            "checkpoints": [c.to_dict() for c in self.checkpoints],
            "first_bad": self.first_bad,
            "reason": self.reason,
            "problems": [p.to_dict() for p in self.problems],
        }


def _check_ledger(conn: Any, entries: list[tuple[Any, ...]], leaves: list[bytes], f: _Found) -> int:
    by_seq = {int(e[2]): int(e[0]) for e in entries if e[1] == "ledger_event" and e[2] is not None}
    times = {int(e[0]): int(e[5]) for e in entries if e[1] == "ledger_event"}
    prev, expected, n = L.GENESIS_HASH, 1, 0
    for seq, ev, flag in SL.events_with_flags(conn):
        n += 1
        idx = by_seq.pop(seq, None)
        what = f"ledger event #{seq}"
        if ev is None:
            f.add(idx, what, "its stored columns cannot be read back")
            expected = seq + 1
            continue
        if flag != (ev.kind in L.STATE_KINDS):
            f.add(
                idx,
                what,
                f"its sets_state column says {flag}, but a {ev.kind!r} event "
                f"{'sets' if ev.kind in L.STATE_KINDS else 'does not set'} the live state",
            )
        leaf = SE.event_leaf(ev, flag)
        why = leaf.problem()
        if why is not None:
            f.add(idx, what, why)
        if ev.seq != expected:
            f.add(idx, what, f"expected seq {expected}, found {ev.seq}: an event is missing")
        elif ev.prev_hash != prev:
            f.add(idx, what, "prev_hash does not match the event before it")
        prev, expected = ev.hash, ev.seq + 1
        if idx is None:
            f.add(None, what, "it is not in the evidence log: it was added outside chronoml")
            continue
        if times.get(idx) != ev.recorded_at:
            f.add(idx, what, "its log entry's time is not the time it was recorded")
        h = leaf.leaf_hash()
        if h != leaves[idx]:
            f.add(idx, what, "its stored row no longer matches what the evidence log committed")
        leaves[idx] = h
    for seq, idx in sorted(by_seq.items()):
        f.add(idx, f"ledger event #{seq}", "it was deleted: the evidence log committed it")
    seq, last = SL.head_in(conn)
    if (seq, last) != (expected - 1, prev):
        f.add(
            None,
            "ledger head",
            f"it says seq {seq}, but the chain ends at {expected - 1}: "
            "events were removed or added outside chronoml",
        )
    return n


def _item_groups(
    rows: Iterable[Any], kind: str, leaf_of: Any, f: _Found
) -> Iterable[tuple[int, list[tuple[int, str, bytes | None]]]]:
    cur: int | None = None
    group: list[tuple[int, str, bytes | None]] = []
    for r in rows:
        idx, pos, ref, stored = int(r["log_index"]), int(r["position"]), str(r["ref"]), r["leaf"]
        if cur is not None and idx != cur:
            yield cur, group
            group = []
        cur = idx
        h: bytes | None
        try:
            h = leaf_of(r)
        except (LV.LeafError, TypeError, ValueError) as exc:
            f.add(idx, f"{kind} {ref}", f"its row cannot be read: {exc}")
            h = None
        if h is None:
            f.add(idx, f"{kind} {ref}", "it was deleted: the evidence log committed it")
        elif h != bytes(stored):
            f.add(idx, f"{kind} {ref}", "its stored row no longer matches its committed leaf")
        group.append((pos, ref, h))
    if cur is not None:
        yield cur, group


def _feedback_leaf(r: Any) -> bytes | None:
    return None if r["id"] is None else SE.feedback_leaf(r).leaf_hash()


def _explanation_leaf(r: Any) -> bytes | None:
    if r["decision_id"] is None:
        return None
    cols = ("decision_id", "explainer", "output_scale", "base_value", "contributions")
    return SE.explanation_leaf(
        [*(r[c] for c in cols), r["background"], r["created_at"]]
    ).leaf_hash()


def _archive_leaf(r: Any) -> bytes | None:
    leaf = AE.file_leaf(r)
    return None if leaf is None else leaf.leaf_hash()


def _check_tree(
    store: Store, head: SE.Head, entries: list[tuple[Any, ...]], leaves: list[bytes], f: _Found
) -> merkle.MerkleTree:
    tree = merkle.MerkleTree(leaves)
    if head.size != tree.size or head.root != tree.root():
        f.add(
            min(head.size, tree.size),
            "evidence head",
            f"it says {head.size} entries with root {head.root.hex()[:16]}..., the stored rows "
            f"give {tree.size} with root {tree.root().hex()[:16]}...",
            "tree",
        )
    with store.read() as conn:
        count = 0
        for level, idx, h in SE.all_nodes(conn):
            count += 1
            try:
                ok = tree.node(level, idx) == h
            except merkle.MerkleError:
                ok = False
            if not ok:
                f.add(idx << level, f"node ({level}, {idx})", "it does not match the log", "tree")
    expected = sum(tree.size >> k for k in range(tree.size.bit_length()))
    if count != expected:
        f.add(None, "evidence nodes", f"{count} stored, the log has {expected}", "tree")
    return tree


def check_checkpoint(
    tree: merkle.MerkleTree, origin: str, cp: note.Checkpoint, source: str, f: _Found
) -> CheckpointResult:
    """Whether the recomputed ``tree`` extends checkpoint ``cp`` (a consistency proof)."""
    ok = True
    if cp.origin != origin:
        f.add(
            None,
            f"checkpoint ({source})",
            f"it is for log {cp.origin!r}, not {origin!r}",
            "checkpoint",
        )
        ok = False
    elif cp.size > tree.size:
        f.add(
            tree.size,
            f"checkpoint ({source})",
            f"it covers {cp.size} entries but the store has {tree.size}: "
            f"log entries {tree.size}..{cp.size - 1} were removed",
            "checkpoint",
        )
        ok = False
    else:
        proof = tree.consistency_proof(cp.size, tree.size)
        if not merkle.verify_consistency(cp.size, tree.size, cp.root_hash, tree.root(), proof):
            f.add(
                cp.size - 1,
                f"checkpoint ({source})",
                f"the store does not extend it: an entry among log entries 0..{cp.size - 1} "
                "was rewritten, removed or reordered since it was signed",
                "checkpoint",
            )
            ok = False
    return CheckpointResult(source, cp.size, cp.root_hash.hex(), ok)


def _call(job: Callable[[], Any]) -> Any:
    return job()


def verify(
    store: Store,
    *,
    decisions: bool = False,
    window: Window | None = None,
    checkpoint: note.Checkpoint | None = None,
    keys: Sequence[note.VerifierKey] = (),
    workers: int | None = None,
) -> EvidenceReport:
    """Recompute the evidence log from the stored rows (decisions too when asked).

    Each stored checkpoint must be signed by every key of ``keys`` (the
    store's key and the one an auditor trusts); with none, signatures are
    not checked and the report says so (``signed`` is None).
    ``workers``: processes for the decisions (default: one per core over a large log).
    """
    f = _Found()
    with store.read() as conn:
        found = SE.find_head(conn)
        entries = SE.log_entries(conn)
        stored_cps = SC.checkpoints_in(conn)
        stamped = set(SC.timestamps_in(conn))
    if found is None:
        f.add(None, "evidence head", "its row is gone", "tree")
    head = found or SE.Head("", -1, b"")
    leaves: list[bytes] = []
    for pos, (idx, kind, _ref, size, root, at, leaf) in enumerate(entries):
        if idx != pos:
            f.add(pos, f"log entry {pos}", f"it is missing (the next is {idx})", "entry")
        if kind == "ledger_event":
            # an event's entry holds nothing but its seq and time beside the leaf
            if size != 1 or root is not None or _ref is None:
                f.add(idx, f"log entry {idx}", "its columns do not fit a ledger event", "entry")
            leaves.append(bytes(leaf))  # replaced by the recomputed one below
            continue
        if _ref is not None:
            f.add(idx, f"log entry {idx}", "a batch entry has no ref", "entry")
        try:
            h = LV.BatchLeaf(kind, int(size), bytes(root or b""), int(at)).leaf_hash()
        except LV.LeafError as exc:
            f.add(idx, f"log entry {idx}", f"its columns cannot be read: {exc.message}", "entry")
            h = bytes(leaf)
        if h != bytes(leaf):
            f.add(idx, f"log entry {idx}", "its leaf does not match its batch columns", "entry")
        leaves.append(h)
    report = EvidenceReport(origin=head.origin, entries=len(entries))
    by_index = {int(e[0]): e for e in entries}
    with store.read() as conn:
        report.events = _check_ledger(conn, entries, leaves, f)
        for kind, rows, leaf_of in (
            ("feedback", SE.feedback_items(conn), _feedback_leaf),
            ("explanation", SE.explanation_items(conn), _explanation_leaf),
            ("archive", AE.archive_items(conn), _archive_leaf),
        ):
            wanted = {int(e[0]) for e in entries if e[1] == kind}
            n = check_batches(kind, _item_groups(rows, kind, leaf_of, f), by_index, f, wanted)
            if kind == "archive":
                for what, why in AE.replacement_problems(conn):
                    f.add(None, what, why)
                continue
            setattr(report, kind if kind == "feedback" else "explanations", n)
            for ref in SE.uncommitted(conn, kind):
                f.add(
                    None, f"{kind} {ref}", "it is not in the evidence log: added outside chronoml"
                )
    if decisions:
        picked = [
            int(e[0])
            for e in entries
            if e[1] == "decision" and (window is None or window.start <= e[5] < window.end)
        ]

        def unlogged_rows() -> list[str]:
            with store.read() as conn:
                return SE.uncommitted(conn, "decision")

        def duplicated() -> list[tuple[str, str]]:
            with store.read() as conn:
                return EB.duplicated_ids(conn)

        # a second row under a committed id (PostgreSQL's day partitions key rows by
        # (id, ts)) lies outside what the check reads: a scan of the keys, run beside it
        jobs: list[Callable[[], Any]] = [
            lambda: decision_check.check(store, by_index, picked, f, workers),
            duplicated,
        ]
        if window is not None:
            # a window's decisions do not account for the table's: the anti-join (a scan
            # of every row, in the database, without the GIL) runs beside their check
            jobs.append(unlogged_rows)
        done = list(worker.parallel(len(jobs))(_call, jobs))
        (report.decisions, present), twice = done[0], done[1]
        unlogged: list[str] = done[2] if window is not None else []
        for what, ref in twice:
            f.add(None, f"{what} {ref}", "more than one stored row has its id: one was added")
        # when every decision row was matched to an item the anti-join over all rows
        # cannot find one; it runs only to name those that are not
        if window is None and SD.count(store) != present:
            unlogged = unlogged_rows()
        for ref in unlogged:
            f.add(None, f"decision {ref}", "it is not in the evidence log: added outside chronoml")
    tree = _check_tree(store, head, entries, leaves, f)
    report.root = tree.root().hex()
    for n, (cid, size, root, at, text) in enumerate(stored_cps, start=1):
        where = f"stored checkpoint #{cid}"
        if cid != n:
            f.add(None, where, f"expected #{n}: one was removed or renumbered", "checkpoint")
        try:
            cp = note.parse_checkpoint(note.parse_note(text).text)
        except note.NoteError as exc:
            f.add(None, where, exc.message, "checkpoint")
            continue
        stamp = f"{TIME_PREFIX}{iso(at)}"
        if (cp.size, cp.root_hash) != (size, root) or stamp not in cp.extensions:
            f.add(None, where, "its columns differ from its signed note", "checkpoint")
        if TIMESTAMPED in cp.extensions and cid not in stamped:
            f.add(
                None,
                where,
                "its signed note says an RFC 3161 authority timestamped it, and that "
                "timestamp is missing from the store (checkpoint_timestamps)",
                "checkpoint",
            )
        forged = signature_problem(text, keys) if keys else None
        if forged is not None:
            f.add(None, where, forged, "checkpoint")
        result = check_checkpoint(tree, head.origin, cp, f"stored #{cid}", f)
        signed = None if not keys else forged is None
        report.checkpoints.append(replace(result, signed=signed))
    if checkpoint is not None:
        report.checkpoints.append(check_checkpoint(tree, head.origin, checkpoint, "given", f))
    report.problems = f.sorted()
    if report.problems:
        first = report.problems[0]
        report.ok, report.first_bad, report.reason = False, first.what, first.reason
    return report


def summary(report: EvidenceReport) -> str:
    """One line for people."""
    if not report.ok:
        return f"FAILED at {report.first_bad}: {report.reason}"
    parts = [f"{report.entries} log entries", f"{report.events} events"]
    if report.decisions is not None:
        parts.append(f"{report.decisions} decisions")
    parts += [f"{report.feedback} labels", f"{report.explanations} explanations"]
    cps = [c for c in report.checkpoints if c.source == "given"]
    tail = f"; extends the checkpoint of size {cps[0].size}" if cps else ""
    return f"evidence ok: {', '.join(parts)}, root {report.root[:16]}...{tail}"


__all__ = ["CheckpointResult", "EvidenceReport", "Problem", "check_checkpoint", "summary", "verify"]
