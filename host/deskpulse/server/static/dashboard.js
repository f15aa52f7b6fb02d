// DeskPulse dashboard: local times, and the overview's live figures (docs/dashboard.md).
// No library, no build: the server renders every page; this only refreshes numbers.
"use strict";

const DASH = "\u2013";
const FORMATS = {
  count: (v) => (v === null || v === undefined ? DASH : v.toLocaleString("en-US")),
  pct: (v) => (v === null || v === undefined ? DASH : (100 * v).toFixed(1) + "%"),
  time: (v) => (v === null || v === undefined ? DASH : localTime(v)),
  list: (v) => (v ? v.join(", ") : ""),
};

function pad(n) {
  return String(n).padStart(2, "0");
}

function localTime(unix) {
  const d = new Date(unix * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function showLocalTimes(root) {
  for (const t of root.querySelectorAll("time[data-unix]")) {
    t.textContent = localTime(Number(t.dataset.unix));
  }
}

function pick(object, path) {
  return path.split(".").reduce((o, k) => (o === null || o === undefined ? o : o[k]), object);
}

function apply(data) {
  const rows = new Map(data.rows.map((r) => [r.key, r]));
  const shown = document.querySelectorAll("tr[data-row]");
  if (shown.length !== rows.size || [...shown].some((tr) => !rows.has(tr.dataset.row))) {
    location.reload(); // a site or kiosk came or went: the server lays the table out
    return;
  }
  for (const cell of document.querySelectorAll("[data-field]")) {
    const holder = cell.closest("[data-row]");
    const key = holder ? holder.dataset.row : "";
    const source = key === "" ? data.total : rows.get(key);
    const format = FORMATS[cell.dataset.format] || String;
    const period = cell.dataset.field.split(".")[0];
    let value = pick(source, cell.dataset.field);
    if (value === undefined && (period === "today" || period === "week")) {
      value = cell.dataset.field.endsWith("responses") ? 0 : null;
    }
    const text = format(value);
    if (cell.textContent !== text) {
      cell.textContent = text;
      cell.classList.add("changed");
      setTimeout(() => cell.classList.remove("changed"), 1500);
    }
  }
}

// At most one refetch in flight and one a second, however many events arrive.
const REFETCH_GAP_MS = 1000;
let fetching = false;
let again = false;
let last = 0;

async function refresh() {
  if (fetching) {
    again = true;
    return;
  }
  const wait = last + REFETCH_GAP_MS - Date.now();
  if (wait > 0) {
    fetching = true;
    setTimeout(() => { fetching = false; refresh(); }, wait);
    return;
  }
  fetching = true;
  again = false;
  last = Date.now();
  try {
    const answer = await fetch("/api/overview" + location.search, {
      headers: { Accept: "application/json" }, credentials: "same-origin" });
    if (answer.ok) {
      apply(await answer.json());
      document.body.dataset.updated = String(Date.now());
    }
  } finally {
    fetching = false;
    if (again) refresh();
  }
}

function live() {
  const status = document.createElement("p");
  status.className = "live";
  status.dataset.testid = "live-status";
  status.textContent = "connecting\u2026";
  document.querySelector("main").prepend(status);
  const events = new EventSource("/events");
  events.addEventListener("open", () => { status.textContent = "live"; refresh(); });
  events.addEventListener("error", () => { status.textContent = "reconnecting\u2026"; });
  // Each push event is followed by the overview as it now is: no refetch needed.
  events.addEventListener("overview", (event) => {
    apply(JSON.parse(event.data));
    document.body.dataset.updated = String(Date.now());
  });
}

document.addEventListener("DOMContentLoaded", () => {
  showLocalTimes(document);
  if (document.body.dataset.live === "overview") live();
});
