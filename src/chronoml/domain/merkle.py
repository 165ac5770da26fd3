"""Merkle trees as Certificate Transparency logs build them (RFC 6962, RFC 9162).

The hash of a leaf is ``SHA-256(0x00 || data)``, of an interior node
``SHA-256(0x01 || left || right)``; the tree over ``n`` leaves splits at the
largest power of two below ``n``, so it is a fixed function of the leaf list
and grows only on the right. That shape is what lets a log prove two things
with logarithmic-size proofs:

- *inclusion*: leaf ``i`` is in the tree of size ``n`` with root ``R``;
- *consistency*: the tree of size ``m`` with root ``R_m`` is a prefix of the
  tree of size ``n`` with root ``R_n``: nothing covered by an earlier root was
  changed, removed or reordered.

Three ways to hold a tree, by what the caller needs:

- :func:`root_of`: the root of a list of leaf hashes, O(n) hashes, nothing kept.
- :class:`CompactRange`: the right edge only (one hash per set bit of the size);
  append a leaf and read the new root in O(log n), without the earlier leaves.
  This is what an appender persists between commits.
- :class:`MerkleTree`: every complete, aligned subtree hash (about ``2n``
  hashes, kept as contiguous byte arrays: 64 MB for a million leaves). Built
  once in O(n) hashes, appended to in O(1) amortized; then the root of any
  earlier size, an inclusion proof or a consistency proof costs O(log n)
  hashes and lookups, never a rehash of the leaves.

Proof making is written against :data:`NodeSource`, a function giving the
hash of the complete subtree at ``(level, index)`` (leaves ``index * 2**level``
up to ``(index + 1) * 2**level``), so a store can serve proofs from node hashes
it keeps in a table instead of from memory: :meth:`CompactRange.append`
returns the nodes each new leaf completes (about two per leaf in all), and
:func:`inclusion_proof_nodes` lists the ones a proof reads (at most about
``2 log2 n``: one right edge plus one node per level), so a proof costs one
indexed query and O(log n) hashing.

Verification follows RFC 9162 sections 2.1.3.2 and 2.1.4.2: it rebuilds the
root from the proof and compares, and returns False for any malformed proof
rather than raising.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from chronoml import digests
from chronoml.errors import InvalidInput

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()  # the root of the empty tree (RFC 9162 2.1.1)

_LEAF = b"\x00"
_NODE = b"\x01"

# (level, index) -> hash of the complete subtree over leaves [index << level, (index + 1) << level)
NodeSource = Callable[[int, int], bytes]


class MerkleError(InvalidInput):
    """A request the tree cannot answer (an index or size out of range, a bad hash)."""


def leaf_hash(data: bytes) -> bytes:
    """The hash of one leaf: ``SHA-256(0x00 || data)``."""
    return hashlib.sha256(_LEAF + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The hash of an interior node: ``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(_NODE + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly below ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _check_hash(h: bytes, field: str) -> None:
    if not isinstance(h, bytes | bytearray) or len(h) != HASH_SIZE:
        raise MerkleError(f"{field} must be {HASH_SIZE} bytes", field)


def _pair_level(level: bytes | bytearray) -> bytearray:
    """Hash adjacent pairs of a level (packed 32-byte hashes); an odd last one is left out."""
    whole = len(level) // (2 * HASH_SIZE) * 2 * HASH_SIZE
    return bytearray(digests.rows(memoryview(level)[:whole], 2 * HASH_SIZE, _NODE))


def root_of(leaf_hashes: Iterable[bytes]) -> bytes:
    """The root over ``leaf_hashes`` (already leaf-hashed), ``n - 1`` node hashes."""
    level = bytearray()
    for h in leaf_hashes:
        level += h
    return root_of_packed(level)


def root_of_packed(level: bytes | bytearray) -> bytes:
    """The root over leaf hashes given end to end (32 bytes each).

    Works level by level over packed bytes; the peaks left over at each odd
    level are folded in from the right at the end, which gives the RFC's
    split-at-a-power-of-two shape.
    """
    if len(level) % HASH_SIZE:
        raise MerkleError(f"every leaf hash must be {HASH_SIZE} bytes", "leaf_hashes")
    if not level:
        return EMPTY_ROOT
    # peaks of the odd levels, lowest level first: each is the right-most complete subtree
    peaks: list[bytes] = []
    while len(level) > HASH_SIZE:
        if (len(level) // HASH_SIZE) % 2:
            peaks.append(bytes(level[-HASH_SIZE:]))
        level = _pair_level(level)
    acc = bytes(level)
    # acc is the highest complete subtree; the lower peaks lie to its right, nearest first
    right = None
    for p in peaks:
        right = p if right is None else node_hash(p, right)
    return acc if right is None else node_hash(acc, right)


# --- proofs over a node source ---------------------------------------------


def subtree_hash(nodes: NodeSource, start: int, end: int) -> bytes:
    """``MTH(D[start:end])`` from complete-subtree hashes, O(log n) lookups for a right edge."""
    size = end - start
    if size <= 0:
        return EMPTY_ROOT
    if size & (size - 1) == 0 and start % size == 0:
        return nodes(size.bit_length() - 1, start // size)
    k = _split(size)
    return node_hash(subtree_hash(nodes, start, start + k), subtree_hash(nodes, start + k, end))


def make_inclusion_proof(nodes: NodeSource, index: int, size: int) -> list[bytes]:
    """RFC 9162 ``PATH(index, D[0:size])``, leaf-side first."""
    if not 0 <= index < size:
        raise MerkleError(f"index {index} is outside a tree of {size} leaves", "index")
    path: list[bytes] = []
    start, end, m = 0, size, index
    # walk down from the root, noting the sibling at each split; reversed at the end
    while end - start > 1:
        k = _split(end - start)
        if m < k:
            path.append(subtree_hash(nodes, start + k, end))
            end = start + k
        else:
            path.append(subtree_hash(nodes, start, start + k))
            start, m = start + k, m - k
    path.reverse()
    return path


def make_consistency_proof(nodes: NodeSource, old_size: int, new_size: int) -> list[bytes]:
    """RFC 9162 ``PROOF(old_size, D[0:new_size])``; empty when the sizes are equal or 0."""
    if not 0 <= old_size <= new_size:
        raise MerkleError(f"cannot prove size {old_size} against size {new_size}", "old_size")
    if old_size in (0, new_size):
        return []
    path: list[bytes] = []
    start, end, m, complete = 0, new_size, old_size, True
    while m != end - start:
        k = _split(end - start)
        if m <= k:
            path.append(subtree_hash(nodes, start + k, end))
            end = start + k
        else:
            path.append(subtree_hash(nodes, start, start + k))
            start, m, complete = start + k, m - k, False
    if not complete:
        path.append(subtree_hash(nodes, start, end))
    path.reverse()
    return path


def _recorded(make: Callable[[NodeSource], object]) -> list[tuple[int, int]]:
    seen: dict[tuple[int, int], None] = {}

    def record(level: int, index: int) -> bytes:
        seen[(level, index)] = None
        return bytes(HASH_SIZE)

    make(record)
    return sorted(seen)


def inclusion_proof_nodes(index: int, size: int) -> list[tuple[int, int]]:
    """The ``(level, index)`` nodes :func:`make_inclusion_proof` will read: fetch them in one query."""
    return _recorded(lambda nodes: make_inclusion_proof(nodes, index, size))


def consistency_proof_nodes(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """The ``(level, index)`` nodes :func:`make_consistency_proof` will read."""
    return _recorded(lambda nodes: make_consistency_proof(nodes, old_size, new_size))


# --- verification (RFC 9162 2.1.3.2 and 2.1.4.2) -----------------------------


def root_from_inclusion_proof(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes]
) -> bytes | None:
    """The root that ``proof`` implies for ``leaf`` at ``index``; None if the proof is malformed."""
    if not 0 <= index < size or len(leaf) != HASH_SIZE:
        return None
    fn, sn, r = index, size - 1, bytes(leaf)
    for p in proof:
        if sn == 0 or len(p) != HASH_SIZE:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                # a right-edge node with no sibling: climb until it is a right child again
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> bool:
    """True when ``proof`` shows ``leaf`` (a leaf hash) at ``index`` in the tree ``root``."""
    got = root_from_inclusion_proof(index, size, leaf, proof)
    return got is not None and got == root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """True when ``proof`` shows the tree ``old_root`` is a prefix of the tree ``new_root``."""
    if not 0 <= old_size <= new_size:
        return False
    if old_size == 0:
        return not proof and old_root == EMPTY_ROOT
    if old_size == new_size:
        return not proof and old_root == new_root
    if not proof or any(len(p) != HASH_SIZE for p in proof):
        return False
    path = list(proof)
    if (
        old_size & (old_size - 1) == 0
    ):  # the old tree is a complete subtree: its root starts the path
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root


# --- the right edge ----------------------------------------------------------


@dataclass
class CompactRange:
    """The complete subtrees that cover leaves ``[0, size)``: one hash per set bit of ``size``.

    ``peaks`` are ordered left to right (largest subtree first). Appending a
    leaf merges equal-sized peaks like a binary counter: O(1) amortized, at
    most log2(n) hashes; :meth:`root` folds the peaks from the right in
    O(log n). Persist ``size`` and ``peaks`` to resume appending later.
    """

    size: int = 0
    peaks: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.size < 0:
            raise MerkleError("size must not be negative", "size")
        if len(self.peaks) != self.size.bit_count():
            raise MerkleError(
                f"a range of size {self.size} has {self.size.bit_count()} peaks", "peaks"
            )
        for p in self.peaks:
            _check_hash(p, "peaks")

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add one leaf hash on the right.

        Returns the complete subtrees this leaf completes, as ``(level, index,
        hash)``, the leaf itself first: exactly the rows a store adds to a
        node table so that proofs can later be made from it (see
        :func:`inclusion_proof_nodes`).
        """
        _check_hash(leaf, "leaf")
        peaks = self.peaks
        h = bytes(leaf)
        n = self.size
        made = [(0, n, h)]
        level = 0
        # each trailing 1 bit of the old size is a peak of the same height as the carry
        while n & 1:
            h = node_hash(peaks.pop(), h)
            n >>= 1
            level += 1
            made.append((level, n, h))
        peaks.append(h)
        self.size += 1
        return made

    def extend(self, leaves: Iterable[bytes]) -> list[tuple[int, int, bytes]]:
        """Append several leaf hashes in order; returns every subtree they complete."""
        made: list[tuple[int, int, bytes]] = []
        for leaf in leaves:
            made.extend(self.append(leaf))
        return made

    def root(self) -> bytes:
        """The root of the tree of ``size`` leaves."""
        peaks = self.peaks
        if not peaks:
            return EMPTY_ROOT
        acc = peaks[-1]
        for p in reversed(peaks[:-1]):
            acc = node_hash(p, acc)
        return acc

    def copy(self) -> CompactRange:
        """An independent copy (appending to it leaves this one alone)."""
        # this range is valid already: no second check of every peak (the writer copies per commit)
        out = object.__new__(CompactRange)
        out.size = self.size
        out.peaks = list(self.peaks)
        return out

    def to_dict(self) -> dict[str, object]:
        """``{"size", "peaks": [hex...]}`` for storing the state as JSON."""
        return {"size": self.size, "peaks": [p.hex() for p in self.peaks]}

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> CompactRange:
        """The inverse of :meth:`to_dict`."""
        size = d.get("size")
        peaks = d.get("peaks")
        if not isinstance(size, int) or not isinstance(peaks, list):
            raise MerkleError("a compact range needs an integer size and a list of peaks", "size")
        try:
            hashes = [bytes.fromhex(p) for p in peaks]
        except (TypeError, ValueError):
            raise MerkleError("peaks must be hex strings", "peaks") from None
        return cls(size, hashes)


# --- the whole tree ------------------------------------------------------------


class MerkleTree:
    """Every complete, aligned subtree hash of a growing log, packed per level.

    ``levels[k]`` holds the hashes of the subtrees of ``2**k`` leaves that are
    complete, 32 bytes each, left to right. Building from ``n`` leaf hashes
    costs ``n - 1`` node hashes; :meth:`append` costs one hash per completed
    level (O(1) amortized). Roots and proofs for any size up to :attr:`size`
    take O(log n) lookups and hashes: at most one sibling is an incomplete right
    edge, and it decomposes into one complete subtree per set bit of its size.
    """

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        base = bytearray()
        for h in leaf_hashes:
            base += h
        if len(base) % HASH_SIZE:
            raise MerkleError(f"every leaf hash must be {HASH_SIZE} bytes", "leaf_hashes")
        self._levels: list[bytearray] = [base]
        while len(self._levels[-1]) >= 2 * HASH_SIZE:
            self._levels.append(_pair_level(self._levels[-1]))

    @property
    def size(self) -> int:
        """The number of leaves."""
        return len(self._levels[0]) // HASH_SIZE

    def __len__(self) -> int:
        return self.size

    def append(self, leaf: bytes) -> int:
        """Add one leaf hash; returns its index."""
        _check_hash(leaf, "leaf")
        index = self.size
        self._levels[0] += leaf
        k = 0
        # a level that now has an even count just completed a pair: its parent is new
        while (len(self._levels[k]) // HASH_SIZE) % 2 == 0:
            lvl = self._levels[k]
            parent = hashlib.sha256(_NODE + lvl[-2 * HASH_SIZE :]).digest()
            if k + 1 == len(self._levels):
                self._levels.append(bytearray())
            self._levels[k + 1] += parent
            k += 1
        return index

    def extend(self, leaves: Iterable[bytes]) -> None:
        """Append several leaf hashes in order."""
        for leaf in leaves:
            self.append(leaf)

    def leaf(self, index: int) -> bytes:
        """The leaf hash at ``index``."""
        if not 0 <= index < self.size:
            raise MerkleError(f"index {index} is outside a tree of {self.size} leaves", "index")
        return bytes(self._levels[0][index * HASH_SIZE : (index + 1) * HASH_SIZE])

    def node(self, level: int, index: int) -> bytes:
        """The hash of the complete subtree at ``(level, index)``: a :data:`NodeSource`."""
        lvl = self._levels[level] if 0 <= level < len(self._levels) else b""
        at = index * HASH_SIZE
        if index < 0 or at + HASH_SIZE > len(lvl):
            raise MerkleError(f"no complete subtree at level {level}, index {index}", "index")
        return bytes(lvl[at : at + HASH_SIZE])

    def _size(self, size: int | None) -> int:
        if size is None:
            return self.size
        if not 0 <= size <= self.size:
            raise MerkleError(f"size {size} is outside 0..{self.size}", "size")
        return size

    def root(self, size: int | None = None) -> bytes:
        """The root of the first ``size`` leaves (default: all of them)."""
        return subtree_hash(self.node, 0, self._size(size))

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """The audit path of leaf ``index`` in the tree of the first ``size`` leaves."""
        return make_inclusion_proof(self.node, index, self._size(size))

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """The proof that the first ``old_size`` leaves are a prefix of the first ``new_size``."""
        return make_consistency_proof(self.node, old_size, self._size(new_size))

    def compact_range(self, size: int | None = None) -> CompactRange:
        """The right edge of the first ``size`` leaves, to continue appending elsewhere."""
        n = self._size(size)
        peaks: list[bytes] = []
        start = 0
        for level in range(n.bit_length() - 1, -1, -1):
            if n >> level & 1:
                peaks.append(self.node(level, start >> level))
                start += 1 << level
        return CompactRange(n, peaks)
