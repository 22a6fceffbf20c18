// The citizen portal (no sign-in): send and follow a report, look up a parcel, public air quality. Phone first.
import { api, applyLanguage, el, errorText, fmtNumber, fmtTime, lang, pick, setupLanguage } from "./common.js";
import { VectorLayer, makeMap } from "./map.js";

const maps = {};
let reportPoint = null;
let reportMarker = null;
let categories = [];

function show(view) {
  document.querySelectorAll(".tabs [role=tab]").forEach((b) => b.setAttribute("aria-selected", String(b.dataset.view === view)));
  for (const name of ["report", "follow", "parcel", "air"]) document.getElementById(`view-${name}`).classList.toggle("hidden", name !== view);
  history.replaceState(null, "", `#${view}`);
  if (view === "report") ensureReportMap();
  if (view === "parcel") ensureParcelMap();
  if (view === "air") loadAir();
  Object.values(maps).forEach((m) => setTimeout(() => m.invalidateSize(), 50));
}

// ---- send a report -------------------------------------------------------------------------------------
async function loadCategories() {
  categories = await api("/api/public/citizen-reports/categories", { auth: false }).catch(() => []);
  const select = document.getElementById("r-category");
  select.replaceChildren(el("option", { value: "", text: pick("— Chọn lĩnh vực —", "— Choose a category —") }),
    ...categories.map((c) => el("option", { value: c.code, text: pick(c.name_vi, c.name_en) })));
}

function ensureReportMap() {
  if (maps.report) return;
  const map = makeMap(document.getElementById("r-map"));
  maps.report = map;
  map.on("click", (e) => setPoint(e.latlng.lng, e.latlng.lat));
  const layer = new VectorLayer(map, { key: "public.reports", title_vi: "Phản ánh", title_en: "Reports", url: "/api/public/citizen-reports/map.geojson", min_zoom: 0, style: { color: "#ea580c", radius: 5 } },
    { onFeature: (_def, _f, latlng) => setPoint(latlng.lng, latlng.lat) });
  layer.group.addTo(map);
  layer.refresh();
}

function setPoint(lon, lat) {
  reportPoint = { lon, lat };
  if (reportMarker) reportMarker.setLatLng([lat, lon]);
  else reportMarker = window.L.circleMarker([lat, lon], { radius: 10, color: "#0c4a6e", weight: 3, fillColor: "#38bdf8", fillOpacity: 0.9 }).addTo(maps.report);
  document.getElementById("r-where").textContent = `${pick("Vị trí", "Location")}: ${lat.toFixed(5)}, ${lon.toFixed(5)}`;
}

async function submitReport(e) {
  e.preventDefault();
  const form = e.target;
  const error = document.getElementById("r-error");
  error.textContent = "";
  const data = new FormData();
  for (const name of ["description", "category", "address", "contact_name", "contact_phone", "contact_email"]) data.append(name, form.elements[name].value.trim());
  data.append("share_contact", form.elements.share_contact.checked ? "true" : "false");
  if (reportPoint) { data.append("lon", String(reportPoint.lon)); data.append("lat", String(reportPoint.lat)); }
  for (const file of form.elements.photos.files) data.append("photos", file);
  const button = document.getElementById("r-submit");
  button.disabled = true;
  try {
    const r = await api("/api/public/citizen-reports", { method: "POST", form: data, auth: false });
    form.reset();
    form.classList.add("hidden");
    const done = document.getElementById("r-done");
    done.classList.remove("hidden");
    done.replaceChildren(el("h2", { text: pick("Đã nhận phản ánh của bạn", "Your report was received") }),
      el("p", { text: pick("Mã tra cứu (hãy lưu lại):", "Tracking code (keep it):") }), el("div", { class: "tracking", id: "r-tracking", text: r.tracking_code }),
      el("p", { class: "muted", text: `${pick("Số hồ sơ", "Case")}: ${r.report_code} · ${r.status_label_vi}` }),
      el("button", { class: "btn primary", text: pick("Theo dõi phản ánh", "Follow this report"), onclick: () => { document.getElementById("f-code").value = r.tracking_code; show("follow"); followReport(); } }),
      " ", el("button", { class: "btn", text: pick("Gửi phản ánh khác", "Send another"), onclick: () => { done.classList.add("hidden"); form.classList.remove("hidden"); } }));
  } catch (err) { error.textContent = errorText(err); }
  finally { button.disabled = false; }
}

// ---- follow a report -----------------------------------------------------------------------------------
async function followReport(e) {
  if (e) e.preventDefault();
  const code = document.getElementById("f-code").value.trim();
  const box = document.getElementById("f-result");
  if (!code) return;
  let r;
  try { r = await api(`/api/public/citizen-reports/${encodeURIComponent(code)}`, { auth: false }); }
  catch (err) { box.replaceChildren(el("p", { class: "error", style: "color:#b91c1c", text: err.status === 404 ? pick("Không tìm thấy mã tra cứu này", "No report has this tracking code") : errorText(err) })); return; }
  const steps = el("ol", {}, ...r.timeline.map((s) => el("li", {}, el("b", { text: s.label }), ` — ${fmtTime(s.at)}`, s.note ? el("div", { class: "muted", text: s.note }) : null)));
  const rows = [[pick("Số hồ sơ", "Case"), r.report_code], [pick("Lĩnh vực", "Category"), pick(r.category_name_vi, r.category_name_en)],
    [pick("Trạng thái", "Status"), r.status_label_vi], [pick("Nơi xử lý", "Handled by"), r.handling_agency || "—"],
    [pick("Hạn trả lời", "Answer due"), fmtTime(r.due_at)], [pick("Địa bàn", "Place"), r.unit_name || r.unit_code]];
  box.replaceChildren(el("dl", { class: "kv", id: "f-status" }, ...rows.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })])),
    el("p", { text: r.description }), el("h3", { text: pick("Quá trình xử lý", "Progress") }), steps,
    r.result ? el("div", { class: "pane" }, el("b", { text: pick("Kết quả", "Result") }), el("p", { text: r.result.text })) : null);
  if (r.can_rate) {
    const select = el("select", { id: "f-rating", "aria-label": pick("Đánh giá", "Rating") }, ...[5, 4, 3, 2, 1].map((n) => el("option", { value: String(n), text: "★".repeat(n) })));
    box.append(el("form", { onsubmit: async (ev) => { ev.preventDefault(); await api(`/api/public/citizen-reports/${encodeURIComponent(code)}/rating`, { method: "POST", auth: false, body: { rating: Number(select.value) } }); followReport(); } },
      el("label", {}, pick("Mức hài lòng: ", "Satisfaction: "), select), " ", el("button", { class: "btn primary", type: "submit", text: pick("Gửi đánh giá", "Rate") })));
  } else if (r.rating) box.append(el("p", { text: `${pick("Bạn đã đánh giá", "You rated")}: ${"★".repeat(r.rating)}` }));
}

// ---- parcel lookup -------------------------------------------------------------------------------------
function ensureParcelMap() {
  if (maps.parcel) return;
  const map = makeMap(document.getElementById("p-map"));
  maps.parcel = map;
  const layer = new VectorLayer(map, { key: "land.parcels", title_vi: "Thửa đất", title_en: "Parcels", url: "/api/public/land/map", min_zoom: 15,
    style: { property: "land_use", stroke: "#334155", weight: 0.6, fill: { ODT: "#e6786e", CLN: "#96c878", default: "#a0a0c8" } } },
  { popup: false, onFeature: (_def, _f, latlng) => lookupPoint(latlng.lng, latlng.lat) });
  layer.group.addTo(map);
  layer.refresh();
  map.on("click", (e) => lookupPoint(e.latlng.lng, e.latlng.lat));
}

let highlight = null;
function showParcel(p) {
  const box = document.getElementById("p-result");
  if (!p) { box.replaceChildren(el("p", { class: "muted", text: pick("Không có thửa đất tại vị trí này", "No parcel at this place") })); return; }
  const plan = p.planning || {};
  const uses = (p.land_use || []).map((u) => `${u.code} — ${pick(u.name_vi, u.name_en)}${u.area_m2 ? ` (${fmtNumber(u.area_m2, 1)} m²)` : ""}`).join("; ");
  const floors = plan.floors_min || plan.floors_max ? `${plan.floors_min ?? "?"}–${plan.floors_max ?? "?"}` : "—";
  const rows = [[pick("Xã, phường", "Commune"), `${p.commune.name} (${p.commune.code})`], [pick("Tờ bản đồ số", "Map sheet"), p.sheet_no], [pick("Thửa đất số", "Parcel no."), p.parcel_no],
    [pick("Diện tích", "Area"), `${fmtNumber(p.area_m2, 1)} m²`], [pick("Loại đất", "Land use"), uses || p.primary_use],
    [pick("Quy hoạch sử dụng", "Planned use"), plan.allowed_use ? `${plan.allowed_use} — ${pick(plan.allowed_use_name_vi || "", plan.allowed_use_name_en || "")}` : "—"],
    [pick("Mật độ xây dựng", "Building density"), plan.building_density_pct !== null && plan.building_density_pct !== undefined ? `${fmtNumber(plan.building_density_pct)} %` : "—"],
    [pick("Tầng cao", "Floors"), floors], [pick("Hệ số sử dụng đất", "Land-use coefficient"), plan.land_use_coefficient ?? "—"],
    [pick("Khoảng lùi", "Setback"), plan.setback_m !== null && plan.setback_m !== undefined ? `${fmtNumber(plan.setback_m)} m` : "—"]];
  box.replaceChildren(el("h2", { text: pick("Thông tin thửa đất và quy hoạch", "Parcel and planning information") }),
    el("dl", { class: "kv", id: "p-info" }, ...rows.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: String(v) })])));
  document.getElementById("p-commune").value = p.commune.code;
  if (highlight) highlight.remove();
  if (p.geometry && maps.parcel) highlight = window.L.geoJSON(p.geometry, { interactive: false, style: { color: "#0369a1", weight: 3, fillOpacity: 0.15 } }).addTo(maps.parcel);
}

async function lookupPoint(lon, lat) {
  try {
    const r = await api("/api/public/land/lookup", { auth: false, query: { lon, lat } });
    showParcel(r.parcels[0]);
  } catch (err) { document.getElementById("p-result").replaceChildren(el("p", { class: "error", text: errorText(err) })); }
}

async function lookupKey(e) {
  e.preventDefault();
  const [c, s, p] = ["p-commune", "p-sheet", "p-parcel"].map((id) => document.getElementById(id).value.trim());
  try {
    const parcel = await api(`/api/public/land/parcels/${encodeURIComponent(c)}/${encodeURIComponent(s)}/${encodeURIComponent(p)}`, { auth: false });
    showParcel(parcel);
    if (parcel.bbox && maps.parcel) maps.parcel.fitBounds([[parcel.bbox[1], parcel.bbox[0]], [parcel.bbox[3], parcel.bbox[2]]], { maxZoom: 18 });
  } catch (err) {
    document.getElementById("p-result").replaceChildren(el("p", { class: "error", style: "color:#b91c1c", text: err.status === 404 ? pick("Không tìm thấy thửa đất", "Parcel not found") : errorText(err) }));
  }
}

// ---- air quality ---------------------------------------------------------------------------------------
async function loadAir() {
  if (!maps.air) maps.air = makeMap(document.getElementById("a-map"));
  const data = await api("/api/public/air-quality", { auth: false }).catch(() => ({ features: [] }));
  const list = document.getElementById("a-list");
  const features = [...(data.features || [])].sort((a, b) => (b.properties.aqi ?? -1) - (a.properties.aqi ?? -1));
  if (maps.airLayer) maps.airLayer.remove();
  maps.airLayer = window.L.geoJSON(data, { pointToLayer: (f, ll) => window.L.circleMarker(ll, { radius: 10, color: "#1e293b", weight: 1.5, fillColor: f.properties.aqi_color || "#9e9e9e", fillOpacity: 0.95 })
    .bindTooltip(`${f.properties.name}: ${f.properties.aqi ?? "—"}`) }).addTo(maps.air);
  if (features.length) maps.air.fitBounds(maps.airLayer.getBounds().pad(0.2), { maxZoom: 14 });
  list.replaceChildren(...features.map((f) => {
    const p = f.properties;
    return el("div", { class: "aqi-card", dataset: { station: p.code || p.id } },
      el("div", { class: "aqi", style: `background:${p.aqi_color || "#cbd5e1"}`, "aria-label": `AQI ${p.aqi ?? "—"}` }, p.aqi === null || p.aqi === undefined ? "—" : fmtNumber(p.aqi, 0)),
      el("div", {}, el("b", { text: p.name }), el("div", { text: pick(p.aqi_label_vi || "Chưa có dữ liệu", p.aqi_label_en || "No data") }),
        el("div", { class: "muted", text: `${p.unit_name || ""} · ${fmtTime(p.observed_at)}` })));
  }));
  if (!features.length) list.append(el("p", { class: "muted", text: pick("Chưa có trạm quan trắc", "No stations yet") }));
}

function main() {
  setupLanguage(() => { loadCategories(); });
  document.querySelectorAll(".tabs [role=tab]").forEach((b) => b.addEventListener("click", () => show(b.dataset.view)));
  document.getElementById("report-form").addEventListener("submit", submitReport);
  document.getElementById("follow-form").addEventListener("submit", followReport);
  document.getElementById("parcel-form").addEventListener("submit", lookupKey);
  loadCategories();
  const initial = location.hash.slice(1);
  show(["report", "follow", "parcel", "air"].includes(initial) ? initial : "report");
  window.addEventListener("hashchange", () => { const v = location.hash.slice(1); if (["report", "follow", "parcel", "air"].includes(v)) show(v); });
  applyLanguage();
  document.documentElement.lang = lang();
}

main();
