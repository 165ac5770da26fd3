// Copies the chart library from node_modules into the Python package, so the
// web UI serves it itself: no CDN, nothing fetched when a page is shown.
import { copyFileSync, mkdirSync } from "node:fs";

const out = new URL("../src/chronoml/gateway/static/", import.meta.url);
mkdirSync(out, { recursive: true });
for (const f of ["uPlot.iife.min.js", "uPlot.min.css"]) {
  copyFileSync(new URL(`node_modules/uplot/dist/${f}`, import.meta.url), new URL(f, out));
}
