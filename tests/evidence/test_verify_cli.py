"""``python -m chronoml.verify``: exit statuses, and the imports it is allowed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from evidence_support import decision_file

from chronoml import verify
from chronoml.evidence import keys

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
        # the Merkle levels' hasher, plain Python over hashlib; its compiled module
        # (chronoml._digests) is left out, so the bundle is checked without it
        "chronoml.digests",
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
