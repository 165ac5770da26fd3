"""The decision log's commit wait: rows queued within it share one commit, and nothing
is answered before its commit, nor held past a close or a full commit."""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from chronoml.cli.common import cli
from chronoml.domain import ledger as L
from chronoml.gateway.log import DecisionLog, Done
from chronoml.store import Store, schema
from chronoml.store import decisions as D
from chronoml.store import ledger as SL

T0 = 1_767_225_600_000_000


SEQ: dict[str, int] = {}


@pytest.fixture
def store(store_url: str, tmp_path: Path) -> Iterator[Store]:
    s = Store.open(store_url, tmp_path / "home")
    s.upgrade()
    model = L.ModelRef("churn", "1", None, "ab" * 32)
    v = L.Variant(name="a", model=model, weight=0, shadow=False)
    ev = SL.append(s, L.Change("deploy", "churn", "alice", {"variant": v.to_dict()}), now=T0)
    D.Layouts(s).ensure("lay1", (("x", "float"), ("y", "float")))
    SEQ["deploy"] = ev.seq
    yield s
    s.close()


def rows(start: int, n: int) -> list[D.DecisionTuple]:
    return [
        (
            f"0190a000-0000-7000-8000-{i:012d}", T0 + 10 + i, "churn", "a", "churn", "1",
            SEQ["deploy"], False, None, f"0190a000-0000-7000-9000-{i:012d}", "lay1",
            struct.pack("<dd", i, -i), None, "0.5", 0.5, 1.25, None, None,
        )
        for i in range(start, start + n)
    ]  # fmt: skip


def logged(store: Store) -> int:
    with store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(schema.decisions)).scalar_one())


class Waiter:
    def __init__(self) -> None:
        self.event = threading.Event()
        self.outcome: BaseException | None = None
        self.logged_then = -1

    def done(self, store: Store) -> Done:
        def call(outcome: BaseException | None) -> None:
            self.outcome = outcome
            self.logged_then = logged(store)
            self.event.set()

        return call


def test_rows_queued_within_the_wait_share_one_commit(store: Store) -> None:
    commits: list[int] = []
    log = DecisionLog(store, on_commit=lambda n, _s: commits.append(n), commit_wait_s=0.5)
    try:
        groups = [rows(0, 2), rows(2, 3), rows(5, 1)]
        waiters = [Waiter() for _ in groups]
        for g, w in zip(groups, waiters, strict=True):
            log.submit(g, [], w.done(store))
        for w in waiters:
            assert w.event.wait(30)
            assert w.outcome is None
            assert w.logged_then == 6  # answered only once its rows (and the rest) are in
        assert commits == [6]
    finally:
        log.close()


def test_without_a_wait_each_submit_after_a_commit_is_a_commit_of_its_own(store: Store) -> None:
    commits: list[int] = []
    log = DecisionLog(store, on_commit=lambda n, _s: commits.append(n))
    try:
        for start, n in ((0, 2), (2, 3)):
            w = Waiter()
            log.submit(rows(start, n), [], w.done(store))
            assert w.event.wait(30) and w.outcome is None
        assert commits == [2, 3]
    finally:
        log.close()


def test_a_full_commit_does_not_wait(store: Store) -> None:
    log = DecisionLog(store, max_rows_per_commit=4, commit_wait_s=600)
    try:
        w = Waiter()
        log.submit(rows(0, 2), [], lambda _o: None)
        log.submit(rows(2, 2), [], w.done(store))
        assert w.event.wait(30), "a commit of max_rows_per_commit rows waited for more"
        assert w.outcome is None and w.logged_then == 4
    finally:
        log.close()


def test_a_close_commits_what_is_waiting_at_once(store: Store) -> None:
    log = DecisionLog(store, commit_wait_s=600)
    w = Waiter()
    log.submit(rows(0, 3), [], w.done(store))
    log.close(timeout=30)
    assert w.event.is_set() and w.outcome is None and w.logged_then == 3
    assert logged(store) == 3


def test_the_server_takes_the_wait_from_its_flag(tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from chronoml.gateway.app import create_app
    from chronoml.settings import Settings

    r = CliRunner().invoke(cli, ["server", "--help"])
    assert "--commit-wait-ms" in r.output
    bad = CliRunner().invoke(cli, ["--home", str(tmp_path), "server", "--commit-wait-ms", "-1"])
    assert bad.exit_code == 2 and "--commit-wait-ms" in bad.output
    s = Settings.from_env({}, home=tmp_path / "home", commit_wait_ms=3.0)
    with TestClient(create_app(s)) as client:
        gw = client.app.state.gateway  # type: ignore[attr-defined]
        assert gw.log.commit_wait_s == pytest.approx(0.003)
