"""Erasure and retention reach archived decisions: each Parquet file holding a subject's
inputs is rewritten without them and replaces the old one, whose object is deleted, while
``audit verify --decisions`` and every proof still pass. On a folder and on a real
S3-compatible server (SeaweedFS), and through a kill -9 mid-erasure."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import create_engine, select, text

from chronoml.cli import cli
from chronoml.domain import ledger as L
from chronoml.domain.archive import Target, parse_target
from chronoml.evidence import audit
from chronoml.store import Store, schema
from chronoml.store import archive as SA
from chronoml.store import archive_erasure as AE
from chronoml.store import blocks as SB
from chronoml.store import decisions as D
from chronoml.store import ledger as SL
from chronoml.store.archive_objects import open_objects
from chronoml.store.archive_schema import live
from chronoml.verify import main as verify_main

T0 = 1_767_225_600_000_000
CUT = T0 + 1_000  # decisions before it are archived
MARK = 31415.926535897932  # the subject's input value
OTHER = 27182.818284590452  # another subject's: stays
TEXT_MARK = "erase-marker-Zq9w"
CTX_MARK = "ctx-marker-Kp3v"
SCHEMA = (("x", "float"), ("y", "int"), ("name", "string"))
MARKERS = (struct.pack("<d", MARK), TEXT_MARK.encode(), CTX_MARK.encode())


def run(home: Path, url: str, *args: str) -> Result:
    base = ["--home", str(home)]
    if not url.startswith("sqlite"):
        base += ["--store", url]
    return CliRunner().invoke(cli, [*base, *args], catch_exceptions=False)


def _open(home: Path, url: str) -> Store:
    return Store.open(
        url if not url.startswith("sqlite") else f"sqlite:///{home / 'chronoml.db'}", home
    )


def _row(i: int, ts: int, seq: int, unit: str) -> tuple[Any, ...]:
    mine = unit == "subject-7"
    num = struct.pack("<dq", MARK if mine else OTHER, 7 + i)
    name = TEXT_MARK if mine else f"someone-{i % 3}"
    ctx = orjson.dumps({"email": CTX_MARK}).decode() if mine else None
    return (
        f"0190a000-0000-7000-8000-{i:012d}", ts, "churn", "a", "churn", "1", seq, False, unit, f"0190a000-0000-7000-9000-{i:012d}", "lay1",
        num, orjson.dumps([name]).decode(), "0.5", 0.5, 1.25, None, ctx,
    )  # fmt: skip


def _fill(home: Path, url: str) -> None:
    """300 decisions before the cut (archived in two files: 199 and 101 rows) and 20
    after it; subject-7's every tenth."""
    assert run(home, url, "db", "upgrade").exit_code == 0
    store = _open(home, url)
    try:
        model = L.ModelRef("churn", "1", None, "ab" * 32)
        v = L.Variant(name="a", model=model, weight=0, shadow=False)
        change = L.Change("deploy", "churn", "alice", {"variant": v.to_dict()})
        ev = SL.append(store, change, now=T0)
        D.Layouts(store).ensure("lay1", SCHEMA)
        app = D.Appender(store)
        rows = [
            _row(i, T0 + 10 + 3 * i if i < 300 else CUT + i, ev.seq, _unit(i)) for i in range(320)
        ]
        app.append(rows)
        app.close()
        SB.compact(store, upto=CUT + 315)  # subject-7's live decisions are in a block too
    finally:
        store.close()


def _unit(i: int) -> str:
    return "subject-7" if i % 10 == 0 else f"other-{i % 7}"


def _archive(home: Path, url: str, target: Target) -> None:
    store = _open(home, url)
    try:
        got = SA.archive(store, D.Layouts(store), CUT, target, settle_us=0, chunk_rows=200)
        assert got.rows == 300 and got.files == 2
    finally:
        store.close()


def _object_bytes(target: Target) -> dict[str, bytes]:
    """Every object of the target: its bytes, and its decoded values (Parquet compresses
    them, so a plain byte search would not see them either way)."""
    objs = open_objects(target)
    out = {}
    names = objs.keys()  # an object store's listing, not a mapping
    for key in names:
        data = objs.get(key)
        table = pq.read_table(pa.BufferReader(data))
        values = [str(v).encode() for col in table.columns for v in col.to_pylist()]
        floats = [
            struct.pack("<d", v)
            for col in table.columns
            for v in col.to_pylist()
            if isinstance(v, float)
        ]
        out[key] = b"\x00".join([data, *values, *floats])
    return out


def _db_bytes(home: Path, url: str) -> bytes:
    if url.startswith("sqlite"):
        return b"".join(p.read_bytes() for p in sorted(home.glob("chronoml.db*")))
    store = _open(home, url)
    try:
        out = []
        with store.read() as conn:
            for table in (schema.decisions, schema.decision_blocks, schema.outcome_blocks,
                          schema.decision_context, schema.ledger_events):  # fmt: skip
                for row in conn.execute(select(table)):
                    out += [bytes(v) if isinstance(v, bytes | memoryview) else str(v).encode()
                            for v in row]  # fmt: skip
        return b"\x00".join(out)
    finally:
        store.close()


def _live_files(home: Path, url: str) -> set[str]:
    store = _open(home, url)
    try:
        with store.read() as conn:
            q = select(schema.archive_files.c.sha256).where(live())
            return {f"{s}.parquet" for s in conn.execute(q).scalars()}
    finally:
        store.close()


def _erase_and_check(home: Path, url: str, target: Target, tmp_path: Path) -> None:
    before = _object_bytes(target)
    assert len(before) == 2
    store = _open(home, url)
    try:
        logged = D.count(store, "churn")
    finally:
        store.close()
    for m in MARKERS:  # each marker is there to find, in the files and in the database
        assert any(m in b for b in before.values()), m
    r = run(home, url, "erase", "--unit", "subject-7", "--json")
    assert r.exit_code == 0, r.output
    got = json.loads(r.output)
    assert got["decisions"] == 32 and got["endpoints"] == {"churn": 32}
    after = _object_bytes(target)
    # the old objects are gone; what is left is what readers use
    assert set(after) == _live_files(home, url) and not set(after) & set(before)
    for m in MARKERS:
        assert not any(m in b for b in after.values()), m
        assert m not in _db_bytes(home, url), m
    assert all(struct.pack("<d", OTHER) in b for b in after.values())  # others' stay
    # the replacements: the old files' rows and log entries stay, superseded
    store = _open(home, url)
    try:
        with store.read() as conn:
            reps = conn.execute(select(schema.archive_replacements)).mappings().all()
        assert {f"{r['old_sha256']}.parquet" for r in reps} == set(before)
        assert all(r["reason"] == "subject" and r["old_deleted_at"] for r in reps)
        assert SA.status(store)["endpoints"][0]["files"] == 2
        assert D.count(store, "churn") == logged  # the replaced files are not counted again
        # windows over the archive read the erased inputs as missing
        w = D.window(store, D.Layouts(store), "churn", T0, CUT)
        xs = w.columns["x"].tolist()
        assert w.rows == 300 and MARK not in xs and xs.count(OTHER) == 270
        assert sum(v != v for v in w.columns["y"].tolist()) == 30
    finally:
        store.close()
    r = run(home, url, "audit", "verify", "--decisions")
    assert r.exit_code == 0, r.output
    r = run(home, url, "decision", "0190a000-0000-7000-8000-000000000010")  # an archived decision
    assert r.exit_code == 0, r.output
    assert "inputs    erased at" in r.output and " by os:" in r.output
    assert TEXT_MARK not in r.output
    vkey = run(home, url, "audit", "key").output.strip()
    out = tmp_path / "bundle"
    r = run(
        home,
        url,
        "audit",
        "export",
        "--decision",
        "0190a000-0000-7000-8000-000000000010",
        "--out",
        str(out),
    )
    assert r.exit_code == 0, r.output
    assert verify_main([str(out), "--key", vkey]) == 0
    # erasing again finds nothing left, and rewrites nothing
    r = run(home, url, "erase", "--unit", "subject-7", "--json")
    assert json.loads(r.output)["decisions"] == 0
    assert set(_object_bytes(target)) == set(after)


def test_erasure_rewrites_the_archive_files_in_a_folder(store_url: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    _fill(home, store_url)
    target = parse_target(f"file://{tmp_path / 'objects'}")
    _archive(home, store_url, target)
    _erase_and_check(home, store_url, target, tmp_path)


def test_erasure_rewrites_the_archive_files_in_s3(
    s3_server: Any, s3_keys: dict[str, str], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'home' / 'chronoml.db'}"
    home = tmp_path / "home"
    _fill(home, url)
    target = parse_target(
        f"s3://{s3_server.bucket}/erasure-{tmp_path.name}",
        endpoint_url=s3_server.endpoint_url,
        access_key="${CHRONOML_TEST_S3_KEY}",
        secret_key="${CHRONOML_TEST_S3_SECRET}",
    )
    _archive(home, url, target)
    _erase_and_check(home, url, target, tmp_path)


def test_retention_rewrites_old_archive_files_once(store_url: str, tmp_path: Path) -> None:
    from chronoml.privacy import erasure
    from chronoml.service import Chronoml
    from chronoml.settings import Settings

    home = tmp_path / "home"
    _fill(home, store_url)
    target = parse_target(f"file://{tmp_path / 'objects'}")
    _archive(home, store_url, target)
    store = _open(home, store_url)
    try:
        s = Settings.from_env(
            {}, home=home, store_url=None if store_url.startswith("sqlite") else store_url
        )
        cm = Chronoml(s, store)
        # decisions 0..198 are past their retention: the first file, and none of the second
        cut = T0 + 10 + 3 * 199
        got = erasure.erase_older(cm, 1_000, "monitor:retention", now=cut + 1_000)
        assert got.decisions == 199
        with store.read() as conn:
            reps = conn.execute(select(schema.archive_replacements)).mappings().all()
        assert len(reps) == 1 and reps[0]["erased_before"] == cut
        fresh = pq.read_table(
            pa.BufferReader(open_objects(target).get(reps[0]["new_sha256"] + ".parquet"))
        )
        assert fresh.num_rows == 199 and set(fresh.column("txt").to_pylist()) == {None}
        assert set(fresh.column("context").to_pylist()) == {None}
        first = D.get(store, "0190a000-0000-7000-8000-000000000005")
        assert first is not None and first.txt is None and first.output == "0.5"
        kept = D.get(store, "0190a000-0000-7000-8000-000000000205")
        assert kept is not None and kept.txt is not None
        assert (cm.decision("0190a000-0000-7000-8000-000000000005").inputs_erased or {})[
            "reason"
        ] == "retention"
        # the next pass reads and rewrites nothing
        assert erasure.erase_older(cm, 1_000, "monitor:retention", now=cut + 1_000).decisions == 0
        with store.read() as conn:
            assert len(conn.execute(select(schema.archive_replacements)).all()) == 1
        assert audit.verify(store, decisions=True).ok
    finally:
        store.close()


def test_a_crash_after_the_commit_leaves_the_old_object_for_the_next_sweep(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    _fill(home, store_url)
    target = parse_target(f"file://{tmp_path / 'objects'}")
    _archive(home, store_url, target)
    old = set(_object_bytes(target))
    # the process stops right after the erasure commits: its sweep never runs
    monkeypatch.setattr(AE, "sweep", lambda store: 0)
    assert run(home, store_url, "erase", "--unit", "subject-7").exit_code == 0
    monkeypatch.undo()
    objects = set(_object_bytes(target))
    assert old < objects  # the replaced objects are still there ...
    assert run(home, store_url, "audit", "verify", "--decisions").exit_code == 0
    r = run(home, store_url, "decision", "0190a000-0000-7000-8000-000000000010", "--json")
    assert json.loads(r.output)["inputs_erased"]["reason"] == "subject"  # ... and unused
    # the next archive run (or erasure) deletes them
    r = run(home, store_url, "archive", "--before", "2026-01-01", "--to", target.url)
    assert r.exit_code == 0, r.output
    assert set(_object_bytes(target)) == _live_files(home, store_url) == objects - old


def _env(home: Path, store_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env["CHRONOML_HOME"] = str(home)
    env.pop("CHRONOML_STORE", None)
    if not store_url.startswith("sqlite"):
        env["CHRONOML_STORE"] = store_url
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


def test_kill_9_between_the_new_file_and_the_commit_leaves_a_consistent_store(
    store_url: str, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    _fill(home, store_url)
    target = parse_target(f"file://{home / 'archive'}")  # the default target
    _archive(home, store_url, target)
    old = set(_object_bytes(target))
    # hold the lock the erasure's commit needs: it writes and checks its files, then waits
    if store_url.startswith("sqlite"):
        blocker: Any = sqlite3.connect(home / "chronoml.db", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
    else:
        engine = create_engine(store_url)
        blocker = engine.connect()
        blocker.execute(text("SELECT seq FROM ledger_head WHERE id = 1 FOR UPDATE"))
    cmd = [sys.executable, "-m", "chronoml", "erase", "--unit", "subject-7"]
    errors = tmp_path / "stderr.txt"
    with errors.open("wb") as err:
        proc = subprocess.Popen(cmd, env=_env(home, store_url), stderr=err)
    folder = home / "archive"
    try:
        deadline = time.monotonic() + 120
        while len([p for p in folder.iterdir() if p.suffix == ".parquet"]) < 4:
            assert proc.poll() is None, errors.read_text()
            assert time.monotonic() < deadline, "no new archive file was written"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if store_url.startswith("sqlite"):
            blocker.execute("ROLLBACK")
            blocker.close()
        else:
            blocker.rollback()
            blocker.close()
            engine.dispose()
    assert proc.returncode == -signal.SIGKILL
    # nothing was committed: the old files are in use, the new ones are orphans
    assert _live_files(home, store_url) == old
    store = _open(home, store_url)
    try:
        assert audit.verify(store, decisions=True).ok
        row = D.get(store, "0190a000-0000-7000-8000-000000000010")
        assert row is not None and row.txt is not None and TEXT_MARK in row.txt
    finally:
        store.close()
    # erasing again completes: it writes the same new files, and the old ones go
    r = run(home, store_url, "erase", "--unit", "subject-7", "--json")
    assert r.exit_code == 0 and json.loads(r.output)["decisions"] == 32, r.output
    left = _object_bytes(target)
    assert set(left) == _live_files(home, store_url) and not set(left) & old
    for m in MARKERS:
        assert not any(m in b for b in left.values()), m
    assert run(home, store_url, "audit", "verify", "--decisions").exit_code == 0


def test_an_erasure_while_a_file_is_archived_reaches_the_rows_it_read(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    _fill(home, store_url)
    target = parse_target(f"file://{tmp_path / 'objects'}")
    real = SA.write_file
    erased: list[Result] = []

    def write_then_erase(*args: Any, **kw: Any) -> SA.Written:
        written = real(*args, **kw)  # a file of rows read before the erasure
        if not erased:
            erased.append(run(home, store_url, "erase", "--unit", "subject-7"))
        return written

    monkeypatch.setattr(SA, "write_file", write_then_erase)
    store = _open(home, store_url)
    try:
        got = SA.archive(store, D.Layouts(store), CUT, target, settle_us=0, chunk_rows=200)
        assert erased[0].exit_code == 0, erased[0].output
        assert got.rows == 300  # the first chunk was read again, after the erasure
        assert audit.verify(store, decisions=True).ok
    finally:
        store.close()
    left = _object_bytes(target)
    assert set(left) == _live_files(home, store_url)  # the refused file was deleted
    for m in MARKERS:
        assert not any(m in b for b in left.values()), m


def test_inputs_erased_before_archiving_are_not_in_the_files_and_not_read_again(
    store_url: str, tmp_path: Path
) -> None:
    from chronoml.privacy import erasure
    from chronoml.service import Chronoml
    from chronoml.settings import Settings

    home = tmp_path / "home"
    _fill(home, store_url)
    target = parse_target(f"file://{tmp_path / 'objects'}")
    store = _open(home, store_url)
    try:
        s = Settings.from_env(
            {}, home=home, store_url=None if store_url.startswith("sqlite") else store_url
        )
        cm = Chronoml(s, store)
        assert erasure.erase_older(cm, 1_000, "monitor:retention", now=CUT + 1_000).decisions == 300
    finally:
        store.close()
    _archive(home, store_url, target)
    for m in MARKERS:  # what retention erased never reaches a file
        assert not any(m in b for b in _object_bytes(target).values()), m
    store = _open(home, store_url)
    try:
        cm = Chronoml(s, store)
        assert erasure.erase_older(cm, 1_000, "monitor:retention", now=CUT + 1_000).decisions == 0
        with store.read() as conn:
            assert conn.execute(select(schema.archive_replacements)).all() == []
            cleared = conn.execute(select(schema.archive_cleared)).all()
        assert {f"{sha}.parquet" for sha, _ in cleared} == _live_files(home, store_url)
        assert all(before == CUT for _, before in cleared)
        assert audit.verify(store, decisions=True).ok
    finally:
        store.close()


def test_an_edited_replacement_is_named_by_verify(store_url: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    _fill(home, store_url)
    target = parse_target(f"file://{tmp_path / 'objects'}")
    _archive(home, store_url, target)
    assert run(home, store_url, "erase", "--unit", "subject-7").exit_code == 0
    store = _open(home, store_url)
    R = schema.archive_replacements
    try:
        with store.read() as conn:
            first, second = conn.execute(select(R.c.old_sha256, R.c.new_sha256)).all()
        # an insider points one replacement at the other file (which holds other decisions)
        with store.write() as conn:
            conn.execute(R.update().where(R.c.old_sha256 == first[0]).values(new_sha256=second[1]))
        report = audit.verify(store)
        assert not report.ok and report.first_bad == f"archive file {first[0]}"
        assert "holds other decisions" in report.reason
        # ... or drops the replacements: the replaced files are read again, and are gone
        with store.write() as conn:
            conn.execute(R.delete())
        report = audit.verify(store, decisions=True)
        assert not report.ok and "missing" in report.reason, report.reason
    finally:
        store.close()
