"""CLI commands about the store itself: ``db upgrade|compact|current``."""

from __future__ import annotations

import click

from chronoml.cli.common import Fail, _chronoml, _settings, _where, cli


@cli.group()
def db() -> None:
    """Manage chronoml's database schema."""


@db.command()
@click.pass_context
def upgrade(ctx: click.Context) -> None:
    """Create the schema or migrate it to this version of chronoml."""
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.errors import StoreError
    from chronoml.evidence.checkpoints import signing_key
    from chronoml.evidence.keys import KeyFileError
    from chronoml.store import Store

    s = _settings(ctx)
    store = Store.open(s.database_url, s.home)
    try:
        rev = store.upgrade()
        key, created = signing_key(s, store)
    except StoreError as exc:
        raise Fail(str(exc)) from None
    except KeyFileError as exc:
        raise Fail(exc.message) from None
    finally:
        store.close()
    click.echo(f"schema at revision {rev} ({_where(s)})")
    if created:
        click.echo(f"created the signing key {s.signing_key_path} (mode 0600)")
    click.echo(f"evidence log key: {key.vkey()}")


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
