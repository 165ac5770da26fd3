"""Write an evidence bundle: items, their proofs and a signed checkpoint, as files.

The layout is the one ``chronoml.verify`` reads (see its module docstring).
Everything here works on parts already gathered from the store: leaves
(:mod:`chronoml.domain.leaves`), the log's tree as a
:data:`~chronoml.domain.merkle.NodeSource` and a signed checkpoint note.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chronoml.domain import leaves, merkle, note
from chronoml.errors import InvalidInput
from chronoml.verify import BUNDLE_FORMAT, ITEM_FORMAT

ItemLeaf = (
    leaves.DecisionLeaf | leaves.LedgerEventLeaf | leaves.FeedbackLeaf | leaves.ExplanationLeaf
)


class BundleError(InvalidInput):
    """A bundle that cannot be written as asked (``field`` names the input)."""


@dataclass(frozen=True)
class BatchProof:
    """Where an item sits in its group commit's tree, and the path up to that tree's root."""

    index: int
    size: int
    committed_at: int
    path: tuple[bytes, ...]

    def to_dict(self) -> dict[str, Any]:
        """The ``batch`` object of ``proofs.json``."""
        return {
            "index": self.index,
            "size": self.size,
            "committed_at": self.committed_at,
            "path": [h.hex() for h in self.path],
        }


@dataclass(frozen=True)
class StoredInputs:
    """A decision's stored input bytes and salt, from which its commitment is recomputed."""

    num: bytes
    txt: str | None
    salt: bytes
    context: str | None = None  # when committed with the inputs

    def to_dict(self) -> dict[str, Any]:
        """The ``inputs`` object of an item file."""
        out: dict[str, Any] = {
            "num": base64.b64encode(self.num).decode("ascii"),
            "txt": self.txt,
            "salt": self.salt.hex(),
        }
        if self.context is not None:
            out["context"] = self.context
        return out


@dataclass(frozen=True)
class BundleItem:
    """One item with its proof up to the checkpoint's root."""

    leaf: ItemLeaf
    log_index: int
    log_path: tuple[bytes, ...]
    batch: BatchProof | None = None
    inputs: StoredInputs | None = None  # decisions whose inputs were not erased


@dataclass(frozen=True)
class Bundle:
    """A signed checkpoint and the items proven against it."""

    checkpoint: str  # the signed note, exactly as published
    items: tuple[BundleItem, ...]


def prove_item(
    leaf: ItemLeaf,
    log: merkle.NodeSource,
    log_index: int,
    log_size: int,
    *,
    batch_leaves: Sequence[bytes] | None = None,
    position: int | None = None,
    committed_at: int | None = None,
    inputs: StoredInputs | None = None,
    leaf_hash: bytes | None = None,
) -> BundleItem:
    """Make the proofs for ``leaf``: into its batch (decisions, feedback, explanations) and the log.

    ``log`` gives the log's complete-subtree hashes (``MerkleTree.node`` or a
    store's node table); ``batch_leaves`` are the leaf hashes of the item's
    group commit in order, with the item at ``position``. Checks that the
    item's entry really is the log's leaf at ``log_index``, so a bundle that
    would not verify is never written. ``leaf_hash``: the leaf's hash when the
    caller has computed it already.
    """
    kind = leaf.KIND
    batch: BatchProof | None = None
    entry = leaf.leaf_hash() if leaf_hash is None else leaf_hash
    if kind in leaves.BATCHED_KINDS:
        if batch_leaves is None or position is None or committed_at is None:
            raise BundleError(
                f"a {kind} needs its batch's leaves, position and time", "batch_leaves"
            )
        if not 0 <= position < len(batch_leaves) or batch_leaves[position] != entry:
            raise BundleError(f"the batch has no such {kind} at position {position}", "position")
        tree = merkle.MerkleTree(batch_leaves)
        batch = BatchProof(position, tree.size, committed_at, tuple(tree.inclusion_proof(position)))
        entry = leaves.BatchLeaf(kind, tree.size, tree.root(), committed_at).leaf_hash()
    if not 0 <= log_index < log_size or log(0, log_index) != entry:
        raise BundleError(f"log entry {log_index} is not this {kind}", "log_index")
    path = tuple(merkle.make_inclusion_proof(log, log_index, log_size))
    return BundleItem(leaf, log_index, path, batch, inputs)


def _file_name(n: int, item: BundleItem) -> str:
    leaf = item.leaf
    if isinstance(leaf, leaves.LedgerEventLeaf):
        ident = f"seq{leaf.seq}"
    elif isinstance(leaf, leaves.ExplanationLeaf):
        ident = leaf.decision_id
    else:
        ident = str(leaf.id)
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", ident)[:80]
    return f"items/{n:03d}-{leaf.KIND}-{safe}.json"


def _dump(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def write_bundle(out: str | os.PathLike[str], bundle: Bundle) -> list[Path]:
    """Write ``bundle`` into the new or empty directory ``out``; returns the files written."""
    try:
        cp = note.parse_checkpoint(note.parse_note(bundle.checkpoint).text)
    except note.NoteError as e:
        raise BundleError(
            f"the checkpoint is not a signed checkpoint note: {e.message}", "checkpoint"
        ) from None
    if not bundle.items:
        raise BundleError("a bundle holds at least one item", "items")
    base = Path(out)
    if base.exists() and (not base.is_dir() or any(base.iterdir())):
        raise BundleError(f"{out} exists and is not an empty directory", "out")
    (base / "items").mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def put(rel: str, data: bytes) -> None:
        target = base / rel
        target.write_bytes(data)
        written.append(target)

    entries: list[dict[str, Any]] = []
    for n, item in enumerate(bundle.items, start=1):
        rel = _file_name(n, item)
        body: dict[str, Any] = {
            "format": ITEM_FORMAT,
            "kind": item.leaf.KIND,
            "leaf": item.leaf.to_dict(),
        }
        if item.inputs is not None:
            body["inputs"] = item.inputs.to_dict()
        put(rel, _dump(body))
        entry: dict[str, Any] = {
            "file": rel,
            "log_index": item.log_index,
            "log_path": [h.hex() for h in item.log_path],
        }
        if item.batch is not None:
            entry["batch"] = item.batch.to_dict()
        entries.append(entry)
    put("proofs.json", _dump({"format": BUNDLE_FORMAT, "log_size": cp.size, "items": entries}))
    put("checkpoint.txt", bundle.checkpoint.encode("utf-8"))
    return written
