// Data quality runs (GET /api/quality/runs): passed or failed, rows, failing rows.

import { getJSON } from "../api.js";
import { barChart } from "../charts.js";
import { badge, empty, errorBox, field, fill, grid, h, panel } from "../dom.js";
import { when } from "../format.js";

export async function mount(root, ctx) {
  const select = h("select", { name: "table" }, h("option", { value: "" }, "every table"));
  const summary = h("div");
  const box = h("div", {}, empty("Loading…"));
  fill(
    root,
    h("div", { class: "page-head" }, h("h1", {}, "Quality")),
    h("div", { class: "toolbar" }, field("Table", select)),
    panel("Failing rows by run", summary, { id: "quality-chart", wide: true }),
    panel("Runs", box, { id: "quality-runs", wide: true }),
  );
  let tables = null;
  async function load() {
    const table = select.value;
    try {
      const runs = await getJSON(`/api/quality/runs?limit=200${table ? `&table=${encodeURIComponent(table)}` : ""}`);
      if (tables === null) {
        tables = [...new Set(runs.map((r) => r.table_name))].sort();
        for (const t of tables) select.append(h("option", { value: t, selected: t === ctx.route.query.get("table") }, t));
      }
      if (!runs.length) {
        fill(box, empty("No quality runs recorded yet.", "`fluvial quality check` and batch runs record them."));
        fill(summary);
        return;
      }
      fill(
        summary,
        barChart(
          runs.slice(0, 20).map((r) => ({ label: `${r.table_name} ${when(r.evaluated_at)}`, value: r.failing_rows })),
          { title: "Failing rows of the newest runs", width: 1000 },
        ),
      );
      fill(
        box,
        grid(
          [
            { name: "evaluated_at", label: "Evaluated", format: when },
            { name: "table_name", label: "Table" },
            { name: "passed", label: "Result", cell: (v) => badge(v ? "passed" : "failed") },
            { name: "row_count", label: "Rows", numeric: true },
            { name: "failing_rows", label: "Failing rows", numeric: true },
            { name: "errors", label: "Errors", numeric: true },
            { name: "warnings", label: "Warnings", numeric: true },
            { name: "run_id", label: "Run" },
          ],
          runs,
          { caption: "Quality runs, newest first", testid: "quality-runs", rowKey: (r) => r.run_id },
        ),
      );
    } catch (err) {
      fill(box, errorBox(err));
    }
  }
  select.addEventListener("change", load);
  await load();
  if (ctx.route.query.get("table") && select.value) await load();
  return null;
}
