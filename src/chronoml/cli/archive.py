"""``chronoml archive``: move old decisions to Parquet files in a folder or an S3 bucket."""

from __future__ import annotations

from typing import Any

import click

from chronoml.cli.common import Fail, _chronoml, _json, cli, json_option


def target_options(f: Any, prefix: str = "") -> Any:
    """``--to`` and the S3 options (``chronoml server`` takes them as ``--archive-...``)."""
    p = f"--{prefix}" if prefix else "--"
    dest = prefix.replace("-", "_")
    for opt in reversed(
        [
            click.option(
                f"{p}to",
                f"{dest}to",
                metavar="URL",
                help="s3://bucket/prefix or file:///folder (default: CHRONOML_HOME/archive).",
            ),
            click.option(
                f"{p}s3-endpoint-url",
                metavar="URL",
                help="An S3-compatible server (SeaweedFS, MinIO, Ceph...); default: AWS.",
            ),
            click.option(
                f"{p}s3-access-key",
                metavar="${ENV}",
                help="The access key by reference, e.g. '${ARCHIVE_KEY_ID}' (never the key). "
                "Default: the standard AWS environment variables or profile.",
            ),
            click.option(
                f"{p}s3-secret-key", metavar="${ENV}", help="The secret key by reference."
            ),
            click.option(
                f"{p}s3-profile", metavar="NAME", help="An AWS profile to take keys from."
            ),
        ]
    ):
        f = opt(f)
    return f


_OPTIONS = {"access_key": "s3-access-key", "secret_key": "s3-secret-key"}


def option_of(field: str | None) -> str:
    """The option (without its dashes) a target error's field stands for."""
    f = field or "to"
    return _OPTIONS.get(f, f.replace("_", "-"))


def archive_target_options(f: Any) -> Any:
    """The target options of ``chronoml server``: ``--archive-to`` and ``--archive-s3-...``."""
    return target_options(f, "archive-")


@cli.group(invoke_without_command=True)
@click.option("--before", metavar="TIME", help="Archive decisions before TIME (ISO 8601, UTC).")
@target_options
@click.option(
    "--attempts",
    type=click.IntRange(1, 20),
    default=3,
    show_default=True,
    help="Tries when the object store cannot be reached (waits 5 s, 10 s, ... between).",
)
@json_option
@click.pass_context
def archive(
    ctx: click.Context,
    before: str | None,
    to: str | None,
    s3_endpoint_url: str | None,
    s3_access_key: str | None,
    s3_secret_key: str | None,
    s3_profile: str | None,
    attempts: int,
    as_json: bool,
) -> None:
    """Move decisions before TIME out of the database into content-addressed Parquet files.

    Each file (one per endpoint and input layout, named by its sha256) is
    written, read back and checked before its rows are deleted, and its
    digest is committed to the evidence log in the same transaction:
    lookups, lineage, proofs, drift, quality, replay and experiments read
    archived decisions transparently. Decisions of the last minute are never
    archived (they may still be committing). `chronoml archive status`
    shows what is where.
    """
    if ctx.invoked_subcommand is not None:
        return
    if before is None:
        raise click.UsageError("give --before TIME (or a command: status)")
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.archive import run
    from chronoml.domain.archive import ArchiveError, parse_target
    from chronoml.store import archive as SA
    from chronoml.store.archive_objects import Unreachable
    from chronoml.timeutil import iso, parse_time

    try:
        cut = parse_time(before)
    except ValueError as exc:
        raise Fail(f"--before: {exc}") from None
    with _chronoml(ctx, create=False) as cm:
        try:
            target = (
                parse_target(
                    to,
                    endpoint_url=s3_endpoint_url,
                    access_key=s3_access_key,
                    secret_key=s3_secret_key,
                    profile=s3_profile,
                )
                if to is not None
                else SA.default_target(cm.store)
            )
        except ArchiveError as exc:
            raise Fail(f"--{option_of(exc.field)}: {exc.message}") from None
        try:
            result = run(cm, cut, target, attempts=attempts)
        except Unreachable as exc:
            raise Fail(f"archive paused, nothing was deleted: {exc.message}") from None
        except ArchiveError as exc:
            raise Fail(f"nothing was deleted: {exc.message}") from None
        if as_json:
            _json({**result.to_dict(), "before": iso(cut), "to": target.url})
            return
        click.echo(
            f"archived {result.rows} decisions of {len(result.endpoints)} endpoints into "
            f"{result.files} files ({result.bytes} bytes) at {target.url}, before {iso(cut)}"
        )


@archive.command("status")
@json_option
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Per endpoint: decisions in the database and in archive files, and the archiver's state."""
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.store import archive as SA
    from chronoml.timeutil import iso

    with _chronoml(ctx, create=False) as cm:
        got = SA.status(cm.store)
    if as_json:
        _json(got)
        return
    for e in got["endpoints"]:
        mark = e["archived_to"]
        click.echo(
            f"{e['endpoint']}: {e['live_decisions']} in the database, {e['archived_decisions']} "
            f"archived in {e['files']} files ({e['bytes']} bytes)"
            + (f", everything before {iso(mark)}" if mark is not None else "")
        )
    if not got["endpoints"]:
        click.echo("no decisions")
    for t in got["targets"]:
        click.echo(f"files at {t}")
    st = got["state"]
    if st is not None and st["last_error"]:
        nxt = st["next_attempt_at"]
        click.echo(
            f"paused after {st['failures']} failed attempts: {st['last_error']}"
            + (f"; next attempt at {iso(nxt)}" if nxt else "")
        )
    elif st is not None and st["last_success_at"]:
        click.echo(f"last archived at {iso(st['last_success_at'])}")
