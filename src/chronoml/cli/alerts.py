"""CLI commands for alert rules: ``chronoml alerts add|list|remove|load|outbox``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from chronoml.cli.common import Fail, _chronoml, _json, cli, json_option

if TYPE_CHECKING:
    from chronoml.domain.alerts import AlertRule, RuleError
    from chronoml.service import Chronoml

# where a field of a rule spec comes from on the command line
_OPTIONS = {
    "name": "NAME",
    "endpoint": "--endpoint",
    "metric": "--metric",
    "op": "--op",
    "threshold": "--threshold",
    "window": "--window",
    "cooldown": "--cooldown",
    "actions": "--webhook/--log/--ledger/--retrain",
    "url": "--webhook",
    "secret": "--secret",
    "job": "--retrain",
}


@cli.group()
def alerts() -> None:
    """Alert rules on monitored metrics: webhooks, log lines, ledger events."""


@alerts.command("add")
@click.argument("name")
@click.option("--endpoint", default="*", show_default=True, help="Endpoint to watch; * for all.")
@click.option(
    "--metric",
    required=True,
    help="dataset_drift, drifted_share, drift:FEATURE, prediction_drift, latency_p99_ms, "
    "latency_p50_ms, error_rate, quality:METRIC (accuracy, f1, roc_auc, rmse, ...), "
    "estimated:METRIC (accuracy, f1, roc_auc: CBPE, before labels), "
    "label_coverage.",
)
@click.option("--op", required=True, help="Comparison with the threshold: >, >=, <, <=, ==.")
@click.option("--threshold", required=True, help="The number the metric is compared with.")
@click.option("--window", help="Only windows of this length, e.g. 1h [default: any].")
@click.option(
    "--cooldown", default="0s", show_default=True, help="Stay quiet this long after resolving."
)
@click.option("--webhook", multiple=True, help="POST the alert as JSON here (repeatable).")
@click.option("--secret", help="Sign webhook bodies with HMAC-SHA256 using this secret.")
@click.option("--log", "log_line", is_flag=True, help="Write a log line on firing and resolving.")
@click.option("--ledger", is_flag=True, help="Record firing and resolving on the ledger.")
@click.option("--retrain", "jobs", multiple=True, help="Retraining job to start on firing.")
@json_option
@click.pass_context
def add(
    ctx: click.Context,
    name: str,
    endpoint: str,
    metric: str,
    op: str,
    threshold: str,
    window: str | None,
    cooldown: str,
    webhook: tuple[str, ...],
    secret: str | None,
    log_line: bool,
    ledger: bool,
    jobs: tuple[str, ...],
    as_json: bool,
) -> None:
    """Create or replace the alert rule NAME.

    Example: chronoml alerts add drift --endpoint churn --metric dataset_drift
    --op == --threshold 1 --window 1h --cooldown 30m --webhook https://hooks.example/ml
    --secret s3cret --ledger
    """
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.domain.alerts import RuleError
    from chronoml.monitor.alerts import AlertEngine

    try:
        value = float(threshold)
    except ValueError:
        raise Fail(f"--threshold must be a number, got {threshold!r}") from None
    if secret and not webhook:
        raise Fail("--secret signs webhooks: give --webhook URL too")
    actions: list[dict[str, Any]] = [
        {"type": "webhook", "url": url, **({"secret": secret} if secret else {})} for url in webhook
    ]
    if log_line:
        actions.append({"type": "log"})
    if ledger:
        actions.append({"type": "ledger"})
    actions += [{"type": "retrain", "job": job} for job in jobs]
    spec: dict[str, Any] = {
        "endpoint": endpoint,
        "metric": metric,
        "op": op,
        "threshold": value,
        "cooldown": cooldown,
        "actions": actions,
    }
    if window is not None:
        spec["window"] = window
    with _chronoml(ctx) as cm:
        try:
            rule = AlertEngine(cm.store).put(spec, name)
        except RuleError as exc:
            raise Fail(_cli_error(exc)) from None
    if as_json:
        _json(rule.to_dict(redact=True))
    else:
        click.echo(f"alert {rule.name}: {rule.describe()} -> {_actions(rule)}")


@alerts.command("list")
@json_option
@click.pass_context
def list_(ctx: click.Context, as_json: bool) -> None:
    """Every rule with its state per endpoint and variant (secrets hidden)."""
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.monitor.alerts import AlertEngine

    with _chronoml(ctx, create=False) as cm:
        rules = AlertEngine(cm.store).status()
    if as_json:
        _json(rules)
        return
    if not rules:
        click.echo("no alert rules")
    for r in rules:
        click.echo(f"{r['name']:<24} {'FIRING' if r['firing'] else 'ok':<7} {r['description']}")
        for s in r["states"]:
            on = s["endpoint"] + (f"/{s['variant']}" if s["variant"] else "")
            state = "FIRING" if s["firing"] else "cooldown" if s["in_cooldown"] else "ok"
            click.echo(f"  {on:<40} {state:<8} since {s['since']}  last value {s['last_value']}")


@alerts.command()
@click.argument("name")
@click.pass_context
def remove(ctx: click.Context, name: str) -> None:
    """Delete the alert rule NAME and its state."""
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.monitor.alerts import AlertEngine

    with _chronoml(ctx) as cm:
        gone = AlertEngine(cm.store).remove(name)
    if not gone:
        raise Fail(f"no alert rule named {name!r}")
    click.echo(f"removed alert {name}")


@alerts.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
def load(ctx: click.Context, path: Path) -> None:
    """Create or replace the rules of a TOML ([[rules]]) or JSON file, all or nothing."""
    with _chronoml(ctx) as cm:
        load_rules(cm, path)


@alerts.command()
@json_option
@click.pass_context
def outbox(ctx: click.Context, as_json: bool) -> None:
    """Webhook deliveries: pending and delivered counts, the latest errors."""
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.monitor import outbox as ob

    with _chronoml(ctx, create=False) as cm:
        st = ob.status(cm.store)
    if as_json:
        _json(st)
        return
    click.echo(
        f"{st['pending']} pending (oldest {st['oldest_pending'] or '-'}), "
        f"{st['delivered']} delivered (last {st['last_delivered'] or '-'})"
    )
    for e in st["errors"]:
        click.echo(
            f"  #{e['id']} {e['url']}: {e['attempts']} attempts, next {e['next_attempt_at']}: "
            f"{e['last_error']}"
        )


def load_rules(cm: Chronoml, path: Path) -> list[AlertRule]:
    """Upsert the rules of ``path`` (``chronoml alerts load``, ``server --alerts``)."""
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.domain.alerts import RuleError
    from chronoml.monitor.alerts import AlertEngine

    try:
        rules = AlertEngine(cm.store).load_file(path)
    except RuleError as exc:
        raise Fail(exc.message) from None
    names = ", ".join(r.name for r in rules)
    click.echo(f"loaded {len(rules)} alert rule(s) from {path}" + (f": {names}" if names else ""))
    return rules


def _actions(rule: AlertRule) -> str:
    return ", ".join(
        a.type + (f" {a.url}" if a.url else "") + (f" {a.job}" if a.job else "")
        for a in rule.actions
    )


def _cli_error(exc: RuleError) -> str:
    if exc.field is None:
        return exc.message
    option = _OPTIONS.get(exc.field.rpartition(".")[2], exc.field)
    return f"{option}: {exc.message}"
