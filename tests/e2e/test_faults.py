"""Faults: a server killed under load, a graceful stop, the store going away.

Every test here is bounded (a few seconds of loopback traffic) and checks
the promise that matters: a 2xx means the decision is committed, and a
decision is never half-written.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from sklearn.datasets import load_breast_cancer
from starlette.testclient import TestClient

from access_support import admin_client, token_for
from chronoml.gateway.app import create_app
from chronoml.ids import block_of
from chronoml.service import Chronoml
from chronoml.settings import Settings
from chronoml.store import Store
from chronoml.store import decisions as D

X = load_breast_cancer(as_frame=True).frame.drop(columns=["target"])
ROWS = 3  # every request sends this many rows: a request's decisions are all there or none
BODY = {"dataframe_split": {"columns": list(X.columns), "data": X.iloc[:ROWS].values.tolist()}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _settings(tmp_path: Path, models: Any, store_url: str | None = None) -> Settings:
    return Settings.from_env(
        {}, home=tmp_path / "home", store_url=store_url, mlflow_tracking_uri=models.tracking_uri
    )


def _open(s: Settings) -> Chronoml:
    store = Store.open(s.database_url, s.home)
    store.upgrade()
    return Chronoml(s, store)


class Server:
    """``chronoml server`` in a process of its own."""

    def __init__(self, s: Settings, *extra: str) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "CHRONOML_HOME": str(s.home),
            "MLFLOW_TRACKING_URI": s.tracking_uri,
            "CHRONOML_STORE": s.store_url or "",
        }
        self.auth = token_for(s)  # for anything but predict, which these servers leave open
        cmd = [
            sys.executable, "-m", "chronoml.cli", "server", "--port", str(self.port),
            "--open-predict",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            [*cmd, "--log-level", "warning", *extra],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 180  # worker processes import MLflow and load models first
        while True:
            try:
                if httpx.get(f"{self.base}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                self.close()
                raise AssertionError("server did not start")
            time.sleep(0.1)

    def close(self) -> None:
        # SIGTERM, so a supervisor stops its worker processes too
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc.wait(15)


def _load(
    base: str, stop: threading.Event, acked: list[list[str]], workers: int = 6, body: Any = BODY
) -> Any:
    """Closed-loop traffic until ``stop``; every 2xx's decision ids go to ``acked``."""

    def one(k: int) -> None:
        with httpx.Client(base_url=base, timeout=10) as c:
            i = 0
            while not stop.is_set() and i < 5000:
                i += 1
                try:
                    r = c.post(
                        "/v1/endpoints/cancer/predict",
                        json=body,
                        headers={"X-Chronoml-Unit": f"{k}-{i}"},
                    )
                except httpx.TransportError:
                    return  # the server is gone
                if r.status_code == 200:
                    acked.append(r.json()["decision_ids"])

    pool = ThreadPoolExecutor(workers)
    futs = [pool.submit(one, k) for k in range(workers)]
    return pool, futs


def _check_log(store: Store, acked: list[list[str]]) -> int:
    """Every acknowledged decision is there, and every request's rows are complete."""
    with store.read() as conn:
        rows = conn.exec_driver_sql(
            "SELECT id, request_id, num, output FROM decisions WHERE endpoint = 'cancer'"
        ).all()
    ids = {r[0] for r in rows}
    missing = [i for ids_ in acked for i in ids_ if i not in ids]
    assert missing == [], f"{len(missing)} acknowledged decisions are not in the log"
    per_request: dict[str, int] = {}
    for _id, request_id, num, output in rows:
        assert len(bytes(num)) == 8 * len(X.columns) and output  # nothing half-written
        per_request[request_id] = per_request.get(request_id, 0) + 1
    assert set(per_request.values()) <= {ROWS}
    return len(rows)


@pytest.mark.slow
def test_kill_9_under_load_loses_no_acknowledged_decision_then_a_graceful_stop(
    tmp_path: Path, models: Any
) -> None:
    s = _settings(tmp_path, models)
    cm = _open(s)
    cm.deploy("cancer", f"models:/cancer/{models.linked_v1}")
    cm.close()

    server = Server(s)
    acked: list[list[str]] = []
    stop = threading.Event()
    try:
        pool, futs = _load(server.base, stop, acked)
        deadline = time.time() + 20
        while len(acked) < 50 and time.time() < deadline:
            time.sleep(0.05)
        os.kill(server.proc.pid, signal.SIGKILL)  # mid-traffic
        server.proc.wait(10)
        stop.set()
        for f in futs:
            f.result()
        pool.shutdown()
    finally:
        server.close()
    assert len(acked) >= 50
    store = Store.open(s.database_url, s.home)
    try:
        _check_log(store, acked)
    finally:
        store.close()

    # the same store serves again after a restart; SIGTERM drains and flushes
    server = Server(s)
    acked2: list[list[str]] = []
    stop = threading.Event()
    try:
        pool, futs = _load(server.base, stop, acked2)
        deadline = time.time() + 20
        while len(acked2) < 50 and time.time() < deadline:
            time.sleep(0.05)
        server.proc.send_signal(signal.SIGTERM)
        # uvicorn drains, runs the shutdown (flushing the log), then re-raises the signal
        assert server.proc.wait(30) in (0, -signal.SIGTERM)
        stop.set()
        for f in futs:
            f.result()
        pool.shutdown()
    finally:
        server.close()
    store = Store.open(s.database_url, s.home)
    try:
        _check_log(store, acked + acked2)
        from chronoml.store import ledger as SL

        assert SL.verify(store).ok
    finally:
        store.close()


BLOCK_ROWS = 40  # a request this large is logged as one ingest block (the default: 16 rows)


@pytest.mark.slow
def test_kill_9_under_load_loses_no_acknowledged_block(tmp_path: Path, models: Any) -> None:
    s = _settings(tmp_path, models)
    cm = _open(s)
    cm.deploy("cancer", f"models:/cancer/{models.linked_v1}")
    cm.close()
    many = {"dataframe_split": {"columns": list(X.columns),
                                "data": X.iloc[:BLOCK_ROWS].values.tolist()}}  # fmt: skip
    server = Server(s)
    acked: list[list[str]] = []
    stop = threading.Event()
    try:
        pool, futs = _load(server.base, stop, acked, body=many)
        deadline = time.time() + 30
        while len(acked) < 30 and time.time() < deadline:
            time.sleep(0.05)
        os.kill(server.proc.pid, signal.SIGKILL)  # mid-traffic
        server.proc.wait(10)
        stop.set()
        for f in futs:
            f.result()
        pool.shutdown()
    finally:
        server.close()
    assert len(acked) >= 30
    store = Store.open(s.database_url, s.home)
    try:
        with store.read() as conn:
            held = dict(conn.exec_driver_sql("SELECT id, rows FROM ingest_blocks").all())
        for ids in acked:
            places = [block_of(i) for i in ids]
            bids = {p[0] for p in places if p is not None}
            assert len(bids) == 1 and len(places) == BLOCK_ROWS
            assert held.get(bids.pop()) == BLOCK_ROWS  # the whole request, committed
        assert D.get(store, acked[-1][-1]) is not None
        from chronoml.evidence import audit

        report = audit.verify(store, decisions=True)
        assert report.ok, report.reason
    finally:
        store.close()


# --- the store going away, and coming back without a restart -------------------------------


def _flaky_store_traffic(c: TestClient, cm: Chronoml, make_unavailable: Any, restore: Any) -> None:
    path = "/v1/endpoints/cancer/predict"
    assert c.post(path, json=BODY).status_code == 200
    before = D.count(cm.store)
    make_unavailable()
    try:
        with ThreadPoolExecutor(4) as pool:
            codes = list(pool.map(lambda _: c.post(path, json=BODY), range(12)))
        statuses = {r.status_code for r in codes}
        assert statuses == {503}, statuses
        err = codes[0].json()["error"]
        assert err["code"] == "store_unavailable" and "decision log unavailable" in err["message"]
    finally:
        restore()
    # recovery without a restart
    deadline = time.time() + 10
    while True:
        r = c.post(path, json=BODY)
        if r.status_code == 200 or time.time() > deadline:
            break
        time.sleep(0.2)
    assert r.status_code == 200, r.text
    # no 2xx without its decisions, and nothing for the 503s
    assert D.count(cm.store) == before + ROWS


def _chattr(flag: str, files: list[Path]) -> bool:
    out = subprocess.run(["chattr", flag, *map(str, files)], capture_output=True, text=True)
    return out.returncode == 0


def test_sqlite_made_read_only_gives_503_then_recovers(tmp_path: Path, models: Any) -> None:
    s = _settings(tmp_path, models)
    cm = _open(s)
    cm.deploy("cancer", f"models:/cancer/{models.linked_v1}")
    db = s.home / "chronoml.db"
    # root ignores file modes: the immutable attribute is what makes the file read-only for
    # it too (the -shm file stays writable: SQLite maps it into memory)
    files = [db, Path(f"{db}-wal")]

    def read_only() -> None:
        if os.geteuid() == 0:
            if not _chattr("+i", files):
                pytest.skip("cannot make a file read-only here (chattr +i not permitted)")
        else:
            for f in files:
                f.chmod(0o444)

    def writable() -> None:
        if os.geteuid() == 0:
            _chattr("-i", files)
        else:
            for f in files:
                f.chmod(0o644)

    try:
        with admin_client(create_app(s, cm)) as c:
            _flaky_store_traffic(c, cm, read_only, writable)
    finally:
        writable()
        cm.close()


@pytest.fixture
def pg_own_role(pg_url: str) -> Iterator[tuple[str, Any, Any]]:
    """A schema reached through a login role of its own, which the test can lock out."""
    from sqlalchemy import create_engine, text

    # the root conftest's URL; importing it by name could pick another folder's conftest
    PG_ADMIN_URL = os.environ.get(
        "CHRONOML_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )

    role = "chronoml_fault_" + uuid.uuid4().hex[:10]
    schema = pg_url.rsplit("search_path%3D", 1)[1]
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE ROLE {role} LOGIN"))
        conn.execute(text(f"GRANT ALL ON SCHEMA {schema} TO {role}"))
    user_url = PG_ADMIN_URL.replace("postgres@", f"{role}@", 1)

    def lock_out() -> None:
        with admin.connect() as conn:
            conn.execute(text(f"ALTER ROLE {role} NOLOGIN"))
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :r"),
                {"r": role},
            )

    def let_in() -> None:
        with admin.connect() as conn:
            conn.execute(text(f"ALTER ROLE {role} LOGIN"))

    try:
        yield f"{user_url}?options=-csearch_path%3D{schema}", lock_out, let_in
    finally:
        let_in()
        with admin.connect() as conn:
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :r"),
                {"r": role},
            )
            conn.execute(text(f"DROP OWNED BY {role} CASCADE"))
            conn.execute(text(f"DROP ROLE {role}"))
        admin.dispose()


def test_postgresql_unreachable_gives_503_then_recovers(
    tmp_path: Path, models: Any, pg_own_role: tuple[str, Any, Any]
) -> None:
    url, lock_out, let_in = pg_own_role
    s = _settings(tmp_path, models, store_url=url)
    cm = _open(s)
    cm.deploy("cancer", f"models:/cancer/{models.linked_v1}")
    try:
        with admin_client(create_app(replace(s, predict_timeout_s=10.0), cm)) as c:
            _flaky_store_traffic(c, cm, lock_out, let_in)
    finally:
        cm.close()
