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
