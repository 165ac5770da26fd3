"""The ``chronoml`` command line: one module per command group, registered on one group."""

from chronoml.cli import (
    alerts,
    audit,
    card,
    dataset,
    downloads,
    endpoints,
    experiment,
    explain,
    fairness,
    jobs,
    monitor,
    retrain,
    run,
    server,
    snapshots,
    store,
    tokens,
)
from chronoml.cli.common import cli, main

__all__ = [
    "alerts",
    "audit",
    "card",
    "cli",
    "dataset",
    "downloads",
    "endpoints",
    "experiment",
    "explain",
    "fairness",
    "jobs",
    "main",
    "monitor",
    "retrain",
    "run",
    "server",
    "snapshots",
    "store",
    "tokens",
]
