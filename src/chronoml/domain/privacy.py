"""What the decision log keeps of a decision's inputs: the per-endpoint privacy policy.

Each input feature and each context attribute is ``keep`` (stored as sent, the
default), ``hash`` (stored only as a keyed hash: an HMAC-SHA-256 under the
store's privacy secret, so equal values still group and join, while the value
cannot be recovered or guessed without the secret) or ``drop`` (never written).
The unit key may be hashed the same way.

A policy is compiled once per endpoint and input schema into a
:class:`StoragePlan`; the gateway applies it where it encodes decisions for
the log, so what a policy removes never reaches a row, a block or a backup.
Hashed values are strings ``h:<32 hex digits>`` (128 bits of the HMAC).
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pandas as pd

from chronoml.domain import codec
from chronoml.domain.codec import NUMERIC_KINDS, Schema
from chronoml.errors import InvalidInput

MODES = ("keep", "hash", "drop")
UNIT_MODES = ("keep", "hash")
HASH_PREFIX = "h:"
# the name a unit key is hashed under: no feature can be called this
UNIT_NAME = "\x00unit"


def keyed_hash(secret: bytes, name: str, value: Any) -> str:
    """``h:`` and 128 bits of HMAC-SHA-256(secret, name NUL canonical-value).

    Numbers hash by their float value, so ``3`` and ``3.0`` (an int column
    read as a float matrix, or as a frame) give the same hash.
    """
    if isinstance(value, bool):
        value = float(value)
    if isinstance(value, int | float | np.integer | np.floating):
        f = float(value)
        raw = b"nan" if math.isnan(f) else repr(f).encode()
    else:
        raw = orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)
    mac = hmac.new(secret, name.encode() + b"\x00" + raw, hashlib.sha256).digest()
    return HASH_PREFIX + mac[:16].hex()


def unit_hash(secret: bytes, unit: str) -> str:
    """The keyed hash of a unit key: what a hashed unit is stored as, and what an
    erasure event records instead of the key."""
    return keyed_hash(secret, UNIT_NAME, unit)


@dataclass(frozen=True)
class Policy:
    """One endpoint's policy; features and attributes not named are kept."""

    features: Mapping[str, str] = field(default_factory=dict)
    context: Mapping[str, str] = field(default_factory=dict)
    unit_key: str = "keep"

    @property
    def plain(self) -> bool:
        """Nothing is hashed or dropped: decisions are stored as sent."""
        return (
            self.unit_key == "keep"
            and all(m == "keep" for m in self.features.values())
            and all(m == "keep" for m in self.context.values())
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": dict(sorted(self.features.items())),
            "context": dict(sorted(self.context.items())),
            "unit_key": self.unit_key,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Policy:
        return cls(dict(d.get("features") or {}), dict(d.get("context") or {}), d["unit_key"])

    def merged(
        self,
        features: Mapping[str, str],
        context: Mapping[str, str],
        unit_key: str | None,
    ) -> Policy:
        """This policy with the given rules set on top (``keep`` removes a rule)."""
        f = {**self.features, **features}
        c = {**self.context, **context}
        return Policy(
            {k: v for k, v in f.items() if v != "keep"},
            {k: v for k, v in c.items() if v != "keep"},
            unit_key or self.unit_key,
        )

    def not_used(self) -> list[dict[str, str]]:
        """The features statistics cannot use, and why."""
        why = {"hash": "hashed by the privacy policy", "drop": "dropped by the privacy policy"}
        return [{"feature": f, "reason": why[m]} for f, m in sorted(self.features.items())]


def parse_rules(items: Sequence[str], what: str = "feature") -> dict[str, str]:
    """``NAME=keep|hash|drop`` items into a mapping; InvalidInput names the bad one."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, mode = item.partition("=")
        name, mode = name.strip(), mode.strip()
        if not sep or not name:
            raise InvalidInput(f"{what} rule {item!r} must read NAME=keep|hash|drop", what)
        check_mode(mode, what, name)
        out[name] = mode
    return out


def check_mode(mode: Any, what: str, name: str = "") -> None:
    if mode not in MODES:
        label = f"{what} {name!r}" if name else what
        raise InvalidInput(
            f"unknown privacy mode {mode!r} for {label}: use keep, hash or drop", what
        )


def check_unit_mode(mode: Any) -> None:
    if mode not in UNIT_MODES:
        raise InvalidInput(f"unknown unit_key mode {mode!r}: use keep or hash", "unit_key")


class StoragePlan:
    """A policy applied to one input schema: the schema stored and how to encode rows for it.

    Built once per (policy, schema); applying it costs nothing for columns kept,
    one HMAC per value hashed, and a column selection for those dropped.
    """

    def __init__(self, policy: Policy, schema: Schema, secret: bytes) -> None:
        self.policy = policy
        self.secret = secret
        modes = [(c, k, policy.features.get(c, "keep")) for c, k in schema]
        self.schema = schema
        self.stored_schema: Schema = tuple(
            (c, "string" if m == "hash" else k) for c, k, m in modes if m != "drop"
        )
        self.identity = all(m == "keep" for _, _, m in modes)
        self.layout = codec.layout_id(self.stored_schema)
        numeric = [(c, k, m) for c, k, m in modes if k in NUMERIC_KINDS]
        # positions in the float matrix of the numeric columns kept as numbers
        self._keep_idx = [i for i, (_, _, m) in enumerate(numeric) if m == "keep"]
        self._hash_idx = [(i, c) for i, (c, _, m) in enumerate(numeric) if m == "hash"]
        self._names = [c for c, _ in schema]
        self.hashed = [c for c, _, m in modes if m == "hash"]
        self.dropped = [c for c, _, m in modes if m == "drop"]
        self._context = {k: v for k, v in policy.context.items() if v != "keep"}
        self._hash_unit = policy.unit_key == "hash"

    def encode_matrix(self, mat: np.ndarray[Any, Any]) -> tuple[list[bytes], list[str | None]]:
        """Packed inputs and text inputs of a float matrix in the model's schema order
        (every column numeric), as stored under this plan."""
        kept = mat if len(self._keep_idx) == mat.shape[1] else mat[:, self._keep_idx]
        n = mat.shape[0]
        packed = codec.pack_rows(kept) if kept.shape[1] else [b""] * n
        if not self._hash_idx:
            return packed, [None] * n
        s = self.secret
        cols = [[keyed_hash(s, c, v) for v in mat[:, i].tolist()] for i, c in self._hash_idx]
        return packed, [orjson.dumps(list(r)).decode() for r in zip(*cols, strict=True)]

    def encode_frame(self, df: pd.DataFrame) -> tuple[list[bytes], list[str | None]]:
        """Packed and text inputs of a conformed frame, as stored under this plan."""
        if self.identity:
            return codec.encode(df, self.schema)
        keep = [c for c, _ in self.stored_schema]
        out = df[keep].copy() if keep else pd.DataFrame(index=df.index)
        s = self.secret
        for c in self.hashed:
            out[c] = [keyed_hash(s, c, v) for v in df[c].tolist()]
        return codec.encode(out, self.stored_schema)

    def unit(self, unit: str | None) -> str | None:
        """The unit key as stored."""
        if unit is None or not self._hash_unit:
            return unit
        return unit_hash(self.secret, unit)

    def context(self, texts: Sequence[str | None]) -> Sequence[str | None]:
        """Each row's context JSON as stored."""
        if not self._context:
            return texts
        return [None if t is None else apply_context(self, orjson.loads(t)) for t in texts]

    def context_dict(self, ctx: Mapping[str, Any]) -> dict[str, Any]:
        """A context mapping as stored (context sent later, with feedback)."""
        out: dict[str, Any] = {}
        for k, v in ctx.items():
            mode = self._context.get(k, "keep")
            if mode == "keep":
                out[k] = v
            elif mode == "hash":
                out[k] = v if v is None else keyed_hash(self.secret, k, v)
        return out


def apply_context(plan: StoragePlan, ctx: Mapping[str, Any]) -> str:
    return orjson.dumps(plan.context_dict(ctx)).decode()


def context_plan(policy: Policy, secret: bytes) -> StoragePlan:
    """A plan for context and unit keys alone (no input schema)."""
    return StoragePlan(policy, (), secret)
