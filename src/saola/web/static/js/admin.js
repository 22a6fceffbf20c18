// Administration: source systems and their API keys, indicators and plan targets, rules, users and scopes.
import { api, applyLanguage, el, errorText, fmtNumber, fmtTime, pick, requireLogin, setupLanguage, t, toast, wireTopbar } from "./common.js";

let view = "sources";
const ROLES = ["admin", "leader", "operator", "agency_staff", "integrator", "viewer"];

function table(keys, rows) {
  return el("table", { class: "grid" }, el("thead", {}, el("tr", {}, ...keys.map((k) => el("th", { scope: "col", text: t(k) })))), el("tbody", {}, ...rows));
}
function field(label, input) { return el("label", { class: "field" }, el("span", { text: label }), input); }
function formOf(title, fields, onSubmit) {
  const form = el("form", {}, el("h2", { text: title }), ...fields, el("button", { class: "btn primary", type: "submit", text: t("create") }));
  form.addEventListener("submit", async (e) => { e.preventDefault(); try { await onSubmit(form); } catch (err) { toast(errorText(err), true); } });
  return form;
}

async function sources() {
  const items = await api("/api/sources");
  document.getElementById("list").replaceChildren(table(["name", "scope", "kind", "status", "actions"], items.map((s) => el("tr", { dataset: { source: s.id } },
    el("td", {}, el("b", { text: s.name }), el("div", { class: "muted", text: s.description })), el("td", { text: s.scope_code }),
    el("td", { class: "muted", text: s.allowed_writes.join(", ") }),
    el("td", {}, el("span", { class: `badge ${s.is_active ? "ok" : ""}`, text: s.is_active ? t("enabled") : t("disabled") }), el("div", { class: "muted", text: `${s.key_prefix}… · ${fmtTime(s.last_seen_at)}` })),
    el("td", {}, el("button", { class: "btn small", text: t("rotate_key"), onclick: async () => showKey(await api(`/api/sources/${s.id}/rotate-key`, { method: "POST" })) }), " ",
      el("button", { class: "btn small", text: s.is_active ? t("disabled") : t("enabled"), onclick: async () => { await api(`/api/sources/${s.id}/${s.is_active ? "disable" : "enable"}`, { method: "POST" }); sources(); } }))))));
  const name = el("input", { required: true, pattern: "[a-z0-9][a-z0-9_.-]+", id: "src-name" });
  const scope = el("input", { required: true, value: "68", id: "src-scope" });
  const writes = el("input", { value: "observations:*", id: "src-writes" });
  document.getElementById("side").replaceChildren(formOf(t("create"), [field(t("name"), name), field(t("scope"), scope), field("allowed_writes", writes)], async () => {
    showKey(await api("/api/sources", { method: "POST", body: { name: name.value, scope: scope.value, allowed_writes: writes.value.split(",").map((x) => x.trim()).filter(Boolean) } }));
  }));
}

function showKey(created) {
  document.getElementById("side").append(el("div", { class: "pane", style: "margin-top:10px" }, el("b", { text: `${t("key_once")} — ${created.name}` }),
    el("pre", { id: "api-key", style: "white-space:pre-wrap;word-break:break-all", text: created.api_key })));
  sources().then(() => {});
}

async function indicators() {
  const page = await api("/api/indicators", { query: { limit: 500 } });
  document.getElementById("list").replaceChildren(table(["code", "name", "domain", "kind"], page.items.map((i) => el("tr", { style: "cursor:pointer", tabindex: "0", onclick: () => targets(i), onkeydown: (e) => { if (e.key === "Enter") targets(i); } },
    el("td", { text: i.code }), el("td", { text: pick(i.name_vi, i.name_en) }), el("td", { text: i.domain }), el("td", { class: "muted", text: `${i.unit} · ${i.aggregation} · ${i.periodicity}` })))));
  document.getElementById("side").replaceChildren(el("p", { class: "muted", text: t("pick_case") }));
}

async function targets(ind) {
  const rows = await api(`/api/indicators/${ind.code}/targets`).catch(() => []);
  const unit = el("input", { required: true, value: "68" }); const period = el("input", { required: true, placeholder: "2026, 2026-Q4, 2026-11" }); const value = el("input", { required: true, type: "number", step: "any" });
  document.getElementById("side").replaceChildren(el("h2", { text: `${t("targets")} — ${pick(ind.name_vi, ind.name_en)}` }),
    table(["unit", "period", "value"], rows.map((r) => el("tr", {}, el("td", { text: r.unit || r.unit_code }), el("td", { text: r.period }), el("td", { class: "num", text: fmtNumber(r.target_value) })))),
    formOf(t("save"), [field(t("unit"), unit), field(t("period"), period), field(t("value"), value)], async () => {
      await api(`/api/indicators/${ind.code}/targets`, { method: "PUT", body: { items: [{ unit: unit.value, period: period.value, target_value: Number(value.value) }] } });
      toast(t("saved")); targets(ind);
    }));
}

async function rules() {
  const page = await api("/api/rules", { query: { limit: 500 } });
  document.getElementById("list").replaceChildren(table(["name", "kind", "severity", "scope", "status"], page.items.map((r) => el("tr", {},
    el("td", {}, el("b", { text: pick(r.name, r.name_en) }), el("div", { class: "muted", text: r.indicator_code || r.event_type || "" })), el("td", { text: r.kind }),
    el("td", {}, el("span", { class: `badge sev-${r.severity}`, text: t(r.severity) })), el("td", { text: r.unit_code }),
    el("td", {}, el("button", { class: "btn small", "aria-pressed": String(r.enabled), text: r.enabled ? t("enabled") : t("disabled"), onclick: async () => {
      try { await api(`/api/rules/${r.id}`, { method: "PATCH", body: { enabled: !r.enabled } }); } catch (e) { toast(errorText(e), true); }
      rules();
    } }))))));
  document.getElementById("side").replaceChildren(el("pre", { class: "muted", style: "white-space:pre-wrap", text: pick("Luật được lưu dưới dạng dữ liệu; xem docs/operations.md để biết tham số của từng loại.", "Rules are data; docs/operations.md lists each kind's parameters.") }));
}

async function users() {
  const items = await api("/api/users", { query: { limit: 500 } });
  document.getElementById("list").replaceChildren(table(["username", "full_name", "role", "scope", "status"], items.map((u) => el("tr", {},
    el("td", { text: u.username }), el("td", { text: u.full_name }), el("td", { text: u.role }), el("td", { text: u.scope_code }),
    el("td", {}, el("span", { class: `badge ${u.is_active ? "ok" : ""}`, text: u.is_active ? t("enabled") : t("disabled") }))))));
  const username = el("input", { required: true, id: "u-name" }); const password = el("input", { required: true, type: "password", minlength: "8", id: "u-password" });
  const fullName = el("input", { id: "u-full" }); const scope = el("input", { required: true, value: "68", id: "u-scope" });
  const role = el("select", { id: "u-role" }, ...ROLES.map((r) => el("option", { value: r, text: r })));
  document.getElementById("side").replaceChildren(formOf(t("create"), [field(t("username"), username), field(t("password"), password), field(t("full_name"), fullName), field(t("role"), role), field(t("scope"), scope)], async (form) => {
    await api("/api/users", { method: "POST", body: { username: username.value, password: password.value, full_name: fullName.value, role: role.value, scope: scope.value } });
    toast(t("saved")); form.reset(); users();
  }));
}

const VIEWS = { sources, indicators, rules, users };
function show(name) {
  view = name;
  document.querySelectorAll(".tabs [role=tab]").forEach((b) => b.setAttribute("aria-selected", String(b.dataset.view === name)));
  history.replaceState(null, "", `#${name}`);
  VIEWS[name]().catch((e) => { document.getElementById("list").replaceChildren(el("p", { class: "muted", text: errorText(e) })); document.getElementById("side").replaceChildren(); });
}

async function main() {
  const me = await requireLogin();
  wireTopbar(me);
  setupLanguage(() => show(view));
  document.querySelectorAll(".tabs [role=tab]").forEach((b) => b.addEventListener("click", () => show(b.dataset.view)));
  const initial = location.hash.slice(1);
  show(VIEWS[initial] ? initial : "sources");
  window.addEventListener("hashchange", () => { const v = location.hash.slice(1); if (VIEWS[v] && v !== view) show(v); });
  applyLanguage();
}

main();
