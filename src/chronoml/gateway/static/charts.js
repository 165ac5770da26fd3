// chronoml's charts: time series through uPlot; the drift heatmap (with the
// chartjs-chart-matrix plugin), the bar charts and the SHAP waterfall (floating
// bars) through Chart.js. Every chart marks its element with data-drawn="yes"
// once painted, or data-drawn="empty" with a sentence saying why it has nothing.
(function () {
  "use strict";
  const PALETTE = ["#0969da", "#bf3989", "#1a7f37", "#9a6700", "#8250df", "#cf222e"];
  const MARK = { deploy: "#0969da", canary: "#8250df", rollback: "#cf222e", alert: "#d4a72c",
                 job: "#57606a", verdict: "#1a7f37", promotion: "#1f883d", change: "#6e7781" };

  function data(id) { return JSON.parse(document.getElementById(id).textContent); }

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

  // a Chart.js chart in a box of the given height (its width follows the page);
  // no animation, so the chart is painted when the constructor returns
  function chart(el, height, most, config) {
    const box = document.createElement("div");
    box.style.position = "relative"; box.style.height = height + "px";
    if (most) box.style.maxWidth = most + "px";
    const c = document.createElement("canvas");
    box.appendChild(c); el.appendChild(box);
    config.options = Object.assign({ animation: false, responsive: true, maintainAspectRatio: false,
                                     font: { family: "system-ui, sans-serif", size: 12 } }, config.options);
    const made = new Chart(c, config);
    el.dataset.drawn = "yes";
    return made;
  }

  function title(text) { return { display: !!text, text: text || "", align: "start", color: "#1d232a" }; }

  function short(iso) { return String(iso || "").replace("T", " ").slice(5, 16); }

  // features x windows; a window where another version took over has a blue left
  // edge and the version on its axis label; one colour scale for every cell
  function heatmap(el, d, onPick) {
    const rows = d.features, cols = d.windows;
    if (!rows.length || !cols.some((w) => w.rows)) { empty(el, "no decisions with a reference profile in this span"); return; }
    const cells = [];
    rows.forEach((f, i) => cols.forEach((w, j) => cells.push({ x: j, y: i, v: d.values[i][j] })));
    const ch = rows.length > 40 ? 9 : 16;
    const label = (j) => (j === 0 || cols[j].changed ? (cols[j].version || "") + " " : "") + short(cols[j].from);
    const made = chart(el, 40 + ch * rows.length + 70, 0, {
      type: "matrix",
      data: { datasets: [{
        label: "drift", data: cells,
        backgroundColor: (c) => heat(c.raw && c.raw.v),
        borderColor: (c) => (c.raw && cols[c.raw.x].changed ? "#0969da" : "rgba(0,0,0,0)"),
        borderWidth: (c) => (c.raw && cols[c.raw.x].changed ? { left: 3 } : 0),
        width: (c) => { const a = c.chart.chartArea; return a ? Math.max(2, a.width / cols.length - 1) : 8; },
        height: (c) => { const a = c.chart.chartArea; return a ? Math.max(2, a.height / rows.length - 1) : ch; },
      }] },
      options: {
        plugins: {
          legend: { display: false },
          title: title("features x windows (click a row for its distributions)"),
          tooltip: { callbacks: {
            title: (items) => rows[items[0].raw.y],
            label: (item) => cols[item.raw.x].from + " to " + cols[item.raw.x].to + ": " +
              (item.raw.v === null || item.raw.v === undefined ? "no data" : item.raw.v.toFixed(3)),
          } },
        },
        scales: {
          x: { type: "linear", offset: false, min: -0.5, max: cols.length - 0.5, grid: { display: false },
               afterBuildTicks: (a) => { a.ticks = cols.map((w, j) => ({ value: j })); },
               ticks: { stepSize: 1, autoSkip: true, maxRotation: 60, callback: (v) => (Number.isInteger(v) && cols[v] ? label(v) : "") } },
          y: { type: "linear", reverse: true, offset: false, min: -0.5, max: rows.length - 0.5, grid: { display: false },
               afterBuildTicks: (a) => { a.ticks = rows.map((f, i) => ({ value: i })); },
               ticks: { stepSize: 1, autoSkip: ch < 12, callback: (v) => (Number.isInteger(v) && rows[v] !== undefined ? rows[v] : "") } },
        },
        onClick: (ev, hit) => {
          if (!hit.length || !onPick) return;
          const raw = made.data.datasets[0].data[hit[0].index];
          onPick(rows[raw.y], cols[raw.x]);
        },
      },
    });
    // the scale: one for the whole map
    const key = document.createElement("div");
    key.className = "heat-scale";
    const bar = document.createElement("span");
    bar.className = "heat-bar";
    bar.style.background = "linear-gradient(to right, " + [0, 0.25, 0.5, 0.75, 1].map(heat).join(", ") + ")";
    key.append("0 same ", bar, " 1 disjoint · " + d.measure);
    el.appendChild(key);
  }

  // grouped bars on one shared scale: {labels, series: [{label, values}], max?, title}
  function bars(el, d) {
    const n = d.labels.length;
    if (!n) { empty(el, d.empty || "nothing to draw"); return; }
    const all = [].concat.apply([], d.series.map((s) => s.values)).filter((v) => v !== null && v !== undefined);
    const max = d.max || Math.max(1e-12, Math.max.apply(null, all.map(Math.abs)));
    chart(el, 70 + n * (9 * d.series.length + 6), 720, {
      type: "bar",
      data: { labels: d.labels.map(String), datasets: d.series.map((s, si) => ({
        label: String(s.label), backgroundColor: PALETTE[si % 6], barPercentage: 0.9, categoryPercentage: 0.85,
        data: s.values.map((v) => (v === null || v === undefined ? null : Math.abs(v))),
      })) },
      options: {
        indexAxis: "y",
        plugins: { title: title(d.title), legend: { position: "top", align: "end", labels: { boxWidth: 10 } } },
        scales: { x: { min: 0, max: max, title: { display: true, text: "one scale for every bar, 0 to " + max.toPrecision(3) } },
                  y: { ticks: { autoSkip: false } } },
      },
    });
  }

  // SHAP waterfall: from the base value, each feature's push (a floating bar), to the output
  function waterfall(el, e, most) {
    let items = Object.entries(e.contributions).sort((a, b) => Math.abs(b[1]) - Math.abs(a[1]));
    if (!items.length) { empty(el, "no contributions"); return; }
    most = most || 20;
    if (items.length > most) {
      const rest = items.slice(most - 1), sum = rest.reduce((s, kv) => s + kv[1], 0);
      items = items.slice(0, most - 1).concat([[rest.length + " other features", sum]]);
    }
    let acc = e.base_value;
    const steps = items.map((kv) => { const s = { f: kv[0], v: kv[1], from: acc }; acc += kv[1]; return s; });
    const fmt = (v) => (v >= 0 ? "+" : "") + v.toPrecision(3);
    const labels = steps.map((s) => s.f.slice(0, 28) + " " + fmt(s.v)).concat(["output " + acc.toPrecision(4)]);
    const spans = steps.map((s) => [s.from, s.from + s.v]).concat([[e.base_value, acc]]);
    const colors = steps.map((s) => (s.v >= 0 ? "#cf222e" : "#0969da")).concat(["#57606a"]);
    chart(el, 70 + 20 * labels.length, 860, {
      type: "bar",
      data: { labels: labels, datasets: [{ label: "contribution", data: spans, backgroundColor: colors,
                                          minBarLength: 1, barPercentage: 0.8, categoryPercentage: 1 }] },
      options: {
        indexAxis: "y",
        plugins: {
          legend: { display: false },
          title: title("base " + e.base_value.toPrecision(4) + " → output " + acc.toPrecision(4) + " (" + e.output_scale + ")"),
          tooltip: { callbacks: { label: (item) => {
            const [a, b] = spans[item.dataIndex];
            return item.dataIndex < steps.length ? fmt(b - a) + " (" + a.toPrecision(4) + " to " + b.toPrecision(4) + ")"
                                                 : "from the base " + a.toPrecision(4) + " to the output " + b.toPrecision(4);
          } } },
        },
        scales: { x: { grace: "3%", title: { display: true, text: e.output_scale } }, y: { ticks: { autoSkip: false } } },
      },
    });
  }

  window.cml = { data: data, timeChart: timeChart, markerStrip: markerStrip, heatmap: heatmap,
                 bars: bars, waterfall: waterfall, empty: empty, PALETTE: PALETTE };
})();
