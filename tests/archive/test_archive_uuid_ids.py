"""The archive on a PostgreSQL store whose text ids migration 0022 made ``uuid``: the
files are written from the converted rows, read back the same, and erasure reaches them."""

from __future__ import annotations

import json
from pathlib import Path

from archive_support import log
from click.testing import CliRunner
from sqlalchemy import text

from chronoml.cli import cli
from chronoml.domain.archive import parse_target
from chronoml.evidence import audit
from chronoml.store import Store
from chronoml.store import archive as SA
from chronoml.store import decisions as D


def _id_type(store: Store) -> str:
    with store.read() as conn:
        q = "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
        q += "WHERE attrelid = to_regclass('decisions') AND attname = 'id'"
        return str(conn.execute(text(q)).scalar_one())


def test_archive_read_back_and_erasure_after_converting(pg_url: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    store = Store.open(pg_url, home)
    store.upgrade("0021")
    layouts = D.Layouts(store)
    ids = log(store, layouts, 40, 1_000_000, "a")
    before = {i: D.get(store, i) for i in ids}
    store.upgrade()
    assert _id_type(store) == "uuid"
    got = SA.archive(store, layouts, 10**9, parse_target(f"file://{tmp_path / 'o'}"), settle_us=0)
    assert got.rows == len(ids)
    assert {i: D.get(store, i) for i in ids} == before  # read back from the file
    assert audit.verify(store, decisions=True).ok
    store.close()
    unit = next(r.unit for r in before.values() if r is not None and r.unit)
    r = CliRunner().invoke(
        cli, ["--home", str(home), "--store", pg_url, "erase", "--unit", unit, "--json"]
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["decisions"] >= 1
    store = Store.open(pg_url, home)
    try:
        assert audit.verify(store, decisions=True).ok
        erased = [i for i, b in before.items() if b is not None and b.unit == unit]
        assert all(D.get(store, i) is not None for i in erased)
    finally:
        store.close()
