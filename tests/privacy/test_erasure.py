"""``chronoml erase`` and ``retention run``: a subject's inputs leave every stored byte,
while ``audit verify --decisions`` and an offline proof still pass."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from chronoml.cli import cli
from chronoml.domain import ledger as L
from chronoml.store import Store, schema
from chronoml.store import blocks as SB
from chronoml.store import decisions as D
from chronoml.store import ledger as SL
from chronoml.store import outcomes as O
from chronoml.verify import main as verify_main

T0 = 1_767_225_600_000_000
MARK = 31415.926535897932  # the subject's input value
OTHER = 27182.818284590452  # another subject's: stays
TEXT_MARK = "erase-marker-Zq9w"
CTX_MARK = "ctx-marker-Kp3v"
LATER_MARK = "later-ctx-marker-Hh2"
SCHEMA = (("x", "float"), ("y", "int"), ("name", "string"))


def run(home: Path, url: str, *args: str) -> Result:
    base = ["--home", str(home)]
    if not url.startswith("sqlite"):
        base += ["--store", url]
    return CliRunner().invoke(cli, [*base, *args], catch_exceptions=False)


def _row(i: int, ts: int, seq: int, unit: str, x: float, name: str, ctx: str | None) -> tuple:
    num = struct.pack("<dq", x, 7 + i)
    return (
        f"0190a000-0000-7000-8000-{i:012d}", ts, "churn", "a", "churn", "1", seq, False, unit, f"0190a000-0000-7000-9000-{i:012d}", "lay1", num,
        orjson.dumps([name]).decode(), "0.5", 0.5, 1.25, None, ctx,
    )  # fmt: skip


def _fill(store: Store) -> None:
    model = L.ModelRef("churn", "1", None, "ab" * 32)
    v = L.Variant(name="a", model=model, weight=0, shadow=False)
    ev = SL.append(store, L.Change("deploy", "churn", "alice", {"variant": v.to_dict()}), now=T0)
    D.Layouts(store).ensure("lay1", SCHEMA)
    app = D.Appender(store)
    ctx = orjson.dumps({"email": CTX_MARK}).decode()
    # an old batch, compacted into a block below, and a newer one left as rows
    app.append([
        # long enough to spill into overflow pages, which erasure frees
        _row(0, T0 + 10, ev.seq, "subject-7", MARK, TEXT_MARK * 400, ctx),
        _row(1, T0 + 10, ev.seq, "other-1", OTHER, "someone-else", None),
        _row(2, T0 + 11, ev.seq, "other-1", OTHER, "someone-else", None),
    ])  # fmt: skip
    SB.compact(store, upto=T0 + 100)
    app.append([
        _row(3, T0 + 200, ev.seq, "subject-7", MARK, TEXT_MARK, ctx),
        _row(4, T0 + 201, ev.seq, "other-1", OTHER, "someone-else", None),
    ])  # fmt: skip
    app.close()
    with store.write() as conn:  # context sent later, with feedback
        O.add_context(
            conn,
            [("0190a000-0000-7000-8000-000000000003", {"note": LATER_MARK})],
            actor="bob",
            at=T0 + 300,
        )


@pytest.fixture
def home(tmp_path: Path, store_url: str) -> Path:
    h = tmp_path / "home"
    assert run(h, store_url, "db", "upgrade").exit_code == 0
    store = _open(h, store_url)
    _fill(store)
    store.close()
    return h


def _open(home: Path, url: str) -> Store:
    return Store.open(
        url if not url.startswith("sqlite") else f"sqlite:///{home / 'chronoml.db'}", home
    )


def _stored_bytes(home: Path, url: str) -> bytes:
    """Every byte the store keeps: the SQLite files, or every row of the tables that hold
    inputs on PostgreSQL (whose files this test cannot read)."""
    if url.startswith("sqlite"):
        return b"".join(p.read_bytes() for p in sorted(home.glob("chronoml.db*")))
    store = _open(home, url)
    try:
        out = []
        with store.read() as conn:
            for table in (schema.decisions, schema.ingest_blocks, schema.decision_blocks,
                          schema.outcome_blocks,
                          schema.decision_context, schema.explanations,
                          schema.ledger_events):  # fmt: skip
                for row in conn.execute(select(table)):
                    for v in row:
                        out.append(
                            bytes(v) if isinstance(v, bytes | memoryview) else str(v).encode()
                        )
        return b"\x00".join(out)
    finally:
        store.close()


MARKERS = (struct.pack("<d", MARK), TEXT_MARK.encode(), CTX_MARK.encode(), LATER_MARK.encode())


def test_erasure_removes_every_copy_and_keeps_every_proof(
    home: Path, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a server holding the store open: SQLite keeps its WAL (and old pages in it) meanwhile
    server = _open(home, store_url)
    with server.read() as conn:
        conn.execute(select(schema.decisions.c.id)).all()
    before = _stored_bytes(home, store_url)
    for m in MARKERS:  # the markers are there to find: rows, block, WAL, later context
        assert m in before, m
    r = run(home, store_url, "erase", "--unit", "subject-7", "--json")
    assert r.exit_code == 0, r.output
    got = json.loads(r.output)
    assert got["decisions"] == 2 and got["endpoints"] == {"churn": 2}
    assert got["unit_hash"].startswith("h:") and "subject-7" not in r.output
    after = _stored_bytes(home, store_url)
    for m in MARKERS:
        assert m not in after, m
    assert struct.pack("<d", OTHER) in after  # another subject's inputs stay
    assert b"subject-7" in after  # the unit key itself stays (hash it by policy to avoid that)
    server.close()
    # the erasure event is on the ledger, with no personal data
    store = _open(home, store_url)
    try:
        (ev,) = [e for e in SL.history(store, "churn") if e.kind == "erasure"]
        assert ev.payload == {"reason": "subject", "unit_hash": got["unit_hash"], "decisions": 2}
        # window reads: the erased rows read as missing, in blocks and in rows alike
        w = D.window(store, D.Layouts(store), "churn", T0, T0 + 1000)
        xs = sorted(w.columns["x"].tolist(), key=str)
        assert w.rows == 5 and xs.count(OTHER) == 3 and MARK not in xs
        assert sum(v != v for v in w.columns["y"].tolist()) == 2  # an int column: NaN too
        assert O.contexts(store, ["0190a000-0000-7000-8000-000000000003"]).get(
            "0190a000-0000-7000-8000-000000000003"
        ) in (None, {})
    finally:
        store.close()
    r = run(home, store_url, "audit", "verify", "--decisions")
    assert r.exit_code == 0, r.output
    r = run(home, store_url, "decision", "0190a000-0000-7000-8000-000000000003")
    assert r.exit_code == 0, r.output
    assert "inputs    erased at" in r.output and " by os:" in r.output
    # an inclusion proof of the erased decision still verifies offline
    vkey = run(home, store_url, "audit", "key").output.strip()
    out = tmp_path / "bundle"
    r = run(
        home,
        store_url,
        "audit",
        "export",
        "--decision",
        "0190a000-0000-7000-8000-000000000000",
        "--out",
        str(out),
    )
    assert r.exit_code == 0, r.output
    capsys.readouterr()
    assert verify_main([str(out), "--key", vkey]) == 0
    assert "inputs erased" in capsys.readouterr().out
    # erasing again finds nothing left
    r = run(home, store_url, "erase", "--unit", "subject-7", "--json")
    assert json.loads(r.output)["decisions"] == 0


def test_retention_erases_old_inputs_and_keeps_outputs(home: Path, store_url: str) -> None:
    store = _open(home, store_url)
    try:
        from chronoml.privacy import erasure
        from chronoml.service import Chronoml
        from chronoml.settings import Settings

        s = Settings.from_env(
            {}, home=home, store_url=None if store_url.startswith("sqlite") else store_url
        )
        cm = Chronoml(s, store)
        # everything before T0 + 150 is past its retention: decisions 0, 1 and 2
        got = erasure.erase_older(cm, 1_000, "monitor:retention", now=T0 + 1_150)
        assert got.decisions == 3 and got.as_dict()["decisions"] == 3
        rows = {i: D.get(store, f"0190a000-0000-7000-8000-{i:012d}") for i in range(5)}
        assert rows[0] is not None and rows[0].output == "0.5"  # the output stays
        assert all(r is not None and r.txt is None for i, r in rows.items() if i < 3)
        assert rows[3] is not None and rows[3].txt is not None  # newer inputs stay
        (ev,) = [e for e in SL.history(store, "churn") if e.kind == "erasure"]
        assert ev.payload["reason"] == "retention" and ev.actor == "monitor:retention"
        assert (cm.decision("0190a000-0000-7000-8000-000000000001").inputs_erased or {})[
            "reason"
        ] == "retention"
    finally:
        store.close()
    assert run(home, store_url, "audit", "verify", "--decisions").exit_code == 0
    r = run(home, store_url, "retention", "run", "--retain-inputs", "soon")
    assert r.exit_code == 1 and "retain_inputs" in r.output


def test_privacy_set_and_show_from_the_cli(home: Path, store_url: str) -> None:
    r = run(
        home, store_url, "privacy", "set", "churn", "--context", "email=drop", "--unit-key", "hash"
    )
    assert r.exit_code == 0, r.output
    assert "context email: drop" in r.output and "unit key: hash" in r.output
    assert "by os:" in r.output
    r = run(home, store_url, "privacy", "show", "churn", "--json")
    got = json.loads(r.output)
    assert got["context"] == {"email": "drop"} and got["unit_key"] == "hash"
    # the secret was created private, and is not what show prints
    key = home / "privacy.key"
    assert key.stat().st_mode & 0o077 == 0 and key.read_text().strip() not in r.output
    for args, named in (
        (["--feature", "x=shred"], "shred"),
        (["--context", "email"], "NAME=keep|hash|drop"),
        (["--unit-key", "drop"], "drop"),
    ):
        r = run(home, store_url, "privacy", "set", "churn", *args)
        assert r.exit_code != 0 and named in r.output, r.output
    r = run(home, store_url, "privacy", "set", "nowhere", "--context", "a=drop")
    assert r.exit_code == 1 and "unknown endpoint 'nowhere'" in r.output
    r = run(home, store_url, "erase", "--unit", "")
    assert r.exit_code == 1 and "unit" in r.output


def test_erasure_removes_the_context_from_outcome_blocks(tmp_path: Path, store_url: str) -> None:
    """Compaction keeps a copy of each block's context for fairness (outcome blocks):
    erasing a subject must not leave its context there."""
    from chronoml.ids import new_id

    home = tmp_path / "home"
    assert run(home, store_url, "db", "upgrade").exit_code == 0
    store = _open(home, store_url)
    try:
        model = L.ModelRef("churn", "1", None, "ab" * 32)
        v = L.Variant(name="a", model=model, weight=0, shadow=False)
        change = L.Change("deploy", "churn", "alice", {"variant": v.to_dict()})
        ev = SL.append(store, change, now=T0)
        D.Layouts(store).ensure("lay1", SCHEMA)
        ctx = orjson.dumps({"email": CTX_MARK}).decode()
        rows = []
        for i, (unit, c) in enumerate([("subject-7", ctx), ("other-1", None), ("other-1", None)]):
            r = list(_row(i, T0 + 10 + i, ev.seq, unit, MARK if c else OTHER, "n", c))
            r[0] = new_id()  # ids of the width outcome blocks keep
            rows.append(tuple(r))
        app = D.Appender(store)
        app.append(rows)
        app.close()
        SB.compact(store, upto=T0 + 100)
        with store.read() as conn:
            kept = conn.execute(select(schema.outcome_blocks.c.contexts)).scalars().all()
        assert any(CTX_MARK in t for t in kept)  # the copy is there to remove
    finally:
        store.close()
    assert run(home, store_url, "erase", "--unit", "subject-7").exit_code == 0
    store = _open(home, store_url)
    try:
        with store.read() as conn:
            kept = conn.execute(select(schema.outcome_blocks.c.contexts)).scalars().all()
        assert not any(CTX_MARK in t for t in kept)
    finally:
        store.close()
    assert CTX_MARK.encode() not in _stored_bytes(home, store_url)
    assert run(home, store_url, "audit", "verify", "--decisions").exit_code == 0


def test_an_erasure_puts_the_connections_secure_delete_back(tmp_path: Path) -> None:
    """SQLite zeroes freed bytes only with ``secure_delete`` on (this build's default);
    an erasure or a retention pass turns it on for its transaction and must leave the
    pooled connection as it found it, not off for everything that frees pages next."""
    from chronoml.privacy import erasure
    from chronoml.service import Chronoml
    from chronoml.settings import Settings

    home = tmp_path / "home"
    url = f"sqlite:///{home / 'chronoml.db'}"
    assert run(home, url, "db", "upgrade").exit_code == 0
    store = _open(home, url)
    try:
        _fill(store)
        cm = Chronoml(Settings.from_env({}, home=home, store_url=None), store)

        def secure_delete() -> int:
            with store.write() as conn:
                return int(conn.exec_driver_sql("PRAGMA secure_delete").scalar_one())

        with store.write() as conn:
            conn.exec_driver_sql("PRAGMA secure_delete=ON")
        assert secure_delete() == 1
        assert erasure.erase_unit(cm, "subject-7", "bob").decisions == 2
        assert secure_delete() == 1
        assert erasure.erase_older(cm, 1_000, "monitor:retention", now=T0 + 1_150).decisions
        assert secure_delete() == 1
    finally:
        store.close()
