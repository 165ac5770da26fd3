"""The docs match the code: every command is documented; the public API is pinned."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click

import chronoml
from chronoml.cli.common import cli

README = (Path(__file__).parent.parent / "README.md").read_text()


def _commands(group: click.Group, prefix: str = "") -> list[str]:
    out = []
    for name, cmd in group.commands.items():
        full = f"{prefix}{name}"
        if isinstance(cmd, click.Group):
            out.extend(_commands(cmd, full + " "))
        else:
            out.append(full)
    return out


def test_every_cli_command_is_in_the_readme() -> None:
    missing = [c for c in _commands(cli) if f"`{c}" not in README and f"{c}`" not in README]
    assert missing == []


def test_every_command_has_help_text() -> None:
    for name in _commands(cli):
        cmd: click.Command = cli
        for part in name.split():
            assert isinstance(cmd, click.Group)
            cmd = cmd.commands[part]
        assert cmd.help, name


def test_public_api_is_pinned() -> None:
    assert chronoml.__all__ == sorted(chronoml.__all__)
    assert chronoml.__all__ == [
        "Chronoml",
        "ChronomlError",
        "NotFound",
        "Refused",
        "Settings",
        "Snapshot",
        "SnapshotError",
        "StoreError",
        "__version__",
        "build_dataset",
        "load_snapshot",
        "log_snapshot",
        "open",
        "parse_time",
        "setup_mlflow",
        "snapshot",
    ]
    for name in chronoml.__all__:
        assert getattr(chronoml, name) is not None


def test_cli_start_does_not_import_heavy_libraries() -> None:
    code = "import sys, chronoml.cli.common; print(sorted(m for m in ('mlflow', 'pandas', 'sklearn', 'numpy') if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_every_rest_route_is_in_the_readme() -> None:
    # lazy: the web stack loads only for this test of the docs
    from chronoml.gateway.rules import ACTIONS

    routes = [
        f"`{method} {path.replace('{endpoint}', '{e}')}`"
        for method, path in ACTIONS
        if not path.startswith("/ui/")
    ]
    assert [r for r in routes if r not in README] == []
