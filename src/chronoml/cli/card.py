"""CLI command for model cards: ``chronoml card ENDPOINT [--version V]``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from chronoml.cli.common import _chronoml, cli


@cli.command()
@click.argument("endpoint")
@click.option("--version", help="This version [default: the one answering now].")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["markdown", "json", "html"]),
    default="markdown",
    show_default=True,
)
@click.option("--intended-use", "intended_use", help="What the model is for, in your words.")
@click.option(
    "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write the card here."
)
@click.option("--no-store", is_flag=True, help="Do not store it as artifacts of the MLflow run.")
@click.pass_context
def card(
    ctx: click.Context,
    endpoint: str,
    version: str | None,
    fmt: str,
    intended_use: str | None,
    output: Path | None,
    no_store: bool,
) -> None:
    """The model card of a version of ENDPOINT: intended use, training snapshot, quality,
    fairness per context attribute and drift since it went live, known limits. Stored as
    JSON, Markdown and HTML artifacts of the version's MLflow run."""
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.monitor import cards

    with _chronoml(ctx) as cm:
        got = cards.build_card(cm, endpoint, version, intended_use=intended_use)
        stored = [] if no_store else cards.store_card(cm, got)
    text = {
        "json": lambda: json.dumps(got, indent=2, default=str) + "\n",
        "markdown": lambda: cards.to_markdown(got),
        "html": lambda: cards.to_html(got),
    }[fmt]()
    if output is not None:
        output.write_text(text)
    else:
        click.echo(text, nl=False)
    if stored:
        click.echo(f"stored in MLflow run {got['model']['run_id']}: {', '.join(stored)}", err=True)
