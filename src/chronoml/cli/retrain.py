"""CLI commands ``retrain ENDPOINT`` and ``retrain configure|show|remove|run|worker``."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

import click

from chronoml.cli.common import (
    Fail,
    _chronoml,
    _json,
    cli,
    json_option,
    remote,
)
from chronoml.cli.jobs import format_job

if TYPE_CHECKING:
    from chronoml.store.jobs import Job


def _duration(text: str, option: str) -> int:
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.timeutil import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise Fail(f"{option}: {exc}") from None


# --- retrain ---------------------------------------------------------------------


class _RetrainGroup(click.Group):
    """``chronoml retrain ENDPOINT`` is ``chronoml retrain run ENDPOINT``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@cli.group(cls=_RetrainGroup)
def retrain() -> None:
    """Retrain an endpoint now (chronoml retrain ENDPOINT), or configure how and when.

    A job snapshots fresh data, runs the training entrypoint with the
    snapshot id, checks a new version was registered and linked to that
    snapshot, deploys it as a shadow or canary, compares it with the champion
    and promotes it or rolls it back, every step on the ledger.
    """


def _params(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for v in values:
        k, sep, val = v.partition("=")
        if not sep or not k:
            raise Fail(f"-P takes KEY=VALUE, got {v!r}")
        out[k] = val
    return out


@retrain.command("configure")
@click.argument("endpoint")
@click.option(
    "--project",
    type=click.Path(exists=True, file_okay=False),
    help="An MLflow Project folder: run as mlflow run DIR -P data_version=SNAPSHOT_ID --env-manager local.",
)
@click.option("--entry-point", default="main", show_default=True, help="The project's entry point.")
@click.option(
    "--callable",
    "target",
    metavar="MODULE:FUNCTION",
    help="A Python function called as function(data_version=SNAPSHOT_ID, **params) in a child process.",
)
@click.option(
    "-P",
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="A parameter for the entrypoint (repeatable).",
)
@click.option(
    "--workdir",
    type=click.Path(exists=True, file_okay=False),
    help="Where the entrypoint runs (on its import path) [default: here].",
)
@click.option(
    "--data",
    "data_path",
    type=click.Path(dir_okay=False),
    help="CSV or Parquet file of fresh training data, snapshotted at each job.",
)
@click.option(
    "--query", help="SQL whose result is the fresh training data, snapshotted at each job."
)
@click.option("--query-url", help="Database the query runs on [default: chronoml's store].")
@click.option("--snapshot-name", help="Name of the training snapshots [default: ENDPOINT].")
@click.option("--model", help="Registered model the entrypoint trains [default: the champion's].")
@click.option(
    "--timeout", default="30m", show_default=True, help="Kill the entrypoint after this long."
)
@click.option(
    "--policy",
    type=click.Choice(["shadow", "canary"]),
    default="shadow",
    show_default=True,
    help="How the new version is tried.",
)
@click.option(
    "--share",
    default=10.0,
    show_default=True,
    type=float,
    help="Percent of the traffic a canary answers.",
)
@click.option(
    "--approval",
    type=click.Choice(["auto", "manual"]),
    default="auto",
    show_default=True,
    help="manual: promotions wait for chronoml approve.",
)
@click.option(
    "--metric",
    default="accuracy",
    show_default=True,
    help="Outcome metric: accuracy, abs_error, squared_error or label (canary only).",
)
@click.option(
    "--margin",
    default=0.01,
    show_default=True,
    type=float,
    help="How much worse than the champion (metric units) still counts as no worse.",
)
@click.option("--alpha", default=0.05, show_default=True, type=float)
@click.option(
    "--min-samples",
    default=100,
    show_default=True,
    type=int,
    help="Labelled outcomes per arm before a verdict.",
)
@click.option("--max-samples", type=int, help="Per arm: reaching it without a verdict rolls back.")
@click.option(
    "--max-duration", default="7d", show_default=True, help="No verdict by then: roll back."
)
@click.option(
    "--max-error-rate-increase",
    default=0.01,
    show_default=True,
    type=float,
    help="Guardrail: the challenger's error rate over the champion's.",
)
@click.option(
    "--max-p99-ratio",
    default=1.5,
    show_default=True,
    type=float,
    help="Guardrail: the challenger's p99 latency over the champion's.",
)
@click.option(
    "--canary-max-error-rate",
    default=0.02,
    show_default=True,
    type=float,
    help="A canary's live guardrail in the gateway: share of its requests that may fail.",
)
@click.option(
    "--canary-max-p99-ms",
    default=250.0,
    show_default=True,
    type=float,
    help="A canary's live guardrail in the gateway: its p99 latency in ms.",
)
@click.option(
    "--holdout",
    type=click.Path(exists=True, dir_okay=False),
    help="Labelled CSV/Parquet the new version must do well on before it is deployed.",
)
@click.option(
    "--label-column", default="target", show_default=True, help="The holdout's label column."
)
@click.option(
    "--min-score",
    type=float,
    help="The least holdout score (most, for errors) a new version needs.",
)
@click.option("--every", help="Also retrain on a schedule, this often (e.g. 7d).")
@click.option(
    "--max-gap",
    "max_gap",
    multiple=True,
    help="Fairness limit [ATTRIBUTE:]METRIC=X on the challenger, e.g. "
    "equalized_odds_difference=0.05 (repeatable).",
)
@click.option(
    "--fairness-margin",
    "fairness_margin",
    multiple=True,
    help="[ATTRIBUTE:]METRIC=X: not worse than the champion by more than X (repeatable).",
)
@click.option(
    "--fairness-attribute",
    "fairness_attributes",
    multiple=True,
    help="Context attribute the fairness guardrails group by (repeatable).",
)
@json_option
@click.pass_context
def retrain_configure(
    ctx: click.Context,
    endpoint: str,
    project: str | None,
    entry_point: str,
    target: str | None,
    params: tuple[str, ...],
    workdir: str | None,
    data_path: str | None,
    query: str | None,
    query_url: str | None,
    snapshot_name: str | None,
    model: str | None,
    timeout: str,
    policy: str,
    share: float,
    approval: str,
    metric: str,
    margin: float,
    alpha: float,
    min_samples: int,
    max_samples: int | None,
    max_duration: str,
    max_error_rate_increase: float,
    max_p99_ratio: float,
    canary_max_error_rate: float,
    canary_max_p99_ms: float,
    holdout: str | None,
    label_column: str,
    min_score: float | None,
    every: str | None,
    max_gap: tuple[str, ...],
    fairness_margin: tuple[str, ...],
    fairness_attributes: tuple[str, ...],
    as_json: bool,
) -> None:
    """Declare how ENDPOINT is retrained: entrypoint, fresh data, challenger policy, schedule.

    Give --project DIR or --callable MODULE:FUNCTION, and --data PATH or
    --query SQL. Replaces the endpoint's previous configuration; running jobs
    keep the one they started with.
    """
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.domain.challenger import Policy, PolicyError
    from chronoml.fairness.guardrails import GuardrailError
    from chronoml.retrain.fair_selection import check_policy
    from chronoml.store import retrain_configs as RC

    if (project is None) == (target is None):
        raise Fail("give the entrypoint as --project DIR or --callable MODULE:FUNCTION")
    here = os.path.abspath(workdir or os.getcwd())
    try:
        ep = RC.Entrypoint(
            kind="project" if project else "callable",
            target=os.path.abspath(project) if project else str(target),
            params=_params(params),
            entry_point=entry_point,
            workdir=here,
        )
        data = RC.DataSource(
            path=os.path.abspath(data_path) if data_path else None,
            query=query,
            query_url=query_url,
            name=snapshot_name or endpoint,
        )
        pol = Policy(
            deploy=policy,
            share=share,
            approval=approval,
            metric=metric,
            margin=margin,
            alpha=alpha,
            min_samples=min_samples,
            max_samples=max_samples,
            max_duration_us=_duration(max_duration, "--max-duration"),
            max_error_rate_increase=max_error_rate_increase,
            max_p99_ratio=max_p99_ratio,
            canary_max_error_rate=canary_max_error_rate,
            canary_max_p99_ms=canary_max_p99_ms,
            max_gap=max_gap,
            fairness_margin=fairness_margin,
            fairness_attributes=fairness_attributes,
        )
        check_policy(pol)
        cfg = RC.RetrainConfig(
            endpoint=endpoint,
            entrypoint=ep,
            data=data,
            policy=pol,
            model=model,
            timeout_us=_duration(timeout, "--timeout"),
            holdout=RC.Holdout(os.path.abspath(holdout), label_column, min_score)
            if holdout
            else None,
            every_us=_duration(every, "--every") if every else None,
        )
    except (RC.ConfigError, PolicyError, GuardrailError) as exc:
        raise Fail(f"{exc.message} ({exc.field})" if exc.field else exc.message) from None
    with _chronoml(ctx) as cm:
        cm.status(endpoint)
        RC.put(cm.store, cfg)
    if as_json:
        _json(cfg.to_dict())
        return
    click.echo(format_config(cfg.to_dict()))


def format_config(d: dict[str, Any]) -> str:
    e, data, p = d["entrypoint"], d["data"], d["policy"]
    if e["kind"] == "project":
        how = f"mlflow run {e['target']} -e {e['entry_point']} -P data_version=SNAPSHOT_ID"
    else:
        how = f"{e['target']}(data_version=SNAPSHOT_ID)"
    how += "".join(f" {k}={v}" for k, v in e["params"].items())
    src = f"file {data['path']}" if data["path"] else f"query {data['query']!r}"
    lines = [
        f"retraining of {d['endpoint']}:",
        f"  entrypoint  {how} (in {e['workdir']}, timeout {d['timeout_us'] / 1e6:g} s)",
        f"  data        {src}, snapshots named {data['name']}",
        f"  model       {d['model'] or 'the champion' + chr(39) + 's registered model'}",
        f"  challenger  {p['deploy']}"
        + (f" at {p['share']:g}%" if p["deploy"] == "canary" else "")
        + f", {p['approval']} approval, judged on {p['metric']} (margin {p['margin']:g}, "
        f"alpha {p['alpha']:g}, {p['min_samples']} outcomes per arm, at most "
        f"{p['max_duration_us'] / 3.6e9:g} h)",
        f"  guardrails  error rate +{p['max_error_rate_increase']:g}, p99 x{p['max_p99_ratio']:g}",
    ]
    fair = [*p.get("max_gap", ()), *(f"{m} vs champion" for m in p.get("fairness_margin", ()))]
    if fair:
        by = ", ".join(p.get("fairness_attributes", ())) or "the attributes named"
        lines.append(f"  fairness    {'; '.join(fair)} (by {by})")
    if d.get("holdout"):
        h = d["holdout"]
        lines.append(f"  holdout     {h['path']} (label {h['label_column']}, min {h['min_score']})")
    if d.get("every_us"):
        lines.append(f"  schedule    every {d['every_us'] / 3.6e9:g} h")
    return "\n".join(lines)


@retrain.command("show")
@click.argument("endpoint")
@json_option
@click.pass_context
def retrain_show(ctx: click.Context, endpoint: str, as_json: bool) -> None:
    """Show how ENDPOINT is retrained."""
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.store import retrain_configs as RC

    with _chronoml(ctx, create=False) as cm:
        cfg = RC.get(cm.store, endpoint)
    if cfg is None:
        raise Fail(f"no retraining configured for {endpoint!r}")
    if as_json:
        _json(cfg.to_dict())
    else:
        click.echo(format_config(cfg.to_dict()))


@retrain.command("remove")
@click.argument("endpoint")
@click.pass_context
def retrain_remove(ctx: click.Context, endpoint: str) -> None:
    """Remove ENDPOINT's retraining configuration (jobs already started go on)."""
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.store import retrain_configs as RC

    with _chronoml(ctx) as cm:
        if not RC.remove(cm.store, endpoint):
            raise Fail(f"no retraining configured for {endpoint!r}")
    click.echo(f"removed the retraining configuration of {endpoint}")


def _progress(job: Job) -> None:
    click.echo(
        f"job {job.id}: {job.status.replace('_', ' ')}, step {job.step}"
        + (f" ({job.reason})" if job.reason and job.status != "evaluating" else "")
    )


@retrain.command("run")
@click.argument("endpoint")
@click.option(
    "--no-wait",
    is_flag=True,
    help="Only queue the job: chronoml server (or retrain worker) runs it.",
)
@click.pass_context
def retrain_run(ctx: click.Context, endpoint: str, no_wait: bool) -> None:
    """Retrain ENDPOINT now: queue a job and run it here up to the evaluation.

    The evaluation against the champion goes on at every pass of chronoml
    server or chronoml retrain worker. With an unfinished job on ENDPOINT,
    no second one starts.
    """
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.retrain.runner import JobRunner

    with remote(ctx) as server:
        if server is not None:
            got = server.call("POST", f"/v1/endpoints/{endpoint}/retrain")
            j = got["job"]
            state = "queued" if got["created"] else f"already {j['status'].replace('_', ' ')}"
            click.echo(f"job {j['id']} of {endpoint}: {state} on {server.url}")
            return
    with _chronoml(ctx) as cm:
        cm.status(endpoint)
        runner = JobRunner(cm, on_step=_progress)
        job, created = runner.start_job(endpoint, cm.actor())
        if not created:
            click.echo(
                f"job {job.id} of {endpoint} is already {job.status.replace('_', ' ')} "
                f"(step {job.step}): not started again"
            )
            return
        click.echo(f"job {job.id} queued for {endpoint}")
        if no_wait:
            return
        job = runner.advance(job.id)
    click.echo(format_job(job.to_dict(), []))
    if job.status == "failed":
        raise Fail(f"job {job.id} failed: {job.reason}")


@retrain.command("worker")
@click.option("--once", is_flag=True, help="One pass, then exit (for cron).")
@click.option(
    "--interval",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0.1),
    help="Seconds between passes.",
)
@click.pass_context
def retrain_worker(ctx: click.Context, once: bool, interval: float) -> None:
    """Advance retraining jobs (scheduled ones too) without a server.

    chronoml server does this already; use this for a store with no server.
    """

    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.retrain.runner import JobRunner

    with _chronoml(ctx) as cm:
        runner = JobRunner(cm, on_step=_progress)
        while True:
            runner.run_once()
            if once:
                return
            time.sleep(interval)


# --- jobs --------------------------------------------------------------------------
