"""The ``chronoml`` command line. Thin: it parses, calls the service, prints.

Heavy modules (MLflow, pandas, the server) are imported inside commands so
``chronoml --help`` starts fast.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from chronoml.domain.ledger import LedgerEvent
    from chronoml.service import Chronoml
    from chronoml.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])


class Fail(click.ClickException):
    """A clean error: message on stderr, exit code 1."""

    exit_code = 1

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def _settings(ctx: click.Context) -> Settings:
    from chronoml.settings import Settings

    obj = ctx.find_root().obj or {}
    return Settings.from_env(home=obj.get("home"), store_url=obj.get("store"))


@contextmanager
def _chronoml(ctx: click.Context) -> Iterator[Chronoml]:
    """Open chronoml, translating its errors into clean CLI failures."""
    from chronoml.registry import RegistryError
    from chronoml.service import Chronoml, NotFound, Refused
    from chronoml.snapshots import SnapshotError
    from chronoml.store import StoreError

    s = _settings(ctx)
    try:
        cm = Chronoml.open(s)
    except StoreError as exc:
        raise Fail(str(exc)) from None
    try:
        yield cm
    except (NotFound, RegistryError) as exc:
        raise Fail(str(exc)) from None
    except Refused as exc:
        raise Fail(exc.message) from None
    except (StoreError, SnapshotError, ValueError) as exc:
        raise Fail(str(exc)) from None
    finally:
        cm.close()


def _print_event(ev: LedgerEvent) -> None:
    from chronoml.domain.ledger import event_summary
    from chronoml.timeutil import iso

    click.echo(
        f"ledger #{ev.seq}  {iso(ev.effective_at)}  {ev.actor}  {ev.endpoint}: {event_summary(ev)}"
        f"  [{ev.hash[:12]}]"
    )


def _json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")


def window_options(*, variant: bool = False) -> Callable[[F], F]:
    """``--window/--from/--to`` (and ``--variant``) for commands that read a time range.

    The command receives ``window``, ``start`` and ``end`` (and ``variant``);
    :func:`window_bounds` turns the first three into microseconds.
    """
    opts = [
        click.option(
            "--window",
            default="1h",
            show_default=True,
            help="Look back this long from --to: 30s, 15m, 1h, 7d.",
        ),
        click.option("--from", "start", help="Range start (ISO 8601); overrides --window."),
        click.option("--to", "end", help="Range end (ISO 8601) [default: now]."),
    ]
    if variant:
        opts.append(click.option("--variant", help="Only this variant's decisions."))

    def wrap(f: F) -> F:
        for opt in reversed(opts):
            f = opt(f)
        return f

    return wrap


def window_bounds(window: str, start: str | None, end: str | None) -> tuple[int, int]:
    """``[begin, stop)`` in microseconds: ``--to`` (default now) back ``--window``, or ``--from``."""
    from chronoml.timeutil import now_us, parse_duration, parse_time

    def parsed(option: str, parse: Callable[[str], int], text: str) -> int:
        try:
            return parse(text)
        except ValueError as exc:
            raise Fail(f"{option}: {exc}") from None

    stop = parsed("--to", parse_time, end) if end else now_us()
    begin = (
        parsed("--from", parse_time, start)
        if start
        else stop - parsed("--window", parse_duration, window)
    )
    return begin, stop


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home",
    envvar="CHRONOML_HOME",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder of the embedded store, MLflow store and archives [env CHRONOML_HOME; default ./.chronoml].",
)
@click.option(
    "--store",
    envvar="CHRONOML_STORE",
    help="Database URL for chronoml's tables, e.g. postgresql+psycopg://host/db [env CHRONOML_STORE].",
)
@click.version_option(package_name="chronoml")
@click.pass_context
def cli(ctx: click.Context, home: Path | None, store: str | None) -> None:
    """chronoml: which model was live, trained on what, decided what, and why.

    Deploys MLflow models behind a logging gateway and keeps an append-only,
    hash-chained ledger of every change, so any past moment can be answered.
    Times are ISO 8601; without an offset they are UTC.
    """
    ctx.obj = {"home": home, "store": store}


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
@click.option("--log-level", default="info", show_default=True)
@click.pass_context
def server(
    ctx: click.Context,
    host: str,
    port: int,
    workers: int,
    max_batch: int,
    max_wait_ms: float,
    predict_timeout: float,
    default_endpoint: str | None,
    monitor_interval: float,
    monitor_window: str,
    retrain_interval: float,
    alerts_file: Path | None,
    log_level: str,
) -> None:
    """Serve the REST API, the prediction gateway and the dashboard.

    Sets OMP_WAIT_POLICY=PASSIVE unless it is set: OpenMP threads (LightGBM,
    XGBoost) that spin after each small predict take the CPU from the rest
    of the server.
    """
    import os
    from dataclasses import replace

    # before any model library loads its OpenMP runtime, here or in workers
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    from chronoml.timeutil import parse_duration

    try:
        window_us = parse_duration(monitor_window)
    except ValueError as exc:
        raise Fail(str(exc)) from None
    with _chronoml(ctx) as cm:
        if alerts_file is not None:
            from chronoml.cli_alerts import load_rules

            load_rules(cm, alerts_file)
        cm.settings = replace(
            cm.settings,
            max_batch_rows=max_batch,
            max_wait_ms=max_wait_ms,
            predict_timeout_s=predict_timeout,
            default_endpoint=default_endpoint,
            monitor_interval_s=monitor_interval,
            monitor_window_us=window_us,
            retrain_interval_s=retrain_interval,
        )
        _serve(cm, host, port, log_level, workers)


def _serve(cm: Chronoml, host: str, port: int, log_level: str, workers: int = 1) -> None:
    import uvicorn

    from chronoml.gateway.app import create_app, settings_to_env
    from chronoml.registry import configure

    configure(cm.settings)
    click.echo(
        f"chronoml server on http://{host}:{port} (store: {_where(cm.settings)}, "
        f"{workers} worker{'s' if workers > 1 else ''})"
    )
    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "access_log": False,
        "timeout_graceful_shutdown": 30,
    }
    if workers == 1:
        uvicorn.run(create_app(cm.settings, cm), **common)
        return
    # each worker process builds its own app from the same settings
    settings_to_env(cm.settings)
    cm.close()
    # a worker loading its models answers the supervisor's pings late: give it time
    # rather than restarting it in a loop on a busy machine
    uvicorn.run(
        "chronoml.gateway.app:worker_app",
        factory=True,
        workers=workers,
        timeout_worker_healthcheck=60,
        **common,
    )


def _where(s: Settings) -> str:
    return s.store_url.split("@")[-1] if s.store_url else str(s.home)


@cli.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="A name for the data set, e.g. customers.")
@json_option
@click.pass_context
def snapshot(ctx: click.Context, path: Path, name: str, as_json: bool) -> None:
    """Take an immutable, content-addressed snapshot of a CSV or Parquet file.

    Prints the snapshot id (sha256 over every value). Link it to a training
    run with chronoml.log_snapshot(snap) inside the run.
    """
    from chronoml import snapshots

    with _chronoml(ctx) as cm:
        snap = snapshots.take(cm.store, path, name)
    if as_json:
        _json(snap.to_dict())
    else:
        click.echo(snap.id)
        click.echo(f"  name {snap.name}, {snap.rows} rows, {len(snap.columns)} columns", err=True)


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
@click.option("--actor", help="Who makes the change [env CHRONOML_ACTOR; default: your user name].")
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
    actor: str | None,
) -> None:
    """Deploy MODEL_URI (models:/NAME/VERSION or models:/NAME@ALIAS) to ENDPOINT.

    Without --weight the version becomes the only live variant. The URI is
    resolved to a concrete version when the change is recorded. --canary N
    joins at N% and the gateways roll it back (recorded on the ledger with
    the reason) when its error rate or p99 latency breaches the guardrails.
    """
    guardrails = None
    if canary is not None:
        from chronoml.domain.canary import Guardrails

        if weight is not None:
            raise Fail("give --canary PERCENT or --weight N, not both")
        try:
            guardrails = Guardrails(max_error_rate, max_p99_ms, min_requests)
        except ValueError as exc:
            raise Fail(str(exc)) from None
        weight = canary
    with _chronoml(ctx) as cm:
        ev = cm.deploy(
            endpoint,
            model_uri,
            weight=weight,
            shadow=shadow,
            variant=variant,
            allow_unlinked_data=allow_unlinked_data,
            actor=actor,
            canary=guardrails,
        )
    _print_event(ev)


@cli.command()
@click.argument("endpoint")
@click.argument("split", nargs=-1, required=True)
@click.option("--actor", help="Who makes the change.")
@click.pass_context
def weights(ctx: click.Context, endpoint: str, split: tuple[str, ...], actor: str | None) -> None:
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
    with _chronoml(ctx) as cm:
        ev = cm.set_weights(endpoint, parsed, actor=actor)
    _print_event(ev)


@cli.command()
@click.argument("endpoint")
@click.option("--reason", help="Why; recorded on the ledger.")
@click.option("--actor", help="Who makes the change.")
@click.pass_context
def rollback(ctx: click.Context, endpoint: str, reason: str | None, actor: str | None) -> None:
    """Return ENDPOINT to the configuration before its latest change."""
    with _chronoml(ctx) as cm:
        ev = cm.rollback(endpoint, reason=reason, actor=actor)
    _print_event(ev)


@cli.command()
@click.argument("endpoint")
@click.option("--actor", help="Who makes the change.")
@click.pass_context
def retire(ctx: click.Context, endpoint: str, actor: str | None) -> None:
    """Take every variant of ENDPOINT offline (its history stays)."""
    with _chronoml(ctx) as cm:
        ev = cm.retire(endpoint, actor=actor)
    _print_event(ev)


@cli.command()
@click.argument("endpoint")
@click.option("--at", "at", help="ISO 8601 time [default: now]; without an offset it is UTC.")
@json_option
@click.pass_context
def status(ctx: click.Context, endpoint: str, at: str | None, as_json: bool) -> None:
    """What was live on ENDPOINT at a time, with each variant's lineage."""
    from chronoml.timeutil import parse_time

    with _chronoml(ctx) as cm:
        t = parse_time(at) if at else None
        st = cm.status(endpoint, t)
    if as_json:
        _json(st)
        return
    click.echo(format_status(st))


def format_status(st: dict[str, Any]) -> str:
    lines = [f"{st['endpoint']} at {st['at']}"]
    ev = st["event"]
    if not st["variants"]:
        lines.append(
            "  nothing live" + (f" (since ledger #{ev['seq']} {ev['kind']})" if ev else "")
        )
        return "\n".join(lines)
    lines[0] += f"  (ledger #{ev['seq']} {ev['kind']} by {ev['actor']} at {ev['effective_at']})"
    for v in st["variants"]:
        m = v["model"]
        share = "shadow" if v["shadow"] else f"{v['weight']:g}%"
        lines.append(
            f"  {v['variant']:<20} {share:>7}  {m['name']} v{m['version']}  run {m['run_id']}"
        )
        snap = v["data_snapshot"]
        if snap:
            lines.append(
                f"  {'':<20} {'':>7}  data {snap['name']} {snap['id']} ({snap['rows']} rows, "
                f"taken {snap['created_at']})"
            )
        else:
            lines.append(f"  {'':<20} {'':>7}  data: not linked to a snapshot")
        lines.append(
            f"  {'':<20} {'':>7}  artifact {m['artifact_digest']}  code {v['code_version'] or 'unknown'}"
        )
    return "\n".join(lines)


@cli.command()
@click.argument("endpoint")
@json_option
@click.pass_context
def history(ctx: click.Context, endpoint: str, as_json: bool) -> None:
    """The ledger timeline of ENDPOINT, oldest first."""
    with _chronoml(ctx) as cm:
        h = cm.history(endpoint)
    if as_json:
        _json(h)
        return
    click.echo(format_history(h))


def format_history(h: dict[str, Any]) -> str:
    lines = []
    for e in h["events"]:
        lines.append(f"#{e['seq']:<5} {e['effective_at']}  {e['actor']:<16} {e['summary']}")
    return "\n".join(lines)


@cli.command()
@json_option
@click.pass_context
def endpoints(ctx: click.Context, as_json: bool) -> None:
    """List endpoints and what each serves now."""
    with _chronoml(ctx) as cm:
        eps = cm.endpoints()
    if as_json:
        _json(eps)
        return
    for ep in eps:
        live = ", ".join(
            f"{v['variant']} ({'shadow' if v['shadow'] else str(v['weight']) + '%'})"
            for v in ep["variants"]
        )
        click.echo(f"{ep['endpoint']:<24} {live or 'nothing live'}")


@cli.command()
@click.argument("decision_id")
@click.option(
    "--explain", is_flag=True, help="Add its SHAP explanation (computed and stored if missing)."
)
@click.option(
    "--replay", is_flag=True, help="Re-run its archived model; exit 1 if the output differs."
)
@json_option
@click.pass_context
def decision(
    ctx: click.Context, decision_id: str, explain: bool, replay: bool, as_json: bool
) -> None:
    """A logged decision with its full lineage."""
    if explain or replay:
        from chronoml.cli_explain import show_decision

        show_decision(ctx, decision_id, explain=explain, replay=replay, as_json=as_json)
        return
    with _chronoml(ctx) as cm:
        d = cm.decision(decision_id)
    if as_json:
        _json(d)
        return
    click.echo(format_decision(d))


def format_decision(d: dict[str, Any]) -> str:
    m = d["model"] or {}
    snap = d["data_snapshot"]
    ev = d["event"]
    lines = [
        f"decision {d['id']}",
        f"  time      {d['time']}",
        f"  endpoint  {d['endpoint']}  variant {d['variant']}{' (shadow)' if d['shadow'] else ''}"
        + (f"  unit {d['unit']}" if d["unit"] else ""),
        f"  model     {m.get('name')} v{m.get('version')}  run {m.get('run_id')}",
        f"  artifact  {m.get('artifact_digest')}",
        "  data      "
        + (
            f"{snap['name']} {snap['id']} ({snap['rows']} rows, taken {snap['created_at']})"
            if snap
            else "not linked"
        ),
        f"  code      {d['code_version'] or 'unknown'}",
    ]
    if ev:
        lines.append(
            f"  live by   ledger #{ev['seq']} {ev['kind']} by {ev['actor']} at {ev['effective_at']}"
        )
    lines.append(f"  output    {json.dumps(d['output'])}  ({d['latency_ms']:.2f} ms)")
    lines.append("  inputs    " + ", ".join(f"{k}={v}" for k, v in d["inputs"].items()))
    return "\n".join(lines)


@cli.command()
@click.argument("endpoint")
@window_options(variant=True)
@click.option(
    "--method",
    "methods",
    multiple=True,
    help="FEATURE=METHOD: psi, ks, chisquare, wasserstein, jensenshannon or z (repeatable).",
)
@click.option("--threshold", "thresholds", multiple=True, help="FEATURE=THRESHOLD (repeatable).")
@click.option(
    "--html",
    "html",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write an offline HTML report.",
)
@json_option
@click.pass_context
def drift(
    ctx: click.Context,
    endpoint: str,
    window: str,
    start: str | None,
    end: str | None,
    variant: str | None,
    methods: tuple[str, ...],
    thresholds: tuple[str, ...],
    html: Path | None,
    as_json: bool,
) -> None:
    """Feature and prediction drift of ENDPOINT's decisions against the training data.

    Defaults follow Evidently's data-drift preset: normed Wasserstein (numeric)
    and Jensen-Shannon (categorical) at 0.1 for references over 1,000 rows, KS
    and chi-square at p < 0.05 below; dataset drift when half the features drift.
    """
    from chronoml.monitor.reports import parse_overrides, to_html

    begin, stop = window_bounds(window, start, end)
    with _chronoml(ctx) as cm:
        rep = cm.drift(
            endpoint,
            start=begin,
            end=stop,
            variant=variant,
            overrides=parse_overrides(list(methods), list(thresholds)),
        )
    if html is not None:
        html.write_text(to_html(rep), encoding="utf-8")
        click.echo(f"wrote {html}", err=True)
    if as_json:
        _json(rep)
        return
    click.echo(format_drift(rep))


def format_drift(rep: dict[str, Any]) -> str:
    w = rep["window"]
    lines = [f"{rep['endpoint']}: {w['rows']} decisions from {w['from']} to {w['to']}"]
    if not rep["variants"]:
        lines.append("  no decisions in this window")
    for v in rep["variants"]:
        m = v["model"]
        head = f"  {v['variant']} ({m.get('name', '')} v{m['version']}), {v['rows']} decisions"
        if "error" in v:
            lines.append(f"{head}: {v['error']}")
            continue
        share = v["drifted_share"]
        verdict = "DATASET DRIFT" if v["dataset_drift"] else "no dataset drift"
        share_text = "n/a" if share is None else f"{share:.0%}"
        lines.append(f"{head}: {verdict} ({share_text} of features drifted)")
        for f in [*v["features"], *([v["prediction"]] if v["prediction"] else [])]:
            if f["status"] != "ok":
                lines.append(f"    {f['feature']:<28} {f['status']}")
                continue
            mark = "DRIFT" if f["drifted"] else "ok"
            lines.append(
                f"    {f['feature']:<28} {f['method']:<14} {f['statistic']:.4g} "
                f"(threshold {f['threshold']:g}) {mark}"
            )
    return "\n".join(lines)


@cli.group()
def audit() -> None:
    """Check the ledger."""


@audit.command()
@json_option
@click.pass_context
def verify(ctx: click.Context, as_json: bool) -> None:
    """Recompute the hash chain; name the first event that does not match (exit 1)."""
    with _chronoml(ctx) as cm:
        report = cm.verify()
    if as_json:
        _json(report.__dict__)
    elif report.ok:
        click.echo(f"ok: {report.events} events, head {report.head}")
    else:
        click.echo(f"FAILED at ledger event #{report.first_bad_seq}: {report.reason}", err=True)
    if not report.ok:
        sys.exit(1)


@cli.group()
def db() -> None:
    """Manage chronoml's database schema."""


@db.command()
@click.pass_context
def upgrade(ctx: click.Context) -> None:
    """Create the schema or migrate it to this version of chronoml."""
    from chronoml.store import Store, StoreError

    s = _settings(ctx)
    store = Store.open(s.database_url, s.home)
    try:
        rev = store.upgrade()
    except StoreError as exc:
        raise Fail(str(exc)) from None
    finally:
        store.close()
    click.echo(f"schema at revision {rev} ({_where(s)})")


@db.command()
@click.option(
    "--rebuild", is_flag=True, help="Drop the blocks first and compact all history again."
)
@click.pass_context
def compact(ctx: click.Context, rebuild: bool) -> None:
    """Compact settled decisions into columnar blocks (the server does it every monitoring pass)."""
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
    from chronoml.store import Store, StoreError

    s = _settings(ctx)
    store = Store.open(s.database_url, s.home)
    try:
        click.echo(store.revision() or "no schema")
    except StoreError as exc:
        raise Fail(str(exc)) from None
    finally:
        store.close()


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
    from chronoml.demo import run

    s = _settings(ctx)
    try:
        run(s, host=host, port=port, serve=not no_serve)
    except RuntimeError as exc:
        raise Fail(str(exc)) from None


def main() -> None:
    import os

    # MLflow's telemetry is off for this process and everything it starts
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    os.environ["DO_NOT_TRACK"] = "true"
    cli(prog_name="chronoml")


# commands defined in their own modules register themselves on `cli`
from chronoml import cli_alerts as _cli_alerts  # noqa: E402, F401
from chronoml import cli_explain as _cli_explain  # noqa: E402, F401
from chronoml import cli_loop as _cli_loop  # noqa: E402, F401
from chronoml import cli_monitor as _cli_monitor  # noqa: E402, F401

if __name__ == "__main__":
    # run the imported module's group, on which the side modules registered
    from chronoml.cli import main as _main

    _main()
