"""The answers of chronoml's questions as typed values.

The facade (:class:`chronoml.Chronoml`) returns these, the CLI formats them,
and the REST API sends ``as_dict()``: the one JSON form of each answer, so the
CLI's ``--json``, the REST body and the Python value never disagree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chronoml.domain import ledger as L
from chronoml.domain.lineage import Variant
from chronoml.timeutil import iso

if TYPE_CHECKING:
    # a policy's module loads pandas: only the type is needed here
    from chronoml.domain.privacy import Policy


@dataclass(frozen=True)
class ModelLineage:
    """The registered model version a variant serves."""

    name: str
    version: str
    run_id: str | None
    artifact_digest: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "run_id": self.run_id,
            "artifact_digest": self.artifact_digest,
        }


@dataclass(frozen=True)
class LiveVariant:
    """One variant as served: its share of traffic and the lineage of its version."""

    variant: str
    weight: float  # percent of the answering traffic; 0 for a shadow
    shadow: bool
    model: ModelLineage
    data_snapshot: Mapping[str, Any] | None
    code_version: str | None
    since_event: int | None

    @classmethod
    def of(cls, v: Variant) -> LiveVariant:
        m = v.model
        return cls(
            variant=v.name,
            weight=v.weight / 100,
            shadow=v.shadow,
            model=ModelLineage(m.name, m.version, m.run_id, m.artifact_digest),
            data_snapshot=dict(m.data_snapshot) if m.data_snapshot else None,
            code_version=m.code_version,
            since_event=v.since,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "weight": self.weight,
            "shadow": self.shadow,
            "model": self.model.as_dict(),
            "data_snapshot": dict(self.data_snapshot) if self.data_snapshot else None,
            "code_version": self.code_version,
            "since_event": self.since_event,
        }


@dataclass(frozen=True)
class EventRef:
    """A ledger event as answers cite it."""

    seq: int
    hash: str
    kind: str
    recorded_at: int
    effective_at: int
    actor: str

    @classmethod
    def of(cls, e: L.LedgerEvent) -> EventRef:
        return cls(e.seq, e.hash, e.kind, e.recorded_at, e.effective_at, e.actor)

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "hash": self.hash,
            "kind": self.kind,
            "recorded_at": iso(self.recorded_at),
            "effective_at": iso(self.effective_at),
            "actor": self.actor,
        }


def _variants(vs: Sequence[Variant] | None) -> tuple[LiveVariant, ...]:
    return tuple(LiveVariant.of(v) for v in vs or ())


@dataclass(frozen=True)
class Status:
    """What was live on an endpoint at a moment, and the event that made it so."""

    endpoint: str
    at: int
    variants: tuple[LiveVariant, ...]
    event: EventRef | None

    def variant(self, name: str) -> LiveVariant:
        for v in self.variants:
            if v.variant == name:
                return v
        raise KeyError(name)

    def as_dict(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "at": iso(self.at),
            "variants": [v.as_dict() for v in self.variants],
            "event": self.event.as_dict() if self.event else None,
        }


@dataclass(frozen=True)
class HistoryEntry:
    """One ledger event in an endpoint's timeline, with its one-line summary."""

    event: EventRef
    summary: str
    payload: Mapping[str, Any]
    # for a rollback: what came back
    restored: tuple[LiveVariant, ...] | None = None

    @classmethod
    def of(cls, e: L.LedgerEvent) -> HistoryEntry:
        return cls(
            event=EventRef.of(e),
            summary=L.event_summary(e),
            payload=dict(e.payload),
            restored=_variants(e.state) if e.kind == "rollback" else None,
        )

    def as_dict(self) -> dict[str, Any]:
        out = {**self.event.as_dict(), "summary": self.summary, "payload": dict(self.payload)}
        if self.restored is not None:
            out["restored"] = [v.as_dict() for v in self.restored]
        return out


@dataclass(frozen=True)
class History:
    """An endpoint's ledger timeline, oldest first."""

    endpoint: str
    events: tuple[HistoryEntry, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "events": [e.as_dict() for e in self.events]}


@dataclass(frozen=True)
class EndpointNow:
    """An endpoint and what it serves now."""

    endpoint: str
    variants: tuple[LiveVariant, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "variants": [v.as_dict() for v in self.variants]}


@dataclass(frozen=True)
class DecisionRecord:
    """A logged decision with its lineage: the version that made it, its training data,
    the event that routed it, what it was sent and answered, its labels and explanation."""

    id: str
    ts: int
    endpoint: str
    variant: str
    shadow: bool
    unit: str | None
    inputs: Mapping[str, Any] | None
    output: Any
    latency_ms: float
    served_by: LiveVariant | None  # None when the routing state no longer names the variant
    event: EventRef | None  # the deploy that made the version live
    routed_by_event: EventRef | None
    labels: tuple[Mapping[str, Any], ...] = ()
    explanation: Mapping[str, Any] | None = None
    # fields withheld from this reader, and the role that may see them
    redacted: Mapping[str, Any] | None = None
    # when, by whom and why the inputs were erased (None: they are kept)
    inputs_erased: Mapping[str, Any] | None = None

    @property
    def label(self) -> Any:
        """The latest label, or None before feedback arrives."""
        return self.labels[-1]["label"] if self.labels else None

    def without_inputs(self, needs_role: str) -> DecisionRecord:
        """The same decision for a reader who may not see who it was or what they sent."""
        return DecisionRecord(
            **{
                **self.__dict__,
                "inputs": None,
                "unit": None,
                # erased inputs are gone for every reader: only the unit is withheld
                "redacted": {
                    "fields": ["unit"] if self.inputs_erased is not None else ["inputs", "unit"],
                    "needs_role": needs_role,
                },
            }
        )

    def as_dict(self) -> dict[str, Any]:
        sv = self.served_by
        out: dict[str, Any] = {
            "id": self.id,
            "time": iso(self.ts),
            "endpoint": self.endpoint,
            "variant": self.variant,
            "shadow": self.shadow,
            "unit": self.unit,
            "model": sv.model.as_dict() if sv else None,
            "data_snapshot": dict(sv.data_snapshot) if sv and sv.data_snapshot else None,
            "code_version": sv.code_version if sv else None,
            "event": self.event.as_dict() if self.event else None,
            "routed_by_event": self.routed_by_event.as_dict() if self.routed_by_event else None,
            "inputs": dict(self.inputs) if self.inputs is not None else None,
            "output": self.output,
            "latency_ms": self.latency_ms,
        }
        if self.labels:
            out["label"] = self.label
            out["label_history"] = [dict(x) for x in self.labels]
        if self.explanation is not None:
            out["explanation"] = dict(self.explanation)
        if self.inputs_erased is not None:
            out["inputs_erased"] = dict(self.inputs_erased)
        if self.redacted is not None:
            out["redacted"] = dict(self.redacted)
        return out


@dataclass(frozen=True)
class FeedbackResult:
    """What attaching a batch of labels did: new labels, replaced labels, and how many
    decisions gained context."""

    labelled: int
    updated: int
    context: int | None = None

    def as_dict(self) -> dict[str, int]:
        out = {"labelled": self.labelled, "updated": self.updated}
        if self.context is not None:
            out["context"] = self.context
        return out


@dataclass(frozen=True)
class PrivacyPolicy:
    """An endpoint's privacy policy and the event that set it (``set_at`` None: never set,
    everything is kept)."""

    endpoint: str
    policy: Policy
    event_seq: int | None = None
    set_at: int | None = None
    set_by: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"endpoint": self.endpoint, **self.policy.to_dict()}
        if self.set_at is None:
            return {**out, "set_at": None, "set_by": None}
        out["event_seq"] = self.event_seq
        out["set_at"] = iso(self.set_at)
        out["set_by"] = self.set_by
        return out


@dataclass(frozen=True)
class Erasure:
    """What erasing one subject's inputs did: decisions per endpoint, and whether the
    database's free pages were overwritten as well."""

    unit_hash: str
    endpoints: Mapping[str, int]
    erased_at: int
    erased_by: str
    files_scrubbed: bool

    @property
    def decisions(self) -> int:
        return sum(self.endpoints.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "files_scrubbed": self.files_scrubbed,
            "unit_hash": self.unit_hash,
            "decisions": self.decisions,
            "endpoints": dict(self.endpoints),
            "erased_at": iso(self.erased_at),
            "erased_by": self.erased_by,
        }


@dataclass(frozen=True)
class Retention:
    """What enforcing input retention did: decisions older than ``before`` per endpoint."""

    before: int
    endpoints: Mapping[str, int]

    @property
    def decisions(self) -> int:
        return sum(self.endpoints.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "before": iso(self.before),
            "decisions": self.decisions,
            "endpoints": dict(self.endpoints),
        }
