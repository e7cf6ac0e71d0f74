// The search page: a query (file, pasted image, URL or item) → a grid of similar items.
// The URL holds an item query and the options (/?item=<id>&group=1&min_score=0.5),
// so back/forward and shared links repeat the search. A box dragged on the preview
// searches by that region of the photo (the API's `box`) until it is cleared. "Why?" on
// a result shows where its similarity to the query comes from (why.js).

import { api, ApiError } from "./api.js";
import { clearMessage, onKeyChange, showError } from "./layout.js";
import { MIN_SIDE, RegionPicker } from "./region.js";
import { WhyPanel } from "./why.js";

const form = document.getElementById("search-form");
const fileInput = document.getElementById("file");
const drop = document.getElementById("drop");
const urlInput = document.getElementById("image-url");
const groupInput = document.getElementById("group");
const minScoreInput = document.getElementById("min-score");
const kInput = document.getElementById("k");
const preview = document.getElementById("preview");
const previewImg = document.getElementById("preview-img");
const previewCaption = document.getElementById("preview-caption");
const previewStage = document.getElementById("preview-stage");
const regionBar = document.getElementById("region-bar");
const regionHint = document.getElementById("region-hint");
const regionClear = document.getElementById("region-clear");
const results = document.getElementById("results");
const info = document.getElementById("results-info");
const why = new WhyPanel(document.getElementById("why"));

let lastQuery = null; // {kind: "file"|"url"|"item", value}
let previewUrl = null; // an object URL to revoke when the preview changes
let sequence = 0; // answers to superseded searches are dropped
let region = null; // [x0, y0, x1, y1] in the query photo's pixels, or null: the whole photo

const DRAG_HINT = "Drag on the photo to search by a region";
const picker = new RegionPicker(previewImg, document.getElementById("region"), {
  onPick: (box) => {
    region = box;
    showRegion();
    if (lastQuery) run(lastQuery);
  },
  onTooSmall: () => {
    regionHint.textContent = `Drag a larger box: at least ${MIN_SIDE}×${MIN_SIDE} pixels of the photo`;
  },
});

function setState(state) {
  document.body.dataset.searchState = state;
}

function options() {
  const chosen = { k: clampK(kInput.value) };
  const min = minScoreInput.value.trim();
  if (min !== "") chosen.min_score = Number(min);
  if (groupInput.checked) chosen.group_by_product = true;
  return chosen;
}

// The bound is the page's k input's max, which the server sets from the API's setting.
const maxK = Number(kInput.max);
const defaultK = Number(kInput.defaultValue);

function clampK(value) {
  const k = Math.round(Number(value));
  return Number.isFinite(k) ? Math.min(maxK, Math.max(1, k)) : defaultK;
}

function showPreview(query) {
  if (previewUrl) URL.revokeObjectURL(previewUrl);
  previewUrl = null;
  preview.hidden = false;
  regionBar.hidden = query.kind === "url";
  picker.setSize(query.kind === "file" ? "natural" : null);
  if (query.kind === "file") {
    previewUrl = URL.createObjectURL(query.value);
    previewImg.src = previewUrl;
    previewImg.hidden = false;
    previewImg.alt = "your photo";
    previewCaption.textContent = query.value.name || "pasted image";
  } else if (query.kind === "item") {
    previewImg.src = `/api/v1/items/${encodeURIComponent(query.value)}/thumbnail`;
    previewImg.hidden = false;
    previewImg.alt = "the catalogue item searched from";
    previewCaption.textContent = `item ${query.value.slice(0, 12)}…`;
    originalSize(query);
  } else {
    // Foreign images are not loaded here (the page's policy allows this site's images
    // only); the API fetches the URL itself.
    previewImg.hidden = true;
    previewImg.removeAttribute("src");
    previewCaption.textContent = `image at ${query.value}`;
  }
}

// The preview of an item is its thumbnail; a box is in its stored original's pixels.
async function originalSize(query) {
  let size = null;
  try {
    const { body } = await api(`/api/v1/items/${encodeURIComponent(query.value)}`);
    if (body.width && body.height) size = [body.width, body.height];
  } catch {
    // the search itself reports what is wrong with the item
  }
  if (query !== lastQuery) return;
  if (size) picker.setSize(size);
  else regionHint.textContent = "This item's size is unknown: no region search";
}

// The box over the preview, its hint, and the control that clears it.
function showRegion() {
  picker.show(region);
  regionClear.hidden = region === null;
  regionHint.textContent = region
    ? `Searching the region ${region[0]},${region[1]} – ${region[2]},${region[3]} px`
    : DRAG_HINT;
}

function clearRegion() {
  if (region === null) return;
  region = null;
  showRegion();
  if (lastQuery) run(lastQuery);
}

async function run(query, { push = true } = {}) {
  if (query !== lastQuery) {
    // A new photo: its preview, and no box yet (a box belongs to the photo it was drawn on).
    lastQuery = query;
    region = null;
    showPreview(query);
    showRegion();
  }
  const mine = ++sequence;
  setState("searching");
  info.textContent = "Searching…";
  results.setAttribute("aria-busy", "true");
  if (push) updateUrl(query);
  why.close();
  try {
    const { body } = await api("/api/v1/search", queryRequest(query, options()));
    if (mine !== sequence) return;
    clearMessage();
    render(body);
    setState("done");
  } catch (error) {
    if (mine !== sequence) return;
    results.replaceChildren();
    info.textContent = "No results.";
    showError(error instanceof ApiError ? error : new ApiError("problem", String(error)));
    setState("error");
  } finally {
    if (mine === sequence) results.removeAttribute("aria-busy");
  }
}

// The API request for `query` (and its box, if any) with `fields` beside it: the same
// for /search and /explain, which read the query alike.
function queryRequest(query, fields) {
  if (query.kind === "file") {
    const data = new FormData();
    data.append("image", query.value, query.value.name || "pasted.png");
    for (const [name, value] of Object.entries(fields)) data.append(name, String(value));
    if (region) data.append("box", region.join(","));
    return { method: "POST", body: data };
  }
  const field = query.kind === "item" ? "item_id" : "image_url";
  const json = { [field]: query.value, ...fields };
  if (region) json.box = region;
  return { method: "POST", json };
}

function updateUrl(query) {
  const params = new URLSearchParams();
  if (query.kind === "item") params.set("item", query.value);
  if (groupInput.checked) params.set("group", "1");
  if (minScoreInput.value.trim() !== "") params.set("min_score", minScoreInput.value.trim());
  if (kInput.value && clampK(kInput.value) !== defaultK) params.set("k", String(clampK(kInput.value)));
  const url = params.toString() ? `/?${params}` : "/";
  if (url !== `${location.pathname}${location.search}`) history.pushState(null, "", url);
}

function render(body) {
  why.close();
  const items = body.results.map(resultCard);
  results.replaceChildren(...items);
  const count = body.results.length;
  info.textContent =
    count === 0
      ? "Nothing similar enough (try a lower min score)."
      : `${count} result${count === 1 ? "" : "s"} ${body.box ? "for the region " : ""}` +
        `in ${Math.round(body.took_ms)} ms ` +
        `· index ${body.index_version} · model ${body.model_version}`;
}

// Every catalogue value goes in as text: a title can never become markup.
function resultCard(hit) {
  const li = document.createElement("li");
  const link = document.createElement("a");
  link.className = "result";
  link.href = `/?item=${encodeURIComponent(hit.item_id)}`;
  link.dataset.item = hit.item_id;
  const name = hit.title || hit.product_id || `item ${hit.item_id.slice(0, 12)}`;
  link.setAttribute("aria-label", `${name}, score ${hit.score.toFixed(3)}: search from this`);

  const img = document.createElement("img");
  img.src = hit.thumbnail_url;
  img.alt = name;
  img.loading = "lazy";
  img.decoding = "async";

  const score = document.createElement("span");
  score.className = "score";
  score.textContent = hit.score.toFixed(3);

  const title = document.createElement("span");
  title.className = "title";
  title.textContent = hit.title || "(no title)";

  const meta = document.createElement("span");
  meta.className = "meta";
  const parts = [];
  if (hit.label) parts.push(hit.label);
  if (hit.product_id) parts.push(`#${hit.product_id}`);
  meta.textContent = parts.join(" · ");

  link.append(img, score, title, meta);
  // A button beside the link, not in it: a control inside a link is not reachable alone.
  const explain = document.createElement("button");
  explain.type = "button";
  explain.className = "why-toggle";
  explain.textContent = "Why?";
  explain.setAttribute("aria-expanded", "false");
  explain.setAttribute("aria-controls", "why");
  explain.setAttribute("aria-label", `Why does ${name} look like the query?`);
  const query = lastQuery;
  const queryImage = previewImg.src && !preview.hidden ? previewImg : null;
  explain.addEventListener("click", () =>
    why.toggle(explain, hit, (id) => queryRequest(query, { result_item_id: id }), queryImage),
  );
  li.append(link, explain);
  return li;
}

function fromUrl({ push = false } = {}) {
  const params = new URLSearchParams(location.search);
  groupInput.checked = params.get("group") === "1";
  minScoreInput.value = params.get("min_score") || "";
  if (params.get("k")) kInput.value = params.get("k");
  const item = params.get("item");
  if (item) {
    run({ kind: "item", value: item }, { push });
  } else if (lastQuery && lastQuery.kind === "item") {
    lastQuery = null; // back to the blank page
    region = null;
    showRegion();
    results.replaceChildren();
    preview.hidden = true;
    info.textContent = "Search with a photo to see similar products.";
    setState("idle");
  }
}

function takeFile(file) {
  if (!file) return;
  if (file.type && !file.type.startsWith("image/")) {
    showError(new ApiError("problem", `${file.name} is not an image (${file.type}).`));
    return;
  }
  run({ kind: "file", value: file });
}

fileInput.addEventListener("change", () => {
  takeFile(fileInput.files[0]);
  fileInput.value = ""; // choosing the same file again searches again
});

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const url = urlInput.value.trim();
  if (url) run({ kind: "url", value: url });
  else if (lastQuery) run(lastQuery);
  else urlInput.focus();
});

for (const input of [groupInput, minScoreInput, kInput]) {
  input.addEventListener("change", () => {
    if (lastQuery) run(lastQuery);
  });
}

// Clicking a result searches from it in place; a new tab (middle click) follows the link.
results.addEventListener("click", (event) => {
  const link = event.target.closest("a.result");
  if (!link || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
  event.preventDefault();
  run({ kind: "item", value: link.dataset.item });
  window.scrollTo({ top: 0, behavior: "smooth" });
});

for (const name of ["dragenter", "dragover"]) {
  drop.addEventListener(name, (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
}
for (const name of ["dragleave", "drop"]) {
  drop.addEventListener(name, () => drop.classList.remove("over"));
}
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  const file = event.dataTransfer.files[0];
  if (file) takeFile(file);
  else {
    const url = event.dataTransfer.getData("text/uri-list") || event.dataTransfer.getData("text");
    if (url) {
      urlInput.value = url.trim();
      run({ kind: "url", value: url.trim() });
    }
  }
});
drop.addEventListener("keydown", (event) => {
  if (event.key === "Enter" || event.key === " ") {
    event.preventDefault();
    fileInput.click();
  }
});

// Paste an image (or an image URL) anywhere on the page outside a text field.
document.addEventListener("paste", (event) => {
  const target = event.target;
  if (target instanceof HTMLInputElement && target.type !== "file") return;
  const items = [...(event.clipboardData?.items || [])];
  const image = items.find((item) => item.kind === "file" && item.type.startsWith("image/"));
  if (image) {
    event.preventDefault();
    takeFile(image.getAsFile());
    return;
  }
  const text = event.clipboardData?.getData("text")?.trim();
  if (text && /^https?:\/\//i.test(text)) {
    event.preventDefault();
    urlInput.value = text;
    run({ kind: "url", value: text });
  }
});

regionClear.addEventListener("click", () => {
  clearRegion();
  previewStage.focus(); // the button hides with the box: keep the focus near it
});
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && region !== null && !event.defaultPrevented) clearRegion();
});

window.addEventListener("popstate", () => fromUrl());
onKeyChange(() => {
  if (lastQuery) run(lastQuery, { push: false });
});

setState("idle");
fromUrl();
