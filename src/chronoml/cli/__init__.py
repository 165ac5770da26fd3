"""The ``chronoml`` command line: one module per command group, registered on one group."""

from chronoml.cli import (
    alerts,
    audit,
    endpoints,
    experiment,
    explain,
    jobs,
    monitor,
    retrain,
    server,
    store,
    tokens,
)
from chronoml.cli.common import cli, main

__all__ = [
    "alerts",
    "audit",
    "cli",
    "endpoints",
    "experiment",
    "explain",
    "jobs",
    "main",
    "monitor",
    "retrain",
    "server",
    "store",
    "tokens",
]
