"""Signature checks of the checkpoints the store keeps.

The ``checkpoints`` table is writable by whoever can write the database: an
insider who rewrote the log can also insert a checkpoint of the rewritten
tree, signed by a key of their own under the log's name. So ``audit verify``
opens each stored note with the verifier keys it trusts (the store's own
key, read from the signing key file, and the ``--key`` an auditor gives)
and names every stored checkpoint that one of them has not signed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from chronoml.domain import note
from chronoml.evidence.keys import KeyFileError, load_key_file
from chronoml.verify import ed25519_verify


def store_verifier(key_path: Path) -> note.VerifierKey | None:
    """The verifier key of the signing key file at ``key_path``, or None when there is none.

    Raises :class:`KeyFileError` when the file exists but cannot be trusted or read.
    """
    if not key_path.exists():
        return None
    return load_key_file(key_path).verifier()


def signature_problem(text: str, keys: Sequence[note.VerifierKey]) -> str | None:
    """Why the signed note ``text`` is not signed by every key of ``keys`` (None: it is)."""
    seen: set[bytes] = set()
    for k in keys:
        if k.key_id in seen:
            continue
        seen.add(k.key_id)
        try:
            note.open_note(text, k, ed25519_verify)
        except note.NoteError as exc:
            return f"it is not signed by the key {k.vkey()}: {exc.message}"
    return None


def trusted_keys(
    key_path: Path, given: note.VerifierKey | None
) -> tuple[list[note.VerifierKey], str | None]:
    """The keys stored checkpoints must be signed by, and why the store's own key is missing.

    The given key (``--key``) is trusted as is; the store's key comes from
    its signing key file when that is here and private.
    """
    keys: list[note.VerifierKey] = [given] if given is not None else []
    try:
        own = store_verifier(key_path)
    except KeyFileError as exc:
        return keys, exc.message
    if own is None:
        return keys, f"no signing key at {key_path}"
    return [own, *keys], None


__all__ = ["signature_problem", "store_verifier", "trusted_keys"]
