"""The log's Ed25519 signing key: create it private, load it only if it is still private.

A key file holds one line in the signed-note private key form::

    PRIVATE+KEY+<name>+<key ID, 8 hex digits>+<base64(0x01 || 32-byte seed)>

It is created with mode 0600 and never overwritten; loading refuses a file
that group or others can read or write, since anyone who can read it can sign
checkpoints in the log's name. The key may live anywhere (for instance on
another machine's mount), given by path.
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from chronoml.domain import note
from chronoml.errors import InvalidInput

_PREFIX = "PRIVATE+KEY+"
_RAW = serialization.Encoding.Raw


class KeyFileError(InvalidInput):
    """A signing key that cannot be created, read or trusted (``field`` names the input)."""

    def __init__(self, message: str, field: str = "signing_key") -> None:
        super().__init__(message, field)


@dataclass(frozen=True)
class SigningKey:
    """A named Ed25519 private key that signs notes and checkpoints."""

    name: str
    private: Ed25519PrivateKey

    @cached_property
    def public_key(self) -> bytes:
        """The 32 raw public key bytes (derived once: every proof hands out the key)."""
        return self.private.public_key().public_bytes(_RAW, serialization.PublicFormat.Raw)

    def verifier(self) -> note.VerifierKey:
        """The matching verifier key."""
        pub = self.public_key
        return note.VerifierKey(self.name, note.key_id(self.name, pub), pub)

    def vkey(self) -> str:
        """The public key as ``name+keyid+base64``, what ``chronoml audit key`` prints."""
        return self._vkey

    @cached_property
    def _vkey(self) -> str:
        return note.format_vkey(self.name, self.public_key)

    def sign(self, message: bytes) -> bytes:
        """A raw Ed25519 signature over ``message``."""
        return self.private.sign(message)

    def sign_note(self, text: str) -> str:
        """``text`` as a signed note."""
        return note.sign_note(text, self.name, self.public_key, self.sign)

    def sign_checkpoint(self, checkpoint: note.Checkpoint) -> str:
        """The checkpoint as a signed note, ready to write or publish."""
        return note.sign_checkpoint(checkpoint, self.name, self.public_key, self.sign)

    def to_text(self) -> str:
        """The key file's line (secret: write it only where :func:`create_key_file` does)."""
        seed = self.private.private_bytes(
            _RAW, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        blob = base64.b64encode(bytes([note.ED25519]) + seed).decode("ascii")
        return f"{_PREFIX}{self.name}+{note.key_id(self.name, self.public_key).hex()}+{blob}"


def generate(name: str) -> SigningKey:
    """A fresh key named ``name`` (no whitespace, no ``+``; usually the log's origin)."""
    try:
        note.check_key_name(name)
    except note.NoteError as e:
        raise KeyFileError(e.message, "name") from None
    return SigningKey(name, Ed25519PrivateKey.generate())


def parse_key(text: str) -> SigningKey:
    """Read a key file's line; its key ID must match."""
    line = text.strip()
    if not line.startswith(_PREFIX):
        raise KeyFileError("not a signing key file (expected PRIVATE+KEY+...)")
    parts = line[len(_PREFIX) :].split("+", 2)  # base64 may hold "+" too
    if len(parts) != 3:
        raise KeyFileError("a signing key reads PRIVATE+KEY+name+keyid+base64key")
    name, hex_id, blob = parts
    try:
        raw = base64.b64decode(blob, validate=True)
    except binascii.Error:
        raise KeyFileError("the signing key's bytes are not base64") from None
    if len(raw) != 33 or raw[0] != note.ED25519:
        raise KeyFileError("only Ed25519 signing keys (type 0x01, 32 bytes) are supported")
    try:
        key = SigningKey(name, Ed25519PrivateKey.from_private_bytes(raw[1:]))
        expected = note.key_id(name, key.public_key).hex()
    except note.NoteError as e:
        raise KeyFileError(e.message) from None
    if hex_id != expected:
        raise KeyFileError("the signing key's ID does not match its name and bytes")
    return key


def check_private(path: str | os.PathLike[str]) -> None:
    """Refuse a key file that group or others may read or write."""
    if os.name == "nt":  # POSIX modes mean nothing there; ACLs are the OS's business
        return
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        raise KeyFileError(f"cannot read signing key {path}: {e.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"signing key {path} is accessible by group or others (mode "
            f"{stat.S_IMODE(mode):04o}); anyone who reads it can sign checkpoints. "
            f"Make it private (chmod 600 {path}) or create a new key."
        )


def load_key_file(path: str | os.PathLike[str]) -> SigningKey:
    """Load the key at ``path`` after checking that it is private to its owner."""
    check_private(path)
    try:
        text = Path(path).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as e:
        raise KeyFileError(f"cannot read signing key {path}: {e}") from None
    return parse_key(text)


def create_key_file(path: str | os.PathLike[str], name: str) -> SigningKey:
    """Create a new key at ``path`` with mode 0600; refuses to replace an existing file."""
    key = generate(name)
    p = Path(path)
    p.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        # O_EXCL: two processes starting at once cannot both create (and one lose) a key
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path} already exists; a signing key is never overwritten") from None
    except OSError as e:
        raise KeyFileError(f"cannot create signing key {path}: {e.strerror}") from None
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o600)  # the umask can only remove bits, but be exact
        os.write(fd, (key.to_text() + "\n").encode("ascii"))
        os.fsync(fd)
    except OSError as e:
        os.close(fd)
        p.unlink(missing_ok=True)
        raise KeyFileError(f"cannot write signing key {path}: {e.strerror}") from None
    os.close(fd)
    return key


def ensure_key_file(path: str | os.PathLike[str], name: str) -> tuple[SigningKey, bool]:
    """Load the key at ``path``, creating it first if absent; returns (key, created)."""
    if os.path.exists(path):
        return load_key_file(path), False
    try:
        return create_key_file(path, name), True
    except KeyFileError:
        if os.path.exists(path):  # another process created it in between
            return load_key_file(path), False
        raise
