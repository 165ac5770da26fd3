"""Routing: sticky buckets, weighted shares, minimal movement on a new split,
and shadows that never answer."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chronoml.domain.ledger import TOTAL_WEIGHT, ModelRef, Variant, apply_deploy, apply_weights
from chronoml.domain.routing import bucket, pick, route

UNITS = [f"customer-{i}" for i in range(20_000)]


def variant(name: str, weight: int, shadow: bool = False) -> Variant:
    return Variant(name, ModelRef("churn", name, None, "0" * 64), weight, shadow)


def assign(variants: list[Variant] | tuple[Variant, ...], endpoint: str = "churn") -> list[str]:
    return [route(endpoint, variants, unit).name for unit in UNITS]


def test_buckets_are_pinned() -> None:
    # a regression pin: changing the bucketing re-assigns every unit of every
    # running experiment, so it must be a deliberate, visible change
    assert bucket("churn", "customer-42") == 9159
    assert bucket("churn", "customer-43") == 8397
    assert bucket("churn", "") == 4082
    assert bucket("fraud", "customer-42") == 5549  # the endpoint is part of the key


def test_buckets_are_the_same_in_another_process() -> None:
    keys = [*UNITS[:200], "", "ünïcödé", "a\x00b"]
    here = [bucket("churn", k) for k in keys]
    code = (
        "import json, sys\n"
        "from chronoml.domain.routing import bucket\n"
        "keys = json.load(sys.stdin)\n"
        "print(json.dumps([bucket('churn', k) for k in keys]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(keys),
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "99"},  # nothing may depend on str hashing
    )
    assert json.loads(out.stdout) == here
    assert [bucket("churn", k) for k in keys] == here  # and across calls
    assert all(0 <= b < TOTAL_WEIGHT for b in here)


def test_weighted_assignment_follows_the_weights() -> None:
    variants = [variant("a", 6_000), variant("b", 3_000), variant("c", 1_000)]
    counts = Counter(assign(variants))
    for v in variants:
        share = counts[v.name] / len(UNITS)
        assert share == pytest.approx(v.weight / TOTAL_WEIGHT, abs=0.015), (v.name, share)
    # and requests without a unit key are spread the same way
    rng = random.Random(5)
    counts = Counter(route("churn", variants, None, rng).name for _ in UNITS)
    for v in variants:
        assert counts[v.name] / len(UNITS) == pytest.approx(v.weight / TOTAL_WEIGHT, abs=0.015)


def test_a_unit_keeps_its_variant() -> None:
    variants = [variant("a", 5_000), variant("b", 5_000)]
    first = assign(variants)
    assert assign(variants) == first
    assert assign(tuple(variants)) == first


def test_moving_from_90_10_to_50_50_only_moves_units_to_the_grown_variant() -> None:
    before = (variant("a", 9_000), variant("b", 1_000))
    after = apply_weights(before, {"a": 5_000, "b": 5_000})
    old, new = assign(before), assign(after)
    moved = Counter((o, n) for o, n in zip(old, new, strict=True) if o != n)
    assert set(moved) == {("a", "b")}  # none from b to a
    assert moved[("a", "b")] / len(UNITS) == pytest.approx(0.4, abs=0.015)
    # everyone already on b stays there
    assert all(n == "b" for o, n in zip(old, new, strict=True) if o == "b")


def test_a_weighted_deploy_gives_the_newcomer_its_share() -> None:
    before = (variant("a", 7_000), variant("b", 3_000))
    after = apply_deploy(before, variant("c", 0), 2_000)
    counts = Counter(assign(after))
    assert counts["a"] / len(UNITS) == pytest.approx(0.56, abs=0.015)
    assert counts["b"] / len(UNITS) == pytest.approx(0.24, abs=0.015)
    assert counts["c"] / len(UNITS) == pytest.approx(0.20, abs=0.015)


def test_shadows_are_never_picked() -> None:
    variants = [
        variant("shadow-first", 0, shadow=True),
        variant("a", 7_000),
        variant("odd-shadow", 2_000, shadow=True),  # a shadow that carries a weight anyway
        variant("b", 3_000),
        variant("shadow-last", 0, shadow=True),
    ]
    owners = Counter(pick(variants, b).name for b in range(TOTAL_WEIGHT))
    assert set(owners) == {"a", "b"}
    assert owners["a"] == 7_000 and owners["b"] == 3_000
    assert "shadow" not in "".join(assign(variants))
    with pytest.raises(LookupError):
        pick([variant("s", 0, shadow=True)], 0)


def _moved(old: list[str], new: list[str]) -> Counter[tuple[str, str]]:
    return Counter((o, n) for o, n in zip(old, new, strict=True) if o != n)


def test_a_newcomer_takes_units_only_from_the_others_in_proportion() -> None:
    before = apply_weights(
        (variant("a", 5_000), variant("b", 3_000), variant("c", 2_000)),
        {"a": 5_000, "b": 3_000, "c": 2_000},
    )
    after = apply_deploy(before, variant("d", 0), 1_000)
    moved = _moved(assign(before), assign(after))
    assert {n for _, n in moved} == {"d"}  # nobody moves between a, b and c
    total = sum(moved.values())
    for name, share in (("a", 0.5), ("b", 0.3), ("c", 0.2)):
        assert moved[(name, "d")] / total == pytest.approx(share, abs=0.03)


def test_a_split_change_moves_the_fewest_units() -> None:
    before = apply_weights(
        (variant("a", 4_000), variant("b", 3_000), variant("c", 3_000)),
        {"a": 4_000, "b": 3_000, "c": 3_000},
    )
    after = apply_weights(before, {"a": 2_000, "b": 3_000, "c": 5_000})
    old, new = assign(before), assign(after)
    moved = _moved(old, new)
    assert set(moved) == {("a", "c")}  # b is untouched; only a's surplus goes to c
    # exactly the buckets that had to move, and no others
    owners_before = [pick(before, b).name for b in range(TOTAL_WEIGHT)]
    owners_after = [pick(after, b).name for b in range(TOTAL_WEIGHT)]
    changed = sum(o != n for o, n in zip(owners_before, owners_after, strict=True))
    assert changed == 2_000


def test_ownership_is_recorded_and_a_rollback_gives_units_back() -> None:
    from chronoml.domain import ledger as L

    first = apply_deploy((), variant("a", 0), None)
    assert first[0].buckets == ((0, TOTAL_WEIGHT),)
    second = apply_deploy(first, variant("b", 0), 2_500)
    assert sum(e - s for s, e in second[0].buckets or ()) == 7_500
    # the ownership survives the ledger's encoding, hash included
    again = tuple(L.Variant.from_dict(v.to_dict()) for v in second)
    assert again == second
    # a rollback returns to the recorded state: every unit gets its variant back
    c = [
        L.plan(
            0,
            L.GENESIS_HASH,
            [],
            L.Change(
                "deploy", "churn", "t", {"variant": variant("a", 0).to_dict(), "weight_bp": None}
            ),
            1,
        )
    ]
    c.append(
        L.plan(
            1,
            c[0].hash,
            c,
            L.Change(
                "deploy", "churn", "t", {"variant": variant("b", 0).to_dict(), "weight_bp": 2_500}
            ),
            2,
        )
    )
    c.append(
        L.plan(
            2,
            c[1].hash,
            c,
            L.Change("set_weights", "churn", "t", {"weights_bp": {"a": 1_000, "b": 9_000}}),
            3,
        )
    )
    back = L.plan(3, c[2].hash, c, L.Change("rollback", "churn", "t", {}), 4)
    assert assign(back.state or ()) == assign(c[1].state or ())
    assert assign(c[2].state or ()) != assign(c[1].state or ())


def test_router_agrees_with_pick() -> None:
    from chronoml.domain.routing import Router

    state = apply_deploy(
        apply_deploy((variant("a", 10_000),), variant("b", 0), 3_300), variant("s", 0, True), None
    )
    r = Router(state)
    assert all(r.pick(b).name == pick(state, b).name for b in range(0, TOTAL_WEIGHT, 7))
    assert r.route("churn", "customer-42").name == route("churn", state, "customer-42").name


def test_a_change_that_leaves_only_shadows_is_refused() -> None:
    from chronoml.domain import ledger as L

    def change(v: Variant, weight_bp: int | None = None) -> L.Change:
        return L.Change("deploy", "e", "t", {"variant": v.to_dict(), "weight_bp": weight_bp})

    with pytest.raises(L.LedgerError, match="only shadow variants"):
        L.plan(0, L.GENESIS_HASH, [], change(variant("s", 0, shadow=True)), 1)
    first = L.plan(0, L.GENESIS_HASH, [], change(variant("a", 0)), 1)
    with pytest.raises(L.LedgerError, match="nothing would answer"):
        L.plan(1, first.hash, [first], change(variant("a", 0, shadow=True)), 2)
    ok = L.plan(1, first.hash, [first], change(variant("s", 0, shadow=True)), 2)
    assert [v.shadow for v in ok.state or ()] == [False, True]


def _rebalance_one_bucket_at_a_time(
    old: dict[str, tuple[tuple[int, int], ...]], new: list[tuple[str, int]], total: int
) -> dict[str, tuple[tuple[int, int], ...]]:
    """The rule of `rebalance`, spelled out bucket by bucket (the reference)."""
    owner: list[str | None] = [None] * total
    target = dict(new)
    held: dict[str, list[int]] = {name: [] for name in target}
    for name, ranges in old.items():
        if name in target:
            for start, end in ranges:
                for b in range(max(start, 0), min(end, total)):
                    if owner[b] is None:
                        owner[b] = name
                        held[name].append(b)
    for name, w in new:
        mine = sorted(held[name])
        while len(mine) > w:
            owner[mine.pop()] = None
        held[name] = mine
    free = iter([b for b in range(total) if owner[b] is None])
    for name, w in new:
        for _ in range(w - len(held[name])):
            slot = next(free, None)
            if slot is not None:
                owner[slot] = name
    out: dict[str, list[tuple[int, int]]] = {name: [] for name in target}
    for b, who in enumerate(owner):
        if who is not None:
            r = out[who]
            r[-1:] = [(r[-1][0], b + 1)] if r and r[-1][1] == b else [*r[-1:], (b, b + 1)]
    return {name: tuple(r) for name, r in out.items()}


@given(st.data())
@settings(max_examples=300, deadline=None)
def test_rebalance_on_ranges_equals_the_bucket_by_bucket_rule(data: st.DataObject) -> None:
    from chronoml.domain.buckets import rebalance

    total = data.draw(st.integers(1, 60))
    names = ["a", "b", "c", "d"]
    old = {
        name: tuple(
            sorted(
                data.draw(
                    st.lists(
                        st.tuples(st.integers(-3, total + 3), st.integers(0, 8)).map(
                            lambda t: (t[0], t[0] + t[1])
                        ),
                        max_size=4,
                    )
                )
            )
        )
        for name in data.draw(st.lists(st.sampled_from(names), unique=True))
    }
    chosen = data.draw(st.lists(st.sampled_from(names), unique=True, min_size=1))
    new = [(name, data.draw(st.integers(0, total))) for name in chosen]
    assert rebalance(old, new, total) == _rebalance_one_bucket_at_a_time(old, new, total)
