"""Ids: UUIDv7, strictly increasing within a process, unique."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from types import SimpleNamespace

import pytest

from chronoml import ids


def timestamp_ms(value: str) -> int:
    return uuid.UUID(value).int >> 80


def test_ids_are_uuid7() -> None:
    before = time.time_ns() // 1_000_000
    value = ids.new_id()
    after = time.time_ns() // 1_000_000
    u = uuid.UUID(value)
    assert str(u) == value  # canonical lower-case form
    assert u.version == 7
    assert u.variant == uuid.RFC_4122
    assert before <= timestamp_ms(value) <= after + 1


def test_ids_increase_strictly_and_are_unique() -> None:
    values = [ids.new_id() for _ in range(100_000)]
    assert len(set(values)) == len(values)
    # string order is time order: rows keyed by id land at the end of the index
    assert all(a < b for a, b in itertools.pairwise(values))
    assert all(uuid.UUID(v).version == 7 for v in values[::997])


def test_ids_stay_ordered_when_the_clock_stalls_or_steps_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = time.time_ns()
    clock = iter([now] * 10_000 + [now - 5_000_000_000] * 100)  # frozen, then 5 s back
    # only this module's view of the clock is replaced
    monkeypatch.setattr(ids, "time", SimpleNamespace(time_ns=lambda: next(clock)))
    values = [ids.new_id() for _ in range(10_100)]
    assert all(a < b for a, b in itertools.pairwise(values))
    # 4096 ids share a millisecond; after that the next one is borrowed
    assert timestamp_ms(values[-1]) - now // 1_000_000 <= 10_100 // 4096 + 1


def test_ids_from_threads_are_unique() -> None:
    out: list[list[str]] = [[] for _ in range(4)]

    def work(i: int) -> None:
        out[i].extend(ids.new_id() for _ in range(10_000))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [v for chunk in out for v in chunk]
    assert len(set(everything)) == 40_000
    for chunk in out:
        assert chunk == sorted(chunk)


def test_ids_in_bulk_are_uuid7_and_keep_increasing() -> None:
    import uuid

    from chronoml.ids import new_id, new_ids

    ids = [new_id(), *new_ids(5000), new_id(), *new_ids(3)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    for i in ids[::500]:
        u = uuid.UUID(i)
        assert u.version == 7 and u.variant == uuid.RFC_4122 and str(u) == i


def random_part(value: str) -> int:
    return uuid.UUID(value).int & ((1 << 62) - 1)


def test_ids_hold_no_seeded_generator() -> None:
    # a Mersenne Twister's state can be recovered from a few hundred outputs,
    # after which every other caller's id can be guessed
    import random

    assert not any(isinstance(v, random.Random) for v in vars(ids).values())
    assert "random" not in vars(ids)


def test_random_parts_come_from_the_os_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    calls: list[int] = []

    def urandom(n: int) -> bytes:
        calls.append(n)
        return bytes(range(256)) * (n // 256) + bytes(n % 256)

    monkeypatch.setattr(ids, "os", SimpleNamespace(urandom=urandom))
    ids._drop_pool()
    try:
        first = [ids.new_id() for _ in range(3)]
        # each id takes one native 64-bit word of the OS's bytes and keeps 62 bits
        words = [int.from_bytes(bytes(range(i * 8, i * 8 + 8)), sys.byteorder) for i in range(3)]
        assert [random_part(v) for v in first] == [w & ((1 << 62) - 1) for w in words]
        # one read of the OS serves many ids: no system call per id
        for _ in range(500):
            ids.new_id()
        ids.new_ids(7)
        assert len(calls) <= 2
        # a big batch reads its own randomness at once
        ids.new_ids(5000)
        assert calls[-1] == 8 * 5000
    finally:
        monkeypatch.undo()
        ids._drop_pool()


def test_random_parts_use_all_62_bits() -> None:
    values = [random_part(v) for v in ids.new_ids(4000) + [ids.new_id() for _ in range(4000)]]
    for bit in range(62):
        ones = sum(v >> bit & 1 for v in values)
        # 8000 fair coins: far outside 3,600..4,400 only if the bit is stuck or biased
        assert 3_600 < ones < 4_400, bit


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork()")
def test_forked_processes_do_not_repeat_random_parts() -> None:
    import os

    ids.new_id()  # the pool now holds unspent randomness the child inherits
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send its ids and leave without running pytest's teardown
        try:
            os.close(read)
            payload = "\n".join([ids.new_id() for _ in range(200)] + ids.new_ids(50)).encode()
            with os.fdopen(write, "wb") as out:
                out.write(payload)
        finally:
            os._exit(0)
    os.close(write)
    mine = [ids.new_id() for _ in range(200)] + ids.new_ids(50)
    with os.fdopen(read, "rb") as inp:
        theirs = inp.read().decode().split("\n")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(theirs) == 250
    assert not {random_part(v) for v in mine} & {random_part(v) for v in theirs}
    # the child keeps the parent's order too: its ids follow the parent's last one
    assert theirs == sorted(theirs)


@pytest.mark.parametrize("n", [3, 200, 600])  # per id, vectorised, and past the pool
def test_ids_in_bulk_are_those_one_at_a_time_would_be(
    monkeypatch: pytest.MonkeyPatch, n: int
) -> None:
    def urandom(k: int) -> bytes:
        return bytes(i * 7 % 256 for i in range(k))

    monkeypatch.setattr(ids, "os", SimpleNamespace(urandom=urandom))
    future = 2**47  # the clock never passes it: the counter carries into the milliseconds

    def start() -> None:
        ids._drop_pool()
        ids._last_ms, ids._counter = future, 4000

    saved = (ids._last_ms, ids._counter)
    try:
        start()
        bulk = ids.new_ids(n)
        after_bulk = (ids._last_ms, ids._counter)
        if n > ids._POOL_IDS:  # a big batch reads its words at once: so does the loop's pool
            monkeypatch.setattr(ids, "_POOL_BYTES", 8 * n)
            monkeypatch.setattr(ids, "_POOL_IDS", n)
        start()
        one_by_one = [ids.new_id() for _ in range(n)]
        assert bulk == one_by_one
        assert after_bulk == (ids._last_ms, ids._counter)
    finally:
        monkeypatch.undo()
        ids._drop_pool()
        ids._last_ms, ids._counter = saved


@pytest.mark.parametrize("sizes", [(3, 1000, 17), (ids.BLOCK_MAX_ROWS, 2)])
def test_block_ids_number_their_rows_whatever_sizes_came_before(sizes: tuple[int, ...]) -> None:
    for n in sizes:
        block, members = ids.new_block_ids(n)
        assert len(members) == n
        for pos, d in enumerate(members):
            assert d[:32] == block[:32]
            assert ids.block_of(d) == (block, pos)
        assert members[-1].endswith(f"{n:04x}")
