// Historical dashboards over the warehouse marts (built by `fluvial batch run`), read with
// POST /api/sql: daily KPIs, the funnel by channel and the retention cohorts, for a range
// of dates. A mart that does not exist yet shows an empty state.

import { isMissingTable, records, runSql } from "../api.js";
import { barChart, heatMap, lineChart } from "../charts.js";
import { empty, errorBox, facts, field, fill, grid, h, panel } from "../dom.js";
import { fmt, percent } from "../format.js";

const DATE = /^\d{4}-\d{2}-\d{2}$/;

export const QUERIES = {
  range: "SELECT min(date) AS first, max(date) AS last FROM marts.daily_kpis",
  daily: (a, b) => `SELECT * FROM marts.daily_kpis WHERE date BETWEEN DATE '${a}' AND DATE '${b}' ORDER BY date`,
  funnel: (a, b) =>
    "SELECT channel, sum(sessions) AS sessions, sum(viewed_product) AS viewed_product, " +
    "sum(added_to_cart) AS added_to_cart, sum(reached_checkout) AS reached_checkout, " +
    "sum(purchased) AS purchased, sum(purchased) / sum(sessions) AS conversion_rate " +
    `FROM marts.funnel_daily WHERE date BETWEEN DATE '${a}' AND DATE '${b}' ` +
    "GROUP BY channel ORDER BY sessions DESC, channel",
  retention: (a, b) =>
    "SELECT cohort_week, week_number, cohort_users, retention FROM marts.retention_cohorts " +
    `WHERE cohort_week BETWEEN DATE '${a}' AND DATE '${b}' ORDER BY cohort_week, week_number`,
};

const KPI_METRICS = ["visitors", "sessions", "page_views", "orders", "revenue", "conversion_rate", "bounce_rate"];

function missing(mart) {
  return empty(`marts.${mart} is not built yet.`, "Build the marts with `fluvial batch run`; this page shows them once they exist.");
}

function failure(err, mart) {
  return isMissingTable(err) ? missing(mart) : errorBox(err);
}

export async function mount(root, ctx) {
  const from = h("input", { type: "date", name: "from", required: true });
  const to = h("input", { type: "date", name: "to", required: true });
  const form = h(
    "form",
    { class: "filters", "aria-label": "Date range" },
    field("From", from),
    field("To", to),
    h("button", { type: "submit" }, "Apply"),
  );
  const dailyBox = h("div", {}, empty("Loading…"));
  const funnelBox = h("div", {}, empty("Loading…"));
  const retentionBox = h("div", {}, empty("Loading…"));
  fill(
    root,
    h("div", { class: "page-head" }, h("h1", {}, "History"), h("p", { class: "status" }, "From the warehouse marts")),
    form,
    panel("Daily KPIs", dailyBox, { id: "daily-kpis", wide: true }),
    h("div", { class: "panels" }, panel("Funnel by channel", funnelBox, { id: "funnel-channel" }), panel("Retention by cohort", retentionBox, { id: "retention" })),
  );

  let range;
  try {
    const r = records(await runSql(QUERIES.range))[0];
    range = r && r.first ? { first: String(r.first), last: String(r.last) } : null;
    if (!range) fill(dailyBox, empty("marts.daily_kpis has no rows yet."));
  } catch (err) {
    fill(dailyBox, failure(err, "daily_kpis"));
    range = null;
  }
  const q = ctx.route.query;
  from.value = DATE.test(q.get("from") || "") ? q.get("from") : range ? range.first : "";
  to.value = DATE.test(q.get("to") || "") ? q.get("to") : range ? range.last : "";
  if (!from.value || !to.value) {
    // no daily KPIs: still try the other marts over every date
    from.value = from.value || "1970-01-01";
    to.value = to.value || new Date().toISOString().slice(0, 10);
  }

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    if (!DATE.test(from.value) || !DATE.test(to.value)) return;
    history.replaceState(null, "", `#/history?from=${from.value}&to=${to.value}`);
    load(from.value, to.value, true);
  });

  async function load(a, b, withDaily) {
    const jobs = [loadFunnel(a, b), loadRetention(a, b)];
    if (withDaily) jobs.push(loadDaily(a, b));
    await Promise.all(jobs);
  }

  async function loadDaily(a, b) {
    try {
      const res = await runSql(QUERIES.daily(a, b));
      if (!res.rows.length) {
        fill(dailyBox, empty("No days in this range."));
        return;
      }
      const rows = records(res);
      const metrics = KPI_METRICS.filter((m) => res.columns.some((c) => c.name === m));
      const total = (m) => rows.reduce((acc, r) => acc + Number(r[m] ?? 0), 0);
      const select = h("select", { name: "metric" }, metrics.map((m) => h("option", { value: m }, m)));
      const chart = h("div", { class: "chart-box" });
      const draw = () =>
        fill(chart, lineChart([{ name: select.value, points: rows.map((r) => [String(r.date), r[select.value]]) }], { title: `${select.value} per day`, height: 240, width: 1000 }));
      select.addEventListener("change", draw);
      draw();
      const sums = [];
      for (const m of ["sessions", "orders", "revenue"]) if (metrics.includes(m)) sums.push([`${m} (total)`, Math.round(total(m) * 100) / 100]);
      sums.push(["days", rows.length]);
      fill(
        dailyBox,
        facts(sums, "daily-totals"),
        h("div", { class: "toolbar" }, field("Metric", select)),
        chart,
        grid(res.columns.map((c) => ({ name: c.name, format: /rate$/.test(c.name) ? percent : fmt })), res.rows, { caption: "marts.daily_kpis", testid: "daily-kpis" }),
      );
    } catch (err) {
      fill(dailyBox, failure(err, "daily_kpis"));
    }
  }

  async function loadFunnel(a, b) {
    try {
      const res = await runSql(QUERIES.funnel(a, b));
      if (!res.rows.length) {
        fill(funnelBox, empty("No sessions in this range."));
        return;
      }
      const rows = records(res);
      fill(
        funnelBox,
        barChart(rows.map((r) => ({ label: r.channel ?? "(none)", value: r.conversion_rate })), { title: "Conversion rate by channel", format: percent }),
        grid(res.columns.map((c) => ({ name: c.name, format: c.name === "conversion_rate" ? percent : fmt })), res.rows, { caption: "marts.funnel_daily by channel", testid: "funnel-channel" }),
      );
    } catch (err) {
      fill(funnelBox, failure(err, "funnel_daily"));
    }
  }

  async function loadRetention(a, b) {
    try {
      const res = await runSql(QUERIES.retention(a, b));
      if (!res.rows.length) {
        fill(retentionBox, empty("No cohorts in this range."));
        return;
      }
      const rows = records(res);
      const cohorts = [...new Set(rows.map((r) => String(r.cohort_week)))];
      const weeks = [...new Set(rows.map((r) => Number(r.week_number)))].sort((x, y) => x - y);
      const at = new Map(rows.map((r) => [`${r.cohort_week}|${Number(r.week_number)}`, r.retention]));
      const size = new Map(rows.map((r) => [String(r.cohort_week), r.cohort_users]));
      fill(
        retentionBox,
        heatMap(
          cohorts.map((c) => c),
          weeks,
          (c, w) => at.get(`${c}|${w}`) ?? null,
          { title: "Share of each cohort active again, by weeks since the first visit", format: percent, rowTitle: "first week", colTitle: "weeks since" },
        ),
        h("p", { class: "caption" }, cohorts.map((c) => `${c}: ${fmt(size.get(c))} users`).join(" · ")),
      );
    } catch (err) {
      fill(retentionBox, failure(err, "retention_cohorts"));
    }
  }

  await load(from.value, to.value, range !== null);
  return null;
}
