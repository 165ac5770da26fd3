"""CLI command ``experiment``: the A/B analysis of an endpoint's variants."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from chronoml.cli.common import (
    Fail,
    _chronoml,
    _json,
    _num,
    cli,
    json_option,
    window_bounds,
    window_options,
)

if TYPE_CHECKING:
    pass


def _duration(text: str, option: str) -> int:
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.timeutil import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise Fail(f"{option}: {exc}") from None


# --- experiment ------------------------------------------------------------------


@cli.command()
@click.argument("endpoint")
@window_options()
@click.option(
    "--metric",
    default="accuracy",
    show_default=True,
    help="accuracy (a rate), abs_error, squared_error (means, lower is better), or label: "
    "the label itself, a business metric sent as feedback (a rate if 0/1, else a mean).",
)
@click.option(
    "--lower-is-better", is_flag=True, help="For --metric label: lower values are better."
)
@click.option("--alpha", default=0.05, show_default=True, type=click.FloatRange(0, 1))
@click.option(
    "--min-samples",
    default=100,
    show_default=True,
    type=click.IntRange(1),
    help="Labelled outcomes per variant before any verdict.",
)
@click.option(
    "--margin",
    type=click.FloatRange(0),
    help="Call it 'no difference' once the effect is known to lie within +/- this.",
)
@click.option(
    "--by",
    help="Also analyse each slice of this model input or context attribute (numbers with "
    "more than 10 values in --bins quantile bins); p-values Holm-adjusted over the slices.",
)
@click.option("--bins", default=4, show_default=True, type=click.IntRange(2, 100))
@json_option
@click.pass_context
def experiment(
    ctx: click.Context,
    endpoint: str,
    window: str,
    start: str | None,
    end: str | None,
    metric: str,
    lower_is_better: bool,
    alpha: float,
    min_samples: int,
    margin: float | None,
    by: str | None,
    bins: int,
    as_json: bool,
) -> None:
    """A/B analysis of ENDPOINT's variants over a window, from logged outcomes.

    Each challenger is compared with the champion (the answering variant that
    went live first) on the decisions made while both were live: sample sizes,
    effect with its confidence interval, the fixed-horizon p-value and the
    always-valid (sequential, safe to peek) p-value, a sample-ratio check
    against the ledger weights, the minimum detectable effect and a verdict.
    """
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.monitor.experiments import ExperimentError
    from chronoml.monitor.experiments import experiment as run
    from chronoml.monitor.slices import SliceError

    begin, stop = window_bounds(window, start, end)
    with _chronoml(ctx, create=False) as cm:
        cm.status(endpoint)  # unknown endpoint: a clean error
        try:
            report = run(
                cm.store,
                endpoint,
                begin,
                stop,
                metric=metric,
                alpha=alpha,
                min_samples=min_samples,
                equivalence_margin=margin,
                higher_is_better=False if lower_is_better else None,
                by=by,
                bins=bins,
            )
        except ExperimentError as exc:
            raise Fail(exc.message) from None
        except SliceError as exc:
            raise Fail(f"--{exc.field or 'by'}: {exc.message}") from None
    if as_json:
        _json(report)
        return
    click.echo(format_experiment(report))


def format_experiment(r: dict[str, Any]) -> str:
    m = r["metric"]
    lines = [
        f"{r['endpoint']}: {r['window']['from']} to {r['window']['to']}, metric {m['name']} "
        f"({'higher' if m['higher_is_better'] else 'lower'} is better), alpha {r['alpha']:g}",
        f"  sequential method: {r['sequential_method']}",
    ]
    if r.get("note"):
        lines.append(f"  {r['note']}")
    for s in r.get("skipped", []):
        role = "shadow" if s["shadow"] else "answering"
        lines.append(f"  {s['variant']} ({role}): not compared: {s['reason']}")
    for c in r["comparisons"]:
        a, b = c["control"], c["treatment"]
        lines.append(
            f"  {b['variant']} ({'shadow' if b['shadow'] else 'answering'}) vs champion "
            f"{a['variant']} [{c['design']}]"
        )
        lines.append(
            f"    A {a['variant']:<24} {a['labelled']:>6} outcomes of {a['decisions']} decisions"
        )
        lines.append(
            f"    B {b['variant']:<24} {b['labelled']:>6} outcomes of {b['decisions']} decisions"
        )
        ci, cs = c["confidence_interval"], c["confidence_sequence"]
        rel = c["relative_effect"]
        lines.append(
            f"    A {m['name']} {_num(a['estimate'])}, B {_num(b['estimate'])}: effect B-A "
            f"{_num(c['effect'])} (relative {'n/a' if rel is None else format(rel, '+.1%')}); "
            f"{c['test']}: p={_num(c['p_value'], '.3g')}, "
            f"{c['confidence_level']:.0%} CI [{_num(ci['low'])}, {_num(ci['high'])}]"
        )
        lines.append(
            f"    always-valid p={_num(c['always_valid_p_value'], '.3g')}, confidence sequence "
            f"[{_num(cs['low'])}, {_num(cs['high'])}]"
        )
        srm = c["srm"]
        lines.append(
            f"    sample ratio: observed {srm['observed'][0]}:{srm['observed'][1]}, expected "
            f"{srm['expected_shares'][0]:.3g}:{srm['expected_shares'][1]:.3g} "
            f"(p={_num(srm['p_value'], '.3g')}{', MISMATCH' if srm['mismatch'] else ''})"
        )
        lines.append(
            f"    minimum detectable effect now: {_num(c['mde'])} (fixed horizon), "
            f"{_num(c['mde_sequential'])} (sequential)"
        )
        lines.append(f"    verdict: {c['verdict']}: {c['reason']}")
        lines += _slice_lines(c.get("by"), m["name"])
    return "\n".join(lines)


def _slice_lines(sliced: dict[str, Any] | None, metric: str) -> list[str]:
    if not sliced:
        return []
    how = sliced["binning"]
    binned = f", {how['bins']} quantile bins" if how["kind"] == "quantile" else ""
    lines = [
        f"    by {sliced['attribute']} ({sliced['source']}{binned}); "
        f"p adjusted by {sliced['adjustment'].capitalize()} over the slices:"
    ]
    for s in sliced["slices"]:
        a, b, ci = s["control"], s["treatment"], s["confidence_interval"]
        mark = "  <- worst" if s["worst"] else ""
        sig = " significant" if s["significant"] else ""
        lines.append(
            f"      {s['slice']:<18} A {a['outcomes']:>6} {metric} {_num(a['estimate'])}, "
            f"B {b['outcomes']:>6} {_num(b['estimate'])}: effect {_num(s['effect'])} "
            f"CI [{_num(ci['low'])}, {_num(ci['high'])}], p={_num(s['p_value'], '.3g')}, "
            f"adjusted p={_num(s['p_value_adjusted'], '.3g')}{sig}{mark}"
        )
    return lines
