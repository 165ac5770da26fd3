"""Time-ordered ids (UUIDv7 layout), so new rows land at the end of the index.

Within one process ids are strictly increasing: the 12 bits after the
millisecond timestamp count up when several ids share a millisecond.
"""

from __future__ import annotations

import os
import random
import threading
import time
import uuid

_lock = threading.Lock()
_random = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _random.seed(os.urandom(32)))
_last_ms = 0
_counter = 0


def new_id() -> str:
    global _last_ms, _counter
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
    # random's generator, not os.urandom: no system call per id (a thread that
    # leaves the GIL for one waits to get it back); it is reseeded after a fork
    rnd = _random.getrandbits(62)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | seq << 64 | 0b10 << 62 | rnd
    return str(uuid.UUID(int=value))


def new_ids(n: int) -> list[str]:
    """``n`` ids at once, in increasing order (one lock, no UUID objects: about 1 µs each)."""
    global _last_ms, _counter
    slots: list[tuple[int, int]] = []
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            _last_ms, _counter = ms, -1
        for _ in range(n):
            _counter += 1
            if _counter > 0xFFF:
                _last_ms += 1
                _counter = 0
            slots.append((_last_ms, _counter))
        bits = [_random.getrandbits(62) for _ in range(n)]
    out = []
    for (ms, seq), rnd in zip(slots, bits, strict=True):
        h = f"{(ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | seq << 64 | 0b10 << 62 | rnd:032x}"
        out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return out
