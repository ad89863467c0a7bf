// Panel renderers: each takes the monitoring API's JSON and draws one panel.
// Text goes through textContent only (never innerHTML): labels come from the server
// and must never be able to inject markup. Each panel ends in data-state "ready"
// (drawn with data), "empty" (drawn, nothing measured yet) or "error"; data-points
// says how many values it drew, so tests and operators can tell.

const COLORS = ["#58a6ff", "#3fb950", "#d29922", "#bc8cff", "#f85149", "#39c5cf"];
const HISTORY = 60; // client-side samples kept for the live series (10 min at 10 s)
const charts = new Map();
const series = { cpu: [], memory: [], errors: [] };
let previousTotals = null;

const panel = (name) => document.getElementById(`panel-${name}`);
const color = (i) => COLORS[i % COLORS.length];
const pct = (v, digits = 1) => (v == null ? "–" : `${(v * 100).toFixed(digits)}%`);
const clock = (iso) => new Date(iso).toISOString().slice(11, 16);

export function setState(name, state, points = 0) {
  const el = panel(name);
  el.dataset.state = state;
  el.dataset.points = String(points);
}

export function setValue(name, text, level) {
  const el = panel(name).querySelector('[data-role="value"]');
  el.textContent = text;
  el.className = `stat${el.classList.contains("small") ? " small" : ""}${level ? ` ${level}` : ""}`;
}

export function setDetails(name, lines) {
  const ul = panel(name).querySelector('[data-role="details"]');
  ul.replaceChildren(
    ...lines.map(([text, cls]) => {
      const li = document.createElement("li");
      li.textContent = text;
      if (cls) li.className = cls;
      return li;
    }),
  );
}

// Every chart, on every path (first draw and each update): no animation. An update used to
// replace the options with the panel's own, dropping `animation: false`, so the next resize
// (a full-page capture resizes the page) animated every chart from zero and the capture
// caught them nearly empty.
const BASE_OPTIONS = { responsive: true, maintainAspectRatio: false, animation: false };

export function draw(name, type, data, options = {}) {
  const merged = { ...options, ...BASE_OPTIONS };
  const existing = charts.get(name);
  if (existing && existing.config.type === type) {
    existing.data = data;
    existing.options = merged;
    existing.update("none");
    return;
  }
  existing?.destroy();
  const canvas = panel(name).querySelector("canvas");
  const chart = new window.Chart(canvas, { type, data, options: merged });
  charts.set(name, chart);
}

export function resetPanels() {
  for (const chart of charts.values()) chart.destroy();
  charts.clear();
  for (const key of Object.keys(series)) series[key] = [];
  previousTotals = null;
  latency.compute = latency.request = null;
  for (const el of document.querySelectorAll(".panel")) {
    el.dataset.state = "loading";
    el.dataset.points = "0";
  }
}

function push(list, value) {
  list.push({ t: new Date().toISOString(), v: value });
  if (list.length > HISTORY) list.shift();
}

function liveLine(name, list, label, max) {
  draw(
    name,
    "line",
    {
      labels: list.map((p) => p.t.slice(11, 19)),
      datasets: [{ label, data: list.map((p) => p.v), borderColor: color(0), pointRadius: 2 }],
    },
    { scales: { y: { min: 0, max } }, plugins: { legend: { display: false } } },
  );
}

export function renderHealth(h) {
  const level = { ok: "ok", degraded: "warn", not_ready: "bad" }[h.status];
  setValue("health", h.status.toUpperCase(), level);
  const hours = (h.uptime_seconds / 3600).toFixed(2);
  setDetails("health", [
    [`database: ${h.database.status}`],
    [`models: ${h.models.join(", ") || "none"}`],
    [`uptime: ${hours} h · records pending: ${h.records_pending}`],
    [`alerts firing: ${h.alerts_firing}`],
  ]);
  setState("health", "ready", 1);
}

export function renderSystem(s) {
  push(series.cpu, s.cpu_percent);
  push(series.memory, s.memory.ratio * 100);
  const cpuLevel = s.cpu_percent > s.thresholds.cpu_usage_high ? "warn" : "ok";
  setValue("cpu", `${s.cpu_percent.toFixed(1)}% (load ${s.load_average[0]})`, cpuLevel);
  liveLine("cpu", series.cpu, "CPU %", 100);
  setState("cpu", "ready", series.cpu.length);
  const gib = (b) => (b / 2 ** 30).toFixed(2);
  const memLevel = s.memory.ratio * 100 > s.thresholds.memory_usage_high ? "warn" : "ok";
  setValue("memory", `${pct(s.memory.ratio)} · ${gib(s.memory.used_bytes)} GiB`, memLevel);
  liveLine("memory", series.memory, "memory %", 100);
  setState("memory", "ready", series.memory.length);
}

export function renderAlerts(a) {
  const level = a.firing === 0 ? "ok" : a.by_severity.critical ? "bad" : "warn";
  setValue("alerts", `${a.firing} firing`, level);
  const lines = [[`${a.pending} pending`]];
  lines.push(...a.alerts.map((x) => [
    `${x.state === "firing" ? "●" : "○"} ${x.name} (${x.severity}): ${x.annotations.summary}`,
    `sev-${x.severity}`,
  ]));
  const am = a.alertmanager;
  if (am.status !== "not_configured") {
    lines.push([`Alertmanager: ${am.status}${am.status === "ok" ? `, ${am.alerts.length} alerts` : ""}`]);
  }
  setDetails("alerts", lines);
  setState("alerts", "ready", 1);
}

export function renderRequests(t) {
  const datasets = Object.entries(t.series).map(([model, counts], i) => ({
    label: model,
    data: counts.map((c) => c * (60 / t.step_seconds)),
    borderColor: color(i),
    backgroundColor: color(i),
    pointRadius: 0,
    tension: 0.2,
  }));
  draw(
    "requests",
    "line",
    { labels: t.buckets.map(clock), datasets },
    { scales: { y: { min: 0, title: { display: true, text: "predictions/min" } } } },
  );
  const total = Object.values(t.series).flat().reduce((x, y) => x + y, 0);
  setState("requests", total > 0 ? "ready" : "empty", total);
}

// The latency panel has two sources: the model's compute time per prediction (stored with
// each prediction: /metrics/predictions) and the end-to-end request time the caller waits
// (the HTTP histogram: /metrics/summary). Each renderer keeps its part and redraws both.
const latency = { compute: null, request: null };
const PREDICT_ROUTE = "POST /api/v1/models/{name}/predict";

function drawLatency() {
  const models = (latency.compute ?? []).filter((m) => m.count > 0);
  const request = latency.request?.[PREDICT_ROUTE];
  // Two-line names (Chart.js draws an array as lines) stay readable without rotation.
  const rows = [
    ...(request ? [[["request", "end-to-end"], request]] : []),
    ...models.map((m) => [[m.model, "compute"], m.latency_seconds]),
  ];
  const ms = (v) => (v == null ? null : v * 1000);
  const datasets = ["p50", "p95", "p99"].map((q, i) => ({
    label: q.toUpperCase(),
    data: rows.map(([, p]) => ms(p[q])),
    backgroundColor: color(i),
  }));
  draw(
    "latency",
    "bar",
    { labels: rows.map(([label]) => label), datasets },
    // Log scale: a request takes milliseconds, the model's share of it tens of microseconds.
    {
      scales: {
        x: { ticks: { autoSkip: false, maxRotation: 0, font: { size: 9 } } },
        y: {
          type: "logarithmic",
          title: { display: true, text: "ms (log scale)" },
          // Label the powers of ten only, as plain numbers ("0.01", "10").
          ticks: { callback: (v) => (Number.isInteger(Math.log10(v)) ? String(v) : "") },
        },
      },
    },
  );
  setDetails("latency", [
    ["end-to-end: a POST predict request (one or a batch), arrival to response, since start"],
    ["<model> compute: the model's own time per prediction, last 24 h"],
  ]);
  const points = datasets.flatMap((d) => d.data).filter((v) => v != null).length;
  setState("latency", points ? "ready" : "empty", points);
}

export function renderPredictions(p) {
  const models = p.models.filter((m) => m.count > 0);
  latency.compute = p.models;
  drawLatency();

  const edges = p.models[0]?.confidence.histogram.edges ?? [];
  draw(
    "confidence",
    "bar",
    {
      labels: edges.slice(0, -1).map((e) => e.toFixed(2)),
      datasets: models.map((m, i) => ({
        label: m.model,
        data: m.confidence.histogram.counts,
        backgroundColor: color(i),
      })),
    },
    { scales: { x: { title: { display: true, text: "confidence (bin start)" } } } },
  );
  const counted = models.reduce((n, m) => n + m.count, 0);
  setState("confidence", counted ? "ready" : "empty", counted);
}

export function renderAccuracy(perf) {
  const rows = perf.models;
  const kinds = [
    ["from feedback", (m) => m.accuracy.value],
    ["estimated (CBPE)", (m) => m.estimated_accuracy.value],
    ["holdout", (m) => m.holdout_accuracy],
  ];
  draw(
    "accuracy",
    "bar",
    {
      labels: rows.map((m) => m.model),
      datasets: kinds.map(([label, get], i) => ({
        label,
        data: rows.map(get),
        backgroundColor: color(i),
      })),
    },
    { scales: { y: { min: 0, max: 1 } } },
  );
  const points = rows.flatMap((m) => kinds.map(([, get]) => get(m))).filter((v) => v != null);
  setState("accuracy", points.length ? "ready" : "empty", points.length);
}

export function renderTraining(t) {
  const statuses = ["succeeded", "failed", "running", "queued"];
  const palette = { succeeded: "#3fb950", failed: "#f85149", running: "#58a6ff", queued: "#8b949e" };
  draw(
    "training",
    "bar",
    {
      labels: t.per_day.map((d) => d.date.slice(5)),
      datasets: statuses.map((s) => ({
        label: s,
        data: t.per_day.map((d) => d.counts[s] ?? 0),
        backgroundColor: palette[s],
      })),
    },
    { scales: { x: { stacked: true }, y: { stacked: true, min: 0, ticks: { precision: 0 } } } },
  );
  setState("training", t.total > 0 ? "ready" : "empty", t.total);
}

export function renderSummary(s) {
  latency.request = s.request_latency_seconds;
  drawLatency();
  // Error rate: 5xx share between two refreshes; the first point covers all since start.
  const totals = { all: s.requests.total, errors: s.requests.by_class["5xx"] ?? 0 };
  const prev = previousTotals ?? { all: 0, errors: 0 };
  const delta = totals.all - prev.all;
  if (delta > 0) push(series.errors, ((totals.errors - prev.errors) / delta) * 100);
  previousTotals = totals;
  const share = totals.all ? totals.errors / totals.all : null;
  setValue("errors", `5xx since start: ${pct(share, 2)} (${totals.errors}/${totals.all})`,
    share && share > 0.05 ? "bad" : "ok");
  liveLine("errors", series.errors, "5xx %", undefined);
  setState("errors", series.errors.length ? "ready" : "empty", series.errors.length);

  const db = s.database;
  const ops = Object.keys(db.operations);
  const errorsOf = (op) =>
    Object.entries(db.errors).filter(([k]) => k.startsWith(`${op}/`)).reduce((n, [, v]) => n + v, 0);
  setValue("database", `written ${db.records_written} · pending ${db.records_pending} · spilled ${db.records_spilled}`,
    db.records_spilled > 0 ? "warn" : "ok");
  draw(
    "database",
    "bar",
    {
      labels: ops,
      datasets: [
        { label: "operations", data: ops.map((o) => db.operations[o]), backgroundColor: color(0) },
        { label: "errors", data: ops.map(errorsOf), backgroundColor: "#f85149" },
      ],
    },
    { indexAxis: "y", scales: { x: { min: 0, ticks: { precision: 0 } } } },
  );
  const count = ops.reduce((n, o) => n + db.operations[o], 0);
  setState("database", count ? "ready" : "empty", count);
}

const DRIFTED = "#f85149";
const NOT_DRIFTED = "#58a6ff";
const THRESHOLD = "#d29922";

export function renderDrift(q) {
  // Only scores a decision rests on: a window below the minimum size (or a feature with too
  // few values in it) gives scores that mean nothing (a PSI of 7 from two rows).
  // Each bar is the statistic the decision compared with the limit: PSI for a number, the
  // share change for a category, the missing-rate change, whichever decided (`decision`).
  // PSI alone drew a drifted category below the line (a 10-point share move: PSI 0.05, L1
  // 0.2). Results stored before `decision` existed carry PSI, the statistic then.
  const stat = (f) => f.scores.decision ?? f.scores.psi;
  const rows = q.models.flatMap((m) =>
    m.features
      .filter((f) => m.decided && f.decided && stat(f) != null)
      .map((f) => ({ ...f, model: m.model })),
  );
  rows.sort((a, b) => stat(b) - stat(a));
  const top = rows.slice(0, 20);
  const bars = (drifted) => top.map((f) => (f.drifted === drifted ? stat(f) : null));
  draw("drift", "bar", {
    labels: top.map((f) => `${f.model}/${f.feature}`),
    datasets: [
      { label: "drift statistic, feature judged drifted", data: bars(true), backgroundColor: DRIFTED, maxBarThickness: 40 },
      { label: "drift statistic, not drifted", data: bars(false), backgroundColor: NOT_DRIFTED, maxBarThickness: 40 },
      {
        type: "line",
        label: `drift limit (${q.drift_threshold})`,
        data: top.map(() => q.drift_threshold),
        borderColor: THRESHOLD,
        backgroundColor: THRESHOLD,
        pointRadius: 0,
      },
    ],
  }, {
    // One bar per feature: the two bar series never share a feature, so stacking on x
    // just puts each bar in the middle of its slot.
    scales: { x: { stacked: true }, y: { min: 0, title: { display: true, text: "drift statistic" } } },
  });
  setDetails("drift", q.models.map((m) => {
    const when = m.computed_at ? ` at ${clock(m.computed_at)} UTC` : "";
    if (!m.computed_at) return [`${m.model}: no drift window yet`];
    if (!m.decided) {
      return [`${m.model}: window of ${m.window_size} predictions${when} is too small to decide: not plotted`, "muted"];
    }
    const skipped = m.features.filter((f) => !f.decided).length;
    const note = skipped ? `; ${skipped} feature(s) with too few values not plotted` : "";
    return [`${m.model}: window of ${m.window_size} predictions${when}${note}`];
  }));
  setState("drift", top.length ? "ready" : "empty", top.length);
}
