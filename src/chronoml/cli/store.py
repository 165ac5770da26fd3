"""CLI commands about the store itself: ``audit verify`` and ``db upgrade|compact|current``."""

from __future__ import annotations

import sys

import click

from chronoml.cli.common import (
    Fail,
    _chronoml,
    _json,
    _settings,
    _where,
    cli,
    json_option,
)


@cli.group()
def audit() -> None:
    """Check the ledger."""


@audit.command()
@json_option
@click.pass_context
def verify(ctx: click.Context, as_json: bool) -> None:
    """Recompute the hash chain; name the first event that does not match (exit 1)."""
    with _chronoml(ctx, create=False) as cm:
        report = cm.verify()
    if as_json:
        _json(report.__dict__)
    elif report.ok:
        click.echo(f"ok: {report.events} events, head {report.head}")
    else:
        click.echo(f"FAILED at ledger event #{report.first_bad_seq}: {report.reason}", err=True)
    if not report.ok:
        sys.exit(1)


@cli.group()
def db() -> None:
    """Manage chronoml's database schema."""


@db.command()
@click.pass_context
def upgrade(ctx: click.Context) -> None:
    """Create the schema or migrate it to this version of chronoml."""
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.errors import StoreError
    from chronoml.store import Store

    s = _settings(ctx)
    store = Store.open(s.database_url, s.home)
    try:
        rev = store.upgrade()
    except StoreError as exc:
        raise Fail(str(exc)) from None
    finally:
        store.close()
    click.echo(f"schema at revision {rev} ({_where(s)})")


@db.command()
@click.option(
    "--rebuild", is_flag=True, help="Drop the blocks first and compact all history again."
)
@click.pass_context
def compact(ctx: click.Context, rebuild: bool) -> None:
    """Compact settled decisions into columnar blocks (the server does it every monitoring pass)."""
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.store import blocks

    with _chronoml(ctx) as cm:
        if rebuild:
            blocks.drop(cm.store)
        n = blocks.compact(cm.store)
    click.echo(f"compacted {n} decisions")


@db.command()
@click.pass_context
def current(ctx: click.Context) -> None:
    """Print the schema revision of the store."""
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.errors import StoreError
    from chronoml.store import Store

    s = _settings(ctx)
    store = Store.open(s.database_url, s.home)
    try:
        click.echo(store.revision() or "no schema")
    except StoreError as exc:
        raise Fail(str(exc)) from None
    finally:
        store.close()
