"""``chronoml audit``: key, checkpoint, verify against it, proofs and an offline bundle."""

from __future__ import annotations

import json
import stat
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from chronoml.cli import cli
from chronoml.domain import leaves as LV
from chronoml.domain import ledger as L
from chronoml.domain import merkle
from chronoml.store import Store
from chronoml.store import decisions as D
from chronoml.store import ledger as SL
from chronoml.verify import main as verify_main

T0 = 1_767_225_600_000_000


def run(home: Path, url: str, *args: str) -> Result:
    base = ["--home", str(home)]
    if not url.startswith("sqlite"):
        base += ["--store", url]
    return CliRunner().invoke(cli, [*base, *args], catch_exceptions=False)


def _fill(store: Store) -> None:
    model = L.ModelRef("churn", "1", None, "ab" * 32)
    v = L.Variant(name="a", model=model, weight=0, shadow=False)
    ev = SL.append(store, L.Change("deploy", "churn", "alice", {"variant": v.to_dict()}), now=T0)
    D.Layouts(store).ensure("lay1", (("x", "float"), ("y", "float")))
    app = D.Appender(store)
    for start in (0, 3):
        app.append(
            [
                (
                    f"0190a000-0000-7000-8000-{i:012d}", T0 + 10 + i, "churn", "a", "churn", "1", ev.seq, False, None,
                    f"0190a000-0000-7000-9000-{i:012d}", "lay1", struct.pack("<dd", i, -i), None, "0.5", 0.5, 1.25,
                    None, None,
                )
                for i in range(start, start + 3)
            ]
        )  # fmt: skip
    app.close()


@pytest.fixture
def home(tmp_path: Path, store_url: str) -> Path:
    h = tmp_path / "home"
    r = run(h, store_url, "db", "upgrade")
    assert r.exit_code == 0, r.output
    assert "created the signing key" in r.output
    store = Store.open(
        store_url if not store_url.startswith("sqlite") else f"sqlite:///{h / 'chronoml.db'}", h
    )
    _fill(store)
    store.close()
    return h


def test_the_key_is_private_and_printed(home: Path, store_url: str) -> None:
    mode = stat.S_IMODE((home / "signing.key").stat().st_mode)
    assert mode == 0o600
    r = run(home, store_url, "audit", "key")
    assert r.exit_code == 0 and r.output.startswith("chronoml.log/")
    assert "PRIVATE" not in r.output
    again = run(home, store_url, "db", "upgrade")
    assert "created the signing key" not in again.output  # never replaced


def test_verify_against_a_checkpoint_then_catch_a_moved_decision(
    home: Path, store_url: str, tmp_path: Path
) -> None:
    vkey = run(home, store_url, "audit", "key").output.strip()
    cp = tmp_path / "cp.txt"
    r = run(home, store_url, "audit", "checkpoint", "--out", str(cp))
    assert r.exit_code == 0 and "3 entries" in r.output
    args = ["audit", "verify", "--decisions", "--checkpoint", str(cp), "--key", vkey]
    r = run(home, store_url, *args)
    assert r.exit_code == 0, r.output
    assert "6 decisions" in r.output and "extends the checkpoint of size 3" in r.output
    r = run(home, store_url, *args[:-1], "chronoml.log/x+00000000+AAAA")
    assert r.exit_code == 1 and "--key" in r.output
    url = store_url if not store_url.startswith("sqlite") else f"sqlite:///{home / 'chronoml.db'}"
    store = Store.open(url, home)
    with store.write() as conn:
        conn.exec_driver_sql(
            "UPDATE decisions SET ts = ts - 5 WHERE id = '0190a000-0000-7000-8000-000000000004'"
        )
    store.close()
    r = run(home, store_url, *args)
    assert r.exit_code == 1
    assert "FAILED at decision 0190a000-0000-7000-8000-000000000004" in r.output
    r = run(home, store_url, "audit", "verify", "--json")
    body = json.loads(r.output)
    assert body["ok"] is True and body["evidence"]["decisions"] is None  # not asked


def test_proof_and_bundle_verify_offline_and_fail_on_one_byte(
    home: Path, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vkey = run(home, store_url, "audit", "key").output.strip()
    r = run(
        home, store_url, "decision", "0190a000-0000-7000-8000-000000000004", "--proof", "--json"
    )
    assert r.exit_code == 0, r.output
    p = json.loads(r.output)
    leaf = LV.DecisionLeaf.from_dict(p["leaf"]).leaf_hash()
    b = p["batch"]
    batch_root = merkle.root_from_inclusion_proof(
        b["index"], b["size"], leaf, [bytes.fromhex(h) for h in b["path"]]
    )
    assert batch_root is not None
    entry = LV.BatchLeaf("decision", b["size"], batch_root, b["committed_at"]).leaf_hash()
    cp_root = p["checkpoint"].splitlines()[2]
    import base64

    assert merkle.verify_inclusion(
        p["log_index"],
        p["log_size"],
        entry,
        [bytes.fromhex(h) for h in p["log_path"]],
        base64.b64decode(cp_root),
    )
    out = tmp_path / "bundle"
    r = run(
        home,
        store_url,
        "audit",
        "export",
        "--decision",
        "0190a000-0000-7000-8000-000000000004",
        "--out",
        str(out),
    )
    assert r.exit_code == 0, r.output
    assert (out / "lineage.json").exists() and (out / "checkpoint.txt").exists()
    assert verify_main([str(out), "--key", vkey]) == 0
    (item,) = out.glob("items/*-decision-*.json")
    text = item.read_text()
    assert '"0190a000-0000-7000-9000-000000000004"' in text
    item.write_text(
        text.replace(
            '"0190a000-0000-7000-9000-000000000004"', '"0190a000-0000-7000-9000-000000000005"', 1
        )
    )  # one byte of the decision
    capsys.readouterr()
    assert verify_main([str(out), "--key", vkey]) == 1
    assert "0190a000-0000-7000-8000-000000000004" in capsys.readouterr().out
    r = run(home, store_url, "decision", "nope", "--proof")
    assert r.exit_code == 1 and "unknown decision" in r.output
