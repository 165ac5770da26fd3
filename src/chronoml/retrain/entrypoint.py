"""Running a training entrypoint in a child process, with a timeout and its log.

Both kinds run as a child process in a session of its own, so a timeout
kills it and everything it started (``mlflow run`` starts the project's
command as a grandchild). Output (stdout and stderr, interleaved) goes to a
file, never a pipe, so a chatty entrypoint cannot block on a full pipe.

The child's environment tells it where everything is:
``MLFLOW_TRACKING_URI`` / ``MLFLOW_REGISTRY_URI`` and
``MLFLOW_EXPERIMENT_NAME`` (the experiment exists, with its artifacts in
chronoml's home), ``CHRONOML_HOME`` / ``CHRONOML_STORE``, and the data:
``CHRONOML_SNAPSHOT_ID`` and ``CHRONOML_SNAPSHOT_PATH`` (the immutable
Parquet copy). An MLflow Project also gets ``-P data_version=SNAPSHOT_ID``;
a callable gets ``data_version=SNAPSHOT_ID`` as a keyword argument.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from chronoml.auth.policy import training_environment
from chronoml.domain.retraining import Entrypoint
from chronoml.settings import Settings

TRAINING_EXPERIMENT = "chronoml-retrain"
_TAIL = 256 * 1024


@dataclass(frozen=True)
class Outcome:
    """How the entrypoint ended: exit code (None when killed at the timeout) and its log."""

    returncode: int | None
    timed_out: bool
    log: str
    seconds: float


def command(ep: Entrypoint, snapshot_id: str, experiment: str) -> tuple[list[str], str | None]:
    """The argv and working directory that run ``ep`` on the snapshot."""
    if ep.kind == "project":
        argv = [
            sys.executable,
            "-m",
            "mlflow",
            "run",
            ep.target,
            "-e",
            ep.entry_point,
            "-P",
            f"data_version={snapshot_id}",
        ]
        for k, v in ep.params.items():
            argv += ["-P", f"{k}={v}"]
        argv += ["--env-manager", "local", "--experiment-name", experiment]
        return argv, ep.workdir
    params = json.dumps({"data_version": snapshot_id, **dict(ep.params)})
    return [sys.executable, "-m", "chronoml.retrain.entry", ep.target, params], ep.workdir


def environment(
    settings: Settings,
    ep: Entrypoint,
    experiment: str,
    snapshot_id: str,
    snapshot_path: str | None,
    job_id: int,
    base: Mapping[str, str] | None = None,
    snapshot_json: str | None = None,
) -> dict[str, str]:
    # what a program needs to run, none of the server's credentials (see training_environment)
    env = training_environment(base)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")  # `python` is this venv's
    if ep.workdir:
        env["PYTHONPATH"] = ep.workdir + (
            os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
        )
    env.update(
        {
            "MLFLOW_TRACKING_URI": settings.tracking_uri,
            "MLFLOW_REGISTRY_URI": settings.registry_uri,
            "MLFLOW_EXPERIMENT_NAME": experiment,
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
            "CHRONOML_HOME": str(settings.home),
            "CHRONOML_SNAPSHOT_ID": snapshot_id,
            "CHRONOML_SNAPSHOT_PATH": snapshot_path or "",
            "CHRONOML_SNAPSHOT": snapshot_json or "",
            "CHRONOML_JOB_ID": str(job_id),
            "PYTHONUNBUFFERED": "1",
        }
    )
    # no CHRONOML_STORE: the job's snapshot is handed over whole, so the training code
    # needs no database credentials (an embedded home it can open anyway)
    return env


def run(
    argv: list[str],
    cwd: str | None,
    env: Mapping[str, str],
    timeout_s: float,
    *,
    heartbeat: Callable[[], None] | None = None,
    heartbeat_s: float = 10.0,
) -> Outcome:
    """Run ``argv`` to completion or until ``timeout_s``; kill its whole session then."""

    started = time.monotonic()
    with tempfile.TemporaryFile(mode="w+b") as out:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(heartbeat_s):
                if heartbeat is not None:
                    heartbeat()

        beater = threading.Thread(target=beat, name="chronoml-job-heartbeat", daemon=True)
        beater.start()
        timed_out = False
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill(proc)
        except BaseException:
            _kill(proc)
            raise
        finally:
            stop.set()
            beater.join()
        out.seek(0, os.SEEK_END)
        size = out.tell()
        out.seek(max(0, size - _TAIL))
        text = out.read().decode("utf-8", "replace")
        if size > _TAIL:
            text = f"[... {size - _TAIL} earlier bytes of output not kept ...]\n" + text
    return Outcome(
        None if timed_out else proc.returncode, timed_out, text, time.monotonic() - started
    )


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """Kill the child's session (it and whatever it started)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
