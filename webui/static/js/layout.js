// Shared by every page: the message banner, the API key box and the index version.

import { api, apiKey, setApiKey } from "./api.js";

const banner = document.getElementById("message");

export function showMessage(text, tone = "error") {
  banner.textContent = text;
  banner.dataset.tone = tone;
  banner.hidden = false;
}

export function clearMessage() {
  banner.hidden = true;
  banner.textContent = "";
}

// Show an ApiError; a 401 also opens the key box so the fix is one step away.
export function showError(error) {
  showMessage(error.message || String(error));
  if (error.kind === "auth") openKeyBox();
}

export function openKeyBox() {
  const box = document.getElementById("key-box");
  box.open = true;
  document.getElementById("key-input").focus();
}

export function onKeyChange(callback) {
  document.addEventListener("lookalike:key", callback);
}

function setupKeyBox() {
  const form = document.getElementById("key-form");
  const input = document.getElementById("key-input");
  const box = document.getElementById("key-box");
  if (apiKey()) box.querySelector("summary").textContent = "API key (set)";
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    setApiKey(input.value.trim());
    input.value = "";
    box.open = false;
    box.querySelector("summary").textContent = apiKey() ? "API key (set)" : "API key";
    clearMessage();
    refreshVersion();
    document.dispatchEvent(new CustomEvent("lookalike:key"));
  });
  document.getElementById("key-clear").addEventListener("click", () => {
    setApiKey("");
    box.querySelector("summary").textContent = "API key";
  });
}

export async function refreshVersion() {
  const out = document.getElementById("index-version");
  try {
    const { body } = await api("/api/v1/stats");
    const index = body.index;
    out.textContent = index ? `index ${index.version} · ${index.vectors} vectors` : "no index yet";
    out.title = index ? `model ${index.model_version}` : "";
  } catch (error) {
    const why = { auth: "needs a key", unreachable: "API unreachable" }[error.kind];
    out.textContent = `index: ${why || "unknown"}`;
  }
}

setupKeyBox();
refreshVersion();
