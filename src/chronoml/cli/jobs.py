"""CLI commands about retraining jobs: ``jobs``, ``job`` and ``approve``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from chronoml.cli.common import (
    Fail,
    _chronoml,
    _json,
    _num,
    _print_event,
    cli,
    json_option,
    remote,
)

if TYPE_CHECKING:
    pass


@cli.command()
@click.argument("endpoint", required=False)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1))
@json_option
@click.pass_context
def jobs(ctx: click.Context, endpoint: str | None, limit: int, as_json: bool) -> None:
    """Retraining jobs, newest first (of ENDPOINT, or all)."""
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.store import jobs as J

    with _chronoml(ctx, create=False) as cm:
        found = J.listing(cm.store, endpoint, limit)
    if as_json:
        _json([j.to_dict() for j in found])
        return
    if not found:
        click.echo("no retraining jobs")
    for j in found:
        model = f"{j.model_name} v{j.model_version}" if j.model_version else "-"
        click.echo(
            f"#{j.id:<4} {j.endpoint:<16} {j.status:<17} {j.step:<9} {model:<16} "
            f"{_trigger(j.trigger):<28} {j.reason or ''}"
        )


def _trigger(t: Any) -> str:
    kind = t.get("kind")
    if kind == "alert":
        return f"alert {t.get('rule')}"
    if kind == "manual":
        return f"by {t.get('actor')}"
    return str(kind)


@cli.command()
@click.argument("job_id", type=int)
@click.option("--log", "show_log", is_flag=True, help="Print the entrypoint's captured output.")
@json_option
@click.pass_context
def job(ctx: click.Context, job_id: int, show_log: bool, as_json: bool) -> None:
    """One retraining job: its steps, evidence and outcome (and --log its output)."""
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.store import jobs as J

    with _chronoml(ctx, create=False) as cm:
        found = J.get(cm.store, job_id)
        if found is None:
            raise Fail(f"unknown job {job_id}")
        steps = J.steps(cm.store, job_id)
    if as_json:
        _json({**found.to_dict(log=show_log), "steps": steps})
        return
    if show_log:
        click.echo(found.log or "(no output captured)", nl=not (found.log or "").endswith("\n"))
        return
    click.echo(format_job(found.to_dict(), steps))


def format_job(d: dict[str, Any], steps: list[dict[str, Any]]) -> str:
    lines = [
        f"job {d['id']} of {d['endpoint']}: {d['status'].replace('_', ' ')} (step {d['step']}), "
        f"started {d['created_at']} ({_trigger(d['trigger'])})"
    ]
    if d["snapshot_id"]:
        lines.append(f"  data      {d['snapshot_id']}")
    if d["model"]:
        m = d["model"]
        lines.append(f"  model     {m['name']} v{m['version']} (run {m['run_id']})")
    if d["challenger"]:
        lines.append(
            f"  deployed  {d['challenger']} (ledger #{d['deploy_seq']}) against {d['champion']}"
        )
    ev = d.get("evaluation")
    if ev:
        c = ev["comparison"]
        lines.append(
            f"  evaluated {ev['window']['from']} to {ev['window']['to']} on {ev['metric']}: "
            f"{c['verdict']} (effect {_num(c['effect'])}, "
            f"always-valid p={_num(c['always_valid_p_value'], '.3g')}, "
            f"n={c['control']['labelled']}/{c['treatment']['labelled']})"
        )
        lines.append(f"  decision  {ev['decision']['action']}: {ev['decision']['reason']}")
    if d["reason"] and d["status"] in ("failed", "promoted", "rolled_back"):
        lines.append(
            f"  outcome   {d['reason']}"
            + (f" (ledger #{d['final_seq']})" if d["final_seq"] else "")
        )
    for s in steps:
        extra = ""
        det = s.get("detail") or {}
        if s["status"] == "failed":
            extra = det.get("reason", "")
        elif s["step"] == "snapshot" and det.get("snapshot"):
            extra = f"{det['snapshot']['id']} ({det['snapshot']['rows']} rows)"
        elif s["step"] == "train" and s["status"] == "done":
            extra = f"{det.get('seconds')} s"
        elif s["step"] == "register":
            extra = f"{det.get('model')} v{det.get('version')}"
        at = s.get("ledger_seq") or det.get("event")
        seq = f" ledger #{at}" if at else ""
        lines.append(f"  {s['at']}  {s['step']:<9} {s['status']:<8}{seq} {extra}".rstrip())
    if d["status"] == "evaluating":
        lines.append(
            "  the evaluation goes on at every pass of chronoml server or chronoml retrain worker"
        )
    if d["status"] == "awaiting_approval":
        lines.append(f"  waiting for: chronoml approve {d['endpoint']} {d['id']} (or --reject)")
    return "\n".join(lines)


@cli.command()
@click.argument("endpoint")
@click.argument("job_id", type=int)
@click.option("--reject", is_flag=True, help="Roll the challenger back instead of promoting it.")
@click.option("--reason", help="Why (recorded on the ledger).")
@click.pass_context
def approve(
    ctx: click.Context,
    endpoint: str,
    job_id: int,
    reject: bool,
    reason: str | None,
) -> None:
    """Promote the challenger of a job awaiting approval (or --reject: roll it back)."""
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.retrain.runner import JobRunner
    from chronoml.retrain.runner import approve as answer
    from chronoml.store import ledger as SL

    with remote(ctx) as server:
        if server is not None:
            body = {"reject": reject, "reason": reason}
            got = server.call("POST", f"/v1/endpoints/{endpoint}/jobs/{job_id}/approve", body)
            click.echo(f"job {job_id}: {got['job']['status'].replace('_', ' ')}")
            return
    with _chronoml(ctx) as cm:
        j = answer(cm, endpoint, job_id, cm.actor(), reject=reject, reason=reason)
        j = JobRunner(cm).advance(j.id)
        events = [e for e in SL.history(cm.store, endpoint) if e.seq >= (j.verdict_seq or 0)]
    for e in events[1:]:
        _print_event(e)
    click.echo(f"job {j.id}: {j.status.replace('_', ' ')}")
