"""`chronoml archive` and `chronoml archive status` from the command line; bad input."""

from __future__ import annotations

import json
from pathlib import Path

from archive_support import log
from click.testing import CliRunner

from chronoml.cli.common import cli
from chronoml.store import Store
from chronoml.store import decisions as D
from chronoml.timeutil import parse_time


def _run(home: Path, *args: str) -> tuple[int, str]:
    out = CliRunner().invoke(cli, ["--home", str(home), *args], env={"CHRONOML_STORE": ""})
    return out.exit_code, out.output


def test_archive_and_status(tmp_path: Path) -> None:
    home = tmp_path / "home"
    store = Store.open(f"sqlite:///{home / 'chronoml.db'}", home)
    store.upgrade()
    layouts = D.Layouts(store)
    log(store, layouts, 500, parse_time("2000-01-01"), "a")
    log(store, layouts, 500, parse_time("2000-03-01"), "a")
    code, out = _run(home, "archive", "--before", "2000-02-01")
    assert code == 0, out
    assert "archived 500 decisions of 1 endpoints into 1 files" in out
    assert f"file://{home / 'archive'}" in out
    code, out = _run(home, "archive", "status")
    assert code == 0 and "e: 500 in the database, 500 archived in 1 files" in out
    assert "everything before 2000-02-01" in out and "last archived at" in out
    code, out = _run(home, "archive", "status", "--json")
    got = json.loads(out)["endpoints"][0]
    assert (got["live_decisions"], got["archived_decisions"]) == (500, 500)
    # an earlier cut than the mark archives nothing more; a later one takes the rest
    code, out = _run(home, "archive", "--before", "2000-01-15", "--json")
    assert code == 0 and json.loads(out)["rows"] == 0
    code, out = _run(home, "archive", "--before", "2001-01-01")
    assert code == 0 and "archived 500 decisions" in out
    assert D.count(store, "e") == 1000
    store.close()


def test_bad_input_names_the_option(tmp_path: Path) -> None:
    home = tmp_path / "home"
    Store.open(f"sqlite:///{home / 'chronoml.db'}", home).upgrade()
    code, out = _run(home, "archive")
    assert code == 2 and "--before" in out
    code, out = _run(home, "archive", "--before", "yesterday-ish")
    assert code == 1 and "--before" in out
    # a key in plain text is refused before anything runs, and never stored
    bad = ["--to", "s3://bucket/p", "--s3-access-key", "AKIAPLAINTEXT", "--s3-secret-key", "x"]
    code, out = _run(home, "archive", "--before", "2000-01-01", *bad)
    assert code == 1 and "--s3-access-key" in out and "by reference" in out
    code, out = _run(home, "archive", "--before", "2000-01-01", "--to", "/tmp/relative-ish")
    assert code == 1 and "--to" in out
    code, out = _run(home, "archive", "--before", "2000-01-01", "--to", "s3://Bad_Bucket/x")
    assert code == 1 and "bucket" in out
    code, out = _run(
        home,
        "archive",
        "--before",
        "2000-01-01",
        "--to",
        "file:///x",
        "--s3-endpoint-url",
        "ftp://h",
    )
    assert code == 1 and "--s3-endpoint-url" in out
