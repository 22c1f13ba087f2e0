// Charts drawn as inline SVG: a line chart, a bar chart and a heat map.
// Each returns an <svg role="img"> with a <title>, so screen readers get its name; each
// mark carries data-label / data-value and a <title> tooltip.

import { fmt } from "./format.js";

const NS = "http://www.w3.org/2000/svg";
const FONT = 12;

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function frame(kind, title, width, height) {
  const svg = s("svg", {
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    role: "img",
    "aria-label": title,
    class: `chart chart-${kind}`,
    "data-chart": kind,
  });
  svg.append(s("title", {}, title));
  return svg;
}

/** Round numbers for an axis from lo to hi: about `count` steps. */
export function ticks(lo, hi, count = 4) {
  if (!(hi > lo)) {
    hi = lo + 1;
  }
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((st) => st >= raw) || raw;
  const start = Math.floor(lo / step) * step;
  const out = [];
  for (let v = start; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  if (out[out.length - 1] < hi) out.push(Number((out[out.length - 1] + step).toPrecision(12)));
  return out;
}

function toNumber(v) {
  if (v === null || v === undefined || v === "") return null;
  if (typeof v === "bigint") return Number(v);
  if (typeof v === "number") return v;
  if (typeof v === "boolean") return v ? 1 : 0;
  const n = Number(v);
  return Number.isFinite(n) ? n : null;
}

function shortTime(v) {
  const t = String(v);
  const m = /^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2})/.exec(t);
  if (m) return m[2];
  return t.length > 12 ? `${t.slice(0, 11)}…` : t;
}

/**
 * A line chart of one or more series [{name, points: [[x, y], …]}] over the same x
 * values in order (times, dates or categories: x is treated as an ordered label).
 */
export function lineChart(series, { title = "line chart", width = 460, height = 240, yFormat = fmt, xFormat = null } = {}) {
  const svg = frame("line", title, width, height);
  const labels = [];
  const seen = new Map();
  for (const se of series) {
    for (const [x] of se.points) {
      const key = String(x);
      if (!seen.has(key)) {
        seen.set(key, labels.length);
        labels.push(x);
      }
    }
  }
  const ys = series.flatMap((se) => se.points.map((p) => toNumber(p[1]))).filter((v) => v !== null);
  const left = 56;
  const right = 12;
  const top = 12;
  const bottom = series.length > 1 ? 46 : 28;
  const plotW = width - left - right;
  const plotH = height - top - bottom;
  const lo = Math.min(0, ...ys);
  const axis = ticks(lo, Math.max(...ys, lo + 1));
  const y0 = axis[0];
  const y1 = axis[axis.length - 1];
  const y = (v) => top + plotH - ((v - y0) / (y1 - y0 || 1)) * plotH;
  const n = labels.length;
  const x = (i) => left + (n <= 1 ? plotW / 2 : (i / (n - 1)) * plotW);
  const xf = xFormat || shortTime;
  const grid = s("g", { class: "axis" });
  for (const t of axis) {
    grid.append(s("line", { x1: left, x2: width - right, y1: y(t), y2: y(t), class: "gridline" }));
    grid.append(s("text", { x: left - 6, y: y(t) + 4, "text-anchor": "end", "font-size": FONT }, yFormat(t)));
  }
  const every = Math.max(1, Math.ceil(n / 6));
  labels.forEach((lab, i) => {
    if (i % every === 0 || i === n - 1) {
      grid.append(s("text", { x: x(i), y: top + plotH + 16, "text-anchor": "middle", "font-size": FONT }, xf(lab)));
    }
  });
  svg.append(grid);
  series.forEach((se, k) => {
    const g = s("g", { class: `series series-${k % 6}`, "data-series": se.name });
    const pts = se.points
      .map(([px, py]) => [seen.get(String(px)), toNumber(py), px, py])
      .filter((p) => p[1] !== null);
    if (pts.length > 1) {
      g.append(s("polyline", { points: pts.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" "), fill: "none" }));
    }
    for (const [i, v, px, py] of pts) {
      g.append(
        s("circle", { cx: x(i).toFixed(1), cy: y(v).toFixed(1), r: pts.length > 60 ? 1.5 : 3, "data-label": String(px), "data-value": String(py) },
          s("title", {}, `${se.name ? `${se.name} · ` : ""}${px}: ${yFormat(v)}`)),
      );
    }
    svg.append(g);
  });
  if (series.length > 1) {
    const legend = s("g", { class: "legend" });
    let lx = left;
    series.forEach((se, k) => {
      legend.append(s("rect", { x: lx, y: height - 14, width: 10, height: 10, class: `swatch series-${k % 6}` }));
      legend.append(s("text", { x: lx + 14, y: height - 5, "font-size": FONT }, se.name));
      lx += 24 + 7 * String(se.name).length;
    });
    svg.append(legend);
  }
  return svg;
}

/**
 * A bar chart of items [{label, value}]: horizontal bars (labels on the left) by default,
 * columns with `vertical`.
 */
export function barChart(items, { title = "bar chart", width = 460, vertical = false, height = null, format = fmt } = {}) {
  const values = items.map((it) => toNumber(it.value) ?? 0);
  const max = Math.max(0, ...values);
  const min = Math.min(0, ...values);
  if (!vertical) {
    const row = 26;
    const h = height || Math.max(60, items.length * row + 10);
    const svg = frame("bar", title, width, h);
    const labelW = Math.min(220, 16 + 7.2 * Math.max(4, ...items.map((it) => String(it.label).length)));
    const valueW = 80;
    const plotW = width - labelW - valueW;
    const span = max - min || 1;
    const zero = labelW + ((0 - min) / span) * plotW;
    items.forEach((it, i) => {
      const v = values[i];
      const w = (Math.abs(v) / span) * plotW;
      const yy = 5 + i * row;
      const g = s("g", { class: "bar", "data-label": String(it.label), "data-value": String(it.value) }, s("title", {}, `${it.label}: ${format(it.value)}`));
      g.append(s("text", { x: labelW - 8, y: yy + 16, "text-anchor": "end", "font-size": FONT, class: "bar-label" }, String(it.label)));
      g.append(s("rect", { x: v >= 0 ? zero : zero - w, y: yy + 3, width: Math.max(w, 1), height: row - 8, rx: 2 }));
      g.append(s("text", { x: (v >= 0 ? zero + w : zero) + 6, y: yy + 16, "font-size": FONT, class: "bar-value" }, format(it.value)));
      svg.append(g);
    });
    return svg;
  }
  const h = height || 240;
  const svg = frame("bar", title, width, h);
  const left = 56;
  const top = 12;
  const bottom = 28;
  const plotW = width - left - 12;
  const plotH = h - top - bottom;
  const axis = ticks(min, Math.max(max, min + 1));
  const a0 = axis[0];
  const a1 = axis[axis.length - 1];
  const y = (v) => top + plotH - ((v - a0) / (a1 - a0 || 1)) * plotH;
  const grid = s("g", { class: "axis" });
  for (const t of axis) {
    grid.append(s("line", { x1: left, x2: width - 12, y1: y(t), y2: y(t), class: "gridline" }));
    grid.append(s("text", { x: left - 6, y: y(t) + 4, "text-anchor": "end", "font-size": FONT }, format(t)));
  }
  svg.append(grid);
  const band = plotW / Math.max(1, items.length);
  const every = Math.max(1, Math.ceil(items.length / 8));
  items.forEach((it, i) => {
    const v = values[i];
    const g = s("g", { class: "bar", "data-label": String(it.label), "data-value": String(it.value) }, s("title", {}, `${it.label}: ${format(it.value)}`));
    const bx = left + i * band + band * 0.15;
    g.append(s("rect", { x: bx, y: Math.min(y(v), y(0)), width: Math.max(1, band * 0.7), height: Math.abs(y(v) - y(0)), rx: 2 }));
    if (i % every === 0) {
      g.append(s("text", { x: bx + band * 0.35, y: top + plotH + 16, "text-anchor": "middle", "font-size": FONT }, shortTime(it.label)));
    }
    svg.append(g);
  });
  return svg;
}

/**
 * A heat map: rows × columns of values (`value(rowLabel, colLabel)` → number or null),
 * shaded from light (low) to dark (high); each cell shows its formatted value.
 */
export function heatMap(rowLabels, colLabels, value, { title = "heat map", format = fmt, rowTitle = "", colTitle = "" } = {}) {
  const cellW = 64;
  const cellH = 28;
  const left = 110;
  const top = 40;
  const width = left + cellW * colLabels.length + 10;
  const height = top + cellH * rowLabels.length + 10;
  const svg = frame("heatmap", title, width, height);
  const all = [];
  for (const r of rowLabels) for (const c of colLabels) {
    const v = toNumber(value(r, c));
    if (v !== null) all.push(v);
  }
  const lo = Math.min(...all);
  const hi = Math.max(...all);
  svg.append(s("text", { x: left, y: 14, "font-size": FONT, class: "axis-title" }, colTitle));
  svg.append(s("text", { x: 4, y: top - 8, "font-size": FONT, class: "axis-title" }, rowTitle));
  colLabels.forEach((c, j) => {
    svg.append(s("text", { x: left + j * cellW + cellW / 2, y: top - 8, "text-anchor": "middle", "font-size": FONT }, String(c)));
  });
  rowLabels.forEach((r, i) => {
    svg.append(s("text", { x: left - 8, y: top + i * cellH + cellH / 2 + 4, "text-anchor": "end", "font-size": FONT }, String(r)));
    colLabels.forEach((c, j) => {
      const raw = value(r, c);
      const v = toNumber(raw);
      if (v === null) return;
      const t = hi > lo ? (v - lo) / (hi - lo) : 1;
      // from #e8f1fb to #0b3d73 (light to dark blue)
      const mix = (a, b) => Math.round(a + (b - a) * t);
      const fill = `rgb(${mix(232, 11)},${mix(241, 61)},${mix(251, 115)})`;
      const g = s("g", { class: "cell", "data-row": String(r), "data-col": String(c), "data-value": String(raw) }, s("title", {}, `${r} · ${c}: ${format(raw)}`));
      g.append(s("rect", { x: left + j * cellW + 1, y: top + i * cellH + 1, width: cellW - 2, height: cellH - 2, fill }));
      g.append(s("text", { x: left + j * cellW + cellW / 2, y: top + i * cellH + cellH / 2 + 4, "text-anchor": "middle", "font-size": FONT, class: t > 0.5 ? "on-dark" : "on-light" }, format(raw)));
      svg.append(g);
    });
  });
  return svg;
}
