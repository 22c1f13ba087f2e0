// How values are written on screen. Tests mirror these rules, so keep them simple:
// null → "—"; integers grouped ("12,345"); other numbers grouped with at most three
// decimals; booleans "true"/"false"; objects as JSON; strings as they are.

const INT = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const DEC = new Intl.NumberFormat("en-US", { maximumFractionDigits: 3 });

export const NONE = "—";

export function fmt(value) {
  if (value === null || value === undefined) return NONE;
  if (typeof value === "bigint") return INT.format(value);
  if (typeof value === "number") {
    if (!Number.isFinite(value)) return String(value);
    return Number.isInteger(value) ? INT.format(value) : DEC.format(value);
  }
  if (typeof value === "boolean") return value ? "true" : "false";
  if (typeof value === "object") return JSON.stringify(value, (k, v) => (typeof v === "bigint" ? v.toString() : v));
  return String(value);
}

/** Seconds as "850 ms", "12.3 s", "4 min 5 s", "2 h 3 min", "3 d 4 h". */
export function duration(seconds) {
  if (seconds === null || seconds === undefined) return NONE;
  const s = Number(seconds);
  const sign = s < 0 ? "-" : "";
  const a = Math.abs(s);
  if (a < 1) return `${sign}${Math.round(a * 1000)} ms`;
  if (a < 60) return `${sign}${DEC.format(Math.round(a * 10) / 10)} s`;
  if (a < 3600) return `${sign}${Math.floor(a / 60)} min ${Math.floor(a % 60)} s`;
  if (a < 86400) return `${sign}${Math.floor(a / 3600)} h ${Math.floor((a % 3600) / 60)} min`;
  return `${sign}${Math.floor(a / 86400)} d ${Math.floor((a % 86400) / 3600)} h`;
}

/** Bytes as "512 B", "1.5 KiB", "3.2 MiB". */
export function bytes(n) {
  if (n === null || n === undefined) return NONE;
  let v = Number(n);
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return i === 0 ? `${v} B` : `${DEC.format(Math.round(v * 10) / 10)} ${units[i]}`;
}

/** A share as a percentage: 0.1234 → "12.3%". */
export function percent(x) {
  if (x === null || x === undefined) return NONE;
  return `${DEC.format(Math.round(Number(x) * 1000) / 10)}%`;
}

/** An ISO time shortened for tables: "2026-03-01 12:03:00" (UTC offset and ms dropped). */
export function when(iso) {
  if (!iso) return NONE;
  return String(iso).replace("T", " ").replace(/\.\d+/, "").replace(/(Z|[+-]00:00)$/, "");
}

/** Whether an Arrow type name is numeric. */
export function isNumericType(type) {
  return /^(u?int\d+|int|float|double|halffloat|decimal)/.test(type || "");
}

/** Whether an Arrow type name is a time or date. */
export function isTemporalType(type) {
  return /^(timestamp|date|time)/.test(type || "");
}
