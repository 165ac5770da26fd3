"""Decision leaves and input commitments of a whole page, built column by column.

``audit verify --decisions`` re-encodes every stored decision. Row by row
(:mod:`chronoml.store.evidence_batch`), each decision costs a dozen packs, a
tuple and a join in Python. Here each field of the encoding is made for the
whole page at once (lengths, big-endian integers and floats, flags, the
strings of a column joined into one buffer) and the fields are laid side by
side into one byte matrix, so all that is left per row is one SHA-256 over its
slice of it.

The bytes are exactly those of :class:`~chronoml.domain.leaves.DecisionLeaf`
and :func:`~chronoml.domain.leaves.inputs_commitment` (tests pin them). A page
this encoding does not cover (a non-finite latency or output, a short salt, a
value of an unexpected type) raises :class:`Unfit` or the error the value
gives; callers then take the row-by-row path, which names the bad row.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from chronoml.domain import merkle

_LEAF_TAG = b"chronoml/decision/v2"
_LEAF_PREFIX = b"\x00" + len(_LEAF_TAG).to_bytes(4, "big") + _LEAF_TAG
_TAG_V1 = len(b"chronoml/inputs/v1").to_bytes(4, "big") + b"chronoml/inputs/v1"
_TAG_V2 = len(b"chronoml/inputs/v2").to_bytes(4, "big") + b"chronoml/inputs/v2"
_SALT_MIN = 16
_U8 = np.uint8
_I64 = np.int64

Bools = np.ndarray[Any, np.dtype[np.bool_]]
Ints = np.ndarray[Any, np.dtype[np.int64]]


class Unfit(ValueError):
    """The page holds a value this encoding does not cover: encode it row by row."""


def _lens(values: Sequence[Any]) -> Ints:
    return np.fromiter(map(len, values), dtype=_I64, count=len(values))


def _utf8(col: Sequence[Any]) -> tuple[Ints, bytes]:
    """Each string's UTF-8 length, and all of them joined (TypeError unless all are str)."""
    joined = "".join(col)
    if joined.isascii():  # then every character is one byte
        return _lens(col), joined.encode("ascii")
    enc = [s.encode("utf-8") for s in col]
    return _lens(enc), b"".join(enc)


class _Fields:
    """The fields of one encoding for ``n`` rows, in order, then laid out and hashed.

    A part is (width, data): ``width`` an int when every row has that many bytes of it
    (``data`` then holds them all, or once when ``shared``), else each row's length."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.parts: list[tuple[int | Ints, bytes, bool]] = []

    def same(self, data: bytes) -> None:
        """The same bytes in every row."""
        if data:
            self.parts.append((len(data), data, True))

    def each(self, width: int, data: bytes) -> None:
        """``width`` bytes per row, rows' bytes one after the other."""
        self.parts.append((width, data, False))

    def varying(self, lens: Ints, data: bytes) -> None:
        """``lens[i]`` bytes for row ``i``, rows' bytes one after the other."""
        if not len(lens):
            return
        lo, hi = int(lens.min()), int(lens.max())
        if lo == hi:
            if lo:
                self.each(lo, data)
        else:
            self.parts.append((lens, data, False))

    def string(self, col: Sequence[Any]) -> None:
        """Required strings: a 4-byte big-endian length, then the UTF-8 bytes."""
        first = col[0]
        if type(first) is str and col.count(first) == len(col):  # one value for the page
            raw = first.encode("utf-8")
            self.same(len(raw).to_bytes(4, "big") + raw)
            return
        lens, data = _utf8(col)
        self.each(4, lens.astype(">u4").tobytes())
        self.varying(lens, data)

    def optional_string(self, col: Sequence[Any], flagged: bool = True) -> None:
        """``0x00`` for None, else ``0x01`` and the string (without the flag: nothing for None)."""
        missing = col.count(None)
        if missing == len(col):
            self.same(b"\x00" if flagged else b"")
            return
        if missing == 0:
            self.same(b"\x01" if flagged else b"")
            self.string(col)
            return
        has = np.fromiter((v is not None for v in col), dtype=bool, count=len(col))
        if flagged:
            self.each(1, has.astype(_U8).tobytes())
        lens_p, data = _utf8([v for v in col if v is not None])
        lens = np.zeros(len(col), dtype=_I64)
        lens[has] = lens_p
        self.varying(np.where(has, 4, 0).astype(_I64), lens_p.astype(">u4").tobytes())
        self.varying(lens, data)

    def int64(self, col: Sequence[Any]) -> None:
        self.each(8, np.fromiter(map(int, col), dtype=_I64, count=len(col)).astype(">i8").tobytes())

    def flag(self, col: Sequence[Any]) -> None:
        self.each(1, bytes(map(bool, col)))

    def finite(self, col: Sequence[Any]) -> None:
        """``0x01`` and the big-endian double (non-finite values are left to the row path)."""
        arr = np.fromiter(map(float, col), dtype=np.float64, count=len(col))
        if not np.isfinite(arr).all():
            raise Unfit("a value is not finite")
        self.same(b"\x01")
        self.each(8, arr.astype(">f8").tobytes())

    def optional_finite(self, col: Sequence[Any]) -> None:
        missing = col.count(None)
        if missing == len(col):
            self.same(b"\x00")
            return
        if missing == 0:
            self.finite(col)
            return
        has = np.fromiter((v is not None for v in col), dtype=bool, count=len(col))
        arr = np.fromiter(map(float, [v for v in col if v is not None]), dtype=np.float64)
        if not np.isfinite(arr).all():
            raise Unfit("a value is not finite")
        self.each(1, has.astype(_U8).tobytes())
        self.varying(np.where(has, 8, 0).astype(_I64), arr.astype(">f8").tobytes())

    def optional_digest(self, col: Sequence[Any]) -> None:
        """``0x00`` for None, else ``0x01`` and the SHA-256 of the bytes."""
        sha = hashlib.sha256
        missing = col.count(None)
        if missing == len(col):
            self.same(b"\x00")
            return
        digests = b"".join([sha(bytes(v)).digest() for v in col if v is not None])
        if missing == 0:
            self.same(b"\x01")
            self.each(32, digests)
            return
        has = np.fromiter((v is not None for v in col), dtype=bool, count=len(col))
        self.each(1, has.astype(_U8).tobytes())
        self.varying(np.where(has, 32, 0).astype(_I64), digests)

    def hashes(self) -> list[bytes]:
        """The SHA-256 of each row's encoding."""
        n = self.n
        sha = hashlib.sha256
        if all(type(w) is int for w, _, _ in self.parts):
            width = sum(int(w) for w, _, _ in self.parts)
            out = np.empty((n, width), dtype=_U8)
            at = 0
            for w, data, shared in self.parts:
                assert isinstance(w, int)
                src = np.frombuffer(data, dtype=_U8)
                out[:, at : at + w] = src if shared else src.reshape(n, w)
                at += w
            view = memoryview(out.reshape(-1))
            return [sha(view[i : i + width]).digest() for i in range(0, n * width, width)]
        # rows of different lengths: each part laid out at its widest, then the padding
        # squeezed out (a boolean mask keeps the bytes in row order)
        widest = [w if isinstance(w, int) else int(w.max()) for w, _, _ in self.parts]
        out = np.zeros((n, sum(widest)), dtype=_U8)
        keep = np.ones(out.shape, dtype=bool)
        row_len = np.zeros(n, dtype=_I64)
        at = 0
        for (w, data, shared), m in zip(self.parts, widest, strict=True):
            src = np.frombuffer(data, dtype=_U8)
            if isinstance(w, int):
                out[:, at : at + w] = src if shared else src.reshape(n, w)
            else:
                valid = np.arange(m, dtype=_I64) < w[:, None]
                out[:, at : at + m][valid] = src
                keep[:, at : at + m] = valid
            row_len += w
            at += m
        view = memoryview(out[keep])
        ends = np.cumsum(row_len)
        starts = ends - row_len
        return [sha(view[a:b]).digest() for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]


def commitments(cols: Sequence[Sequence[Any]], salts: Sequence[Any], offset: int = 0) -> list[bytes]:
    """:func:`~chronoml.domain.leaves.inputs_commitment` of each row, given the page as columns
    (``cols[offset + k]`` is ``decisions.COLUMNS[k]`` of every row); a row's context (column 17,
    where there is one) is inside its commitment."""
    n = len(salts)
    if n == 0:
        return []
    f = _Fields(n)
    ctx = cols[offset + 17] if len(cols) > offset + 17 else (None,) * n
    none = ctx.count(None)
    if none == n or none == 0:
        f.same(_TAG_V1 if none == n else _TAG_V2)
    else:
        has = np.fromiter((v is not None for v in ctx), dtype=bool, count=n)
        tags = np.frombuffer(_TAG_V1 + _TAG_V2, dtype=_U8).reshape(2, -1)
        f.each(tags.shape[1], tags[has.astype(_I64)].tobytes())
    salt_lens = _lens(salts)
    if n and int(salt_lens.min()) < _SALT_MIN:
        raise Unfit("an input salt is shorter than 16 bytes")
    f.each(4, salt_lens.astype(">u4").tobytes())
    f.varying(salt_lens, b"".join(salts))
    f.string(cols[offset + 10])
    num = cols[offset + 11]
    num_lens = _lens(num)
    f.each(4, num_lens.astype(">u4").tobytes())
    f.varying(num_lens, b"".join(num))
    f.optional_string(cols[offset + 12])
    f.optional_string(ctx, flagged=False)
    return f.hashes()


def leaf_hashes(
    cols: Sequence[Sequence[Any]],
    commitments: Sequence[bytes],
    offset: int = 0,
    context_inside: Bools | None = None,
) -> list[bytes]:
    """The leaf hash of each decision under its input commitment, the page given as columns.

    ``context_inside[i]``: row i's context is inside its input commitment, so its leaf
    holds none."""
    n = len(commitments)
    if n == 0:
        return []
    com = b"".join(commitments)
    if len(com) != n * merkle.HASH_SIZE or max(map(len, commitments)) != merkle.HASH_SIZE:
        raise Unfit("an input commitment is not a 32-byte hash")
    c = cols[offset : offset + 18]
    f = _Fields(n)
    f.same(_LEAF_PREFIX)
    f.string(c[0])  # id
    f.int64(c[1])  # time
    for k in (2, 3, 4, 5):  # endpoint, variant, model name and version
        f.string(c[k])
    f.int64(c[6])  # the routing event
    f.flag(c[7])  # shadow
    f.optional_string(c[8])  # unit key
    f.string(c[9])  # request id
    f.string(c[10])  # layout
    f.each(merkle.HASH_SIZE, com)
    f.string(c[13])  # output
    f.optional_finite(c[14])
    f.finite(c[15])  # latency
    f.optional_digest(c[16])  # class scores
    ctx: Sequence[Any] = c[17] if len(c) > 17 else (None,) * n
    if context_inside is not None and context_inside.any():
        ctx = [None if hidden else v for v, hidden in zip(ctx, context_inside.tolist(), strict=True)]
    f.optional_string(ctx)
    return f.hashes()
