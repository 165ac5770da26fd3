"""CLI commands about what is live: deploy, weights, rollback, retire, status, history,
endpoints and decision."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import click

from chronoml.cli.common import (
    Fail,
    _chronoml,
    _json,
    _print_event,
    cli,
    json_option,
    print_remote_event,
    remote,
)
from chronoml.timeutil import iso

if TYPE_CHECKING:
    from chronoml.domain import results as R


@cli.command()
@click.argument("endpoint")
@click.argument("model_uri")
@click.option(
    "--weight", type=float, help="Join at N% of traffic; the others shrink in proportion."
)
@click.option(
    "--shadow", is_flag=True, help="Add as a shadow: sees a copy of the traffic, never answers."
)
@click.option("--variant", help="Variant name [default: MODEL-vVERSION].")
@click.option(
    "--canary",
    type=float,
    metavar="PERCENT",
    help="Join as a canary at PERCENT%: rolled back automatically when it breaches its guardrails.",
)
@click.option(
    "--max-error-rate",
    type=float,
    default=0.02,
    show_default=True,
    help="Canary guardrail: share of its requests the model may fail.",
)
@click.option(
    "--max-p99-ms",
    type=float,
    default=250.0,
    show_default=True,
    help="Canary guardrail: its p99 latency in ms.",
)
@click.option(
    "--min-requests",
    type=int,
    default=50,
    show_default=True,
    help="Canary guardrails are judged once it has served this many requests.",
)
@click.option(
    "--allow-unlinked-data",
    is_flag=True,
    help="Deploy a version whose run has no linked data snapshot (the ledger says so).",
)
@click.pass_context
def deploy(
    ctx: click.Context,
    endpoint: str,
    model_uri: str,
    weight: float | None,
    shadow: bool,
    variant: str | None,
    canary: float | None,
    max_error_rate: float,
    max_p99_ms: float,
    min_requests: int,
    allow_unlinked_data: bool,
) -> None:
    """Deploy MODEL_URI (models:/NAME/VERSION or models:/NAME@ALIAS) to ENDPOINT.

    Without --weight the version becomes the only live variant. The URI is
    resolved to a concrete version when the change is recorded. --canary N
    joins at N% and the gateways roll it back (recorded on the ledger with
    the reason) when its error rate or p99 latency breaches the guardrails.
    """
    guardrails = None
    if canary is not None:
        # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
        from chronoml.domain.canary import Guardrails

        if weight is not None:
            raise Fail("give --canary PERCENT or --weight N, not both")
        try:
            guardrails = Guardrails(max_error_rate, max_p99_ms, min_requests)
        except ValueError as exc:
            raise Fail(str(exc)) from None
        weight = canary
    with remote(ctx) as server:
        if server is not None:
            spec: dict[str, Any] = {
                "model_uri": model_uri,
                "shadow": shadow,
                "variant": variant,
                "allow_unlinked_data": allow_unlinked_data,
            }
            if guardrails is not None:
                spec["canary"] = {"percent": canary, **guardrails.to_dict()}
            elif weight is not None:
                spec["weight"] = weight
            print_remote_event(endpoint, server.call("PUT", f"/v1/endpoints/{endpoint}", spec))
            return
    with _chronoml(ctx) as cm:
        ev = cm.deploy(
            endpoint,
            model_uri,
            weight=weight,
            shadow=shadow,
            variant=variant,
            allow_unlinked_data=allow_unlinked_data,
            canary=guardrails,
        )
    _print_event(ev)


@cli.command()
@click.argument("endpoint")
@click.argument("split", nargs=-1, required=True)
@click.pass_context
def weights(ctx: click.Context, endpoint: str, split: tuple[str, ...]) -> None:
    """Set the traffic split: chronoml weights cancer a=90 b=10 (must add up to 100)."""
    parsed: dict[str, float] = {}
    for item in split:
        name, sep, pct = item.partition("=")
        try:
            if not sep:
                raise ValueError
            parsed[name] = float(pct)
        except ValueError:
            raise Fail(f"expected VARIANT=PERCENT, got {item!r}") from None
    with remote(ctx) as server:
        if server is not None:
            answer = server.call("PUT", f"/v1/endpoints/{endpoint}", {"weights": parsed})
            print_remote_event(endpoint, answer)
            return
    with _chronoml(ctx) as cm:
        ev = cm.set_weights(endpoint, parsed)
    _print_event(ev)


@cli.command()
@click.argument("endpoint")
@click.option("--reason", help="Why; recorded on the ledger.")
@click.pass_context
def rollback(ctx: click.Context, endpoint: str, reason: str | None) -> None:
    """Return ENDPOINT to the configuration before its latest change."""
    with remote(ctx) as server:
        if server is not None:
            answer = server.call("POST", f"/v1/endpoints/{endpoint}/rollback", reason=reason)
            print_remote_event(endpoint, answer)
            return
    with _chronoml(ctx) as cm:
        ev = cm.rollback(endpoint, reason=reason)
    _print_event(ev)


@cli.command()
@click.argument("endpoint")
@click.pass_context
def retire(ctx: click.Context, endpoint: str) -> None:
    """Take every variant of ENDPOINT offline (its history stays)."""
    with remote(ctx) as server:
        if server is not None:
            print_remote_event(endpoint, server.call("POST", f"/v1/endpoints/{endpoint}/retire"))
            return
    with _chronoml(ctx) as cm:
        ev = cm.retire(endpoint)
    _print_event(ev)


@cli.command()
@click.argument("endpoint")
@click.option("--at", "at", help="ISO 8601 time [default: now]; without an offset it is UTC.")
@json_option
@click.pass_context
def status(ctx: click.Context, endpoint: str, at: str | None, as_json: bool) -> None:
    """What was live on ENDPOINT at a time, with each variant's lineage."""
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.timeutil import parse_time

    with _chronoml(ctx, create=False) as cm:
        t = parse_time(at) if at else None
        st = cm.status(endpoint, t)
    if as_json:
        _json(st.as_dict())
        return
    click.echo(format_status(st))


def format_status(st: R.Status) -> str:
    lines = [f"{st.endpoint} at {iso(st.at)}"]
    ev = st.event
    if not st.variants:
        lines.append("  nothing live" + (f" (since ledger #{ev.seq} {ev.kind})" if ev else ""))
        return "\n".join(lines)
    if ev is not None:
        lines[0] += f"  (ledger #{ev.seq} {ev.kind} by {ev.actor} at {iso(ev.effective_at)})"
    for v in st.variants:
        m = v.model
        share = "shadow" if v.shadow else f"{v.weight:g}%"
        lines.append(f"  {v.variant:<20} {share:>7}  {m.name} v{m.version}  run {m.run_id}")
        lines.append(f"  {'':<20} {'':>7}  data {_snapshot_line(v.data_snapshot)}")
        lines.append(
            f"  {'':<20} {'':>7}  artifact {m.artifact_digest}  code {v.code_version or 'unknown'}"
        )
    return "\n".join(lines)


def _snapshot_line(snap: Mapping[str, Any] | None) -> str:
    if not snap:
        return "not linked to a snapshot"
    return f"{snap['name']} {snap['id']} ({snap['rows']} rows, taken {snap['created_at']})"


@cli.command()
@click.argument("endpoint")
@json_option
@click.pass_context
def history(ctx: click.Context, endpoint: str, as_json: bool) -> None:
    """The ledger timeline of ENDPOINT, oldest first."""
    with _chronoml(ctx, create=False) as cm:
        h = cm.history(endpoint)
    if as_json:
        _json(h.as_dict())
        return
    click.echo(format_history(h))


def format_history(h: R.History) -> str:
    lines = []
    for e in h.events:
        ev = e.event
        lines.append(f"#{ev.seq:<5} {iso(ev.effective_at)}  {ev.actor:<16} {e.summary}")
        if e.restored is not None:
            live = ", ".join(
                f"{v.variant} ({v.model.name} v{v.model.version}, "
                + ("shadow" if v.shadow else f"{v.weight:g}%")
                + ")"
                for v in e.restored
            )
            lines.append(f"{'':6} restored: {live or 'nothing live'}")
    return "\n".join(lines)


@cli.command()
@json_option
@click.pass_context
def endpoints(ctx: click.Context, as_json: bool) -> None:
    """List endpoints and what each serves now."""
    with _chronoml(ctx, create=False) as cm:
        eps = cm.endpoints()
    if as_json:
        _json([ep.as_dict() for ep in eps])
        return
    for ep in eps:
        live = ", ".join(
            f"{v.variant} ({'shadow' if v.shadow else str(v.weight) + '%'})" for v in ep.variants
        )
        click.echo(f"{ep.endpoint:<24} {live or 'nothing live'}")


def format_decision(d: R.DecisionRecord) -> str:
    sv = d.served_by
    m = sv.model if sv else None
    ev = d.event
    lines = [
        f"decision {d.id}",
        f"  time      {iso(d.ts)}",
        f"  endpoint  {d.endpoint}  variant {d.variant}{' (shadow)' if d.shadow else ''}"
        + (f"  unit {d.unit}" if d.unit else ""),
        f"  model     {m.name if m else None} v{m.version if m else None}"
        f"  run {m.run_id if m else None}",
        f"  artifact  {m.artifact_digest if m else None}",
        "  data      " + (_snapshot_line(sv.data_snapshot) if sv else "not linked"),
        f"  code      {(sv.code_version if sv else None) or 'unknown'}",
    ]
    if ev:
        lines.append(
            f"  live by   ledger #{ev.seq} {ev.kind} by {ev.actor} at {iso(ev.effective_at)}"
        )
    lines.append(f"  output    {json.dumps(d.output)}  ({d.latency_ms:.2f} ms)")
    inputs = d.inputs or {}
    lines.append("  inputs    " + ", ".join(f"{k}={v}" for k, v in inputs.items()))
    return "\n".join(lines)
