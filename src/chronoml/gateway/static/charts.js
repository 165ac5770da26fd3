// chronoml's charts: time series through uPlot; heatmap, bars and the SHAP
// waterfall drawn on a canvas here (a few dozen lines each, no second library).
// Every chart marks its element with data-drawn="yes" once painted.
(function () {
  "use strict";
  const PALETTE = ["#0969da", "#bf3989", "#1a7f37", "#9a6700", "#8250df", "#cf222e"];
  const MARK = { deploy: "#0969da", canary: "#8250df", rollback: "#cf222e", alert: "#d4a72c",
                 job: "#57606a", verdict: "#1a7f37", promotion: "#1f883d", change: "#6e7781" };

  function data(id) { return JSON.parse(document.getElementById(id).textContent); }

  function canvas(el, w, h) {
    const c = document.createElement("canvas");
    const r = window.devicePixelRatio || 1;
    c.width = w * r; c.height = h * r; c.style.width = w + "px"; c.style.height = h + "px";
    el.appendChild(c);
    const g = c.getContext("2d");
    g.scale(r, r);
    g.font = "12px system-ui, sans-serif";
    return { c: c, g: g };
  }

  function width(el, most) { return Math.min(el.clientWidth || 900, most || 1100); }

  function empty(el, text) {
    const p = document.createElement("p");
    p.className = "muted empty"; p.textContent = text;
    el.appendChild(p);
    el.dataset.drawn = "empty";
  }

  // markers: vertical lines on a uPlot chart, coloured by kind
  function markerPlugin(markers) {
    return { hooks: { draw: [function (u) {
      const g = u.ctx;
      g.save();
      for (const m of markers) {
        const x = u.valToPos(m.x, "x", true);
        if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
        g.strokeStyle = MARK[m.kind] || MARK.change;
        g.lineWidth = 1.5 * (window.devicePixelRatio || 1);
        g.setLineDash([4, 3]);
        g.beginPath(); g.moveTo(x, u.bbox.top); g.lineTo(x, u.bbox.top + u.bbox.height); g.stroke();
      }
      g.restore();
    }] } };
  }

  function timeChart(el, opts) {
    const xs = opts.x;
    const has = opts.series.some((s) => s.values.some((v) => v !== null && v !== undefined));
    if (!xs.length || !has) { empty(el, opts.empty || "no data in this span"); return; }
    const series = [{}].concat(opts.series.map((s, i) => ({
      label: s.label, stroke: s.color || PALETTE[i % 6], width: 2, spanGaps: false,
      points: { show: xs.length < 60 },
    })));
    const scales = { x: { time: true, range: opts.range ? () => opts.range : undefined } };
    if (opts.yRange) scales.y = { range: opts.yRange };
    new uPlot({ title: opts.title, width: width(el), height: opts.height || 180, series: series,
                scales: scales, plugins: [markerPlugin(opts.markers || [])],
                axes: [{}, { label: opts.yLabel || "" }] },
              [xs].concat(opts.series.map((s) => s.values)), el);
    el.dataset.drawn = "yes";
  }

  // a strip of links above the charts, one per marker, placed on the same time axis
  function markerStrip(el, markers, from, to) {
    if (!markers.length) { empty(el, "no ledger events in this span"); return; }
    const span = Math.max(to - from, 1);
    for (const m of markers) {
      const a = document.createElement("a");
      a.className = "marker marker-" + m.kind;
      a.href = "#event-" + m.seq;
      a.title = m.label;
      a.textContent = m.kind[0].toUpperCase();
      a.style.left = (100 * (m.x - from) / span) + "%";
      a.style.background = MARK[m.kind] || MARK.change;
      el.appendChild(a);
    }
    el.dataset.drawn = "yes";
  }

  // 0 -> pale, 1 -> dark red; one scale for every cell
  function heat(v) {
    if (v === null || v === undefined) return "#f3f4f6";
    const t = Math.max(0, Math.min(1, v));
    const r = Math.round(255 - 80 * t), g = Math.round(247 - 220 * t), b = Math.round(236 - 210 * t);
    return "rgb(" + r + "," + g + "," + b + ")";
  }

  function heatmap(el, d, onPick) {
    const rows = d.features, cols = d.windows;
    if (!rows.length || !cols.some((w) => w.rows)) { empty(el, "no decisions with a reference profile in this span"); return; }
    const left = Math.min(180, 12 + 7 * Math.max.apply(null, rows.map((r) => r.length)));
    const W = width(el), cw = Math.max(8, Math.floor((W - left - 20) / cols.length));
    const ch = rows.length > 40 ? 9 : 16, top = 30, H = top + ch * rows.length + 46;
    const k = canvas(el, left + cw * cols.length + 20, H), g = k.g;
    g.fillStyle = "#57606a"; g.textBaseline = "middle";
    rows.forEach((f, i) => {
      if (ch >= 12 || i % 4 === 0) g.fillText(f, 4, top + ch * i + ch / 2);
      cols.forEach((w, j) => { g.fillStyle = heat(d.values[i][j]); g.fillRect(left + cw * j, top + ch * i, cw - 1, ch - 1); });
      g.fillStyle = "#57606a";
    });
    cols.forEach((w, j) => {
      if (!w.changed) return;
      const x = left + cw * j - 1;
      g.strokeStyle = "#0969da"; g.lineWidth = 2;
      g.beginPath(); g.moveTo(x, top - 6); g.lineTo(x, top + ch * rows.length); g.stroke();
      g.fillStyle = "#0969da"; g.fillText(w.version, x + 3, top - 12);
    });
    if (cols[0].version) { g.fillStyle = "#0969da"; g.fillText(cols[0].version, left, top - 12); }
    // the scale: one for the whole map
    const ly = top + ch * rows.length + 14;
    for (let i = 0; i <= 100; i++) { g.fillStyle = heat(i / 100); g.fillRect(left + i * 2, ly, 2, 10); }
    g.fillStyle = "#57606a";
    g.fillText("0 same", left, ly + 22); g.fillText("1 disjoint", left + 170, ly + 22);
    g.fillText(d.measure, left + 230, ly + 5);
    k.c.addEventListener("click", (ev) => {
      const r = k.c.getBoundingClientRect();
      const i = Math.floor((ev.clientY - r.top - top) / ch), j = Math.floor((ev.clientX - r.left - left) / cw);
      if (i >= 0 && i < rows.length && j >= 0 && j < cols.length && onPick) onPick(rows[i], cols[j]);
    });
    k.c.title = "features x windows; click a row to see its distributions";
    el.dataset.drawn = "yes";
  }

  // grouped bars on one shared scale: {labels, series: [{label, values}], max?, title}
  function bars(el, d) {
    const n = d.labels.length;
    if (!n) { empty(el, d.empty || "nothing to draw"); return; }
    const all = [].concat.apply([], d.series.map((s) => s.values)).filter((v) => v !== null);
    const max = d.max || Math.max(1e-12, Math.max.apply(null, all.map(Math.abs)));
    const left = Math.min(200, 14 + 7 * Math.max.apply(null, d.labels.map((l) => String(l).length)));
    const bh = 9, gap = 6, rowH = bh * d.series.length + gap, W = width(el, 720);
    const k = canvas(el, W, 34 + rowH * n + 8), g = k.g;
    g.fillStyle = "#1d232a"; g.fillText(d.title || "", 4, 12);
    d.series.forEach((s, si) => {
      g.fillStyle = PALETTE[si % 6]; g.fillRect(W - 170 + si * 85, 4, 10, 10);
      g.fillStyle = "#57606a"; g.fillText(String(s.label).slice(0, 11), W - 156 + si * 85, 13);
    });
    const plotW = W - left - 60;
    d.labels.forEach((l, i) => {
      const y = 28 + rowH * i;
      g.fillStyle = "#57606a"; g.textBaseline = "middle"; g.fillText(String(l), 4, y + rowH / 2 - gap / 2);
      d.series.forEach((s, si) => {
        const v = s.values[i];
        if (v === null || v === undefined) return;
        g.fillStyle = PALETTE[si % 6];
        g.fillRect(left, y + si * bh, Math.max(1, plotW * Math.abs(v) / max), bh - 1);
      });
    });
    g.fillStyle = "#57606a"; g.fillText("scale 0 to " + max.toPrecision(3), left, 30 + rowH * n);
    el.dataset.drawn = "yes";
  }

  // SHAP waterfall: from the base value, each feature's push, to the output
  function waterfall(el, e, most) {
    let items = Object.entries(e.contributions).sort((a, b) => Math.abs(b[1]) - Math.abs(a[1]));
    if (!items.length) { empty(el, "no contributions"); return; }
    most = most || 20;
    if (items.length > most) {
      const rest = items.slice(most - 1), sum = rest.reduce((s, kv) => s + kv[1], 0);
      items = items.slice(0, most - 1).concat([[rest.length + " other features", sum]]);
    }
    let acc = e.base_value, lo = acc, hi = acc;
    const steps = items.map((kv) => { const s = { f: kv[0], v: kv[1], from: acc }; acc += kv[1]; lo = Math.min(lo, acc); hi = Math.max(hi, acc); return s; });
    const left = 200, W = width(el, 860), bh = 18, H = 40 + bh * (steps.length + 1) + 20;
    const k = canvas(el, W, H), g = k.g, plotW = W - left - 90;
    const x = (v) => left + plotW * (v - lo) / Math.max(hi - lo, 1e-12);
    g.textBaseline = "middle";
    g.fillStyle = "#1d232a"; g.fillText("base " + e.base_value.toPrecision(4) + " → output " + acc.toPrecision(4) + " (" + e.output_scale + ")", 4, 12);
    steps.forEach((s, i) => {
      const y = 30 + bh * i;
      g.fillStyle = "#57606a"; g.fillText(s.f.slice(0, 28), 4, y + bh / 2);
      const a = x(s.from), b = x(s.from + s.v);
      g.fillStyle = s.v >= 0 ? "#cf222e" : "#0969da";
      g.fillRect(Math.min(a, b), y + 2, Math.max(1, Math.abs(b - a)), bh - 4);
      g.fillStyle = "#1d232a"; g.fillText((s.v >= 0 ? "+" : "") + s.v.toPrecision(3), Math.max(a, b) + 4, y + bh / 2);
    });
    const y = 30 + bh * steps.length;
    g.strokeStyle = "#1d232a"; g.beginPath(); g.moveTo(x(acc), 24); g.lineTo(x(acc), y + 4); g.stroke();
    g.fillStyle = "#57606a"; g.fillText("output " + acc.toPrecision(4), x(acc) + 4, y + 12);
    el.dataset.drawn = "yes";
  }

  window.cml = { data: data, timeChart: timeChart, markerStrip: markerStrip, heatmap: heatmap,
                 bars: bars, waterfall: waterfall, empty: empty, PALETTE: PALETTE };
})();
