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
@click.option(
    "--refresh",
    is_flag=True,
    help="Build the card anew from the figures as of now (and store it) instead of "
    "showing the stored one.",
)
@click.option(
    "--intended-use", "intended_use", help="What the model is for, in your words (with --refresh)."
)
@click.option(
    "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write the card here."
)
@click.option("--no-store", is_flag=True, help="With --refresh: do not store the new card.")
@click.pass_context
def card(
    ctx: click.Context,
    endpoint: str,
    version: str | None,
    fmt: str,
    refresh: bool,
    intended_use: str | None,
    output: Path | None,
    no_store: bool,
) -> None:
    """The model card of a version of ENDPOINT: intended use, training snapshot, quality,
    fairness per context attribute and drift since it went live, known limits.

    Every deploy and promotion writes the version's card as JSON, Markdown and HTML
    artifacts of its MLflow run (under chronoml/model_cards/ENDPOINT/); this shows the
    stored card, or builds and stores one when none is stored yet (or with --refresh).
    The intended use is the registered version's MLflow description (or its run's
    intended_use tag) unless --intended-use gives it."""
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.monitor import cards

    stored: list[str] = []
    with _chronoml(ctx) as cm:
        got = None if refresh or intended_use else cards.stored_card(cm, endpoint, version)
        if got is None:
            got = cards.build_card(cm, endpoint, version, intended_use=intended_use)
            stored = [] if no_store else cards.store_card(cm, got)
        else:
            click.echo(
                f"the card stored in MLflow run {got['model']['run_id']} as of {got['as_of']}",
                err=True,
            )
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
