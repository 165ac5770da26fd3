"""The ``chronoml`` command line: one module per command group, registered on one group."""

from chronoml.cli import (
    alerts,
    endpoints,
    experiment,
    explain,
    fairness,
    jobs,
    monitor,
    retrain,
    server,
    store,
)
from chronoml.cli.common import cli, main

__all__ = [
    "alerts",
    "cli",
    "endpoints",
    "experiment",
    "explain",
    "fairness",
    "jobs",
    "main",
    "monitor",
    "retrain",
    "server",
    "store",
]
