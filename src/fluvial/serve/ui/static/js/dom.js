// Small DOM helpers: an element builder, grids, empty states and error boxes.

import { fmt } from "./format.js";

/**
 * Build an element: h("a", {href: "#/sql", class: "x"}, "text", child).
 * Attributes starting with "on" are listeners; `dataset` an object of data-*;
 * false/null attributes are left out.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2).toLowerCase(), value);
    } else if (name === "dataset") {
      for (const [k, v] of Object.entries(value)) el.dataset[k] = String(v);
    } else if (name === "class") {
      el.className = value;
    } else if (value === true) {
      el.setAttribute(name, "");
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace every child of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A titled panel (a section with a heading) holding `body`. */
export function panel(title, body, { id = null, wide = false, actions = null } = {}) {
  const headingId = id ? `${id}-title` : null;
  return h(
    "section",
    { class: wide ? "panel wide" : "panel", id, "aria-labelledby": headingId },
    h("div", { class: "panel-head" }, h("h2", { id: headingId }, title), actions),
    body,
  );
}

/** A message shown where there is nothing to show yet. */
export function empty(text, hint = null) {
  return h("div", { class: "empty", role: "status" }, h("p", {}, text), hint && h("p", { class: "hint" }, hint));
}

/** An error box for a failed request (an ApiError or any Error). */
export function errorBox(err) {
  const title = err && err.error ? `${err.error}` : "Error";
  return h("div", { class: "error", role: "alert" }, h("strong", {}, title), " ", h("span", {}, err ? err.message : ""));
}

/** A small coloured label: state names, passed/failed. */
export function badge(text, kind = null) {
  const k = kind || String(text).toLowerCase();
  return h("span", { class: `badge badge-${k}` }, text);
}

/**
 * A data grid: columns [{name, label?, format?, cell?}] and rows (arrays in column order
 * or objects by name). `cell(value, row)` may return a node; otherwise the value is
 * formatted with `format` (default fmt). Each cell carries its column name.
 */
export function grid(columns, rows, { caption = null, testid = null, rowKey = null } = {}) {
  const cols = columns.map((c) => (typeof c === "string" ? { name: c } : c));
  const head = h("thead", {}, h("tr", {}, cols.map((c) => h("th", { scope: "col", class: c.numeric ? "num" : null }, c.label || c.name))));
  const body = h("tbody");
  for (const row of rows) {
    const tr = h("tr", rowKey ? { dataset: { key: rowKey(row) } } : {});
    cols.forEach((c, i) => {
      const value = Array.isArray(row) ? row[i] : row[c.name];
      let content;
      if (c.cell) content = c.cell(value, row);
      else content = (c.format || fmt)(value);
      const numeric = c.numeric ?? (typeof value === "number" || typeof value === "bigint");
      tr.append(h("td", { class: numeric ? "num" : null, dataset: { col: c.name } }, content));
    });
    body.append(tr);
  }
  return h(
    "div",
    { class: "grid-wrap", tabindex: "0", role: "region", "aria-label": caption || "table" },
    h("table", { class: "grid", dataset: testid ? { grid: testid } : {} }, caption && h("caption", {}, caption), head, body),
  );
}

/** A description list of facts: [[term, value], …]. */
export function facts(pairs, testid = null) {
  return h(
    "dl",
    { class: "facts", dataset: testid ? { facts: testid } : {} },
    pairs.map(([term, value]) => [h("dt", {}, term), h("dd", { dataset: { fact: term } }, value instanceof Node ? value : fmt(value))]),
  );
}

/** A labelled form control. */
export function field(label, control) {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  control.id = id;
  return h("div", { class: "field" }, h("label", { for: id }, label), control);
}
