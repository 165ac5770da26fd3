"""The heatmap, bar and waterfall charts of ``charts.js`` on the shipped chart library, in
real Chromium: the files are loaded from the package, fed data, clicked and read back."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_support import ARGS, CHROMIUM, sync_api

STATIC = Path(__file__).resolve().parents[2] / "src" / "chronoml" / "gateway" / "static"
LIBS = ("uPlot.iife.min.js", "chart.umd.min.js", "chartjs-chart-matrix.min.js", "charts.js")

HEAT = {
    "measure": "Jensen-Shannon distance",
    "features": ["age", "income", "tenure"],
    "windows": [
        {"x": 0, "from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z", "rows": 9,
         "version": "a v1", "changed": False},
        {"x": 1, "from": "2026-01-02T00:00:00Z", "to": "2026-01-03T00:00:00Z", "rows": 9,
         "version": "a v1", "changed": False},
        {"x": 2, "from": "2026-01-03T00:00:00Z", "to": "2026-01-04T00:00:00Z", "rows": 9,
         "version": "a v2", "changed": True},
    ],
    "values": [[0.1, 0.2, 0.9], [0.0, None, 0.5], [0.3, 0.3, 0.3]],
}  # fmt: skip


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        p = browser.new_page(viewport={"width": 1100, "height": 900})
        requests: list[str] = []
        p.on("request", lambda r: requests.append(r.url))
        p.set_content('<div id="h"></div><div id="b"></div><div id="e"></div><div id="w"></div>')
        for name in LIBS:
            p.add_script_tag(path=str(STATIC / name))
        yield p
        p.screenshot(path=str(tmp_path / "kinds.png"), full_page=True)
        browser.close()
        assert requests == [], requests  # the libraries fetch nothing


def test_heatmap_cells_pick_their_feature_and_mark_the_version_change(page: Any) -> None:
    page.evaluate(
        "d => { window.picked = []; cml.heatmap(document.getElementById('h'), d,"
        " (f, w) => window.picked.push([f, w.from])); }",
        HEAT,
    )
    assert page.get_attribute("#h", "data-drawn") == "yes"
    chart = "Chart.getChart(document.querySelector('#h canvas'))"
    # one cell per feature and window, each coloured on the one scale of the map
    cells = page.evaluate(
        f"(() => {{ const m = {chart}.getDatasetMeta(0); const r = m.controller.chart.canvas"
        ".getBoundingClientRect(); return m.data.map((e) => ({ x: r.left + e.x + e.width / 2,"
        " y: r.top + e.y + e.height / 2, bg: e.options.backgroundColor,"
        " border: e.options.borderWidth })); })()"
    )
    assert len(cells) == 9
    assert cells[2]["bg"] == "rgb(183,49,47)"  # 0.9: near the dark end
    assert cells[4]["bg"] == "#f3f4f6"  # no data: grey, not "no drift"
    assert cells[3]["bg"] == "rgb(255,247,236)"  # 0: the pale end
    # the window where v2 took over has a left edge, the others none
    assert [c["border"] for c in cells[:3]] == [0, 0, {"left": 3}]
    ticks = page.evaluate(f"{chart}.scales.x.ticks.map((t) => t.label)")
    assert "a v2" in ticks[2] and "a v2" not in ticks[1]
    # a click on a cell picks its feature and window
    # (Chart.js handles pointer events on the next animation frame: wait for each)
    page.mouse.click(cells[5]["x"], cells[5]["y"])  # income, third window
    page.wait_for_function("window.picked.length === 1")
    page.mouse.click(cells[6]["x"], cells[6]["y"])  # tenure, first window
    page.wait_for_function("window.picked.length === 2")
    assert page.evaluate("window.picked") == [
        ["income", "2026-01-03T00:00:00Z"],
        ["tenure", "2026-01-01T00:00:00Z"],
    ]
    assert "1 disjoint" in page.inner_text("#h .heat-scale")


def test_bars_share_one_scale_and_empty_charts_say_why(page: Any) -> None:
    page.evaluate(
        "cml.bars(document.getElementById('b'), { title: 't', labels: ['x', 'y'],"
        " series: [{ label: 'a', values: [0.5, -2] }, { label: 'b', values: [1, null] }] })"
    )
    assert page.get_attribute("#b", "data-drawn") == "yes"
    chart = "Chart.getChart(document.querySelector('#b canvas'))"
    assert page.evaluate(f"[{chart}.scales.x.min, {chart}.scales.x.max]") == [0, 2]
    assert page.evaluate(f"{chart}.data.datasets.map((d) => d.data)") == [[0.5, 2], [1, None]]
    page.evaluate(
        "cml.bars(document.getElementById('e'), { labels: [], series: [], empty: 'none here' })"
    )
    assert page.get_attribute("#e", "data-drawn") == "empty"
    assert page.inner_text("#e") == "none here"
    assert page.locator("#e canvas").count() == 0


def test_waterfall_steps_from_the_base_to_the_output(page: Any) -> None:
    contributions = {f"f{i}": (-1) ** i * (i + 1) / 100 for i in range(25)}
    page.evaluate(
        "c => cml.waterfall(document.getElementById('w'), { contributions: c, base_value: 0.5,"
        " output_scale: 'probability' }, 20)",
        contributions,
    )
    assert page.get_attribute("#w", "data-drawn") == "yes"
    chart = "Chart.getChart(document.querySelector('#w canvas'))"
    spans = page.evaluate(f"{chart}.data.datasets[0].data")
    labels = page.evaluate(f"{chart}.data.labels")
    # 19 largest, the other 6 summed, then the output bar from the base
    assert len(spans) == 21 and labels[19].startswith("6 other features")
    assert labels[0].startswith("f24 ")
    assert spans[0][0] == pytest.approx(0.5)
    for prev, cur in itertools.pairwise(spans[:20]):
        assert cur[0] == pytest.approx(prev[1])  # each push starts where the last ended
    out = 0.5 + sum(contributions.values())
    assert spans[19][1] == pytest.approx(out)
    assert spans[20] == pytest.approx([0.5, out])
    colors = page.evaluate(f"{chart}.data.datasets[0].backgroundColor")
    assert colors[0] == "#cf222e" and colors[1] == "#0969da"  # f24 pushes up, f23 pulls down
