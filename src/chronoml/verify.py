"""Check an evidence bundle offline: ``python -m chronoml.verify DIR --key PUBKEY``.

No database, no MLflow, no network: this module needs only the standard
library, the ``cryptography`` package (for Ed25519) and three pure modules of
chronoml's domain (``merkle``, ``note``, ``leaves``), so an auditor can run it
anywhere. ``PUBKEY`` is the log's verifier key (``name+keyid+base64``, as
``chronoml audit key`` prints it) or a file holding one.

Bundle layout (format ``chronoml-evidence-bundle/1``)::

    DIR/
      checkpoint.txt      the log's signed checkpoint: a C2SP signed note whose text
                          is a tlog checkpoint (origin, tree size, base64 root hash,
                          extension lines)
      proofs.json         {"format": "chronoml-evidence-bundle/1",
                           "log_size": <the checkpoint's tree size>,
                           "items": [{"file": "items/<name>.json",
                                      "log_index": <leaf index in the log>,
                                      "log_path": [<hex hash>, ...],
                                      "batch": {"index", "size", "committed_at",
                                                "path": [<hex hash>, ...]}}, ...]}
                          ("batch" only for decisions, feedback and explanations)
      items/<name>.json   {"format": "chronoml-evidence-item/1", "kind": <kind>,
                           "leaf": <the item's stored columns, chronoml.domain.leaves>,
                           "inputs": {"num": <base64>, "txt": <str|null>,
                                      "salt": <hex>, "context": <str>?}}
                                                (decisions; absent once erased)

``kind`` is ``decision``, ``ledger_event``, ``feedback`` or ``explanation``.

What is checked, in order: the checkpoint's signature by the given key; that
``proofs.json`` covers every item file and nothing else; for each item, its
leaf hash recomputed from its fields, for a ledger event its chain hash
recomputed from its content, for a decision with inputs the input
commitment recomputed from the stored input bytes, then the audit path(s) up
to the checkpoint's root. Batched kinds take two paths: the item up to its
group commit's root (rebuilt, never read from the bundle), then that batch's
log leaf up to the checkpoint.

Exit status: 0 when everything verifies, 1 when something does not (the
report names the first bad item), 2 for a usage error (bad arguments, a key
that cannot be read).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from chronoml.domain import leaves, merkle, note
from chronoml.errors import InvalidInput

BUNDLE_FORMAT = "chronoml-evidence-bundle/1"
ITEM_FORMAT = "chronoml-evidence-item/1"
MAX_PATH = 64  # no log of 2**64 leaves: a longer audit path is refused unread
_ITEM_FILE = re.compile(r"items/[A-Za-z0-9._-]{1,200}\.json")


def ed25519_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Check one Ed25519 signature (the ``verify`` function the note module takes)."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True)
class ItemResult:
    """The outcome for one item of the bundle."""

    file: str
    kind: str
    id: str
    ok: bool
    reason: str | None = None
    log_index: int | None = None
    inputs: str = "n/a"  # "verified", "erased" (commitment only) or "n/a"

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly."""
        return {
            "file": self.file,
            "kind": self.kind,
            "id": self.id,
            "ok": self.ok,
            "reason": self.reason,
            "log_index": self.log_index,
            "inputs": self.inputs,
        }


@dataclass(frozen=True)
class Report:
    """What verifying a bundle found; ``first_bad`` names the first item (or file) that failed."""

    ok: bool
    path: str
    key: str
    checkpoint: note.Checkpoint | None = None
    items: tuple[ItemResult, ...] = ()
    first_bad: str | None = None
    reason: str | None = None
    problems: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly."""
        return {
            "ok": self.ok,
            "path": self.path,
            "key": self.key,
            "checkpoint": self.checkpoint.to_dict() if self.checkpoint else None,
            "items": [i.to_dict() for i in self.items],
            "first_bad": self.first_bad,
            "reason": self.reason,
            "problems": list(self.problems),
        }

    def text(self) -> str:
        """The readable report the command prints."""
        out = [f"evidence bundle {self.path}", f"  key         {self.key}"]
        cp = self.checkpoint
        if cp is not None:
            out.append(f"  checkpoint  {cp.origin}, {cp.size} entries, root {cp.root_hash.hex()}")
            out.extend(f"              {ext}" for ext in cp.extensions)
        for it in self.items:
            mark = "ok  " if it.ok else "FAIL"
            where = f" at log index {it.log_index}" if it.log_index is not None else ""
            inputs = f", inputs {it.inputs}" if it.inputs != "n/a" else ""
            line = f"  {mark} {it.kind} {it.id}{where}{inputs} ({it.file})"
            out.append(line + (f": {it.reason}" if it.reason else ""))
        out.extend(f"  FAIL {p}" for p in self.problems)
        if self.ok:
            out.append(f"ok: {len(self.items)} items verified against the signed checkpoint")
        else:
            out.append(f"FAILED: {self.first_bad}: {self.reason}")
        return "\n".join(out)


class UsageError(InvalidInput):
    """A bad argument to the verifier (exit status 2)."""


def read_key(arg: str) -> note.VerifierKey:
    """A verifier key from a vkey string or from a file containing one."""
    text = arg
    if os.path.isfile(arg):
        try:
            text = Path(arg).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"cannot read key file {arg}: {e}", "key") from None
    try:
        return note.parse_vkey(text)
    except note.NoteError as e:
        raise UsageError(f"not a verifier key: {e.message}", "key") from None


def _hashes(value: Any, what: str) -> list[bytes]:
    if not isinstance(value, list) or len(value) > MAX_PATH:
        raise ValueError(f"{what} is not a list of at most {MAX_PATH} hashes")
    try:
        out = [bytes.fromhex(h) for h in value]
    except (TypeError, ValueError):
        raise ValueError(f"{what} holds something that is not a hex hash") from None
    if any(len(h) != merkle.HASH_SIZE or h.hex() != v for h, v in zip(out, value, strict=True)):
        raise ValueError(f"{what} holds a hash that is not 64 lowercase hex digits")
    return out


def _int(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{what} is not a non-negative integer")
    return value


def _item_id(leaf: leaves.LeafType) -> str:
    if isinstance(leaf, leaves.LedgerEventLeaf):
        return f"seq {leaf.seq}"
    if isinstance(leaf, leaves.ExplanationLeaf):
        return leaf.decision_id
    return str(getattr(leaf, "id", "?"))


def _check_inputs(leaf: leaves.DecisionLeaf, inputs: Any) -> str:
    """``verified`` or ``erased``; raises ValueError when the stored inputs do not match."""
    if inputs is None:
        return "erased"
    if not isinstance(inputs, dict):
        raise ValueError("inputs is not an object")
    try:
        b64 = inputs.get("num", "")
        num = base64.b64decode(b64, validate=True)
        salt_hex = inputs.get("salt", "")
        salt = bytes.fromhex(salt_hex)
    except (TypeError, ValueError, binascii.Error):
        raise ValueError("inputs.num is not base64 or inputs.salt is not hex") from None
    if base64.b64encode(num).decode("ascii") != b64 or salt.hex() != salt_hex:
        # two spellings of the same bytes would let the file change while the check passes
        raise ValueError("inputs.num is not canonical base64 or inputs.salt not lowercase hex")
    txt = inputs.get("txt")
    if txt is not None and not isinstance(txt, str):
        raise ValueError("inputs.txt is not text")
    context = inputs.get("context")
    if context is not None and not isinstance(context, str):
        raise ValueError("inputs.context is not text")
    if leaves.inputs_commitment(leaf.layout, num, txt, salt, context) != leaf.inputs_commitment:
        raise ValueError("the inputs do not match the decision's input commitment")
    return "verified"


def _verify_item(root: bytes, size: int, entry: Any, item: Any, file: str) -> ItemResult:
    kind, ident, index, inputs = "?", "?", None, "n/a"
    try:
        if not isinstance(item, dict) or item.get("format") != ITEM_FORMAT:
            raise ValueError(f"not a {ITEM_FORMAT} file")
        unknown = sorted(set(item) - {"format", "kind", "leaf", "inputs"})
        if unknown:
            # a field the checks skip could mislead a reader (a renamed "inputs" looks erased)
            raise ValueError(f"unknown field {unknown[0]!r}")
        kind = str(item.get("kind"))
        leaf = leaves.item_from_dict(kind, item.get("leaf") or {})
        ident = _item_id(leaf)
        index = _int(entry.get("log_index"), "log_index")
        if isinstance(leaf, leaves.LedgerEventLeaf) and (why := leaf.problem()):
            raise ValueError(why)
        if isinstance(leaf, leaves.DecisionLeaf):
            inputs = _check_inputs(leaf, item.get("inputs"))
        log_leaf = leaf.leaf_hash()
        if kind in leaves.BATCHED_KINDS:
            b = entry.get("batch")
            if not isinstance(b, dict):
                raise ValueError(f"a {kind} needs the proof into its batch")
            bsize = _int(b.get("size"), "batch.size")
            got = merkle.root_from_inclusion_proof(
                _int(b.get("index"), "batch.index"),
                bsize,
                log_leaf,
                _hashes(b.get("path"), "batch.path"),
            )
            if got is None:
                raise ValueError("the proof into its batch does not fit the batch's size")
            batch = leaves.BatchLeaf(
                kind, bsize, got, _int(b.get("committed_at"), "batch.committed_at")
            )
            log_leaf = batch.leaf_hash()
        path = _hashes(entry.get("log_path"), "log_path")
        if not merkle.verify_inclusion(index, size, log_leaf, path, root):
            raise ValueError("its content or its proof does not lead to the checkpoint's root")
    except (ValueError, TypeError, AttributeError) as e:
        reason = e.message if isinstance(e, leaves.LeafError) else str(e)
        return ItemResult(file, kind, ident, False, reason, index, inputs)
    return ItemResult(file, kind, ident, True, None, index, inputs)


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"cannot read {path.name}: {e}") from None


def verify_bundle(path: str | os.PathLike[str], key: str | note.VerifierKey) -> Report:
    """Verify the bundle in directory ``path`` against the log's verifier ``key``."""
    vk = note.parse_vkey(key) if isinstance(key, str) else key
    base = Path(path)
    shown = str(path)

    def fail(where: str, why: str, cp: note.Checkpoint | None = None) -> Report:
        return Report(False, shown, vk.vkey(), cp, first_bad=where, reason=why)

    try:
        signed = (base / "checkpoint.txt").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        return fail("checkpoint.txt", f"cannot read it: {e}")
    try:
        cp = note.open_checkpoint(signed, vk, ed25519_verify)
    except note.NoteError as e:
        return fail("checkpoint.txt", e.message)
    try:
        proofs = _load_json(base / "proofs.json")
        if not isinstance(proofs, dict) or proofs.get("format") != BUNDLE_FORMAT:
            raise ValueError(f"proofs.json is not a {BUNDLE_FORMAT} file")
        if proofs.get("log_size") != cp.size:
            raise ValueError(
                f"proofs.json is for a log of {proofs.get('log_size')} entries, "
                f"the checkpoint is for {cp.size}"
            )
        entries = proofs.get("items")
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise ValueError("proofs.json has no list of items")
    except ValueError as e:
        return fail("proofs.json", str(e), cp)

    results: list[ItemResult] = []
    problems: list[str] = []
    listed: set[str] = set()
    for entry in entries:
        file = entry.get("file")
        if not isinstance(file, str) or not _ITEM_FILE.fullmatch(file) or file in listed:
            problems.append(f"proofs.json: item file {file!r} is not a new items/<name>.json")
            continue
        listed.add(file)
        try:
            item = _load_json(base / file)
        except ValueError as e:
            results.append(ItemResult(file, "?", "?", False, str(e)))
            continue
        results.append(_verify_item(cp.root_hash, cp.size, entry, item, file))
    present = (
        {f"items/{p.name}" for p in (base / "items").glob("*")}
        if (base / "items").is_dir()
        else set()
    )
    # an item without a proof would sit in the bundle looking as good as the proven ones
    problems.extend(f"{f}: has no proof in proofs.json" for f in sorted(present - listed))
    if not results and not problems:
        problems.append("the bundle holds no items")

    bad = next((r for r in results if not r.ok), None)
    first: str | None
    reason: str | None
    if bad is not None:
        first, reason = f"{bad.kind} {bad.id} ({bad.file})", bad.reason
    elif problems:
        first, _, reason = problems[0].partition(": ")
    else:
        first = reason = None
    ok = first is None
    return Report(ok, shown, vk.vkey(), cp, tuple(results), first, reason, tuple(problems))


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m chronoml.verify",
        description="Verify a chronoml evidence bundle offline against the log's public key.",
    )
    parser.add_argument("dir", metavar="DIR", help="the bundle directory")
    parser.add_argument(
        "--key", required=True, metavar="PUBKEY", help="the log's verifier key, or a file with it"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse has printed the usage
        return 0 if e.code == 0 else 2
    try:
        key = read_key(args.key)
        if not os.path.isdir(args.dir):
            raise UsageError(f"{args.dir} is not a directory", "dir")
    except UsageError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return 2
    report = verify_bundle(args.dir, key)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.text())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
