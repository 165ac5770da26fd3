"""Evidence bundles: written from a log, verified offline, and every kind of tampering caught."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from evidence_support import ORIGIN, T0, Log, bundle_of, checkpoint_for, decision_file

from chronoml import verify
from chronoml.domain import leaves as L
from chronoml.evidence import bundle as B
from chronoml.evidence import keys


def test_a_bundle_verifies_offline(bundle_dir: Path, key: keys.SigningKey, log: Log) -> None:
    report = verify.verify_bundle(bundle_dir, key.vkey())
    assert report.ok, report.text()
    assert report.checkpoint is not None and report.checkpoint.size == log.tree.size
    kinds = sorted(i.kind for i in report.items)
    assert kinds == ["decision", "explanation", "feedback", "ledger_event", "ledger_event"]
    dec = next(i for i in report.items if i.kind == "decision")
    assert dec.id == "0190-dec-0010" and dec.inputs == "verified"
    assert "ok: 5 items verified" in report.text()
    assert json.loads(json.dumps(report.to_dict()))["ok"] is True


def test_every_single_byte_change_of_the_decision_is_caught(
    bundle_dir: Path, key: keys.SigningKey
) -> None:
    path = decision_file(bundle_dir)
    original = path.read_bytes()
    for at in range(len(original)):
        edited = bytearray(original)
        edited[at] ^= 0x01
        path.write_bytes(bytes(edited))
        report = verify.verify_bundle(bundle_dir, key.vkey())
        assert not report.ok, f"byte {at} ({chr(original[at])!r}) changed unnoticed"
        assert report.first_bad is not None and path.name in report.first_bad
    path.write_bytes(original)
    assert verify.verify_bundle(bundle_dir, key.vkey()).ok


@pytest.mark.parametrize("field_name", [name for name, _, _ in L.DecisionLeaf.SPEC])
def test_each_decision_field_is_covered(
    bundle_dir: Path, key: keys.SigningKey, field_name: str
) -> None:
    path = decision_file(bundle_dir)
    item = json.loads(path.read_text())
    value = item["leaf"][field_name]
    changed: dict[type, Callable[[Any], Any]] = {
        str: lambda v: v + "x" if v is not None else "x",
        bool: lambda v: not v,
        int: lambda v: v + 1,
        float: lambda v: v + 0.5,
        type(None): lambda v: "someone",
    }
    item["leaf"][field_name] = (
        (("0" * 63 + "1") if value != "0" * 63 + "1" else "0" * 64)
        if field_name in ("inputs_commitment", "scores_digest")
        else changed[type(value)](value)
    )
    path.write_text(json.dumps(item))
    report = verify.verify_bundle(bundle_dir, key.vkey())
    assert not report.ok
    assert report.first_bad == f"decision 0190-dec-0010 ({path.relative_to(bundle_dir)})" or (
        field_name == "id" and "0190-dec-0010x" in (report.first_bad or "")
    )


def test_erased_inputs_keep_the_proof(tmp_path: Path, key: keys.SigningKey, log: Log) -> None:
    out = tmp_path / "erased"
    B.write_bundle(out, bundle_of(log, checkpoint_for(log, key), with_inputs=False))
    report = verify.verify_bundle(out, key.vkey())
    assert report.ok, report.text()
    assert next(i for i in report.items if i.kind == "decision").inputs == "erased"
    assert "inputs erased" in report.text()


def test_a_bad_signature_fails(bundle_dir: Path, key: keys.SigningKey) -> None:
    cp = bundle_dir / "checkpoint.txt"
    text = cp.read_text()
    body, sig_line = text.split("\n\n")
    dash, name, blob = sig_line.split(" ")
    flipped = blob[:10] + ("A" if blob[10] != "A" else "B") + blob[11:]
    cp.write_text(f"{body}\n\n{dash} {name} {flipped}")
    report = verify.verify_bundle(bundle_dir, key.vkey())
    assert not report.ok and report.first_bad == "checkpoint.txt"
    assert "does not verify" in (report.reason or "")


def test_an_edited_checkpoint_fails(bundle_dir: Path, key: keys.SigningKey) -> None:
    cp = bundle_dir / "checkpoint.txt"
    lines = cp.read_text().split("\n")
    lines[1] = str(int(lines[1]) + 1)
    cp.write_text("\n".join(lines))
    report = verify.verify_bundle(bundle_dir, key.vkey())
    assert not report.ok and report.first_bad == "checkpoint.txt"


def test_a_checkpoint_from_another_key_fails(
    bundle_dir: Path, key: keys.SigningKey, log: Log
) -> None:
    other = keys.generate(ORIGIN)  # same name, other bytes
    (bundle_dir / "checkpoint.txt").write_text(checkpoint_for(log, other))
    report = verify.verify_bundle(bundle_dir, key.vkey())
    assert not report.ok and report.first_bad == "checkpoint.txt"
    assert "no signature" in (report.reason or "")
    # and the other key accepts it, so it really was only the key that was wrong
    assert verify.verify_bundle(bundle_dir, other.vkey()).ok


def test_proof_tampering_names_the_item(bundle_dir: Path, key: keys.SigningKey) -> None:
    proofs_path = bundle_dir / "proofs.json"
    original = proofs_path.read_text()
    proofs = json.loads(original)
    cases: dict[str, Callable[[dict[str, Any]], object]] = {
        "flipped log path": lambda p: p["items"][1]["log_path"].__setitem__(0, "00" * 32),
        "wrong log index": lambda p: p["items"][1].__setitem__("log_index", 1),
        "truncated path": lambda p: p["items"][1]["log_path"].pop(),
        "reordered path": lambda p: p["items"][1]["log_path"].reverse(),
        "wrong batch index": lambda p: p["items"][0]["batch"].__setitem__("index", 3),
        "wrong batch size": lambda p: p["items"][0]["batch"].__setitem__("size", 10),
        "wrong batch time": lambda p: p["items"][0]["batch"].__setitem__("committed_at", 1),
        "paths swapped": lambda p: (
            p["items"][1].__setitem__("log_path", proofs["items"][2]["log_path"]),
        ),
        "uppercase hex": lambda p: p["items"][1]["log_path"].__setitem__(
            0, proofs["items"][1]["log_path"][0].upper()
        ),
    }
    for what, change in cases.items():
        p = json.loads(original)
        change(p)
        proofs_path.write_text(json.dumps(p))
        report = verify.verify_bundle(bundle_dir, key.vkey())
        assert not report.ok, what
        target = p["items"][0 if "batch" in what else 1]["file"]
        assert report.first_bad is not None and target in report.first_bad, what
    p = json.loads(original)
    p["log_size"] += 1
    proofs_path.write_text(json.dumps(p))
    assert verify.verify_bundle(bundle_dir, key.vkey()).first_bad == "proofs.json"


def test_unproven_or_missing_items_fail(bundle_dir: Path, key: keys.SigningKey) -> None:
    extra = bundle_dir / "items" / "999-decision-extra.json"
    extra.write_text(decision_file(bundle_dir).read_text())
    report = verify.verify_bundle(bundle_dir, key.vkey())
    assert not report.ok and report.first_bad == "items/999-decision-extra.json"
    extra.unlink()
    decision_file(bundle_dir).unlink()
    report = verify.verify_bundle(bundle_dir, key.vkey())
    assert not report.ok and "cannot read" in (report.reason or "")


def test_ledger_event_edits_fail(bundle_dir: Path, key: keys.SigningKey) -> None:
    (path, *_) = sorted(bundle_dir.glob("items/*-ledger_event-*.json"))
    original = json.loads(path.read_text())
    # the insider's re-seal: a different actor with the event's hash recomputed to match
    resealed = json.loads(json.dumps(original))
    resealed["leaf"]["content"]["actor"] = "mallory"
    resealed["leaf"]["hash"] = hashlib.sha256(
        L.canonical_json(resealed["leaf"]["content"])
    ).hexdigest()
    flipped = json.loads(json.dumps(original))
    flipped["leaf"]["sets_state"] = False
    unsealed = json.loads(json.dumps(original))
    unsealed["leaf"]["content"]["state"][0]["weight"] = 5_000
    for edited, reason in [
        (resealed, "does not lead to the checkpoint's root"),
        (flipped, "does not lead to the checkpoint's root"),
        (unsealed, "hash does not match its content"),
    ]:
        path.write_text(json.dumps(edited))
        report = verify.verify_bundle(bundle_dir, key.vkey())
        assert (
            not report.ok
            and report.first_bad == f"ledger_event seq 1 ({path.relative_to(bundle_dir)})"
        )
        assert reason in (report.reason or "")


def test_writing_refuses_a_bundle_that_would_not_verify(
    tmp_path: Path, key: keys.SigningKey, log: Log
) -> None:
    idx, ds, _ = log.batches[0]
    hashes = [d.leaf_hash() for d in ds]
    with pytest.raises(B.BundleError) as e:
        B.prove_item(
            ds[1],
            log.tree.node,
            idx + 1,
            log.tree.size,
            batch_leaves=hashes,
            position=1,
            committed_at=T0 + 5,
        )
    assert e.value.field == "log_index"
    with pytest.raises(B.BundleError) as e:
        B.prove_item(
            replace(ds[1], output="0.9"),
            log.tree.node,
            idx,
            log.tree.size,
            batch_leaves=hashes,
            position=1,
            committed_at=T0 + 5,
        )
    assert e.value.field == "position"
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(B.BundleError) as e:
        B.write_bundle(tmp_path / "full", bundle_of(log, checkpoint_for(log, key)))
    assert e.value.field == "out"
