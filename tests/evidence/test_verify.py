"""Evidence bundles: written from a log, verified offline, and every kind of tampering caught."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from chronoml import verify
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


@pytest.fixture(scope="module")
def key() -> keys.SigningKey:
    return keys.generate(ORIGIN)


@pytest.fixture(scope="module")
def log() -> Log:
    return build_log()


@pytest.fixture
def bundle_dir(tmp_path: Path, key: keys.SigningKey, log: Log) -> Path:
    out = tmp_path / "bundle"
    B.write_bundle(out, bundle_of(log, checkpoint_for(log, key)))
    return out


def decision_file(d: Path) -> Path:
    (f,) = d.glob("items/*-decision-*.json")
    return f


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
        if field_name == "inputs_commitment"
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


# --- the command ---------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(verify.__file__).parents[1])}
    return subprocess.run(
        [sys.executable, "-m", "chronoml.verify", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_cli_exit_statuses(bundle_dir: Path, key: keys.SigningKey, tmp_path: Path) -> None:
    ok = run_cli(str(bundle_dir), "--key", key.vkey())
    assert ok.returncode == 0, ok.stderr
    assert "ok: 5 items verified" in ok.stdout
    key_file = tmp_path / "log.vkey"
    key_file.write_text(key.vkey() + "\n")
    assert run_cli(str(bundle_dir), "--key", str(key_file)).returncode == 0
    as_json = run_cli(str(bundle_dir), "--key", key.vkey(), "--json")
    assert json.loads(as_json.stdout)["ok"] is True

    path = decision_file(bundle_dir)
    path.write_text(path.read_text().replace('"churn"', '"churm"', 1))
    bad = run_cli(str(bundle_dir), "--key", key.vkey())
    assert bad.returncode == 1
    assert "FAILED: decision 0190-dec-0010" in bad.stdout

    assert run_cli(str(bundle_dir)).returncode == 2  # no --key
    assert run_cli(str(bundle_dir), "--key", "not-a-key").returncode == 2
    missing = run_cli(str(tmp_path / "nowhere"), "--key", key.vkey())
    assert missing.returncode == 2 and "not a directory" in missing.stderr


ISOLATION = r"""
import importlib.abc, json, sys
BEFORE = set(sys.modules)  # what the interpreter itself started with (site hooks, __main__)
ALLOWED = set(sys.argv[3].split(","))
# cryptography's Rust extension registers its OpenSSL bindings as a top-level "_openssl"
THIRD_PARTY = {"chronoml", "cryptography", "_openssl", "_cffi_backend", "cffi"}

class Block(importlib.abc.MetaPathFinder):
    # refuses, at import time, anything verify is not allowed to need
    def find_spec(self, fullname, path=None, target=None):
        top = fullname.split(".")[0]
        if (top == "chronoml" and fullname not in ALLOWED) or (
            top not in sys.stdlib_module_names and top not in THIRD_PARTY
        ):
            raise ImportError(f"verify must not import {fullname}")
        return None

sys.meta_path.insert(0, Block())
from chronoml import verify
status = verify.main([sys.argv[1], "--key", sys.argv[2]])
print(json.dumps({
    "status": status,
    "chronoml": sorted(m for m in sys.modules if m.split(".")[0] == "chronoml"),
    "third": sorted({m.split(".")[0] for m in set(sys.modules) - BEFORE} - set(sys.stdlib_module_names)),
    "sqlite3": "sqlite3" in sys.modules,
}))
"""


def test_verify_imports_only_the_standard_library_cryptography_and_pure_domain(
    bundle_dir: Path, key: keys.SigningKey
) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(verify.__file__).parents[1])}
    # what the package itself loads on any import is allowed; verify may add only these
    base = (
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys, chronoml; print(','.join(m for m in sys.modules if m.startswith('chronoml')))",
            ],
            capture_output=True,
            text=True,
            env=env,
            check=True,
            timeout=60,
        )
        .stdout.strip()
        .split(",")
    )
    allowed = {
        *base,
        "chronoml.verify",
        "chronoml.domain",
        "chronoml.domain.merkle",
        "chronoml.domain.note",
        "chronoml.domain.leaves",
    }
    out = subprocess.run(
        [sys.executable, "-c", ISOLATION, str(bundle_dir), key.vkey(), ",".join(sorted(allowed))],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().split("\n")[-1])
    assert got["status"] == 0
    assert set(got["chronoml"]) <= allowed
    assert {"chronoml.verify", "chronoml.domain.merkle", "chronoml.domain.note"} <= set(
        got["chronoml"]
    )
    assert set(got["third"]) <= {"chronoml", "cryptography", "_openssl", "_cffi_backend", "cffi"}
    assert not got["sqlite3"]  # no database


def test_the_import_guard_can_fail(bundle_dir: Path, key: keys.SigningKey) -> None:
    # the same guard, with the pure modules not allowed, must refuse to run verify
    env = {**os.environ, "PYTHONPATH": str(Path(verify.__file__).parents[1])}
    out = subprocess.run(
        [sys.executable, "-c", ISOLATION, str(bundle_dir), key.vkey(), "chronoml,chronoml.verify"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert out.returncode != 0 and "verify must not import chronoml." in out.stderr
