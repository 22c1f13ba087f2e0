// The catalog: lake tables by zone and the operational store's tables; one lake table's
// page (columns, facts, snapshots) with its lineage, upstream and downstream.

import { ApiError, getJSON } from "../api.js";
import { badge, empty, errorBox, facts, fill, grid, h, panel } from "../dom.js";
import { bytes, fmt, when } from "../format.js";

function tableLink(name, known) {
  return known.has(name) ? h("a", { href: `#/catalog/${encodeURIComponent(name)}` }, name) : h("span", {}, name);
}

/** A lineage tree ({name, upstream|downstream: [...]}) as nested lists. */
function tree(node, dir, known) {
  const children = node[dir] || [];
  if (!children.length) return null;
  return h(
    "ul",
    { class: "tree" },
    children.map((c) => h("li", { dataset: { dataset: c.name } }, tableLink(c.name, known), c.job && c.job !== c.name ? h("span", { class: "hint" }, ` via ${c.job}`) : null, tree(c, dir, known))),
  );
}

async function overview(root) {
  const lakeBox = h("div", {}, empty("Loading…"));
  const storeBox = h("div", {}, empty("Loading…"));
  fill(
    root,
    h("div", { class: "page-head" }, h("h1", {}, "Catalog")),
    h("div", { class: "panels" }, panel("Lake tables", lakeBox, { id: "lake-tables" }), panel("Operational store", storeBox, { id: "store-tables" })),
  );
  const [lake, store] = await Promise.allSettled([getJSON("/api/lake/tables"), getJSON("/api/store")]);
  if (lake.status === "fulfilled") {
    const zones = new Map();
    for (const t of lake.value) {
      if (!zones.has(t.zone)) zones.set(t.zone, []);
      zones.get(t.zone).push(t.name);
    }
    fill(
      lakeBox,
      lake.value.length
        ? [...zones].map(([zone, names]) =>
            h("div", { class: "zone" }, h("h3", {}, zone), h("ul", { class: "table-list", dataset: { zone } }, names.map((n) => h("li", {}, h("a", { href: `#/catalog/${encodeURIComponent(n)}` }, n))))),
          )
        : empty("The lake has no tables yet.", "`fluvial lake archive` writes raw.events from the log."),
    );
  } else fill(lakeBox, errorBox(lake.reason));
  if (store.status === "fulfilled") {
    fill(
      storeBox,
      store.value.length
        ? grid(
            [
              { name: "name", label: "Table" },
              { name: "key", label: "Key", format: (v) => v.join(", ") },
              { name: "columns", label: "Columns", format: (v) => v.map((c) => c.name).join(", ") },
              { name: "rows", label: "Rows", numeric: true },
            ],
            store.value,
            { caption: "Store tables", testid: "store-tables", rowKey: (r) => r.name },
          )
        : empty("The store has no tables yet.", "Stream pipelines with 'connector' = 'store' create them."),
    );
  } else fill(storeBox, errorBox(store.reason));
}

async function detail(root, name) {
  const infoBox = h("div", {}, empty("Loading…"));
  const columnsBox = h("div");
  const historyBox = h("div");
  const lineageBox = h("div", {}, empty("Loading…"));
  fill(
    root,
    h("p", { class: "crumbs" }, h("a", { href: "#/catalog" }, "Catalog"), " / ", name),
    h("div", { class: "page-head" }, h("h1", {}, name), h("a", { class: "button", href: `#/sql?q=${encodeURIComponent(`SELECT * FROM ${name} LIMIT 100`)}` }, "Query it")),
    panel("About", infoBox, { id: "table-info" }),
    panel("Lineage", lineageBox, { id: "lineage" }),
    panel("Columns", columnsBox, { id: "table-columns", wide: true }),
    panel("Snapshots", historyBox, { id: "table-snapshots", wide: true }),
  );
  let known = new Set();
  try {
    known = new Set((await getJSON("/api/lake/tables")).map((t) => t.name));
  } catch {
    // links to other tables are a convenience
  }
  const path = encodeURIComponent(name);
  try {
    const t = await getJSON(`/api/lake/tables/${path}`);
    fill(
      infoBox,
      t.description ? h("p", {}, t.description) : null,
      facts(
        [
          ["Rows", t.rows],
          ["Data files", t.data_files],
          ["Delete files", t.delete_files],
          ["Size", bytes(t.bytes)],
          ["Snapshots", t.snapshots],
          ["Current snapshot", t.current_snapshot_id === null ? null : String(t.current_snapshot_id)],
          ["Owner", t.owner],
          ["Freshness", when(t.freshness)],
          ["Last updated", when(t.last_updated)],
          ["Partitioning", t.partition_spec.length ? t.partition_spec.map((p) => `${p.transform ?? ""}(${p.source ?? p.name ?? ""})`).join(", ") : "none"],
          ["Tags", Object.keys(t.tags).length ? h("span", {}, Object.entries(t.tags).map(([k, v]) => badge(`${k}=${v}`, "tag"))) : "none"],
          ["Location", t.location],
        ],
        "table-info",
      ),
    );
    fill(
      columnsBox,
      grid(
        [
          { name: "name", label: "Column" },
          { name: "type", label: "Type" },
          { name: "required", label: "Required", format: (v) => (v ? "yes" : "no") },
          { name: "doc", label: "Description" },
          { name: "tags", label: "Tags", cell: (v) => (Object.keys(v).length ? Object.entries(v).map(([k, x]) => badge(`${k}=${x}`, "tag")) : "") },
        ],
        t.columns,
        { caption: `Columns of ${name}`, testid: "columns", rowKey: (r) => r.name },
      ),
    );
  } catch (err) {
    fill(infoBox, err instanceof ApiError && err.status === 404 ? empty(err.message) : errorBox(err));
  }
  try {
    const snaps = await getJSON(`/api/lake/tables/${path}/history`);
    fill(
      historyBox,
      snaps.length
        ? grid(
            [
              { name: "timestamp", label: "Time", format: when },
              { name: "snapshot_id", label: "Snapshot", format: (v) => String(v), numeric: false },
              { name: "operation", label: "Operation" },
              { name: "summary", label: "Added rows", format: (v) => fmt(v["added-records"] === undefined ? null : Number(v["added-records"])) },
              { name: "current", label: "Current", format: (v) => (v ? "yes" : "") },
            ],
            [...snaps].reverse(),
            { caption: "Snapshots, newest first", testid: "snapshots" },
          )
        : empty("No snapshots yet."),
    );
  } catch (err) {
    fill(historyBox, errorBox(err));
  }
  try {
    const lin = await getJSON(`/api/lineage/${path}`);
    const side = (title, dir, names) =>
      h(
        "div",
        { class: "lineage-side", dataset: { lineage: dir } },
        h("h3", {}, title),
        names.length ? tree(lin[`${dir}_tree`], dir, known) : h("p", { class: "hint" }, dir === "upstream" ? "Nothing: a source." : "Nothing reads it yet."),
      );
    fill(lineageBox, h("div", { class: "lineage" }, side("Upstream (built from)", "upstream", lin.upstream), side("Downstream (feeds)", "downstream", lin.downstream)));
  } catch (err) {
    fill(lineageBox, err instanceof ApiError && err.status === 404 ? empty(`No lineage recorded for ${name}.`, "Batch runs and stream jobs record it.") : errorBox(err));
  }
}

export async function mount(root, ctx) {
  if (ctx.route.arg) await detail(root, ctx.route.arg);
  else await overview(root);
  return null;
}
