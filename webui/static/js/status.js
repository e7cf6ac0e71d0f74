// The status page: index, item counts, running and queued jobs, recent failures.
// It refreshes itself every few seconds while the tab is visible.

import { api } from "./api.js";
import { clearMessage, onKeyChange, showError } from "./layout.js";

const REFRESH_MS = 3000;
const info = document.getElementById("status-info");
const facts = document.getElementById("index-facts");
const counts = document.getElementById("item-counts");
const active = document.getElementById("active-jobs");
const failures = document.getElementById("failures");
let timer = null;

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function renderIndex(stats) {
  const index = stats.index;
  const rows = index
    ? [["version", index.version], ["model", index.model_version], ["vectors", index.vectors],
       ["dimension", index.dim], ["type", index.factory || index.index_type],
       ["shards", index.shards], ["created", new Date(index.created).toLocaleString()],
       ["serving", stats.serving_version ?? "not loaded yet"]]
    : [["version", "no index yet: add images and wait for indexing"]];
  facts.replaceChildren(...rows.flatMap(([name, value]) => [el("dt", name), el("dd", value)]));
  const items = Object.entries(stats.items);
  counts.replaceChildren(
    ...items.map(([state, count]) => {
      const row = el("tr");
      row.append(el("th", state), el("td", count));
      row.lastChild.className = "num";
      return row;
    }),
  );
}

function jobTitle(job) {
  return `#${job.id} ${job.kind}` + (job.source ? ` · ${job.source}` : "");
}

function renderActive(jobs) {
  if (jobs.length === 0) {
    active.replaceChildren(el("li", "No job is running or queued.", "empty"));
    return;
  }
  active.replaceChildren(
    ...jobs.map((job) => {
      const li = el("li", undefined, "job");
      li.dataset.job = String(job.id);
      li.dataset.status = job.status;
      const head = el("p", undefined, "job-head");
      head.append(el("span", job.status, `badge ${job.status}`), el("span", jobTitle(job)));
      const done = (job.fetches.done || 0) + (job.fetches.failed || 0);
      const bar = el("progress");
      bar.max = Math.max(job.total || 0, 1);
      bar.value = Math.min(done, bar.max);
      bar.setAttribute("aria-label", `job ${job.id}: ${done} of ${job.total} fetched`);
      li.append(head, bar, el("p", job.summary || job.message || "", "job-summary"));
      return li;
    }),
  );
}

function renderFailures(jobs) {
  const entries = [];
  for (const job of jobs) {
    if (job.status === "failed") entries.push([jobTitle(job), job.message || "the job failed"]);
    for (const failure of job.failures) entries.push([failure.location, failure.reason]);
  }
  if (entries.length === 0) {
    failures.replaceChildren(el("li", "No recent failures.", "empty"));
    return;
  }
  failures.replaceChildren(
    ...entries.slice(0, 30).map(([where, why]) => {
      const li = el("li");
      li.append(el("span", where, "where"), el("span", why, "why"));
      return li;
    }),
  );
}

async function refresh() {
  clearTimeout(timer);
  try {
    const [stats, running, recent] = await Promise.all([
      api("/api/v1/stats"),
      api("/api/v1/jobs?status=running,queued&limit=50"),
      api("/api/v1/jobs?limit=20"),
    ]);
    clearMessage();
    renderIndex(stats.body);
    renderActive(running.body.jobs);
    renderFailures(recent.body.jobs.filter((job) => job.failed > 0 || job.status === "failed"));
    info.textContent = `Updated ${new Date().toLocaleTimeString()}; refreshes every few seconds.`;
    document.body.dataset.statusState = "loaded";
  } catch (error) {
    info.textContent = "Status unavailable.";
    showError(error);
    document.body.dataset.statusState = "error";
  }
  if (!document.hidden) timer = setTimeout(refresh, REFRESH_MS);
}

document.addEventListener("visibilitychange", () => {
  if (!document.hidden) refresh();
});
onKeyChange(refresh);
refresh();
