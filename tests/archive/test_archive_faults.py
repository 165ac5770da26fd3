"""Faults: a kill -9 between writing a file and deleting its rows, an object store that is down."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from archive_support import log
from sqlalchemy import create_engine, text

from access_support import admin_client
from chronoml.archive import run
from chronoml.domain.archive import parse_target
from chronoml.evidence import audit
from chronoml.gateway.app import create_app
from chronoml.settings import Settings
from chronoml.store import Store
from chronoml.store import archive as SA
from chronoml.store import archive_parquet as AP
from chronoml.store import decisions as D
from chronoml.store.archive_objects import Unreachable
from chronoml.timeutil import parse_time

T2000 = parse_time("2000-01-01T00:00:00")


def _env(home: Path, store_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env["CHRONOML_HOME"] = str(home)
    env.pop("CHRONOML_STORE", None)
    if not store_url.startswith("sqlite"):
        env["CHRONOML_STORE"] = store_url
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


def test_kill_9_between_write_and_delete_loses_and_duplicates_nothing(
    store_url: str, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    settings = Settings.from_env(
        {}, home=home, store_url=None if store_url.startswith("sqlite") else store_url
    )
    store = Store.open(settings.database_url, home)
    store.upgrade()
    layouts = D.Layouts(store)
    ids = log(store, layouts, 3000, T2000, "a") + log(store, layouts, 1000, T2000 + 5, "b")
    # hold the lock the archiver's commit needs: it writes and checks its file, then waits
    if store.is_sqlite:
        blocker: Any = sqlite3.connect(home / "chronoml.db", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
    else:
        engine = create_engine(store_url)
        blocker = engine.connect()
        blocker.execute(text("SELECT size FROM evidence_head WHERE id = 1 FOR UPDATE"))
    cmd = [sys.executable, "-m", "chronoml", "archive", "--before", "2001-01-01"]
    errors = tmp_path / "stderr.txt"
    with errors.open("wb") as err:
        proc = subprocess.Popen(cmd, env=_env(home, store_url), stderr=err)
    folder = home / "archive"
    try:
        deadline = time.monotonic() + 120
        while not (folder.is_dir() and any(p.suffix == ".parquet" for p in folder.iterdir())):
            assert proc.poll() is None, errors.read_text()
            assert time.monotonic() < deadline, "no archive file was written"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if store.is_sqlite:
            blocker.execute("ROLLBACK")
            blocker.close()
        else:
            blocker.rollback()
            blocker.close()
            engine.dispose()
    assert proc.returncode == -signal.SIGKILL
    # the file is there, the rows too: nothing was deleted or recorded
    assert D.count(store, "e") == 4000
    assert SA.status(store)["endpoints"][0]["files"] == 0
    assert audit.verify(store, decisions=True).ok

    done = subprocess.run(
        cmd, env=_env(home, store_url), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "archived 4000 decisions" in done.stdout
    st = SA.status(store)["endpoints"][0]
    assert (st["live_decisions"], st["archived_decisions"]) == (0, 4000)
    # every decision once, found by id
    with store.read() as conn:
        shas = conn.exec_driver_sql("SELECT sha256 FROM archive_files").scalars().all()
    seen: list[str] = []
    for sha in shas:
        seen += (
            AP.read((folder / f"{sha}.parquet").read_bytes(), columns=["id"])
            .column("id")
            .to_pylist()
        )
    assert sorted(seen) == sorted(ids)
    assert D.get(store, ids[1234]) is not None and D.get(store, ids[1234]).id == ids[1234]  # type: ignore[union-attr]
    report = audit.verify(store, decisions=True)
    assert report.ok and report.decisions == 4000, report.reason
    store.close()


def test_an_unreachable_store_pauses_reports_and_deletes_nothing(
    cm: Any, settings: Any, tmp_path: Path, s3_keys: dict[str, str]
) -> None:
    layouts = cm.layouts
    log(cm.store, layouts, 100, T2000, "a")
    # a port where nothing listens: connection refused
    refs = {"access_key": "${CHRONOML_TEST_S3_KEY}", "secret_key": "${CHRONOML_TEST_S3_SECRET}"}
    down = parse_target("s3://chronoml-down/x", endpoint_url="http://127.0.0.1:9", **refs)
    slept: list[float] = []
    with pytest.raises(Unreachable):
        run(cm, T2000 + 10**9, down, attempts=3, sleep=slept.append)
    assert slept == [5.0, 10.0]  # backed off between attempts
    assert D.count(cm.store, "e") == 100
    st = SA.status(cm.store)
    assert st["endpoints"][0]["files"] == 0
    assert st["state"]["failures"] == 3 and "127.0.0.1:9" in st["state"]["last_error"]

    # the server's archiver: paused in /metrics, then it resumes once the store is reachable
    s = replace(
        settings,
        archive_after_us=10**6,
        archive_to="s3://chronoml-down/x",
        archive_s3_endpoint_url="http://127.0.0.1:9",
        archive_access_key=refs["access_key"],
        archive_secret_key=refs["secret_key"],
    )
    cm.settings = s
    with admin_client(create_app(s, cm)) as c:
        archiver = c.app.state.gateway.archiver
        assert archiver is not None and archiver.running
        archiver._step()
        body = c.get("/metrics").text
        assert "chronoml_archive_paused 1.0" in body and "chronoml_archive_failures 4.0" not in body
        assert archiver._step() is False and archiver.progress.failures == 1  # backing off
        archiver._not_before = 0.0
        archiver.target = parse_target(f"file://{tmp_path / 'objects'}")
        archiver._step()
        body = c.get("/metrics").text
        assert "chronoml_archive_paused 0.0" in body and "chronoml_archive_decisions 100.0" in body
    st = SA.status(cm.store)
    assert st["endpoints"][0]["archived_decisions"] == 100 and st["state"]["failures"] == 0
    assert D.count(cm.store, "e") == 100 and audit.verify(cm.store, decisions=True).ok


def test_one_process_archives_a_store_apart_from_the_monitor(cm: Any) -> None:
    from chronoml.monitor.leader import Leadership

    other = Store.open(cm.settings.database_url, cm.settings.home)
    first, second = Leadership(cm.store, "archive"), Leadership(other, "archive")
    monitor = Leadership(other, "monitor")
    try:
        assert first.held() and not second.held()
        assert monitor.held()  # archiving and monitoring lead separately
        first.release()
        assert second.held()
    finally:
        for lead in (first, second, monitor):
            lead.release()
        other.close()
