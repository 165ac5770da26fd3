"""Inclusion proofs over a log of 1,000,000 decisions: made in <= 5 ms, checked in <= 1 ms.

Pure CPU, no store: the tree code of ``chronoml.domain.merkle`` and the leaf
encodings of ``chronoml.domain.leaves``, over generated decisions.

How a decision's proof is made (the two-level scheme the store uses): each
group commit's decisions form a small tree whose root enters the log as one
``BatchLeaf``; the proof is the decision's path up to its batch root plus
the batch leaf's path up to the log's root. Three cases are measured:

- ``flat``: one tree over 1M leaf hashes held as a ``MerkleTree`` (every
  complete subtree hash, about 64 MB); a proof is lookups plus the hashes of
  the right edge. This is also the two-level worst case, single-row commits,
  where the log itself has ~1M entries.
- ``two-level, resident log, batch re-encoded``: batches of ``--batch``
  decisions; the log tree over the batch leaves is held in memory (a server
  keeps it and appends to it); a proof re-reads the batch's rows (re-encoded
  here from ``DecisionLeaf`` objects), rebuilds the batch tree and takes
  both paths. Its cost grows with the batch size (one encoding per row).
- ``two-level, node table + stored leaf hashes``: nothing in memory. The
  log's node hashes come from a table keyed ``(level, index)`` (a dict
  here), filled with what ``CompactRange.append`` returns at each commit; a
  proof reads only the rows ``inclusion_proof_nodes`` lists (one indexed
  query in a store). The batch tree is rebuilt from the decisions' stored
  leaf hashes (a 32-byte column written at commit), and only the asked
  decision is re-encoded and compared. This is how a CLI call makes proofs.
- shown without a goal: rebuilding the log tree from the stored batch-leaf
  hashes for every proof, to show why the node table is needed.

Checking a proof: ``verify_inclusion`` on the path(s), after re-encoding the
decision (what ``python -m chronoml.verify`` does per item); the Ed25519
check of the checkpoint, once per bundle, is shown beside it.

Anchors in the same run: the bare SHA-256 calls the work cannot avoid (the
node hashes a root or a check needs), so the ratio shows the overhead of the
Python around them. Also the root of 1M leaf hashes, the cost to append a
leaf to a ``CompactRange`` / ``MerkleTree``, and to encode and hash one
decision leaf (what each group commit adds per decision).

    .venv/bin/python bench/evidence/bench_proofs.py                  # about 1 minute on 2 cores
    .venv/bin/python bench/evidence/bench_proofs.py --leaves 100000 --repeats 200

Exit code 0: every goal met; 2: some goal missed; 1: the benchmark failed.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from chronoml.domain import leaves as L
from chronoml.domain import merkle as M

GOAL_MAKE_MS = 5.0
GOAL_CHECK_MS = 1.0
T0 = 1_767_225_600_000_000


def decision(i: int) -> L.DecisionLeaf:
    salt = i.to_bytes(16, "big")
    num = bytes(240)  # 30 float64 inputs as the store packs them
    return L.DecisionLeaf(
        id=f"0190{i:012x}-7000-8000-000000000000",
        ts=T0 + i * 1_000,
        endpoint="churn",
        variant="v1",
        model_name="churn",
        model_version="3",
        event_seq=17,
        shadow=False,
        unit=f"user-{i % 50_000}",
        request_id=f"0190{i:012x}-7000-8000-00000000000r",
        layout="a1b2c3d4",
        inputs_commitment=L.inputs_commitment("a1b2c3d4", num, None, salt),
        output="0.7312",
        output_num=0.7312,
        latency_ms=1.8,
    )


def timed(fn: Callable[[], object], repeats: int) -> list[float]:
    """Milliseconds per call, one sample per call."""
    out = []
    for _ in range(repeats):
        t = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - t) / 1e6)
    return out


def p99(xs: list[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(0.99 * len(s)))]


def line(
    name: str, ms: list[float], goal: float | None = None, anchor: float | None = None
) -> bool:
    med = statistics.median(ms)
    text = f"  {name:<46} median {med:9.4f} ms  p99 {p99(ms):9.4f} ms"
    if anchor:
        text += f"  {med / anchor:5.1f}x anchor"
    ok = True
    if goal is not None:
        ok = med <= goal
        text += f"  goal <= {goal} ms: {'met' if ok else 'MISSED'} ({med / goal:.2f} of it)"
    print(text)
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--leaves", type=int, default=1_000_000, help="decisions in the log")
    ap.add_argument("--batch", type=int, default=64, help="decisions per group commit")
    ap.add_argument("--repeats", type=int, default=500, help="proofs made and checked per case")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    n, bsize, reps = args.leaves, args.batch, args.repeats
    print(f"evidence proofs: {n:,} decisions, batches of {bsize}, {reps} proofs per case")
    all_ok = True

    # --- per-decision commit cost ---------------------------------------------
    sample = [decision(i) for i in range(20_000)]
    enc = timed(lambda: [d.leaf_hash() for d in sample], 5)
    per_dec_us = statistics.median(enc) / len(sample) * 1000
    print(
        f"  encode + hash one decision leaf               {per_dec_us:9.2f} us  (median of 5 x 20,000)"
    )

    # --- the 1M-leaf hashes and their root ---------------------------------------
    t = time.perf_counter()
    hashes = [hashlib.sha256(b"\x00" + i.to_bytes(8, "big")).digest() for i in range(n)]
    print(f"  make {n:,} leaf hashes                     {time.perf_counter() - t:9.3f} s")
    sha = hashlib.sha256
    blob = b"\x01" + bytes(64)
    anchor_root = timed(lambda: [sha(blob).digest() for _ in range(n - 1)], 3)
    print("root and tree of all leaf hashes (anchor: n-1 bare SHA-256 of 65 bytes):")
    line("bare SHA-256 x (n-1)", anchor_root)
    line(
        "root_of(leaf hashes)",
        timed(lambda: M.root_of(hashes), 3),
        anchor=statistics.median(anchor_root),
    )
    tree_ms = timed(lambda: M.MerkleTree(hashes), 1)
    line(
        "MerkleTree(leaf hashes): every subtree hash",
        tree_ms,
        anchor=statistics.median(anchor_root),
    )
    tree = M.MerkleTree(hashes)
    root = tree.root()
    edge = M.CompactRange()
    k = 200_000
    app = timed(lambda: edge.extend(hashes[:k]), 1)[0] / k * 1000
    grow = M.MerkleTree()
    app2 = timed(lambda: grow.extend(hashes[:k]), 1)[0] / k * 1000
    print(f"  CompactRange.append, amortized                {app:9.2f} us per leaf")
    print(f"  MerkleTree.append, amortized                  {app2:9.2f} us per leaf")

    # --- flat tree -----------------------------------------------------------------
    print(f"flat: one tree of {n:,} leaves in memory")
    idx = [rng.randrange(n) for _ in range(reps)]
    it = iter(idx * 2)
    all_ok &= line(
        "make inclusion proof", timed(lambda: tree.inclusion_proof(next(it)), reps), GOAL_MAKE_MS
    )
    proofs = [(i, tree.inclusion_proof(i)) for i in idx]
    pit = iter(proofs)

    def check_flat() -> None:
        i, p = next(pit)
        assert M.verify_inclusion(i, n, hashes[i], p, root)

    depth = len(proofs[0][1])
    anchor_check = timed(lambda: [sha(blob).digest() for _ in range(depth)], reps)
    line(f"bare SHA-256 x {depth} (anchor)", anchor_check)
    all_ok &= line(
        "check inclusion proof",
        timed(check_flat, reps),
        GOAL_CHECK_MS,
        statistics.median(anchor_check),
    )

    # --- two-level -----------------------------------------------------------------
    nb = -(-n // bsize)
    print(f"two-level: {nb:,} batch leaves of {bsize} decisions each")
    batch_leaves = []
    for b in range(nb):
        # a batch root over synthetic decision hashes; the measured batch is rebuilt from rows
        lo, hi = b * bsize, min(n, (b + 1) * bsize)
        broot = M.root_of(hashes[lo:hi])
        batch_leaves.append(L.BatchLeaf("decision", hi - lo, broot, T0 + hi).leaf_hash())
    log = M.MerkleTree(batch_leaves)
    log_root = log.root()
    # the batches proofs are asked for: real rows, re-encoded per proof like a store read
    asked = [rng.randrange(nb - 1) for _ in range(reps)]
    rows = {b: [decision(b * bsize + j) for j in range(bsize)] for b in set(asked)}
    for b, ds in rows.items():  # the log must hold these batches' real roots
        broot = L.batch_root([d.leaf_hash() for d in ds])
        batch_leaves[b] = L.BatchLeaf("decision", bsize, broot, T0 + b).leaf_hash()
    log = M.MerkleTree(batch_leaves)
    log_root = log.root()

    def make(
        b: int, j: int, log_tree: M.MerkleTree | None
    ) -> tuple[list[bytes], list[bytes], bytes]:
        ds = rows[b]
        bl = [d.leaf_hash() for d in ds]
        bt = M.MerkleTree(bl)
        inner = bt.inclusion_proof(j)
        lt = log_tree if log_tree is not None else M.MerkleTree(batch_leaves)
        outer = lt.inclusion_proof(b)
        return inner, outer, bt.root()

    picks = [(b, rng.randrange(bsize)) for b in asked]
    pi = iter(picks * 3)

    def make_resident() -> None:
        b, j = next(pi)
        make(b, j, log)

    all_ok &= line(
        "make proof, resident log, batch re-encoded", timed(make_resident, reps), GOAL_MAKE_MS
    )

    # a node table as a store keeps it: the rows each append completes, keyed (level, index)
    table: dict[tuple[int, int], bytes] = {}
    edge = M.CompactRange()
    for leaf in batch_leaves:
        for level, index, h in edge.append(leaf):
            table[(level, index)] = h
    stored_leaves = {b: [d.leaf_hash() for d in ds] for b, ds in rows.items()}
    pi3 = iter(picks)

    def make_from_table() -> tuple[list[bytes], list[bytes]]:
        b, j = next(pi3)
        bl = stored_leaves[b]  # the batch's leaf-hash column, one query
        if rows[b][j].leaf_hash() != bl[j]:  # the asked decision itself is re-encoded
            raise AssertionError("stored leaf hash differs")
        inner = M.MerkleTree(bl).inclusion_proof(j)
        fetched = {k: table[k] for k in M.inclusion_proof_nodes(b, nb)}  # one IN (...) query
        outer = M.make_inclusion_proof(lambda lvl, i: fetched[(lvl, i)], b, nb)
        return inner, outer

    all_ok &= line(
        "make proof, node table + stored leaf hashes", timed(make_from_table, reps), GOAL_MAKE_MS
    )
    fetched_rows = len(M.inclusion_proof_nodes(nb // 3, nb))
    print(
        f"  (node table: {len(table):,} rows for {nb:,} log entries; a proof reads {fetched_rows})"
    )
    cold_reps = max(5, reps // 10)
    pi2 = iter(picks)
    cold = timed(lambda: make(*next(pi2), None), cold_reps)
    line(f"no goal: log tree rebuilt from {nb:,} hashes per proof", cold)
    made = [(b, j, *make(b, j, log)) for b, j in picks]
    mi = iter(made)

    def check_two_level() -> None:
        b, j, inner, outer, _ = next(mi)
        d = rows[b][j]
        broot = M.root_from_inclusion_proof(j, bsize, d.leaf_hash(), inner)
        assert broot is not None
        entry = L.BatchLeaf("decision", bsize, broot, T0 + b).leaf_hash()
        assert M.verify_inclusion(b, nb, entry, outer, log_root)

    all_ok &= line(
        "check proof (re-encode + both paths)", timed(check_two_level, reps), GOAL_CHECK_MS
    )

    key = Ed25519PrivateKey.generate()
    pub = key.public_key()
    msg = b"chronoml.example/log\n1000000\n" + b"x" * 44 + b"\n"
    sig = key.sign(msg)
    line("Ed25519 check of the checkpoint (per bundle)", timed(lambda: pub.verify(sig, msg), reps))
    print("all goals met" if all_ok else "some goal MISSED")
    return 0 if all_ok else 2


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # a failed run, not a missed goal
        print(f"benchmark failed: {e!r}", file=sys.stderr)
        sys.exit(1)
