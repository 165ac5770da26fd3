"""Fixtures for the evidence tests: a signing key, a log, and a bundle written from it."""

from __future__ import annotations

from pathlib import Path

import pytest
from evidence_support import ORIGIN, Log, build_log, bundle_of, checkpoint_for

from chronoml.evidence import bundle as B
from chronoml.evidence import keys


@pytest.fixture(scope="module")
def key() -> keys.SigningKey:
    return keys.generate(ORIGIN)


@pytest.fixture(scope="module")
def log() -> Log:
    return build_log()


@pytest.fixture
def bundle_dir(tmp_path: Path, key: keys.SigningKey, log: Log) -> Path:
    out = tmp_path / "bundle"
    B.write_bundle(out, bundle_of(log, checkpoint_for(log, key)))
    return out
