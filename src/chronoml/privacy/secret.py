"""The store's privacy secret: the HMAC key of hashed features and unit keys.

Kept like the signing key: one file, created 0600 with ``O_EXCL`` and never
overwritten, refused when group or others may read it. It is never returned
by an API or written to a log. Every server of one store must use the same
file (``CHRONOML_PRIVACY_KEY``), or their hashes would not match.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from chronoml.errors import Refused

_BYTES = 32


class SecretError(Refused):
    """A privacy secret that cannot be created, read or trusted."""


def _check_private(path: Path) -> None:
    if os.name == "nt":
        return
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretError(
            f"privacy secret {path} is accessible by group or others (mode "
            f"{stat.S_IMODE(mode):04o}); anyone who reads it can reverse hashed values "
            f"by guessing. Make it private (chmod 600 {path}).",
            "privacy_key",
        )


def load(path: Path) -> bytes:
    """The secret at ``path``, created first if absent."""
    if not path.exists():
        try:
            return _create(path)
        except FileExistsError:
            pass  # another process created it in between
    _check_private(path)
    try:
        raw = bytes.fromhex(path.read_text(encoding="ascii").strip())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SecretError(f"cannot read privacy secret {path}: {exc}", "privacy_key") from None
    if len(raw) < _BYTES:
        raise SecretError(f"privacy secret {path} is shorter than 32 bytes", "privacy_key")
    return raw


def _create(path: Path) -> bytes:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    raw = secrets.token_bytes(_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o600)
        os.write(fd, (raw.hex() + "\n").encode("ascii"))
        os.fsync(fd)
    except OSError:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)
    return raw
