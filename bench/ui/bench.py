"""The web UI with 1,000,000 logged decisions: server render time and chart draw time.

Goal (web UI issue): every page renders server-side in at most 300 ms (median)
and its charts draw in Chromium in at most 1 s, with a million decisions logged.

The store gets one endpoint, two versions (the second joins at 30% after three
days and becomes the only one after five), a week of 1M decisions with 30 float
inputs (drifting from day four), 10% of them labelled, compacted into blocks as
the server does. Then a real server on loopback serves the pages:

- cold start: a first server is started and the endpoint page asked for at
  once (it waits for the charts the server builds at start, then reads them);
  it is stopped, and a second one started on the same store, whose start-up
  build is timed until it is done;
- server: on that second server, each page fetched with httpx, the first time
  (after the start-up build) and then ``--repeats`` more times; the median of
  those is the number that counts (the timeline and drift grid keep what can
  no longer change, so later views only read the newest buckets);
- browser: Debian's chromium (``/usr/bin/chromium``) through Playwright loads
  each page and waits until every chart on it is drawn; the time is from
  navigation start to the last chart painted (so it includes the server's render).
  The endpoint page's experiment panel, which asks the REST API for its analysis
  after the page loaded, is timed on its own.

    .venv/bin/python bench/ui/bench.py [--rows 1000000] [--repeats 9]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
from sqlalchemy import insert

from chronoml.auth.access import create_token
from chronoml.domain import codec
from chronoml.domain import ledger as L
from chronoml.domain.explanation import Background, Explanation
from chronoml.domain.profiling import build_profile
from chronoml.gateway.server import BackgroundServer
from chronoml.ids import new_ids
from chronoml.service import Chronoml
from chronoml.settings import Settings
from chronoml.store import blocks, schema
from chronoml.store import decisions as D
from chronoml.store import explanations as SE
from chronoml.store import ledger as SL
from chronoml.timeutil import now_us

GOAL_SERVER_MS = 300
GOAL_BROWSER_MS = 1000
E = "churn"
COLS = [f"f{i}" for i in range(30)]
DAY = 86_400_000_000
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
CHARTS = {
    "endpoint": ["#weights-chart", "#requests-chart", "#latency-chart", "#quality-chart",
                 "#prediction-chart", "#heatmap", "#distribution"],
    "compare": ["#latency", "#drift"],
    "decision": ["#waterfall"],
}  # fmt: skip


def _ref(version: str) -> L.ModelRef:
    return L.ModelRef(
        name="churn",
        version=version,
        run_id=f"run{version}",
        artifact_digest=f"sha256:{int(version):064x}",
        artifact_uri=f"models:/churn/{version}",
        data_snapshot={"id": "sha256:" + "ab" * 32, "name": "customers", "rows": 20_000},
        code_version="0" * 40,
    )


def _deploy(ref: L.ModelRef, weight_bp: int | None) -> L.Change:
    v = L.Variant(name=f"churn-v{ref.version}", model=ref, weight=0, shadow=False)
    payload = {
        "variant": v.to_dict(),
        "weight_bp": weight_bp,
        "model_uri": ref.artifact_uri,
        "allow_unlinked_data": False,
    }
    return L.Change("deploy", E, "bench@example.com", payload)


def populate(cm: Chronoml, rows: int) -> tuple[float, str]:
    store, rng = cm.store, np.random.default_rng(0)
    end = now_us() - 5 * 60_000_000
    t0 = end - 7 * DAY
    ref_frame = pd.DataFrame(rng.normal(size=(20_000, 30)), columns=COLS)
    refs = [_ref("1"), _ref("2")]
    for r in refs:
        prof = build_profile(ref_frame, (ref_frame["f0"] > 0).astype(float).to_numpy())
        store.put_profile(
            r.artifact_digest, r.name, r.version, "sha256:" + "ab" * 32, prof.to_bytes()
        )
    e1 = SL.append(store, _deploy(refs[0], None), effective_at=t0, now=t0)
    e2 = SL.append(store, _deploy(refs[1], 3000), effective_at=t0 + 3 * DAY, now=t0 + 3 * DAY)
    e3 = SL.append(store, _deploy(refs[1], None), effective_at=t0 + 5 * DAY, now=t0 + 5 * DAY)
    sch = tuple((c, "float") for c in COLS)
    layout = codec.layout_id(sch)
    cm.layouts.ensure(layout, sch)
    ts_all = np.sort(rng.integers(t0 + 1, end, size=rows))
    started = time.perf_counter()
    first_id = ""
    for lo in range(0, rows, 50_000):
        ts = ts_all[lo : lo + 50_000]
        n = len(ts)
        shift = np.where(ts > t0 + 4 * DAY, 0.8, 0.0)[:, None]
        df = pd.DataFrame(rng.normal(size=(n, 30)) + shift, columns=COLS)
        nums, txts = codec.encode(df, sch)
        coin = rng.random(n)
        lat = rng.lognormal(1.0, 0.5, n)
        ids = new_ids(n)
        first_id = first_id or ids[0]
        out = []
        for i in range(n):
            t = int(ts[i])
            if t < e2.effective_at:
                version, seq = "1", e1.seq
            elif t < e3.effective_at:
                version, seq = ("2" if coin[i] < 0.3 else "1"), e2.seq
            else:
                version, seq = "2", e3.seq
            y = "1" if nums[i][0] > 0 else "0"
            out.append(
                D.DecisionRow(ids[i], t, E, f"churn-v{version}", "churn", version, seq, False,
                              f"u{i % 977}", ids[i], layout, nums[i], txts[i], y, float(y),
                              float(lat[i]))
            )  # fmt: skip
        for k in range(0, n, 256):  # group commits of the server's size (one evidence batch each)
            D.insert_many(store, out[k : k + 256])
        labelled = [
            {"decision_id": r.id, "label": r.output if rng.random() < 0.85 else "1",
             "label_num": None, "observed_at": r.ts, "recorded_at": r.ts, "actor": "bench"}
            for r in out[::10]
        ]  # fmt: skip
        with store.write() as conn:
            conn.execute(insert(schema.feedback), labelled)
    blocks.compact(store, upto=end)
    exp = Explanation(
        "shap.TreeExplainer", "probability", 0.5, {c: float(rng.normal()) / 30 for c in COLS},
        0.5, 1, Background("interventional", None, 100, 0),
    )  # fmt: skip
    total = exp.base_value + sum(exp.contributions.values())
    exp = Explanation(exp.explainer, exp.output_scale, 0.5, exp.contributions, total, 1,
                      exp.background)  # fmt: skip
    SE.put_many(store, [(first_id, exp)])
    return time.perf_counter() - started, first_id


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=9)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        # the server's own schedules (monitoring, checkpoints, retraining) are off: they
        # are not the UI's work, and at start-up they would compete with the pages timed
        settings = Settings.from_env(
            {},
            home=home / "home",
            mlflow_tracking_uri=f"sqlite:///{home / 'mlflow.db'}",
            monitor_interval_s=0.0,
            checkpoint_interval_s=0.0,
            retrain_interval_s=0.0,
        )
        cm = Chronoml.open(settings)
        took, decision = populate(cm, args.rows)
        print(f"populated {args.rows:,} decisions (10% labelled) in {took:.0f} s")
        token, _ = create_token(cm.store, "bench", "admin", by="bench")
        at_once = _first_view_at_start(cm, token)
        print(f"endpoint page asked for at once after a start: {at_once:.0f} ms")
        server, base = _serve(cm)
        warmer = server.app.state.gateway.ui_warmer
        warmer.done.wait(900)
        print(f"the start-up build of the endpoint's charts took {1000 * warmer.took_s:.0f} ms")
        pages = {
            "overview": "/ui/",
            "endpoint": f"/ui/endpoints/{E}",
            "compare": f"/ui/compare/{E}?a=1&b=2",
            "decision": f"/ui/decisions/{decision}",
            "audit": "/ui/audit",
            "jobs": "/ui/jobs",
        }
        try:
            server_times = _server(base, token, pages, args.repeats)
            browser_times = _browser(base, token, pages, max(3, args.repeats // 3))
        finally:
            server.stop()
            cm.close()
    print(f"{'page':10} {'first ms':>8} {'median ms':>10} {'max ms':>8} {'browser ms':>11}")
    for name in pages:
        cold, rest = server_times[name]
        b = browser_times.get(name)
        print(
            f"{name:10} {cold:8.0f} {statistics.median(rest):10.0f} {max(rest):8.0f} "
            f"{statistics.median(b) if b else float('nan'):11.0f}"
        )
    exp = browser_times.get("experiment")
    if exp:
        print(
            f"endpoint page until its experiment panel is filled: median {statistics.median(exp):.0f} ms"
        )
    missed = [
        n for n, (_, rest) in server_times.items() if statistics.median(rest) > GOAL_SERVER_MS
    ]
    missed += [n for n in CHARTS if statistics.median(browser_times[n]) > GOAL_BROWSER_MS]
    if missed:
        print(f"goal NOT met on: {', '.join(missed)}")
        sys.exit(2)
    print(f"goal met: every page <= {GOAL_SERVER_MS} ms median, charts <= {GOAL_BROWSER_MS} ms")


def _serve(cm: Chronoml) -> tuple[BackgroundServer, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = BackgroundServer(cm, "127.0.0.1", port)
    server.start()
    return server, f"http://127.0.0.1:{port}"


def _first_view_at_start(cm: Chronoml, token: str) -> float:
    """The endpoint page asked for the moment a fresh server is listening."""
    server, base = _serve(cm)
    try:
        with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=900) as c:
            t = time.perf_counter()
            r = c.get(f"{base}/ui/endpoints/{E}")
            took = (time.perf_counter() - t) * 1000
            assert r.status_code == 200, r.text[:300]
    finally:
        server.stop()
    return took


def _server(
    base: str, token: str, pages: dict[str, str], repeats: int
) -> dict[str, tuple[float, list[float]]]:
    out = {}
    with httpx.Client(
        base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=900
    ) as c:
        for name, path in pages.items():
            times = []
            for _ in range(repeats + 1):
                t = time.perf_counter()
                r = c.get(path)
                times.append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200, (path, r.status_code, r.text[:300])
            out[name] = (times[0], times[1:])
            print(
                f"  {name}: first {times[0]:.0f} ms, median {statistics.median(times[1:]):.0f} ms"
            )
    return out


def _browser(base: str, token: str, pages: dict[str, str], repeats: int) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright  # lazy: only the browser half needs it

    out: dict[str, list[float]] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        ctx = browser.new_context(
            viewport={"width": 1280, "height": 900},
            extra_http_headers={"Authorization": f"Bearer {token}"},
        )
        page = ctx.new_page()
        for name, path in pages.items():
            charts = CHARTS.get(name)
            if not charts:
                continue
            for _ in range(repeats):
                page.goto(base + path, wait_until="domcontentloaded")
                for sel in charts:
                    page.wait_for_selector(f"{sel}[data-drawn]", timeout=60_000)
                out.setdefault(name, []).append(float(page.evaluate("performance.now()")))
                if name == "endpoint":  # the experiment panel asks the REST API after load
                    page.wait_for_selector("#experiment[data-drawn]", timeout=120_000)
                    out.setdefault("experiment", []).append(
                        float(page.evaluate("performance.now()"))
                    )
        browser.close()
    return out


if __name__ == "__main__":
    main()
