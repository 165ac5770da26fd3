"""CLI command for fairness: ``chronoml fairness ENDPOINT --attribute A``."""

from __future__ import annotations

from typing import Any

import click

from chronoml.cli.common import (
    _chronoml,
    _json,
    _num,
    cli,
    json_option,
    window_bounds,
    window_options,
)


@cli.command()
@click.argument("endpoint")
@click.option(
    "--attribute", required=True, help="The context key to group by (sex, age_band, region)."
)
@window_options(variant=True)
@click.option("--version", help="This model version [default: the window's most served].")
@click.option(
    "--positive-class", "positive_class", help="The class counted as positive (one-vs-rest)."
)
@json_option
@click.pass_context
def fairness(
    ctx: click.Context,
    endpoint: str,
    attribute: str,
    window: str,
    start: str | None,
    end: str | None,
    variant: str | None,
    version: str | None,
    positive_class: str | None,
    as_json: bool,
) -> None:
    """Fairness of ENDPOINT's labelled decisions across the groups of a context attribute.

    Per group: selection rate, true and false positive rates, accuracy and count,
    with intervals; between groups: demographic parity difference and ratio and
    equalized odds difference (fairlearn's figures).
    """
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.monitor.fairness import parse_class

    begin, stop = window_bounds(window, start, end)
    # a bad question (unknown attribute, no labels, empty window) ends as a clean error
    with _chronoml(ctx) as cm:
        rep = cm.fairness(
            endpoint,
            attribute,
            start=begin,
            end=stop,
            version=version,
            variant=variant,
            positive_class=parse_class(positive_class),
        ).as_dict()
    if as_json:
        _json(rep)
        return
    click.echo("\n".join(render(rep)))


def _rate(g: dict[str, Any], name: str) -> str:
    ci = g.get(f"{name}_ci") or {}
    lo, hi = ci.get("low"), ci.get("high")
    span = f" [{_num(lo, '.2f')}, {_num(hi, '.2f')}]" if lo is not None else ""
    return f"{_num(g.get(name), '.3f')}{span}"


def render(rep: dict[str, Any]) -> list[str]:
    """The report as lines for people."""
    w, m = rep["window"], rep["model"]
    lines = [
        f"{rep['endpoint']} v{m['version']} by {rep['attribute']}: {rep['rows']} labelled decisions "
        f"({rep['unlabelled']} unlabelled) from {w['from']} to {w['to']}",
        f"  {'group':<16} {'count':>7}  {'selection':<22} {'TPR':<22} {'FPR':<22} accuracy",
    ]
    for g in [*rep["groups"], rep["overall"]]:
        lines.append(
            f"  {str(g['group'])[:16]:<16} {g['count']:>7}  {_rate(g, 'selection_rate'):<22} "
            f"{_rate(g, 'true_positive_rate'):<22} {_rate(g, 'false_positive_rate'):<22} "
            f"{_rate(g, 'accuracy')}"
        )
    for name, d in rep["disparities"].items():
        ci = d.get("ci") or {}
        lines.append(
            f"  {name:<31} {_num(d.get('value'), '.3f')} "
            f"[{_num(ci.get('low'), '.3f')}, {_num(ci.get('high'), '.3f')}]"
        )
    lines += [f"  warning: {x}" for x in rep.get("warnings", [])]
    return lines
