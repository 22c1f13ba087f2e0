// Batch runs and backfills (GET /api/batch/runs): when, what, how long, how it ended.

import { getJSON } from "../api.js";
import { barChart } from "../charts.js";
import { badge, empty, errorBox, fill, grid, h, panel } from "../dom.js";
import { duration, when } from "../format.js";

/** Seconds between two ISO times (null while a run is unfinished). */
export function elapsed(started, finished) {
  if (!started || !finished) return null;
  return (Date.parse(finished) - Date.parse(started)) / 1000;
}

export async function mount(root) {
  const chart = h("div");
  const box = h("div", {}, empty("Loading…"));
  fill(
    root,
    h("div", { class: "page-head" }, h("h1", {}, "Batch runs")),
    panel("Run time", chart, { id: "batch-chart", wide: true }),
    panel("Runs", box, { id: "batch-runs", wide: true }),
  );
  try {
    const runs = await getJSON("/api/batch/runs?limit=100");
    if (!runs.length) {
      fill(box, empty("No batch runs yet.", "`fluvial batch run` builds the models."));
      fill(chart);
      return null;
    }
    const rows = runs.map((r) => ({ ...r, seconds: elapsed(r.started_at, r.finished_at) }));
    fill(
      chart,
      barChart(
        rows.slice(0, 20).map((r) => ({ label: when(r.started_at), value: r.seconds === null ? 0 : Math.round(r.seconds * 1000) / 1000 })),
        { title: "Seconds per run, newest first", format: duration, width: 1000 },
      ),
    );
    fill(
      box,
      grid(
        [
          { name: "started_at", label: "Started", format: when },
          { name: "seconds", label: "Took", format: duration, numeric: true },
          { name: "kind", label: "Kind" },
          { name: "selection", label: "Selection" },
          { name: "engine", label: "Engine" },
          { name: "status", label: "Status", cell: (v) => badge(v) },
          { name: "models", label: "Models", numeric: true },
          { name: "errors", label: "Errors", numeric: true },
          { name: "error", label: "Error" },
          { name: "run_id", label: "Run" },
        ],
        rows,
        { caption: "Batch runs, newest first", testid: "batch-runs", rowKey: (r) => r.run_id },
      ),
    );
  } catch (err) {
    fill(box, errorBox(err));
  }
  return null;
}
