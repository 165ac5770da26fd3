"""Stored checkpoints against an insider: one edited or forged with plain SQL is named by
``audit verify``, which checks each stored note's signature with the store's key."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from evidence_fill import Filled, drop_guards, fill, rebuild_evidence, reseal_from, sql

from chronoml.cli import cli
from chronoml.domain import note
from chronoml.evidence import audit as EA
from chronoml.evidence import checkpoints as EC
from chronoml.evidence import keys
from chronoml.store import Store
from chronoml.store import checkpoints as SC
from chronoml.store import evidence as SE
from chronoml.timeutil import iso


@pytest.fixture
def filled(store: Store, tmp_path: Path) -> Filled:
    return fill(store, tmp_path)


def audit_verify(store_url: str, tmp_path: Path, *args: str) -> Result:
    base = ["--home", str(tmp_path / "home"), "--signing-key", str(tmp_path / "signing.key")]
    if not store_url.startswith("sqlite"):
        base += ["--store", store_url]
    return CliRunner().invoke(cli, [*base, "audit", "verify", *args], catch_exceptions=False)


def test_untouched_stored_checkpoints_verify_with_the_stores_key(
    store: Store, filled: Filled, store_url: str, tmp_path: Path
) -> None:
    EC.issue(store, filled.key)
    report = EA.verify(store, keys=[filled.key.verifier()])
    assert report.ok, report.problems
    assert [c.signed for c in report.checkpoints] == [True, True]
    r = audit_verify(store_url, tmp_path)
    assert r.exit_code == 0, r.output
    assert "2 stored checkpoints carry valid signatures" in r.output


def test_an_edited_stored_checkpoint_fails_and_is_named(
    store: Store, filled: Filled, store_url: str, tmp_path: Path
) -> None:
    EC.issue(store, filled.key)
    drop_guards(store)
    with store.read() as conn:
        _, _, _, at, text = SC.checkpoints_in(conn)[0]
    # move checkpoint #1 an hour back, columns and note alike; the signature stays
    moved = at - 3_600_000_000
    edited = text.replace(f"time {iso(at)}", f"time {iso(moved)}")
    assert edited != text
    sql(store, "UPDATE checkpoints SET note = :n, created_at = :t WHERE id = 1",
        {"n": edited, "t": moved})  # fmt: skip
    r = audit_verify(store_url, tmp_path)
    assert r.exit_code == 1, r.output
    assert "FAILED at stored checkpoint #1: it is not signed by the key" in r.output
    assert f"the signature by {filled.key.name!r} does not verify" in r.output
    report = EA.verify(store, keys=[filled.key.verifier()])
    assert [c.signed for c in report.checkpoints] == [False, True]


def test_a_rewrite_with_a_checkpoint_forged_under_the_logs_name_is_named(
    store: Store, filled: Filled, store_url: str, tmp_path: Path
) -> None:
    """The insider re-seals the chain, rebuilds the log, and signs a checkpoint of the
    rewrite with a key of their own that carries the log's key name."""
    drop_guards(store)
    reseal_from(store, 1, actor="mallory")
    rebuild_evidence(store)
    mallory = keys.generate(filled.key.name)
    with store.read() as conn:
        head = SE.head_in(conn)
    at = filled.events[-1].recorded_at + 10
    cp = note.Checkpoint(head.origin, head.size, head.root, (f"time {iso(at)}",))
    sql(store, "INSERT INTO checkpoints (id, size, root, created_at, note) "
        "VALUES (1, :s, :r, :t, :n)",
        {"s": head.size, "r": head.root, "t": at, "n": mallory.sign_checkpoint(cp)})  # fmt: skip
    assert EA.verify(store, decisions=True).ok  # without a key the rewrite looks whole
    r = audit_verify(store_url, tmp_path, "--decisions")
    assert r.exit_code == 1, r.output
    assert "FAILED at stored checkpoint #1" in r.output
    assert f"the note carries no signature by {filled.key.name}" in r.output
    # the auditor's own copy of the key says the same, even with the key file swapped
    (tmp_path / "signing.key").unlink()
    keys.create_key_file(tmp_path / "signing.key", filled.key.name)
    r = audit_verify(store_url, tmp_path, "--key", filled.key.vkey())
    assert r.exit_code == 1 and "FAILED at stored checkpoint #1" in r.output


def test_without_any_key_the_report_says_signatures_were_not_checked(
    store: Store, filled: Filled, store_url: str, tmp_path: Path
) -> None:
    (tmp_path / "signing.key").unlink()
    r = audit_verify(store_url, tmp_path)
    assert r.exit_code == 0, r.output
    assert "signatures were not checked (no signing key at" in r.output
    r = audit_verify(store_url, tmp_path, "--key", filled.key.vkey())
    assert r.exit_code == 0 and "1 stored checkpoints carry valid signatures" in r.output
