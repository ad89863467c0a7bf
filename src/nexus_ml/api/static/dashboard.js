// Nexus ML dashboard: asks for a monitor key, then polls the monitoring API every 10 s.
// The key lives in sessionStorage only (gone when the tab closes) and travels in the
// Authorization header, never in a URL, so it cannot leak into logs or history.

import * as clinical from "./clinical.js";
import * as panels from "./panels.js";

const API = "/api/v1/monitoring";
const KEY_NAME = "nexus-ml.monitor-key";
const REFRESH_MS = 10_000;
// The clinical answer is computed on demand over the whole accuracy window (a second at
// 10,000 labelled rows, ten at 100,000) and moves slowly: ask for it once a minute, and at
// once when the model or class is changed, not on every 10 s refresh.
const CLINICAL_REFRESH_MS = 60_000;

// Which endpoint feeds which panels.
const SOURCES = [
  ["/health", panels.renderHealth, ["health"]],
  ["/performance/system", panels.renderSystem, ["cpu", "memory"]],
  ["/alerts", panels.renderAlerts, ["alerts"]],
  ["/metrics/predictions/timeline?hours=1&step_seconds=60", panels.renderRequests, ["requests"]],
  ["/metrics/predictions?hours=24", panels.renderPredictions, ["latency", "confidence"]],
  ["/performance/models", panels.renderAccuracy, ["accuracy"]],
  ["/metrics/training?hours=168", panels.renderTraining, ["training"]],
  ["/metrics/summary", panels.renderSummary, ["errors", "database", "latency"]],
  ["/data-quality/overview", panels.renderDrift, ["drift"]],
];

class AuthError extends Error {}

const $ = (id) => document.getElementById(id);
let timer = null;

async function api(path) {
  const response = await fetch(API + path, {
    headers: { Authorization: `Bearer ${sessionStorage.getItem(KEY_NAME)}` },
    cache: "no-store",
    credentials: "omit",
  });
  if (response.status === 401 || response.status === 403) {
    const body = await response.json().catch(() => ({}));
    throw new AuthError(body.detail || `HTTP ${response.status}`);
  }
  if (!response.ok) throw new Error(`${path.split("?")[0]}: HTTP ${response.status}`);
  return response.json();
}

// The clinical panels show one model (and class) at a time, chosen in the section's header;
// the model list comes from /health.
function setOptions(select, values, keep) {
  const current = keep && values.includes(select.value) ? select.value : null;
  const same = [...select.options].map((o) => o.value).join("\n") === values.join("\n");
  if (!same) {
    select.replaceChildren(...values.map((v) => {
      const option = document.createElement("option");
      option.value = v;
      option.textContent = v;
      return option;
    }));
  }
  if (current) select.value = current;
  return select.value;
}

// A periodic refresh and a change of model can overlap: only the answer to the latest
// request is drawn, so a slow answer for the previous model never overwrites the chosen one.
let clinicalRequest = 0;
let clinicalAskedAt = -Infinity;

async function refreshClinical() {
  const model = $("clinical-model").value;
  const request = ++clinicalRequest;
  clinicalAskedAt = Date.now();
  if (!model) {
    clinical.PANELS.forEach((n) => panels.setState(n, "empty"));
    return;
  }
  try {
    const answer = await api(`/performance/clinical?model=${encodeURIComponent(model)}`);
    if (request !== clinicalRequest) return;
    const shown = clinical.renderClinical(answer, $("clinical-class").value || null);
    setOptions($("clinical-class"), answer.classes, false);
    $("clinical-class").value = shown;
    $("clinical-window").textContent =
      `${answer.model} ${answer.version} · last ${answer.hours} h, until ${clock(answer.until)} UTC`;
  } catch (err) {
    if (request !== clinicalRequest) return;
    clinical.PANELS.forEach((n) => panels.setState(n, "error"));
    throw err;
  }
}

async function refresh() {
  const results = await Promise.allSettled(SOURCES.map(([path]) => api(path)));
  const failures = [];
  results.forEach((result, i) => {
    const [path, render, names] = SOURCES[i];
    if (result.status === "rejected") {
      failures.push(result.reason);
      names.forEach((n) => panels.setState(n, "error"));
      return;
    }
    try {
      render(result.value);
    } catch (err) {
      failures.push(new Error(`${path}: ${err.message}`));
      names.forEach((n) => panels.setState(n, "error"));
    }
  });
  const health = results[SOURCES.findIndex(([path]) => path === "/health")];
  const model = $("clinical-model").value;
  if (health.status === "fulfilled") setOptions($("clinical-model"), health.value.models, true);
  if ($("clinical-model").value !== model || Date.now() - clinicalAskedAt >= CLINICAL_REFRESH_MS) {
    await refreshClinical().catch((err) => failures.push(err));
  }
  if (failures.some((f) => f instanceof AuthError)) {
    logout(failures.find((f) => f instanceof AuthError).message);
    return;
  }
  report(failures);
}

function report(failures) {
  const now = new Date().toLocaleTimeString();
  $("refresh-status").textContent = failures.length
    ? `updated ${now} — ${failures.length} source(s) failed: ${failures[0].message}`
    : `updated ${now}`;
}

const clock = (iso) => new Date(iso).toISOString().slice(11, 16);

function show(loggedIn) {
  $("login").hidden = loggedIn;
  $("panels").hidden = !loggedIn;
  $("logout").hidden = !loggedIn;
}

async function start() {
  show(true);
  await refresh();
  if (sessionStorage.getItem(KEY_NAME)) timer = setInterval(refresh, REFRESH_MS);
}

function logout(message = "") {
  clearInterval(timer);
  timer = null;
  sessionStorage.removeItem(KEY_NAME);
  panels.resetPanels();
  clinicalAskedAt = -Infinity;
  $("clinical-model").replaceChildren();
  $("clinical-class").replaceChildren();
  $("clinical-window").textContent = "";
  show(false);
  $("login-error").textContent = message;
  $("refresh-status").textContent = "not connected";
}

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = $("api-key");
  sessionStorage.setItem(KEY_NAME, input.value.trim());
  input.value = "";
  $("login-error").textContent = "";
  start();
});
$("logout").addEventListener("click", () => logout());
for (const id of ["clinical-model", "clinical-class"]) {
  $(id).addEventListener("change", () => {
    if (id === "clinical-model") $("clinical-class").value = "";
    refreshClinical().then(() => report([]), (err) => report([err]));
  });
}

if (sessionStorage.getItem(KEY_NAME)) start();
else show(false);
