"""Builds a small evidence log and bundles from it, for the evidence tests."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from chronoml.domain import leaves as L
from chronoml.domain import merkle, note
from chronoml.evidence import bundle as B
from chronoml.evidence import keys

ORIGIN = "chronoml.test/log"
T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z in microseconds


def event_leaf(seq: int, prev: str, actor: str = "alice") -> L.LedgerEventLeaf:
    content = {
        "seq": seq,
        "kind": "deploy",
        "endpoint": "churn",
        "actor": actor,
        "recorded_at": T0 + seq,
        "effective_at": T0 + seq,
        "payload": {"model": "models:/churn/1"},
        "state": [{"variant": "v1", "weight": 10_000, "model": {"artifact_digest": "sha256:ab"}}],
        "back": None,
        "prev_hash": prev,
    }
    raw = L.canonical_json(content)
    return L.LedgerEventLeaf(seq, raw, hashlib.sha256(raw).hexdigest(), True)


def decision_leaf(i: int, salt: bytes) -> tuple[L.DecisionLeaf, B.StoredInputs]:
    num = (i * 1.5).hex().encode() + b"|" + bytes(range(8))
    txt = None if i % 2 else f'["plan-{i}"]'
    leaf = L.DecisionLeaf(
        id=f"0190-dec-{i:04d}",
        ts=T0 + 1_000 * i,
        endpoint="churn",
        variant="v1",
        model_name="churn",
        model_version="1",
        event_seq=1,
        shadow=False,
        unit=f"user-{i % 7}",
        request_id=f"req-{i}",
        layout="lay1",
        inputs_commitment=L.inputs_commitment("lay1", num, txt, salt),
        output=json.dumps(0.25 + i / 1000),
        output_num=0.25 + i / 1000,
        latency_ms=1.25,
    )
    return leaf, B.StoredInputs(num, txt, salt)


@dataclass
class Log:
    """A small evidence log: two events, three decision batches, feedback and explanations."""

    tree: merkle.MerkleTree
    events: list[L.LedgerEventLeaf]
    batches: list[tuple[int, list[L.DecisionLeaf], list[B.StoredInputs]]]  # (log index, ...)
    feedback: tuple[int, list[L.FeedbackLeaf]]
    explanations: tuple[int, list[L.ExplanationLeaf]]


def build_log() -> Log:
    tree = merkle.MerkleTree()
    events: list[L.LedgerEventLeaf] = []
    prev = "0" * 64
    for seq in (1, 2):
        ev = event_leaf(seq, prev)
        events.append(ev)
        tree.append(ev.leaf_hash())
        prev = ev.hash
    batches = []
    n = 0
    for size in (5, 1, 9):
        rows = [decision_leaf(n + j, bytes([n + j]) * 16) for j in range(size)]
        n += size
        ds = [r[0] for r in rows]
        root = L.batch_root([d.leaf_hash() for d in ds])
        idx = tree.append(L.BatchLeaf("decision", size, root, T0 + n).leaf_hash())
        batches.append((idx, ds, [r[1] for r in rows]))
    fb = [
        L.FeedbackLeaf(k, f"0190-dec-{k:04d}", "1", 1.0, T0, T0 + 5, "labeller") for k in range(3)
    ]
    fb_idx = tree.append(
        L.BatchLeaf("feedback", 3, L.batch_root([f.leaf_hash() for f in fb]), T0 + 9).leaf_hash()
    )
    ex = [L.ExplanationLeaf("0190-dec-0001", "tree", "raw", 0.5, '{"x":0.1}', '{"n":100}', T0 + 7)]
    ex_idx = tree.append(
        L.BatchLeaf("explanation", 1, L.batch_root([e.leaf_hash() for e in ex]), T0 + 7).leaf_hash()
    )
    return Log(tree, events, batches, (fb_idx, fb), (ex_idx, ex))


def checkpoint_for(log: Log, key: keys.SigningKey) -> str:
    cp = note.Checkpoint(ORIGIN, log.tree.size, log.tree.root(), ("time 2026-01-01T00:00:01Z",))
    return key.sign_checkpoint(cp)


def bundle_of(log: Log, signed: str, with_inputs: bool = True) -> B.Bundle:
    size = log.tree.size
    node = log.tree.node
    idx, ds, ins = log.batches[2]
    hashes = [d.leaf_hash() for d in ds]
    items = [
        B.prove_item(
            ds[4],
            node,
            idx,
            size,
            batch_leaves=hashes,
            position=4,
            committed_at=T0 + 15,
            inputs=ins[4] if with_inputs else None,
        ),
        B.prove_item(log.events[0], node, 0, size),
        B.prove_item(log.events[1], node, 1, size),
    ]
    fb_idx, fb = log.feedback
    items.append(
        B.prove_item(
            fb[2],
            node,
            fb_idx,
            size,
            batch_leaves=[f.leaf_hash() for f in fb],
            position=2,
            committed_at=T0 + 9,
        )
    )
    ex_idx, ex = log.explanations
    items.append(
        B.prove_item(
            ex[0],
            node,
            ex_idx,
            size,
            batch_leaves=[ex[0].leaf_hash()],
            position=0,
            committed_at=T0 + 7,
        )
    )
    return B.Bundle(signed, tuple(items))


def decision_file(d: Path) -> Path:
    (f,) = d.glob("items/*-decision-*.json")
    return f
