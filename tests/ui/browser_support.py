"""What the browser tests share: Debian's chromium, its flags, Playwright, a frame of inputs."""

from __future__ import annotations

import os

import pytest
from sklearn.datasets import load_breast_cancer

CHROMIUM = "/usr/bin/chromium"
# without the background-networking flags chromium tries to reach the internet
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
X = load_breast_cancer(as_frame=True).frame.drop(columns=["target"])

CI = os.environ.get("CI") == "true"
if not os.path.exists(CHROMIUM) and not CI:
    pytest.skip(
        "Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True
    )
if CI:
    from playwright import sync_api  # under CI a missing browser stack is a failure
else:
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
