"""C2SP signed notes and tlog checkpoints: format, key IDs, signing and verification."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from chronoml.domain import note
from chronoml.verify import ed25519_verify

# the signed-note example published with Go's golang.org/x/mod/sumdb/note
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_NOTE = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
    "\n"
    "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)


class Key:
    def __init__(self, name: str) -> None:
        self.name = name
        self.private = Ed25519PrivateKey.generate()
        self.public = self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.verifier = note.parse_vkey(note.format_vkey(name, self.public))

    def sign(self, text: str) -> str:
        return note.sign_note(text, self.name, self.public, self.private.sign)


def test_go_example_note_verifies() -> None:
    key = note.parse_vkey(GO_VKEY)
    assert key.vkey() == GO_VKEY
    assert note.open_note(GO_NOTE, key, ed25519_verify).startswith("If you think")
    edited = GO_NOTE.replace("answer", "Answer")
    with pytest.raises(note.NoteError) as e:
        note.open_note(edited, key, ed25519_verify)
    assert e.value.field == "signature"


def test_key_id_is_the_c2sp_hash() -> None:
    k = Key("log.example/evidence")
    want = hashlib.sha256(b"log.example/evidence\n\x01" + k.public).digest()[:4]
    assert note.key_id(k.name, k.public) == want
    vkey = note.format_vkey(k.name, k.public)
    name, hex_id, blob = vkey.split("+", 2)
    assert (name, hex_id) == (k.name, want.hex())
    assert base64.b64decode(blob) == b"\x01" + k.public


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "name+c74f20a3",
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong key ID
        "Peter+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong name
        "PeterNeumann+c74f20a3+AhpC2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # type 0x02
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T",  # bad base64
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ],
)
def test_bad_verifier_keys_are_refused(bad: str) -> None:
    with pytest.raises(note.NoteError):
        note.parse_vkey(bad)


def test_sign_and_open_with_cosignatures() -> None:
    log, witness, stranger = Key("log"), Key("witness"), Key("stranger")
    signed = log.sign("hello\nworld\n")
    assert signed.startswith("hello\nworld\n\n\u2014 log ")
    assert note.open_note(signed, log.verifier, ed25519_verify) == "hello\nworld\n"
    cosigned = note.add_signature(signed, witness.name, witness.public, witness.private.sign)
    # unknown signers are ignored, any trusted one suffices
    assert note.open_note(cosigned, log.verifier, ed25519_verify) == "hello\nworld\n"
    assert note.open_note(cosigned, [stranger.verifier, witness.verifier], ed25519_verify)
    with pytest.raises(note.NoteError) as e:
        note.open_note(cosigned, stranger.verifier, ed25519_verify)
    assert e.value.field == "key"
    parsed = note.parse_note(cosigned)
    assert [s.name for s in parsed.signatures] == ["log", "witness"]
    assert parsed.to_text() == cosigned


def test_a_key_with_the_same_name_but_other_bytes_does_not_verify() -> None:
    real, impostor = Key("log"), Key("log")
    signed = impostor.sign("size 10\n")
    with pytest.raises(note.NoteError) as e:
        note.open_note(signed, real.verifier, ed25519_verify)
    assert e.value.field == "key"  # the key ID differs: not a signature by the real key


@pytest.mark.parametrize("text", ["no newline", "tab\there\n", "bell\x07\n", "", "cr\r\n"])
def test_note_text_rules(text: str) -> None:
    k = Key("log")
    with pytest.raises(note.NoteError) as e:
        k.sign(text)
    assert e.value.field == "text"


def test_malformed_signature_blocks() -> None:
    k = Key("log")
    signed = k.sign("body\n")
    _, sig = signed.split("\n\n")
    blob = sig.split(" ")[2].strip()
    for bad in [
        "body\n",  # no signature block
        f"body\n\n- log {blob}\n",  # a hyphen, not an em dash
        f"body\n\n\u2014 log {blob}",  # no final newline
        f"body\n\n\u2014 log {blob[:-2]}\n",  # truncated base64
        "body\n\n\u2014 log AAAA\n",  # too short for a key ID and a signature
        f"body\n\n\u2014 lo+g {blob}\n",
    ]:
        with pytest.raises(note.NoteError):
            note.open_note(bad, k.verifier, ed25519_verify)
    many = "body\n\n" + "".join(f"\u2014 w{i} {blob}\n" for i in range(note.MAX_SIGNATURES + 1))
    with pytest.raises(note.NoteError):
        note.parse_note(many)


def test_checkpoint_round_trip_and_rules() -> None:
    root = hashlib.sha256(b"r").digest()
    cp = note.Checkpoint("chronoml.example/log", 1234, root, ("time 2026-11-02T10:00:00Z",))
    text = cp.to_text()
    origin, size, b64, ext = text.splitlines()
    assert (origin, size, ext) == ("chronoml.example/log", "1234", "time 2026-11-02T10:00:00Z")
    assert base64.b64decode(b64) == root
    assert note.parse_checkpoint(text) == cp
    k = Key("chronoml.example/log")
    signed = note.sign_checkpoint(cp, k.name, k.public, k.private.sign)
    assert note.open_checkpoint(signed, k.verifier, ed25519_verify) == cp
    b = base64.b64encode(root).decode()
    for bad in [
        f"o\n012\n{b}\n",  # leading zero
        f"o\n-1\n{b}\n",
        f"o\n1\n{b[:-4]}\n",  # not 32 bytes
        f"\n1\n{b}\n",  # empty origin
        f"o\n1\n{b}\n\nx\n",  # empty extension line
        "o\n1\n",
        f"o\n1\n{b}",
    ]:
        with pytest.raises(note.NoteError):
            note.parse_checkpoint(bad)
    with pytest.raises(note.NoteError) as e:
        note.format_checkpoint(note.Checkpoint("o", 1, b"short"))
    assert e.value.field == "root_hash"


_line = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=30)


@settings(max_examples=50, deadline=None)
@given(
    _line,
    st.integers(0, 2**63 - 1),
    st.binary(min_size=32, max_size=32),
    st.lists(_line, max_size=3),
)
def test_property_checkpoints_round_trip(
    origin: str, size: int, root: bytes, ext: list[str]
) -> None:
    cp = note.Checkpoint(origin, size, root, tuple(ext))
    assert note.parse_checkpoint(cp.to_text()) == cp


KEY = Key("prop")


@settings(max_examples=50, deadline=None)
@given(st.data())
def test_property_any_edit_of_a_signed_checkpoint_fails(data: st.DataObject) -> None:
    cp = note.Checkpoint("chronoml.example/log", 77, hashlib.sha256(b"x").digest())
    signed = note.sign_checkpoint(cp, KEY.name, KEY.public, KEY.private.sign)
    body_len = len(cp.to_text()) - 1  # keep the final newline, edit anything before it
    at = data.draw(st.integers(0, body_len - 1))
    ch = data.draw(st.sampled_from("0123456789abcxyz/+="))
    if signed[at] == ch:
        return
    edited = signed[:at] + ch + signed[at + 1 :]
    with pytest.raises(note.NoteError):
        note.open_checkpoint(edited, KEY.verifier, ed25519_verify)
