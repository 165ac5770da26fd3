"""``chronoml demo`` as a new user runs it: one warning, right version numbers, clean stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_demo_twice_then_sigterm(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "CHRONOML_HOME": str(tmp_path / "home"),
        "CHRONOML_STORE": "",
        "MLFLOW_TRACKING_URI": "",
    }
    env.pop("MLFLOW_TRACKING_URI")
    cmd = [sys.executable, "-m", "chronoml", "demo", "--port", str(_free_port())]
    first = subprocess.run(
        [*cmd, "--no-serve"], env=env, capture_output=True, text=True, timeout=300
    )
    assert first.returncode == 0, first.stderr
    assert first.stderr.count("pickle or cloudpickle format") == 1, first.stderr
    assert "registered cancer-classifier v1\n" in first.stdout
    assert "Deploy v2 beside v1 at 50/50" in first.stdout

    # the second run registers versions 3 and 4 and says so
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + 300
    for line in proc.stdout:
        seen.append(line)
        if "v2 saw both" in line or time.monotonic() > deadline:
            break
    out = "".join(seen)
    assert "registered cancer-classifier v3 (earlier runs registered" in out, out
    assert "Deploy v4 beside v3 at 50/50" in out
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "chronoml drift cancer" in out and "shuffled sample" in out
    assert err.count("pickle or cloudpickle format") == 1, err
