// Alerts: the rules with their states (GET /api/alerts/rules), the states at a glance
// (GET /api/alerts/states) and the history of state changes (GET /api/alerts/history).
// Refreshed every 15 seconds.

import { getJSON } from "../api.js";
import { badge, empty, errorBox, fill, grid, h, panel } from "../dom.js";
import { fmt, when } from "../format.js";

const ORDER = ["FIRING", "PENDING", "RESOLVED", "OK"];

export function mount(root) {
  const counts = h("div", { class: "state-counts", dataset: { testid: "alert-counts" } });
  const rulesBox = h("div", {}, empty("Loading…"));
  const historyBox = h("div", {}, empty("Loading…"));
  fill(
    root,
    h("div", { class: "page-head" }, h("h1", {}, "Alerts"), counts),
    panel("Rules", rulesBox, { id: "alert-rules", wide: true }),
    panel("History", historyBox, { id: "alert-history", wide: true }),
  );

  async function load() {
    const [rules, states, hist] = await Promise.allSettled([
      getJSON("/api/alerts/rules"),
      getJSON("/api/alerts/states"),
      getJSON("/api/alerts/history?limit=100"),
    ]);
    if (states.status === "fulfilled") {
      const n = Object.fromEntries(ORDER.map((s) => [s, 0]));
      for (const s of states.value) n[s.state] = (n[s.state] || 0) + 1;
      fill(counts, ORDER.map((s) => h("span", { class: "count", dataset: { state: s } }, badge(s), " ", h("strong", {}, fmt(n[s])))));
    } else fill(counts, errorBox(states.reason));
    if (rules.status === "fulfilled") {
      fill(
        rulesBox,
        rules.value.length
          ? grid(
              [
                { name: "name", label: "Rule" },
                { name: "state", label: "State", cell: (v) => badge(v.state) },
                { name: "summary", label: "Condition" },
                { name: "value", label: "Value", numeric: true },
                { name: "since", label: "Since", format: when },
                { name: "message", label: "Message" },
                { name: "origin", label: "Defined in", format: (v) => (v === "file" ? "rules file" : "API") },
              ],
              rules.value.map((r) => ({ ...r, value: r.state.value, since: r.state.since, message: r.state.error || r.state.message })),
              { caption: "Alert rules", testid: "alert-rules", rowKey: (r) => r.name },
            )
          : empty("No alert rules.", "Add [[rule]] tables to alerts.toml, or POST /api/alerts/rules."),
      );
    } else fill(rulesBox, errorBox(rules.reason));
    if (hist.status === "fulfilled") {
      fill(
        historyBox,
        hist.value.length
          ? grid(
              [
                { name: "at", label: "At", format: when },
                { name: "rule", label: "Rule" },
                { name: "from_state", label: "From", cell: (v) => badge(v) },
                { name: "to_state", label: "To", cell: (v) => badge(v) },
                { name: "value", label: "Value", numeric: true },
                { name: "message", label: "Message" },
                { name: "notified", label: "Notified", format: (v) => (v ? "yes" : "no") },
              ],
              hist.value,
              { caption: "State changes, newest first", testid: "alert-history", rowKey: (r) => String(r.id) },
            )
          : empty("No state changes yet."),
      );
    } else fill(historyBox, errorBox(hist.reason));
  }
  load();
  const timer = setInterval(load, 15_000);
  return () => clearInterval(timer);
}
