"""CLI commands about the store itself: ``db upgrade|compact|current|partitions``."""

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
    from chronoml.store import Store, partitions

    s = _settings(ctx)
    store = Store.open(s.database_url, s.home)
    try:
        rev = store.upgrade()
        made = partitions.maintain(store)
        key, created = signing_key(s, store)
    except StoreError as exc:
        raise Fail(str(exc)) from None
    except KeyFileError as exc:
        raise Fail(exc.message) from None
    finally:
        store.close()
    click.echo(f"schema at revision {rev} ({_where(s)})")
    if made is not None and made.created:
        click.echo(f"created {len(made.created)} day partitions of the decision log ahead")
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


@db.command("partitions")
@click.option(
    "--ahead",
    type=click.IntRange(0, 366),
    default=7,
    show_default=True,
    help="Days after today to have a partition for.",
)
@click.option(
    "--detach-after",
    metavar="DURATION",
    default=None,
    help="Detach and drop day partitions older than this (e.g. 190d) that hold no rows "
    "(archiving empties them); one that still holds rows is kept and listed.",
)
@click.option("--list", "show", is_flag=True, help="List the partitions with rows and sizes.")
@click.pass_context
def partitions_cmd(ctx: click.Context, ahead: int, detach_after: str | None, show: bool) -> None:
    """PostgreSQL: make the decision log's day partitions ahead, detach empty old ones.

    Both tables of decisions are partitioned by day: `decisions` (a row each) and
    `ingest_blocks` (a request of many rows as one row).

    The server does the same every hour (`--detach-after` on `chronoml server`).
    A partition holding decisions is never detached: archive them first.
    """
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.errors import StoreError
    from chronoml.store import Store, partitions
    from chronoml.timeutil import parse_duration

    try:
        detach_us = parse_duration(detach_after) if detach_after is not None else None
    except ValueError as exc:
        raise Fail(f"--detach-after: {exc}") from None
    s = _settings(ctx)
    store = Store.open(s.database_url, s.home)
    try:
        store.check_schema()
        if store.is_sqlite:
            raise Fail("the store is SQLite: decisions are one table there (no partitions)")
        report = partitions.maintain(store, ahead_days=ahead, detach_after_us=detach_us)
        if report is None:
            raise Fail("another process is maintaining the partitions now: try again")
        for name in report.created:
            click.echo(f"created {name}")
        if report.moved:
            click.echo(f"moved {report.moved} decisions from {partitions.DEFAULT} to their day")
        if report.moved_blocks:
            blocks_default = partitions.default_of(partitions.BLOCKS)
            click.echo(
                f"moved {report.moved_blocks} ingest blocks from {blocks_default} to their day"
            )
        for name in report.detached:
            click.echo(f"detached and dropped {name} (empty)")
        if report.busy:
            click.echo("a step waited too long for other transactions' locks: try again later")
        for name, n in report.kept:
            click.echo(f"kept {name}: {n} decisions not archived yet")
        if show:
            for p, rows, size in partitions.sizes(store):
                click.echo(f"{p.name}\t~{rows} rows\t{size} bytes")
    except StoreError as exc:
        raise Fail(str(exc)) from None
    finally:
        store.close()
