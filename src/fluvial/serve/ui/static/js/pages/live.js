// The live dashboard: numbers pushed every second by /api/events (Server-Sent Events),
// and the collector's counters from /metrics.
//
// Store tables it recognises by name (see docs/ui.md):
//   active_users          newest row's active_users              → "Active users (5 min)"
//   page_views_per_minute window_start, url, views               → top pages (newest window)
//   funnel_per_minute     window_start, event_type|step, events  → funnel (newest window)
//   revenue_per_minute    window_start, revenue                  → revenue per minute

import { parseJSON, parsePrometheus } from "../api.js";
import { barChart, lineChart } from "../charts.js";
import { badge, empty, fill, grid, h, panel } from "../dom.js";
import { duration, fmt, NONE, when } from "../format.js";

const HISTORY = 120; // seconds of events/s kept for the chart
const FUNNEL_STEPS = ["page_view", "product_view", "add_to_cart", "checkout", "purchase"];

/** A live table of the metrics event by name, as {columns, rows, index(name)}. */
function table(metrics, name) {
  const t = (metrics.tables || []).find((x) => x.table === name);
  if (!t) return null;
  const names = t.columns.map((c) => c.name);
  return { ...t, index: (...cands) => cands.map((c) => names.indexOf(c)).find((i) => i >= 0) ?? -1 };
}

/** Rows of the newest window of a window table (rows hold ISO times: they sort as text). */
function newestWindow(t) {
  const w = t.index("window_start", "window_end");
  if (w < 0) return { window: null, rows: t.rows };
  let newest = null;
  for (const r of t.rows) if (r[w] !== null && (newest === null || String(r[w]) > String(newest))) newest = r[w];
  return { window: newest, rows: t.rows.filter((r) => r[w] === newest) };
}

export function topPages(t) {
  const url = t.index("url", "page", "path");
  const views = t.index("views", "page_views", "count");
  if (url < 0 || views < 0) return { window: null, items: [] };
  const { window, rows } = newestWindow(t);
  const items = rows.map((r) => ({ label: r[url], value: r[views] }));
  items.sort((a, b) => Number(b.value) - Number(a.value) || String(a.label).localeCompare(String(b.label)));
  return { window, items: items.slice(0, 10) };
}

export function funnel(t) {
  const step = t.index("event_type", "step", "stage");
  const count = t.index("events", "sessions", "users", "count");
  if (step < 0 || count < 0) return { window: null, items: [] };
  const { window, rows } = newestWindow(t);
  const rank = (s) => {
    const i = FUNNEL_STEPS.indexOf(s);
    return i < 0 ? FUNNEL_STEPS.length : i;
  };
  const items = rows.map((r) => ({ label: r[step], value: r[count] }));
  items.sort((a, b) => rank(a.label) - rank(b.label) || Number(b.value) - Number(a.value));
  return { window, items };
}

/** A key value: times shortened, the rest as fmt writes it. */
function cell(value) {
  return typeof value === "string" && /^\d{4}-\d{2}-\d{2}T/.test(value) ? when(value) : fmt(value);
}

function kpi(id, label) {
  const value = h("output", { dataset: { kpi: id }, "aria-live": "off" }, NONE);
  const sub = h("span", { class: "sub", dataset: { kpiSub: id } });
  return { node: h("div", { class: "kpi" }, h("span", { class: "label", id: `kpi-${id}` }, label), value, sub), value, sub };
}

export function mount(root, ctx) {
  const failedTopic = ctx.config.failed_topic || "events_failed";
  const status = h("p", { class: "status", dataset: { testid: "live-status" } }, "connecting…");
  const k = {
    eps: kpi("events-per-second", "Events/s"),
    active: kpi("active-users", "Active users (5 min)"),
    accepted: kpi("accepted-events", "Events accepted"),
    failed: kpi("failed-events", "Failed events"),
    late: kpi("late-events", "Late events"),
    lag: kpi("max-lag", "Worst lag"),
    running: kpi("pipelines-running", "Pipelines running"),
  };
  const rateBox = h("div", { class: "chart-box" }, empty("Waiting for the first numbers…"));
  const pagesBox = h("div", { class: "chart-box" });
  const funnelBox = h("div", { class: "chart-box" });
  const revenueBox = h("div", { class: "chart-box" });
  const pipelinesBox = h("div");
  const tablesBox = h("div");
  fill(
    root,
    h("div", { class: "page-head" }, h("h1", {}, "Live"), status),
    h("section", { class: "kpis", "aria-label": "Key numbers" }, Object.values(k).map((x) => x.node)),
    h(
      "div",
      { class: "panels" },
      panel("Events per second", rateBox, { id: "rate" }),
      panel("Top pages", pagesBox, { id: "top-pages" }),
      panel("Funnel", funnelBox, { id: "funnel" }),
      panel("Revenue per minute", revenueBox, { id: "revenue" }),
    ),
    panel("Pipelines", pipelinesBox, { id: "pipelines", wide: true }),
    panel("Live tables", tablesBox, { id: "live-tables", wide: true }),
  );

  const rates = [];
  let prom = null;

  function renderMetrics(m) {
    const p = m.pipelines || {};
    k.eps.value.textContent = fmt(p.events_per_second);
    k.late.value.textContent = fmt(p.late_rows);
    k.lag.value.textContent = duration(p.max_lag_seconds);
    k.running.value.textContent = `${fmt(p.running)} / ${fmt(p.pipelines)}`;
    k.eps.sub.textContent = prom && prom.rate !== null ? `ingest ${fmt(Math.round(prom.rate * 10) / 10)}/s` : "";
    const active = table(m, "active_users");
    const ai = active ? active.index("active_users", "users") : -1;
    if (active && ai >= 0 && active.rows.length) {
      k.active.value.textContent = fmt(active.rows[0][ai]);
      const we = active.index("window_end", "window_start");
      k.active.sub.textContent = we >= 0 ? `window to ${when(active.rows[0][we])}` : "";
    } else {
      k.active.value.textContent = NONE;
      k.active.sub.textContent = active ? "no rows yet" : "no active_users table";
    }
    rates.push([m.time, p.events_per_second ?? 0]);
    while (rates.length > HISTORY) rates.shift();
    fill(rateBox, lineChart([{ name: "events/s", points: rates }], { title: "Events per second, last two minutes", height: 200, xFormat: (t) => when(t).slice(11) }));

    const pv = table(m, "page_views_per_minute");
    const top = pv ? topPages(pv) : null;
    fill(
      pagesBox,
      top && top.items.length
        ? [h("p", { class: "caption" }, `window from ${when(top.window)}`), barChart(top.items, { title: "Page views by page, newest window" })]
        : empty("No page views yet.", "The page_views_per_minute store table appears when its pipeline writes."),
    );
    const fu = table(m, "funnel_per_minute");
    const steps = fu ? funnel(fu) : null;
    fill(
      funnelBox,
      steps && steps.items.length
        ? [h("p", { class: "caption" }, `window from ${when(steps.window)}`), barChart(steps.items, { title: "Events per funnel step, newest window" })]
        : empty("No funnel yet.", "The funnel_per_minute store table appears when its pipeline writes."),
    );
    const rv = table(m, "revenue_per_minute");
    const ws = rv ? rv.index("window_start", "window_end") : -1;
    const ri = rv ? rv.index("revenue", "amount") : -1;
    fill(
      revenueBox,
      rv && ws >= 0 && ri >= 0 && rv.rows.length
        ? lineChart([{ name: "revenue", points: [...rv.rows].reverse().map((r) => [r[ws], r[ri]]) }], { title: "Revenue per minute", height: 200 })
        : empty("No revenue yet.", "The revenue_per_minute store table appears when its pipeline writes."),
    );
    fill(
      tablesBox,
      grid(
        [
          { name: "table", label: "Table" },
          { name: "key", label: "Key", format: (v) => v.join(", ") },
          { name: "total_rows", label: "Rows", numeric: true },
          { name: "newest", label: "Newest key", format: (v) => v },
        ],
        [
          ...(m.tables || []).map((t) => ({
            table: t.table,
            key: t.key,
            total_rows: t.total_rows,
            newest: t.rows.length ? t.key.map((name) => cell(t.rows[0][t.columns.findIndex((c) => c.name === name)])).join(" · ") : NONE,
          })),
          ...(m.missing || []).map((name) => ({ table: name, key: [], total_rows: null, newest: "not written yet" })),
        ],
        { caption: "Store tables the live page reads", testid: "live-tables", rowKey: (r) => r.table },
      ),
    );
  }

  function renderPipelines(list) {
    if (!list.length) {
      fill(pipelinesBox, empty("No stream pipelines have run yet.", "Start one with `fluvial stream run` or `fluvial up`."));
      return;
    }
    fill(
      pipelinesBox,
      grid(
        [
          { name: "job", label: "Job" },
          { name: "pipeline", label: "Pipeline" },
          { name: "state", label: "State", cell: (v) => badge(v) },
          { name: "watermark", label: "Watermark", format: when },
          { name: "lag_seconds", label: "Lag", format: duration, numeric: true },
          { name: "checkpoint_age_seconds", label: "Checkpoint age", format: duration, numeric: true },
          { name: "rows_in", label: "Rows in", numeric: true },
          { name: "rows_out", label: "Rows out", numeric: true },
          { name: "late_rows", label: "Late rows", numeric: true },
          { name: "events_per_second", label: "Events/s", numeric: true },
        ],
        list,
        { caption: "Stream pipelines", testid: "pipelines", rowKey: (r) => r.pipeline },
      ),
    );
  }

  const source = new EventSource("/api/events");
  source.addEventListener("open", () => {
    status.textContent = "live";
    status.dataset.state = "live";
  });
  source.addEventListener("error", () => {
    status.textContent = "reconnecting…";
    status.dataset.state = "down";
  });
  source.addEventListener("metrics", (e) => {
    const m = parseJSON(e.data);
    status.textContent = `live · updated ${when(m.time)}`;
    status.dataset.state = "live";
    renderMetrics(m);
  });
  source.addEventListener("pipelines", (e) => renderPipelines(parseJSON(e.data)));

  // the collector's counters: accepted events, dead letters (retained in the failed topic)
  let timer = null;
  let stopped = false;
  async function poll() {
    try {
      const response = await fetch("/metrics");
      if (!response.ok) throw new Error(`/metrics answered ${response.status}`);
      const samples = parsePrometheus(await response.text());
      const sum = (name, pred = () => true) => {
        const found = samples.filter((x) => x.name === name && pred(x.labels));
        return found.length ? found.reduce((a, x) => a + x.value, 0) : null;
      };
      const accepted = sum("fluvial_collector_events_accepted_total");
      let failed = sum("fluvial_log_topic_records", (l) => l.topic === failedTopic);
      if (failed === null) failed = sum("fluvial_collector_events_rejected_total");
      const now = performance.now();
      const rate = prom && accepted !== null && prom.accepted !== null ? ((accepted - prom.accepted) * 1000) / (now - prom.at) : null;
      prom = { accepted, failed, at: now, rate };
      k.accepted.value.textContent = fmt(accepted);
      k.accepted.sub.textContent = "since the collector started";
      k.failed.value.textContent = fmt(failed);
      k.failed.sub.textContent = `in ${failedTopic}`;
    } catch (err) {
      k.accepted.sub.textContent = "no /metrics here";
      k.failed.sub.textContent = "no /metrics here";
      prom = null;
      return; // no collector on this server: stop asking
    }
    if (!stopped) timer = setTimeout(poll, 1000);
  }
  poll();

  return () => {
    stopped = true;
    source.close();
    if (timer) clearTimeout(timer);
  };
}
