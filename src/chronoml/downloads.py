"""Pinned downloads: a version's artifacts copied out with their lineage, and any model
folder checked against the registry.

The digest a folder must match is the one chronoml recorded for the version: in the ledger
when it was deployed, or on the version (``chronoml.artifact.digest``) the first time it
was downloaded. A version never seen before gets its digest recorded on that first download.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chronoml.context import Context
from chronoml.domain.ledger import ModelRef
from chronoml.errors import Refused
from chronoml.registry import downloads as D
from chronoml.store import ledger as ledger_store
from chronoml.timeutil import iso, now_us


class ArtifactMismatch(Refused):
    """Artifacts whose digest is not the one recorded for their version."""

    code = "artifact_mismatch"


def recorded_digest(ctx: Context, name: str, version: str) -> tuple[str | None, str | None]:
    """The digest recorded for a version and where: ("ledger" | "registry", digest)."""
    for ev in ledger_store.iter_events(ctx.store):
        for v in ev.state or ():
            if v.model.name == name and v.model.version == version:
                return "ledger", v.model.artifact_digest
    tag = D.digest_tag(ctx.registry, name, version)
    return ("registry", tag) if tag else (None, None)


def lineage_of(ref: ModelRef, uri: str, digest_source: str) -> dict[str, Any]:
    """What the lineage file says: model, run, digest, data snapshot, code version."""
    snap = dict(ref.data_snapshot) if ref.data_snapshot else None
    return {
        "model": {"name": ref.name, "version": ref.version, "uri": uri},
        "run_id": ref.run_id,
        "artifact_digest": ref.artifact_digest,
        "digest_recorded_in": digest_source,
        "data_snapshot": snap,
        "code_version": ref.code_version,
        "written_at": iso(now_us()),
    }


def _checked(ctx: Context, uri: str) -> tuple[ModelRef, Path, str]:
    """Resolve ``uri``; its artifact's digest must be the one recorded for the version."""
    resolved = ctx.registry.resolve(uri)
    ref = resolved.ref
    where, digest = recorded_digest(ctx, ref.name, ref.version)
    if digest is None:
        D.record_digest(ctx.registry, ref.name, ref.version, ref.artifact_digest)
        where = "registry (recorded now)"
    elif digest != ref.artifact_digest:
        raise ArtifactMismatch(
            f"{ref.name} v{ref.version}: MLflow's artifact hashes to {ref.artifact_digest}, "
            f"but {digest} was recorded in the {where}; refusing it",
            "model_uri",
        )
    assert where is not None
    return ref, resolved.archive, where


def download(ctx: Context, uri: str, dest: Path) -> dict[str, Any]:
    """Copy the version's artifacts into ``dest``, checked, and write the lineage file."""
    ref, archive, where = _checked(ctx, uri)
    D.copy_model(archive, dest)
    found = D.folder_digest(dest)
    if found != ref.artifact_digest:
        raise ArtifactMismatch(
            f"the copy in {dest} hashes to {found}, not {ref.artifact_digest}", "dir"
        )
    lineage = lineage_of(ref, f"models:/{ref.name}/{ref.version}", where)
    D.write_lineage(dest, lineage)
    return lineage


@dataclass(frozen=True)
class Verification:
    """A folder checked against the registry: the lineage it matches, or what differs."""

    folder: str
    digest: str
    matches: bool
    lineage: dict[str, Any] | None
    checked: tuple[str, ...]  # the versions compared, as models:/NAME/VERSION
    differences: D.Differences | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "folder": self.folder,
            "digest": self.digest,
            "matches": self.matches,
            "lineage": self.lineage,
            "checked": list(self.checked),
            "differences": self.differences.to_dict() if self.differences else None,
            "message": self.message,
        }


def verify(ctx: Context, folder: Path) -> Verification:
    """Check ``folder`` (a download, or any MLflow model folder) against the registry."""
    model = D.model_folder(folder)
    digest = D.folder_digest(model)
    written = D.read_lineage(model)
    candidates: list[tuple[str, str]] = []
    if written and isinstance(written.get("model"), dict):
        m = written["model"]
        candidates.append((str(m.get("name")), str(m.get("version"))))
    run_id = D.mlmodel_run_id(model)
    if run_id:
        candidates += [nv for nv in D.versions_of_run(ctx.registry, run_id) if nv not in candidates]
    if not candidates:
        return Verification(
            str(model),
            digest,
            False,
            None,
            (),
            None,
            f"{model}: no registered version to compare with (no lineage file, and no version "
            f"registered from run {run_id or '(none in MLmodel)'})",
        )
    first: tuple[ModelRef, Path] | None = None
    for name, version in candidates:
        ref, archive, where = _checked(ctx, f"models:/{name}/{version}")
        if ref.artifact_digest == digest:
            lineage = lineage_of(ref, f"models:/{name}/{version}", where)
            return Verification(
                str(model),
                digest,
                True,
                lineage,
                (f"models:/{name}/{version}",),
                None,
                f"{model} is {name} v{version}, byte for byte",
            )
        first = first or (ref, archive)
    assert first is not None
    ref, archive = first
    diff = D.differences(model, archive)
    checked = tuple(f"models:/{n}/{v}" for n, v in candidates)
    parts = [
        f"{k} {', '.join(getattr(diff, k))}"
        for k in ("changed", "added", "removed")
        if getattr(diff, k)
    ]
    return Verification(
        str(model),
        digest,
        False,
        None,
        checked,
        diff,
        f"{model} is not the registered artifact of {ref.name} v{ref.version} "
        f"({ref.artifact_digest}); it hashes to {digest}: " + "; ".join(parts),
    )
