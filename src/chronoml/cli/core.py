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


def _where(s: Settings) -> str:
    """Where the store is, for messages: the database host, or the home folder."""
    return s.store_url.split("@")[-1] if s.store_url else str(s.home)


@contextmanager
def _chronoml(ctx: click.Context) -> Iterator[Chronoml]:
    """Open chronoml, translating its errors into clean CLI failures."""
    from chronoml.domain.snapshot import SnapshotError
    from chronoml.errors import StoreError
    from chronoml.registry import RegistryError
    from chronoml.service import Chronoml, NotFound, Refused

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


def window_heading(rep: dict[str, Any], groups: list[Any]) -> list[str]:
    """The first lines of a report over a window: its size and span, and a note if empty."""
    w = rep["window"]
    lines = [f"{rep['endpoint']}: {w['rows']} decisions from {w['from']} to {w['to']}"]
    if not groups:
        lines.append("  no decisions in this window")
    return lines


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
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="A name for the data set, e.g. customers.")
@json_option
@click.pass_context
def snapshot(ctx: click.Context, path: Path, name: str, as_json: bool) -> None:
    """Take an immutable, content-addressed snapshot of a CSV or Parquet file.

    Prints the snapshot id (sha256 over every value). Link it to a training
    run with chronoml.log_snapshot(snap) inside the run.
    """
    from chronoml.store import snapshots

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
        from chronoml.cli.explain import show_decision

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
    from chronoml.errors import StoreError
    from chronoml.store import Store

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


def main() -> None:
    import os

    # MLflow's telemetry is off for this process and everything it starts
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    os.environ["DO_NOT_TRACK"] = "true"
    cli(prog_name="chronoml")
