"""Leaf encodings: deterministic, injective, pinned, and read back from JSON exactly."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chronoml.domain import leaves as L

SALT = bytes(range(16))


def decision(**changes: object) -> L.DecisionLeaf:
    base = L.DecisionLeaf(
        id="0190-0000-7000-8000-000000000001",
        ts=1_767_225_600_000_000,
        endpoint="churn",
        variant="v1",
        model_name="churn",
        model_version="3",
        event_seq=12,
        shadow=False,
        unit="user-1",
        request_id="req-1",
        layout="a1b2",
        inputs_commitment=L.inputs_commitment("a1b2", b"\x00" * 16, None, SALT),
        output="0.75",
        output_num=0.75,
        latency_ms=1.5,
        scores_digest=bytes(range(32)),
        context='{"region":"north"}',
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_the_encoding_is_pinned() -> None:
    # a stored log stays verifiable only while these bytes never change
    d = decision()
    assert d.encode()[:24] == b"\x00\x00\x00\x14chronoml/decision/v2"
    assert d.leaf_hash().hex() == PINNED_DECISION
    assert L.inputs_commitment("a1b2", b"\x00" * 16, None, SALT).hex() == PINNED_INPUTS


PINNED_DECISION = "68439ca193400cfddc95c06f67a99e08fbd95fefbe25793e32e7d1ad13950320"
PINNED_INPUTS = "1fa22d58ddc5325eded97a7c8503736391810c4d0f93615b7ad47cf885fef07a"


@pytest.mark.parametrize("name", [n for n, _, _ in L.DecisionLeaf.SPEC])
def test_every_field_changes_the_leaf(name: str) -> None:
    d = decision()
    value = getattr(d, name)
    other: Any
    if isinstance(value, bool):
        other = not value
    elif isinstance(value, int):
        other = value + 1
    elif isinstance(value, float):
        other = -value
    elif isinstance(value, bytes):
        other = bytes(32)
    else:
        other = value + "!"
    assert replace(d, **{name: other}).leaf_hash() != d.leaf_hash()


def test_absent_and_empty_differ_and_kinds_never_collide() -> None:
    assert decision(unit=None).encode() != decision(unit="").encode()
    assert decision(output_num=None).encode() != decision(output_num=0.0).encode()
    assert decision(output_num=0.0).encode() != decision(output_num=-0.0).encode()
    # moving a boundary between two strings changes the bytes (length prefixes)
    assert (
        decision(endpoint="ab", variant="c").encode()
        != decision(endpoint="a", variant="bc").encode()
    )
    fb = L.FeedbackLeaf(1, "d", "1", 1.0, None, 5, "me")
    ex = L.ExplanationLeaf("d", "tree", "raw", 0.5, "{}", "{}", 5)
    tags = {x.encode()[:30] for x in (decision(), fb, ex)}
    assert len(tags) == 3


def test_json_round_trip_including_non_finite_floats() -> None:
    for num in (math.nan, math.inf, -math.inf, 1e-300, None):
        d = decision(output_num=num)
        text = json.dumps(d.to_dict(), allow_nan=False)
        back = L.DecisionLeaf.from_dict(json.loads(text))
        assert back.encode() == d.encode()
    nans = {decision(output_num=float("nan")).encode(), decision(output_num=-math.nan).encode()}
    assert len(nans) == 1  # a NaN's payload bits are not part of what a row means


def test_reading_json_names_the_bad_field() -> None:
    good = decision().to_dict()
    for name, bad in [
        ("ts", "soon"),
        ("ts", 1.5),
        ("shadow", 0),
        ("id", None),
        ("inputs_commitment", "AB" * 32),  # uppercase: not the one spelling
        ("inputs_commitment", "ab"),
        ("latency_ms", True),
    ]:
        with pytest.raises(L.LeafError) as e:
            L.DecisionLeaf.from_dict({**good, name: bad})
        assert e.value.field == name
    with pytest.raises(L.LeafError) as e:
        L.DecisionLeaf.from_dict({**good, "note": "unhashed"})
    assert e.value.field == "note"
    with pytest.raises(L.LeafError) as e:
        L.item_from_dict("alert", good)
    assert e.value.field == "kind"


def test_ledger_event_problems() -> None:
    content = L.canonical_json({"seq": 4, "kind": "deploy", "prev_hash": "0" * 64})
    ev = L.LedgerEventLeaf(4, content, hashlib.sha256(content).hexdigest(), True)
    assert ev.problem() is None
    assert "hash" in (replace(ev, hash="0" * 64).problem() or "")
    assert "seq" in (replace(ev, seq=5).problem() or "")
    assert L.LedgerEventLeaf.from_dict(json.loads(json.dumps(ev.to_dict()))) == ev


def test_inputs_commitment_needs_a_salt_and_depends_on_every_part() -> None:
    base = L.inputs_commitment("l", b"n", "t", SALT)
    assert base != L.inputs_commitment("l", b"n", None, SALT)
    assert base != L.inputs_commitment("l", b"n", "t", SALT[::-1])
    assert base != L.inputs_commitment("m", b"n", "t", SALT)
    with pytest.raises(L.LeafError) as e:
        L.inputs_commitment("l", b"n", "t", b"short")
    assert e.value.field == "salt"


_text = st.text(max_size=12)


@settings(max_examples=200, deadline=None)
@given(
    st.tuples(_text, st.integers(-(2**63), 2**63 - 1), _text, st.none() | _text, st.floats()),
    st.tuples(_text, st.integers(-(2**63), 2**63 - 1), _text, st.none() | _text, st.floats()),
)
def test_property_different_rows_encode_differently(
    a: tuple[str, int, str, str | None, float], b: tuple[str, int, str, str | None, float]
) -> None:
    da = decision(id=a[0], ts=a[1], endpoint=a[2], unit=a[3], latency_ms=a[4])
    db = decision(id=b[0], ts=b[1], endpoint=b[2], unit=b[3], latency_ms=b[4])
    same = (a[:4] == b[:4]) and (
        (math.isnan(a[4]) and math.isnan(b[4])) or L._F64.pack(a[4]) == L._F64.pack(b[4])
    )
    assert (da.encode() == db.encode()) == same
    assert L.DecisionLeaf.from_dict(json.loads(json.dumps(da.to_dict()))).encode() == da.encode()
