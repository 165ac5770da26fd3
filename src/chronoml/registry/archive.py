"""Archived model artifacts: each deployed version's files, checked against their digest on use.

A deploy archives the version's artifact under its digest; an explanation or a
replay later reads it back through :func:`verified_path`, which refuses bytes
that are not the ones deployed (and fetches MLflow's copy only if it matches).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import mlflow.artifacts

from chronoml.domain.ledger import ModelRef
from chronoml.registry import Registry, RegistryError, artifact_digest


class ArtifactError(RegistryError):
    """A model artifact that is missing, or whose bytes are not the ones deployed."""

    def __init__(self, message: str, ref: ModelRef, reason: str) -> None:
        super().__init__(message)
        self.message = message
        self.ref = ref
        self.reason = reason  # "missing" or "tampered"


class DecisionModelError(LookupError):
    """The ledger does not say which model made a decision."""


def verified_path(registry: Registry, ref: ModelRef) -> Path:
    """The archived artifact of ``ref``, its bytes checked against the recorded digest."""
    hexdigest = ref.artifact_digest.split(":", 1)[-1]
    dest = registry.archive_root / hexdigest
    if dest.is_dir():
        found = artifact_digest(dest)
        if found != ref.artifact_digest:
            raise ArtifactError(
                f"artifact {ref.artifact_digest} of {ref.name} v{ref.version} fails its digest "
                f"check: the archived copy {dest} hashes to {found}; refusing to use it",
                ref,
                "tampered",
            )
        return dest
    return _from_mlflow(registry, ref, dest)


def _from_mlflow(registry: Registry, ref: ModelRef, dest: Path) -> Path:
    """No archived copy on this machine: take MLflow's, if its bytes are the recorded ones."""
    registry.archive_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=registry.archive_root, prefix=".incoming-"))
    try:
        try:
            local = Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=f"models:/{ref.name}/{ref.version}", dst_path=str(tmp)
                )
            )
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            local, why = None, first
        else:
            why = "MLflow has no files for it"
        if local is None or not (local / "MLmodel").is_file():
            raise ArtifactError(
                f"artifact {ref.artifact_digest} of {ref.name} v{ref.version} is missing: no "
                f"archived copy at {dest} and none from MLflow ({why})",
                ref,
                "missing",
            )
        found = artifact_digest(local)
        if found != ref.artifact_digest:
            raise ArtifactError(
                f"artifact {ref.artifact_digest} of {ref.name} v{ref.version} fails its digest "
                f"check: there is no archived copy and MLflow's hashes to {found}; refusing to "
                "use it",
                ref,
                "tampered",
            )
        if not dest.exists():
            os.replace(local, dest)
        return dest
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
