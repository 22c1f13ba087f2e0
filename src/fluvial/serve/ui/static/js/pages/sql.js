// The SQL explorer: one query over the lake (POST /api/sql), its rows as a grid and a
// chart, and the same query as CSV (?format=csv).

import { getJSON, runSql, sqlCsv } from "../api.js";
import { barChart, lineChart } from "../charts.js";
import { empty, errorBox, field, fill, grid, h, panel } from "../dom.js";
import { fmt, isNumericType, isTemporalType } from "../format.js";

const KEY = "fluvial.sql";

/** The columns a chart of this result uses by default: {x, y} names or null. */
export function defaultAxes(columns) {
  const numeric = columns.filter((c) => isNumericType(c.type));
  if (!numeric.length) return null;
  const x = columns.find((c) => !isNumericType(c.type)) || (columns.length > 1 ? columns[0] : null);
  const y = numeric.find((c) => !x || c.name !== x.name);
  if (!y) return null;
  return { x: x ? x.name : null, y: y.name };
}

export function mount(root, ctx) {
  const start = ctx.route.query.get("q") || sessionStorage.getItem(KEY) || "SELECT 42 AS answer";
  const editor = h("textarea", { name: "sql", rows: 8, spellcheck: "false", class: "code", "aria-describedby": "sql-help" }, start);
  const limit = h("input", { type: "number", name: "limit", min: 1, max: 10000, value: 1000 });
  const run = h("button", { type: "submit", class: "primary" }, "Run");
  const csv = h("button", { type: "button", dataset: { action: "csv" } }, "Export CSV");
  const meta = h("p", { class: "status", dataset: { testid: "sql-meta" }, role: "status" });
  const chartBox = h("div");
  const resultBox = h("div", {}, empty("Run a query to see its rows.", "Tables are zone.table, e.g. raw.events."));
  const tables = h("ul", { class: "table-list" });
  const form = h(
    "form",
    { class: "sql-form", "aria-label": "Query" },
    field("SQL", editor),
    h("p", { id: "sql-help", class: "hint" }, "One SELECT (or EXPLAIN) over the lake. Ctrl+Enter runs it."),
    h("div", { class: "toolbar" }, field("Row limit", limit), run, csv),
  );
  fill(
    root,
    h("div", { class: "page-head" }, h("h1", {}, "SQL explorer")),
    h(
      "div",
      { class: "with-side" },
      h("aside", { class: "side", "aria-label": "Lake tables" }, h("h2", {}, "Tables"), tables),
      h("div", { class: "side-main" }, form, meta, panel("Chart", chartBox, { id: "sql-chart" }), panel("Rows", resultBox, { id: "sql-rows", wide: true })),
    ),
  );

  getJSON("/api/lake/tables")
    .then((list) =>
      fill(
        tables,
        list.length
          ? list.map((t) =>
              h("li", {}, h("button", { type: "button", class: "link", onclick: () => { editor.value = `SELECT * FROM ${t.name} LIMIT 100`; editor.focus(); } }, t.name)),
            )
          : h("li", { class: "hint" }, "No lake tables yet."),
      ),
    )
    .catch((err) => fill(tables, h("li", {}, errorBox(err))));

  let busy = false;
  async function execute() {
    if (busy) return;
    busy = true;
    run.disabled = true;
    const sql = editor.value;
    sessionStorage.setItem(KEY, sql);
    meta.textContent = "running…";
    try {
      const res = await runSql(sql, { limit: Number(limit.value) || 1000 });
      meta.textContent = `${fmt(res.row_count)} row${res.row_count === 1 ? "" : "s"}${res.truncated ? ` (truncated at ${fmt(res.limit)})` : ""} · ${fmt(res.elapsed_ms)} ms`;
      fill(
        resultBox,
        res.columns.length
          ? grid(res.columns.map((c) => ({ name: c.name, label: c.name })), res.rows, { caption: "Query result", testid: "sql-result" })
          : empty("The query returned no columns."),
      );
      renderChart(res);
    } catch (err) {
      meta.textContent = "failed";
      fill(resultBox, errorBox(err));
      fill(chartBox);
    } finally {
      busy = false;
      run.disabled = false;
    }
  }

  function renderChart(res) {
    const axes = defaultAxes(res.columns);
    if (!axes || !res.rows.length) {
      fill(chartBox, empty("Nothing to chart: the result needs a numeric column."));
      return;
    }
    const names = res.columns.map((c) => c.name);
    const pick = (name, value) => h("select", { name }, names.map((n) => h("option", { value: n, selected: n === value }, n)));
    const xs = pick("x", axes.x ?? names[0]);
    const ys = pick("y", axes.y);
    const xType = res.columns.find((c) => c.name === (axes.x ?? names[0]));
    const kind = h(
      "select",
      { name: "kind" },
      h("option", { value: "bar", selected: !isTemporalType(xType && xType.type) }, "bars"),
      h("option", { value: "line", selected: isTemporalType(xType && xType.type) }, "line"),
    );
    const box = h("div", { class: "chart-box" });
    const draw = () => {
      const xi = names.indexOf(xs.value);
      const yi = names.indexOf(ys.value);
      const rows = res.rows.slice(0, 500);
      const title = `${ys.value} by ${xs.value}`;
      fill(
        box,
        kind.value === "line"
          ? lineChart([{ name: ys.value, points: rows.map((r) => [r[xi], r[yi]]) }], { title, height: 260, width: 900 })
          : barChart(rows.slice(0, 50).map((r) => ({ label: fmt(r[xi]), value: r[yi] })), { title, width: 900 }),
      );
    };
    for (const s of [xs, ys, kind]) s.addEventListener("change", draw);
    draw();
    fill(chartBox, h("div", { class: "toolbar" }, field("X", xs), field("Y", ys), field("Chart", kind)), box);
  }

  async function exportCsv() {
    csv.disabled = true;
    try {
      const blob = await sqlCsv(editor.value, { limit: Number(limit.value) || 1000 });
      const url = URL.createObjectURL(blob);
      const a = h("a", { href: url, download: "result.csv", hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch (err) {
      fill(resultBox, errorBox(err));
    } finally {
      csv.disabled = false;
    }
  }

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    execute();
  });
  editor.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      execute();
    }
  });
  csv.addEventListener("click", exportCsv);
  if (ctx.route.query.get("q")) execute();
  return null;
}
