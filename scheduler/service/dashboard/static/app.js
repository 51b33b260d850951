// The dagyo dashboard: plain browser JavaScript, no build step, nothing fetched from elsewhere.
// Every text from a flow (names, errors, items) goes into the page as text, never as HTML.
"use strict";

const PAGE_SIZE = 25;
const SVG = "http://www.w3.org/2000/svg";
const main = document.getElementById("main");
let stopLive = () => {};

function el(tag, attrs = {}, ...children) {
  const node = tag.startsWith("svg:")
    ? document.createElementNS(SVG, tag.slice(4))
    : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "onclick") node.addEventListener("click", value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function token() { return localStorage.getItem("dagyo-token") || ""; }
function headers() { return token() ? { Authorization: "Bearer " + token() } : {}; }

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: headers() });
  const data = await response.json();
  if (response.status === 401) askToken(data.error);
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

// Server-sent events read with fetch, so the token travels in a header, not in the URL.
function live(path, onData) {
  const controller = new AbortController();
  (async () => {
    while (!controller.signal.aborted) {
      try {
        const response = await fetch(path, { headers: headers(), signal: controller.signal });
        if (response.status === 401) {  // no token, or one revoked: ask, stop until given
          askToken((await response.json()).error);
          return;
        }
        if (!response.ok) throw new Error(response.statusText);
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          let cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const event = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            const lines = event.split("\n").filter((l) => l.startsWith("data: "));
            if (lines.length) onData(JSON.parse(lines.map((l) => l.slice(6)).join("\n")));
          }
        }
      } catch (error) {
        if (controller.signal.aborted) return;
      }
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  })();
  return () => controller.abort();
}

function askToken(message) {
  const form = document.getElementById("token-form");
  form.hidden = false;
  document.getElementById("mode").textContent = message || "this scheduler requires a token";
}

document.getElementById("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  localStorage.setItem("dagyo-token", document.getElementById("token").value.trim());
  route();
});

function stateBadge(state) {
  return el("span", { class: `state s-${state}` }, state);
}

function when(seconds) {
  return seconds ? new Date(seconds * 1000).toLocaleString() : "-";
}

function duration(record) {
  if (!record.created) return "-";
  const end = record.ended || Date.now() / 1000;
  const s = Math.max(0, end - record.created);
  return s < 60 ? s.toFixed(1) + " s" : Math.floor(s / 60) + " min " + Math.round(s % 60) + " s";
}

function go(path) {
  history.pushState({}, "", path);
  route();
}

function link(path, text) {
  return el("a", { href: path, onclick: (e) => { e.preventDefault(); go(path); } }, text);
}

// --- flows -----------------------------------------------------------------------------
function flowsPage() {
  let page = 0;
  let state = "";
  let flows = [];
  const select = el("select", { id: "state-filter" },
    ["", "pending", "running", "succeeded", "failed", "cancelled"].map((s) =>
      el("option", { value: s }, s || "every state")));
  const body = el("tbody");
  const pager = el("span", { class: "muted" });
  const draw = () => {
    const shown = flows.filter((f) => !state || f.state === state);
    const pages = Math.max(1, Math.ceil(shown.length / PAGE_SIZE));
    page = Math.min(page, pages - 1);
    body.replaceChildren(...shown.slice(page * PAGE_SIZE, (page + 1) * PAGE_SIZE).map((f) =>
      el("tr", { "data-flow": f.id },
        el("td", {}, link("/flows/" + f.id, f.id)), el("td", {}, f.name),
        el("td", {}, f.tenant || "-"), el("td", {}, stateBadge(f.state)),
        el("td", {}, when(f.created)), el("td", {}, duration(f)), el("td", {}, f.items))));
    pager.textContent = `page ${page + 1} of ${pages} · ${shown.length} flows`;
  };
  select.addEventListener("change", () => { state = select.value; page = 0; draw(); });
  main.replaceChildren(
    el("h1", {}, "Flows"),
    el("div", { class: "toolbar" }, select,
      el("button", { onclick: () => { page = Math.max(0, page - 1); draw(); } }, "‹ newer"),
      el("button", { onclick: () => { page += 1; draw(); } }, "older ›"), pager),
    el("table", { id: "flows" },
      el("thead", {}, el("tr", {}, ["id", "name", "tenant", "state", "started", "duration",
        "items"].map((h) => el("th", {}, h)))), body));
  return live("/api/events", (data) => {
    if (data.error) { body.replaceChildren(el("tr", {}, el("td", { class: "error" }, data.error))); return; }
    flows = data.flows;
    draw();
  });
}

// --- one flow ----------------------------------------------------------------------------
const NODE_WIDTH = 170;
const MIN_GAP = 130;
const LABEL_FONT = "11px system-ui, sans-serif";

// An edge's label: its typename (the standard ones short) and the items through it.
function edgeLabel(edge, items) {
  const typename = (edge.typename || "").replace("dagyo.types.", "");
  return [typename, `${items} items`].filter(Boolean).join(" · ");
}

// The room between two columns of nodes: the widest edge label, with room for its count to
// grow to seven digits, so no label runs under a node box however long its typename.
function columnGap(graph) {
  const context = document.createElement("canvas").getContext("2d");
  context.font = LABEL_FONT;
  const widest = Math.max(0, ...graph.edges.map((e) =>
    context.measureText(edgeLabel(e, 8888888)).width));
  return Math.max(MIN_GAP, Math.ceil(widest) + 24);
}

function layout(graph) {
  const layer = {};
  const incoming = {};
  for (const n of graph.nodes) { layer[n.name] = 0; incoming[n.name] = []; }
  for (const e of graph.edges) if (incoming[e.to]) incoming[e.to].push(e.from);
  for (let pass = 0; pass < graph.nodes.length; pass++) {
    for (const n of graph.nodes) {
      for (const from of incoming[n.name]) layer[n.name] = Math.max(layer[n.name], (layer[from] ?? 0) + 1);
    }
  }
  const rows = {};
  const at = {};
  const column = NODE_WIDTH + columnGap(graph);
  for (const n of graph.nodes) {
    const l = layer[n.name];
    rows[l] = (rows[l] || 0) + 1;
    at[n.name] = { x: 30 + l * column, y: 30 + (rows[l] - 1) * 90 };
  }
  return at;
}

function graphView(record) {
  const graph = record.graph;
  const at = layout(graph);
  const nodes = Object.fromEntries(record.nodes.map((n) => [n.node, n]));
  const width = Math.max(...Object.values(at).map((p) => p.x), 0) + NODE_WIDTH + 60;
  const height = Math.max(...Object.values(at).map((p) => p.y), 0) + 90;
  const svg = el("svg:svg", { id: "graph", width, height, viewBox: `0 0 ${width} ${height}` },
    el("svg:defs", {}, el("svg:marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5,
      markerWidth: 7, markerHeight: 7, orient: "auto" },
      el("svg:path", { d: "M0,0 L10,5 L0,10 z", fill: "#6b7280" }))));
  // Live per edge: the items its source port sent, and the frames waiting in its queue
  // when the scheduler last sampled it ("" until then).
  const progress = Object.fromEntries((record.edges || []).map((e) => [e.target, e]));
  for (const e of graph.edges) {
    const a = at[e.from], b = at[e.to];
    if (!a || !b) continue;
    const x1 = a.x + NODE_WIDTH, y1 = a.y + 25, x2 = b.x, y2 = b.y + 25, mx = (x1 + x2) / 2;
    const live = progress[e.target] || { items_sent: 0, queue_depth: 0, sampled: 0 };
    const depth = live.sampled ? String(live.queue_depth) : "";
    const my = (y1 + y2) / 2;
    svg.append(el("svg:g", { class: "edge", "data-edge": e.label, "data-items": live.items_sent,
      "data-depth": depth },
      el("svg:path", { d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}` }),
      el("svg:text", { x: mx, y: my - 6, "text-anchor": "middle" },
        el("svg:tspan", {}, edgeLabel(e, live.items_sent)),
        depth ? el("svg:tspan", { x: mx, dy: 17, class: "depth" }, `${depth} queued`) : "")));
  }
  for (const n of graph.nodes) {
    const p = at[n.name];
    const state = nodes[n.name] ? nodes[n.name].state : "pending";
    svg.append(el("svg:g", { class: "node", "data-node": n.name, "data-state": state },
      el("svg:rect", { x: p.x, y: p.y, width: NODE_WIDTH, height: 50, class: `s-${state}` }),
      el("svg:text", { x: p.x + 10, y: p.y + 21 }, n.name),
      el("svg:text", { x: p.x + 10, y: p.y + 39, "font-size": "11" }, `${n.progdef} · ${state}`)));
  }
  return svg;
}

async function download(record) {
  const response = await fetch(`/api/flows/${record.id}/exports.jsonl`, { headers: headers() });
  save(await response.blob(), record.id + ".jsonl");
}

// An offloaded exported item: a link to its serialized bytes (NAME-N.binpb, as `dagyo flow
// export` writes it), fetched with the token like every other request.
function offloadedLink(e) {
  const ref = e.value["@offloaded"];
  const name = `${e.export}-${e.download.split("/").pop()}.binpb`;
  return el("p", { class: "offloaded", "data-export": e.export },
    `${e.export}: `,
    el("a", { href: e.download, download: name, onclick: async (event) => {
      event.preventDefault();
      const response = await fetch(e.download, { headers: headers() });
      if (!response.ok) { alert((await response.json()).error || response.statusText); return; }
      save(await response.blob(), name);
    } }, `download ${name}`),
    el("span", { class: "muted" }, ` ${ref.typename}, ${ref.size} bytes, SHA-256 ${ref.sha256}`));
}

function save(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = el("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

function flowPage(flowId) {
  main.replaceChildren(el("h1", {}, "Flow " + flowId), el("p", { class: "muted" }, "Loading…"));
  return live("/api/events?flow=" + encodeURIComponent(flowId), (record) => {
    if (record.error) { main.replaceChildren(el("h1", {}, "Flow " + flowId), el("p", { class: "error" }, record.error)); return; }
    const active = record.state === "pending" || record.state === "running";
    const cancel = el("button", { class: "danger", id: "cancel", onclick: async () => {
      if (!confirm(`Cancel flow ${record.name} (${flowId})? Every job of it is stopped now; ` +
        "a cancelled flow cannot be resumed.")) return;
      cancel.disabled = true;
      try { await api(`/api/flows/${flowId}/cancel`, { method: "POST" }); }
      catch (error) { alert(error.message); }
    } }, "Cancel");
    const parts = [
      el("h1", {}, `${record.name} `, stateBadge(record.state)),
      el("div", { class: "toolbar" }, el("span", { class: "muted" },
        `${record.id} · tenant ${record.tenant || "-"} · started ${when(record.created)} · ${duration(record)}`),
        active ? cancel : ""),
      record.waiting ? el("p", { class: "muted", id: "waiting" }, record.waiting) : "",
      el("div", { class: "card" }, graphView(record)),
      el("h2", {}, "Nodes"),
      el("table", { id: "nodes" }, el("thead", {}, el("tr", {},
        ["node", "progdef", "version", "state", "executor", "items received", "items sent"]
          .map((h) => el("th", {}, h)))),
        el("tbody", {}, record.nodes.map((n) => el("tr", { "data-node": n.node },
          el("td", {}, n.node), el("td", {}, n.progdef), el("td", {}, n.version || "-"),
          el("td", {}, stateBadge(n.state)), el("td", {}, n.executor || "-"),
          el("td", { class: "received" }, n.items_received),
          el("td", { class: "items" }, n.errors_sent
            ? `${n.items_sent} (${n.errors_sent} error${n.errors_sent === 1 ? "" : "s"})`
            : n.items_sent))))),
    ];
    if (record.failure) {
      const f = record.failure;
      parts.push(el("h2", {}, "Failure"), el("div", { class: "card", id: "failure" },
        el("p", {}, `${f.kind}: node ${f.node || "-"} (progdef ${f.progdef || "-"}) on executor ${f.executor || "-"}`),
        el("p", { class: "error" }, f.error), f.traceback ? el("pre", { id: "traceback" }, f.traceback) : ""));
    }
    parts.push(el("h2", {}, `Exports (${record.exports_kept} kept${record.exports_truncated ? ", more dropped" : ""})`),
      el("div", { class: "card", id: "exports" },
        record.exports.map((e) => e.download ? offloadedLink(e) : el("pre", {}, JSON.stringify(e))),
        record.exports_kept ? el("button", { onclick: () => download(record) }, "Download all as JSON lines") : el("span", { class: "muted" }, "none")));
    if (record.graph.consts.length) {
      parts.push(el("h2", {}, "Consts"), el("div", { class: "card" },
        record.graph.consts.map((c) => el("pre", {}, `${c.to} = ${JSON.stringify(c.values)}`))));
    }
    main.replaceChildren(...parts);
  });
}

// --- failures and catalogue ------------------------------------------------------------------
function failuresPage() {
  const body = el("tbody");
  main.replaceChildren(el("h1", {}, "Failures"), el("table", { id: "failures" },
    el("thead", {}, el("tr", {}, ["time", "flow", "kind", "node", "progdef", "executor", "error"].map((h) => el("th", {}, h)))), body));
  return live("/api/events", (data) => {
    if (data.error) return;
    body.replaceChildren(...data.failures.slice().reverse().map((f) => el("tr", {},
      el("td", { class: "time" }, when(f.time)),
      el("td", {}, link("/flows/" + f.flow_id, f.flow_id)), el("td", {}, f.kind),
      el("td", {}, f.node || "-"), el("td", {}, f.progdef || "-"), el("td", {}, f.executor || "-"),
      el("td", {}, el("pre", {}, (f.error || "").split("\n")[0])))));
  });
}

async function cataloguePage() {
  const data = await api("/api/catalogue");
  const ports = (p) => Object.entries(p).map(([k, v]) => `${k}: ${v}`).join(", ") || "-";
  main.replaceChildren(el("h1", {}, "Catalogue"),
    el("table", { id: "progdefs" }, el("thead", {}, el("tr", {}, ["progdef", "inputs", "outputs", "does"].map((h) => el("th", {}, h)))),
      el("tbody", {}, data.progdefs.map((p) => el("tr", {}, el("td", {}, p.name), el("td", {}, ports(p.inputs)),
        el("td", {}, ports(p.outputs)), el("td", {}, p.description))))),
    el("h2", {}, "Types"),
    el("table", { id: "types" }, el("thead", {}, el("tr", {}, ["typename", "fields", "doc"].map((h) => el("th", {}, h)))),
      el("tbody", {}, data.types.map((t) => el("tr", { "data-type": t.typename }, el("td", {}, t.typename),
        el("td", {}, t.fields), el("td", {}, t.doc || ""))))));
  return () => {};
}

async function route() {
  stopLive();
  const path = location.pathname;
  const section = path.startsWith("/failures") ? "failures" : path.startsWith("/catalogue") ? "catalogue" : "flows";
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.nav === section);
  try {
    const info = await api("/api/info");
    document.getElementById("mode").textContent = info.open ? "open: no tokens on this scheduler" : "";
    if (!info.open && !token()) askToken();
    if (path.startsWith("/flows/")) stopLive = flowPage(decodeURIComponent(path.slice(7)));
    else if (section === "failures") stopLive = failuresPage();
    else if (section === "catalogue") stopLive = await cataloguePage();
    else stopLive = flowsPage();
  } catch (error) {
    main.replaceChildren(el("p", { class: "error" }, error.message));
  }
}

for (const a of document.querySelectorAll("nav a")) {
  a.addEventListener("click", (e) => { e.preventDefault(); go(a.getAttribute("href")); });
}
window.addEventListener("popstate", route);
route();
