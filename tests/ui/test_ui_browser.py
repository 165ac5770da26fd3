"""The web UI in real headless Chromium against a real server on loopback."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser_support import ARGS, CHROMIUM, X, sync_api

from chronoml.auth.access import create_token
from chronoml.gateway.server import BackgroundServer


@pytest.fixture
def served(cm: Any, models: Any) -> Iterator[tuple[str, str, list[str]]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = BackgroundServer(cm, "127.0.0.1", port)
    server.start()
    base = f"http://127.0.0.1:{port}"
    admin, _ = create_token(cm.store, "ui-admin", "admin", by="tests")
    auth = {"Authorization": f"Bearer {admin}"}
    ids: list[str] = []
    try:
        with httpx.Client(base_url=base, headers=auth) as c:
            for v in (models.linked_v1, models.linked_v2):
                body: dict[str, Any] = {"model_uri": f"models:/cancer/{v}"}
                if v == models.linked_v2:
                    body["weight"] = 30
                assert c.put("/v1/endpoints/cancer", json=body).status_code == 200
                rows = X.iloc[:3]
                split = {"columns": list(rows.columns), "data": rows.values.tolist()}
                r = c.post("/v1/endpoints/cancer/predict", json={"dataframe_split": split})
                ids += r.json()["decision_ids"]
        yield base, admin, ids
    finally:
        server.stop()


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_pages_in_chromium(served: tuple[str, str, list[str]], tmp_path: Path) -> None:
    base, admin, _ = served
    external: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page()
        page.on(
            "request",
            lambda req: None if req.url.startswith(base) else external.append(req.url),
        )
        # a page without a session sends the browser to log in, then back
        page.goto(f"{base}/")
        assert page.url.startswith(f"{base}/ui/login")
        page.fill("#token", "cml_not-a-token")
        page.click("#login")
        page.locator("#error").wait_for(state="visible")  # the refusal comes back from a fetch
        page.fill("#token", admin)
        page.click("#login")
        page.wait_for_url(f"{base}/ui/")
        cookie = next(c for c in page.context.cookies() if c["name"] == "chronoml_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert "verified" in page.locator("#ledger").inner_text()
        page.screenshot(path=str(tmp_path / "overview.png"))

        page.click("a.endpoint")
        page.wait_for_url(re.compile(r".*/ui/endpoints/cancer.*"))
        page.wait_for_selector("#weights-chart canvas")
        live = page.locator("#live").inner_text()
        assert "70.0%" in live and "30.0%" in live, live
        page.screenshot(path=str(tmp_path / "endpoint.png"))

        # the as-of picker: the first event's time shows only the first version
        first_at = page.locator("#event-1 td").nth(1).inner_text()
        page.fill("#at", first_at)
        page.click("#show")
        page.wait_for_url(re.compile(r".*\?at=.*"))
        assert page.locator("#at-shown").inner_text() == first_at
        assert page.locator("#live tr").count() == 2  # header and one variant
        page.screenshot(path=str(tmp_path / "as-of.png"))

        page.goto(f"{base}/ui/endpoints/cancer")
        page.click("a.decision >> nth=0")
        page.wait_for_url(re.compile(r".*/ui/decisions/.*"))
        assert "artifact" in page.locator("#lineage").inner_text()
        page.click("#replay")
        page.wait_for_function("document.getElementById('replay-result').textContent.length > 0")
        page.screenshot(path=str(tmp_path / "decision.png"))

        for path, sel in (("/ui/audit", "#chain"), ("/ui/jobs", "#jobs")):
            page.goto(base + path)
            assert page.locator(sel).is_visible()
            page.screenshot(path=str(tmp_path / f"{path.strip('/').replace('/', '-')}.png"))
        browser.close()
    assert external == [], external
    assert len(list(tmp_path.glob("*.png"))) == 6
