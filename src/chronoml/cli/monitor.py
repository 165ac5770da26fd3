"""CLI commands for monitoring: ``chronoml feedback ...``, ``quality``, ``monitor ...``, ``drift``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from chronoml.cli.common import (
    Fail,
    _chronoml,
    _json,
    cli,
    json_option,
    remote,
    window_bounds,
    window_heading,
    window_options,
)


@cli.group()
def feedback() -> None:
    """Attach late-arriving labels to logged decisions."""


@feedback.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--update", is_flag=True, help="Allow changing existing labels (the old ones stay in history)."
)
@click.pass_context
def feedback_import(ctx: click.Context, path: Path, update: bool) -> None:
    """Import labels from a CSV or Parquet file: decision_id, label[, time]. All or nothing."""
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.monitor import feedback as fb

    try:
        labels = fb.read_file(path)
        with _chronoml(ctx) as cm:
            result = cm.feedback(
                [(x.decision_id, x.label, x.observed_at) for x in labels],
                update=update,
            )
    except fb.FeedbackError as exc:
        raise Fail(exc.message) from None
    click.echo(f"{result.labelled} labelled, {result.updated} updated from {path}")


@feedback.command("add")
@click.argument("decision_id")
@click.argument("label")
@click.option(
    "--update", is_flag=True, help="Change an existing label (the old one stays in history)."
)
@click.pass_context
def feedback_add(ctx: click.Context, decision_id: str, label: str, update: bool) -> None:
    """Label one decision. LABEL is read as JSON when it parses (1, 2.5, "yes"), else as text."""
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.monitor import feedback as fb

    try:
        value: Any = json.loads(label)
    except json.JSONDecodeError:
        value = label
    with remote(ctx) as server:
        if server is not None:
            body = {"decision_id": decision_id, "label": value, "update": update}
            got = server.call("POST", "/v1/feedback", body)
            click.echo("updated" if got.get("updated") else "labelled")
            return
    try:
        with _chronoml(ctx) as cm:
            result = cm.feedback([(decision_id, value, None)], update=update)
    except fb.FeedbackError as exc:
        raise Fail(exc.message) from None
    click.echo("updated" if result.updated else "labelled")


@cli.command()
@click.argument("endpoint")
@window_options(variant=True)
@click.option(
    "--estimate",
    is_flag=True,
    help="Estimate quality from the logged scores (CBPE), beside realized quality.",
)
@click.option("--reference-from", "reference_from", help="Start of the labelled reference window.")
@click.option("--reference-to", "reference_to", help="End of the labelled reference window.")
@click.option(
    "--by",
    help="Also break the figures down by this model input or context attribute "
    "(numbers with more than 10 values in --bins quantile bins).",
)
@click.option("--bins", default=4, show_default=True, type=click.IntRange(2, 100))
@json_option
@click.pass_context
def quality(
    ctx: click.Context,
    endpoint: str,
    window: str,
    start: str | None,
    end: str | None,
    variant: str | None,
    estimate: bool,
    reference_from: str | None,
    reference_to: str | None,
    by: str | None,
    bins: int,
    as_json: bool,
) -> None:
    """Quality of ENDPOINT's labelled decisions per variant and version, with label coverage.

    With --estimate, quality estimated before labels arrive: the scores of a
    labelled reference (--reference-from/--reference-to, default the version's
    labelled decisions of the 30 days before the window) are calibrated, and
    the window's accuracy, precision, recall, F1 and ROC AUC estimated.
    """
    begin, stop = window_bounds(window, start, end)
    if estimate and by:
        raise Fail("--by goes without --estimate for now")
    if estimate:
        _estimate(ctx, endpoint, begin, stop, variant, reference_from, reference_to, as_json)
        return
    if reference_from or reference_to:
        raise Fail("--reference-from/--reference-to go with --estimate")
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.monitor.slices import SliceError

    with _chronoml(ctx, create=False) as cm:
        try:
            rep = cm.quality(
                endpoint,
                start=begin,
                end=stop,
                variant=variant,
                by=by,
                bins=bins,
            )
        except SliceError as exc:
            raise Fail(f"--{exc.field or 'by'}: {exc.message}") from None
    if as_json:
        _json(rep)
        return
    click.echo("\n".join(window_heading(rep, rep["variants"])))
    for v in rep["variants"]:
        _quality_lines(v)


def _quality_lines(v: dict[str, Any]) -> None:
    """One variant's quality lines, and its slices when broken down."""
    cov = v["label_coverage"]
    click.echo(
        f"  {v['variant']} (v{v['model']['version']}): {v['labelled']}/{v['decisions']} labelled"
        f" ({0 if cov is None else cov:.0%})"
    )
    for k, val in v["metrics"].items():
        if isinstance(val, float):
            click.echo(f"    {k:<10} {val:.4f}")
    sliced = v.get("by")
    if not sliced:
        return
    how = sliced["binning"]
    binned = f", {how['bins']} quantile bins" if how["kind"] == "quantile" else ""
    click.echo(f"    by {sliced['attribute']} ({sliced['source']}{binned}):")
    for sl in sliced["slices"]:
        shown = ", ".join(
            f"{k} {val:.4f}" for k, val in sl["metrics"].items() if isinstance(val, float)
        )
        mark = "  <- worst" if sl["worst"] else ""
        click.echo(
            f"      {sl['slice']:<16} {sl['labelled']}/{sl['decisions']} labelled  {shown}{mark}"
        )


def _estimate(
    ctx: click.Context,
    endpoint: str,
    begin: int,
    stop: int,
    variant: str | None,
    reference_from: str | None,
    reference_to: str | None,
    as_json: bool,
) -> None:
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.timeutil import parse_time

    try:
        ref = [parse_time(t) if t else None for t in (reference_from, reference_to)]
    except ValueError as exc:
        raise Fail(f"--reference-from/--reference-to: {exc}") from None
    with _chronoml(ctx) as cm:
        rep = cm.estimated_quality(
            endpoint,
            start=begin,
            end=stop,
            variant=variant,
            reference_start=ref[0],
            reference_end=ref[1],
        )
    if as_json:
        _json(rep)
        return
    click.echo("\n".join(window_heading(rep, rep["variants"])))
    for v in rep["variants"]:
        r = v["reference"]
        click.echo(
            f"  {v['variant']} (v{v['model']['version']}): {v['scored']} scored, "
            f"{v['labelled']} labelled; calibrated on {r['rows']} labelled decisions "
            f"from {r['from']} to {r['to']}"
        )
        click.echo(f"    {'metric':<10} {'estimated':>9}  {'interval':<19} realized")
        realized = v["realized"] or {}
        for k, e in v["estimated"].items():
            span = f"[{_n(e['low'])}, {_n(e['high'])}]"
            click.echo(f"    {k:<10} {_n(e['value']):>9}  {span:<19} {_n(realized.get(k))}")


def _n(x: Any) -> str:
    return "n/a" if x is None else f"{x:.4f}"


@cli.group()
def monitor() -> None:
    """Scheduled monitoring: run a pass now, or read the monitoring history."""


@monitor.command("run")
@click.option(
    "--window", "window", default="1h", show_default=True, help="Window to compute, ending now."
)
@click.option("--no-mlflow", is_flag=True, help="Do not mirror the results to MLflow.")
@json_option
@click.pass_context
def monitor_run(ctx: click.Context, window: str, no_mlflow: bool, as_json: bool) -> None:
    """Compute the last window of every endpoint, store it, mirror it to MLflow."""
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.monitor.scheduler import Monitor
    from chronoml.timeutil import parse_duration

    with _chronoml(ctx) as cm:
        results = Monitor(
            cm, window_us=parse_duration(window), mirror_to_mlflow=not no_mlflow
        ).run_once()
    rows: list[dict[str, Any]] = [
        {
            "endpoint": r.endpoint,
            "variant": r.variant,
            "version": r.model_version,
            "metrics": r.metrics,
        }
        for r in results
    ]
    if as_json:
        _json(rows)
        return
    for r in rows:
        m = r["metrics"]
        keys = ("decisions", "dataset_drift", "drifted_share", "latency_p99_ms", "label_coverage")
        shown = ", ".join(f"{k}={m[k]:.4g}" for k in keys if m.get(k) is not None)
        click.echo(f"{r['endpoint']} {r['variant']} v{r['version']}: {shown}")


@monitor.command("history")
@click.argument("endpoint")
@click.option("--metric", help="Only this metric, e.g. drifted_share or quality:accuracy.")
@json_option
@click.pass_context
def monitor_history(ctx: click.Context, endpoint: str, metric: str | None, as_json: bool) -> None:
    """The stored monitoring results of ENDPOINT, oldest first."""
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.monitor.scheduler import history

    with _chronoml(ctx, create=False) as cm:
        cm.status(endpoint)
        rows = history(cm, endpoint, metric)
    if as_json:
        _json(rows)
        return
    for r in rows:
        value = "n/a" if r["value"] is None else f"{r['value']:.4g}"
        click.echo(
            f"{r['window']['to']}  {r['variant']:<20} v{r['model']['version']:<4} {r['metric']:<28} {value}"
        )


# --- drift ---------------------------------------------------------------------------


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
@click.option(
    "--by",
    help="Also report each slice of this model input or context attribute "
    "(numbers with more than 10 values in --bins quantile bins).",
)
@click.option("--bins", default=4, show_default=True, type=click.IntRange(2, 100))
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
    by: str | None,
    bins: int,
    as_json: bool,
) -> None:
    """Feature and prediction drift of ENDPOINT's decisions against the training data.

    Defaults follow Evidently's data-drift preset: normed Wasserstein (numeric)
    and Jensen-Shannon (categorical) at 0.1 for references over 1,000 rows, KS
    and chi-square at p < 0.05 below; dataset drift when half the features drift.
    """
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.monitor.reports import parse_overrides, to_html
    from chronoml.monitor.slices import SliceError

    begin, stop = window_bounds(window, start, end)
    with _chronoml(ctx, create=False) as cm:
        try:
            rep = cm.drift(
                endpoint,
                start=begin,
                end=stop,
                variant=variant,
                overrides=parse_overrides(list(methods), list(thresholds)),
                by=by,
                bins=bins,
            )
        except SliceError as exc:
            raise Fail(f"--{exc.field or 'by'}: {exc.message}") from None
    if html is not None:
        html.write_text(to_html(rep), encoding="utf-8")
        click.echo(f"wrote {html}", err=True)
    if as_json:
        _json(rep)
        return
    click.echo(format_drift(rep))


#: Below this many decisions a drift verdict rests on too few rows to mean much.
SMALL_SAMPLE = 30


def format_drift(rep: dict[str, Any]) -> str:
    """The drift report for people: each statistic says whether it is a p-value or a distance."""
    lines = window_heading(rep, rep["variants"])
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
        if v["rows"] < SMALL_SAMPLE:
            lines.append(
                f"    warning: only {v['rows']} decisions (fewer than {SMALL_SAMPLE}); "
                "the tests have little power and the verdicts are noise-prone"
            )
        for f in [*v["features"], *([v["prediction"]] if v["prediction"] else [])]:
            if f["status"] != "ok":
                lines.append(f"    {f['feature']:<28} {f['status']}")
                continue
            mark = "DRIFT" if f["drifted"] else "ok"
            # a p-value drifts when small, a distance when large: say which this is
            if f.get("is_p_value"):
                below = "<=" if f["method"] == "ks" else "<"
                stat = f"p={f['statistic']:.4g} (drift if {below} {f['threshold']:g})"
            else:
                stat = f"distance={f['statistic']:.4g} (drift if > {f['threshold']:g})"
            lines.append(f"    {f['feature']:<28} {f['method']:<14} {stat:<36} {mark}")
        lines += _slice_lines(v.get("by"))
    return "\n".join(lines)


def _slice_lines(sliced: dict[str, Any] | None) -> list[str]:
    """A variant's drift per slice: rows, drifted share and drifted features, worst marked."""
    if not sliced:
        return []
    how = sliced["binning"]
    binned = f", {how['bins']} quantile bins" if how["kind"] == "quantile" else ""
    lines = [f"    by {sliced['attribute']} ({sliced['source']}{binned}):"]
    for s in sliced["slices"]:
        share = "n/a" if s["drifted_share"] is None else f"{s['drifted_share']:.0%}"
        drifted = [f["feature"] for f in s["features"] if f.get("drifted")]
        pred = " prediction DRIFT" if (s["prediction"] or {}).get("drifted") else ""
        mark = "  <- worst" if s["worst"] else ""
        warn = f" ({s['warning']})" if s.get("warning") else ""
        lines.append(
            f"      {s['slice']:<20} {s['rows']:>7} decisions{warn}, {share} drifted"
            f"{': ' + ', '.join(drifted) if drifted else ''}{pred}{mark}"
        )
    return lines
