"""The UI's charts, compare page, decision waterfall, jobs and audit pages in real Chromium."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser_support import ARGS, CHROMIUM, X, sync_api
from sklearn.datasets import load_breast_cancer

from chronoml.auth.access import create_token
from chronoml.domain.retraining import DataSource, Entrypoint, RetrainConfig
from chronoml.gateway.server import BackgroundServer
from chronoml.store import jobs as J
from chronoml.store import snapshots

EXTERNAL = re.compile(r"""(?:src|href|action)\s*=\s*["']?\s*(?:https?:)?//""", re.I)


@pytest.fixture
def served(cm: Any, models: Any) -> Iterator[dict[str, Any]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # the training snapshot is in this store, so each deploy builds its reference profile
    data = X.assign(target=load_breast_cancer().target)
    assert snapshots.take(cm.store, data, "cancer").id == models.snapshot_id
    server = BackgroundServer(cm, "127.0.0.1", port)
    server.start()
    base = f"http://127.0.0.1:{port}"
    admin, _ = create_token(cm.store, "ui-admin", "admin", by="tests")
    viewer, _ = create_token(cm.store, "ui-viewer", "viewer", by="tests")
    ids: list[str] = []
    try:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {admin}"}) as c:
            # v1 answers training-like rows, then v2 replaces it and answers shifted ones
            for v, rows in (
                (models.linked_v1, X.iloc[:40]),
                (models.linked_v2, X.iloc[40:100] * 3),
            ):
                r = c.put("/v1/endpoints/cancer", json={"model_uri": f"models:/cancer/{v}"})
                assert r.status_code == 200, r.text
                split = {"columns": list(rows.columns), "data": rows.values.tolist()}
                r = c.post("/v1/endpoints/cancer/predict", json={"dataframe_split": split})
                assert r.status_code == 200, r.text
                ids += r.json()["decision_ids"]
            for i in ids[:30]:
                assert c.post("/v1/feedback", json={"decision_id": i, "label": 1}).status_code < 300
        cfg = RetrainConfig(
            endpoint="cancer",
            entrypoint=Entrypoint("callable", "train:main", {}),
            data=DataSource(path="fresh.csv", name="fresh"),
        )
        job, _ = J.enqueue(cm.store, cfg, {"reason": "drift"})
        with cm.store.write() as conn:
            J.step_in(conn, job.id, "snapshot", "failed", {"error": "no such file"})
            J.update_in(conn, job.id, None, status="failed", log="reading fresh.csv\nno such file")
        yield {"base": base, "admin": admin, "viewer": viewer, "ids": ids, "job": job.id}
    finally:
        server.stop()


def _login(page: Any, base: str, token: str) -> None:
    page.goto(f"{base}/ui/login")
    page.fill("#token", token)
    page.click("#login")
    page.wait_for_url(f"{base}/ui/")


def _drawn(page: Any, sel: str, timeout: float = 15_000, *, canvas: bool = True) -> str:
    """Wait until the chart in ``sel`` painted (or said why it is empty); returns which."""
    page.wait_for_selector(f"{sel}[data-drawn]", timeout=timeout)
    state = str(page.get_attribute(sel, "data-drawn"))
    if state == "yes" and canvas:
        box = page.locator(f"{sel} canvas").first.bounding_box()
        assert box is not None and box["width"] > 50 and box["height"] > 20, (sel, box)
    return state


def _no_external(html: str, where: str) -> None:
    assert not EXTERNAL.search(html), f"{where} references an external URL"


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_charts_compare_decision_jobs_audit(served: dict[str, Any], tmp_path: Path) -> None:
    base = served["base"]
    external: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("request", lambda r: None if r.url.startswith(base) else external.append(r.url))
        _login(page, base, served["admin"])

        page.goto(f"{base}/ui/endpoints/cancer")
        for sel in ("#requests-chart", "#latency-chart", "#quality-chart", "#heatmap"):
            assert _drawn(page, sel) == "yes", sel
        assert _drawn(page, "#prediction-chart") == "yes"
        # no monitoring window ran: the error chart says so instead of drawing nothing
        assert _drawn(page, "#errors-chart") == "empty"
        assert "monitor" in page.locator("#errors-chart").inner_text()
        assert _drawn(page, "#distribution") == "yes"
        assert page.locator("#dist-select option").count() == len(X.columns) + 1
        # the experiment panel answers: a comparison or the reason there is none
        assert _drawn(page, "#experiment", canvas=False) in {"yes", "empty"}
        assert page.locator("#experiment").inner_text().strip()
        _no_external(page.content(), "endpoint page")
        page.screenshot(path=str(tmp_path / "charts.png"), full_page=True)

        total = "cml.data('charts-data').series.requests.reduce((a, b) => a + b)"
        assert page.evaluate(total) == len(served["ids"])
        # the shifted half drifts: the heatmap's data ranks features far from 0
        drift = page.evaluate("cml.data('charts-data').drift")
        top = max(v for row in drift["values"] for v in row if v is not None)
        assert 0.3 < top <= 1.0, top
        # markers link to their events
        markers = page.locator("#markers a.marker")
        assert markers.count() >= 2
        for i in range(markers.count()):
            href = markers.nth(i).get_attribute("href")
            assert href is not None and re.fullmatch(r"#event-\d+", href)
            assert page.locator(href).count() == 1, href
        markers.last.click(force=True)
        assert page.url.endswith(str(markers.last.get_attribute("href")))

        # the as-of picker: at the first event nothing had been decided yet
        first_at = page.locator("#event-1 td").nth(1).inner_text()
        page.fill("#at", first_at)
        page.click("#show")
        page.wait_for_url(re.compile(r".*\?at=.*"))
        assert page.evaluate(total) == 0
        assert _drawn(page, "#latency-chart") == "empty"
        shown = page.evaluate("Date.parse(document.getElementById('at-shown').textContent) / 1000")
        assert abs(page.evaluate("cml.data('charts-data').to") - shown) < 0.001

        # compare: both versions on one page, charts on shared scales
        page.goto(f"{base}/ui/endpoints/cancer")
        page.click("#compare-link")
        page.wait_for_url(re.compile(r".*/ui/compare/cancer.*"))
        assert page.locator("#summary tr").count() == 3
        for sel in ("#latency", "#drift"):
            assert _drawn(page, sel) == "yes", sel
        state = _drawn(page, "#importance", timeout=60_000)
        assert state == "yes", page.locator("#importance").inner_text()
        _no_external(page.content(), "compare page")
        page.screenshot(path=str(tmp_path / "compare.png"), full_page=True)

        # a decision: the SHAP waterfall, the proof status, the replay button
        page.goto(f"{base}/ui/decisions/{served['ids'][0]}")
        assert _drawn(page, "#waterfall", timeout=60_000) == "yes"
        assert page.locator("#proof").inner_text().strip()
        assert page.locator("#replay").is_visible()
        assert page.locator("#inputs th").count() == len(X.columns)
        page.screenshot(path=str(tmp_path / "decision.png"), full_page=True)

        page.goto(f"{base}/ui/jobs")
        detail = page.locator(f"#job-{served['job']}-detail")
        assert "no such file" in detail.locator("pre.log").inner_text()
        assert "snapshot" in detail.locator("table.steps").inner_text()
        page.click(f"#job-{served['job']} a >> nth=0")
        assert page.url.endswith(f"#job-{served['job']}-detail")
        page.screenshot(path=str(tmp_path / "jobs.png"), full_page=True)

        # the decision page's read of inputs is in the audit page's read log
        page.goto(f"{base}/ui/audit")
        reads = page.locator("#reads").inner_text()
        assert served["ids"][0] in reads and "ui-admin" in reads
        assert page.locator("#checkpoints").is_visible()
        _no_external(page.content(), "audit page")
        page.screenshot(path=str(tmp_path / "audit.png"), full_page=True)

        # a viewer sees the decision without its inputs and without a replay button
        viewer = browser.new_page()
        _login(viewer, base, served["viewer"])
        viewer.goto(f"{base}/ui/decisions/{served['ids'][0]}")
        assert "hidden" in viewer.locator("#inputs").inner_text()
        assert viewer.locator("#replay").count() == 0
        assert viewer.locator("#replay-hidden").is_visible()
        viewer.screenshot(path=str(tmp_path / "decision-viewer.png"), full_page=True)
        browser.close()
    assert external == [], external
    assert len(list(tmp_path.glob("*.png"))) == 6


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_compare_and_window_refuse_bad_queries(served: dict[str, Any]) -> None:
    auth = {"Authorization": f"Bearer {served['admin']}"}
    with httpx.Client(base_url=served["base"], headers=auth) as c:
        r = c.get("/ui/compare/cancer", params={"a": "1", "b": "999"})
        assert r.status_code == 400 and r.json()["error"]["field"] == "b"
        r = c.get("/ui/endpoints/cancer", params={"window": "soon"})
        assert r.status_code == 400 and r.json()["error"]["field"] == "window"
        assert c.get("/ui/compare/nope").status_code == 404
        viewer = {"Authorization": f"Bearer {served['viewer']}"}
        assert c.get("/ui/compare/cancer", headers=viewer).status_code == 200
