"""Runs and versions linked to data snapshots: found by their tags, tagged after a run.

A run is linked to a snapshot by its tags (``chronoml.snapshot.*``, see
:func:`chronoml.registry.log_snapshot`); the versions it registers inherit the link
through their run, and :func:`tag_versions` also copies it onto each version so the
registry's own pages show it.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chronoml.domain.snapshot import Snapshot
from chronoml.registry import (
    CODE_VERSION_TAG,
    GIT_COMMIT_TAG,
    SNAPSHOT_CREATED_TAG,
    SNAPSHOT_NAME_TAG,
    SNAPSHOT_ROWS_TAG,
    SNAPSHOT_TAG,
    Registry,
    log_snapshot,
)
from chronoml.timeutil import iso


@dataclass(frozen=True)
class RunUse:
    """An MLflow run linked to a snapshot and the model versions it registered."""

    run_id: str
    experiment_id: str
    status: str
    started_at: str | None
    code_version: str | None
    versions: tuple[tuple[str, str], ...]  # (model name, version)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "experiment_id": self.experiment_id,
            "status": self.status,
            "started_at": self.started_at,
            "code_version": self.code_version,
            "versions": [{"name": n, "version": v} for n, v in self.versions],
        }


def runs_with_snapshot(registry: Registry, snapshot_id: str) -> list[RunUse]:
    """Every run (in any experiment) tagged with ``snapshot_id``, oldest first."""
    # lazy: mlflow costs 1.6 s to import
    from mlflow.entities import ViewType

    client = registry.client
    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    if not experiments:
        return []
    runs = client.search_runs(
        experiments,
        filter_string=f"tags.`{SNAPSHOT_TAG}` = '{snapshot_id}'",
        run_view_type=ViewType.ALL,
        order_by=["attributes.start_time ASC"],
    )
    out = []
    for run in runs:
        tags = run.data.tags
        versions = client.search_model_versions(f"run_id = '{run.info.run_id}'")
        out.append(
            RunUse(
                run_id=run.info.run_id,
                experiment_id=run.info.experiment_id,
                status=run.info.status,
                started_at=iso(run.info.start_time * 1000) if run.info.start_time else None,
                code_version=tags.get(CODE_VERSION_TAG) or tags.get(GIT_COMMIT_TAG),
                versions=tuple(
                    sorted(
                        ((v.name, str(v.version)) for v in versions),
                        key=lambda nv: (nv[0], int(nv[1])),
                    )
                ),
            )
        )
    return out


def link_active_run_once(snap: Snapshot) -> bool:
    """Link the active run to ``snap`` unless it is already linked; False when no run.

    The first snapshot a run is linked to stays its lineage: a run that loads a second
    one (a test set, say) logs it as an input without moving the link.
    """
    # lazy: mlflow costs 1.6 s to import
    import mlflow

    run = mlflow.active_run()
    if run is None:
        return False
    linked = mlflow.get_run(run.info.run_id).data.tags.get(SNAPSHOT_TAG)
    if linked == snap.id:
        return True
    if linked is None:
        log_snapshot(snap)
    else:
        log_snapshot(snap, context="loaded", tags=False)
    return True


def code_version_of(path: str | Path | None = None) -> str | None:
    """The git commit of the checkout holding ``path`` (default: the running script)."""
    where = Path(path) if path is not None else Path(sys.argv[0] or ".").resolve().parent
    if where.is_file():
        where = where.parent
    if not where.is_dir():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and len(commit) == 40 else None


def project_command(
    project: str,
    entry_point: str,
    params: Mapping[str, str],
    *,
    run_id: str,
    experiment_id: str,
) -> list[str]:
    """The ``mlflow run`` argv that runs ``project`` inside the already created run."""
    argv = [sys.executable, "-m", "mlflow", "run", project, "-e", entry_point]
    for k, v in params.items():
        argv += ["-P", f"{k}={v}"]
    argv += ["--env-manager", "local", "--experiment-id", experiment_id, "--run-id", run_id]
    return argv


def start_pinned_run(
    registry: Registry,
    experiment_id: str,
    snap: Snapshot,
    code_version: str | None,
    *,
    params: Mapping[str, str],
    project: str,
    entry_point: str,
) -> str:
    """Create the run a project will run in, tagged with its snapshot, source and params.

    ``mlflow run --run-id`` logs neither the parameters nor the source tags of a run it
    did not create, so they are logged here, as it would have.
    """
    # lazy: mlflow costs 1.6 s to import
    from mlflow.entities import Param, RunTag

    tags = _tags(snap)
    tags.update(
        {
            "mlflow.source.type": "PROJECT",
            "mlflow.source.name": project,
            "mlflow.project.entryPoint": entry_point,
            "mlflow.project.backend": "local",
        }
    )
    if code_version:
        tags[CODE_VERSION_TAG] = code_version
        tags[GIT_COMMIT_TAG] = code_version
    client = registry.client
    run = client.create_run(experiment_id, tags=tags)
    run_id = str(run.info.run_id)
    client.log_batch(
        run_id,
        params=[Param(k, str(v)) for k, v in params.items()],
        tags=[RunTag("mlflow.runName", run.info.run_name or run_id)],
    )
    return run_id


def end_run(registry: Registry, run_id: str, succeeded: bool) -> None:
    """Mark the run finished or failed unless ``mlflow run`` already did."""
    client = registry.client
    if client.get_run(run_id).info.status == "RUNNING":
        client.set_terminated(run_id, "FINISHED" if succeeded else "FAILED")


def finish_pinned_run(registry: Registry, run_id: str, snap: Snapshot) -> list[tuple[str, str]]:
    """Make sure the run still names ``snap`` and tag every version it registered.

    Returns the (name, version) pairs it tagged.
    """
    # lazy: mlflow costs 1.6 s to import
    from mlflow.entities import RunTag

    registry.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in _tags(snap).items()])
    return tag_versions(registry, run_id, snap)


def tag_versions(registry: Registry, run_id: str, snap: Snapshot) -> list[tuple[str, str]]:
    """Copy the snapshot link onto each model version registered from ``run_id``."""
    client = registry.client
    out = []
    for v in client.search_model_versions(f"run_id = '{run_id}'"):
        client.set_model_version_tag(v.name, str(v.version), SNAPSHOT_TAG, snap.id)
        out.append((v.name, str(v.version)))
    return sorted(out, key=lambda nv: (nv[0], int(nv[1])))


def ensure_experiment_id(registry: Registry, name: str) -> str:
    """The id of experiment ``name``, created with its artifacts in chronoml's home."""
    client = registry.client
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return str(exp.experiment_id)
    location = None
    if registry.settings.mlflow_tracking_uri is None:
        location = (registry.settings.artifact_root / name).as_uri()
    return str(client.create_experiment(name, artifact_location=location))


def _tags(snap: Snapshot) -> dict[str, str]:
    return {
        SNAPSHOT_TAG: snap.id,
        SNAPSHOT_NAME_TAG: snap.name,
        SNAPSHOT_ROWS_TAG: str(snap.rows),
        SNAPSHOT_CREATED_TAG: str(snap.created_at),
    }
