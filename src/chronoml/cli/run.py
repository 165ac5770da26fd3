"""CLI command ``run PROJECT -P data_version=REF``: an MLflow Project pinned to a snapshot."""

from __future__ import annotations

import click

from chronoml.cli.common import Fail, _chronoml, _json, cli, json_option
from chronoml.cli.retrain import _params


@cli.command("run")
@click.argument("project")
@click.option("-e", "--entry-point", default="main", show_default=True, help="The entry point.")
@click.option(
    "-P",
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="A project parameter; data_version=REF (sha256:ID, NAME@latest, NAME@TIME) is needed.",
)
@click.option("--experiment", default="chronoml", show_default=True, help="The MLflow experiment.")
@json_option
@click.pass_context
def run(
    ctx: click.Context,
    project: str,
    entry_point: str,
    params: tuple[str, ...],
    experiment: str,
    as_json: bool,
) -> None:
    """Run an MLflow Project on a snapshot: mlflow run PROJECT -P data_version=sha256:...

    data_version may be any snapshot reference; it is resolved first (a reference that
    does not resolve stops before anything runs). The run, and every version it
    registers, is linked to that snapshot with no call in the project's code.
    """
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml import projects

    with _chronoml(ctx) as cm:
        snap, _ = projects.pinned_params(cm, _params(params))
        click.echo(f"data_version {snap.id} ({snap.name}, {snap.rows} rows)", err=True)
        done = projects.run_project(
            cm, project, _params(params), entry_point=entry_point, experiment=experiment
        )
    if as_json:
        _json(done.to_dict())
    else:
        click.echo(f"run {done.run_id}  {'succeeded' if done.succeeded else 'failed'}")
        click.echo(f"  data      {done.snapshot.id}")
        click.echo(f"  code      {done.code_version or 'unknown'}")
        for name, version in done.versions:
            click.echo(f"  version   {name} v{version} (linked to the snapshot)")
    if not done.succeeded:
        raise Fail(f"mlflow run exited with code {done.returncode}")
