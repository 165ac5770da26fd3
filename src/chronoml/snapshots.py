"""Snapshots by reference: resolve ``sha256:ID``, ``NAME@latest`` or ``NAME@TIME``, read one
back with its hash checked, and show where it went (runs, versions, endpoints).

The store keeps the snapshots, MLflow keeps the runs linked to them (their tags), and the
ledger says which endpoints served the versions those runs registered.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chronoml.context import Context
from chronoml.domain.snapshot import Snapshot, SnapshotRef, parse_ref, pick
from chronoml.store import Store
from chronoml.store import ledger as ledger_store
from chronoml.store import snapshots as snapshot_store
from chronoml.timeutil import iso, now_us

if TYPE_CHECKING:
    import pandas as pd

    from chronoml.registry.lineage import RunUse


def resolve(store: Store, ref: str | SnapshotRef) -> Snapshot:
    """The one snapshot ``ref`` names; ``SnapshotNotFound`` or ``AmbiguousSnapshot`` else."""
    parsed = parse_ref(ref) if isinstance(ref, str) else ref
    return pick(parsed, snapshot_store.candidates(store, parsed))


def load(store: Store, ref: str | SnapshotRef, *, link: bool = True) -> pd.DataFrame:
    """The data of the snapshot ``ref`` names, checked against its id.

    Inside an active MLflow run (and with ``link``), the run is linked to the snapshot
    the first time, as :func:`chronoml.log_snapshot` would.
    """
    snap = resolve(store, ref)
    frame = snapshot_store.load(snap)
    if link and _run_active():
        # lazy: mlflow costs 1.6 s to import, and only a training run needs it
        from chronoml.registry.lineage import link_active_run_once

        link_active_run_once(snap)
    return frame


def _run_active() -> bool:
    # only a process that already imported mlflow can have an active run: a plain read
    # never pays for importing it
    mlflow = sys.modules.get("mlflow")
    return mlflow is not None and mlflow.active_run() is not None


@dataclass(frozen=True)
class EndpointUse:
    """An endpoint that served a version trained on the snapshot."""

    endpoint: str
    model: str
    version: str
    since_seq: int
    since: str
    live_now: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "model": {"name": self.model, "version": self.version},
            "since_seq": self.since_seq,
            "since": self.since,
            "live_now": self.live_now,
        }


@dataclass(frozen=True)
class SnapshotDetails:
    """A snapshot with its columns, taker, lineage, and the runs and endpoints that used it."""

    snapshot: Snapshot
    runs: tuple[RunUse, ...]
    endpoints: tuple[EndpointUse, ...]

    def to_dict(self) -> dict[str, Any]:
        s = self.snapshot
        return {
            **s.to_dict(),
            "columns": [{"name": n, "type": t} for n, t in s.columns],
            "taken_by": s.actor,
            "lineage": dict(s.lineage) if s.lineage is not None else None,
            "runs": [r.to_dict() for r in self.runs],
            "endpoints": [e.to_dict() for e in self.endpoints],
        }


def details(ctx: Context, ref: str) -> SnapshotDetails:
    """Everything known about the snapshot ``ref`` names."""
    # lazy: mlflow costs 1.6 s to import; resolving and listing never need it
    from chronoml.registry.lineage import runs_with_snapshot

    snap = resolve(ctx.store, ref)
    runs = tuple(runs_with_snapshot(ctx.registry, snap.id))
    versions = {nv for r in runs for nv in r.versions}
    return SnapshotDetails(snap, runs, tuple(served_by(ctx.store, versions)))


def served_by(store: Store, versions: set[tuple[str, str]]) -> list[EndpointUse]:
    """Endpoints whose ledger made any of ``versions`` live, first time each, by endpoint."""
    if not versions:
        return []
    first: dict[tuple[str, str, str], tuple[int, int]] = {}
    for ev in ledger_store.iter_events(store):
        for v in ev.state or ():
            key = (ev.endpoint, v.model.name, v.model.version)
            if (v.model.name, v.model.version) in versions and key not in first:
                first[key] = (ev.seq, ev.effective_at)
    now = now_us()
    live: dict[str, set[tuple[str, str]]] = {}
    out = []
    for (endpoint, name, version), (seq, at) in sorted(first.items()):
        if endpoint not in live:
            state = ledger_store.state_at(store, endpoint, now)
            live[endpoint] = {(v.model.name, v.model.version) for v in state.variants}
        out.append(
            EndpointUse(endpoint, name, version, seq, iso(at), (name, version) in live[endpoint])
        )
    return out
