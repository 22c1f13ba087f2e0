// The shell: the menu, hash routes (#/page/arg?query) and mounting one page at a time.
// A page module exports `mount(root, ctx)` and may return a function that stops it.

import { apiKey, getJSON, setApiKey } from "./api.js";
import { errorBox, fill, h } from "./dom.js";

const PAGES = {
  live: () => import("./pages/live.js"),
  history: () => import("./pages/history.js"),
  sql: () => import("./pages/sql.js"),
  catalog: () => import("./pages/catalog.js"),
  quality: () => import("./pages/quality.js"),
  batch: () => import("./pages/batch.js"),
  alerts: () => import("./pages/alerts.js"),
};

const DEFAULT_CONFIG = {
  project: "",
  events_topic: "events",
  failed_topic: "events_failed",
  pages: Object.keys(PAGES).map((id) => ({ id, title: id })),
};

let stop = null;
let generation = 0;

/** The route in the hash: {page, arg, query}. "#/catalog/raw.clicks?x=1" → catalog, raw.clicks. */
export function parseRoute(hash) {
  const text = (hash || "").replace(/^#\/?/, "");
  const [path, qs = ""] = text.split("?", 2);
  const slash = path.indexOf("/");
  const page = (slash < 0 ? path : path.slice(0, slash)) || "live";
  const arg = slash < 0 ? "" : decodeURIComponent(path.slice(slash + 1));
  return { page, arg, query: new URLSearchParams(qs) };
}

async function show(config, { focus }) {
  const route = parseRoute(location.hash);
  const main = document.getElementById("main");
  const mine = ++generation;
  if (stop) {
    try {
      stop();
    } catch (err) {
      console.warn("stopping the previous page failed", err);
    }
    stop = null;
  }
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.dataset.page === route.page) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const entry = config.pages.find((p) => p.id === route.page);
  const loader = PAGES[route.page];
  if (!loader || !entry) {
    fill(main, h("h1", {}, "Not found"), h("p", {}, `There is no page "${route.page}".`), h("p", {}, h("a", { href: "#/live" }, "Go to the live dashboard")));
    document.title = "Not found · Fluvial";
    return;
  }
  document.title = `${entry.title}${config.project ? ` · ${config.project}` : ""} · Fluvial`;
  main.replaceChildren();
  main.dataset.page = route.page;
  main.setAttribute("aria-busy", "true");
  try {
    const module = await loader();
    if (mine !== generation) return;
    const root = h("div", { class: `page page-${route.page}` });
    main.append(root);
    stop = (await module.mount(root, { config, route })) || null;
  } catch (err) {
    console.error(err);
    fill(main, errorBox(err));
  } finally {
    if (mine === generation) main.removeAttribute("aria-busy");
  }
  if (focus) main.focus({ preventScroll: true });
}

/** The sign-in form: the API key is kept in this browser's localStorage. */
function signIn() {
  if (document.getElementById("sign-in")) return;
  const input = h("input", { type: "password", id: "api-key", name: "api-key", autocomplete: "current-password", required: true, placeholder: "fvk_…" });
  const form = h(
    "form",
    { id: "sign-in", class: "sign-in", "aria-label": "Sign in" },
    h("label", { for: "api-key" }, apiKey() ? "That API key was refused; another one:" : "API key"),
    input,
    h("button", { type: "submit" }, "Sign in"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    setApiKey(input.value.trim());
    location.reload();
  });
  document.querySelector("header.top").append(form);
  input.focus();
}

function signOut() {
  const header = document.querySelector("header.top");
  if (!apiKey() || document.getElementById("sign-out")) return;
  const button = h("button", { type: "button", id: "sign-out", class: "sign-out" }, "Sign out");
  button.addEventListener("click", () => {
    setApiKey("");
    location.reload();
  });
  header.append(button);
}

async function start() {
  window.addEventListener("fluvial:unauthorized", signIn);
  signOut();
  let config = DEFAULT_CONFIG;
  try {
    config = await getJSON("/ui/config.json");
  } catch (err) {
    console.warn("no /ui/config.json; using defaults", err);
  }
  document.getElementById("project-name").textContent = config.project || "";
  fill(
    document.getElementById("nav"),
    config.pages.map((p) => h("li", {}, h("a", { href: `#/${p.id}`, dataset: { page: p.id } }, p.title))),
  );
  window.addEventListener("hashchange", () => show(config, { focus: true }));
  await show(config, { focus: false });
}

start();
