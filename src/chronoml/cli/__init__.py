"""The ``chronoml`` command line: one module per command group, registered on one group."""

from chronoml.cli import alerts, explain, loop, monitor, server
from chronoml.cli.core import cli, main

__all__ = ["alerts", "cli", "explain", "loop", "main", "monitor", "server"]
