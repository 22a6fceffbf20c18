// The operator console: alert queue, incident board with SOP checklists, directives by recipient, citizen reports.
import {
  api, applyLanguage, el, errorText, fmtNumber, fmtTime, follow, pick, requireLogin, setupLanguage, startClock, t, toast, wireTopbar,
} from "./common.js";

const state = { view: "alerts", types: {}, me: null, selected: {} };

function badge(text, cls = "") { return el("span", { class: `badge ${cls}`, text }); }

// ---- alerts --------------------------------------------------------------------------------------------
async function loadAlerts() {
  const box = document.getElementById("view-alerts");
  const page = await api("/api/alerts", { query: { status: ["firing", "acknowledged"], limit: 200 } });
  document.getElementById("c-alerts").textContent = String(page.items.filter((a) => a.status === "firing").length);
  const tbody = el("tbody");
  for (const a of page.items) {
    const actions = el("td", { class: "actions" });
    if (a.status === "firing") actions.append(el("button", { class: "btn small primary", text: t("acknowledge"), dataset: { action: "ack" }, onclick: () => acknowledge(a) }));
    actions.append(" ", el("button", { class: "btn small", text: t("resolve"), dataset: { action: "resolve" }, onclick: () => resolve(a) }));
    tbody.append(el("tr", { dataset: { alert: a.id, status: a.status } },
      el("td", {}, badge(t(a.severity), `sev-${a.severity}`)),
      el("td", {}, el("div", { text: a.title }), el("div", { class: "muted", text: a.indicator_code || a.event_type || "" })),
      el("td", { class: "num", text: a.value === null ? "—" : `${fmtNumber(a.value)}${a.threshold !== null ? ` / ${fmtNumber(a.threshold)}` : ""}` }),
      el("td", {}, badge(t(a.status), a.status === "acknowledged" ? "ok" : ""), a.acknowledged_by ? el("div", { class: "muted", text: a.acknowledged_by }) : null),
      el("td", { class: "muted", text: fmtTime(a.fired_at) }), actions));
  }
  const head = el("tr", {}, ...["severity", "title", "value", "status", "fired_at", "actions"].map((k) => el("th", { scope: "col", text: t(k) })));
  box.replaceChildren(page.items.length ? el("table", { class: "grid" }, el("thead", {}, head), tbody) : el("p", { class: "muted", text: t("no_alerts") }));
}

async function acknowledge(alert) {
  try { await api(`/api/alerts/${alert.id}/acknowledge`, { method: "POST", body: { note: "" } }); toast(`${t("acknowledged")}: ${alert.title}`); }
  catch (e) { toast(errorText(e), true); }
  loadAlerts();
}

function resolve(alert) {
  const dialog = document.getElementById("resolve-dialog");
  const note = document.getElementById("resolve-note");
  note.value = "";
  dialog.onclose = async () => {
    if (dialog.returnValue !== "ok" || !note.value.trim()) return;
    try { await api(`/api/alerts/${alert.id}/resolve`, { method: "POST", body: { note: note.value.trim() } }); toast(`${t("resolved")}: ${alert.title}`); }
    catch (e) { toast(errorText(e), true); }
    loadAlerts();
  };
  dialog.showModal();
  note.focus();
}

// ---- cases (incidents, citizen reports) ----------------------------------------------------------------
function statusOrder(type) {
  const def = state.types[type];
  if (!def) return [];
  const seen = [def.initial_status];
  for (let i = 0; i < seen.length; i += 1) for (const next of def.transitions[seen[i]] || []) if (!seen.includes(next)) seen.push(next);
  return [...seen, ...Object.keys(def.statuses).filter((s) => !seen.includes(s))];
}

async function loadIncidents() {
  const page = await api("/api/cases", { query: { type: "incident", limit: 200 } });
  const def = state.types.incident;
  const open = page.items.filter((c) => def && !def.closed_statuses.includes(c.status));
  document.getElementById("c-incidents").textContent = String(open.filter((c) => !def.resolved_statuses.includes(c.status)).length);
  const board = document.getElementById("board");
  board.replaceChildren();
  for (const status of statusOrder("incident").filter((s) => !def.closed_statuses.includes(s))) {
    const lane = el("section", { class: "lane", dataset: { status } }, el("h3", { text: `${def.statuses[status] || status} (${open.filter((c) => c.status === status).length})` }));
    for (const c of open.filter((x) => x.status === status)) {
      lane.append(el("div", { class: "card", tabindex: "0", role: "button", dataset: { case: c.id }, onclick: () => showCase(c.id, "incident-detail", loadIncidents),
        onkeydown: (e) => { if (e.key === "Enter") showCase(c.id, "incident-detail", loadIncidents); } },
      el("div", { class: "code", text: `${c.code} · ${c.priority_label || c.priority}` }), el("div", { text: c.title }),
      c.overdue ? badge(t("overdue"), "overdue") : null));
    }
    board.append(lane);
  }
}

async function showCase(id, paneId, reload) {
  state.selected[paneId] = id;
  const pane = document.getElementById(paneId);
  const c = await api(`/api/cases/${id}`);
  const def = state.types[c.case_type];
  const actions = el("div", { style: "display:flex;gap:6px;flex-wrap:wrap;margin:8px 0" });
  const reason = el("input", { class: "input", placeholder: t("reason"), "aria-label": t("reason") });
  for (const next of c.allowed_transitions) {
    actions.append(el("button", { class: "btn small", dataset: { to: next }, text: `${t("move_to")}: ${(def && def.statuses[next]) || next}`, onclick: async () => {
      try { await api(`/api/cases/${id}/status`, { method: "POST", body: { status: next, reason: reason.value } }); toast(t("saved")); }
      catch (e) { toast(errorText(e), true); }
      await reload();
      showCase(id, paneId, reload);
    } }));
  }
  const dl = el("dl", { class: "kv" },
    el("dt", { text: t("status") }), el("dd", { text: c.status_label || c.status }),
    el("dt", { text: t("unit") }), el("dd", { text: c.unit_code }),
    el("dt", { text: t("created") }), el("dd", { text: fmtTime(c.created_at) }),
    el("dt", { text: t("due") }), el("dd", {}, fmtTime(c.due_at), c.overdue ? badge(t("overdue"), "overdue") : null),
    c.category ? el("dt", { text: t("category") }) : null, c.category ? el("dd", { text: (def && def.categories && def.categories[c.category]) || c.category }) : null);
  pane.replaceChildren(el("h2", { text: `${c.code} — ${c.title}` }), c.description ? el("p", { text: c.description }) : null, dl,
    c.allowed_transitions.length ? reason : null, actions);
  try {
    const sop = await api(`/api/cases/${id}/sop`);
    if (sop.steps.length) {
      const list = el("ul", { class: "checklist" });
      for (const s of sop.steps) {
        const box = el("input", { type: "checkbox", id: `step-${s.id}`, checked: Boolean(s.done_at) });
        box.addEventListener("change", async () => {
          try { await api(`/api/cases/${id}/sop/${s.id}`, { method: "POST", body: { done: box.checked } }); }
          catch (e) { toast(errorText(e), true); box.checked = !box.checked; }
          showCase(id, paneId, reload);
        });
        list.append(el("li", {}, box, el("label", { for: `step-${s.id}` }, el("div", { text: `${s.position}. ${s.title}${s.required ? " *" : ""}` }),
          s.done_at ? el("div", { class: "muted", text: `${s.done_by} · ${fmtTime(s.done_at)}` }) : el("div", { class: "muted", text: s.owner_role }))));
      }
      pane.append(el("h2", { style: "margin-top:14px", text: `${t("sop")} — ${sop.done}/${sop.total}` }),
        el("div", { class: "progress" }, el("i", { style: `width:${sop.total ? (100 * sop.done) / sop.total : 0}%` })), list);
    }
  } catch (e) { /* no checklist for this type */ }
}

async function loadReports() {
  const page = await api("/api/cases", { query: { type: "citizen_report", limit: 200 } });
  const def = state.types.citizen_report;
  const open = page.items.filter((c) => !def || !def.closed_statuses.includes(c.status));
  document.getElementById("c-reports").textContent = String(open.filter((c) => !def || !def.resolved_statuses.includes(c.status)).length);
  const tbody = el("tbody");
  for (const c of page.items) {
    tbody.append(el("tr", { dataset: { case: c.id, code: c.code }, tabindex: "0", style: "cursor:pointer", onclick: () => showCase(c.id, "report-detail", loadReports),
      onkeydown: (e) => { if (e.key === "Enter") showCase(c.id, "report-detail", loadReports); } },
    el("td", { text: c.code }), el("td", {}, el("div", { text: c.title }), el("div", { class: "muted", text: (def && def.categories && def.categories[c.category]) || c.category })),
    el("td", { text: c.unit_code }), el("td", {}, badge(c.status_label || c.status), c.overdue ? badge(t("overdue"), "overdue") : null),
    el("td", { class: "muted", text: fmtTime(c.created_at) })));
  }
  const head = el("tr", {}, ...["code", "title", "unit", "status", "created"].map((k) => el("th", { scope: "col", text: t(k) })));
  document.getElementById("report-list").replaceChildren(page.items.length ? el("table", { class: "grid" }, el("thead", {}, head), tbody) : el("p", { class: "muted", text: t("no_data") }));
}

// ---- directives ----------------------------------------------------------------------------------------
async function loadDirectives() {
  const page = await api("/api/cases", { query: { type: "directive", limit: 100 } });
  document.getElementById("c-directives").textContent = String(page.items.filter((c) => c.status !== "completed" && c.status !== "closed").length);
  const list = el("div");
  for (const c of page.items) {
    list.append(el("div", { class: "card", tabindex: "0", role: "button", dataset: { directive: c.id }, onclick: () => showDirective(c.id), onkeydown: (e) => { if (e.key === "Enter") showDirective(c.id); } },
      el("div", { class: "code", text: `${c.code} · ${c.status_label || c.status}` }), el("div", { text: c.title }),
      el("div", { class: "progress", style: "margin-top:6px" }, el("i", { style: `width:${c.progress_percent}%` }))));
  }
  document.getElementById("directive-list").replaceChildren(page.items.length ? list : el("p", { class: "muted", text: t("no_data") }));
}

async function showDirective(id) {
  const d = await api(`/api/directives/${id}`);
  const tbody = el("tbody");
  for (const r of d.recipients) {
    tbody.append(el("tr", {}, el("td", {}, el("div", { text: r.agency_name || r.unit_name }), el("div", { class: "muted", text: r.last_report_text || "" })),
      el("td", {}, badge(r.status_label), r.overdue ? badge(t("overdue"), "overdue") : null),
      el("td", {}, el("div", { class: "progress" }, el("i", { style: `width:${r.progress_percent}%` })), el("span", { class: "muted num", text: `${r.progress_percent}%` })),
      el("td", { class: "muted", text: fmtTime(r.due_at) })));
  }
  const head = el("tr", {}, ...["recipients", "status", "progress", "due"].map((k) => el("th", { scope: "col", text: t(k) })));
  document.getElementById("directive-detail").replaceChildren(el("h2", { text: `${d.directive.code} — ${d.directive.title}` }),
    el("p", { class: "muted", text: `${t("progress")}: ${d.overall_percent}% · ${d.done}/${d.total} · ${t("overdue")}: ${d.overdue}` }),
    el("table", { class: "grid" }, el("thead", {}, head), tbody));
}

// ---- tabs and live updates -----------------------------------------------------------------------------
const LOADERS = { alerts: loadAlerts, incidents: loadIncidents, directives: loadDirectives, reports: loadReports };

function show(view) {
  state.view = view;
  document.querySelectorAll(".tabs [role=tab]").forEach((b) => b.setAttribute("aria-selected", String(b.dataset.view === view)));
  for (const name of Object.keys(LOADERS)) document.getElementById(`view-${name}`).classList.toggle("hidden", name !== view);
  history.replaceState(null, "", `#${view}`);
  LOADERS[view]().catch((e) => toast(errorText(e), true));
}

async function main() {
  state.me = await requireLogin();
  wireTopbar(state.me);
  const live = document.getElementById("live");
  const relabel = () => { live.classList.toggle("on", Boolean(state.live)); live.textContent = state.live ? t("live") : t("offline"); };
  setupLanguage(() => { relabel(); show(state.view); });
  startClock(document.getElementById("clock"));
  try { for (const d of (await api("/api/cases/types")).types) state.types[d.type] = d; } catch (e) { /* no case rights */ }
  document.querySelectorAll(".tabs [role=tab]").forEach((b) => b.addEventListener("click", () => show(b.dataset.view)));
  const initial = location.hash.slice(1);
  show(LOADERS[initial] ? initial : "alerts");
  window.addEventListener("hashchange", () => { const v = location.hash.slice(1); if (LOADERS[v] && v !== state.view) show(v); });
  for (const name of Object.keys(LOADERS)) if (name !== state.view) LOADERS[name]().catch(() => {});
  let timer;
  const refresh = () => { clearTimeout(timer); timer = setTimeout(() => LOADERS[state.view]().catch(() => {}), 600); };
  follow("alerts,cases", { alerts: () => (state.view === "alerts" ? refresh() : loadAlerts().catch(() => {})), cases: refresh },
    (on) => { state.live = on; relabel(); });
  applyLanguage();
}

main();
