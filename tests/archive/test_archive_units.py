"""Archive files carry an index of their unit keys: erasing a subject opens only the files
that may hold it, the index is committed by the file's evidence leaf (an edited index is
named by ``audit verify``), and files are cut at ``file_rows`` decisions."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from click.testing import CliRunner, Result
from sqlalchemy import select, update

from chronoml.cli import cli
from chronoml.domain import ledger as L
from chronoml.domain.archive import Target, may_hold, parse_target, unit_index
from chronoml.store import Store, schema
from chronoml.store import archive as SA
from chronoml.store import decisions as D
from chronoml.store import ledger as SL
from chronoml.store.archive_schema import live

T0 = 1_767_225_600_000_000
CUT = T0 + 10_000
MARK = 31415.926535897932  # the subject's input value
SCHEMA = (("x", "float"), ("name", "string"))
F = schema.archive_files
U = schema.archive_units


def run(home: Path, url: str, *args: str) -> Result:
    base = ["--home", str(home)]
    if not url.startswith("sqlite"):
        base += ["--store", url]
    return CliRunner().invoke(cli, [*base, *args], catch_exceptions=False)


def _open(home: Path, url: str) -> Store:
    return Store.open(
        url if not url.startswith("sqlite") else f"sqlite:///{home / 'chronoml.db'}", home
    )


def _unit(i: int) -> str:
    # the subject only among the first 100 decisions: in the first of three files
    return "subject-7" if i < 100 and i % 10 == 0 else f"other-{i // 100}-{i % 7}"


def _fill_and_archive(home: Path, url: str, target: Target) -> None:
    """300 decisions archived into three files of 100."""
    assert run(home, url, "db", "upgrade").exit_code == 0
    store = _open(home, url)
    try:
        model = L.ModelRef("churn", "1", None, "ab" * 32)
        v = L.Variant(name="a", model=model, weight=0, shadow=False)
        ev = SL.append(
            store, L.Change("deploy", "churn", "alice", {"variant": v.to_dict()}), now=T0
        )
        D.Layouts(store).ensure("lay1", SCHEMA)
        rows: list[Any] = []
        for i in range(300):
            unit = _unit(i)
            num = struct.pack("<d", MARK if unit == "subject-7" else 1.0 + i)
            rows.append(
                (
                    f"0190a000-0000-7000-8000-{i:012d}", T0 + 10 + 3 * i, "churn", "a", "churn", "1", ev.seq, False,
                    unit, f"0190a000-0000-7000-9000-{i:012d}", "lay1", num, json.dumps([f"name-{i}"]), "0.5", 0.5, 1.0,
                    None, None,
                )
            )  # fmt: skip
        app = D.Appender(store)
        app.append(rows)
        app.close()
        got = SA.archive(store, D.Layouts(store), CUT, target, settle_us=0, file_rows=100)
        assert got.rows == 300 and got.files == 3
    finally:
        store.close()


def _files(home: Path, url: str) -> list[Any]:
    store = _open(home, url)
    try:
        with store.read() as conn:
            q = select(F, U.c.units).join(U, U.c.sha256 == F.c.sha256).where(live())
            return list(conn.execute(q.order_by(F.c.ts_min)).mappings().all())
    finally:
        store.close()


def test_files_are_cut_at_file_rows_and_index_their_unit_keys(
    store_url: str, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    target = parse_target(f"file://{tmp_path / 'objects'}")
    _fill_and_archive(home, store_url, target)
    files = _files(home, store_url)
    assert [f["rows"] for f in files] == [100, 100, 100]
    for k, f in enumerate(files):
        units = {_unit(i) for i in range(100 * k, 100 * (k + 1))}
        assert bytes(f["units"]) == unit_index(units)
        assert all(may_hold(bytes(f["units"]), u) for u in units)
        assert may_hold(bytes(f["units"]), "subject-7") == (k == 0)
        assert not may_hold(bytes(f["units"]), "nobody")
    store = _open(home, store_url)
    try:  # the archived window reads back every decision, in order
        w = D.window(store, D.Layouts(store), "churn", T0, CUT)
        assert w.rows == 300 and w.columns["x"].tolist().count(MARK) == 10
    finally:
        store.close()
    r = run(home, store_url, "audit", "verify", "--decisions")
    assert r.exit_code == 0, r.output


def test_erasing_a_subject_opens_only_the_files_that_may_hold_it(
    store_url: str, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    objects = tmp_path / "objects"
    target = parse_target(f"file://{objects}")
    _fill_and_archive(home, store_url, target)
    first, *others = _files(home, store_url)
    # the files without the subject are taken away: the erasure must not need them
    aside = tmp_path / "aside"
    aside.mkdir()
    for f in others:
        shutil.move(objects / f"{f['sha256']}.parquet", aside)
    r = run(home, store_url, "erase", "--unit", "subject-7", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["decisions"] == 10
    now = _files(home, store_url)
    assert [f["sha256"] for f in now[1:]] == [f["sha256"] for f in others]
    new = now[0]
    assert new["sha256"] != first["sha256"] and bytes(new["units"]) == bytes(first["units"])
    data = (objects / f"{new['sha256']}.parquet").read_bytes()
    table = pq.read_table(pa.BufferReader(data))
    assert struct.pack("<d", MARK) not in data
    assert MARK not in table.column("input.x").to_pylist()
    assert not (objects / f"{first['sha256']}.parquet").exists()
    for p in aside.iterdir():
        shutil.move(p, objects)
    r = run(home, store_url, "audit", "verify", "--decisions")
    assert r.exit_code == 0, r.output


def test_an_edited_or_dropped_unit_index_is_named_by_verify(store_url: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    target = parse_target(f"file://{tmp_path / 'objects'}")
    _fill_and_archive(home, store_url, target)
    first = _files(home, store_url)[0]
    # hide the subject's file from erasure: its index without the subject
    hidden = unit_index({_unit(i) for i in range(100)} - {"subject-7"})
    store = _open(home, store_url)
    try:
        with store.write() as conn:
            q = update(U).where(U.c.sha256 == first["sha256"]).values(units=hidden)
            conn.execute(q)
    finally:
        store.close()
    r = run(home, store_url, "audit", "verify")
    assert r.exit_code != 0
    assert first["sha256"] in r.output
    # an index that still names the subject, edited: a rewrite would commit it anew
    edited = unit_index({_unit(i) for i in range(100)} | {"ghost"})
    store = _open(home, store_url)
    try:
        with store.write() as conn:
            q = update(U).where(U.c.sha256 == first["sha256"]).values(units=edited)
            conn.execute(q)
    finally:
        store.close()
    r = run(home, store_url, "erase", "--unit", "subject-7")
    assert r.exit_code != 0
    assert "unit index does not match its evidence leaf" in r.output
    assert first["sha256"] in [f["sha256"] for f in _files(home, store_url)]
    store = _open(home, store_url)
    try:
        with store.write() as conn:
            conn.execute(U.delete().where(U.c.sha256 == first["sha256"]))
    finally:
        store.close()
    r = run(home, store_url, "audit", "verify")
    assert r.exit_code != 0
    assert first["sha256"] in r.output
