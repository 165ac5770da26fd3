"""The exact bytes each piece of evidence contributes to the Merkle log.

Every leaf commits to a row *as stored*, column by column, so that verifying
means re-reading the row and re-encoding it: no re-serialisation of values,
no formatting choices. The encoding is length-prefixed and deterministic::

    leaf   = tag || field_1 || field_2 || ...        (fields in the order declared)
    tag    = u32 len || b"chronoml/<kind>/v1"
    str    = u32 len || UTF-8                         bytes = u32 len || raw
    int    = i64 big-endian                           bool  = 0x00 | 0x01
    float  = 0x01 || IEEE 754 binary64 big-endian, or 0x02 || ASCII "nan"/"inf"/"-inf"
    opt(x) = 0x00 (absent) | 0x01 || x               (for floats: 0x00 | the float form)

The tag keeps leaves of different kinds from ever colliding. Raw inputs are
never in a leaf: a decision commits to :func:`inputs_commitment`, a salted
hash of the stored input bytes. Erasing the inputs (and the salt with them)
keeps the commitment, so every proof still verifies while nothing about the
inputs can be recovered or guessed from it.

The log itself holds ledger events one leaf each, and *batches*: the
decisions (or feedback, or explanations) of one group commit form a small
Merkle tree of their own, whose root goes into the log as a
:class:`BatchLeaf`. A decision's proof is therefore two audit paths: its leaf
up to the batch root, and the batch leaf up to the checkpoint.

Each leaf type also has a JSON form (``to_dict`` / ``from_dict``), which is what
evidence bundles hold; bytes are hex there, non-finite floats are the strings
"NaN", "Infinity" and "-Infinity".
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from chronoml.domain import merkle
from chronoml.errors import InvalidInput

_U32 = struct.Struct(">I")
_I64 = struct.Struct(">q")
_F64 = struct.Struct(">d")


class LeafError(InvalidInput):
    """A leaf that cannot be encoded or read (names the bad field)."""


def canonical_json(obj: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8, no NaN: the ledger's byte-exact JSON."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


# --- primitives ------------------------------------------------------------


def _enc_bytes(b: bytes) -> bytes:
    return _U32.pack(len(b)) + b


def _enc_str(s: str) -> bytes:
    return _enc_bytes(s.encode("utf-8"))


def _enc_float(x: float) -> bytes:
    if math.isfinite(x):
        return b"\x01" + _F64.pack(x)
    # every NaN encodes alike: its payload bits are not something a row means
    return b"\x02" + _enc_str("nan" if math.isnan(x) else ("inf" if x > 0 else "-inf"))


def _float_to_json(x: float) -> float | str:
    if math.isfinite(x):
        return x
    return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")


_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _e_str(v: Any) -> bytes:
    if type(v) is not str:
        raise TypeError
    raw = v.encode("utf-8")
    return _U32.pack(len(raw)) + raw


def _e_int(v: Any) -> bytes:
    if type(v) is not int:  # bool is an int subclass: refused here on purpose
        raise TypeError
    return _I64.pack(v)  # struct.error beyond 64 bits


def _e_bool(v: Any) -> bytes:
    if type(v) is not bool:
        raise TypeError
    return b"\x01" if v else b"\x00"


def _e_float(v: Any) -> bytes:
    if type(v) is not float and type(v) is not int:
        raise TypeError
    return _enc_float(float(v))


def _e_hash(v: Any) -> bytes:
    if type(v) is not bytes or len(v) != merkle.HASH_SIZE:
        raise TypeError
    return v


def _e_json(v: Any) -> bytes:
    if type(v) is not bytes:
        raise TypeError
    return _U32.pack(len(v)) + v


# exact type checks, no isinstance chains: encoding runs once per decision on the write path
_ENCODERS: dict[str, Callable[[Any], bytes]] = {
    "str": _e_str,
    "int": _e_int,
    "bool": _e_bool,
    "float": _e_float,
    "hash": _e_hash,
    "json": _e_json,
}


def _from_json(kind: str, optional: bool, value: Any, name: str) -> Any:
    if value is None:
        if not optional:
            raise LeafError(f"{name} is required", name)
        return None
    if kind == "str" and isinstance(value, str):
        return value
    if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "float":
        if isinstance(value, str) and value in _NONFINITE:
            return _NONFINITE[value]
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    if kind == "hash" and isinstance(value, str):
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raw = b""
        if len(raw) == merkle.HASH_SIZE and raw.hex() == value:  # lowercase, one spelling
            return raw
    if kind == "json":
        try:
            return canonical_json(value)
        except (TypeError, ValueError):
            raise LeafError(f"{name} is not JSON", name) from None
    raise LeafError(f"{name} has the wrong type for a {kind} field", name)


def _to_json(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind == "float":
        return _float_to_json(value)
    if kind == "hash":
        return value.hex()
    if kind == "json":
        return json.loads(value)
    return value


class _Leaf:
    """Shared encoding, hashing and JSON for the leaf dataclasses below.

    ``SPEC`` gives each field's kind and whether it may be None, in encoding order.
    """

    KIND: ClassVar[str]
    VERSION: ClassVar[int] = 1
    SPEC: ClassVar[tuple[tuple[str, str, bool], ...]]
    _TAG: ClassVar[bytes]
    _PLAN: ClassVar[tuple[tuple[str, Callable[[Any], bytes], bool], ...]]

    def encode(self) -> bytes:
        """The leaf's canonical bytes."""
        parts = [self._TAG]
        for name, encoder, optional in self._PLAN:
            value = getattr(self, name)
            if value is None:
                if not optional:
                    raise LeafError(f"{name} is required", name)
                parts.append(b"\x00")
                continue
            try:
                raw = encoder(value)
            except (TypeError, struct.error):
                raise LeafError(f"{name} has the wrong type or range for its field", name) from None
            # floats carry their own presence byte, so an optional float needs no second one
            parts.append(b"\x01" + raw if optional and encoder is not _e_float else raw)
        return b"".join(parts)

    def leaf_hash(self) -> bytes:
        """``SHA-256(0x00 || encode())``: this item's leaf in its tree."""
        return merkle.leaf_hash(self.encode())

    def to_dict(self) -> dict[str, Any]:
        """The JSON form evidence bundles hold."""
        return {name: _to_json(kind, getattr(self, name)) for name, kind, _ in self.SPEC}

    @classmethod
    def _values(cls, d: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(d, Mapping):
            raise LeafError(f"a {cls.KIND} is a JSON object", cls.KIND)
        known = {name for name, _, _ in cls.SPEC}
        extra = sorted(set(d) - known)
        if extra:
            # an unknown field would be shown to a reader but not covered by the hash
            raise LeafError(f"{extra[0]} is not a field of a {cls.KIND}", extra[0])
        return {name: _from_json(kind, opt, d.get(name), name) for name, kind, opt in cls.SPEC}


def _prepare(cls: type[_Leaf]) -> None:
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    assert names == [s[0] for s in cls.SPEC], cls
    cls._TAG = _enc_str(f"chronoml/{cls.KIND}/v{cls.VERSION}")
    cls._PLAN = tuple((name, _ENCODERS[kind], opt) for name, kind, opt in cls.SPEC)


# --- the leaf types ----------------------------------------------------------------


@dataclass(frozen=True)
class DecisionLeaf(_Leaf):
    """One row of the decision log as stored, inputs replaced by their commitment."""

    KIND: ClassVar[str] = "decision"
    # v2: the class scores (by their SHA-256) and the context a decision carries
    VERSION: ClassVar[int] = 2
    SPEC: ClassVar[tuple[tuple[str, str, bool], ...]] = (
        ("id", "str", False),
        ("ts", "int", False),
        ("endpoint", "str", False),
        ("variant", "str", False),
        ("model_name", "str", False),
        ("model_version", "str", False),
        ("event_seq", "int", False),
        ("shadow", "bool", False),
        ("unit", "str", True),
        ("request_id", "str", False),
        ("layout", "str", False),
        ("inputs_commitment", "hash", False),
        ("output", "str", False),
        ("output_num", "float", True),
        ("latency_ms", "float", False),
        ("scores_digest", "hash", True),
        ("context", "str", True),
    )

    id: str
    ts: int
    endpoint: str
    variant: str
    model_name: str
    model_version: str
    event_seq: int
    shadow: bool
    unit: str | None
    request_id: str
    layout: str
    inputs_commitment: bytes
    output: str
    output_num: float | None
    latency_ms: float
    scores_digest: bytes | None = None  # SHA-256 of the packed class scores, when logged
    context: str | None = None  # the context as stored (JSON text), when given

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DecisionLeaf:
        """Read the JSON form; raises :class:`LeafError` naming the bad field."""
        return cls(**cls._values(d))


@dataclass(frozen=True)
class LedgerEventLeaf(_Leaf):
    """One ledger event: its canonical content, its chain hash and its derived ``sets_state``."""

    KIND: ClassVar[str] = "ledger_event"
    SPEC: ClassVar[tuple[tuple[str, str, bool], ...]] = (
        ("seq", "int", False),
        ("content", "json", False),
        ("hash", "str", False),
        ("sets_state", "bool", False),
    )

    seq: int
    content: bytes  # canonical JSON of the event's content (prev_hash included)
    hash: str  # hex SHA-256 of ``content``: the event's link in the hash chain
    sets_state: bool

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LedgerEventLeaf:
        """Read the JSON form (``content`` as a JSON object)."""
        return cls(**cls._values(d))

    def problem(self) -> str | None:
        """Why the stored columns disagree with the content they derive from, or None."""
        if hashlib.sha256(self.content).hexdigest() != self.hash:
            return "the event's hash does not match its content"
        try:
            seq = json.loads(self.content).get("seq")
        except (ValueError, AttributeError):
            return "the event's content is not a JSON object"
        if seq != self.seq:
            return f"the event's content says seq {seq}, the row says {self.seq}"
        return None


@dataclass(frozen=True)
class FeedbackLeaf(_Leaf):
    """One label recorded for a decision."""

    KIND: ClassVar[str] = "feedback"
    SPEC: ClassVar[tuple[tuple[str, str, bool], ...]] = (
        ("id", "int", False),
        ("decision_id", "str", False),
        ("label", "str", False),
        ("label_num", "float", True),
        ("observed_at", "int", True),
        ("recorded_at", "int", False),
        ("actor", "str", False),
    )

    id: int
    decision_id: str
    label: str
    label_num: float | None
    observed_at: int | None
    recorded_at: int
    actor: str

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeedbackLeaf:
        """Read the JSON form."""
        return cls(**cls._values(d))


@dataclass(frozen=True)
class ExplanationLeaf(_Leaf):
    """One stored explanation, its JSON columns kept as the exact stored text."""

    KIND: ClassVar[str] = "explanation"
    SPEC: ClassVar[tuple[tuple[str, str, bool], ...]] = (
        ("decision_id", "str", False),
        ("explainer", "str", False),
        ("output_scale", "str", False),
        ("base_value", "float", False),
        ("contributions", "str", False),
        ("background", "str", False),
        ("created_at", "int", False),
    )

    decision_id: str
    explainer: str
    output_scale: str
    base_value: float
    contributions: str
    background: str
    created_at: int

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ExplanationLeaf:
        """Read the JSON form."""
        return cls(**cls._values(d))


@dataclass(frozen=True)
class BatchLeaf(_Leaf):
    """A log entry standing for one group commit: ``size`` items of ``items`` under ``root``."""

    KIND: ClassVar[str] = "batch"
    SPEC: ClassVar[tuple[tuple[str, str, bool], ...]] = (
        ("items", "str", False),
        ("size", "int", False),
        ("root", "hash", False),
        ("committed_at", "int", False),
    )

    items: str  # "decision", "feedback" or "explanation"
    size: int
    root: bytes
    committed_at: int

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BatchLeaf:
        """Read the JSON form."""
        return cls(**cls._values(d))


for _cls in (DecisionLeaf, LedgerEventLeaf, FeedbackLeaf, ExplanationLeaf, BatchLeaf):
    _prepare(_cls)

LeafType = DecisionLeaf | LedgerEventLeaf | FeedbackLeaf | ExplanationLeaf | BatchLeaf

ITEM_KINDS: dict[str, type[DecisionLeaf | LedgerEventLeaf | FeedbackLeaf | ExplanationLeaf]] = {
    "decision": DecisionLeaf,
    "ledger_event": LedgerEventLeaf,
    "feedback": FeedbackLeaf,
    "explanation": ExplanationLeaf,
}
# kinds committed in batches (two-level proofs); ledger events are log leaves themselves
BATCHED_KINDS = frozenset({"decision", "feedback", "explanation"})


def item_from_dict(kind: str, d: Mapping[str, Any]) -> LeafType:
    """Read an item of ``kind`` from its JSON form."""
    cls = ITEM_KINDS.get(kind)
    if cls is None:
        raise LeafError(f"unknown item kind {kind!r}", "kind")
    return cls.from_dict(d)


def inputs_commitment(
    layout: str, num: bytes, txt: str | None, salt: bytes, context: str | None = None
) -> bytes:
    """The commitment a decision leaf holds instead of its inputs (and context).

    ``SHA-256(tag || salt || layout || num || opt(txt))`` over the stored
    columns, and for a decision with context ``SHA-256(tag2 || salt || layout
    || num || opt(txt) || context)``. ``salt`` (16 random bytes or more, stored
    with the inputs and erased with them) keeps low-entropy inputs from being
    guessed from the commitment once the raw bytes are gone.

    Decisions logged before context was committed here carry their context
    verbatim in the leaf instead (``DecisionLeaf.context``); since, the leaf's
    context is None and erasing a subject removes the context with the inputs.
    """
    if len(salt) < 16:
        raise LeafError("the input salt must be at least 16 bytes", "salt")
    body = (
        _enc_str("chronoml/inputs/v1" if context is None else "chronoml/inputs/v2")
        + _enc_bytes(salt)
        + _enc_str(layout)
        + _enc_bytes(num)
        + (b"\x00" if txt is None else b"\x01" + _enc_str(txt))
        + (b"" if context is None else _enc_str(context))
    )
    return hashlib.sha256(body).digest()


def batch_root(leaves: list[bytes]) -> bytes:
    """The root of one group commit's items (their leaf hashes, in insertion order)."""
    return merkle.root_of(leaves)
