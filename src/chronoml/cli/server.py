"""``chronoml server`` and ``chronoml demo``: the commands that serve."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import click

from chronoml.cli.archive import archive_target_options, option_of
from chronoml.cli.common import Fail, _chronoml, _settings, _where, cli
from chronoml.cli.ports import port_holder

if TYPE_CHECKING:
    from chronoml.service import Chronoml


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Server processes sharing the port (each has its own batchers and log writer).",
)
@click.option(
    "--max-batch",
    default=256,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Rows one predict call takes at most (micro-batching).",
)
@click.option(
    "--max-wait-ms",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1000),
    help="Extra wait for a batch to fill; 0: batches form while the model is busy.",
)
@click.option(
    "--commit-wait-ms",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 100),
    help="How long the decision log waits before each commit for more decisions to join it; "
    "0: commit what is queued at once. A few ms turns many small commits into fewer "
    "large ones (replicas sharing one PostgreSQL), and adds up to that much to each answer.",
)
@click.option(
    "--predict-timeout",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0.001),
    help="Seconds a request waits for its model before a 504.",
)
@click.option(
    "--default-endpoint", help="The endpoint POST /invocations serves (MLflow's scoring URL)."
)
@click.option(
    "--monitor-interval",
    type=float,
    default=300.0,
    show_default=True,
    help="Seconds between monitoring passes (drift, latency, quality, alerts); 0 turns it off.",
)
@click.option(
    "--monitor-window", default="1h", show_default=True, help="Window each monitoring pass covers."
)
@click.option(
    "--retrain-interval",
    type=click.FloatRange(0),
    default=10.0,
    show_default=True,
    help="Seconds between checks for due and queued retraining jobs, which this server then "
    "runs; 0: never (leave them to `chronoml retrain worker`).",
)
@click.option(
    "--alerts",
    "alerts_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Load alert rules from this TOML or JSON file at start (upsert by name).",
)
@click.option(
    "--open-predict",
    is_flag=True,
    help="Let callers without a token predict (recorded as anonymous). Off: predict needs "
    "the predictor role.",
)
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    help="A Host header to accept besides the bind address, localhost and 127.0.0.1 "
    "(repeatable; e.g. the name a proxy forwards). Others get 421.",
)
@click.option(
    "--allowed-origin",
    "allowed_origins",
    multiple=True,
    help="A browser origin (https://ui.example.com) allowed to make changes (repeatable).",
)
@click.option(
    "--trusted-proxy",
    "trusted_proxies",
    multiple=True,
    help="An address or network whose X-Forwarded-For is believed for client addresses.",
)
@click.option(
    "--allow-project-source",
    "allow_project_sources",
    multiple=True,
    help="A URI prefix of remote MLflow projects retraining may run (repeatable); "
    "others are refused.",
)
@click.option(
    "--allow-webhook-host",
    "allow_webhook_hosts",
    multiple=True,
    help="A host (or host:port) on a private or loopback network webhooks may reach.",
)
@click.option(
    "--data-root",
    "data_roots",
    multiple=True,
    help="A folder retraining data paths must lie in (repeatable; default: CHRONOML_HOME/data "
    "and the current folder).",
)
@click.option(
    "--model-formats",
    help="Comma-separated MLflow flavors a deploy may load (e.g. lightgbm,xgboost,onnx); "
    "pickle-based flavors run code when loaded.",
)
@click.option("--oidc-issuer", envvar="CHRONOML_OIDC_ISSUER", help="Accept JWTs of this issuer.")
@click.option("--oidc-audience", envvar="CHRONOML_OIDC_AUDIENCE", help="The JWTs' audience.")
@click.option("--oidc-jwks", envvar="CHRONOML_OIDC_JWKS", help="JWKS file or URL of the issuer.")
@click.option(
    "--oidc-roles-claim",
    default="roles",
    show_default=True,
    help="The claim listing roles (role or role:endpoint-glob).",
)
@click.option(
    "--access-log/--no-access-log",
    default=True,
    show_default=True,
    help="One JSON line per request on standard error: time, principal, method, route, status, "
    "latency.",
)
@click.option(
    "--checkpoint-interval",
    type=click.FloatRange(0),
    default=3600.0,
    show_default=True,
    help="Seconds between signed checkpoints of the evidence log (when it grew); 0: never.",
)
@click.option(
    "--detach-after",
    metavar="DURATION",
    default=None,
    help="PostgreSQL: detach day partitions of decisions older than this (e.g. 190d) once "
    "archiving has emptied them; a partition still holding rows is never detached.",
)
@click.option(
    "--checkpoint-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also publish each checkpoint into this folder (<size>-<time>.txt and latest.txt).",
)
@click.option(
    "--archive-after",
    metavar="DURATION",
    help="Move decisions older than this (90d, 26w) to Parquet files in the background; "
    "off by default. Where: --archive-to (default CHRONOML_HOME/archive).",
)
@archive_target_options
@click.option(
    "--checkpoint-webhook",
    "checkpoint_webhooks",
    multiple=True,
    help="Also POST each checkpoint (JSON with the signed note) to this URL through the "
    "durable outbox, retried until delivered (repeatable; credentials as ${ENV_NAME}; "
    "private hosts need --allow-webhook-host).",
)
@click.option(
    "--tsa-url",
    help="Timestamp each checkpoint with this RFC 3161 authority; the token is kept beside "
    "the checkpoint (database, .tsr files, webhook body). Private hosts need "
    "--allow-webhook-host.",
)
@click.option(
    "--retain-inputs",
    metavar="DURATION",
    help="Erase raw inputs (and context) of decisions older than this, e.g. 180d, in each "
    "monitoring pass; outputs, commitments and lineage stay [default: keep until erased].",
)
@click.option("--log-level", default="info", show_default=True)
@click.pass_context
def server(
    ctx: click.Context,
    host: str,
    port: int,
    workers: int,
    max_batch: int,
    max_wait_ms: float,
    commit_wait_ms: float,
    predict_timeout: float,
    default_endpoint: str | None,
    monitor_interval: float,
    monitor_window: str,
    retrain_interval: float,
    alerts_file: Path | None,
    open_predict: bool,
    allowed_hosts: tuple[str, ...],
    allowed_origins: tuple[str, ...],
    trusted_proxies: tuple[str, ...],
    allow_project_sources: tuple[str, ...],
    allow_webhook_hosts: tuple[str, ...],
    data_roots: tuple[str, ...],
    model_formats: str | None,
    oidc_issuer: str | None,
    oidc_audience: str | None,
    oidc_jwks: str | None,
    oidc_roles_claim: str,
    access_log: bool,
    checkpoint_interval: float,
    checkpoint_dir: Path | None,
    archive_after: str | None,
    archive_to: str | None,
    archive_s3_endpoint_url: str | None,
    archive_s3_access_key: str | None,
    archive_s3_secret_key: str | None,
    archive_s3_profile: str | None,
    checkpoint_webhooks: tuple[str, ...],
    tsa_url: str | None,
    detach_after: str | None,
    retain_inputs: str | None,
    log_level: str,
) -> None:
    """Serve the REST API, the prediction gateway and the dashboard.

    Every request needs a token (or an OIDC JWT) with the right role; the
    first start on a store writes an admin token to CHRONOML_HOME/admin.token
    (mode 0600). Create others with `chronoml token create`.

    Sets OMP_WAIT_POLICY=PASSIVE unless it is set: OpenMP threads (LightGBM,
    XGBoost) that spin after each small predict take the CPU from the rest
    of the server.
    """

    # before any model library loads its OpenMP runtime, here or in workers
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.timeutil import parse_duration

    try:
        window_us = parse_duration(monitor_window)
        detach_us = parse_duration(detach_after) if detach_after is not None else None
        retain_us = parse_duration(retain_inputs) if retain_inputs else None
    except ValueError as exc:
        raise Fail(str(exc)) from None
    try:
        archive_after_us = parse_duration(archive_after) if archive_after else 0
    except ValueError as exc:
        raise Fail(f"--archive-after: {exc}") from None
    if archive_to is not None:
        # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
        from chronoml.domain.archive import ArchiveError, parse_target

        try:  # checked before the server starts, not at its first archive pass
            parse_target(
                archive_to,
                endpoint_url=archive_s3_endpoint_url,
                access_key=archive_s3_access_key,
                secret_key=archive_s3_secret_key,
                profile=archive_s3_profile,
            )
        except ArchiveError as exc:
            raise Fail(f"--archive-{option_of(exc.field)}: {exc.message}") from None
    _check_publishing(checkpoint_webhooks, tsa_url, allow_webhook_hosts)
    busy = port_holder(host, port)
    if busy is not None:
        # before the store opens: a second server on the port would otherwise die late
        raise Fail(f"{busy}: stop it (a `chronoml demo` keeps serving) or pass --port")
    with _chronoml(ctx) as cm:
        if alerts_file is not None:
            # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
            from chronoml.cli.alerts import load_rules

            load_rules(cm, alerts_file)
        cm.settings = replace(
            cm.settings,
            max_batch_rows=max_batch,
            max_wait_ms=max_wait_ms,
            commit_wait_ms=commit_wait_ms,
            predict_timeout_s=predict_timeout,
            default_endpoint=default_endpoint,
            monitor_interval_s=monitor_interval,
            monitor_window_us=window_us,
            retrain_interval_s=retrain_interval,
            bind_host=host,
            open_predict=open_predict,
            allowed_hosts=allowed_hosts,
            allowed_origins=allowed_origins,
            trusted_proxies=trusted_proxies,
            allow_project_sources=allow_project_sources,
            allow_webhook_hosts=allow_webhook_hosts,
            data_roots=data_roots,
            model_formats=tuple(f.strip() for f in (model_formats or "").split(",") if f.strip()),
            oidc_issuer=oidc_issuer,
            oidc_audience=oidc_audience,
            oidc_jwks=oidc_jwks,
            oidc_roles_claim=oidc_roles_claim,
            checkpoint_interval_s=checkpoint_interval,
            retain_inputs_us=retain_us,
            checkpoint_dir=checkpoint_dir,
            archive_after_us=archive_after_us,
            archive_to=archive_to,
            archive_s3_endpoint_url=archive_s3_endpoint_url,
            archive_access_key=archive_s3_access_key,
            archive_secret_key=archive_s3_secret_key,
            archive_profile=archive_s3_profile,
            checkpoint_webhooks=checkpoint_webhooks,
            tsa_url=tsa_url,
            detach_after_us=detach_us,
        )
        # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
        from chronoml.auth.access import ensure_admin_token

        written = ensure_admin_token(cm.store, cm.settings.home)
        if written is not None:
            click.echo(
                f"first start on this store: an admin token is in {written} (mode 0600); "
                "use it as 'Authorization: Bearer <token>' and create others with "
                "chronoml token create"
            )
        _serve(cm, host, port, log_level, workers, access_log)


def _check_publishing(
    webhooks: tuple[str, ...], tsa_url: str | None, allow: tuple[str, ...]
) -> None:
    """Refuse, before anything starts, a checkpoint destination the server may not reach."""
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.auth import AuthError
    from chronoml.auth.policy import check_webhook_url

    given = [("--checkpoint-webhook", url) for url in webhooks]
    given += [("--tsa-url", tsa_url)] if tsa_url else []
    for option, url in given:
        try:
            check_webhook_url(url, allow, field=option.removeprefix("--").replace("-", "_"))
        except AuthError as exc:
            raise Fail(f"{option}: {exc.message}") from None


def _serve(
    cm: Chronoml, host: str, port: int, log_level: str, workers: int = 1, access: bool = True
) -> None:
    # lazy: the web stack (uvicorn, starlette) loads only for the server
    from chronoml.gateway.server import serve

    click.echo(
        f"chronoml server on http://{host}:{port} (store: {_where(cm.settings)}, "
        f"{workers} worker{'s' if workers > 1 else ''})"
    )
    serve(cm, host, port, log_level, workers, access)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--no-serve", is_flag=True, help="Stop after the walkthrough instead of serving.")
@click.pass_context
def demo(ctx: click.Context, host: str, port: int, no_serve: bool) -> None:
    """Walk through the main job on the breast-cancer data set, then keep serving.

    Snapshots data, trains and registers two versions with MLflow, deploys
    them (alone, then 50/50), sends predictions over HTTP, and prints what
    was live at two past moments, the history and one decision's lineage.
    """
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.cli.demo import run

    s = _settings(ctx)
    try:
        run(s, host=host, port=port, serve=not no_serve)
    except RuntimeError as exc:
        raise Fail(str(exc)) from None
