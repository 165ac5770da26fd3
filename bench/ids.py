"""Goal: the id generator's cost per id, with its random part from the OS's CSPRNG.

The ids' 62 random bits used to come from a ``random.Random`` (Mersenne
Twister): cheap, but its state can be recovered from a few hundred ids. Now
they come from ``os.urandom``, read 4 KiB (512 ids) at a time. This measures
what that costs, per id, for ``new_id()``, ``new_ids(1)`` and ``new_ids(1000)``.

Anchors, measured in the same run and interleaved round by round:
- ``before``: the Mersenne Twister generator as it was (reproduced below, same
  layout and locking), the cost the change is compared with;
- ``unbatched``: the same generator with one ``os.urandom(8)`` per id, to show
  what reading the OS in pools saves.

    .venv/bin/python bench/ids.py                 # ~20 s on 2 shared cores
    .venv/bin/python bench/ids.py --rounds 5 --ids 20000
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from chronoml import ids as after


class MersenneIds:
    """The generator before the change, as it was: ``random.Random`` for the random part."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._random = random.Random(os.urandom(32))
        self._last_ms = 0
        self._counter = 0

    def _slot(self) -> tuple[int, int]:
        with self._lock:
            ms = time.time_ns() // 1_000_000
            if ms <= self._last_ms:
                self._counter += 1
                if self._counter > 0xFFF:
                    self._last_ms += 1
                    self._counter = 0
                ms = self._last_ms
            else:
                self._last_ms = ms
                self._counter = 0
            return ms, self._counter

    def _slots(self, n: int) -> list[tuple[int, int]]:
        slots: list[tuple[int, int]] = []
        ms = time.time_ns() // 1_000_000
        if ms > self._last_ms:
            self._last_ms, self._counter = ms, -1
        for _ in range(n):
            self._counter += 1
            if self._counter > 0xFFF:
                self._last_ms += 1
                self._counter = 0
            slots.append((self._last_ms, self._counter))
        return slots

    def new_id(self) -> str:
        ms, seq = self._slot()
        rnd = self._random.getrandbits(62)
        value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | seq << 64 | 0b10 << 62 | rnd
        return str(uuid.UUID(int=value))

    def new_ids(self, n: int) -> list[str]:
        with self._lock:
            slots = self._slots(n)
            bits = [self._random.getrandbits(62) for _ in range(n)]
        return [
            _format((ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | seq << 64 | 0b10 << 62 | rnd)
            for (ms, seq), rnd in zip(slots, bits, strict=True)
        ]


class UnbatchedIds(MersenneIds):
    """Like the new generator, but with one ``os.urandom`` system call per id."""

    def new_id(self) -> str:
        ms, seq = self._slot()
        rnd = int.from_bytes(os.urandom(8)) & ((1 << 62) - 1)
        return _format((ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | seq << 64 | 0b10 << 62 | rnd)

    def new_ids(self, n: int) -> list[str]:
        with self._lock:
            slots = self._slots(n)
            bits = [int.from_bytes(os.urandom(8)) & ((1 << 62) - 1) for _ in range(n)]
        return [
            _format((ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | seq << 64 | 0b10 << 62 | rnd)
            for (ms, seq), rnd in zip(slots, bits, strict=True)
        ]


def _format(value: int) -> str:
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass
class Case:
    """One way of making ids: a callable making ``per_call`` ids."""

    label: str
    per_call: int
    make: dict[str, Callable[[], object]]


def ns_per_id(fn: Callable[[], object], calls: int, per_call: int) -> float:
    # CPU time of this process, not wall time: the machine is shared, and
    # time another process takes from us is not the generator's cost
    start = time.process_time_ns()
    for _ in range(calls):
        fn()
    return (time.process_time_ns() - start) / (calls * per_call)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds (median)")
    parser.add_argument("--ids", type=int, default=40_000, help="ids per measurement")
    args = parser.parse_args(argv)

    before, unbatched = MersenneIds(), UnbatchedIds()
    cases = [
        Case(
            "new_id()",
            1,
            {"before": before.new_id, "unbatched": unbatched.new_id, "after": after.new_id},
        ),
        Case(
            "new_ids(1)",
            1,
            {
                "before": lambda: before.new_ids(1),
                "unbatched": lambda: unbatched.new_ids(1),
                "after": lambda: after.new_ids(1),
            },
        ),
        Case(
            "new_ids(1000)",
            1000,
            {
                "before": lambda: before.new_ids(1000),
                "unbatched": lambda: unbatched.new_ids(1000),
                "after": lambda: after.new_ids(1000),
            },
        ),
    ]
    results: dict[tuple[str, str], list[float]] = {}
    for case in cases:  # warm up every path once
        for fn in case.make.values():
            ns_per_id(fn, max(1, 2000 // case.per_call), case.per_call)
    for _ in range(args.rounds):
        for case in cases:
            calls = max(1, args.ids // case.per_call)
            for name, fn in case.make.items():
                results.setdefault((case.label, name), []).append(
                    ns_per_id(fn, calls, case.per_call)
                )

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, {args.rounds} rounds")
    print(
        f"{'CPU ns per id':<16} {'before (MT)':>12} {'unbatched':>12} {'after':>10}"
        f" {'after/before':>13} {'after/unbatched':>16}"
    )
    for case in cases:
        med = {name: statistics.median(results[(case.label, name)]) for name in case.make}
        print(
            f"{case.label:<16} {med['before']:>12.0f} {med['unbatched']:>12.0f}"
            f" {med['after']:>10.0f} {med['after'] / med['before']:>13.2f}"
            f" {med['after'] / med['unbatched']:>16.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
