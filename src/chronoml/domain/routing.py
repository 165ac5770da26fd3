"""Weighted, sticky assignment of units to variants.

A unit key (a customer id, a session) hashes to one of ``TOTAL_WEIGHT``
buckets for its endpoint, and the state says which answering variant owns
each bucket. A change of split moves only the buckets the new weights
require (see :mod:`chronoml.domain.buckets`), so a unit is never
re-randomised and keeps its variant unless that variant must give it up.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

from chronoml.domain.ledger import TOTAL_WEIGHT, Variant, owned_buckets


class NothingAnswers(LookupError):
    """The state has no answering variant (only shadows, or nothing)."""


def bucket(endpoint: str, unit: str) -> int:
    """The unit's bucket in ``[0, TOTAL_WEIGHT)``, stable across processes."""
    digest = hashlib.blake2b(f"{endpoint}\x00{unit}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % TOTAL_WEIGHT


class Router:
    """The owner of every bucket of one state, for constant-time picks."""

    def __init__(self, variants: Sequence[Variant]) -> None:
        by_name = {v.name: v for v in variants if not v.shadow}
        table: list[Variant | None] = [None] * TOTAL_WEIGHT
        last: Variant | None = None
        for name, ranges in owned_buckets(variants).items():
            v = by_name[name]
            last = v
            for start, end in ranges:
                table[start:end] = [v] * (end - start)
        if last is None:
            self.table: list[Variant] = []
            return
        # a state whose weights fall short of 100% (never written by chronoml):
        # the buckets nobody owns go to the last answering variant, as before
        filler = [v for v in variants if not v.shadow and v.weight > 0][-1]
        self.table = [filler if v is None else v for v in table]

    @property
    def answers(self) -> bool:
        return bool(self.table)

    def pick(self, b: int) -> Variant:
        if not self.table:
            raise NothingAnswers("no answering variant")
        return self.table[b]

    def route(self, endpoint: str, unit: str | None, rng: random.Random | None = None) -> Variant:
        b = bucket(endpoint, unit) if unit is not None else (rng or random).randrange(TOTAL_WEIGHT)
        return self.pick(b)


def pick(variants: Sequence[Variant], b: int) -> Variant:
    """The answering variant that owns bucket ``b`` (a scan; :class:`Router` for many)."""
    answering = [v for v in variants if not v.shadow and v.weight > 0]
    if not answering:
        raise NothingAnswers("no answering variant")
    by_name = {v.name: v for v in answering}
    for name, ranges in owned_buckets(variants).items():
        for start, end in ranges:
            if start <= b < end:
                return by_name[name]
    return answering[-1]


def route(
    endpoint: str, variants: Sequence[Variant], unit: str | None, rng: random.Random | None = None
) -> Variant:
    """Choose the variant for a request: sticky by ``unit``, random without one."""
    b = bucket(endpoint, unit) if unit is not None else (rng or random).randrange(TOTAL_WEIGHT)
    return pick(variants, b)
