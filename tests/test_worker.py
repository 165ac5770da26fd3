"""``read_ahead``: pages made in a thread, in order, errors and early stops handed back."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from chronoml.worker import read_ahead


def test_items_come_in_order_from_another_thread() -> None:
    seen: list[str] = []

    def make() -> Iterator[int]:
        seen.append(threading.current_thread().name)
        yield from range(50)

    assert list(read_ahead(make, depth=2, name="pages")) == list(range(50))
    assert seen == ["pages"]


def test_an_error_while_reading_reaches_the_consumer_after_what_came_before() -> None:
    def make() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("the store went away")

    got: list[int] = []
    with pytest.raises(ValueError, match="the store went away"):
        for item in read_ahead(make):
            got.append(item)
    assert got == [1, 2]


def test_a_consumer_that_stops_early_closes_the_reader_in_its_thread() -> None:
    closed: list[str] = []

    def make() -> Iterator[int]:
        try:
            yield from range(1_000_000)
        finally:
            closed.append(threading.current_thread().name)

    pages = read_ahead(make, depth=1, name="reader")
    assert next(pages) == 0
    pages.close()  # what a for loop that breaks does
    assert closed == ["reader"]
    assert not any(t.name == "reader" for t in threading.enumerate())
