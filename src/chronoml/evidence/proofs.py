"""Inclusion proofs of stored items and the evidence bundle of one decision.

A proof is made against a signed checkpoint: the newest one the store issued
that covers the item, or a fresh one when none does. Its log path comes from
the stored subtree nodes (one indexed read of at most about 2 log2 n rows) and
its batch path from the batch's stored leaf hashes, so nothing is rehashed but
the one batch; the item's leaf is recomputed from its row and checked against
what was committed before anything is handed out.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from chronoml.context import Context
from chronoml.domain import leaves as LV
from chronoml.domain import merkle, note
from chronoml.endpoints import decision as decision_lineage
from chronoml.errors import NotFound, StoreError
from chronoml.evidence import bundle as B
from chronoml.evidence import checkpoints as EC
from chronoml.evidence.keys import SigningKey
from chronoml.store import checkpoints as SC
from chronoml.store import decisions as D
from chronoml.store import evidence as SE
from chronoml.store import explanations as SX
from chronoml.store import ledger as SL
from chronoml.store import privacy as SP
from chronoml.store import proof_reads as PR
from chronoml.store.database import Tx


@lru_cache(maxsize=8)
def _parsed(signed: str) -> note.Checkpoint:
    """The checkpoint of a signed note (proofs reuse the newest one until the next)."""
    return note.parse_checkpoint(note.parse_note(signed).text)


def _checkpoint_covering(cm: Context, key: SigningKey, index: int) -> tuple[str, note.Checkpoint]:
    with cm.store.read() as conn:
        latest = SC.latest_checkpoint(conn)
    if latest is not None and latest[1] > index:
        text = latest[4]
        return text, _parsed(text)
    issued = EC.issue(cm.store, key)
    return issued.note, issued.checkpoint


def _nodes(conn: Tx, index: int, size: int) -> Callable[[int, int], bytes]:
    # the entry itself too: prove_item checks it is the leaf at that index
    return _node_source(SE.nodes_in(conn, [(0, index), *merkle.inclusion_proof_nodes(index, size)]))


def _node_source(got: dict[tuple[int, int], bytes]) -> Callable[[int, int], bytes]:
    def node(level: int, idx: int) -> bytes:
        h = got.get((level, idx))
        if h is None:
            raise StoreError(f"the evidence log has no node ({level}, {idx}): run audit verify")
        return h

    return node


def _prove(
    conn: Tx,
    leaf: B.ItemLeaf,
    kind: str,
    ref: str,
    size: int,
    inputs: B.StoredInputs | None = None,
    item: tuple[Any, ...] | None = None,
) -> B.BundleItem:
    """Prove one item (batched or a ledger event) against the log of ``size`` entries.

    ``item``: the item's evidence row when the caller has read it already.
    """
    if kind == "ledger_event":
        assert isinstance(leaf, LV.LedgerEventLeaf)
        idx = SE.event_entry_index(conn, leaf.seq)
        if idx is None:
            raise StoreError(f"ledger event #{leaf.seq} is not in the evidence log")
        return B.prove_item(leaf, _nodes(conn, idx, size), idx, size)
    if item is None:
        item = SE.item_in(conn, kind, ref)
    if item is None:
        raise NotFound(f"{kind} {ref} is not in the evidence log")
    log_index, position, stored = int(item[2]), int(item[3]), bytes(item[4])
    computed = leaf.leaf_hash()
    if computed != stored:
        raise StoreError(f"{kind} {ref} no longer matches its committed leaf: run audit verify")
    # the batch, its entry and the log's nodes on the path (the entry's own too:
    # prove_item checks it is the leaf at that index) in one read
    wanted = [(0, log_index), *merkle.inclusion_proof_nodes(log_index, size)]
    got = PR.batch_and_path(conn, log_index, wanted)
    if got.committed_at is None:
        raise StoreError(f"the evidence log has no entry {log_index}: run audit verify")
    try:
        return B.prove_item(
            leaf,
            _node_source(got.nodes),
            log_index,
            size,
            batch_leaves=got.leaves,
            position=position,
            committed_at=got.committed_at,
            inputs=inputs,
            leaf_hash=computed,
        )
    except B.BundleError as exc:
        raise StoreError(f"cannot prove {kind} {ref}: {exc.message}: run audit verify") from None


def _decision_item(
    conn: Tx,
    decision_id: str,
    size: int,
    item: tuple[Any, ...] | None = None,
    row: D.DecisionRow | None = None,
) -> B.BundleItem:
    if row is None:
        row = D.get_in(conn, decision_id)
    if item is None:
        item = SE.item_in(conn, "decision", decision_id)
    if row is None:
        raise NotFound(f"unknown decision {decision_id!r}")
    if item is None:
        raise NotFound(f"decision {decision_id} is not in the evidence log")
    salt, commitment = item[5], item[6]
    r = tuple(getattr(row, c) for c in D.COLUMNS)
    salt = bytes(salt) if salt is not None else None
    lr = SP.leaf_row(r, salt, bytes(commitment))
    leaf = SE.decision_leaf(lr, bytes(commitment))
    inputs = None
    if salt is not None:
        # a context committed with the inputs travels with them
        context = row.context if len(lr) < len(r) else None
        inputs = B.StoredInputs(bytes(row.num), row.txt, salt, context)
    return _prove(conn, leaf, "decision", decision_id, size, inputs, item)


def _covering(cm: Context, key: SigningKey, decision_id: str) -> tuple[str, note.Checkpoint]:
    with cm.store.read() as conn:
        item = SE.item_in(conn, "decision", decision_id)
        known = D.get_in(conn, decision_id) is not None
    if not known:
        raise NotFound(f"unknown decision {decision_id!r}")
    if item is None:
        raise NotFound(f"decision {decision_id} is not in the evidence log")
    return _checkpoint_covering(cm, key, int(item[2]))


def decision_proof(cm: Context, key: SigningKey, decision_id: str) -> dict[str, Any]:
    """The decision's leaf, its two audit paths and the signed checkpoint they lead to."""
    it: B.BundleItem | None = None
    # the common case in two statements: a stored checkpoint already covers the decision.
    # Every row read is immutable once written (an erasure leaves the leaf provable), so
    # they need no shared snapshot: on PostgreSQL no BEGIN and no ROLLBACK either
    with cm.store.lookup() as conn:
        got = PR.decision_evidence(conn, decision_id)
        item, latest = got.item, got.checkpoint
        if item is not None and latest is not None and latest[1] > int(item[2]):
            signed = latest[2]
            cp = _parsed(signed)
            it = _decision_item(conn, decision_id, cp.size, item, got.row)
    if it is None:
        signed, cp = _covering(cm, key, decision_id)
        with cm.store.read() as conn:
            it = _decision_item(conn, decision_id, cp.size)
    assert it.batch is not None
    return {
        "decision_id": decision_id,
        "kind": "decision",
        "leaf": it.leaf.to_dict(),
        "leaf_hash": it.leaf.leaf_hash().hex(),
        "batch": it.batch.to_dict(),
        "log_index": it.log_index,
        "log_size": cp.size,
        "log_path": [h.hex() for h in it.log_path],
        "checkpoint": signed,
        "key": key.vkey(),
    }


def export(cm: Context, key: SigningKey, decision_id: str, out: Path) -> list[Path]:
    """Write the evidence bundle of one decision into the new folder ``out``.

    Items: the decision (with its stored inputs unless erased), the ledger
    events that routed it and made its version live (their state carries the
    artifact digest and the training snapshot id), its explanation and its
    labels; each with its proof up to one signed checkpoint. ``lineage.json``
    is the decision as ``chronoml decision ID --json`` shows it, for reading.
    """
    lineage = decision_lineage(cm, decision_id).as_dict()
    _covering(cm, key, decision_id)  # a known decision, committed
    # a fresh checkpoint: it covers the decision's labels and explanation recorded since
    issued = EC.issue(cm.store, key)
    signed, cp = issued.note, issued.checkpoint
    items: list[B.BundleItem] = []
    with cm.store.read() as conn:
        items.append(_decision_item(conn, decision_id, cp.size))
        row = D.get_in(conn, decision_id)
        assert row is not None
        seqs = {row.event_seq}
        ev = SL.get_event(conn, row.event_seq)
        if ev is not None and ev.state is not None:
            v = next((v for v in ev.state if v.name == row.variant), None)
            if v is not None and v.since:
                seqs.add(v.since)
        flags = dict(SE.sets_state_in(conn, sorted(seqs)))
        for seq in sorted(seqs):
            e = SL.get_event(conn, seq)
            if e is None or seq not in flags:
                raise StoreError(f"ledger event #{seq} is missing: run audit verify")
            leaf = SE.event_leaf(e, flags[seq])
            why = leaf.problem()
            if why is not None:
                raise StoreError(f"ledger event #{seq}: {why}: run audit verify")
            items.append(_prove(conn, leaf, "ledger_event", str(seq), cp.size))
        x = SX.get_row_in(conn, decision_id)
        if x is not None:
            xleaf = SE.explanation_leaf(x)
            items.append(_prove(conn, xleaf, "explanation", decision_id, cp.size))
        for fr in SE.feedback_rows_in(conn, decision_id):
            fleaf = SE.feedback_leaf(fr)
            items.append(_prove(conn, fleaf, "feedback", str(fr["id"]), cp.size))
    written = B.write_bundle(out, B.Bundle(signed, tuple(items)))
    target = Path(out) / "lineage.json"
    target.write_text(json.dumps(lineage, indent=2, sort_keys=True, default=str) + "\n")
    return [*written, target]
