"""A small store with every kind of evidence, and what an insider can do to it, for the tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chronoml.domain import ledger as L
from chronoml.domain import note
from chronoml.domain.feedback import Label
from chronoml.evidence import checkpoints as EC
from chronoml.evidence import keys
from chronoml.store import Store
from chronoml.store import decisions as D
from chronoml.store import evidence as SE
from chronoml.store import ledger as SL
from chronoml.store.feedback import record

T0 = 1_767_225_600_000_000


def deploy(endpoint: str, variant: str, version: int = 1, **extra: Any) -> L.Change:
    model = L.ModelRef("churn", str(version), None, f"{version:064d}")
    v = L.Variant(name=variant, model=model, weight=0, shadow=False)
    return L.Change("deploy", endpoint, "alice", {"variant": v.to_dict(), **extra})


@dataclass
class Filled:
    """What :func:`fill` wrote."""

    events: list[L.LedgerEvent]
    decisions: list[str]  # ids, in commit order
    feedback: list[int]
    key: keys.SigningKey
    checkpoint: note.Checkpoint


def _rows(n: int, start: int, seq: int) -> list[D.DecisionTuple]:
    out: list[D.DecisionTuple] = []
    for i in range(start, start + n):
        num = json.dumps([i * 0.5, i]).encode()
        out.append(
            (
                f"0190a000-0000-7000-8000-{i:012d}", T0 + 1_000 + i, "churn", "a", "churn", "1", seq, False,
                f"user-{i % 3}", f"0190a000-0000-7000-9000-{i:012d}", "lay1", num, None, json.dumps(0.25), 0.25, 1.5,
                None, None,
            )
        )  # fmt: skip
    return out


def fill(store: Store, tmp: Path) -> Filled:
    """Five ledger events, three decision commits (one with explanations), two labels,
    and a signed checkpoint of it all."""
    events = [
        SL.append(store, deploy("churn", "a"), now=T0),
        SL.append(store, deploy("churn", "b", 2, weight_bp=5_000), now=T0 + 1),
        SL.append(store, L.Change("alert", "churn", "monitor", {"rule": "drift"}), now=T0 + 2),
        SL.append(
            store,
            L.Change("set_weights", "churn", "bob", {"weights_bp": {"a": 5_000, "b": 5_000}}),
            now=T0 + 3,
        ),
    ]
    app = D.Appender(store)
    ids: list[str] = []
    for start, n in ((0, 4), (4, 1), (5, 6)):
        rows = _rows(n, start, events[-1].seq)
        expl = []
        if start == 4:
            expl = [(rows[0][0], "tree", "raw", 0.5, '{"x":0.1}', '{"method":"none"}', T0 + 9)]
        app.append(rows, expl)
        ids += [r[0] for r in rows]
    app.close()
    record(
        store,
        [
            Label("0190a000-0000-7000-8000-000000000001", 1, None),
            Label("0190a000-0000-7000-8000-000000000002", 0, T0),
        ],
        actor="labeller",
    )
    events.append(
        SL.append(store, L.Change("alert", "churn", "monitor", {"rule": "latency"}), now=T0 + 5)
    )
    with store.read() as conn:
        fb = [
            int(r["id"]) for r in SE.feedback_rows_in(conn, "0190a000-0000-7000-8000-000000000001")
        ]
        fb += [
            int(r["id"]) for r in SE.feedback_rows_in(conn, "0190a000-0000-7000-8000-000000000002")
        ]
    key = keys.create_key_file(tmp / "signing.key", "chronoml.test")
    issued = EC.issue(store, key)
    return Filled(events, ids, fb, key, issued.checkpoint)


TRIGGERS_SQLITE = (
    "ledger_no_update", "ledger_no_delete", "ledger_head_no_rewind", "ledger_head_no_delete",
    "evidence_log_no_update", "evidence_log_no_delete", "evidence_nodes_no_update",
    "evidence_nodes_no_delete", "checkpoints_no_update", "checkpoints_no_delete",
    "evidence_items_no_update", "evidence_items_no_delete", "evidence_head_no_rewind",
    "evidence_head_no_delete",
)  # fmt: skip
TRIGGERS_PG = (
    ("ledger_append_only", "ledger_events"), ("ledger_head_append_only", "ledger_head"),
    ("evidence_head_append_only", "evidence_head"), ("evidence_log_append_only", "evidence_log"),
    ("evidence_nodes_append_only", "evidence_nodes"), ("checkpoints_append_only", "checkpoints"),
    ("evidence_items_append_only", "evidence_items"),
)  # fmt: skip


def drop_guards(store: Store) -> None:
    """What an insider with rights on the database does first."""
    with store.write() as conn:
        if store.is_sqlite:
            for t in TRIGGERS_SQLITE:
                conn.exec_driver_sql(f"DROP TRIGGER {t}")
        else:
            for t, table in TRIGGERS_PG:
                conn.exec_driver_sql(f"DROP TRIGGER {t} ON {table}")


def sql(store: Store, statement: str, params: dict[str, Any] | None = None) -> None:
    """Run one statement with ``:name`` parameters on either store."""
    if not store.is_sqlite:
        for k in params or {}:
            statement = statement.replace(f":{k}", f"%({k})s")
    with store.write() as conn:
        conn.exec_driver_sql(statement, params or {})


def reseal_from(store: Store, seq: int, **changes: Any) -> None:
    """Change event ``seq`` and re-hash the chain from there on, as an insider would."""
    events = list(SL.iter_events(store))
    prev = events[seq - 2].hash if seq > 1 else L.GENESIS_HASH
    for ev in events[seq - 1 :]:
        extra = changes if ev.seq == seq else {}
        forged = L.seal(L.LedgerEvent(**{**ev.__dict__, **extra, "prev_hash": prev, "hash": ""}))
        # hashes are unique: park the old row's first, then write the new one
        sql(store, "UPDATE ledger_events SET hash = :t, prev_hash = :u WHERE seq = :s",
            {"t": f"x{ev.seq}".ljust(64, "x"), "u": f"y{ev.seq}".ljust(64, "y"), "s": ev.seq})  # fmt: skip
        cols = {"h": forged.hash, "p": prev, "a": forged.actor, "s": ev.seq}
        sql(store, "UPDATE ledger_events SET hash = :h, prev_hash = :p, actor = :a WHERE seq = :s",
            cols)  # fmt: skip
        prev = forged.hash
    sql(store, "UPDATE ledger_head SET hash = :h WHERE id = 1", {"h": prev})


def rebuild_evidence(store: Store) -> None:
    """Recompute the evidence log from today's rows with the same entries and batches as
    before (a careful insider's rewrite), and drop the stored checkpoints."""
    from chronoml.domain import leaves as LV
    from chronoml.store import explanations as SX

    with store.read() as conn:
        old = SE.log_entries(conn)
        items = {e[0]: SE.batch_leaves_in(conn, e[0]) for e in old}
        refs = {
            (r[2], r[3]): (r[1], r[5])
            for r in conn.exec_driver_sql(
                "SELECT kind, ref, log_index, position, leaf, salt FROM evidence_items"
            )
        }
        entries: list[SE.Entry] = []
        events = {q: (ev, flag) for q, ev, flag in SL.events_with_flags(conn) if ev is not None}
        for idx, kind, ref, _size, _root, at, _leaf in old:
            if kind == "ledger_event":
                if ref not in events:
                    continue  # the deleted event leaves the log with it
                ev, flag = events[ref]
                leaf = SE.event_leaf(ev, flag).leaf_hash()
                entries.append(SE.Entry("ledger_event", ref, 1, None, at, leaf))
                continue
            names = [refs[(idx, pos)][0] for pos, _ in items[idx]]
            salts = [refs[(idx, pos)][1] for pos, _ in items[idx]]
            hashes: list[bytes] = []
            coms: list[bytes | None] = []
            for name, salt in zip(names, salts, strict=True):
                if kind == "decision":
                    row = D.get_in(conn, name)
                    assert row is not None
                    r = tuple(getattr(row, c) for c in D.COLUMNS)
                    com = LV.inputs_commitment(row.layout, row.num, row.txt, bytes(salt))
                    hashes.append(SE.decision_leaf(r, com).leaf_hash())
                    coms.append(com)
                elif kind == "feedback":
                    fr = next(
                        f
                        for f in conn.exec_driver_sql("SELECT * FROM feedback").mappings()
                        if str(f["id"]) == name
                    )
                    hashes.append(SE.feedback_leaf(fr).leaf_hash())
                else:
                    x = SX.get_row_in(conn, name)
                    assert x is not None
                    hashes.append(SE.explanation_leaf(x).leaf_hash())
            entries.append(
                SE.batch_entry(
                    kind,
                    names,
                    hashes,
                    at,
                    salts=salts if kind == "decision" else None,
                    commitments=coms if kind == "decision" else None,
                )
            )
    for t in ("evidence_log", "evidence_nodes", "evidence_items", "checkpoints"):
        sql(store, f"DELETE FROM {t}")
    sql(store, "UPDATE evidence_head SET size = 0, peaks = :p WHERE id = 1", {"p": b""})
    with store.write() as conn:
        SE.append_in(conn, entries)
