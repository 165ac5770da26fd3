"""CLI commands ``privacy set|show``, ``erase`` and ``retention run``."""

from __future__ import annotations

from typing import Any

import click

from chronoml.cli.common import Fail, _chronoml, _json, cli, json_option, remote


@cli.group()
def privacy() -> None:
    """What the decision log keeps of each input: keep, hash (an HMAC under the store's
    privacy secret) or drop (never written), per feature and context attribute."""


def _show(d: dict[str, Any]) -> None:
    click.echo(f"privacy policy of {d['endpoint']}")
    rules = [f"  feature {k}: {v}" for k, v in d["features"].items()]
    rules += [f"  context {k}: {v}" for k, v in d["context"].items()]
    click.echo("\n".join(rules) if rules else "  every feature and context attribute: keep")
    click.echo(f"  unit key: {d['unit_key']}")
    if d.get("set_by"):
        click.echo(f"  set at {d['set_at']} by {d['set_by']} (ledger #{d['event_seq']})")


@privacy.command("set")
@click.argument("endpoint")
@click.option(
    "--feature", "features", multiple=True, metavar="F=MODE",
    help="An input feature and keep|hash|drop (repeatable).",
)  # fmt: skip
@click.option(
    "--context", "contexts", multiple=True, metavar="A=MODE",
    help="A context attribute and keep|hash|drop (repeatable).",
)  # fmt: skip
@click.option("--unit-key", type=click.Choice(["keep", "hash"]), help="Store unit keys hashed.")
@json_option
@click.pass_context
def privacy_set(
    ctx: click.Context,
    endpoint: str,
    features: tuple[str, ...],
    contexts: tuple[str, ...],
    unit_key: str | None,
    as_json: bool,
) -> None:
    """Set rules on ENDPOINT's policy (records a ledger event; keep removes a rule)."""
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.domain.privacy import parse_rules
    from chronoml.errors import ChronomlError

    if not (features or contexts or unit_key):
        raise Fail("give at least one --feature, --context or --unit-key")
    try:
        f, c = parse_rules(features, "feature"), parse_rules(contexts, "context")
    except ChronomlError as exc:
        raise Fail(exc.message) from None
    with remote(ctx) as server:
        if server is not None:
            body = {"features": f, "context": c, "unit_key": unit_key}
            got = server.call("PUT", f"/v1/endpoints/{endpoint}/privacy", body)
        else:
            with _chronoml(ctx) as cm:
                got = cm.set_privacy(endpoint, features=f, context=c, unit_key=unit_key).as_dict()
    _json(got) if as_json else _show(got)


@privacy.command("show")
@click.argument("endpoint")
@json_option
@click.pass_context
def privacy_show(ctx: click.Context, endpoint: str, as_json: bool) -> None:
    """Show ENDPOINT's policy and who set it."""
    with _chronoml(ctx, create=False) as cm:
        got = cm.privacy(endpoint).as_dict()
    _json(got) if as_json else _show(got)


@cli.command("erase")
@click.option("--unit", required=True, help="The unit key whose inputs to erase.")
@json_option
@click.pass_context
def erase(ctx: click.Context, unit: str, as_json: bool) -> None:
    """Erase a subject's inputs and context everywhere they are stored; proofs stay valid.

    Appends an erasure event per endpoint holding the keyed hash of the unit key,
    never the key itself.
    """
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.domain.archive import ArchiveError

    with remote(ctx) as server:
        if server is not None:
            got = server.call("POST", "/v1/erasures", {"unit": unit})
        else:
            with _chronoml(ctx, create=False) as cm:
                try:
                    got = cm.erase(unit).as_dict()
                except ArchiveError as exc:  # an archive file or its record does not check out
                    raise Fail(exc.message) from None
    if as_json:
        _json(got)
        return
    click.echo(
        f"erased the inputs of {got['decisions']} decisions of unit {got['unit_hash']} "
        f"at {got['erased_at']} by {got['erased_by']}"
    )
    for endpoint, n in got["endpoints"].items():
        click.echo(f"  {endpoint}: {n}")


@cli.group()
def retention() -> None:
    """How long raw inputs are kept (outputs, commitments and lineage are kept for good)."""


@retention.command("run")
@click.option(
    "--retain-inputs", required=True, metavar="DURATION",
    help="Erase inputs older than this, e.g. 180d.",
)  # fmt: skip
@json_option
@click.pass_context
def retention_run(ctx: click.Context, retain_inputs: str, as_json: bool) -> None:
    """Erase the inputs of decisions older than --retain-inputs, now."""
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.errors import ChronomlError
    from chronoml.privacy.erasure import parse_duration

    try:
        retain_us = parse_duration(retain_inputs)
    except ChronomlError as exc:
        raise Fail(exc.message) from None
    with _chronoml(ctx, create=False) as cm:
        got = cm.enforce_retention(retain_us).as_dict()
    if as_json:
        _json(got)
        return
    click.echo(f"erased the inputs of {got['decisions']} decisions before {got['before']}")
    for endpoint, n in got["endpoints"].items():
        click.echo(f"  {endpoint}: {n}")
