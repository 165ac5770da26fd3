"""The log's signing key: created private, refused once it is not, signing what verify checks."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from chronoml import verify
from chronoml.domain import note
from chronoml.evidence import keys

pytestmark = pytest.mark.skipif(os.name == "nt", reason="POSIX file modes")


def test_created_key_is_0600_and_loads_back(tmp_path: Path) -> None:
    path = tmp_path / "home" / "signing.key"
    old = os.umask(0)  # even a permissive umask must not widen the mode
    try:
        key = keys.create_key_file(path, "chronoml.example/log")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith("PRIVATE+KEY+chronoml.example/log+")
    loaded = keys.load_key_file(path)
    assert loaded.public_key == key.public_key and loaded.vkey() == key.vkey()
    assert note.parse_vkey(key.vkey()) == key.verifier()


def test_an_existing_key_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "signing.key"
    first = keys.create_key_file(path, "log")
    with pytest.raises(keys.KeyFileError) as e:
        keys.create_key_file(path, "log")
    assert "never overwritten" in e.value.message
    again, created = keys.ensure_key_file(path, "log")
    assert not created and again.public_key == first.public_key
    fresh, created = keys.ensure_key_file(tmp_path / "other.key", "log")
    assert created and fresh.public_key != first.public_key


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o644])
def test_a_key_others_can_reach_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "signing.key"
    keys.create_key_file(path, "log")
    path.chmod(mode)
    with pytest.raises(keys.KeyFileError) as e:
        keys.load_key_file(path)
    assert e.value.field == "signing_key"
    assert f"{mode:04o}" in e.value.message and "chmod 600" in e.value.message


@pytest.mark.parametrize(
    "text",
    [
        "",
        "PUBLIC+KEY+log+00000000+AAAA",
        "PRIVATE+KEY+log+00000000+AQ==",
        "PRIVATE+KEY+log+00000000+" + "A" * 44,  # 33 bytes, but type 0x00
    ],
)
def test_a_corrupt_key_file_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "signing.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, text.encode())
    os.close(fd)
    with pytest.raises(keys.KeyFileError):
        keys.load_key_file(path)


def test_a_key_id_that_does_not_match_is_refused(tmp_path: Path) -> None:
    line = keys.generate("log").to_text()
    _, _, name, kid, blob = line.split("+", 4)
    assert name == "log"
    forged = f"PRIVATE+KEY+log+{'0' * 8 if kid != '0' * 8 else '1' * 8}+{blob}"
    with pytest.raises(keys.KeyFileError) as e:
        keys.parse_key(forged)
    assert "ID does not match" in e.value.message


def test_bad_names_are_refused() -> None:
    for name in ("", "two words", "a+b"):
        with pytest.raises(keys.KeyFileError) as e:
            keys.generate(name)
        assert e.value.field == "name"


def test_signed_checkpoint_verifies_with_the_printed_key() -> None:
    key = keys.generate("chronoml.example/log")
    cp = note.Checkpoint("chronoml.example/log", 3, hashlib.sha256(b"r").digest())
    signed = key.sign_checkpoint(cp)
    assert note.open_checkpoint(signed, note.parse_vkey(key.vkey()), verify.ed25519_verify) == cp
    other = keys.generate("chronoml.example/log")
    with pytest.raises(note.NoteError):
        note.open_checkpoint(signed, other.verifier(), verify.ed25519_verify)


def test_vkeys_with_plus_in_their_base64_round_trip() -> None:
    # base64 uses "+", the vkey format uses it as a separator: the key bytes must survive
    found = 0
    for i in range(64):
        key = keys.SigningKey("log", Ed25519PrivateKey.from_private_bytes(bytes([i]) * 32))
        vkey = key.vkey()
        if "+" in vkey.split("+", 2)[2]:
            found += 1
            assert note.parse_vkey(vkey).public_key == key.public_key
            assert keys.parse_key(key.to_text()).public_key == key.public_key
    assert found > 0
