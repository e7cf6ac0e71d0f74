// The JSON API as the pages use it: one fetch wrapper that turns every failure
// into an ApiError whose message a person can read.

const KEY_STORAGE = "lookalike.apiKey";

export class ApiError extends Error {
  // kind: "unreachable", "auth", "not-ready", "not-found" or "problem"
  constructor(kind, message, status = 0, field = null) {
    super(message);
    this.kind = kind;
    this.status = status;
    this.field = field;
  }
}

export function apiKey() {
  try {
    return sessionStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return "";
  }
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
}

// Fetch an API path; resolves to {status, body, headers}, rejects with ApiError.
// `accept` lists extra non-error statuses the caller handles itself (e.g. 202).
export async function api(path, { method = "GET", body, json, accept = [] } = {}) {
  const headers = { Accept: "application/json" };
  const key = apiKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(path, { method, body, headers, credentials: "same-origin" });
  } catch {
    throw new ApiError(
      "unreachable",
      "Cannot reach the Lookalike API: the server is down or the network is out. " +
        "Try again in a moment.",
    );
  }
  const data = await readBody(response);
  if (response.ok || accept.includes(response.status)) {
    return { status: response.status, body: data, headers: response.headers };
  }
  throw problemError(response, data);
}

async function readBody(response) {
  const type = response.headers.get("Content-Type") || "";
  if (!type.includes("json")) return null;
  try {
    return await response.json();
  } catch {
    return null;
  }
}

function problemError(response, data) {
  const status = response.status;
  const detail = data && typeof data.detail === "string" ? data.detail : null;
  const field = data && typeof data.field === "string" ? data.field : null;
  if (status === 401) {
    return new ApiError(
      "auth",
      `The API wants a key: ${detail || "unauthorised"}. Enter it under “API key” above.`,
      status,
      field,
    );
  }
  if (status === 503) {
    return new ApiError(
      "not-ready",
      "No index yet: add images and wait for indexing, then try again." +
        (detail ? ` (The API says: ${detail})` : ""),
      status,
      field,
    );
  }
  if (status === 404) {
    return new ApiError("not-found", detail || "not found", status, field);
  }
  if (detail) return new ApiError("problem", detail, status, field);
  if (status === 502 || status === 504) {
    return new ApiError(
      "unreachable",
      `Cannot reach the Lookalike API (the gateway answered ${status}). Try again in a moment.`,
      status,
    );
  }
  return new ApiError("problem", `The API answered ${status} ${response.statusText}`.trim(), status);
}
