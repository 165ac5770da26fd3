"""What an endpoint serves: model versions with their lineage, as variants with weights.

A :class:`ModelRef` is one resolved, registered version: its run, artifact
digest, training snapshot and code version. A :class:`Variant` serves one
version at a weight (or as a shadow); an :class:`EndpointState` is the
variants live on an endpoint after a ledger event.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chronoml.domain import buckets as B


@dataclass(frozen=True)
class ModelRef:
    """A concrete, resolved model version and its lineage."""

    name: str
    version: str
    run_id: str | None
    artifact_digest: str
    artifact_uri: str | None = None
    data_snapshot: Mapping[str, Any] | None = None
    code_version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "run_id": self.run_id,
            "artifact_digest": self.artifact_digest,
            "artifact_uri": self.artifact_uri,
            "data_snapshot": dict(self.data_snapshot) if self.data_snapshot else None,
            "code_version": self.code_version,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelRef:
        return cls(
            name=d["name"],
            version=str(d["version"]),
            run_id=d.get("run_id"),
            artifact_digest=d["artifact_digest"],
            artifact_uri=d.get("artifact_uri"),
            data_snapshot=d.get("data_snapshot"),
            code_version=d.get("code_version"),
        )


@dataclass(frozen=True)
class Variant:
    """One model version serving on an endpoint.

    ``weight`` is in basis points of the answering traffic; shadow variants
    have weight 0 and only ever see copies. ``buckets`` are the routing
    buckets it owns (``weight`` of them; see :mod:`chronoml.domain.buckets`);
    None in states recorded before ownership was kept, which route by
    contiguous ranges in join order.
    """

    name: str
    model: ModelRef
    weight: int
    shadow: bool = False
    since: int | None = None  # seq of the deploy event that made it live
    buckets: B.Ranges | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "variant": self.name,
            "weight": self.weight,
            "shadow": self.shadow,
            "model": self.model.to_dict(),
            "since": self.since,
        }
        if self.buckets is not None:  # absent in older events: their hashes stay valid
            d["buckets"] = [list(r) for r in self.buckets]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Variant:
        raw = d.get("buckets")
        return cls(
            name=d["variant"],
            model=ModelRef.from_dict(d["model"]),
            weight=int(d["weight"]),
            shadow=bool(d["shadow"]),
            since=d.get("since"),
            buckets=tuple((int(a), int(b)) for a, b in raw) if raw is not None else None,
        )


@dataclass(frozen=True)
class EndpointState:
    """What an endpoint serves: its variants, in the order they joined."""

    endpoint: str
    variants: tuple[Variant, ...] = ()
    seq: int | None = None  # the ledger event that produced this state

    @property
    def answering(self) -> tuple[Variant, ...]:
        return tuple(v for v in self.variants if not v.shadow)

    @property
    def shadows(self) -> tuple[Variant, ...]:
        return tuple(v for v in self.variants if v.shadow)

    def variant(self, name: str) -> Variant | None:
        for v in self.variants:
            if v.name == name:
                return v
        return None

    def to_list(self) -> list[dict[str, Any]]:
        return [v.to_dict() for v in self.variants]
