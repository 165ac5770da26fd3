"""CLI commands ``snapshot PATH`` and ``snapshot take|list|show|resolve``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from chronoml.cli.common import _chronoml, _json, cli, json_option

if TYPE_CHECKING:
    from chronoml.domain.snapshot import Snapshot


class _SnapshotGroup(click.Group):
    """``chronoml snapshot PATH --name NAME`` is ``chronoml snapshot take PATH --name NAME``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["take", *args]
        return super().parse_args(ctx, args)


@cli.group(cls=_SnapshotGroup)
def snapshot() -> None:
    """Take a snapshot (chronoml snapshot PATH --name NAME), or find and read them.

    A snapshot is referred to by its id (sha256:..., or 8+ of its hex digits),
    NAME@latest, or NAME@TIME: the latest of that name taken at or before TIME
    (ISO 8601, UTC without an offset).
    """


@snapshot.command("take")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="A name for the data set, e.g. customers.")
@json_option
@click.pass_context
def take(ctx: click.Context, path: Path, name: str, as_json: bool) -> None:
    """Take an immutable, content-addressed snapshot of a CSV or Parquet file.

    Prints the snapshot id (sha256 over every value). chronoml run PROJECT -P
    data_version=REF links a training run to it; so does chronoml.load_snapshot
    or chronoml.log_snapshot inside the run.
    """
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.store import snapshots

    with _chronoml(ctx) as cm:
        snap = snapshots.take(cm.store, path, name, actor=cm.actor())
    if as_json:
        _json(snap.to_dict())
    else:
        click.echo(snap.id)
        click.echo(f"  name {snap.name}, {snap.rows} rows, {len(snap.columns)} columns", err=True)


@snapshot.command("list")
@click.argument("name", required=False)
@json_option
@click.pass_context
def list_(ctx: click.Context, name: str | None, as_json: bool) -> None:
    """List snapshots (of NAME, or all), oldest first."""
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.store import snapshots

    with _chronoml(ctx) as cm:
        found = snapshots.named(cm.store, name)
    if as_json:
        _json([_summary(s) for s in found])
        return
    if not found:
        click.echo(f"no snapshots named {name!r}" if name else "no snapshots yet")
        return
    for s in found:
        d = _summary(s)
        built = "  (built)" if s.lineage else ""
        click.echo(
            f"{d['created_at']}  {s.name:<20} {s.rows:>9} rows  {s.id[:19]}  "
            f"{s.actor or '-'}{built}"
        )


def _summary(s: Snapshot) -> dict[str, Any]:
    return {**s.to_dict(), "taken_by": s.actor, "built": s.lineage is not None}


@snapshot.command("resolve")
@click.argument("name")
@click.option("--at", "at", default="latest", show_default=True, help="ISO 8601 time, or latest.")
@json_option
@click.pass_context
def resolve(ctx: click.Context, name: str, at: str, as_json: bool) -> None:
    """Print the id of the latest snapshot of NAME taken at or before --at."""
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml import snapshots

    with _chronoml(ctx) as cm:
        snap = snapshots.resolve(cm.store, f"{name}@{at}")
    if as_json:
        _json(_summary(snap))
    else:
        click.echo(snap.id)


@snapshot.command("show")
@click.argument("ref")
@json_option
@click.pass_context
def show(ctx: click.Context, ref: str, as_json: bool) -> None:
    """Show a snapshot: rows, columns, hash, who took it, the runs, versions and endpoints
    that used it, and for a built training set its inputs and join."""
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml import snapshots

    with _chronoml(ctx) as cm:
        d = snapshots.details(cm, ref).to_dict()
    if as_json:
        _json(d)
        return
    click.echo(f"snapshot {d['id']}")
    click.echo(f"  name      {d['name']}")
    click.echo(f"  rows      {d['rows']}")
    click.echo(f"  taken     {d['created_at']} by {d['taken_by'] or 'unknown'}")
    click.echo(f"  columns   {len(d['columns'])}")
    for c in d["columns"]:
        click.echo(f"    {c['name']:<28} {c['type']}")
    lineage = d["lineage"]
    if lineage:
        click.echo("  built from")
        labels = lineage.get("labels", {})
        click.echo(
            f"    labels  {labels.get('ref')}  (entity {labels.get('entity')}, "
            f"time {labels.get('time')})"
        )
        for f in lineage.get("features", []):
            ttl = "no ttl" if f.get("ttl_us") is None else f"ttl {f['ttl_us'] / 1e6:g}s"
            click.echo(f"    {f['name']:<7} {f.get('ref')}  ({ttl})")
        missing = lineage.get("missing") or {}
        if missing:
            click.echo(
                "    missing " + ", ".join(f"{k}: {v} rows" for k, v in sorted(missing.items()))
            )
    if not d["runs"]:
        click.echo("  runs      none linked")
    for r in d["runs"]:
        versions = ", ".join(f"{v['name']} v{v['version']}" for v in r["versions"]) or "none"
        code = r["code_version"] or "unknown"
        click.echo(f"  run       {r['run_id']}  {r['status']}  code {code}  versions: {versions}")
    for e in d["endpoints"]:
        now = "  (live now)" if e["live_now"] else ""
        m = e["model"]
        click.echo(
            f"  served    {e['endpoint']}: {m['name']} v{m['version']} since ledger "
            f"#{e['since_seq']} ({e['since']}){now}"
        )
