// Clinical performance of one model at its operating point, from GET /performance/clinical:
// recall (sensitivity) and precision (PPV) per segment with their 95 % intervals, the label-
// free estimates beside them, the alert rate (share of predictions flagging the class) and
// the reliability curve, each against the model's own holdout baseline.
// Text goes through textContent only, as in panels.js.

import { draw, setDetails, setState, setValue } from "./panels.js";

export const PANELS = [
  "clinical-summary", "clinical-recall", "clinical-precision", "clinical-alert-rate",
  "clinical-reliability",
];
const REALISED = "#e6edf3";
const INTERVAL = "rgba(88, 166, 255, 0.35)";
const INTERVAL_EDGE = "#58a6ff";
const ESTIMATED = "#d29922";
const BASELINE = "#8b949e";
const PREVALENCE = "#bc8cff";

const fmt = (v, digits = 3) => (v == null ? "–" : v.toFixed(digits));
const pct = (v) => (v == null ? "–" : `${(v * 100).toFixed(1)}%`);

/** "0.912 [0.850–0.950], n=40", or "–, n=12 (< 30)" when the count is below the minimum. */
export function describe(iv, minCount) {
  if (!iv) return "–";
  if (iv.value == null) return `–, n=${iv.n}${iv.n < minCount ? ` (< ${minCount})` : ""}`;
  return `${fmt(iv.value)} [${fmt(iv.lower)}–${fmt(iv.upper)}], n=${iv.n}`;
}

const estimate = (e) => (e?.value == null ? "–" : `${fmt(e.value)} ± ${fmt(e.stderr)}`);

/** The class the panels show: ``wanted`` if the model has it, else its positive class. */
export function chosenClass(c, wanted) {
  if (wanted && c.classes.includes(wanted)) return wanted;
  return c.positive_class ?? c.classes[0];
}

const metricOf = (s, cls, metric) => s.classes?.[cls]?.[metric] ?? null;
const baselineOf = (c, cls, metric) => c.baseline?.classes?.[cls]?.[metric]?.value ?? null;

// A marker per segment (no line between segments: they are categories, not a series).
const markers = (label, data, colour, style, radius) => ({
  type: "line",
  label,
  data,
  showLine: false,
  pointStyle: style,
  pointRadius: radius,
  pointHoverRadius: radius,
  pointBorderWidth: 3,
  borderColor: colour,
  backgroundColor: colour,
  order: 0,
});

function segmentChart(name, c, cls, metric, { realised = "realised (labels)", estimated = null, extra = [] } = {}) {
  const segments = c.segments;
  const of = (s) => metricOf(s, cls, metric);
  const baseline = baselineOf(c, cls, metric);
  const datasets = [
    {
      type: "bar",
      label: "95% interval",
      data: segments.map((s) => (of(s)?.value == null ? null : [of(s).lower, of(s).upper])),
      backgroundColor: INTERVAL,
      borderColor: INTERVAL_EDGE,
      borderWidth: 1,
      barPercentage: 0.5,
      order: 2,
    },
    markers(realised, segments.map((s) => of(s)?.value ?? null), REALISED, "line", 12),
  ];
  if (estimated) {
    const values = segments.map((s) => metricOf(s, cls, estimated)?.value ?? null);
    datasets.push(markers("estimated (no labels)", values, ESTIMATED, "rectRot", 5));
  }
  datasets.push(...extra);
  if (baseline != null) {
    datasets.push({
      type: "line",
      label: `holdout baseline ${fmt(baseline)}`,
      data: segments.map(() => baseline),
      borderColor: BASELINE,
      backgroundColor: BASELINE,
      borderDash: [6, 4],
      borderWidth: 1.5,
      pointRadius: 0,
      order: 1,
    });
  }
  const label = (s) => {
    const iv = of(s);
    const few = iv && iv.value == null ? " too few" : "";
    return `${s.segment} (n=${iv?.n ?? 0}${few})`;
  };
  draw(name, "bar", { labels: segments.map(label), datasets }, {
    scales: { y: { min: 0, max: 1 }, x: { ticks: { autoSkip: false } } },
    plugins: { legend: { labels: { usePointStyle: true, boxHeight: 8 } } },
  });
  const drawn = segments.filter((s) => of(s)?.value != null).length;
  setState(name, drawn ? "ready" : "empty", drawn);
}

function renderSummary(c, cls, all) {
  const name = "clinical-summary";
  const recall = metricOf(all ?? {}, cls, "recall");
  const baseline = baselineOf(c, cls, "recall");
  const below = recall?.value != null && baseline != null && recall.upper < baseline;
  const positive = cls === c.positive_class;
  setValue(name, `${positive ? "sensitivity" : `recall of ${cls}`} ${pct(recall?.value)}`,
    recall?.value == null ? "" : below ? "bad" : "ok");
  if (!all) {
    setDetails(name, [[`${c.model}: no segment "all" in the answer`]]);
    setState(name, "empty", 0);
    return;
  }
  const line = (label, metric, est) => {
    const base = baselineOf(c, cls, metric);
    const parts = [`${label}: ${describe(metricOf(all, cls, metric), c.min_count)}`];
    if (est) parts.push(`estimated ${estimate(metricOf(all, cls, est))}`);
    if (base != null) parts.push(`baseline ${fmt(base)}`);
    return [parts.join(" · ")];
  };
  const rule = c.threshold == null ? "argmax rule" : `P(${c.positive_class}) ≥ ${c.threshold}`;
  const lines = [
    [`${c.model} ${c.version} · last ${fmt(c.hours, 0)} h · ${all.labelled} labelled of ` +
      `${all.predictions} predictions`],
    [`class ${cls}${positive ? " (positive)" : ""} · operating point: ${rule}`],
    line(positive ? "recall (sensitivity)" : "recall", "recall", "recall_estimated"),
    line(positive ? "precision (PPV)" : "precision", "precision", "precision_estimated"),
  ];
  const others = c.classes.filter((k) => k !== cls);
  if (c.classes.length === 2) {
    // Binary: the other class's recall is the specificity, its precision the NPV.
    const other = others[0];
    lines.push([`specificity (recall of ${other}): ${describe(metricOf(all, other, "recall"), c.min_count)}`]);
    lines.push([`NPV (precision of ${other}): ${describe(metricOf(all, other, "precision"), c.min_count)}`]);
  }
  lines.push([`ROC AUC: ${describe(all.roc_auc, c.min_count)} · estimated ${estimate(all.roc_auc_estimated)}`]);
  lines.push(line("alert rate", "positive_rate"));
  lines.push([`prevalence: ${describe(metricOf(all, cls, "prevalence"), c.min_count)}`]);
  setDetails(name, lines);
  setState(name, recall?.value == null ? "empty" : "ready", recall?.value == null ? 0 : 1);
}

function renderReliability(c, all) {
  const name = "clinical-reliability";
  const usable = (bins) =>
    (bins ?? []).filter((b) => b.count > 0 && b.mean_predicted != null && b.observed != null);
  const bins = usable(all?.reliability);
  const base = usable(c.baseline?.reliability);
  const largest = Math.max(1, ...bins.map((b) => b.count));
  const xy = (b) => ({ x: b.mean_predicted, y: b.observed });
  draw(name, "scatter", {
    datasets: [
      {
        label: "observed (segment all)",
        data: bins.map(xy),
        showLine: true,
        borderColor: INTERVAL_EDGE,
        backgroundColor: INTERVAL_EDGE,
        // Bigger points for fuller bins: an empty-looking bin rests on few rows.
        pointRadius: bins.map((b) => 2 + 5 * Math.sqrt(b.count / largest)),
      },
      {
        label: "holdout baseline",
        data: base.map(xy),
        showLine: true,
        borderColor: BASELINE,
        backgroundColor: BASELINE,
        borderDash: [6, 4],
        pointRadius: 2,
      },
      {
        label: "perfectly calibrated",
        data: [{ x: 0, y: 0 }, { x: 1, y: 1 }],
        showLine: true,
        borderColor: "#30363d",
        backgroundColor: "#30363d",
        pointRadius: 0,
      },
    ],
  }, {
    scales: {
      x: {
        min: 0,
        max: 1,
        title: {
          display: true,
          text: c.positive_class ? `predicted P(${c.positive_class})` : "confidence (top class)",
        },
      },
      y: { min: 0, max: 1, title: { display: true, text: "observed share" } },
    },
    plugins: { legend: { labels: { usePointStyle: true, boxHeight: 8 } } },
  });
  const b = c.baseline ?? {};
  setDetails(name, [
    [`calibration error (ECE): ${fmt(all?.calibration_error)} · baseline ${fmt(b.calibration_error)}`],
    [`Brier score: ${fmt(all?.brier_score)} · baseline ${fmt(b.brier_score)}`],
  ]);
  setState(name, bins.length ? "ready" : "empty", bins.length);
}

/** Draw every clinical panel for one answer; ``wanted`` is the class asked for (or null). */
export function renderClinical(c, wanted) {
  const cls = chosenClass(c, wanted);
  const all = c.segments.find((s) => s.segment === "all");
  renderSummary(c, cls, all);
  segmentChart("clinical-recall", c, cls, "recall", { estimated: "recall_estimated" });
  segmentChart("clinical-precision", c, cls, "precision", { estimated: "precision_estimated" });
  const prevalence = c.segments.map((s) => metricOf(s, cls, "prevalence")?.value ?? null);
  segmentChart("clinical-alert-rate", c, cls, "positive_rate", {
    realised: `alert rate (share predicted ${cls})`,
    extra: [markers("prevalence (labels)", prevalence, PREVALENCE, "circle", 4)],
  });
  renderReliability(c, all);
  return cls;
}
