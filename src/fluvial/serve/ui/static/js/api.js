// The HTTP API (/api/…) from the browser: JSON in and out, errors as ApiError.
// Every request carries the API key kept in localStorage (Authorization: Bearer …); a 401
// answer fires a "fluvial:unauthorized" event on window, on which the shell asks for a key.

/** Where the browser keeps the user's API key. */
export const KEY_STORAGE = "fluvial.apiKey";

/** The stored API key, or "". */
export function apiKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return "";
  }
}

/** Keep (or, with "", forget) the API key. */
export function setApiKey(key) {
  if (key) localStorage.setItem(KEY_STORAGE, key);
  else localStorage.removeItem(KEY_STORAGE);
}

/** The headers every API request sends: *extra* and the Authorization header. */
export function authHeaders(extra = {}) {
  const key = apiKey();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : { ...extra };
}

/** An error answer of the API: its type (`error`), message and HTTP status. */
export class ApiError extends Error {
  constructor(status, error, message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.error = error;
  }
}

// Integers beyond 2^53 (snapshot ids, big sums) stay exact: the parser hands us their text.
function reviver(key, value, context) {
  if (typeof value === "number" && !Number.isSafeInteger(value) && context && /^-?\d+$/.test(context.source || "")) {
    return BigInt(context.source);
  }
  return value;
}

/** Parse JSON keeping large integers as BigInt. */
export function parseJSON(text) {
  return JSON.parse(text, reviver);
}

async function decode(response) {
  const text = await response.text();
  let body = null;
  try {
    body = text ? parseJSON(text) : null;
  } catch {
    body = null;
  }
  if (!response.ok) {
    if (response.status === 401) window.dispatchEvent(new CustomEvent("fluvial:unauthorized"));
    const message = (body && body.message) || text || response.statusText;
    throw new ApiError(response.status, (body && body.error) || `HTTP ${response.status}`, message);
  }
  return body;
}

/** GET a JSON document. */
export async function getJSON(path, { signal } = {}) {
  const response = await fetch(path, { headers: authHeaders({ Accept: "application/json" }), signal });
  return decode(response);
}

/** Send a JSON body (POST by default) and read the JSON answer. */
export async function sendJSON(path, body, { method = "POST", signal } = {}) {
  const response = await fetch(path, {
    method,
    headers: authHeaders({ "Content-Type": "application/json", Accept: "application/json" }),
    body: JSON.stringify(body),
    signal,
  });
  return decode(response);
}

/** Run one query over the lake: {columns, rows, row_count, truncated, elapsed_ms}. */
export function runSql(sql, { limit = 1000, signal } = {}) {
  return sendJSON("/api/sql", { sql, limit }, { signal });
}

/** The same query's result as CSV (a Blob). */
export async function sqlCsv(sql, { limit = 1000 } = {}) {
  const response = await fetch("/api/sql?format=csv", {
    method: "POST",
    headers: authHeaders({ "Content-Type": "application/json", Accept: "text/csv" }),
    body: JSON.stringify({ sql, limit }),
  });
  if (!response.ok) await decode(response);
  return response.blob();
}

/** Whether an error says a table is missing (a mart not built yet, say). */
export function isMissingTable(err) {
  return err instanceof ApiError && /does not exist/i.test(err.message) && /(table|schema|catalog)/i.test(err.message);
}

/**
 * Prometheus text (/metrics) as [{name, labels, value}]: only what the live page reads.
 */
export function parsePrometheus(text) {
  const out = [];
  const line = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)/;
  const label = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
  for (const raw of text.split("\n")) {
    if (!raw || raw.startsWith("#")) continue;
    const m = line.exec(raw);
    if (!m) continue;
    const labels = {};
    if (m[3]) for (const l of m[3].matchAll(label)) labels[l[1]] = l[2].replace(/\\(.)/g, "$1");
    out.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return out;
}

/** Row arrays of a {columns, rows} result as objects by column name. */
export function records(result) {
  const names = result.columns.map((c) => c.name);
  return result.rows.map((r) => Object.fromEntries(names.map((n, i) => [n, r[i]])));
}
