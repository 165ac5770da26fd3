"""The ``chronoml`` command line: one module per command group, registered on one group."""

from chronoml.cli import (
    alerts,
    card,
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
    "card",
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
