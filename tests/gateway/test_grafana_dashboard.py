"""The shipped Grafana dashboard asks only for metrics a live server exports."""

from __future__ import annotations

import json
import re
import socket
from importlib import resources
from typing import Any

import httpx
from sklearn.datasets import load_breast_cancer

from access_support import token_for
from chronoml.gateway.server import BackgroundServer

X = load_breast_cancer(as_frame=True).frame.drop(columns=["target"])

# PromQL words that are not metric names
_WORDS = {
    "sum", "rate", "increase", "histogram_quantile", "by", "without", "avg", "max", "min",
    "count", "le", "and", "or", "unless", "on", "ignoring", "group_left", "group_right",
}  # fmt: skip


def _dashboard() -> dict[str, Any]:
    text = resources.files("chronoml.gateway").joinpath("static/grafana-dashboard.json")
    return dict(json.loads(text.read_text()))


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads."""
    bare = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    bare = re.sub(r"\b(by|without)\s*\([^)]*\)", "", bare)  # grouping labels
    bare = re.sub(r"\[[^\]]*\]", "", bare)  # range selectors
    words = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", bare))
    return {w for w in words if w not in _WORDS}


def exported(metrics_text: str) -> set[str]:
    """Every series name the exposition declares or carries, with the suffixes of its type."""
    names = set()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    for line in metrics_text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names |= {name + s for s in suffixes.get(kind, ("",))}
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def test_metric_names_parser() -> None:
    assert metric_names(
        'histogram_quantile(0.5, sum by (le, endpoint) (rate(a_bucket{s=~"5.."}[5m])))'
    ) == {"a_bucket"}


def test_every_panel_query_names_an_exported_metric(cm: Any, settings: Any, models: Any) -> None:
    dash = _dashboard()
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for topic in ("requests", "latency", "error", "batch", "commit"):
        assert topic in titles, topic
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = BackgroundServer(cm, "127.0.0.1", port)
    server.start()
    try:
        headers = token_for(settings)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers) as c:
            uri = f"models:/cancer/{models.linked_v1}"
            assert c.put("/v1/endpoints/cancer", json={"model_uri": uri}).status_code == 200
            rows = X.iloc[:4]
            body = {
                "dataframe_split": {"columns": list(rows.columns), "data": rows.values.tolist()}
            }
            for _ in range(3):
                assert c.post("/v1/endpoints/cancer/predict", json=body).status_code == 200
            assert c.get("/v1/decisions/nope").status_code == 404
            # a canary no model can pass, so the guardrail rolls it back
            canary = {"percent": 50, "max_p99_ms": 1e-6, "min_requests": 5}
            spec = {"model_uri": f"models:/cancer/{models.linked_v2}", "canary": canary}
            assert c.put("/v1/endpoints/cancer", json=spec).status_code == 200
            for i in range(300):
                c.post(
                    "/v1/endpoints/cancer/predict", json=body, headers={"X-Chronoml-Unit": f"u{i}"}
                )
                if "chronoml_canary_rollbacks_total{" in c.get("/metrics").text:
                    break
            text = c.get("/metrics").text
    finally:
        server.stop()
    have = exported(text)
    wanted = set().union(*(metric_names(e) for e in exprs))
    assert wanted and all(w.startswith("chronoml_") for w in wanted), wanted
    assert wanted <= have, sorted(wanted - have)
    # the traffic above shows in the series the main panels read
    for series in ("chronoml_requests_total", "chronoml_request_seconds_bucket",
                   "chronoml_http_errors_total", "chronoml_batch_rows_bucket",
                   "chronoml_log_commit_seconds_bucket", "chronoml_canary_rollbacks_total"):  # fmt: skip
        assert re.search(rf"^{series}\{{", text, re.M), series
