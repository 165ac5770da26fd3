"""The evidence log against an insider: every edit the issue lists, made with plain SQL
after dropping the triggers, is caught against a checkpoint taken before, and named."""

from __future__ import annotations

from pathlib import Path

import pytest
from evidence_fill import T0, Filled, drop_guards, fill, rebuild_evidence, reseal_from, sql
from sqlalchemy.exc import DBAPIError

from chronoml.domain import ledger as L
from chronoml.domain import merkle
from chronoml.evidence import audit as EA
from chronoml.store import Store
from chronoml.store import evidence as SE
from chronoml.store import ledger as SL


@pytest.fixture
def filled(store: Store, tmp_path: Path) -> Filled:
    return fill(store, tmp_path)


def check(store: Store, filled: Filled) -> EA.EvidenceReport:
    return EA.verify(store, decisions=True, checkpoint=filled.checkpoint)


def test_an_untouched_store_verifies_and_extends_its_checkpoint(
    store: Store, filled: Filled
) -> None:
    report = check(store, filled)
    assert report.ok, report.problems
    assert report.events == 5 and report.decisions == 11
    assert report.feedback == 2 and report.explanations == 1
    # 5 events + 3 decision batches + 1 explanation batch + 1 feedback batch
    assert report.entries == 10
    assert [c.consistent for c in report.checkpoints] == [True, True]
    assert SL.verify(store).ok


def test_every_write_commits_to_the_log_in_its_own_transaction(
    store: Store, filled: Filled
) -> None:
    with store.read() as conn:
        kinds = [e[1] for e in SE.log_entries(conn)]
        head = SE.head_in(conn)
    assert kinds == [
        "ledger_event", "ledger_event", "ledger_event", "ledger_event",
        "decision", "decision", "explanation", "decision", "feedback", "ledger_event",
    ]  # fmt: skip
    assert head.size == 10 and head.root == filled.checkpoint.root_hash


def test_the_database_refuses_to_edit_the_log(store: Store, filled: Filled) -> None:
    for statement in (
        "UPDATE evidence_log SET size = 9 WHERE idx = 4",
        "DELETE FROM evidence_nodes",
        "UPDATE evidence_head SET size = 3",
        "DELETE FROM checkpoints",
        "UPDATE evidence_items SET leaf = commitment",
        "UPDATE ledger_head SET seq = 2",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            sql(store, statement)
    assert check(store, filled).ok


def test_resealing_the_chain_after_changing_an_actor_is_named(store: Store, filled: Filled) -> None:
    drop_guards(store)
    reseal_from(store, 1, actor="mallory")
    assert SL.verify(store).ok  # the chain alone is consistent again: this is the blind spot
    report = check(store, filled)
    assert not report.ok
    assert report.first_bad == "ledger event #1"


def test_a_full_rewrite_is_caught_by_the_published_checkpoint(store: Store, filled: Filled) -> None:
    drop_guards(store)
    reseal_from(store, 2, actor="mallory")
    rebuild_evidence(store)  # leaves, nodes, head: all recomputed; stored checkpoints gone
    assert SL.verify(store).ok
    assert EA.verify(store, decisions=True).ok  # consistent with itself...
    report = check(store, filled)  # ...but not with what was published
    assert not report.ok
    assert report.first_bad == "checkpoint (given)"
    assert "rewritten" in (report.reason or "")
    assert report.checkpoints[-1].consistent is False


def test_deleting_the_last_event_and_rewinding_the_head(store: Store, filled: Filled) -> None:
    last = filled.events[-1]
    drop_guards(store)
    sql(store, "DELETE FROM ledger_events WHERE seq = :s", {"s": last.seq})
    sql(
        store,
        "UPDATE ledger_head SET seq = :s, hash = :h WHERE id = 1",
        {"s": last.seq - 1, "h": filled.events[-2].hash},
    )
    assert SL.verify(store).ok
    report = check(store, filled)
    assert not report.ok and report.first_bad == f"ledger event #{last.seq}"
    assert "deleted" in (report.reason or "")


def test_truncating_the_log_too_is_caught_by_the_checkpoint(store: Store, filled: Filled) -> None:
    last = filled.events[-1]
    drop_guards(store)
    sql(store, "DELETE FROM ledger_events WHERE seq = :s", {"s": last.seq})
    sql(
        store,
        "UPDATE ledger_head SET seq = :s, hash = :h WHERE id = 1",
        {"s": last.seq - 1, "h": filled.events[-2].hash},
    )
    rebuild_evidence(store)
    report = check(store, filled)
    assert not report.ok and report.first_bad == "checkpoint (given)"
    assert "removed" in (report.reason or "")


def test_flipping_sets_state_changes_the_answer_and_is_named(store: Store, filled: Filled) -> None:
    split = filled.events[3]  # the 50/50 set_weights
    before = SL.state_at(store, "churn", T0 + 10)
    assert sorted(v.weight for v in before.variants) == [5_000, 5_000]
    drop_guards(store)
    sql(
        store,
        "UPDATE ledger_events SET sets_state = :f WHERE seq = :s",
        {"f": False, "s": split.seq},
    )
    after = SL.state_at(store, "churn", T0 + 10)
    assert after.seq != before.seq  # the wrong answer the issue describes
    assert SL.verify(store).ok
    report = check(store, filled)
    assert not report.ok and report.first_bad == f"ledger event #{split.seq}"
    assert "sets_state" in (report.reason or "")


@pytest.mark.parametrize(
    ("statement", "reason"),
    [
        (
            "UPDATE decisions SET num = :v WHERE id = '0190a000-0000-7000-8000-000000000005'",
            "inputs",
        ),
        (
            "UPDATE decisions SET ts = ts + 1 WHERE id = '0190a000-0000-7000-8000-000000000005'",
            "committed leaf",
        ),
        (
            "UPDATE decisions SET output = '0.75' WHERE id = '0190a000-0000-7000-8000-000000000005'",
            "committed leaf",
        ),
        ("DELETE FROM decisions WHERE id = '0190a000-0000-7000-8000-000000000005'", "deleted"),
    ],
)
def test_editing_moving_or_deleting_a_decision_is_named(
    store: Store, filled: Filled, statement: str, reason: str
) -> None:
    drop_guards(store)
    sql(store, statement, {"v": b"[9.0, 9]"} if ":v" in statement else None)
    assert EA.verify(store).ok  # decisions are checked only when asked
    report = check(store, filled)
    assert not report.ok and report.first_bad == "decision 0190a000-0000-7000-8000-000000000005"
    assert reason in (report.reason or "")


def test_deleting_a_decision_with_its_evidence_names_its_place(
    store: Store, filled: Filled
) -> None:
    drop_guards(store)
    sql(store, "DELETE FROM decisions WHERE id = '0190a000-0000-7000-8000-000000000002'")
    sql(store, "DELETE FROM evidence_items WHERE ref = '0190a000-0000-7000-8000-000000000002'")
    report = check(store, filled)
    assert not report.ok
    assert report.first_bad == "decision at position 2 of log entry 4"
    assert "0190a000-0000-7000-8000-000000000001" in (report.reason or "")


def test_editing_feedback_is_named(store: Store, filled: Filled) -> None:
    drop_guards(store)
    fid = filled.feedback[0]
    sql(store, "UPDATE feedback SET label = '0' WHERE id = :i", {"i": fid})
    report = EA.verify(store, checkpoint=filled.checkpoint)
    assert not report.ok and report.first_bad == f"feedback {fid}"


def test_a_row_added_outside_chronoml_is_named(store: Store, filled: Filled) -> None:
    sql(
        store,
        "INSERT INTO feedback (decision_id, label, recorded_at, actor) "
        "VALUES ('0190a000-0000-7000-8000-000000000003', '1', 5, 'mallory')",
    )
    report = EA.verify(store)
    assert not report.ok and (report.first_bad or "").startswith("feedback ")
    assert "outside chronoml" in (report.reason or "")


def test_a_later_store_still_extends_an_earlier_checkpoint(store: Store, filled: Filled) -> None:
    SL.append(store, L.Change("alert", "churn", "monitor", {"rule": "late"}), now=T0 + 99)
    report = check(store, filled)
    assert report.ok and report.entries == 11
    assert bytes.fromhex(report.root) != merkle.EMPTY_ROOT
