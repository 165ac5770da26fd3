"""CLI commands for explanations, replay, backtests and global importance.

Registered on the main group by the last line of :mod:`chronoml.cli.common`. Only
click is imported here at module level, so ``chronoml --help`` stays fast.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from chronoml.cli.common import (
    Fail,
    _chronoml,
    _json,
    cli,
    json_option,
    window_bounds,
    window_heading,
    window_options,
)
from chronoml.cli.endpoints import format_decision

if TYPE_CHECKING:
    from chronoml.explain.models import Models
    from chronoml.service import Chronoml

TOP = 10


@contextmanager
def _audit(ctx: click.Context) -> Iterator[tuple[Chronoml, Models]]:
    """chronoml plus an archive of models, with this module's errors made clean."""
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.explain.models import Models
    from chronoml.explain.replay import ModelFailed
    from chronoml.registry.archive import DecisionModelError

    with _chronoml(ctx, create=False) as cm:
        try:
            yield cm, Models(cm)
        except (DecisionModelError, ModelFailed) as exc:
            raise Fail(str(exc)) from None


class _Bar:
    """A progress bar on stderr whose length is learnt once counting is done."""

    def __init__(self, label: str, enabled: bool) -> None:
        self.label = label
        self.enabled = enabled
        self.bar: Any = None

    def total(self, n: int) -> None:
        if self.enabled and n > 0:
            self.bar = click.progressbar(
                length=n, label=self.label, file=sys.stderr, show_pos=True, show_eta=True
            )
            self.bar.__enter__()

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


# --- decision ID --explain / --replay --------------------------------------------


def show_decision(
    ctx: click.Context, decision_id: str, *, explain: bool, replay: bool, as_json: bool
) -> None:
    """``chronoml decision ID`` with ``--explain`` and/or ``--replay``; exit 1 if a replay differs."""
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.explain.decisions import explain_decision
    from chronoml.explain.replay import replay_decision

    with _audit(ctx) as (cm, models):
        record = cm.decision(decision_id)
        d = record.as_dict()
        if explain:
            d["explanation"] = explain_decision(cm, models, decision_id)
        if replay:
            d["replay"] = replay_decision(cm, models, decision_id)
    if as_json:
        _json(d)
    else:
        lines = [format_decision(record)]
        if explain:
            lines.append(format_explanation(d["explanation"]))
        if replay:
            lines.append(format_replay(d["replay"]))
        click.echo("\n".join(lines))
    if replay and not d["replay"]["identical"]:
        sys.exit(1)


def format_explanation(e: dict[str, Any]) -> str:
    cls = f" (class {json.dumps(e['class'])})" if e.get("class") is not None else ""
    total = e["base_value"] + sum(e["contributions"].values())
    lines = [
        f"  explained {e['explainer']} on the {e['output_scale']} scale{cls}",
        f"            base {e['base_value']:.6g} + contributions = {total:.6g}"
        f" (model output {e['output_value']:.6g})",
    ]
    items = sorted(e["contributions"].items(), key=lambda kv: -abs(kv[1]))
    width = max((len(k) for k, _ in items[:TOP]), default=0)
    for k, v in items[:TOP]:
        lines.append(f"            {k:<{width}}  {v:+.6g}")
    if len(items) > TOP:
        lines.append(f"            and {len(items) - TOP} more features")
    bg = e["background"]
    where = f" from snapshot {bg['snapshot_id']}" if bg.get("snapshot_id") else ""
    size = f", {bg['rows']} rows (seed {bg['seed']})" if bg.get("rows") else ""
    lines.append(f"  background {bg['method']}{where}{size}")
    if e.get("note"):
        lines.append(f"  note      {e['note']}")
    return "\n".join(lines)


def format_replay(r: dict[str, Any]) -> str:
    m = r["model"]
    head = "identical" if r["identical"] else "DIFFERENT"
    line = (
        f"  replay    {head}: logged {json.dumps(r['original'])}, replayed "
        f"{json.dumps(r['replayed'])}"
    )
    if not r["identical"]:
        line += f", difference {json.dumps(r['difference'])}"
    return (
        line
        + f"\n            on {m['name']} v{m['version']}, artifact {m['artifact_digest']} (digest checked)"
    )


# --- chronoml replay ---------------------------------------------------------------


@cli.command("replay")
@click.argument("endpoint")
@window_options()
@click.option("--sample", type=int, help="Replay a random sample of N decisions instead of all.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sample.")
@json_option
@click.pass_context
def replay_cmd(
    ctx: click.Context,
    endpoint: str,
    window: str,
    start: str | None,
    end: str | None,
    sample: int | None,
    seed: int,
    as_json: bool,
) -> None:
    """Replay ENDPOINT's decisions of a time range on their archived models.

    Each version's artifact is digest-checked, then re-run on the logged
    inputs; every output must be identical to the logged one. Prints a
    summary; exits 1 if any decision differs or cannot be verified.
    """
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.explain.replay import replay_range

    begin, stop = window_bounds(window, start, end)
    bar = _Bar("replaying", not as_json)
    try:
        with _audit(ctx) as (cm, models):
            rep = replay_range(
                cm,
                models,
                endpoint,
                begin,
                stop,
                sample=sample,
                seed=seed,
                progress=bar.update,
                on_total=bar.total,
            )
    finally:
        bar.close()
    if as_json:
        _json(rep)
    else:
        click.echo(format_replay_range(rep))
    if not rep["all_identical"]:
        sys.exit(1)


def format_replay_range(rep: dict[str, Any]) -> str:
    w = rep["window"]
    what = "a sample of " if rep["sampled"] else ""
    lines = [
        f"{rep['endpoint']}: replayed {what}{rep['checked']} of {w['rows']} decisions from "
        f"{w['from']} to {w['to']} in {rep['seconds']:.1f} s"
    ]
    if rep["checked"] == 0:
        lines.append("  no decisions in this range")
        return "\n".join(lines)
    lines.append(
        f"  identical {rep['identical']}, different {rep['different']}, "
        f"unverifiable {rep['unverifiable']}"
    )
    for v in rep["by_version"]:
        m = v["model"]
        lines.append(
            f"  {m['name']} v{m['version']}: {v['checked']} checked, {v['identical']} identical, "
            f"{v['different']} different, {v['unverifiable']} unverifiable"
        )
        if "error" in v:
            lines.append(f"    {v['error']}")
    if rep["different"]:
        lines.append(f"  largest difference {rep['largest_difference']}")
        for ex in rep["examples"]:
            lines.append(
                f"    {ex['decision_id']}  logged {json.dumps(ex['original'])}  replayed "
                f"{json.dumps(ex['replayed'])}"
            )
    lines.append("ALL IDENTICAL" if rep["all_identical"] else "NOT ALL IDENTICAL")
    return "\n".join(lines)


# --- chronoml backtest ------------------------------------------------------------


@cli.command("backtest")
@click.argument("endpoint")
@click.argument("model_uri")
@click.option("--from", "start", required=True, help="Range start (ISO 8601).")
@click.option("--to", "end", help="Range end (ISO 8601) [default: now].")
@json_option
@click.pass_context
def backtest_cmd(
    ctx: click.Context, endpoint: str, model_uri: str, start: str, end: str | None, as_json: bool
) -> None:
    """What MODEL_URI would have decided on ENDPOINT's logged traffic from --from to --to.

    Runs the candidate on the logged inputs of the answered decisions and
    reports how often it decides differently, how its outputs shift, and,
    where labels arrived, the quality of both. Writes nothing to the
    decision log. A range with no decisions gives an empty report.
    """
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.explain.backtest import backtest
    from chronoml.timeutil import now_us, parse_time

    bar = _Bar("backtesting", not as_json)
    try:
        with _audit(ctx) as (cm, models):
            stop = parse_time(end) if end else now_us()
            rep = backtest(
                cm,
                models,
                endpoint,
                model_uri,
                parse_time(start),
                stop,
                progress=bar.update,
                on_total=bar.total,
            )
    finally:
        bar.close()
    if as_json:
        _json(rep)
    else:
        click.echo(format_backtest(rep))


def format_backtest(rep: dict[str, Any]) -> str:
    c = rep["candidate"]
    w = rep["window"]
    lines = [
        f"backtest of {c['name']} v{c['version']} on {rep['endpoint']}: {w['rows']} decisions "
        f"from {w['from']} to {w['to']}"
    ]
    if rep["empty"]:
        lines.append("  no decisions in this range: nothing to compare")
        return "\n".join(lines)
    ch = rep["changed"]
    lines.append(f"  would decide differently: {ch['rows']} ({ch['share']:.1%})")
    for v in rep["by_served_version"]:
        lines.append(
            f"    of those served by {v['served_by']}: {v['changed']} of {v['rows']} ({v['share']:.1%})"
        )
    o = rep["outputs"]
    if o["kind"] == "categorical":
        lines.append(
            f"  outputs: logged {_shares(o['logged'])}; candidate {_shares(o['candidate'])}; "
            f"total variation {o['total_variation']:.4f}"
        )
    elif o["kind"] == "numeric":
        lo, ca = o["logged"], o["candidate"]
        lines.append(
            f"  outputs: mean {lo['mean']:.6g} -> {ca['mean']:.6g}, p50 {lo['p50']:.6g} -> "
            f"{ca['p50']:.6g}; KS {o['ks_statistic']:.4f} (p {o['ks_pvalue']:.3g})"
        )
    q = rep["quality"]
    if q is None:
        lines.append("  quality: no labels in this range")
    elif q.get("metric"):
        lines.append(
            f"  quality on {q['labelled']} labelled decisions: {q['metric']} logged "
            f"{q['logged']:.4g}, candidate {q['candidate']:.4g}"
        )
    lines.append("  nothing was written to the decision log")
    return "\n".join(lines)


def _shares(d: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.1%}" for k, v in d.items())


# --- chronoml importance -----------------------------------------------------------


@cli.command("importance")
@click.argument("endpoint")
@window_options()
@click.option("--version", "version", help="Only this model version.")
@click.option(
    "--sample",
    type=int,
    help="Explain at most N decisions per version [default: 1000 for tree models, 200 otherwise].",
)
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the chart as a self-contained HTML file.",
)
@json_option
@click.pass_context
def importance_cmd(
    ctx: click.Context,
    endpoint: str,
    window: str,
    start: str | None,
    end: str | None,
    version: str | None,
    sample: int | None,
    html_path: Path | None,
    as_json: bool,
) -> None:
    """Global feature importance of ENDPOINT's models: mean |SHAP| per feature.

    Per model version, over the decisions of the window (sampled when there
    are many). With --html, writes an offline chart (inline SVG).
    """
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.explain.decisions import importance

    begin, stop = window_bounds(window, start, end)
    with _audit(ctx) as (cm, models):
        rep = importance(cm, models, endpoint, begin, stop, version=version, sample=sample)
    if html_path is not None:
        # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
        from chronoml.explain.importance_html import render

        html_path.write_text(render(rep), encoding="utf-8")
    if as_json:
        _json(rep)
        return
    click.echo(format_importance(rep))
    if html_path is not None:
        click.echo(f"chart written to {html_path}")


def format_importance(rep: dict[str, Any]) -> str:
    lines = window_heading(rep, rep["versions"])
    for v in rep["versions"]:
        m = v["model"]
        head = f"  {m['name']} v{m['version']}: {v['rows']} decisions"
        if "error" in v:
            lines.append(f"{head}: {v['error']}")
            continue
        lines.append(
            f"{head}, {v['sampled']} explained with {v['explainer']} ({v['output_scale']} scale)"
        )
        feats = v["features"][:TOP]
        top = max((f["mean_abs_shap"] for f in feats), default=0.0) or 1.0
        width = max((len(f["feature"]) for f in feats), default=0)
        for f in feats:
            bar = "#" * max(1, round(30 * f["mean_abs_shap"] / top))
            lines.append(f"    {f['feature']:<{width}}  {f['mean_abs_shap']:10.4g}  {bar}")
        if len(v["features"]) > TOP:
            lines.append(f"    and {len(v['features']) - TOP} more features")
    return "\n".join(lines)


@cli.command()
@click.argument("decision_id")
@click.option(
    "--explain", is_flag=True, help="Add its SHAP explanation (computed and stored if missing)."
)
@click.option(
    "--replay", is_flag=True, help="Re-run its archived model; exit 1 if the output differs."
)
@click.option(
    "--proof", is_flag=True, help="Its inclusion proof: leaf, audit paths, signed checkpoint."
)
@json_option
@click.pass_context
def decision(
    ctx: click.Context, decision_id: str, explain: bool, replay: bool, proof: bool, as_json: bool
) -> None:
    """A logged decision with its full lineage."""
    if proof:
        # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
        from chronoml.cli.audit import show_proof

        show_proof(ctx, decision_id, as_json)
        return
    if explain or replay:
        show_decision(ctx, decision_id, explain=explain, replay=replay, as_json=as_json)
        return
    with _chronoml(ctx, create=False) as cm:
        d = cm.decision(decision_id)
    if as_json:
        _json(d.as_dict())
        return
    click.echo(format_decision(d))
