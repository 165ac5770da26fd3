"""The ledger: state_at against a brute-force replay, weight arithmetic, time
rules, tamper detection and concurrent writers, on the pure functions and on
real SQLite and PostgreSQL stores."""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import event as sa_event
from sqlalchemy.exc import DBAPIError

from chronoml.domain import ledger as L
from chronoml.store import Store
from chronoml.store import ledger as SL
from chronoml.store.schema import ledger_events

T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z, in microseconds
SECOND = 1_000_000
ACTOR = "tester"
NAMES = ("a", "b", "c", "d")


def ref(version: int | str, name: str = "churn") -> L.ModelRef:
    digest = hashlib.sha256(f"{name}/{version}".encode()).hexdigest()
    return L.ModelRef(name=name, version=str(version), run_id=None, artifact_digest=digest)


def deploy(
    endpoint: str,
    variant: str,
    version: int | str = 1,
    *,
    weight_bp: int | None = None,
    shadow: bool = False,
    **extra: Any,
) -> L.Change:
    v = L.Variant(name=variant, model=ref(version), weight=0, shadow=shadow)
    payload = {"variant": v.to_dict(), "weight_bp": weight_bp, **extra}
    return L.Change("deploy", endpoint, ACTOR, payload)


def set_weights(endpoint: str, weights: dict[str, int], **extra: Any) -> L.Change:
    return L.Change("set_weights", endpoint, ACTOR, {"weights_bp": weights, **extra})


def rollback(endpoint: str) -> L.Change:
    return L.Change("rollback", endpoint, ACTOR, {})


def retire(endpoint: str) -> L.Change:
    return L.Change("retire", endpoint, ACTOR, {})


def key(state: L.EndpointState) -> tuple[Any, ...]:
    """What a user sees of a state: variants with weights, shadow flags, versions."""
    return (
        state.endpoint,
        state.seq,
        tuple(
            (v.name, v.weight, v.shadow, v.model.name, v.model.version, v.since)
            for v in state.variants
        ),
    )


# --- a pure chain, and an independent model of which changes are allowed -------


@dataclass
class Chain:
    """Events appended through the pure ``plan``, as a store would."""

    events: list[L.LedgerEvent] = field(default_factory=list)

    @property
    def head(self) -> tuple[int, str]:
        if not self.events:
            return 0, L.GENESIS_HASH
        return self.events[-1].seq, self.events[-1].hash

    def history(self, endpoint: str) -> list[L.LedgerEvent]:
        return [e for e in self.events if e.endpoint == endpoint and e.sets_state]

    def last(self, endpoint: str) -> L.LedgerEvent | None:
        h = self.history(endpoint)
        return h[-1] if h else None

    def current(self, endpoint: str) -> tuple[L.Variant, ...]:
        last = self.last(endpoint)
        return last.state if last is not None and last.state is not None else ()

    def append(self, change: L.Change, now: int, effective_at: int | None = None) -> L.LedgerEvent:
        seq, h = self.head
        history = self.history(change.endpoint) if change.kind in L.STATE_KINDS else []
        ev = L.plan(seq, h, history, change, now, effective_at)
        self.events.append(ev)
        return ev


@dataclass(frozen=True)
class Step:
    change: L.Change
    now: int
    effective_at: int | None
    allowed: bool


def allowed(chain: Chain, undo: dict[str, int], c: L.Change, now: int, eff: int | None) -> bool:
    """Whether the change should be accepted, decided from the rules alone.

    ``undo`` counts, per endpoint, the earlier configurations a rollback can
    still return to.
    """
    t = now if eff is None else eff
    if t < now:
        return False
    if c.kind not in L.STATE_KINDS:
        return True
    last = chain.last(c.endpoint)
    if last is not None and t < last.effective_at:
        return False
    current = chain.current(c.endpoint)
    answering = {v.name for v in current if not v.shadow}
    if c.kind == "deploy":
        v = c.payload["variant"]
        w = c.payload["weight_bp"]
        if v["shadow"]:
            # a shadow never answers: something else must still answer
            return bool(answering - {v["variant"]})
        if w is None:
            return True
        if not answering - {v["variant"]}:
            return w == L.TOTAL_WEIGHT
        return 0 < w <= L.TOTAL_WEIGHT
    if c.kind == "set_weights":
        ws = c.payload["weights_bp"]
        return (
            bool(current)
            and set(ws) == answering
            and all(w >= 0 for w in ws.values())
            and sum(ws.values()) == L.TOTAL_WEIGHT
        )
    if c.kind == "rollback":
        return undo.get(c.endpoint, 0) > 0
    assert c.kind == "retire"
    return bool(current)


def check_state_invariants(before: tuple[L.Variant, ...], ev: L.LedgerEvent) -> None:
    assert ev.state is not None
    names = [v.name for v in ev.state]
    assert len(names) == len(set(names))
    answering = [v for v in ev.state if not v.shadow]
    assert all(v.weight == 0 for v in ev.state if v.shadow)
    if answering:
        assert all(v.weight > 0 for v in answering)
        assert sum(v.weight for v in answering) == L.TOTAL_WEIGHT
    if ev.kind != "deploy":
        return
    joined = ev.state[-1]
    pv = ev.payload["variant"]
    assert (joined.name, joined.shadow, joined.since) == (pv["variant"], pv["shadow"], ev.seq)
    w = ev.payload["weight_bp"]
    if joined.shadow:
        assert joined.weight == 0
    elif w is None:
        assert joined.weight == L.TOTAL_WEIGHT and answering == [joined]
    else:
        assert joined.weight == w
        # the others keep their order and shrink in proportion (largest remainder)
        old = [v for v in before if not v.shadow and v.name != joined.name]
        total = sum(v.weight for v in old)
        new = {v.name: v.weight for v in answering if v.name != joined.name}
        assert [n for n in (v.name for v in old) if n in new] == list(new)
        for v in old:
            exact = v.weight * (L.TOTAL_WEIGHT - w) / total
            assert abs(new.get(v.name, 0) - exact) < 1


@dataclass(frozen=True)
class Draw:
    """One random change, before it meets the state it is applied to."""

    endpoint: int
    kind: str
    name: str
    version: int
    weight: int | None
    cuts: tuple[int, ...]
    fault: str
    off_by: int
    apart: int
    when: str
    shift: int


# The whole history is drawn up front (one draw per test): hypothesis's
# per-draw bookkeeping would otherwise dominate the run time.
DRAW = st.builds(
    Draw,
    endpoint=st.integers(0, 2),
    kind=st.sampled_from(
        ["deploy"] * 2
        + ["weighted"] * 4
        + ["shadow", "set_weights", "set_weights"]
        + ["rollback", "rollback", "retire", "alert"]
    ),
    name=st.sampled_from(NAMES),
    version=st.integers(1, 5),
    weight=st.one_of(
        st.integers(1, L.TOTAL_WEIGHT - 1),
        st.integers(1, L.TOTAL_WEIGHT - 1),
        st.integers(1, 50),  # tiny shares: neighbours may round down to nothing
        st.just(L.TOTAL_WEIGHT),
        st.integers(-100, 0),
        st.integers(L.TOTAL_WEIGHT + 1, 2 * L.TOTAL_WEIGHT),
    ),
    cuts=st.tuples(*[st.integers(0, L.TOTAL_WEIGHT)] * 3),
    fault=st.sampled_from(["valid"] * 6 + ["missing", "unknown", "shadow", "sum", "negative"]),
    off_by=st.sampled_from([-1, 1, 100]),
    apart=st.sampled_from([0, 1, 1_000, SECOND, SECOND, 60 * SECOND, 60 * SECOND]),
    when=st.sampled_from(["now"] * 10 + ["same", "later", "past"]),
    shift=st.integers(1, 90 * SECOND) | st.integers(1, 1_000),
)
PROBES = st.lists(st.integers(0, 10**6), min_size=1, max_size=25)


def make_change(d: Draw, chain: Chain, ep: str) -> L.Change:
    if d.kind == "deploy":
        return deploy(ep, d.name, d.version)
    if d.kind == "weighted":
        return deploy(ep, d.name, d.version, weight_bp=d.weight)
    if d.kind == "shadow":
        return deploy(ep, d.name, d.version, weight_bp=d.weight, shadow=True)
    if d.kind == "set_weights":
        current = chain.current(ep)
        answering = [v.name for v in current if not v.shadow]
        cuts = sorted(d.cuts[: max(len(answering) - 1, 0)])
        if len(answering) > len(d.cuts) + 1:  # four answering variants: one more cut
            cuts = sorted([*cuts, (cuts[0] + cuts[-1]) // 2])
        edges = [0, *cuts, L.TOTAL_WEIGHT]
        weights = {n: edges[i + 1] - edges[i] for i, n in enumerate(answering)}
        if d.fault == "missing" and weights:
            weights.pop(next(iter(weights)))
        elif d.fault == "unknown":
            weights["zz"] = 0
        elif d.fault == "shadow" and any(v.shadow for v in current):
            weights[next(v.name for v in current if v.shadow)] = 0
        elif d.fault == "sum" and weights:
            weights[next(iter(weights))] += d.off_by
        elif d.fault == "negative" and len(weights) >= 2:
            a, b = list(weights)[:2]
            weights[b] += weights[a] + 1  # the total stays 100%
            weights[a] = -1
        return set_weights(ep, weights)
    if d.kind == "rollback":
        return rollback(ep)
    if d.kind == "retire":
        return retire(ep)
    return L.Change("alert", ep, ACTOR, {"rule": "drift", "value": d.version})


def drive(draws: list[Draw], endpoints: tuple[str, ...]) -> tuple[Chain, list[Step]]:
    """Apply a random history to the pure chain, checking each outcome as it goes."""
    chain = Chain()
    undo: dict[str, int] = {}
    steps: list[Step] = []
    now = T0
    for d in draws:
        now += d.apart
        eff = {
            "now": None,
            "same": now,
            "later": now + d.shift,
            "past": now - 1 - d.shift % SECOND,
        }[d.when]
        change = make_change(d, chain, endpoints[d.endpoint % len(endpoints)])
        ok = allowed(chain, undo, change, now, eff)
        before = chain.current(change.endpoint)
        had_history = chain.last(change.endpoint) is not None
        n = len(chain.events)
        if ok:
            ev = chain.append(change, now, eff)
            if ev.sets_state:
                check_state_invariants(before, ev)
            if change.kind == "rollback":
                undo[change.endpoint] -= 1
            elif change.kind == "retire" or (change.kind in L.STATE_KINDS and had_history):
                undo[change.endpoint] = undo.get(change.endpoint, 0) + 1
        else:
            with pytest.raises(L.LedgerError):
                chain.append(change, now, eff)
            assert len(chain.events) == n
        steps.append(Step(change, now, eff, ok))
    return chain, steps


def query_times(probes: list[int], chain: Chain) -> list[int]:
    """Times around every effective time, plus a few anywhere in the history."""
    marks = {T0 - 1, T0}
    for e in chain.events:
        marks |= {e.effective_at - 1, e.effective_at, e.effective_at + 1, e.recorded_at}
    ordered = sorted(marks)
    hi = ordered[-1] + SECOND
    picked = {ordered[p % len(ordered)] for p in probes}
    anywhere = {T0 - SECOND + p * (hi - T0 + SECOND) // 10**6 for p in probes[:5]}
    return sorted({T0 - 1, hi} | picked | anywhere)


@pytest.mark.parametrize("endpoints", [("churn",), ("churn", "fraud", "upsell")])
@settings(max_examples=100, deadline=None)
@given(draws=st.lists(DRAW, min_size=10, max_size=40), probes=PROBES)
def test_state_at_equals_replay(
    endpoints: tuple[str, ...], draws: list[Draw], probes: list[int]
) -> None:
    chain, steps = drive(draws, endpoints)
    assert L.verify_chain(chain.events).ok
    assert len(chain.events) == sum(s.allowed for s in steps)
    for t in query_times(probes, chain):
        for ep in (*endpoints, "never-deployed"):
            fast = L.state_at(chain.events, ep, t)
            slow = L.replay_state(chain.events, ep, t)
            assert key(fast) == key(slow), (ep, t)


# --- the same histories through a real SQLite store ------------------------------


@pytest.fixture(scope="module")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, empty SQLite database, copied for each hypothesis example."""
    home = tmp_path_factory.mktemp("template")
    store = Store.open(f"sqlite:///{home / 'chronoml.db'}", home)
    store.upgrade()
    store.close()
    assert not (home / "chronoml.db-wal").exists() or (home / "chronoml.db-wal").stat().st_size == 0
    return home / "chronoml.db"


@settings(max_examples=60, deadline=None)
@given(draws=st.lists(DRAW, min_size=5, max_size=25), probes=PROBES)
def test_store_records_the_same_chain_and_answers_the_same(
    migrated_sqlite: Path, draws: list[Draw], probes: list[int]
) -> None:
    endpoints = ("churn", "fraud")
    chain, steps = drive(draws, endpoints)
    home = Path(tempfile.mkdtemp(prefix="chronoml-hyp-"))
    try:
        shutil.copy(migrated_sqlite, home / "chronoml.db")
        store = Store.open(f"sqlite:///{home / 'chronoml.db'}", home)
        try:
            pure = iter(chain.events)
            for step in steps:
                head = SL.head(store)
                if step.allowed:
                    ev = SL.append(store, step.change, effective_at=step.effective_at, now=step.now)
                    assert ev == next(pure)
                else:
                    with pytest.raises(L.LedgerError):
                        SL.append(store, step.change, effective_at=step.effective_at, now=step.now)
                    assert SL.head(store) == head
            assert list(SL.iter_events(store)) == chain.events
            assert SL.verify(store).ok
            for t in query_times(probes, chain):
                for ep in (*endpoints, "never-deployed"):
                    assert SL.state_at(store, ep, t) == L.state_at(chain.events, ep, t), (ep, t)
        finally:
            store.close()
    finally:
        shutil.rmtree(home)


# --- weighted deploys -------------------------------------------------------------


def live(state: tuple[L.Variant, ...]) -> list[tuple[str, int, bool]]:
    return [(v.name, v.weight, v.shadow) for v in state]


def test_weighted_deploys_shrink_the_others_in_proportion() -> None:
    c = Chain()
    c.append(deploy("e", "a"), T0)
    assert live(c.current("e")) == [("a", 10_000, False)]
    c.append(deploy("e", "b", weight_bp=3_000), T0 + 1)
    assert live(c.current("e")) == [("a", 7_000, False), ("b", 3_000, False)]
    # 6667 shared 70:30 is 4666.9 : 2000.1; the larger remainder gets the spare point
    c.append(deploy("e", "c", weight_bp=3_333), T0 + 2)
    assert live(c.current("e")) == [("a", 4_667, False), ("b", 2_000, False), ("c", 3_333, False)]
    c.append(deploy("e", "s", shadow=True), T0 + 3)
    c.append(deploy("e", "d", weight_bp=1), T0 + 4)
    state = c.current("e")
    assert sum(v.weight for v in state if not v.shadow) == 10_000
    assert live(state) == [
        ("a", 4_666, False),
        ("b", 2_000, False),
        ("c", 3_333, False),
        ("s", 0, True),
        ("d", 1, False),
    ]
    # re-weighting an existing variant moves it to the end at its new share
    c.append(deploy("e", "a", 2, weight_bp=5_000), T0 + 5)
    assert live(c.current("e"))[-1] == ("a", 5_000, False)
    assert sum(v.weight for v in c.current("e") if not v.shadow) == 10_000


@settings(max_examples=300, deadline=None)
@given(
    cuts=st.lists(st.integers(0, L.TOTAL_WEIGHT), min_size=0, max_size=6),
    new=st.integers(1, L.TOTAL_WEIGHT),
)
def test_weighted_deploy_keeps_the_total_exact(cuts: list[int], new: int) -> None:
    edges = [0, *sorted(cuts), L.TOTAL_WEIGHT]
    weights = [b - a for a, b in itertools.pairwise(edges) if b > a]
    current = tuple(L.Variant(f"v{i}", ref(i), w) for i, w in enumerate(weights))
    after = L.apply_deploy(current, L.Variant("new", ref(99), 0), new)
    assert sum(v.weight for v in after) == L.TOTAL_WEIGHT
    assert all(v.weight > 0 for v in after)
    assert after[-1].name == "new" and after[-1].weight == new
    for v in current:
        share = next((x.weight for x in after if x.name == v.name), 0)
        assert abs(share - v.weight * (L.TOTAL_WEIGHT - new) / L.TOTAL_WEIGHT) < 1


def test_demoting_a_variant_to_shadow_gives_its_share_to_the_others() -> None:
    c = Chain()
    c.append(deploy("e", "a"), T0)
    c.append(deploy("e", "b", weight_bp=4_000), T0 + 1)
    c.append(deploy("e", "c", weight_bp=2_500), T0 + 2)
    c.append(deploy("e", "b", shadow=True), T0 + 3)
    state = c.current("e")
    assert [v.name for v in state if v.shadow] == ["b"]
    assert sum(v.weight for v in state if not v.shadow) == 10_000
    assert (
        L.state_at(c.events, "e", T0 + 3).variants == L.replay_state(c.events, "e", T0 + 3).variants
    )


def test_a_split_that_does_not_add_up_is_refused_and_nothing_is_recorded(store: Store) -> None:
    SL.append(store, deploy("churn", "a"), now=T0)
    SL.append(store, deploy("churn", "b", 2, weight_bp=3_000), now=T0 + 1)
    head = SL.head(store)
    before = SL.history(store, "churn")
    refused = [
        set_weights("churn", {"a": 6_000, "b": 3_000}),  # 90%
        set_weights("churn", {"a": 6_000, "b": 4_001}),  # 100.01%
        set_weights("churn", {"a": 10_000}),  # b missing
        set_weights("churn", {"a": 5_000, "b": 4_000, "x": 1_000}),  # unknown variant
        set_weights("churn", {"a": 11_000, "b": -1_000}),
        deploy("churn", "c", weight_bp=0),
        deploy("churn", "c", weight_bp=10_001),
        deploy("fresh", "a", weight_bp=5_000),  # nothing to share with
        set_weights("fresh", {"a": 10_000}),  # nothing live
        rollback("fresh"),
        retire("fresh"),
    ]
    for i, change in enumerate(refused):
        with pytest.raises(L.LedgerError):
            SL.append(store, change, now=T0 + 10 + i)
        assert SL.head(store) == head
    assert SL.history(store, "churn") == before
    assert not SL.exists(store, "fresh")
    assert SL.verify(store).ok
    # and a split that does add up is taken
    ev = SL.append(store, set_weights("churn", {"a": 5_000, "b": 5_000}), now=T0 + 100)
    assert ev.seq == head[0] + 1
    assert live(SL.state_at(store, "churn", T0 + 100).variants) == [
        ("a", 5_000, False),
        ("b", 5_000, False),
    ]


# --- time ----------------------------------------------------------------------------


def test_before_the_first_event_nothing_is_live(store: Store) -> None:
    c = Chain()
    c.append(deploy("churn", "a"), T0)
    SL.append(store, deploy("churn", "a"), now=T0)
    for state in (L.state_at(c.events, "churn", T0 - 1), SL.state_at(store, "churn", T0 - 1)):
        assert state == L.EndpointState("churn")
        assert state.variants == () and state.seq is None
    assert SL.state_at(store, "churn", T0).variants[0].name == "a"
    assert SL.state_at(store, "unknown", T0).variants == ()


def test_effective_times_never_go_back(store: Store) -> None:
    c = Chain()
    with pytest.raises(L.LedgerError, match="in the past"):
        c.append(deploy("churn", "a"), T0, effective_at=T0 - 1)
    with pytest.raises(L.LedgerError, match="in the past"):
        SL.append(store, deploy("churn", "a"), now=T0, effective_at=T0 - 1)
    assert SL.head(store) == (0, L.GENESIS_HASH)

    # a change scheduled for later: the past and the present keep their answer
    SL.append(store, deploy("churn", "a"), now=T0)
    SL.append(store, deploy("churn", "b", 2), now=T0 + SECOND, effective_at=T0 + 60 * SECOND)
    assert [v.name for v in SL.state_at(store, "churn", T0 + 59 * SECOND).variants] == ["a"]
    assert [v.name for v in SL.state_at(store, "churn", T0 + 60 * SECOND).variants] == ["b"]
    head = SL.head(store)
    with pytest.raises(L.LedgerError, match="before the endpoint's latest change"):
        SL.append(store, deploy("churn", "c", 3), now=T0 + 2 * SECOND)
    assert SL.head(store) == head
    # other endpoints are not held back by it
    SL.append(store, deploy("fraud", "x"), now=T0 + 2 * SECOND)


# --- tampering --------------------------------------------------------------------------


def record_some(store: Store) -> list[L.LedgerEvent]:
    return [
        SL.append(store, deploy("churn", "a"), now=T0),
        SL.append(store, deploy("churn", "b", 2, weight_bp=2_000), now=T0 + 1),
        SL.append(store, L.Change("alert", "churn", "monitor", {"rule": "drift"}), now=T0 + 2),
        SL.append(store, set_weights("churn", {"a": 5_000, "b": 5_000}), now=T0 + 3),
        SL.append(store, rollback("churn"), now=T0 + 4),
    ]


def drop_guard(store: Store) -> None:
    """What an attacker with rights on the database can do."""
    with store.write() as conn:
        if store.is_sqlite:
            conn.exec_driver_sql("DROP TRIGGER ledger_no_update")
            conn.exec_driver_sql("DROP TRIGGER ledger_no_delete")
        else:
            conn.exec_driver_sql("DROP TRIGGER ledger_append_only ON ledger_events")


def sql(store: Store, statement: str, params: dict[str, Any] | None = None) -> None:
    with store.write() as conn:
        conn.exec_driver_sql(statement, params or {})


def param(store: Store, name: str) -> str:
    return f":{name}" if store.is_sqlite else f"%({name})s"


@pytest.mark.parametrize(
    ("seq", "column", "value"),
    [
        (2, "actor", "mallory"),
        (3, "kind", "retire"),
        (4, "effective_at", T0 - 1),
        (2, "payload", None),  # filled in below: the weight changed from 20% to 90%
        (4, "state", "[]"),
        (5, "back", 2),
        (1, "endpoint", "fraud"),
    ],
)
def test_editing_any_field_of_an_event_is_detected(
    store: Store, seq: int, column: str, value: Any
) -> None:
    events = record_some(store)
    assert SL.verify(store).ok
    if column == "payload":
        payload = dict(events[seq - 1].payload)
        payload["weight_bp"] = 9_000
        value = L.canonical_json(payload).decode()
    drop_guard(store)
    sql(
        store,
        f"UPDATE ledger_events SET {column} = {param(store, 'v')} WHERE seq = {param(store, 's')}",
        {"v": value, "s": seq},
    )
    report = SL.verify(store)
    assert not report.ok
    assert report.first_bad_seq == seq
    assert report.reason == "content does not match its hash"


def test_rehashing_an_edited_event_breaks_the_next_link(store: Store) -> None:
    events = record_some(store)
    forged = L.seal(L.LedgerEvent(**{**events[1].__dict__, "actor": "mallory", "hash": ""}))
    drop_guard(store)
    p = param(store, "h"), param(store, "a")
    sql(
        store,
        f"UPDATE ledger_events SET hash = {p[0]}, actor = {p[1]} WHERE seq = 2",
        {"h": forged.hash, "a": "mallory"},
    )
    report = SL.verify(store)
    assert not report.ok and report.first_bad_seq == 3
    assert "prev_hash" in (report.reason or "")


def test_deleting_events_is_detected(store: Store) -> None:
    record_some(store)
    drop_guard(store)
    sql(store, "DELETE FROM ledger_events WHERE seq = 5")
    report = SL.verify(store)
    assert not report.ok
    assert report.first_bad_seq == 5
    assert "head" in (report.reason or "")
    sql(store, "DELETE FROM ledger_events WHERE seq = 2")
    report = SL.verify(store)
    assert not report.ok and report.first_bad_seq == 3


def test_the_database_refuses_to_edit_or_delete_events(store: Store) -> None:
    record_some(store)
    with pytest.raises(DBAPIError, match="append-only"):
        sql(store, "UPDATE ledger_events SET actor = 'mallory' WHERE seq = 2")
    with pytest.raises(DBAPIError, match="append-only"):
        sql(store, "DELETE FROM ledger_events WHERE seq = 5")
    report = SL.verify(store)
    assert report.ok and report.events == 5


# --- concurrent writers ------------------------------------------------------------------

# A writer process: it imports once, then takes jobs ("append N changes to
# this store") from stdin, and starts each on a "go" line so all four begin
# together. One set of processes serves the SQLite and the PostgreSQL test.
WRITER = """
import json, sys
from pathlib import Path
from chronoml.domain import ledger as L
from chronoml.store import Store
from chronoml.store import ledger as SL
from chronoml.store.schema import ledger_events

print("ready", flush=True)
for job in sys.stdin:
    url, home, proc, n = json.loads(job)
    store = Store.open(url, Path(home))
    SL.head(store)
    print("armed", flush=True)
    sys.stdin.readline()
    ref = L.ModelRef("churn", str(proc), None, "0" * 64)
    seqs, retries = [], 0
    for i in range(n):
        tag = {"proc": proc, "i": i}
        if i % 3 == 2:
            while True:
                # the split is computed from what is live now; another writer
                # may change that first: then the ledger refuses, and we retry
                names = [v.name for v in SL.state_at(store, "shared", 2**62).answering]
                base, extra = divmod(L.TOTAL_WEIGHT, len(names))
                weights = {m: base + (j < extra) for j, m in enumerate(names)}
                change = L.Change("set_weights", "shared", f"p{proc}", {"weights_bp": weights, **tag})
                try:
                    ev = SL.append(store, change)
                    break
                except L.LedgerError:
                    retries += 1
        else:
            v = L.Variant(f"p{proc}-{i}", ref, 0)
            weight = None if i % 3 == 0 else 5000
            payload = {"variant": v.to_dict(), "weight_bp": weight, **tag}
            ev = SL.append(store, L.Change("deploy", "shared", f"p{proc}", payload))
        seqs.append(ev.seq)
    store.close()
    print(json.dumps({"seqs": seqs, "retries": retries}), flush=True)
"""


@dataclass
class Writer:
    proc: subprocess.Popen[str]
    log: Path

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def expect(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, f"writer died: {self.log.read_text()}"
        return line.strip()


@pytest.fixture(scope="module")
def writers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Writer]]:
    logs = tmp_path_factory.mktemp("writers")
    out = []
    for p in range(4):
        log = logs / f"writer{p}.log"
        with log.open("w") as err:
            proc = subprocess.Popen(
                [sys.executable, "-c", WRITER],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        out.append(Writer(proc, log))
    try:
        for w in out:
            assert w.expect() == "ready"
        yield out
    finally:
        for w in out:
            if w.proc.stdin is not None:
                w.proc.stdin.close()
            try:
                w.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait()
            if w.proc.stdout is not None:
                w.proc.stdout.close()


def test_concurrent_writers_keep_one_chain(
    store: Store, store_url: str, writers: list[Writer]
) -> None:
    per_proc = 25
    for p, w in enumerate(writers):
        w.send(json.dumps([store_url, str(store.home), p, per_proc]))
    for w in writers:
        assert w.expect() == "armed"
    for w in writers:  # start them together
        w.send("go")
    results = [json.loads(w.expect()) for w in writers]
    total = len(writers) * per_proc

    events = list(SL.iter_events(store))
    assert [e.seq for e in events] == list(range(1, total + 1))
    prev = L.GENESIS_HASH
    for e in events:
        assert e.prev_hash == prev
        prev = e.hash
    assert SL.head(store) == (total, prev)
    report = SL.verify(store)
    assert report.ok and report.events == total
    for p, result in enumerate(results):
        mine = [e for e in events if e.payload["proc"] == p]
        assert [e.payload["i"] for e in mine] == list(range(per_proc))
        assert [e.seq for e in mine] == result["seqs"]
        assert all(e.actor == f"p{p}" for e in mine)
    effective = [e.effective_at for e in events]
    assert effective == sorted(effective)
    # every state on the chain is a proper split, and the store agrees with a replay
    for e in events:
        assert e.state is not None
        assert sum(v.weight for v in e.state if not v.shadow) == L.TOTAL_WEIGHT
    last = events[-1].effective_at
    assert key(SL.state_at(store, "shared", last)) == key(L.replay_state(events, "shared", last))


# --- state_at uses the index ------------------------------------------------------------------


def state_at_statement(store: Store, endpoint: str, t: int) -> tuple[str, Any]:
    """The SQL that ``store.ledger.state_at`` actually runs."""
    seen: list[tuple[str, Any]] = []

    def grab(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "ledger_events" in statement:
            seen.append((statement, parameters))

    sa_event.listen(store.lookup_engine, "before_cursor_execute", grab)
    try:
        SL.state_at(store, endpoint, t)
    finally:
        sa_event.remove(store.lookup_engine, "before_cursor_execute", grab)
    assert len(seen) == 1
    return seen[0]


def test_state_at_is_one_index_seek(store: Store) -> None:
    endpoints = 40
    rows = []
    for i in range(endpoints * 100):
        rows.append(
            {
                "seq": i + 1,
                "hash": f"{i + 1:064x}",
                "prev_hash": f"{i:064x}",
                "kind": "deploy",
                "endpoint": f"ep{i % endpoints}",
                "actor": ACTOR,
                "recorded_at": T0 + i,
                "effective_at": T0 + i,
                "payload": "{}",
                "state": "[]",
                "back": None,
                "sets_state": i % 7 != 0,
            }
        )
    with store.write() as conn:
        conn.execute(ledger_events.insert(), rows)
        conn.exec_driver_sql("ANALYZE")
    statement, params = state_at_statement(store, "ep7", T0 + 2_000)
    with store.read() as conn:
        if store.is_sqlite:
            plan = " | ".join(
                r[-1] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params)
            )
            assert (
                "USING INDEX ix_ledger_state" in plan
                or "USING COVERING INDEX ix_ledger_state" in plan
            ), plan
            assert "TEMP B-TREE" not in plan, plan  # the index gives the order: no sort
        else:
            plan = " | ".join(r[0] for r in conn.exec_driver_sql("EXPLAIN " + statement, params))
            assert "Index" in plan and "ix_ledger_state" in plan, plan
            assert "Sort" not in plan and "Seq Scan" not in plan, plan
