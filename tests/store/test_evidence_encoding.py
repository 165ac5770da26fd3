"""The write path's spelled-out decision leaf hash is the generic encoder's, byte for byte."""

from __future__ import annotations

import math

import pytest

from chronoml.domain import leaves as LV
from chronoml.store import evidence as SE

BASE = (
    "0190-a", 1_767_225_600_000_000, "churn", "v1", "churn", "3", 7, False, "user-1",
    "req-1", "lay1", b"\x00" * 16, None, '{"p":0.5}', 0.5, 1.25,
)  # fmt: skip
VARIANTS = [
    {},
    {7: True, 8: None},
    {14: None},
    {14: math.nan, 15: math.inf},
    {14: -math.inf, 15: 0.0},
    {0: "décision-✓", 2: "", 13: "\u00e9"},
    {1: -5, 6: 2**62},
    {15: 3},  # an integer latency encodes as its float
]


@pytest.mark.parametrize("change", VARIANTS)
def test_fast_leaf_hash_matches_the_leaf_encoder(change: dict[int, object]) -> None:
    row = list(BASE)
    for k, v in change.items():
        row[k] = v
    commitment = LV.inputs_commitment(row[10], row[11], row[12], b"s" * 16)
    assert SE.decision_leaf_hash(row, commitment) == SE.decision_leaf(row, commitment).leaf_hash()


def test_a_bad_commitment_is_refused() -> None:
    with pytest.raises(LV.LeafError):
        SE.decision_leaf_hash(BASE, b"short")
