/* tunelens dashboard: vanilla JS, reads only the HTTP API, draws with the bundled plotly.
 *
 * State lives in the URL hash: #model=<name>&window=1h&range=24h. Every model name is
 * encodeURIComponent-ed in URLs and shown through textContent only.
 */
"use strict";

(function () {
  const REFRESH_MS = 30000;
  const WINDOW_SECONDS = { "5m": 300, "15m": 900, "1h": 3600, "6h": 21600, "1d": 86400 };
  const RANGE_SECONDS = { "6h": 21600, "24h": 86400, "7d": 604800, "30d": 2592000, all: null };
  const COLORS = { line: "#1f5fbf", bad: "#b42318", baseline: "#7a8699", second: "#e07b00" };
  // The loop's markers on the quality charts: promotions, rollbacks, alerts that started runs.
  const LOOP_COLORS = { promote: "#18794e", rollback: "#a15c07", trigger: "#6941c6" };

  // Quality metrics in display order. better: which direction is good. rule: how a change
  // counts as a degradation ("binomial": beyond 2 standard errors of a proportion over
  // the window's labelled rows; "relative": beyond `tol` of the baseline; "absolute").
  const QUALITY = [
    { key: "accuracy", label: "Accuracy", unit: "share, 0–1", better: "higher", rule: "binomial" },
    { key: "error_rate", label: "Error rate", unit: "share, 0–1", better: "lower", rule: "binomial" },
    { key: "precision", label: "Precision", unit: "0–1", better: "higher", rule: "binomial" },
    { key: "recall", label: "Recall", unit: "0–1", better: "higher", rule: "binomial" },
    { key: "f1", label: "F1", unit: "0–1", better: "higher", rule: "binomial" },
    { key: "roc_auc", label: "ROC AUC", unit: "0–1", better: "higher", rule: "binomial" },
    { key: "pr_auc", label: "PR AUC", unit: "0–1", better: "higher", rule: "binomial" },
    { key: "log_loss", label: "Log loss", unit: "nats", better: "lower", rule: "relative", tol: 0.05 },
    { key: "brier", label: "Brier score", unit: "0–1", better: "lower", rule: "relative", tol: 0.05 },
    { key: "ece", label: "Calibration error (ECE)", unit: "0–1", better: "lower", rule: "relative", tol: 0.05 },
    { key: "mae", label: "MAE", unit: "target units", better: "lower", rule: "relative", tol: 0.05 },
    { key: "rmse", label: "RMSE", unit: "target units", better: "lower", rule: "relative", tol: 0.05 },
    { key: "r2", label: "R²", unit: "", better: "higher", rule: "absolute", tol: 0.05 },
    { key: "mape", label: "MAPE", unit: "share", better: "lower", rule: "relative", tol: 0.05 },
  ];
  // Operational metrics that also get a headline card.
  const HEADLINE_OPS = [
    { key: "latency_p99", label: "Latency p99", unit: "ms", better: "lower", rule: "relative", tol: 0.2 },
  ];
  // Operational charts; each lists its series, and is skipped when every value is missing.
  const OPS = [
    {
      id: "counts", title: "Predictions and labels per window", axis: "rows per window",
      series: [
        { key: "rows", name: "predictions" },
        { key: "labelled_rows", name: "labelled", dash: "dash" },
      ],
    },
    {
      id: "latency", title: "Latency", axis: "latency (ms)",
      series: [
        { key: "latency_p50", name: "p50" },
        { key: "latency_p99", name: "p99" },
      ],
    },
    { id: "throughput", title: "Throughput", axis: "predictions per second",
      series: [{ key: "throughput", name: "throughput" }] },
    { id: "cpu", title: "CPU", axis: "CPU (% of one core)", series: [{ key: "cpu_percent", name: "CPU" }] },
    { id: "memory", title: "Memory (resident)", axis: "memory (MiB)",
      series: [{ key: "rss_bytes", name: "RSS", scale: 1 / 1048576 }] },
    { id: "gpu", title: "GPU utilisation", axis: "GPU (%)",
      series: [{ key: "gpu_util_percent", name: "GPU" }] },
    { id: "gpu-memory", title: "GPU memory", axis: "GPU memory (MiB)",
      series: [{ key: "gpu_memory_bytes", name: "GPU memory", scale: 1 / 1048576 }] },
  ];

  const state = {
    models: [],
    model: null,
    window: "1h",
    range: "24h",
    paused: false,
    seq: 0,
    timer: null,
    busy: false,
  };

  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------- helpers

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "text") node.textContent = String(v);
      else if (k === "className") node.className = v;
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const child of children || []) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function modelUrl(name, tail, params) {
    let url = "api/v1/models/" + encodeURIComponent(name) + "/" + tail;
    const query = new URLSearchParams();
    for (const [k, v] of Object.entries(params || {})) {
      if (v !== undefined && v !== null) query.set(k, v);
    }
    const text = query.toString();
    return text ? url + "?" + text : url;
  }

  async function getJSON(url) {
    let response;
    try {
      response = await fetch(url, { headers: { Accept: "application/json" } });
    } catch (err) {
      return { ok: false, status: 0, data: null, error: "the server did not answer" };
    }
    let data = null;
    try {
      data = await response.json();
    } catch (err) {
      data = null;
    }
    const error = response.ok ? null : (data && data.error) || response.statusText;
    return { ok: response.ok, status: response.status, data, error };
  }

  const isNum = (v) => typeof v === "number" && Number.isFinite(v);

  function fmt(value, key) {
    if (!isNum(value)) return "–";
    if (key === "rows" || key === "labelled_rows") return Math.round(value).toLocaleString();
    if (key && key.startsWith("latency")) return value.toFixed(value < 10 ? 2 : 1) + " ms";
    if (key && key.endsWith("_bytes")) return (value / 1048576).toFixed(1) + " MiB";
    if (Math.abs(value) >= 1000) return value.toLocaleString(undefined, { maximumFractionDigits: 1 });
    return value.toFixed(3);
  }

  function fmtDelta(delta, key) {
    if (!isNum(delta)) return "–";
    const sign = delta > 0 ? "+" : delta < 0 ? "−" : "±";
    return sign + fmt(Math.abs(delta), key);
  }

  function pad(n) {
    return String(n).padStart(2, "0");
  }

  // Plotly has no time zones: give it local wall-clock strings.
  function plotTime(iso) {
    const d = new Date(iso);
    return (
      d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds())
    );
  }

  function shortTime(iso) {
    if (!iso) return "–";
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return String(iso);
    const today = new Date();
    const sameDay = d.toDateString() === today.toDateString();
    const time = pad(d.getHours()) + ":" + pad(d.getMinutes());
    if (sameDay) return time;
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " + time;
  }

  function median(values) {
    const v = values.filter(isNum).sort((a, b) => a - b);
    if (!v.length) return null;
    const mid = Math.floor(v.length / 2);
    return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
  }

  function quantile(values, q) {
    const v = values.filter(isNum).sort((a, b) => a - b);
    if (!v.length) return null;
    const at = (v.length - 1) * q;
    const lo = Math.floor(at);
    const hi = Math.ceil(at);
    return v[lo] + (v[hi] - v[lo]) * (at - lo);
  }

  // ---------------------------------------------------------------- URL hash state

  function readHash() {
    const params = new URLSearchParams(location.hash.replace(/^#/, ""));
    const model = params.get("model");
    const win = params.get("window");
    const range = params.get("range");
    if (model !== null) state.model = model;
    if (win && WINDOW_SECONDS[win]) state.window = win;
    if (range && range in RANGE_SECONDS) state.range = range;
    $("window").value = state.window;
    $("range").value = state.range;
  }

  function writeHash() {
    const params = new URLSearchParams();
    if (state.model !== null) params.set("model", state.model);
    params.set("window", state.window);
    params.set("range", state.range);
    const hash = "#" + params.toString();
    if (location.hash !== hash) history.replaceState(null, "", hash);
  }

  // ---------------------------------------------------------------- model list

  function renderModels() {
    const list = $("model-list");
    list.replaceChildren();
    $("models-empty").hidden = state.models.length > 0;
    for (const m of state.models) {
      const sub = [m.task, m.version ? "v" + m.version : null].filter(Boolean).join(" · ");
      const counts =
        Number(m.predictions || 0).toLocaleString() + " predictions · " +
        Number(m.labels || 0).toLocaleString() + " labels";
      const button = el(
        "button",
        {
          type: "button",
          className: "model-button",
          "data-model": m.name,
          "aria-current": m.name === state.model ? "true" : "false",
        },
        [
          el("span", { className: "model-name", text: m.name }),
          el("span", { className: "model-sub", text: sub }),
          el("span", { className: "model-sub", text: counts }),
        ],
      );
      button.addEventListener("click", () => selectModel(m.name));
      list.append(el("li", {}, [button]));
    }
  }

  function selectModel(name) {
    if (state.model === name) return;
    state.model = name;
    writeHash();
    renderModels();
    refresh();
  }

  // ---------------------------------------------------------------- headline

  function latestIndex(windows, key) {
    // The latest complete window holding the metric; the open one if none is complete.
    const now = Date.now();
    const width = WINDOW_SECONDS[state.window] * 1000;
    let fallback = -1;
    for (let i = windows.length - 1; i >= 0; i--) {
      if (!isNum(windows[i][key])) continue;
      if (fallback < 0) fallback = i;
      if (Date.parse(windows[i].window_start) + width <= now) return { index: i, open: false };
    }
    return { index: fallback, open: fallback >= 0 };
  }

  // The baseline: the first half of the windows before the judged one, leaving out thin
  // windows (under a quarter of the typical row count, e.g. a range's partial first
  // window). The first half, so that a degradation that has lasted a while does not
  // drag its own baseline along.
  function baselineValues(spec, before) {
    const countKey = spec.key.startsWith("latency") ? "rows" : "labelled_rows";
    const held = before.filter((w) => isNum(w[spec.key]));
    const typical = median(held.map((w) => w[countKey] ?? 0)) || 0;
    const solid = held.filter((w) => (w[countKey] ?? 0) >= 0.25 * typical);
    return solid.slice(0, Math.ceil(solid.length / 2)).map((w) => w[spec.key]);
  }

  function judge(spec, windows) {
    const found = latestIndex(windows, spec.key);
    if (found.index < 0) return null;
    const latest = windows[found.index];
    const value = latest[spec.key];
    const earlier = baselineValues(spec, windows.slice(0, found.index));
    const baseline = median(earlier);
    const out = {
      spec, value, latest, open: found.open, baseline, delta: null,
      status: "steady", score: 0, why: "",
    };
    if (!isNum(baseline)) {
      out.why = "no earlier window in the range to compare with";
      return out;
    }
    const delta = value - baseline;
    out.delta = delta;
    const worse = spec.better === "higher" ? delta < 0 : delta > 0;
    let limit;
    if (spec.rule === "binomial") {
      const n = Math.max(1, latest.labelled_rows || latest.rows || 1);
      const p = Math.min(Math.max(baseline, 0), 1);
      limit = Math.max(2 * Math.sqrt((p * (1 - p)) / n), 0.005);
      out.why = "flagged beyond 2 standard errors (±" + limit.toFixed(3) + " at n=" + n + ")";
    } else if (spec.rule === "relative") {
      limit = Math.max(Math.abs(baseline) * spec.tol, 1e-9);
      out.why = "flagged beyond " + Math.round(spec.tol * 100) + "% of the baseline";
    } else {
      limit = spec.tol;
      out.why = "flagged beyond ±" + spec.tol;
    }
    // Windows are noisy on their own: a change within 2 robust standard deviations of
    // the earlier windows (from their median absolute deviation or their interquartile
    // range, whichever is wider) is not flagged.
    const prior = earlier;
    if (prior.length >= 4) {
      const mad = 1.4826 * median(prior.map((x) => Math.abs(x - baseline)));
      const iqr = (quantile(prior, 0.75) - quantile(prior, 0.25)) / 1.349;
      const spread = 2 * Math.max(mad, iqr);
      if (spread > limit) {
        limit = spread;
        out.why += "; here the earlier windows' own spread (±" + fmt(spread, spec.key) + ") is wider";
      }
    }
    out.score = Math.abs(delta) / limit;
    if (out.score > 1) out.status = worse ? "degraded" : "improved";
    return out;
  }

  function renderHeadline(verdicts) {
    const box = $("headline");
    box.replaceChildren();
    const sorted = verdicts.slice().sort((a, b) => {
      const rank = (v) => (v.status === "degraded" ? 0 : 1);
      return rank(a) - rank(b); // stable: keeps the display order within each group
    });
    for (const v of sorted) {
      const arrow = v.status === "degraded" ? "▼ worse " : v.status === "improved" ? "▲ better " : "";
      const deltaText = isNum(v.delta)
        ? arrow + fmtDelta(v.delta, v.spec.key) + " vs " + fmt(v.baseline, v.spec.key)
        : "no baseline";
      const label = !v.spec.key.startsWith("latency");
      const count = label ? v.latest.labelled_rows : v.latest.rows;
      const when =
        "window " + shortTime(v.latest.window_start) + (v.open ? " (still open)" : "") +
        ", " + Number(count ?? 0).toLocaleString() + (label ? " labelled" : " rows");
      box.append(
        el(
          "div",
          {
            className: "card " + v.status,
            "data-metric": v.spec.key,
            "data-status": v.status,
            title: v.why,
          },
          [
            el("div", { className: "card-name", text: v.spec.label }),
            el("div", { className: "card-value", text: fmt(v.value, v.spec.key) }),
            el("div", { className: "card-delta", text: deltaText }),
            el("div", { className: "card-why", text: when }),
          ],
        ),
      );
    }
    const degraded = sorted.filter((v) => v.status === "degraded").map((v) => v.spec.label);
    $("headline-note").textContent = !sorted.length
      ? "No metric to compare yet: quality metrics need labels."
      : degraded.length
        ? "Degrading: " + degraded.join(", ") + ". Compared with the baseline: the median of the first half of the earlier windows."
        : "Nothing is degrading: each metric of the latest complete window is within noise " +
          "of its baseline, the median of the first half of the earlier windows.";
  }

  // ---------------------------------------------------------------- charts

  // Half a window of room on each side, so that the end points and the first tick label
  // stay clear of the axes.
  // `extra`: further times (ms) to keep in view, e.g. a promotion after the last window.
  function xRange(windows, extra) {
    if (!windows.length) return undefined;
    const half = (WINDOW_SECONDS[state.window] * 1000) / 2;
    let first = Date.parse(windows[0].window_start) - half;
    let last = Date.parse(windows[windows.length - 1].window_start) + half;
    const times = (extra || []).filter(isNum);
    if (times.length) {
      const room = Math.max((last - first) * 0.03, 60000);
      first = Math.min(first, Math.min(...times) - room);
      last = Math.max(last, Math.max(...times) + room);
    }
    return [plotTime(new Date(first).toISOString()), plotTime(new Date(last).toISOString())];
  }

  function baseLayout(axisTitle, windows, extra) {
    return {
      height: 240,
      margin: { l: 64, r: 14, t: 10, b: 58 },
      font: { family: "system-ui, 'DejaVu Sans', sans-serif", size: 12, color: "#1b2330" },
      paper_bgcolor: "#fff",
      plot_bgcolor: "#fff",
      showlegend: false,
      hovermode: "x unified",
      xaxis: {
        type: "date",
        title: { text: "window start (local time)", font: { size: 11 }, standoff: 6 },
        gridcolor: "#eef1f5",
        automargin: true,
        nticks: 6,
        range: xRange(windows, extra),
      },
      yaxis: {
        title: { text: axisTitle, font: { size: 11 }, standoff: 6 },
        ticks: "outside",
        ticklen: 5,
        tickcolor: "#fff",
        gridcolor: "#eef1f5",
        zeroline: false,
        automargin: true,
      },
    };
  }

  const PLOT_CONFIG = {
    displaylogo: false,
    responsive: true,
    modeBarButtonsToRemove: ["select2d", "lasso2d", "autoScale2d", "toggleSpikelines"],
  };

  function chartBox(container, id, title, degraded, flag) {
    let box = document.getElementById("box-" + id);
    if (!box) {
      box = el("figure", { className: "chart-box", id: "box-" + id }, [
        el("h4", {}, [el("span", { className: "chart-title" }), el("span", { className: "flag" })]),
        el("div", { className: "chart", id: "chart-" + id, role: "img" }),
      ]);
      box.style.margin = "0";
    }
    box.querySelector(".chart-title").textContent = title;
    box.querySelector(".flag").textContent = flag || "";
    box.classList.toggle("degraded", Boolean(degraded));
    box.querySelector(".chart").setAttribute("aria-label", title + " per window");
    container.append(box); // (re)appending keeps the order we are given
    return box.querySelector(".chart");
  }

  function alertTimes(alerts) {
    const out = [];
    for (const a of alerts) {
      const at = a.window_start || a.fired_at;
      if (!at) continue;
      out.push({ x: plotTime(at), text: a.rule, severity: a.severity });
    }
    return out;
  }

  // A y range with some room, that never shows a flat series as -0.5..1.5 and keeps
  // 0–1 metrics inside [0, 1].
  function yRange(values, unitInterval) {
    const v = values.filter(isNum);
    if (!v.length) return undefined;
    let lo = Math.min(...v);
    let hi = Math.max(...v);
    const pad = Math.max((hi - lo) * 0.12, unitInterval ? 0.02 : Math.abs(hi) * 0.05 || 0.05);
    lo -= pad;
    hi += pad;
    if (unitInterval) {
      lo = Math.max(lo, 0);
      hi = Math.min(hi, 1);
    }
    return [lo, hi];
  }

  function drawQuality(windows, verdicts, alerts, loopMarks) {
    const container = $("quality-charts");
    const width = WINDOW_SECONDS[state.window] * 1000;
    const now = Date.now();
    const x = windows.map((w) => plotTime(w.window_start));
    const open = windows.map((w) => Date.parse(w.window_start) + width > now);
    const marks = alertTimes(alerts);
    const wanted = new Set();
    // Same order as the headline: degrading metrics first.
    const order = verdicts.slice().sort((a, b) => {
      const rank = (v) => (v.status === "degraded" ? 0 : 1);
      return rank(a) - rank(b) || QUALITY.indexOf(a.spec) - QUALITY.indexOf(b.spec);
    });
    for (const v of order) {
      const spec = v.spec;
      wanted.add("box-" + spec.key);
      const degraded = v.status === "degraded";
      const div = chartBox(container, spec.key, spec.label, degraded, degraded ? "▼ degrading" : "");
      const color = degraded ? COLORS.bad : COLORS.line;
      const y = windows.map((w) => (isNum(w[spec.key]) ? w[spec.key] : null));
      const n = windows.map((w) => w.labelled_rows ?? 0);
      const traces = [
        {
          type: "scatter",
          mode: "lines+markers",
          name: spec.label,
          x,
          y,
          customdata: n,
          connectgaps: false,
          cliponaxis: false,
          line: { color, width: 2 },
          marker: {
            color,
            size: 7,
            symbol: open.map((o) => (o ? "circle-open" : "circle")),
            line: { color, width: 2 },
          },
          hovertemplate: "%{y:.3f}<br>%{customdata} labelled rows<extra></extra>",
        },
      ];
      const shapes = [];
      if (isNum(v.baseline)) {
        shapes.push({
          type: "line", xref: "paper", x0: 0, x1: 1, yref: "y", y0: v.baseline, y1: v.baseline,
          line: { color: COLORS.baseline, width: 1.5, dash: "dash" },
        });
      }
      for (const m of marks) {
        shapes.push({
          type: "line", xref: "x", x0: m.x, x1: m.x, yref: "paper", y0: 0, y1: 1,
          line: { color: m.severity === "low" ? COLORS.second : COLORS.bad, width: 2, dash: "dot" },
        });
      }
      for (const m of loopMarks) {
        shapes.push({
          type: "line", xref: "x", x0: m.x, x1: m.x, yref: "paper", y0: 0, y1: 1,
          line: { color: m.color, width: 2, dash: m.dash },
        });
      }
      const unit = spec.unit ? spec.label + " (" + spec.unit + ")" : spec.label;
      const layout = baseLayout(unit, windows, loopMarks.map((m) => m.ms));
      layout.shapes = shapes;
      // labels on the side of their line with more room, so that none is clipped
      const times = windows.map((w) => Date.parse(w.window_start)).concat(loopMarks.map((m) => m.ms));
      const middle = (Math.min(...times) + Math.max(...times)) / 2;
      layout.annotations = loopMarks.map((m, i) => ({
        x: m.x, xref: "x", xanchor: m.ms > middle ? "right" : "left",
        y: 1 - 0.13 * (i % 3), yref: "paper", yanchor: "top",
        text: plotlyText(m.label), hovertext: plotlyText(m.hover), showarrow: false,
        font: { size: 10, color: m.color }, bgcolor: "rgba(255,255,255,0.85)", borderpad: 1,
      }));
      layout.yaxis.range = yRange(y.concat([v.baseline]), spec.unit.includes("0–1"));
      Plotly.react(div, traces, layout, PLOT_CONFIG);
    }
    removeStale(container, wanted);
    $("quality-empty").hidden = order.length > 0;
  }

  function drawOps(windows) {
    const container = $("ops-charts");
    const x = windows.map((w) => plotTime(w.window_start));
    const wanted = new Set();
    for (const chart of OPS) {
      const series = chart.series.filter((s) => windows.some((w) => isNum(w[s.key])));
      if (!series.length) continue;
      wanted.add("box-" + chart.id);
      const div = chartBox(container, chart.id, chart.title, false, "");
      const traces = series.map((s, i) => ({
        type: "scatter",
        mode: "lines+markers",
        name: s.name,
        x,
        y: windows.map((w) => (isNum(w[s.key]) ? w[s.key] * (s.scale || 1) : null)),
        line: { color: i === 0 ? COLORS.line : COLORS.second, width: 2, dash: s.dash || "solid" },
        marker: { size: 6 },
        hovertemplate: s.name + ": %{y:,.3~f}<extra></extra>",
      }));
      const layout = baseLayout(chart.axis, windows);
      if (series.length > 1) {
        layout.showlegend = true;
        layout.legend = { orientation: "h", x: 0, y: 1.02, yanchor: "bottom", font: { size: 11 } };
        layout.margin.t = 28;
      }
      if (chart.id === "counts") layout.yaxis.rangemode = "tozero";
      Plotly.react(div, traces, layout, PLOT_CONFIG);
    }
    removeStale(container, wanted);
  }

  function removeStale(container, wanted) {
    for (const box of Array.from(container.children)) {
      if (!wanted.has(box.id)) {
        const chart = box.querySelector(".chart");
        if (chart && window.Plotly) Plotly.purge(chart);
        box.remove();
      }
    }
  }

  // ---------------------------------------------------------------- tables

  function table(headers, rows) {
    const head = el("tr", {}, headers.map((h) => el("th", { className: h.num ? "num" : null, text: h.label })));
    const body = rows.map((r) =>
      el(
        "tr",
        { className: r.className || null },
        r.cells.map((c, i) =>
          el("td", { className: headers[i].num ? "num" : null }, [c instanceof Node ? c : String(c ?? "–")]),
        ),
      ),
    );
    return el("div", { className: "table-wrap" }, [
      el("table", {}, [el("thead", {}, [head]), el("tbody", {}, body)]),
    ]);
  }

  function pill(text, kind) {
    return el("span", { className: "pill " + kind, text });
  }

  function renderAlerts(alerts) {
    const box = $("alerts");
    box.replaceChildren();
    if (!alerts.length) {
      box.append(el("p", { className: "muted", text: "No alert has fired for this model." }));
      return;
    }
    const rows = alerts.map((a) => ({
      className: a.state === "firing" ? "bad" : null,
      cells: [
        shortTime(a.fired_at),
        a.rule,
        pill(a.severity || "–", a.severity === "low" ? "neutral" : a.severity === "medium" ? "warn" : "bad"),
        pill(a.state, a.state === "firing" ? "bad" : "good"),
        a.resolved_at ? shortTime(a.resolved_at) : "–",
        isNum(a.value) ? fmt(a.value) : "–",
        a.window_start ? shortTime(a.window_start) : "–",
        a.evidence || "",
      ],
    }));
    box.append(
      table(
        [
          { label: "Fired" }, { label: "Rule" }, { label: "Severity" }, { label: "State" },
          { label: "Resolved" }, { label: "Value", num: true }, { label: "Window" },
          { label: "Evidence" },
        ],
        rows,
      ),
    );
  }

  function renderDrift(result) {
    const box = $("drift");
    box.replaceChildren();
    const data = result.ok ? result.data : null;
    const features = data && data.features ? Object.entries(data.features) : [];
    if (!data || !data.reference || !features.length) {
      box.append(
        el("p", {
          className: "muted",
          text: "No reference registered for this model, so there is no drift status yet.",
        }),
      );
      return;
    }
    const share = isNum(data.share_drifted) ? Math.round(data.share_drifted * 100) + "%" : "–";
    box.append(
      el("p", {}, [
        data.dataset_drifted ? pill("dataset drifted", "bad") : pill("no dataset drift", "good"),
        " " + share + " of " + features.length + " features drifted, current " +
          Number((data.current && data.current.rows) || 0).toLocaleString() + " rows against " +
          Number(data.reference.rows || 0).toLocaleString() + " reference rows.",
      ]),
    );
    features.sort((a, b) => Number(b[1].drifted) - Number(a[1].drifted) || a[0].localeCompare(b[0]));
    const rows = features.map(([name, f]) => ({
      className: f.drifted ? "bad" : null,
      cells: [
        name,
        f.drifted ? pill("drifted", "bad") : pill("stable", "good"),
        f.method || "–",
        isNum(f.statistic) ? f.statistic.toFixed(3) : "–",
        isNum(f.p_value) ? (f.p_value < 0.001 ? "<0.001" : f.p_value.toFixed(3)) : "–",
        isNum(f.psi) ? f.psi.toFixed(3) : "–",
      ],
    }));
    box.append(
      table(
        [
          { label: "Feature" }, { label: "Status" }, { label: "Test" },
          { label: "Statistic", num: true }, { label: "p-value", num: true }, { label: "PSI", num: true },
        ],
        rows,
      ),
    );
  }

  function renderReport(result) {
    const box = $("report");
    box.replaceChildren();
    const data = result.ok ? result.data : null;
    const report = data && data.report;
    if (!report) {
      box.append(el("p", { className: "muted", text: "No quality report yet for this model." }));
      return;
    }
    const rows = report.rows || {};
    box.append(
      el("p", {
        text:
          "Created " + shortTime(data.created_at) + " · " + (report.task || "") + " · " +
          Number(rows.reference || 0).toLocaleString() + " reference rows, " +
          Number(rows.current || 0).toLocaleString() + " current rows.",
      }),
    );
    const comparison = Object.entries(report.comparison || {});
    if (comparison.length) {
      comparison.sort((a, b) => Number(b[1].worse && b[1].significant) - Number(a[1].worse && a[1].significant));
      box.append(
        table(
          [
            { label: "Metric" }, { label: "Reference", num: true }, { label: "Current", num: true },
            { label: "Change", num: true }, { label: "Verdict" },
          ],
          comparison.map(([name, c]) => ({
            className: c.worse && c.significant ? "bad" : null,
            cells: [
              name,
              fmt(c.reference),
              fmt(c.current),
              fmtDelta(c.delta),
              c.significant ? (c.worse ? pill("worse", "bad") : pill("better", "good")) : pill("within noise", "neutral"),
            ],
          })),
        ),
      );
    }
    const findings = (report.findings || []).slice(0, 5);
    if (findings.length) {
      box.append(el("h4", { text: "Top findings" }));
      box.append(
        el(
          "ul",
          { className: "findings" },
          findings.map((f) =>
            el("li", {}, [
              pill(f.severity || "–", f.severity === "high" ? "bad" : f.severity === "medium" ? "warn" : "neutral"),
              " ",
              el("strong", { text: f.where || f.kind || "" }),
              ": " + (f.evidence || "") + (f.action ? " → " + f.action : ""),
            ]),
          ),
        ),
      );
    }
  }

  // ---------------------------------------------------------------- versions and loop runs

  // Plotly reads a few HTML tags and entities in annotation text: escape user data.
  function plotlyText(text) {
    return String(text ?? "")
      .replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }

  const list = (v) => (Array.isArray(v) ? v : []);
  const obj = (v) => (v && typeof v === "object" && !Array.isArray(v) ? v : {});

  // The markers drawn on the quality charts: every promotion and rollback (labelled with
  // the version) and every alert that started a loop run, from `from` (ms) on.
  function loopMarkers(versionDoc, runs, from) {
    const out = [];
    const add = (iso, kind, label, hover) => {
      const ms = Date.parse(iso);
      if (!Number.isFinite(ms) || ms < from) return;
      out.push({
        ms, x: plotTime(iso), kind, label, hover,
        color: LOOP_COLORS[kind] || LOOP_COLORS.promote,
        dash: kind === "trigger" ? "dashdot" : "solid",
      });
    };
    for (const e of list(versionDoc.events).map(obj)) {
      const rollback = e.action === "rollback";
      add(
        e.at, rollback ? "rollback" : "promote",
        (rollback ? "↩ rolled back to " : "▲ promoted ") + (e.version ?? "?"),
        (e.reason || "") + (e.previous ? " (was " + e.previous + ")" : ""),
      );
    }
    for (const r of runs.map(obj)) {
      const t = obj(r.trigger);
      if (t.kind !== "alert") continue;
      add(
        t.fired_at || t.window_start, "trigger",
        "⚑ " + (t.rule || "alert") + " → loop run",
        (t.evidence || "") + (r.run ? " (run " + r.run + ")" : ""),
      );
    }
    return out.sort((a, b) => a.ms - b.ms);
  }

  const ACTIONS = {
    promote: { text: "promote", kind: "good" },
    await_approval: { text: "await approval", kind: "warn" },
    keep_champion: { text: "keep champion", kind: "neutral" },
  };

  function actionPill(action) {
    const known = ACTIONS[action] || { text: String(action || "–"), kind: "neutral" };
    return el("span", { className: "pill " + known.kind, "data-action": action || "", text: known.text });
  }

  function severityPill(severity) {
    return pill(severity || "–", severity === "high" ? "bad" : severity === "medium" ? "warn" : "neutral");
  }

  function pValue(p) {
    if (!isNum(p)) return "–";
    return p < 0.001 ? "<0.001" : p.toFixed(3);
  }

  function findingList(findings, limit) {
    const shown = list(findings).map(obj).slice(0, limit);
    if (!shown.length) return el("span", { className: "muted", text: "none" });
    return el(
      "ul",
      { className: "findings" },
      shown.map((f) =>
        el("li", {}, [
          severityPill(f.severity),
          " ",
          el("strong", { text: f.where || f.kind || "" }),
          ": " + (f.evidence || "") + (f.action ? " → " + f.action : ""),
        ]),
      ),
    );
  }

  function triggerText(trigger) {
    const t = obj(trigger);
    if (t.kind !== "alert") {
      return [el("span", { className: "trigger-text", text: t.kind === "manual" ? "manual (run on demand)" : "not recorded" })];
    }
    return [
      severityPill(t.severity),
      " ",
      el("span", {
        className: "trigger-text",
        text:
          "alert " + (t.rule || "?") + " fired " + shortTime(t.fired_at) +
          (t.window_start ? " (window " + shortTime(t.window_start) + ")" : "") +
          (t.evidence ? ": " + t.evidence : ""),
      }),
    ];
  }

  function comparisonRow(label, c, champion, challenger) {
    const metric = c.metric || "metric";
    return {
      className: c.significant && isNum(c.difference) && c.difference < 0 ? "bad" : null,
      cells: [
        label,
        metric,
        fmt(c.champion) + (champion ? " (" + champion + ")" : ""),
        fmt(c.challenger) + (challenger ? " (" + challenger + ")" : ""),
        fmtDelta(c.difference),
        pValue(c.p_value),
        c.test || "–",
        isNum(c.n) ? Math.round(c.n).toLocaleString() : "–",
      ],
    };
  }

  function runCard(run) {
    const r = obj(run);
    const comparison = obj(r.comparison);
    const decision = obj(r.decision);
    const shadow = r.shadow ? obj(r.shadow) : null;
    const rows = obj(r.rows);
    const plan = obj(r.plan);
    const promoted = Boolean(r.promoted || (shadow && shadow.promoted));
    const finalDecision = shadow && shadow.decision ? obj(shadow.decision) : decision;
    const compRows = [comparisonRow("offline (held-out recent rows)", comparison, r.champion, r.challenger)];
    if (shadow && shadow.comparison) {
      compRows.push(comparisonRow("shadow (" + Number(shadow.rows || 0).toLocaleString() + " live rows)",
        obj(shadow.comparison), r.champion, r.challenger));
    }
    const decisionBits = [
      actionPill(decision.action), " " + (decision.reason || ""),
    ];
    if (shadow && shadow.decision) {
      decisionBits.push(el("br"), "shadow: ", actionPill(finalDecision.action), " " + (finalDecision.reason || ""));
    }
    decisionBits.push(
      el("br"),
      promoted
        ? el("span", { className: "promoted-text", text: "Promoted: " + (r.challenger || "?") + " replaced " + (r.champion || "?") + "." })
        : el("span", { className: "promoted-text", text: "Not promoted: " + (r.champion || "the champion") + " stays." +
            (r.status === "shadow" ? " The challenger is in shadow mode." : "") }),
    );
    const field = (name, content) => [el("dt", { text: name }), el("dd", {}, content)];
    const status = r.status || (r.finished || r.decision ? "done" : "–");
    const header = el("header", { className: "run-head" }, [
      el("strong", { text: "Run " + (r.run || "?") }),
      el("span", { className: "muted", text:
        " · started " + shortTime(r.started) + (r.finished ? " · finished " + shortTime(r.finished) : "") }),
      " ",
      pill(status, status === "done" ? "neutral" : "warn"),
      " ",
      actionPill(finalDecision.action),
      " ",
      promoted ? pill("promoted", "good") : pill("not promoted", "neutral"),
    ]);
    return el(
      "article",
      {
        className: "run-card" + (promoted ? " promoted" : ""),
        "data-run": r.run || "",
        "data-action": finalDecision.action || "",
        "data-promoted": String(promoted),
      },
      [
        header,
        el("dl", { className: "run-fields" }, [
          ...field("Trigger", triggerText(r.trigger)),
          ...field("Data", [
            Number(rows.recent || 0).toLocaleString() + " recent labelled rows, " +
              Number(rows.reference || 0).toLocaleString() + " reference rows",
          ]),
          ...field("Findings", [findingList(r.findings, 3)]),
          ...(r.localisation ? field("Localisation", [findingList(r.localisation, 3)]) : []),
          ...field("Plan", [el("span", { className: "plan-text", text: plan.data_rule || "–" })]),
          ...(tuneText(r.tune) ? field("Tuning", [el("span", { className: "tune-text", text: tuneText(r.tune) })]) : []),
          ...(r.compress && (obj(r.compress).why || obj(r.compress).applied)
            ? field("Compression", [
              el("span", {
                className: "compress-text",
                text: (obj(r.compress).applied ? "applied" : "not applied") +
                  (obj(r.compress).why ? ": " + obj(r.compress).why : ""),
              }),
            ])
            : []),
          ...field("Challenger", [
            el("div", { className: "comparison-summary", text: comparison.summary || "–" }),
            table(
              [
                { label: "Check" }, { label: "Metric" }, { label: "Champion", num: true },
                { label: "Challenger", num: true }, { label: "Difference", num: true },
                { label: "p-value", num: true }, { label: "Test" }, { label: "Rows", num: true },
              ],
              compRows,
            ),
          ]),
          ...field("Decision", [el("div", { className: "decision-text" }, decisionBits)]),
        ]),
      ],
    );
  }

  function tuneText(tune) {
    const t = obj(tune);
    const best = obj(t.best);
    const bits = [];
    if (isNum(t.trials)) {
      bits.push(t.trials + " trial" + (t.trials === 1 ? "" : "s") +
        (isNum(t.complete) && t.complete !== t.trials ? " (" + t.complete + " complete)" : ""));
    }
    const params = Object.entries(obj(best.params));
    if (params.length) {
      bits.push("best" + (isNum(best.number) ? " trial #" + best.number : "") + ": " +
        params.map(([k, v]) => k + "=" + (isNum(v) ? Number(v.toPrecision(4)) : String(v))).join(", "));
    }
    if (t.feasible === false) {
      bits.push("constraints not met" + (t.blocked_by ? " (blocked by " + JSON.stringify(t.blocked_by) + ")" : ""));
    } else if (t.feasible === true) {
      bits.push("constraints met");
    }
    return bits.join(" · ");
  }

  function metricsText(metrics) {
    const entries = Object.entries(obj(metrics));
    if (!entries.length) return "–";
    return entries.map(([k, v]) => k + " " + fmt(v)).join(", ");
  }

  function renderLoop(versionDoc, runs) {
    const versions = list(versionDoc.versions).map(obj);
    const events = list(versionDoc.events).map(obj);
    const section = $("loop-section");
    section.hidden = !versions.length && !runs.length;
    if (section.hidden) {
      for (const id of ["loop-summary", "loop-runs", "versions", "version-events"]) $(id).replaceChildren();
      return;
    }
    const champion = versionDoc.champion ?? null;
    const newest = runs.map(obj).slice().sort((a, b) => (Date.parse(b.started) || 0) - (Date.parse(a.started) || 0));
    const last = newest[0];
    const summary = $("loop-summary");
    const lastAction = last
      ? actionPill(obj(last.shadow && last.shadow.decision ? last.shadow.decision : last.decision).action)
      : "";
    summary.replaceChildren(
      "Champion: ",
      el("strong", { id: "loop-champion", text: champion ?? "none" }),
      " · " + versions.length + " version" + (versions.length === 1 ? "" : "s") +
        " · " + runs.length + " loop run" + (runs.length === 1 ? "" : "s") +
        (last ? " · last run " + shortTime(last.started) + ": " : ""),
      lastAction,
    );

    const runsBox = $("loop-runs");
    runsBox.replaceChildren();
    if (!newest.length) {
      runsBox.append(el("p", { className: "muted", text: "The loop has not run for this model." }));
    }
    for (const r of newest) runsBox.append(runCard(r));

    // lineage: the champion and its ancestors, by parent links
    const byName = new Map(versions.map((v) => [String(v.version), v]));
    const chain = [];
    for (let at = champion, seen = new Set(); at !== null && at !== undefined && byName.has(String(at)) && !seen.has(String(at)); ) {
      seen.add(String(at));
      chain.push(String(at));
      at = byName.get(String(at)).parent;
    }
    const box = $("versions");
    box.replaceChildren();
    if (chain.length > 1) {
      box.append(el("p", { className: "lineage", text: "Lineage of the champion: " + chain.join(" ← ") }));
    }
    const ordered = versions.slice().reverse(); // newest first
    box.append(
      table(
        [
          { label: "Version" }, { label: "Parent" }, { label: "Source" }, { label: "Created" },
          { label: "Run" }, { label: "Metrics" }, { label: "Note" },
        ],
        ordered.map((v) => ({
          className: String(v.version) === String(champion) ? "champion" : null,
          cells: [
            el("span", { className: "version-name" }, [
              String(v.version ?? "?"),
              String(v.version) === String(champion) ? " " : null,
              String(v.version) === String(champion) ? pill("champion", "good") : null,
            ]),
            v.parent ?? "–",
            v.source || "–",
            shortTime(v.created),
            v.run || "–",
            metricsText(v.metrics),
            v.note || "",
          ],
        })),
      ),
    );
    const eventsBox = $("version-events");
    eventsBox.replaceChildren();
    if (events.length) {
      eventsBox.append(el("h4", { className: "sub-heading", text: "Promotions and rollbacks" }));
      eventsBox.append(
        table(
          [{ label: "When" }, { label: "Action" }, { label: "Version" }, { label: "Previous" }, { label: "Reason" }],
          events.slice().reverse().map((e) => ({
            cells: [
              shortTime(e.at),
              pill(e.action || "–", e.action === "rollback" ? "warn" : "good"),
              e.version ?? "–",
              e.previous ?? "–",
              e.reason || "",
            ],
          })),
        ),
      );
    }
  }

  // ---------------------------------------------------------------- refresh

  function showBanner(text) {
    const banner = $("banner");
    banner.textContent = text || "";
    banner.hidden = !text;
  }

  async function loadModels() {
    const result = await getJSON("api/v1/models");
    if (!result.ok) {
      showBanner("Could not list the models: " + result.error);
      return false;
    }
    state.models = (result.data && result.data.models) || [];
    const names = state.models.map((m) => m.name);
    if (state.model === null && names.length) state.model = names[0];
    renderModels();
    return true;
  }

  async function refresh() {
    if (state.busy) {
      state.again = true;
      return;
    }
    state.busy = true;
    const seq = ++state.seq;
    document.body.setAttribute("data-loading", "true");
    try {
      showBanner("");
      if (!(await loadModels())) return;
      writeHash();
      const model = state.models.find((m) => m.name === state.model);
      $("empty-panel").hidden = Boolean(model);
      $("model-panel").hidden = !model;
      if (!model) {
        if (state.model !== null && state.models.length) {
          showBanner("There is no model named “" + state.model + "” in the store.");
        }
        return;
      }
      $("model-title").textContent = model.name;
      const features = Object.keys(model.features || {});
      $("model-meta").textContent =
        [model.task, model.version ? "version " + model.version : null,
          (model.classes || []).length ? "classes " + model.classes.join(", ") : null,
          features.length + " feature" + (features.length === 1 ? "" : "s"),
          Number(model.predictions || 0).toLocaleString() + " predictions",
          Number(model.labels || 0).toLocaleString() + " labels"]
          .filter(Boolean).join(" · ");

      const seconds = RANGE_SECONDS[state.range];
      const since = seconds ? new Date(Date.now() - seconds * 1000).toISOString() : null;
      const [metrics, alerts, drift, report, versions, loop] = await Promise.all([
        getJSON(modelUrl(model.name, "metrics", { window: state.window, since })),
        getJSON(modelUrl(model.name, "alerts", { limit: 200 })),
        getJSON(modelUrl(model.name, "drift", { since })),
        getJSON(modelUrl(model.name, "report")),
        getJSON(modelUrl(model.name, "versions")),
        getJSON(modelUrl(model.name, "loop")),
      ]);
      if (seq !== state.seq) return; // a newer refresh superseded this one
      if (!metrics.ok) {
        showBanner("Could not read the metrics: " + metrics.error);
        return;
      }
      const windows = (metrics.data.windows || []).slice().sort(
        (a, b) => Date.parse(a.window_start) - Date.parse(b.window_start),
      );
      const allAlerts = alerts.ok ? alerts.data.alerts || [] : [];
      const from = since ? Date.parse(since) : -Infinity;
      const inRange = allAlerts.filter((a) => Date.parse(a.window_start || a.fired_at) >= from);

      const quality = QUALITY.map((spec) => judge(spec, windows)).filter(Boolean);
      const ops = HEADLINE_OPS.map((spec) => judge(spec, windows)).filter(Boolean);
      renderHeadline(quality.concat(ops));
      if (!windows.length) {
        $("headline-note").textContent = "No predictions in this time range.";
      }
      const versionDoc = versions.ok && versions.data ? versions.data : {};
      const runs = loop.ok && loop.data && Array.isArray(loop.data.runs) ? loop.data.runs : [];
      const marks = loopMarkers(versionDoc, runs, from);
      $("quality-legend-loop").hidden = !marks.length;
      drawQuality(windows, quality, inRange, marks);
      renderLoop(versionDoc, runs);
      drawOps(windows);
      renderAlerts(allAlerts);
      renderDrift(drift);
      renderReport(report);
      document.body.setAttribute("data-windows", String(windows.length));
      document.body.setAttribute("data-window", state.window);
      $("updated").textContent =
        "Updated at " + new Date().toLocaleTimeString() + (state.paused ? " · paused" : " · every 30 s");
    } catch (err) {
      showBanner("The dashboard failed to refresh: " + (err && err.message ? err.message : err));
      throw err;
    } finally {
      state.busy = false;
      document.body.removeAttribute("data-loading");
      if (state.again) {
        state.again = false;
        refresh();
      }
    }
  }

  function schedule() {
    if (state.timer) clearInterval(state.timer);
    state.timer = setInterval(() => {
      if (!state.paused && !document.hidden) refresh();
    }, REFRESH_MS);
  }

  function init() {
    readHash();
    $("window").addEventListener("change", (e) => {
      state.window = e.target.value;
      writeHash();
      refresh();
    });
    $("range").addEventListener("change", (e) => {
      state.range = e.target.value;
      writeHash();
      refresh();
    });
    $("refresh-now").addEventListener("click", () => refresh());
    $("pause").addEventListener("click", (e) => {
      state.paused = !state.paused;
      e.currentTarget.setAttribute("aria-pressed", String(state.paused));
      e.currentTarget.textContent = state.paused ? "Resume auto-refresh" : "Pause auto-refresh";
      const text = $("updated").textContent.replace(/ · (paused|every 30 s)$/, "");
      $("updated").textContent = text + (state.paused ? " · paused" : " · every 30 s");
    });
    window.addEventListener("hashchange", () => {
      const before = [state.model, state.window, state.range].join("\u0000");
      readHash();
      if ([state.model, state.window, state.range].join("\u0000") !== before) {
        renderModels();
        refresh();
      }
    });
    schedule();
    refresh();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
