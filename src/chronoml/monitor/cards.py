"""Model cards: what a served version is, what it was trained on, and how it has done.

A card gathers, for one version of an endpoint: the intended use as the user
gave it, the lineage (MLflow run, artifact digest, training snapshot and its
hash), when it went live, quality, fairness per context attribute and drift
since then, and the known limits those figures show. It renders as JSON,
Markdown and HTML, and is stored as artifacts of the version's MLflow run.
"""

from __future__ import annotations

import html
import logging
from typing import TYPE_CHECKING, Any

from chronoml.domain.ledger import ModelRef
from chronoml.errors import ChronomlError, NotFound
from chronoml.monitor.fairness import fairness
from chronoml.monitor.quality import quality
from chronoml.monitor.reports import endpoint_drift
from chronoml.store import ledger as SL
from chronoml.store import outcomes as O
from chronoml.timeutil import iso, now_us
from chronoml.window import Window

if TYPE_CHECKING:
    from chronoml.context import Context

FORMATS = ("json", "markdown", "html")
log = logging.getLogger("chronoml.cards")


def _served(ctx: Context, endpoint: str, version: str | None) -> tuple[Any, int]:
    """The version's model reference (default: what answers now) and when it went live."""
    found: dict[str, tuple[Any, int]] = {}
    for e in SL.history(ctx.store, endpoint):
        for v in e.state or ():
            found.setdefault(v.model.version, (v.model, e.effective_at))
    if not found:
        raise NotFound(f"nothing was ever live on {endpoint!r}")
    if version is None:
        answering = SL.state_at(ctx.store, endpoint, now_us()).answering
        if not answering:
            raise NotFound(f"nothing answers on {endpoint!r}: give --version")
        version = max(answering, key=lambda v: v.weight).model.version
    if version not in found:
        raise NotFound(f"version {version} never served on {endpoint!r}", "version")
    return found[version]


def build_card(
    ctx: Context,
    endpoint: str,
    version: str | None = None,
    *,
    intended_use: str | None = None,
    served: tuple[Any, int] | None = None,
) -> dict[str, Any]:
    """The card of ``version`` of ``endpoint`` (default: the version answering now).

    ``served`` (its model reference and since when it is live) is for a version about to
    go live, which the ledger does not show yet.
    """
    ref, since = served or _served(ctx, endpoint, version)
    if intended_use is None:
        intended_use = ctx.registry.intended_use(ref)
    end = max(now_us(), since + 1)
    limits: list[str] = []
    q = quality(ctx.store, endpoint, since, end)
    mine = [v for v in q.variants if v.model.version == ref.version]
    labelled = sum(v.labelled for v in mine)
    if not labelled:
        limits.append("no labelled decision since it went live: its quality is not known")
    attrs = sorted(
        {
            k
            for c in O.outcomes(ctx.store, endpoint, since, end, version=ref.version).context
            for k in c
        }
    )
    fair: dict[str, Any] = {}
    for a in attrs:
        try:
            rep = fairness(ctx.store, endpoint, a, since, end, version=ref.version)
        except ChronomlError as exc:
            fair[a] = {"error": exc.message}
            continue
        keep = ("count", "selection_rate", "true_positive_rate", "false_positive_rate", "accuracy")
        fair[a] = {
            "groups": {g["group"]: {k: g[k] for k in keep} for g in rep.report["groups"]},
            "disparities": {k: d["value"] for k, d in rep.disparities.items()},
        }
        limits += rep.warnings
    if not attrs:
        limits.append("its decisions carry no context: fairness across groups is not measured")
    drift = endpoint_drift(ctx.store, ctx.layouts, endpoint, Window(since, end))
    dv = [v.as_dict() for v in drift.variants if v.model.version == ref.version]
    drift_part = [
        {
            "variant": v["variant"],
            "rows": v["rows"],
            "dataset_drift": v.get("dataset_drift"),
            "drifted_share": v.get("drifted_share"),
            "multivariate_drifted": (v.get("multivariate") or {}).get("drifted"),
            "error": v.get("error"),
        }
        for v in dv
    ]
    if any(d["dataset_drift"] or d["multivariate_drifted"] for d in drift_part):
        limits.append("its inputs have drifted from the training data since it went live")
    if O.classes_of(ctx.store, ref.name, ref.version) is None:
        limits.append("it logs no class scores: ROC AUC and estimated quality are unavailable")
    return {
        "endpoint": endpoint,
        "model": {"name": ref.name, "version": ref.version, "run_id": ref.run_id},
        "artifact_digest": ref.artifact_digest,
        "intended_use": intended_use or "not given",
        "training_data": dict(ref.data_snapshot) if ref.data_snapshot else None,
        "live_since": iso(since),
        "as_of": iso(end),
        "quality": [
            {
                "variant": v.variant,
                "decisions": v.decisions,
                "labelled": v.labelled,
                "metrics": dict(v.metrics),
            }
            for v in mine
        ],
        "fairness": fair,
        "drift": drift_part,
        "known_limits": limits,
    }


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def to_markdown(card: dict[str, Any]) -> str:
    """The card as Markdown."""
    m = card["model"]
    snap = card["training_data"] or {}
    lines = [
        f"# Model card: {m['name']} v{m['version']} on {card['endpoint']}",
        "",
        f"- Intended use: {card['intended_use']}",
        f"- MLflow run: {m['run_id']}; artifact digest `{card['artifact_digest']}`",
        f"- Training snapshot: {snap.get('name', 'unknown')} `{snap.get('id', 'not linked')}`"
        f" ({snap.get('rows', '?')} rows)",
        f"- Live since {card['live_since']}; figures as of {card['as_of']}",
        "",
        "## Quality",
    ]
    for q in card["quality"]:
        shown = ", ".join(f"{k} {_fmt(v)}" for k, v in q["metrics"].items() if isinstance(v, float))
        lines.append(f"- {q['variant']}: {q['labelled']}/{q['decisions']} labelled; {shown}")
    lines += ["", "## Fairness"]
    for a, f in card["fairness"].items():
        if "error" in f:
            lines.append(f"- {a}: {f['error']}")
            continue
        gaps = ", ".join(f"{k} {_fmt(v)}" for k, v in f["disparities"].items())
        lines.append(f"- {a}: {gaps}")
        for g, figs in f["groups"].items():
            lines.append(f"  - {g}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in figs.items()))
    lines += ["", "## Drift since it went live"]
    for d in card["drift"]:
        lines.append(
            f"- {d['variant']}: {d['rows']} decisions, dataset drift {d['dataset_drift']}, "
            f"drifted share {_fmt(d['drifted_share'])}, multivariate {d['multivariate_drifted']}"
        )
    lines += ["", "## Known limits"] + [f"- {x}" for x in card["known_limits"] or ["none seen"]]
    return "\n".join(lines) + "\n"


def to_html(card: dict[str, Any]) -> str:
    """The card as a self-contained HTML page (its Markdown lines, escaped)."""
    body = []
    for line in to_markdown(card).splitlines():
        text = html.escape(line.lstrip("#- ").strip())
        if line.startswith("# "):
            body.append(f"<h1>{text}</h1>")
        elif line.startswith("## "):
            body.append(f"<h2>{text}</h2>")
        elif line.strip():
            body.append(f"<p>{text}</p>")
    title = html.escape(f"{card['model']['name']} v{card['model']['version']}")
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )


def store_card(ctx: Context, card: dict[str, Any]) -> list[str]:
    """Log the card (JSON, Markdown, HTML) as artifacts of the version's MLflow run."""
    run_id = card["model"]["run_id"]
    if not run_id:
        return []
    return ctx.registry.log_card(run_id, card["endpoint"], card, to_markdown(card), to_html(card))


def stored_card(ctx: Context, endpoint: str, version: str | None = None) -> dict[str, Any] | None:
    """The card last stored for ``version`` of ``endpoint`` (default: the one answering now),
    or None when none was stored."""
    ref, _ = _served(ctx, endpoint, version)
    if not ref.run_id:
        return None
    return ctx.registry.read_card(ref.run_id, endpoint)


def card_at_deploy(ctx: Context, endpoint: str, ref: ModelRef, at: int) -> dict[str, Any]:
    """Build and store the card of ``ref`` as it goes live on ``endpoint``, for the deploy's
    ledger event: where it was stored, or why it could not be. Never raises: a card that
    cannot be written must not stop a deploy, only be reported."""
    try:
        try:
            served = _served(ctx, endpoint, ref.version)  # already live here: a promotion
        except NotFound:
            served = (ref, at)
        card = build_card(ctx, endpoint, ref.version, served=served)
        if not ref.run_id:
            return {"stored": [], "error": "the version has no MLflow run to store it in"}
        return {"run_id": ref.run_id, "stored": store_card(ctx, card)}
    except Exception as exc:  # the deploy goes on; the event says why there is no card
        log.warning("model card of %s v%s on %s: %s", ref.name, ref.version, endpoint, exc)
        return {"stored": [], "error": f"{type(exc).__name__}: {exc}"[:500]}
