"""CLI commands ``download MODEL_URI -d DIR`` and ``verify-model DIR``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from chronoml.cli.common import Fail, _chronoml, _json, cli, json_option


def _print_lineage(lineage: dict[str, Any]) -> None:
    m = lineage["model"]
    snap = lineage.get("data_snapshot") or {}
    click.echo(f"  model     {m['name']} v{m['version']}")
    click.echo(f"  run       {lineage.get('run_id') or 'unknown'}")
    click.echo(
        f"  digest    {lineage['artifact_digest']}  (recorded in the {lineage['digest_recorded_in']})"
    )
    if snap:
        click.echo(f"  data      {snap.get('id')} ({snap.get('name')}, {snap.get('rows')} rows)")
    else:
        click.echo("  data      not linked to a snapshot")
    click.echo(f"  code      {lineage.get('code_version') or 'unknown'}")


@cli.command("download")
@click.argument("model_uri")
@click.option(
    "-d",
    "--dst-path",
    "dest",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write the model into (absent or empty).",
)
@json_option
@click.pass_context
def download(ctx: click.Context, model_uri: str, dest: Path, as_json: bool) -> None:
    """Download a registered version's artifacts, checked against their recorded digest,
    with a lineage file beside them (model, run, digest, data snapshot, code version)."""
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml import downloads

    with _chronoml(ctx) as cm:
        lineage = downloads.download(cm, model_uri, dest)
    if as_json:
        _json(lineage)
        return
    click.echo(f"downloaded {model_uri} to {dest}, digest checked")
    _print_lineage(lineage)


@cli.command("verify-model")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@json_option
@click.pass_context
def verify_model(ctx: click.Context, folder: Path, as_json: bool) -> None:
    """Check a model folder (from chronoml download or mlflow artifacts download) against
    the registry: prints its lineage, or which files differ (exit code 1)."""
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml import downloads

    with _chronoml(ctx) as cm:
        result = downloads.verify(cm, folder)
    if as_json:
        _json(result.to_dict())
    elif result.matches:
        click.echo(f"ok: {result.message}")
        assert result.lineage is not None
        _print_lineage(result.lineage)
    if not result.matches:
        raise Fail(result.message)
