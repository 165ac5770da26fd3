"""Signed notes and log checkpoints in the C2SP text formats.

A *signed note* (C2SP ``signed-note``) is UTF-8 text ending in a newline,
then a blank line, then one signature line per signer::

    <text, one or more lines, each ending in \\n>
    \\n
    — <key name> <base64(key ID (4 bytes) || signature)>\\n

The key ID of an Ed25519 key is the first four bytes of
``SHA-256(name || 0x0A || 0x01 || public key)``; a verifier looks for the
lines whose name and key ID match a key it trusts and ignores the others, so
a note can carry co-signatures by witnesses. A verifier key is written as
``<name>+<key ID, 8 hex digits>+<base64(0x01 || public key)>``.

A *checkpoint* (C2SP ``tlog-checkpoint``) is the text a log signs::

    <origin>\\n
    <tree size, decimal>\\n
    <base64 root hash>\\n
    [extension lines]

This module formats and parses both and checks their rules; the signing and
signature checking themselves are passed in as functions, so nothing here
imports a cryptography library.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from chronoml.errors import InvalidInput

ED25519 = 0x01  # the signature type byte C2SP assigns to Ed25519
ED25519_KEY_SIZE = 32
ED25519_SIG_SIZE = 64
KEY_ID_SIZE = 4
MAX_SIGNATURES = 100  # a note with more is refused rather than scanned
_DASH = "\u2014 "  # an em dash and a space open every signature line

Sign = Callable[[bytes], bytes]  # message -> signature
Verify = Callable[[bytes, bytes, bytes], bool]  # (public key, message, signature) -> ok


class NoteError(InvalidInput):
    """A note, checkpoint or key that is malformed or does not verify."""


@dataclass(frozen=True)
class Signature:
    """One signature line of a note."""

    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        """The line as it appears in the note, newline included."""
        blob = base64.b64encode(self.key_id + self.signature).decode("ascii")
        return f"{_DASH}{self.name} {blob}\n"


@dataclass(frozen=True)
class Note:
    """A parsed signed note: the signed text and every signature line on it."""

    text: str
    signatures: tuple[Signature, ...]

    def to_text(self) -> str:
        """The note as bytes-exact text: text, blank line, signature lines."""
        return self.text + "\n" + "".join(s.line() for s in self.signatures)


@dataclass(frozen=True)
class VerifierKey:
    """A public key a note can be checked against, with its name and key ID."""

    name: str
    key_id: bytes
    public_key: bytes

    def vkey(self) -> str:
        """The key in the ``name+keyid+base64`` form."""
        return format_vkey(self.name, self.public_key)


@dataclass(frozen=True)
class Checkpoint:
    """A log's signed statement of its size and root hash."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def to_text(self) -> str:
        """The checkpoint body, ready to sign as a note."""
        return format_checkpoint(self)

    def to_dict(self) -> dict[str, object]:
        """A JSON-friendly view (root hash in hex)."""
        return {
            "origin": self.origin,
            "size": self.size,
            "root_hash": self.root_hash.hex(),
            "extensions": list(self.extensions),
        }


def _b64(text: str) -> bytes:
    """Strict base64: the one canonical spelling of the bytes, so a line has no variants."""
    raw = base64.b64decode(text, validate=True)
    if base64.b64encode(raw).decode("ascii") != text:
        raise binascii.Error("non-canonical base64")
    return raw


# --- keys -----------------------------------------------------------------


def check_key_name(name: str) -> None:
    """A key name is non-empty and has no whitespace and no ``+`` (C2SP)."""
    if not isinstance(name, str) or not name:
        raise NoteError("a key name must not be empty", "name")
    if "+" in name or any(c.isspace() or unicodedata.category(c) == "Cc" for c in name):
        raise NoteError(
            f"key name {name!r} must not contain spaces, control characters or '+'", "name"
        )


def key_id(name: str, public_key: bytes, alg: int = ED25519) -> bytes:
    """``SHA-256(name || 0x0A || alg || public_key)[:4]``, the ID a signature line carries."""
    check_key_name(name)
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([alg]) + public_key).digest()[
        :KEY_ID_SIZE
    ]


def format_vkey(name: str, public_key: bytes) -> str:
    """``<name>+<hex key ID>+<base64(0x01 || public key)>`` for an Ed25519 key."""
    if len(public_key) != ED25519_KEY_SIZE:
        raise NoteError(f"an Ed25519 public key is {ED25519_KEY_SIZE} bytes", "public_key")
    blob = base64.b64encode(bytes([ED25519]) + public_key).decode("ascii")
    return f"{name}+{key_id(name, public_key).hex()}+{blob}"


def parse_vkey(text: str) -> VerifierKey:
    """Read a verifier key; its key ID must match its name and key bytes."""
    parts = text.strip().split("+", 2)  # base64 may hold "+" too
    if len(parts) != 3:
        raise NoteError("a verifier key reads name+keyid+base64key", "key")
    name, hex_id, blob = parts
    check_key_name(name)
    try:
        kid = bytes.fromhex(hex_id)
        raw = _b64(blob)
    except (ValueError, binascii.Error):
        raise NoteError(
            "the verifier key's ID or key bytes are not valid hex/base64", "key"
        ) from None
    if len(kid) != KEY_ID_SIZE or len(hex_id) != 2 * KEY_ID_SIZE:
        raise NoteError(f"the key ID must be {2 * KEY_ID_SIZE} hex digits", "key")
    if not raw or raw[0] != ED25519:
        raise NoteError("only Ed25519 verifier keys (type 0x01) are supported", "key")
    public = raw[1:]
    if len(public) != ED25519_KEY_SIZE:
        raise NoteError(f"an Ed25519 public key is {ED25519_KEY_SIZE} bytes", "key")
    if key_id(name, public) != kid:
        raise NoteError("the key ID does not match the key's name and bytes", "key")
    return VerifierKey(name, kid, public)


# --- notes ----------------------------------------------------------------


def check_text(text: str) -> None:
    """Note text is non-empty, ends in a newline and has no control character but newline."""
    if not isinstance(text, str) or not text.endswith("\n"):
        raise NoteError("note text must end with a newline", "text")
    for c in text:
        if c != "\n" and unicodedata.category(c) == "Cc":
            raise NoteError(f"note text must not contain control character {c!r}", "text")


def sign_note(text: str, name: str, public_key: bytes, sign: Sign) -> str:
    """Sign ``text`` as ``name``; ``sign`` turns the text's UTF-8 bytes into an Ed25519 signature."""
    check_text(text)
    sig = sign(text.encode("utf-8"))
    if len(sig) != ED25519_SIG_SIZE:
        raise NoteError(f"an Ed25519 signature is {ED25519_SIG_SIZE} bytes", "signature")
    return Note(text, (Signature(name, key_id(name, public_key), sig),)).to_text()


def add_signature(note: str, name: str, public_key: bytes, sign: Sign) -> str:
    """Add one more signature line (a co-signature) to an already signed note."""
    parsed = parse_note(note)
    sig = sign(parsed.text.encode("utf-8"))
    extra = Signature(name, key_id(name, public_key), sig)
    return Note(parsed.text, (*parsed.signatures, extra)).to_text()


def parse_note(note: str) -> Note:
    """Split a signed note into its text and signature lines; checks the format only."""
    if not isinstance(note, str):
        raise NoteError("a note is text", "note")
    split = note.rfind("\n\n")
    if split < 0:
        raise NoteError("a signed note needs a blank line before its signatures", "note")
    text, block = note[: split + 1], note[split + 2 :]
    check_text(text)
    if not block.endswith("\n"):
        raise NoteError("the signature block must end with a newline", "note")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"a note may carry at most {MAX_SIGNATURES} signatures", "note")
    sigs: list[Signature] = []
    for line in lines:
        if not line.startswith(_DASH):
            raise NoteError("a signature line starts with an em dash and a space", "note")
        name, _, blob = line[len(_DASH) :].partition(" ")
        check_key_name(name)
        try:
            raw = _b64(blob)
        except binascii.Error:
            raise NoteError(f"the signature by {name!r} is not valid base64", "note") from None
        if len(raw) <= KEY_ID_SIZE:
            raise NoteError(f"the signature by {name!r} is too short", "note")
        sigs.append(Signature(name, raw[:KEY_ID_SIZE], raw[KEY_ID_SIZE:]))
    return Note(text, tuple(sigs))


def open_note(note: str, keys: VerifierKey | Sequence[VerifierKey], verify: Verify) -> str:
    """The note's text, if a signature by one of ``keys`` verifies; else :class:`NoteError`.

    Lines from unknown keys are ignored (they may be witnesses' co-signatures);
    a line that names a known key but fails to verify is an error.
    """
    parsed = parse_note(note)
    trusted = [keys] if isinstance(keys, VerifierKey) else list(keys)
    message = parsed.text.encode("utf-8")
    verified = False
    for sig in parsed.signatures:
        for k in trusted:
            if sig.name == k.name and sig.key_id == k.key_id:
                if not verify(k.public_key, message, sig.signature):
                    raise NoteError(f"the signature by {k.name!r} does not verify", "signature")
                verified = True
    if not verified:
        names = ", ".join(sorted({k.name for k in trusted})) or "no key"
        raise NoteError(f"the note carries no signature by {names}", "key")
    return parsed.text


# --- checkpoints ---------------------------------------------------------------


def format_checkpoint(cp: Checkpoint) -> str:
    """The checkpoint body: origin, size, base64 root, extension lines; each line ends in \\n."""
    if not cp.origin or "\n" in cp.origin:
        raise NoteError("the origin is one non-empty line", "origin")
    if cp.size < 0:
        raise NoteError("the tree size must not be negative", "size")
    if len(cp.root_hash) != 32:
        raise NoteError("the root hash is 32 bytes", "root_hash")
    for ext in cp.extensions:
        if not ext or "\n" in ext:
            raise NoteError("an extension is one non-empty line", "extensions")
    lines = [cp.origin, str(cp.size), base64.b64encode(cp.root_hash).decode("ascii")]
    text = "\n".join([*lines, *cp.extensions]) + "\n"
    check_text(text)
    return text


def parse_checkpoint(text: str) -> Checkpoint:
    """Read a checkpoint body (the text of its signed note)."""
    check_text(text)
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise NoteError("a checkpoint has an origin, a size and a root hash line", "checkpoint")
    origin, size_line, root_line, *ext = lines
    if not origin:
        raise NoteError("the checkpoint's origin is empty", "checkpoint")
    # decimal without sign or leading zeros, so one size has one spelling
    if (
        not size_line.isascii()
        or not size_line.isdigit()
        or (size_line != "0" and size_line[0] == "0")
    ):
        raise NoteError(f"the tree size {size_line!r} is not a decimal number", "checkpoint")
    try:
        root = _b64(root_line)
    except binascii.Error:
        raise NoteError("the root hash is not valid base64", "checkpoint") from None
    if len(root) != 32:
        raise NoteError("the root hash is not 32 bytes", "checkpoint")
    if any(not e for e in ext):
        raise NoteError("a checkpoint has no empty lines", "checkpoint")
    return Checkpoint(origin, int(size_line), root, tuple(ext))


def sign_checkpoint(cp: Checkpoint, name: str, public_key: bytes, sign: Sign) -> str:
    """The checkpoint as a signed note."""
    return sign_note(format_checkpoint(cp), name, public_key, sign)


def open_checkpoint(
    note: str, keys: VerifierKey | Sequence[VerifierKey], verify: Verify
) -> Checkpoint:
    """Verify a signed checkpoint note and read it."""
    return parse_checkpoint(open_note(note, keys, verify))
