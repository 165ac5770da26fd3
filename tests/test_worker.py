"""The background workers: ``read_ahead`` pages in order, errors and early stops handed back; a
``Worker`` whose stop timed out."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from chronoml.worker import Worker, read_ahead


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


def test_a_stop_that_times_out_leaves_the_pass_visible_and_never_doubles_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    inside, release = threading.Event(), threading.Event()
    passes: list[str] = []

    def step() -> bool:
        passes.append(threading.current_thread().name)
        inside.set()
        release.wait(10)
        return False

    w = Worker("chronoml-test-stuck", step, 0.01)
    w.start()
    w.wake()
    assert inside.wait(5)
    with caplog.at_level("WARNING", logger="chronoml.worker"):
        w.stop(timeout_s=0.05)  # the pass is still in flight
    assert w.running  # it still runs: a caller must not think it is gone
    assert "still in a pass" in caplog.text
    with pytest.raises(RuntimeError, match="has not ended yet"):
        w.start()  # a second thread beside the stuck one is refused
    assert sum(t.name == "chronoml-test-stuck" for t in threading.enumerate()) == 1
    release.set()
    w.stop(timeout_s=5)
    assert not w.running
    inside.clear()
    w.start()  # once it has ended, the worker starts again
    w.wake()
    assert inside.wait(5) and w.running
    w.stop(timeout_s=5)
    assert not w.running and len(passes) >= 2
