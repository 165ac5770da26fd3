"""CLI commands ``token create|list|revoke``: the API tokens of a store."""

from __future__ import annotations

import click

from chronoml.cli.common import Fail, _chronoml, _json, cli, json_option, remote


@cli.group()
def token() -> None:
    """API tokens: each names a principal with one role, on endpoints matching a glob.

    Roles: viewer (status, history, drift, quality, metrics; no raw inputs),
    auditor (viewer + raw inputs, explanations, replay, audit, erasure), predictor
    (predict only), operator (deploy, weights, rollback, retire, alerts,
    feedback, retrain), approver (approve or reject a challenger not its own),
    admin (everything, including retraining code, data sources and tokens).
    Only the SHA-256 of a secret is stored; the secret is printed once.
    """


@token.command("create")
@click.argument("name")
@click.option(
    "--role",
    required=True,
    type=click.Choice(["viewer", "auditor", "predictor", "operator", "approver", "admin"]),
    help="What the token may do.",
)
@click.option(
    "--endpoint", "endpoints", default="*", show_default=True, help="Glob of endpoints it covers."
)
@click.option("--expires", help="Lifetime, e.g. 30d or 12h [default: never].")
@click.pass_context
def token_create(
    ctx: click.Context, name: str, role: str, endpoints: str, expires: str | None
) -> None:
    """Create token NAME; its secret is printed alone on the last line, once."""
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.auth.access import create_token

    with remote(ctx) as server:
        if server is not None:
            body = {"name": name, "role": role, "endpoint": endpoints, "expires": expires}
            got = server.call("POST", "/v1/tokens", body)
            shown, secret = got["token"], got["secret"]
        else:
            with _chronoml(ctx) as cm:
                secret, record = create_token(
                    cm.store, name, role, by=cm.actor(), endpoints=endpoints, expires=expires
                )
            shown = record.to_dict()
    until = f", expires {shown['expires_at']}" if shown["expires_at"] else ""
    click.echo(f"token {shown['name']}: {shown['role']} on {shown['endpoint']}{until}")
    click.echo("the secret below is shown this once; store it where its users can read it:")
    click.echo(secret)


@token.command("list")
@json_option
@click.pass_context
def token_list(ctx: click.Context, as_json: bool) -> None:
    """Every token with its role, endpoints, creator and state (never a secret)."""
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.auth.access import list_tokens

    with _chronoml(ctx, create=False) as cm:
        records = [r.to_dict() for r in list_tokens(cm.store)]
    if as_json:
        _json({"tokens": records})
        return
    for r in records:
        state = f"revoked {r['revoked_at']}" if r["revoked_at"] else "active"
        click.echo(
            f"{r['name']:<20} {r['role']:<10} {r['endpoint']:<16} {state}  "
            f"(created {r['created_at']} by {r['created_by']})"
        )


@token.command("revoke")
@click.argument("name")
@click.pass_context
def token_revoke(ctx: click.Context, name: str) -> None:
    """Revoke token NAME: every server of the store refuses it within a second."""
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.auth.access import revoke_token

    with remote(ctx) as server:
        if server is not None:
            server.call("DELETE", f"/v1/tokens/{name}")
            click.echo(f"token {name} revoked")
            return
    with _chronoml(ctx) as cm:
        if not revoke_token(cm.store, name, by=cm.actor()):
            raise Fail(f"no active token named {name!r}")
    click.echo(f"token {name} revoked")
