// Nexus ML dashboard: asks for a monitor key, then polls the monitoring API every 10 s.
// The key lives in sessionStorage only (gone when the tab closes) and travels in the
// Authorization header, never in a URL, so it cannot leak into logs or history.

import * as panels from "./panels.js";

const API = "/api/v1/monitoring";
const KEY_NAME = "nexus-ml.monitor-key";
const REFRESH_MS = 10_000;

// Which endpoint feeds which panels.
const SOURCES = [
  ["/health", panels.renderHealth, ["health"]],
  ["/performance/system", panels.renderSystem, ["cpu", "memory"]],
  ["/alerts", panels.renderAlerts, ["alerts"]],
  ["/metrics/predictions/timeline?hours=1&step_seconds=60", panels.renderRequests, ["requests"]],
  ["/metrics/predictions?hours=24", panels.renderPredictions, ["latency", "confidence"]],
  ["/performance/models", panels.renderAccuracy, ["accuracy"]],
  ["/metrics/training?hours=168", panels.renderTraining, ["training"]],
  ["/metrics/summary", panels.renderSummary, ["errors", "database"]],
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
  if (failures.some((f) => f instanceof AuthError)) {
    logout(failures.find((f) => f instanceof AuthError).message);
    return;
  }
  const now = new Date().toLocaleTimeString();
  $("refresh-status").textContent = failures.length
    ? `updated ${now} — ${failures.length} source(s) failed: ${failures[0].message}`
    : `updated ${now}`;
}

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

if (sessionStorage.getItem(KEY_NAME)) start();
else show(false);
