"""Time-ordered ids (UUIDv7 layout), so new rows land at the end of the index.

Within one process ids are strictly increasing: the 12 bits after the
millisecond timestamp count up when several ids share a millisecond.

The 62 random bits of every id come from the operating system's CSPRNG
(``os.urandom``). Ids are handed to callers (a decision id is how its raw
inputs are fetched), so they must not be predictable from other ids: a
Mersenne Twister's whole state can be recovered from a few hundred outputs.
The randomness is read in pools of 4 KiB (512 ids), so the hot path makes no
system call per id; the pool is dropped in a forked child, so parent and
child never hand out the same random parts.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import numpy as np

_POOL_BYTES = 4096
_POOL_IDS = _POOL_BYTES // 8  # one 64-bit word per id; its top 2 bits are dropped
_MASK62 = (1 << 62) - 1
_MASK48 = (1 << 48) - 1
_VERSION_VARIANT = 0x7 << 76 | 0b10 << 62

_lock = threading.Lock()
# an empty pool whose position says "used up": the first id fills it
_pool: memoryview = memoryview(b"").cast("Q")
_pos = _POOL_IDS
_last_ms = 0
_counter = 0


def _drop_pool() -> None:
    """Forget the unspent randomness (it is refilled from the OS on next use)."""
    global _pool, _pos
    _pool = memoryview(b"").cast("Q")
    _pos = _POOL_IDS


def _refill() -> None:
    global _pool, _pos
    _pool = memoryview(os.urandom(_POOL_BYTES)).cast("Q")
    _pos = 0


def _after_fork_in_child() -> None:
    # the child holds a copy of the parent's pool: using it would repeat the
    # parent's next random parts, so the child reads its own
    _drop_pool()
    _lock.release()


# Hold the lock across fork(): the child then never inherits it held by a
# thread that no longer exists, nor a half-updated pool or counter.
os.register_at_fork(
    before=_lock.acquire,
    after_in_parent=_lock.release,
    after_in_child=_after_fork_in_child,
)


def _format(value: int) -> str:
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def new_id() -> str:
    """A new UUIDv7 string, greater than every id this process made before."""
    global _last_ms, _counter, _pos
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            _counter += 1
            if _counter > 0xFFF:  # 4096 ids in one millisecond: borrow the next one
                _last_ms += 1
                _counter = 0
            ms = _last_ms
        else:
            _last_ms = ms
            _counter = 0
        seq = _counter
        if _pos >= _POOL_IDS:
            _refill()
        rnd = _pool[_pos]
        _pos += 1
    return _format((ms & _MASK48) << 80 | _VERSION_VARIANT | seq << 64 | (rnd & _MASK62))


def new_ids(n: int) -> list[str]:
    """``n`` ids at once, in increasing order, all greater than earlier ids of this process."""
    global _last_ms, _counter, _pos
    if n <= 0:
        return []
    # a batch larger than the pool reads its own randomness, in one system call
    # and outside the lock (nothing shared is touched)
    big = os.urandom(8 * n) if n > _POOL_IDS else None
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            _last_ms, _counter = ms, -1
        # the k-th id (from 1) has sequence number _counter + k, carried into the
        # milliseconds past 0xFFF: what new_id() would give called n times
        last, first = _last_ms, _counter + 1
        _last_ms, _counter = last + (first + n - 1) // 4096, (first + n - 1) % 4096
        if big is None:
            if _pos + n > _POOL_IDS:
                _refill()
            part = _pool[_pos : _pos + n]
            words: Any = np.array(part, dtype=np.uint64) if n >= _VECTOR_FROM else part.tolist()
            _pos += n
    if big is not None:
        words = np.frombuffer(big, dtype=np.uint64)  # n > the pool: the vector path
    if n < _VECTOR_FROM:
        return [
            _format(
                (last + c // 4096 & _MASK48) << 80 | _VERSION_VARIANT | c % 4096 << 64 | w & _MASK62
            )
            for c, w in zip(range(first, first + n), words, strict=True)
        ]
    seq = np.arange(first, first + n, dtype=np.uint64)
    out = np.empty((n, 2), dtype=">u8")
    out[:, 0] = ((last + seq // 4096) & _MASK48) << 16 | 0x7 << 12 | seq % 4096
    out[:, 1] = (words & _MASK62) | 0b10 << 62
    return _dashed(out.tobytes().hex(), n)


# below this many ids, numpy's per-call overhead costs more than formatting each one
_VECTOR_FROM = 32
# where each of the 32 hex digits goes in the 36 characters of an id
_HEX_AT = np.r_[0:8, 9:13, 14:18, 19:23, 24:36]


def _dashed(hexed: str, n: int) -> list[str]:
    """``n`` ids from their 32-digit hex strings, joined: the dashes put in with one copy."""
    digits = np.frombuffer(hexed.encode("ascii"), dtype=np.uint8).reshape(n, 32)
    chars = np.full((n, 37), ord("-"), dtype=np.uint8)
    chars[:, _HEX_AT] = digits
    chars[:, 36] = ord("\n")
    return chars.tobytes().decode("ascii").split("\n")[:n]


# --- ids of the decisions of one columnar request ------------------------------

# A request logged as one block: the block's id is a fresh id with version 8 (a custom
# UUID layout) and its last 16 bits zero; decision i of the block (from 1) is the same id
# with i in those bits. So each id names its block and its row, with no row of its own.
# The random bits are the block's: one decision's id gives the ids of the others of the
# same request (never of another request's), which were all answered to the same caller.
BLOCK_MAX_ROWS = 0xFFFF
_BLOCK_VERSION = "8"


def new_block_ids(n: int) -> tuple[str, list[str]]:
    """A block id and the ids of its ``n`` decisions (``1 <= n <= BLOCK_MAX_ROWS``)."""
    if not 1 <= n <= BLOCK_MAX_ROWS:
        raise ValueError(f"a block holds 1 to {BLOCK_MAX_ROWS} decisions, not {n}")
    base = new_id()
    head = f"{base[:14]}{_BLOCK_VERSION}{base[15:32]}"
    return head + "0000", [head + t for t in _row_tails(n)]


_tails: list[str] = []


def _row_tails(n: int) -> list[str]:
    """The last four hex digits of a block's first ``n`` decision ids (row 1 first).

    Kept between calls and grown as needed: adding two strings is several times
    cheaper than formatting each number, and a request of 1000 rows makes 1000 ids.
    """
    global _tails
    tails = _tails
    if len(tails) < n:
        # a new list, swapped in whole: model threads of other variants may read the old one
        tails = tails + [f"{i:04x}" for i in range(len(tails) + 1, n + 1)]
        _tails = tails
    return tails[:n]


def block_of(decision_id: str) -> tuple[str, int] | None:
    """``(block id, row)`` of a decision logged in a block (row from 0), else None."""
    if len(decision_id) != 36 or decision_id[14] != _BLOCK_VERSION:
        return None
    tail = decision_id[32:]
    try:
        pos = int(tail, 16)
    except ValueError:
        return None
    if pos == 0 or not tail.isalnum():
        return None
    return decision_id[:32] + "0000", pos - 1
