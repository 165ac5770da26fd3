"""MLflow Projects run on a pinned snapshot: ``mlflow run PROJECT -P data_version=REF``.

The reference is resolved before anything runs. The run is created first, tagged with the
snapshot, its parameters and its code version, and ``mlflow run`` is told to use it, so
the link exists whatever the project's code does; afterwards every version the run
registered is tagged with the snapshot too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chronoml.context import Context
from chronoml.domain.snapshot import Snapshot
from chronoml.errors import InvalidInput
from chronoml.snapshots import resolve

DATA_PARAM = "data_version"
DEFAULT_EXPERIMENT = "chronoml"

Runner = Callable[[Sequence[str], Mapping[str, str], str | None], int]


def _subprocess_runner(argv: Sequence[str], env: Mapping[str, str], cwd: str | None) -> int:
    """Run ``argv`` with the user's terminal as its output; its exit code."""
    return subprocess.run(list(argv), env=dict(env), cwd=cwd, check=False).returncode


@dataclass(frozen=True)
class PinnedRun:
    """A project run on one snapshot: the run, its exit code and the versions it registered."""

    run_id: str
    experiment_id: str
    snapshot: Snapshot
    returncode: int
    argv: tuple[str, ...]
    versions: tuple[tuple[str, str], ...]
    code_version: str | None

    @property
    def succeeded(self) -> bool:
        """Whether ``mlflow run`` exited 0."""
        return self.returncode == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "experiment_id": self.experiment_id,
            "snapshot": self.snapshot.to_dict(),
            "returncode": self.returncode,
            "succeeded": self.succeeded,
            "code_version": self.code_version,
            "versions": [{"name": n, "version": v} for n, v in self.versions],
        }


def pinned_params(ctx: Context, params: Mapping[str, str]) -> tuple[Snapshot, dict[str, str]]:
    """The snapshot ``params['data_version']`` names, and the params with its full id."""
    ref = params.get(DATA_PARAM)
    if not ref:
        raise InvalidInput(
            f"-P {DATA_PARAM}=REF is needed: a snapshot id, NAME@latest or NAME@TIME",
            DATA_PARAM,
        )
    snap = resolve(ctx.store, ref)
    return snap, {**params, DATA_PARAM: snap.id}


def run_project(
    ctx: Context,
    project: str,
    params: Mapping[str, str],
    *,
    entry_point: str = "main",
    experiment: str = DEFAULT_EXPERIMENT,
    runner: Runner = _subprocess_runner,
) -> PinnedRun:
    """Resolve ``data_version``, run the project on it, link the run and its versions."""
    # lazy: mlflow costs 1.6 s to import; a reference that does not resolve never pays it
    from chronoml.registry import lineage

    snap, concrete = pinned_params(ctx, params)
    local = Path(project)
    code = lineage.code_version_of(local) if local.is_dir() else None
    registry = ctx.registry
    experiment_id = lineage.ensure_experiment_id(registry, experiment)
    run_id = lineage.start_pinned_run(
        registry,
        experiment_id,
        snap,
        code,
        params=concrete,
        project=str(local.resolve()) if local.is_dir() else project,
        entry_point=entry_point,
    )
    argv = lineage.project_command(
        project, entry_point, concrete, run_id=run_id, experiment_id=experiment_id
    )
    code_rc = runner(argv, child_environment(ctx), None)
    lineage.end_run(registry, run_id, code_rc == 0)
    versions = lineage.finish_pinned_run(registry, run_id, snap)
    return PinnedRun(run_id, experiment_id, snap, code_rc, tuple(argv), tuple(versions), code)


def child_environment(ctx: Context, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The user's environment, pointed at this chronoml home and its MLflow store."""
    env = dict(os.environ if base is None else base)
    s = ctx.settings
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")  # `python` is this one
    env.update(
        {
            "MLFLOW_TRACKING_URI": s.tracking_uri,
            "MLFLOW_REGISTRY_URI": s.registry_uri,
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
            "CHRONOML_HOME": str(s.home),
        }
    )
    if s.store_url:
        env["CHRONOML_STORE"] = s.store_url
    return env
