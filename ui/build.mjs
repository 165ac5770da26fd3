// Copies the chart libraries from node_modules into the Python package, so the
// web UI serves them itself: no CDN, nothing fetched when a page is shown.
// The files are copied byte for byte; tests/ui/test_ui_assets.py checks that
// each shipped file's version banner is the version package-lock.json pins.
import { copyFileSync, mkdirSync } from "node:fs";

const out = new URL("../src/chronoml/gateway/static/", import.meta.url);
const files = [
  ["uplot/dist/uPlot.iife.min.js", "uPlot.iife.min.js"],
  ["uplot/dist/uPlot.min.css", "uPlot.min.css"],
  ["chart.js/dist/chart.umd.min.js", "chart.umd.min.js"],
  ["chartjs-chart-matrix/dist/chartjs-chart-matrix.min.js", "chartjs-chart-matrix.min.js"],
];
mkdirSync(out, { recursive: true });
for (const [from, to] of files) {
  copyFileSync(new URL(`node_modules/${from}`, import.meta.url), new URL(to, out));
}
