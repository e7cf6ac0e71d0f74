// The map page: the catalogue's t-SNE map (GET /api/v1/map) drawn on a canvas.
// Colour by cluster or label, thumbnail on hover, wheel to zoom, drag to pan,
// click a point to search from it. While the map is being computed (202) the page polls.

import { api } from "./api.js";
import { clearMessage, onKeyChange, showError } from "./layout.js";

const canvas = document.getElementById("map");
const wrap = document.getElementById("map-wrap");
const info = document.getElementById("map-info");
const staleNote = document.getElementById("map-stale");
const tip = document.getElementById("map-tip");
const tipImg = document.getElementById("map-tip-img");
const tipText = document.getElementById("map-tip-text");
const legend = document.getElementById("map-legend");
const context = canvas.getContext("2d");

const PAD = 24; // CSS pixels around the points' bounding box
const RADIUS = 5;
const HIT = 9; // how near (CSS pixels) the pointer must be to pick a point
const CLICK_SLOP = 4; // a press that moved further is a drag, not a click
const MIN_SCALE = 0.5;
const MAX_SCALE = 40;

let points = [];
let bounds = { x0: 0, y0: 0, x1: 1, y1: 1 }; // the points' extent, fitted to the canvas
let colourBy = "cluster";
let colours = [];
let view = { scale: 1, x: 0, y: 0 }; // screen = base * scale + offset
let hovered = -1;
let drag = null;
let pollTimer = null;

function palette(count) {
  // Evenly spread hues, alternating lightness so neighbours differ.
  return Array.from({ length: count }, (_, i) => {
    const hue = Math.round((i * 360) / Math.max(count, 1) + (i % 2) * 17) % 360;
    return `hsl(${hue} 70% ${i % 2 ? 42 : 55}%)`;
  });
}

function groups() {
  const key = colourBy === "label" ? (p) => p.label ?? "(no label)" : (p) => `cluster ${p.cluster}`;
  const names = [...new Set(points.map(key))].sort((a, b) =>
    a.localeCompare(b, undefined, { numeric: true }),
  );
  const colourOf = new Map(names.map((name, i) => [name, palette(names.length)[i]]));
  colours = points.map((p) => colourOf.get(key(p)));
  return colourOf;
}

function renderLegend(colourOf) {
  const entries = [...colourOf.entries()].slice(0, 40);
  legend.replaceChildren(
    ...entries.map(([name, colour]) => {
      const li = document.createElement("li");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = colour;
      const text = document.createElement("span");
      text.textContent = name;
      li.append(swatch, text);
      return li;
    }),
  );
}

function size() {
  const ratio = window.devicePixelRatio || 1;
  const width = wrap.clientWidth;
  const height = Math.max(320, Math.min(window.innerHeight * 0.7, width * 0.75));
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  context.setTransform(ratio, 0, 0, ratio, 0, 0);
  return { width, height };
}

// The extent of the map's points: a wide map fills a wide canvas (aspect kept).
function measure(list) {
  if (!list.length) return { x0: 0, y0: 0, x1: 1, y1: 1 };
  const box = { x0: Infinity, y0: Infinity, x1: -Infinity, y1: -Infinity };
  for (const p of list) { // a loop: 50,000 spread arguments would overflow the stack
    box.x0 = Math.min(box.x0, p.x);
    box.y0 = Math.min(box.y0, p.y);
    box.x1 = Math.max(box.x1, p.x);
    box.y1 = Math.max(box.y1, p.y);
  }
  return box;
}

function base(point) {
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  const spanX = Math.max(bounds.x1 - bounds.x0, 1e-6);
  const spanY = Math.max(bounds.y1 - bounds.y0, 1e-6);
  const unit = Math.min((width - 2 * PAD) / spanX, (height - 2 * PAD) / spanY);
  const left = (width - spanX * unit) / 2;
  const top = (height - spanY * unit) / 2;
  return [left + (point.x - bounds.x0) * unit, top + (bounds.y1 - point.y) * unit];
}

function toScreen(point) {
  const [bx, by] = base(point);
  return [bx * view.scale + view.x, by * view.scale + view.y];
}

function draw() {
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  context.clearRect(0, 0, width, height);
  let visible = 0;
  points.forEach((point, i) => {
    const [x, y] = toScreen(point);
    if (x < -RADIUS || y < -RADIUS || x > width + RADIUS || y > height + RADIUS) return;
    visible += 1;
    context.beginPath();
    context.arc(x, y, i === hovered ? RADIUS * 1.8 : RADIUS, 0, Math.PI * 2);
    context.fillStyle = colours[i];
    context.fill();
    if (i === hovered) {
      context.lineWidth = 2;
      context.strokeStyle = "#111";
      context.stroke();
    }
  });
  canvas.dataset.points = String(points.length);
  canvas.dataset.visible = String(visible);
}

function nearest(clientX, clientY) {
  const rect = canvas.getBoundingClientRect();
  const mx = clientX - rect.left;
  const my = clientY - rect.top;
  let best = -1;
  let bestDistance = HIT * HIT;
  points.forEach((point, i) => {
    const [x, y] = toScreen(point);
    const distance = (x - mx) ** 2 + (y - my) ** 2;
    if (distance <= bestDistance) {
      best = i;
      bestDistance = distance;
    }
  });
  return best;
}

function showTip(index) {
  if (index < 0) {
    tip.hidden = true;
    return;
  }
  const point = points[index];
  tipImg.src = point.thumbnail_url;
  tipImg.alt = point.title || point.product_id || "catalogue item";
  const parts = [point.title, point.label, point.product_id && `#${point.product_id}`];
  tipText.textContent = parts.filter(Boolean).join(" · ") || `item ${point.item_id.slice(0, 12)}`;
  const [x, y] = toScreen(point);
  const left = Math.min(x + 12, canvas.clientWidth - 170);
  tip.style.left = `${Math.max(0, left)}px`;
  tip.style.top = `${Math.max(0, y + 12)}px`;
  tip.hidden = false;
}

function zoomAt(factor, sx, sy) {
  const scale = Math.min(MAX_SCALE, Math.max(MIN_SCALE, view.scale * factor));
  const applied = scale / view.scale;
  view = { scale, x: sx - (sx - view.x) * applied, y: sy - (sy - view.y) * applied };
  draw();
}

function searchFrom(index) {
  location.assign(`/?item=${encodeURIComponent(points[index].item_id)}`);
}

canvas.addEventListener("wheel", (event) => {
  event.preventDefault();
  const rect = canvas.getBoundingClientRect();
  zoomAt(Math.exp(-event.deltaY * 0.002), event.clientX - rect.left, event.clientY - rect.top);
  showTip(-1);
}, { passive: false });

canvas.addEventListener("pointerdown", (event) => {
  drag = { x: event.clientX, y: event.clientY, viewX: view.x, viewY: view.y, moved: false };
  canvas.setPointerCapture(event.pointerId);
});

canvas.addEventListener("pointermove", (event) => {
  if (drag) {
    const dx = event.clientX - drag.x;
    const dy = event.clientY - drag.y;
    if (Math.hypot(dx, dy) > CLICK_SLOP) drag.moved = true;
    if (drag.moved) {
      view.x = drag.viewX + dx;
      view.y = drag.viewY + dy;
      showTip(-1);
      draw();
      return;
    }
  }
  const index = nearest(event.clientX, event.clientY);
  if (index !== hovered) {
    hovered = index;
    canvas.style.cursor = index >= 0 ? "pointer" : "grab";
    draw();
    showTip(index);
  }
});

canvas.addEventListener("pointerup", (event) => {
  const wasDrag = drag && drag.moved;
  drag = null;
  if (wasDrag) return;
  const index = nearest(event.clientX, event.clientY);
  if (index >= 0) searchFrom(index);
});

canvas.addEventListener("pointerleave", () => {
  hovered = -1;
  showTip(-1);
  draw();
});

canvas.addEventListener("keydown", (event) => {
  const step = 40;
  const moves = { ArrowLeft: [step, 0], ArrowRight: [-step, 0], ArrowUp: [0, step],
                  ArrowDown: [0, -step] };
  if (moves[event.key]) {
    view.x += moves[event.key][0];
    view.y += moves[event.key][1];
    draw();
  } else if (event.key === "+" || event.key === "=") {
    zoomAt(1.25, canvas.clientWidth / 2, canvas.clientHeight / 2);
  } else if (event.key === "-") {
    zoomAt(0.8, canvas.clientWidth / 2, canvas.clientHeight / 2);
  } else if (event.key === "0") {
    resetView();
  } else {
    return;
  }
  event.preventDefault();
});

function resetView() {
  view = { scale: 1, x: 0, y: 0 };
  draw();
}

document.getElementById("map-reset").addEventListener("click", resetView);
document.getElementById("map-reload").addEventListener("click", () => load());
for (const radio of document.querySelectorAll('input[name="colour"]')) {
  radio.addEventListener("change", () => {
    colourBy = radio.value;
    renderLegend(groups());
    draw();
  });
}
window.addEventListener("resize", () => {
  size();
  draw();
});

function describe(body) {
  const when = new Date(body.computed_at);
  const at = Number.isNaN(when.getTime()) ? body.computed_at : when.toLocaleString();
  info.textContent =
    `${body.sampled} of ${body.total} items · ${body.clusters} clusters · ` +
    `index ${body.index_version} · ${body.method} · computed ${at}`;
  if (body.stale) {
    staleNote.textContent =
      `Stale: this map was computed for index ${body.index_version}; the current index is ` +
      `${body.current_index_version}. A new map is on its way.`;
    staleNote.hidden = false;
  } else {
    staleNote.hidden = true;
  }
}

async function load() {
  clearTimeout(pollTimer);
  document.body.dataset.mapState = "loading";
  try {
    const { status, body, headers } = await api("/api/v1/map", { accept: [202] });
    clearMessage();
    if (status === 202) {
      const wait = Math.min(30, Math.max(1, Number(headers.get("Retry-After")) || 3));
      info.textContent = `Computing the map for index ${body.index_version}… ` +
        `(${body.detail || "this takes a minute on a large catalogue"}); checking again in ` +
        `${wait} s.`;
      document.body.dataset.mapState = "pending";
      pollTimer = setTimeout(load, wait * 1000);
      return;
    }
    points = body.points;
    bounds = measure(points);
    describe(body);
    size();
    renderLegend(groups());
    resetView();
    document.body.dataset.mapState = "drawn";
  } catch (error) {
    info.textContent = "No map to show.";
    showError(error);
    document.body.dataset.mapState = "error";
  }
}

// For people with a keyboard or a screen reader, and for tests: where a point is drawn.
window.lookalikeMap = {
  count: () => points.length,
  clientPosition(index) {
    const rect = canvas.getBoundingClientRect();
    const [x, y] = toScreen(points[index]);
    return { x: rect.left + x, y: rect.top + y, item_id: points[index].item_id };
  },
};

onKeyChange(load);
size();
load();
