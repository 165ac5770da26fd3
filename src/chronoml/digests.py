"""SHA-256 of many short messages at once, the digests end to end.

The evidence log hashes every decision three or four times; from a Python loop
each short message costs more in per-call overhead than in hashing. The
compiled ``chronoml._digests`` (built from OpenSSL at install) reuses one
context for all of them and releases the GIL while it hashes rows; without it
these functions give the same bytes through hashlib.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

try:
    from chronoml import _digests
except ImportError:  # not built here (no compiler or OpenSSL headers at install)
    _digests = None  # type: ignore[assignment]

ACCELERATED = _digests is not None
"""Whether the compiled hasher is in use (required under CI, so the tests run it)."""

_SHA = hashlib.sha256
_DIGEST = type(hashlib.sha256()).digest


def rows(data: bytes | bytearray | memoryview, width: int, prefix: bytes = b"") -> bytes:
    """SHA-256 of ``prefix`` + each ``width``-byte row of ``data``, end to end."""
    if width <= 0:
        raise ValueError("the data is not whole rows of the given width")
    whole = memoryview(data)
    if whole.nbytes == 0:
        return b""  # (a view with a zero in its shape cannot be cast)
    view = whole.cast("B")
    if len(view) % width:
        raise ValueError("the data is not whole rows of the given width")
    if _digests is not None:
        return _digests.rows(view, width, prefix)
    return rows_hashlib(view, width, prefix)


def each(messages: Iterable[bytes]) -> bytes:
    """SHA-256 of each message (bytes), end to end."""
    if _digests is not None:
        return _digests.each(messages)
    return each_hashlib(messages)


def rows_hashlib(view: memoryview, width: int, prefix: bytes = b"") -> bytes:
    """:func:`rows` through hashlib (where the compiled hasher is not built)."""
    if prefix:
        copy = _SHA(prefix).copy
        out = bytearray()
        for i in range(0, len(view), width):
            h = copy()
            h.update(view[i : i + width])
            out += h.digest()
        return bytes(out)
    return b"".join(
        map(_DIGEST, map(_SHA, [view[i : i + width] for i in range(0, len(view), width)]))
    )


def each_hashlib(messages: Iterable[bytes]) -> bytes:
    """:func:`each` through hashlib."""
    items = list(messages)
    for i, m in enumerate(items):
        if not isinstance(m, bytes):
            raise TypeError(f"item {i} is {type(m).__name__}, not bytes")
    return b"".join(map(_DIGEST, map(_SHA, items)))
