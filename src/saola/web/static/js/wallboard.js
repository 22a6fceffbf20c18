// The wallboard: one tile per pack panel, a map of the packs' layers, the live alert feed and ticker, the clock.
import {
  ApiError, api, applyLanguage, errorText, toast, el, fmtAge, fmtNumber, fmtTime, follow, pick, requireLogin, setupLanguage, startClock, t, token, wireTopbar,
} from "./common.js";
import { VectorLayer, makeMap } from "./map.js";

const state = { unit: new URLSearchParams(location.search).get("unit"), overview: null, layers: new Map(), charts: [],
  codes: new Set(), alerts: [], caseTypes: null, me: null, refreshTimer: null, live: false };
let map;

const STATUS_CLASS = (s) => (s && s !== "none" ? `s-${s}` : "");

function sparkline(node, kpi) {
  if (!window.echarts || !kpi.trend || kpi.trend.length < 2) return;
  const colour = { good: "#4ade80", warning: "#fbbf24", critical: "#f87171" }[kpi.status] || "#38bdf8";
  const chart = window.echarts.init(node, null, { renderer: "canvas" });
  chart.setOption({
    animation: false, grid: { left: 0, right: 0, top: 3, bottom: 1 },
    xAxis: { type: "time", show: false }, yAxis: { type: "value", show: false, scale: true },
    series: [{ type: "line", data: kpi.trend.map((p) => [p.ts, p.value]), showSymbol: false, smooth: true,
      lineStyle: { width: 1.6, color: colour }, areaStyle: { color: colour, opacity: 0.12 } }],
    tooltip: { show: false },
  });
  state.charts.push(chart);
}

function trendChart(node, panel) {
  const series = panel.kpis.filter((k) => k.trend && k.trend.length > 1);
  if (!window.echarts || !series.length) { node.remove(); return; }
  const colours = ["#38bdf8", "#a78bfa", "#f472b6", "#facc15"];
  const chart = window.echarts.init(node, null, { renderer: "canvas" });
  chart.setOption({
    animation: false, grid: { left: 34, right: 8, top: 8, bottom: 18 }, tooltip: { trigger: "axis" },
    xAxis: { type: "time", axisLabel: { color: "#9fb0c9", fontSize: 10 }, axisLine: { lineStyle: { color: "#2c3f63" } } },
    yAxis: { type: "value", scale: true, axisLabel: { color: "#9fb0c9", fontSize: 10 }, splitLine: { lineStyle: { color: "#1c2a45" } } },
    series: series.map((k, i) => ({ type: "line", name: pick(k.name_vi, k.name_en), data: k.trend.map((p) => [p.ts, p.value]),
      showSymbol: false, smooth: true, lineStyle: { width: 2, color: colours[i % colours.length] } })),
  });
  state.charts.push(chart);
}

function renderKpi(kpi) {
  const value = el("div", { class: `value num ${STATUS_CLASS(kpi.status)}`, dataset: { value: kpi.value ?? "" } },
    kpi.value === null ? "—" : fmtNumber(kpi.value), kpi.value === null ? null : el("small", { text: kpi.unit }));
  const meta = el("div", { class: "meta" });
  if (kpi.target !== null && kpi.target !== undefined) {
    meta.append(el("span", { text: `${t("target")} ${kpi.target_period}: ${fmtNumber(kpi.target)}` }));
  } else if (kpi.value === null) meta.append(el("span", { text: t("no_data") }));
  else meta.append(el("span", { text: fmtAge(kpi.age_seconds) }));
  if (kpi.stale) meta.append(el("span", { class: "stale", text: `⚠ ${t("stale")}` }));
  const node = el("div", { class: "kpi", dataset: { indicator: kpi.indicator, status: kpi.status } },
    el("div", { class: "name", title: pick(kpi.name_vi, kpi.name_en), text: pick(kpi.name_vi, kpi.name_en) }), value, meta);
  if (kpi.progress !== null && kpi.progress !== undefined) {
    node.append(el("div", { class: "bar" }, el("i", { class: STATUS_CLASS(kpi.status), style: `width:${Math.min(100, Math.max(2, kpi.progress * 100))}%` })));
  }
  const spark = el("div", { class: "spark" });
  node.append(spark);
  return [node, spark];
}

function renderTiles(overview) {
  const box = document.getElementById("tiles");
  const previous = new Map([...box.querySelectorAll(".kpi")].map((k) => [k.dataset.indicator, k.querySelector(".value").dataset.value]));
  state.charts.forEach((c) => c.dispose());
  state.charts = [];
  box.replaceChildren();
  state.codes = new Set();
  const later = [];
  for (const panel of overview.panels) {
    if (panel.kind === "map") continue;  // the central map already draws what a map panel would
    const ageStale = panel.kpis.some((k) => k.stale);
    const tile = el("article", { class: `tile clickable ${STATUS_CLASS(panel.status)}`, tabindex: "0", dataset: { panel: panel.key },
      "aria-label": pick(panel.title_vi, panel.title_en) },
    el("h2", {}, pick(panel.title_vi, panel.title_en),
      el("span", { class: `age${ageStale ? " stale" : ""}`, text: panel.age_seconds === null ? t("no_data") : `${t("updated")} ${fmtAge(panel.age_seconds)}` })));
    if (panel.kpis.every((k) => k.value === null)) {
      tile.classList.add("empty");
      tile.append(el("p", { class: "muted", style: "margin:0", text: `${t("no_data")} — ${pick(overview.unit.name, overview.unit.name_en)}` }));
      tile.addEventListener("click", () => openPanel(panel));
      box.append(tile);
      panel.kpis.forEach((k) => state.codes.add(k.indicator));
      continue;
    }
    const grid = el("div", { class: "kpis" });
    for (const kpi of panel.kpis) {
      state.codes.add(kpi.indicator);
      const [node, spark] = renderKpi(kpi);
      const before = previous.get(kpi.indicator);
      if (before !== undefined && String(kpi.value ?? "") !== before) node.querySelector(".value").classList.add("flash");
      grid.append(node);
      later.push([spark, kpi]);
    }
    tile.append(grid);
    if (panel.kind === "trend") {
      const chart = el("div", { class: "trend" });
      tile.append(chart);
      later.push([chart, null, panel]);
    }
    tile.addEventListener("click", () => openPanel(panel));
    tile.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); openPanel(panel); } });
    box.append(tile);
  }
  // Sparklines after the numbers are on screen: the numbers are what the room reads first.
  requestAnimationFrame(() => later.forEach(([node, kpi, panel]) => (kpi ? sparkline(node, kpi) : trendChart(node, panel))));
}

function renderCrumbs(overview) {
  const nav = document.getElementById("crumbs");
  nav.replaceChildren();
  const chain = [...overview.ancestors, overview.unit];
  chain.forEach((u, i) => {
    if (i) nav.append(el("span", { class: "sep", text: "›" }));
    if (i === chain.length - 1) nav.append(el("span", { class: "here", text: pick(u.name, u.name_en), dataset: { unit: u.code } }));
    else nav.append(el("button", { text: pick(u.name, u.name_en), dataset: { unit: u.code }, onclick: () => goTo(u.code) }));
  });
  const select = document.getElementById("commune");
  select.replaceChildren(el("option", { value: "", text: overview.children.length ? t("all_communes") : pick(overview.unit.name, overview.unit.name_en) }));
  for (const c of overview.children) select.append(el("option", { value: c.code, text: pick(c.name, c.name_en) }));
  select.disabled = !overview.children.length;
  select.onchange = () => { if (select.value) goTo(select.value); };
}

function goTo(code) {
  state.unit = code;
  const url = new URL(location.href);
  url.searchParams.set("unit", code);
  history.pushState({ unit: code }, "", url);
  load(true);
}

function renderLegend() {
  const legend = document.getElementById("legend");
  const rows = [];
  for (const layer of state.layers.values()) {
    const style = layer.def.style || {};
    if (Array.isArray(style.legend)) {
      rows.push(el("div", { class: "muted", text: pick(layer.def.title_vi, layer.def.title_en) }));
      style.legend.forEach((item) => rows.push(el("div", { class: "row" }, el("i", { style: `background:${item.color}` }),
        `${pick(item.label_vi, item.label_en)}${item.from !== undefined ? ` (${item.from}–${item.to ?? ""})` : ""}`)));
    } else if (!style.property) {
      rows.push(el("div", { class: "row" }, el("i", { style: `background:${style.color || "#38bdf8"}` }), pick(layer.def.title_vi, layer.def.title_en)));
    }
  }
  legend.replaceChildren(el("b", { text: t("legend") }), ...rows);
}

function renderLayerControl() {
  const box = document.getElementById("layers");
  box.replaceChildren(el("b", { text: t("layers") }));
  for (const [key, layer] of state.layers) {
    const input = el("input", { type: "checkbox", checked: layer.enabled, dataset: { layer: key } });
    input.addEventListener("change", () => layer.setEnabled(input.checked));
    const suffix = layer.byBox && layer.def.min_zoom ? ` (≥ z${layer.def.min_zoom})` : "";
    box.append(el("label", { dataset: { layer: key, count: String(layer.count) } }, input, pick(layer.def.title_vi, layer.def.title_en) + suffix));
  }
}

function renderLive() {
  const live = document.getElementById("live");
  live.classList.toggle("on", state.live);
  live.textContent = state.live ? t("live") : t("offline");
  live.dataset.state = state.live ? "on" : "off";
}

async function setupLayers(overview, fit) {
  for (const def of overview.layers) {
    if (state.layers.has(def.key)) continue;
    const layer = new VectorLayer(map, def, { onFeature: (d, f) => onFeature(d, f), onCount: (n) => {
      // How many features each layer drew, for the legend's readers and for the browser tests.
      const label = document.querySelector(`#layers label[data-layer="${def.key}"]`);
      if (label) label.dataset.count = String(n);
    } });
    state.layers.set(def.key, layer);
    layer.group.addTo(map);
  }
  renderLayerControl();
  await Promise.all([...state.layers.values()].map((l) => l.refresh()));
  renderLayerControl();  // with the counts the layers drew
  renderLegend();
  if (fit) fitToUnit(overview.unit.code);
}

function fitToUnit(code) {
  const L = window.L;
  const all = [];
  const inside = [];
  for (const layer of state.layers.values()) {
    if (layer.byBox) continue;
    for (const f of layer.features || []) {
      if (!f.geometry || f.geometry.type !== "Point") continue;
      const p = f.properties || {};
      const point = [f.geometry.coordinates[1], f.geometry.coordinates[0]];
      all.push(point);
      if (p.unit_code === code || (p.unit_path || "").split(".").includes(code)) inside.push(point);
    }
  }
  // A commune: frame what lies in it; the province (or a commune with nothing on the map): frame everything.
  const points = inside.length && state.overview.children.length === 0 ? inside : all;
  if (points.length > 1) map.fitBounds(L.latLngBounds(points).pad(0.2), { maxZoom: points === inside ? 16 : 13 });
  else if (points.length === 1) map.setView(points[0], 14);
}

function onFeature(def, feature) {
  const p = feature.properties || {};
  if (def.key === "environment.stations" && p.id) openEntity({ entity_id: p.id, label: p.name, indicator: null, latest: p.latest, unit: p.unit_code });
}

// ---- drill down: domain -> subjects -> one entity ------------------------------------------------------
function openDrawer(title) {
  document.getElementById("drawer-title").textContent = title;
  const body = document.getElementById("drawer-body");
  body.replaceChildren();
  document.getElementById("drawer").classList.remove("hidden");
  document.getElementById("drawer-close").focus();
  return body;
}

async function openPanel(panel) {
  const body = openDrawer(pick(panel.title_vi, panel.title_en));
  for (const kpi of panel.kpis) {
    const section = el("section", { class: "pane", style: "margin-bottom:10px" }, el("h2", { text: pick(kpi.name_vi, kpi.name_en) }));
    body.append(section);
    let rows = [];
    try {
      rows = await api("/api/observations/latest", { query: { indicator: kpi.indicator, within: state.overview.unit.code, limit: 300 } });
    } catch (e) { section.append(el("p", { class: "muted", text: e.message })); continue; }
    if (!rows.length) { section.append(el("p", { class: "muted", text: t("no_data") })); continue; }
    const table = el("table", { class: "grid" }, el("thead", {}, el("tr", {}, el("th", { text: t("subjects") }), el("th", { text: t("value") }), el("th", { text: t("time") }))));
    const tbody = el("tbody");
    rows.sort((a, b) => (b.value ?? 0) - (a.value ?? 0));
    for (const r of rows.slice(0, 80)) {
      const label = el("button", { class: "pill", style: "padding:2px 4px", text: r.label, onclick: () => {
        if (r.subject_kind === "entity") openEntity({ entity_id: r.entity_id, label: r.label, indicator: kpi.indicator, unit: r.unit_code });
        else if (r.unit_code !== state.overview.unit.code) { closeDrawer(); goTo(r.unit_code); }
      } });
      tbody.append(el("tr", { dataset: { subject: r.entity_id || r.unit_code } }, el("td", {}, label),
        el("td", { class: "num" }, `${fmtNumber(r.value)} ${kpi.unit}`), el("td", { class: "muted", text: fmtTime(r.ts) })));
    }
    table.append(tbody);
    section.append(table);
  }
}

async function openEntity({ entity_id: id, label, indicator, unit }) {
  const body = openDrawer(label || id);
  const entity = await api(`/api/entities/${id}`).catch(() => null);
  if (entity && entity.geometry && entity.geometry.type === "Point") map.setView([entity.geometry.coordinates[1], entity.geometry.coordinates[0]], 15);
  body.append(el("p", { class: "muted", text: `${entity ? entity.type : ""} · ${unit || ""}` }));
  const codes = indicator ? [indicator] : [...state.codes];
  const latest = await api("/api/observations/latest", { query: { indicator: codes.slice(0, 50), within: unit || state.overview.unit.code, kind: "entity", limit: 2000 } }).catch(() => []);
  const mine = latest.filter((r) => r.entity_id === id);
  const chosen = indicator || (mine[0] && mine[0].indicator);
  if (mine.length) {
    const dl = el("dl", { class: "kv" });
    mine.forEach((r) => dl.append(el("dt", { text: r.indicator }), el("dd", { class: "num", text: `${fmtNumber(r.value)} · ${fmtTime(r.ts)}` })));
    body.append(dl);
  }
  if (!chosen) return;
  const series = await api("/api/observations", { query: { indicator: chosen, entity: id, bucket: "hour" } }).catch(() => null);
  if (!series || !series.points.length || !window.echarts) return;
  const node = el("div", { style: "height:260px;margin-top:12px" });
  body.append(el("h2", { style: "font-size:15px;margin-top:14px", text: `${chosen} — 24 ${t("hours")}` }), node);
  const chart = window.echarts.init(node, "dark", { renderer: "canvas" });
  chart.setOption({ backgroundColor: "transparent", grid: { left: 40, right: 10, top: 10, bottom: 24 }, tooltip: { trigger: "axis" },
    xAxis: { type: "time" }, yAxis: { type: "value", scale: true },
    series: [{ type: "line", data: series.points.map((p) => [p.ts, p.value]), showSymbol: false, lineStyle: { color: "#38bdf8" }, areaStyle: { opacity: 0.15 } }] });
}

function closeDrawer() { document.getElementById("drawer").classList.add("hidden"); }

// ---- operations: counts, feed, ticker -------------------------------------------------------------------
async function loadOps() {
  const unit = state.overview.unit.code;
  // Four independent reads at once: the operations column is ready after the slowest, not after their sum.
  const [alerts, types, recent, stats] = await Promise.all([
    api("/api/alerts", { query: { status: ["firing", "acknowledged"], unit, limit: 40 } }).catch(() => null),
    state.caseTypes ? Promise.resolve({ types: state.caseTypes }) : api("/api/cases/types").catch(() => null),
    api("/api/cases", { query: { unit, limit: 15 } }).catch(() => null),
    api("/api/cases/stats", { query: { group_by: "type", unit } }).catch(() => null),
  ]);
  if (alerts) {
    state.alerts = alerts.items;
    renderFeed();
    document.getElementById("n-alerts").textContent = String(alerts.items.filter((a) => a.status === "firing").length);
  }
  if (!types || !stats || !recent) return;  // viewers without cases:read see dashes
  state.caseTypes = types.types;
  document.getElementById("cases").replaceChildren(...recent.items.filter((c) => c.case_type !== "task").map((c) => el("li", { class: c.overdue ? "sev-critical" : c.case_type === "incident" ? "sev-high" : "sev-low", dataset: { case: c.code } },
    el("span", { class: "dot" }), el("span", {}, el("div", { text: c.title }), el("div", { class: "sub", text: `${c.code} · ${c.type_label || c.case_type} · ${c.status_label || c.status}${c.overdue ? ` · ${t("overdue")}` : ""}` })),
    el("span", { class: "when", text: fmtTime(c.created_at, false) }))));
  const rows = Object.fromEntries((stats.items || []).map((g) => [g.key, g]));
  const openOf = (type) => {
    const def = state.caseTypes.find((d) => d.type === type);
    const row = rows[type];
    if (!row || !def) return 0;
    return Object.entries(row.by_status || {}).filter(([s]) => !def.resolved_statuses.includes(s) && !def.closed_statuses.includes(s)).reduce((n, [, c]) => n + c, 0);
  };
  document.getElementById("n-incidents").textContent = String(openOf("incident"));
  document.getElementById("n-reports").textContent = String((rows.citizen_report && rows.citizen_report.overdue_open) || 0);
}

function renderFeed(fresh) {
  const feed = document.getElementById("feed");
  feed.replaceChildren();
  if (!state.alerts.length) feed.append(el("li", {}, el("span"), el("span", { class: "muted", text: t("no_alerts") }), el("span")));
  for (const a of state.alerts.slice(0, 40)) {
    feed.append(el("li", { class: `sev-${a.severity}${fresh && fresh === (a.id || a.alert_id) ? " new" : ""}`, dataset: { alert: a.id || a.alert_id } },
      el("span", { class: "dot" }),
      el("span", {}, el("div", { text: a.title }), el("div", { class: "sub", text: `${t(a.severity)} · ${t(a.status)}${a.value !== null && a.value !== undefined ? ` · ${fmtNumber(a.value)}` : ""}` })),
      el("span", { class: "when", text: fmtTime(a.fired_at, false) })));
  }
  const ticker = document.getElementById("ticker");
  const items = state.alerts.filter((a) => a.status === "firing").slice(0, 12);
  const spans = (items.length ? items : [{ title: t("no_alerts"), severity: "info", fired_at: null }])
    .map((a) => el("span", {}, el("b", { class: `dot sev-${a.severity}`, style: "display:inline-block;width:9px;height:9px;border-radius:50%" }), a.fired_at ? `${fmtTime(a.fired_at, false)} · ${a.title}` : a.title));
  ticker.replaceChildren(...spans, ...spans.map((s) => s.cloneNode(true)));  // twice, for a seamless loop
}

function onAlert(data) {
  const id = data.alert_id;
  const item = { id, title: data.title, severity: data.severity, status: data.status, fired_at: data.fired_at, value: data.value };
  state.alerts = [item, ...state.alerts.filter((a) => (a.id || a.alert_id) !== id)].filter((a) => a.status !== "resolved");
  renderFeed(id);
  document.getElementById("n-alerts").textContent = String(state.alerts.filter((a) => a.status === "firing").length);
}

// ---- loading and live updates --------------------------------------------------------------------------
async function load(fit = false, prefetched = null) {
  const overview = await (prefetched || api("/api/dashboards/overview", { query: { unit: state.unit } }));
  state.overview = overview;
  state.unit = overview.unit.code;
  renderCrumbs(overview);
  renderTiles(overview);
  document.body.dataset.unit = overview.unit.code;
  document.body.dataset.loaded = String(Date.now());
  const layersDone = setupLayers(overview, fit);
  const opsDone = loadOps();
  if (!document.body.dataset.renderedMs) {
    // First full render (tiles, map layers, operations): what benchmarks/wallboard.py measures.
    Promise.all([layersDone, opsDone]).then(() => { document.body.dataset.renderedMs = String(Math.round(performance.now())); });
  }
}

function soon() {
  clearTimeout(state.refreshTimer);
  state.refreshTimer = setTimeout(() => load(false), 1200);
}

async function main() {
  // The overview is asked for at once, alongside "who am I": the first render waits for one round trip, not two.
  const first = token() ? api("/api/dashboards/overview", { query: { unit: state.unit } }) : null;
  state.me = await requireLogin();
  wireTopbar(state.me);
  setupLanguage(() => {
    renderLive();
    if (state.overview) { renderCrumbs(state.overview); renderTiles(state.overview); renderFeed(); renderLegend(); renderLayerControl(); }
  });
  startClock(document.getElementById("clock"), document.getElementById("date"));
  map = makeMap(document.getElementById("map"));
  document.getElementById("drawer-close").addEventListener("click", closeDrawer);
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") closeDrawer(); });
  window.addEventListener("popstate", () => { state.unit = new URLSearchParams(location.search).get("unit"); load(true); });
  try {
    await load(true, first);
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 404 || !state.unit) throw e;
    // A unit outside the caller's scope (or unknown): say so and show the caller's own unit instead.
    toast(errorText(e), true);
    state.unit = null;
    history.replaceState(null, "", "/wallboard");
    await load(true);
  }
  follow("observations,alerts,cases", {
    observations: (msg) => { if ((msg.items || []).some((i) => state.codes.has(i.indicator))) soon(); },
    alerts: (msg) => { onAlert(msg); loadOps(); },
    cases: () => { const l = state.layers.get("core.incidents"); if (l) l.refresh(); loadOps(); },
  }, (on) => { state.live = on; renderLive(); });
  setInterval(() => load(false), 60000);  // ages move on even when nothing new arrives
  applyLanguage();
}

main();
