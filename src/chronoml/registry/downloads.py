"""Model folders outside chronoml's archive: copied out with a lineage file, checked back in.

A folder is compared file by file (relative path and sha256), so a check that fails says
which files were added, removed or changed; the digest over the whole folder is the one
:func:`chronoml.registry.artifact_digest` gives, the lineage file left out.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from chronoml.registry import Registry, RegistryError, artifact_digest

LINEAGE_FILE = "chronoml-lineage.json"
DIGEST_TAG = "chronoml.artifact.digest"


def folder_digest(folder: Path) -> str:
    """The artifact digest of ``folder``, its lineage file left out."""
    return artifact_digest(folder, exclude=(LINEAGE_FILE,))


def file_hashes(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``folder`` but the lineage file."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if p.is_file() and rel != LINEAGE_FILE:
            h = hashlib.sha256()
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            out[rel] = h.hexdigest()
    return out


@dataclass(frozen=True)
class Differences:
    """How a folder differs from the registered artifact, file by file."""

    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def to_dict(self) -> dict[str, list[str]]:
        return {
            "added": list(self.added),
            "removed": list(self.removed),
            "changed": list(self.changed),
        }


def differences(found: Path, registered: Path) -> Differences:
    """Files of ``found`` not in ``registered``, missing from it, and with other bytes."""
    a, b = file_hashes(found), file_hashes(registered)
    return Differences(
        added=tuple(sorted(set(a) - set(b))),
        removed=tuple(sorted(set(b) - set(a))),
        changed=tuple(sorted(k for k in set(a) & set(b) if a[k] != b[k])),
    )


def copy_model(source: Path, dest: Path) -> None:
    """Copy the artifact folder ``source`` into ``dest`` (absent or empty)."""
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise RegistryError(f"{dest} exists and is not an empty folder; choose another -d")
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, dest, dirs_exist_ok=True)
    for p in dest.rglob("*"):
        if p.is_file():
            p.chmod(0o644)  # the archive's copies may be read-only; the user's are not


def model_folder(folder: Path) -> Path:
    """The MLflow model folder in ``folder``: itself, or the one folder under it with an
    MLmodel file (what ``mlflow artifacts download -r RUN`` leaves)."""
    if not folder.is_dir():
        raise RegistryError(f"{folder} is not a folder")
    if (folder / "MLmodel").is_file():
        return folder
    found = sorted(p.parent for p in folder.rglob("MLmodel") if p.is_file())
    if len(found) == 1:
        return found[0]
    if not found:
        raise RegistryError(f"{folder} holds no MLflow model (no MLmodel file in it)")
    names = ", ".join(str(p.relative_to(folder)) for p in found)
    raise RegistryError(f"{folder} holds several MLflow models ({names}); name one of them")


def mlmodel_run_id(folder: Path) -> str | None:
    """The ``run_id`` recorded in the folder's MLmodel file, if any."""
    try:
        meta = yaml.safe_load((folder / "MLmodel").read_text())
    except (OSError, yaml.YAMLError):
        return None
    run_id = meta.get("run_id") if isinstance(meta, dict) else None
    return str(run_id) if run_id else None


def read_lineage(folder: Path) -> dict[str, Any] | None:
    """The lineage file beside the model's files, if there is a readable one."""
    p = folder / LINEAGE_FILE
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_lineage(folder: Path, lineage: dict[str, Any]) -> Path:
    """Write the lineage file beside the model's files."""
    p = folder / LINEAGE_FILE
    p.write_text(json.dumps(lineage, indent=2, sort_keys=True) + "\n")
    return p


def versions_of_run(registry: Registry, run_id: str) -> list[tuple[str, str]]:
    """The (name, version) pairs registered from ``run_id``, newest first."""
    versions = registry.client.search_model_versions(f"run_id = '{run_id}'")
    pairs = [(v.name, str(v.version)) for v in versions]
    return sorted(pairs, key=lambda nv: (nv[0], -int(nv[1])))


def digest_tag(registry: Registry, name: str, version: str) -> str | None:
    """The artifact digest recorded on the version, if one was."""
    tags = registry.client.get_model_version(name, version).tags
    return tags.get(DIGEST_TAG)


def record_digest(registry: Registry, name: str, version: str, digest: str) -> None:
    """Record the version's artifact digest on the version (the first time it is seen)."""
    registry.client.set_model_version_tag(name, version, DIGEST_TAG, digest)
