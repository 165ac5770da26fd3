"""Global importance as one self-contained HTML page: inline SVG, no script, no network."""

from __future__ import annotations

from html import escape
from typing import Any

TOP = 20
_BAR_W = 420
_ROW_H = 22
_LABEL_W = 240


def render(report: dict[str, Any]) -> str:
    """The page for an importance report (``chronoml importance --html``)."""
    w = report["window"]
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Feature importance: {escape(report['endpoint'])}</title>",
        "<style>body{font:14px system-ui,sans-serif;margin:2em;color:#222}"
        "h1{font-size:1.4em}h2{font-size:1.1em;margin-top:2em}"
        ".meta{color:#555}.err{color:#a00}svg text{font:12px system-ui,sans-serif}</style>",
        "</head><body>",
        f"<h1>Feature importance on {escape(report['endpoint'])}</h1>",
        f'<p class="meta">Mean |SHAP| per feature over the decisions from {escape(w["from"])} '
        f"to {escape(w['to'])} ({w['rows']} decisions).</p>",
    ]
    if not report["versions"]:
        parts.append("<p>No decisions in this window.</p>")
    for v in report["versions"]:
        m = v["model"]
        parts.append(
            f"<h2>{escape(str(m['name']))} v{escape(str(m['version']))}</h2>"
            f'<p class="meta">{v["rows"]} decisions'
            + (f", {v['sampled']} explained" if "sampled" in v else "")
            + f"; artifact {escape(str(m['artifact_digest']))}</p>"
        )
        if "error" in v:
            parts.append(f'<p class="err">{escape(v["error"])}</p>')
            continue
        parts.append(
            f'<p class="meta">{escape(v["explainer"])}, output scale {escape(v["output_scale"])}'
            f", background {escape(v['background']['method'])}"
            + (f"; {escape(v['note'])}" if v.get("note") else "")
            + "</p>"
        )
        parts.append(_bars(v["features"][:TOP]))
        if len(v["features"]) > TOP:
            parts.append(f'<p class="meta">and {len(v["features"]) - TOP} more features</p>')
    parts.append("</body></html>")
    return "\n".join(parts)


def _bars(features: list[dict[str, Any]]) -> str:
    if not features:
        return "<p>No features.</p>"
    top = max(f["mean_abs_shap"] for f in features) or 1.0
    height = _ROW_H * len(features) + 10
    width = _LABEL_W + _BAR_W + 90
    rows = []
    for i, f in enumerate(features):
        y = i * _ROW_H + 5
        w = _BAR_W * f["mean_abs_shap"] / top
        rows.append(
            f'<text x="{_LABEL_W - 6}" y="{y + 15}" text-anchor="end">{escape(str(f["feature"]))}</text>'
            f'<rect x="{_LABEL_W}" y="{y + 3}" width="{w:.1f}" height="{_ROW_H - 6}" fill="#3b6ea8">'
            f"<title>{escape(str(f['feature']))}: mean |SHAP| {f['mean_abs_shap']:.6g}, "
            f"mean SHAP {f['mean_shap']:.6g}</title></rect>"
            f'<text x="{_LABEL_W + w + 6:.1f}" y="{y + 15}">{f["mean_abs_shap"]:.4g}</text>'
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="mean absolute SHAP value per feature">' + "".join(rows) + "</svg>"
    )
