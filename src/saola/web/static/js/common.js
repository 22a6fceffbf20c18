// Shared by every page: configuration, language (Vietnamese by default), the API client, formats, small helpers.

export const config = JSON.parse(document.body.dataset.config || "{}");
const TOKEN = "saola.token";
const LANG = "saola.lang";
export const TZ = config.timezone || "Asia/Ho_Chi_Minh";

// ---- language ------------------------------------------------------------------------------------------
const DICT = {
  skip: ["Bỏ qua đến nội dung chính", "Skip to main content"],
  brand: ["Trung tâm Giám sát, Điều hành thông minh", "Intelligent Operations Center"],
  wallboard: ["Màn hình điều hành", "Wallboard"], console: ["Điều hành", "Console"], admin: ["Quản trị", "Admin"],
  portal: ["Cổng công dân", "Citizen portal"], logout: ["Đăng xuất", "Sign out"], live: ["Trực tuyến", "Live"],
  offline: ["Mất kết nối", "Offline"], updated: ["cập nhật", "updated"], ago: ["trước", "ago"],
  now: ["vừa xong", "just now"], seconds: ["giây", "s"], minutes: ["phút", "min"], hours: ["giờ", "h"], days: ["ngày", "d"],
  no_data: ["Chưa có dữ liệu", "No data yet"], target: ["Chỉ tiêu", "Target"], stale: ["dữ liệu cũ", "stale"],
  map: ["Bản đồ tác nghiệp", "Operations map"], layers: ["Lớp bản đồ", "Layers"], legend: ["Chú giải", "Legend"],
  alerts_firing: ["Cảnh báo đang kích hoạt", "Firing alerts"], incidents_open: ["Sự cố đang xử lý", "Open incidents"],
  reports_overdue: ["Phản ánh quá hạn", "Overdue reports"], operations: ["Tình hình vận hành", "Operations"],
  alert_feed: ["Cảnh báo mới nhất", "Latest alerts"], recent_cases: ["Sự cố, phản ánh mới", "Latest incidents and reports"], ticker: ["Cảnh báo", "Alerts"], no_alerts: ["Không có cảnh báo", "No alerts"],
  commune: ["Xã, phường", "Commune"], all_communes: ["— Toàn đơn vị —", "— Whole unit —"], close: ["Đóng", "Close"],
  subjects: ["Đối tượng", "Subjects"], value: ["Giá trị", "Value"], time: ["Thời điểm", "Time"], unit: ["Đơn vị", "Unit"],
  acknowledge: ["Tiếp nhận", "Acknowledge"], resolve: ["Xử lý xong", "Resolve"], resolve_note: ["Ghi chú xử lý", "Resolution note"],
  alerts: ["Cảnh báo", "Alerts"], incidents: ["Sự cố", "Incidents"], directives: ["Chỉ đạo", "Directives"],
  citizen_reports: ["Phản ánh hiện trường", "Citizen reports"], status: ["Trạng thái", "Status"], severity: ["Mức độ", "Severity"],
  title: ["Tiêu đề", "Title"], fired_at: ["Phát sinh", "Fired"], actions: ["Thao tác", "Actions"], sop: ["Quy trình (SOP)", "SOP checklist"],
  recipients: ["Đơn vị thực hiện", "Recipients"], progress: ["Tiến độ", "Progress"], due: ["Hạn", "Due"], overdue: ["Quá hạn", "Overdue"],
  created: ["Tiếp nhận lúc", "Received"], category: ["Lĩnh vực", "Category"], pick_case: ["Chọn một hồ sơ để xem chi tiết", "Pick a case to see its details"],
  move_to: ["Chuyển sang", "Move to"], reason: ["Lý do", "Reason"], saved: ["Đã lưu", "Saved"], error: ["Lỗi", "Error"],
  firing: ["Đang kích hoạt", "Firing"], acknowledged: ["Đã tiếp nhận", "Acknowledged"], resolved: ["Đã xử lý", "Resolved"],
  critical: ["Khẩn cấp", "Critical"], high: ["Cao", "High"], medium: ["Trung bình", "Medium"], low: ["Thấp", "Low"], info: ["Thông tin", "Info"],
  sources: ["Nguồn dữ liệu, khóa API", "Sources and API keys"], indicators: ["Chỉ tiêu, chỉ số", "Indicators and targets"],
  rules: ["Luật cảnh báo", "Rules"], users: ["Người dùng, phạm vi", "Users and scopes"], name: ["Tên", "Name"], scope: ["Phạm vi", "Scope"],
  role: ["Vai trò", "Role"], enabled: ["Hoạt động", "Enabled"], disabled: ["Tạm dừng", "Disabled"], create: ["Tạo mới", "Create"],
  rotate_key: ["Cấp lại khóa", "Rotate key"], key_once: ["Khóa API (chỉ hiển thị một lần)", "API key (shown once)"],
  code: ["Mã", "Code"], domain: ["Lĩnh vực", "Domain"], period: ["Kỳ", "Period"], targets: ["Chỉ tiêu kế hoạch", "Plan targets"],
  save: ["Lưu", "Save"], kind: ["Loại", "Kind"], username: ["Tên đăng nhập", "Username"], password: ["Mật khẩu", "Password"],
  full_name: ["Họ tên", "Full name"], sign_in: ["Đăng nhập", "Sign in"], bad_login: ["Sai tên đăng nhập hoặc mật khẩu", "Wrong username or password"],
  station: ["Trạm", "Station"], air_quality: ["Chất lượng không khí", "Air quality"], report: ["Gửi phản ánh", "Send a report"],
  follow: ["Tra cứu phản ánh", "Follow a report"], parcel: ["Tra cứu thửa đất", "Parcel lookup"],
};
export function lang() { return localStorage.getItem(LANG) === "en" ? "en" : "vi"; }
export function t(key) { const e = DICT[key]; return e ? e[lang() === "en" ? 1 : 0] : key; }
export function pick(vi, en) { return lang() === "en" && en ? en : vi; }

export function applyLanguage(root = document) {
  const en = lang() === "en";
  document.documentElement.lang = en ? "en" : "vi";
  root.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  root.querySelectorAll("[data-en]").forEach((el) => {
    if (!el.dataset.vi) el.dataset.vi = el.tagName === "TITLE" ? el.textContent : el.textContent;
    el.textContent = en ? el.dataset.en : el.dataset.vi;
  });
  root.querySelectorAll("[data-ph-en]").forEach((el) => {
    if (!el.dataset.phVi) el.dataset.phVi = el.placeholder;
    el.placeholder = en ? el.dataset.phEn : el.dataset.phVi;
  });
  document.querySelectorAll(".lang button").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.lang === lang())));
}

export function setupLanguage(onChange) {
  document.querySelectorAll(".lang button").forEach((b) => b.addEventListener("click", () => {
    localStorage.setItem(LANG, b.dataset.lang);
    applyLanguage();
    if (onChange) onChange();
  }));
  applyLanguage();
}

// ---- API -----------------------------------------------------------------------------------------------
export function token() { return localStorage.getItem(TOKEN); }
export function setToken(value) { if (value) localStorage.setItem(TOKEN, value); else localStorage.removeItem(TOKEN); }

export class ApiError extends Error {
  constructor(status, body) { super((body && body.detail) || `HTTP ${status}`); this.status = status; this.body = body; }
}

export async function api(path, { method = "GET", body, form, auth = true, query } = {}) {
  const headers = {};
  if (auth && token()) headers.Authorization = `Bearer ${token()}`;
  let payload;
  if (form) payload = form;
  else if (body !== undefined) { headers["Content-Type"] = "application/json"; payload = JSON.stringify(body); }
  let url = path;
  if (query) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) {
      if (v === undefined || v === null || v === "") continue;
      (Array.isArray(v) ? v : [v]).forEach((x) => q.append(k, x));
    }
    url += (url.includes("?") ? "&" : "?") + q;
  }
  const r = await fetch(url, { method, headers, body: payload });
  if (r.status === 401 && auth) { toLogin(); throw new ApiError(401, null); }
  const ct = r.headers.get("content-type") || "";
  const data = ct.includes("json") ? await r.json() : await r.text();
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}

export function toLogin() {
  setToken(null);
  location.href = `/login?next=${encodeURIComponent(location.pathname + location.search)}`;
}

export async function requireLogin() {
  if (!token()) { toLogin(); return new Promise(() => {}); }
  return api("/api/auth/me");
}

export function wireTopbar(me) {
  const who = document.getElementById("who");
  if (who && me) who.textContent = me.name;
  const out = document.getElementById("logout");
  if (out) out.addEventListener("click", () => { setToken(null); location.href = "/login"; });
  const page = document.body.dataset.page;
  document.querySelectorAll(".nav a").forEach((a) => { if (a.dataset.page === page) a.setAttribute("aria-current", "page"); });
}

// ---- formats -------------------------------------------------------------------------------------------
export function fmtNumber(v, digits) {
  if (v === null || v === undefined || Number.isNaN(v)) return "—";
  const abs = Math.abs(v);
  const d = digits ?? (abs >= 1000 ? 0 : abs >= 100 ? 0 : abs >= 10 ? 1 : 2);
  return new Intl.NumberFormat(lang() === "en" ? "en-US" : "vi-VN", { maximumFractionDigits: d, minimumFractionDigits: 0 }).format(v);
}
export function fmtTime(iso, withDate = true) {
  if (!iso) return "—";
  const opts = { timeZone: TZ, hour: "2-digit", minute: "2-digit", hour12: false };
  if (withDate) Object.assign(opts, { day: "2-digit", month: "2-digit" });
  return new Intl.DateTimeFormat(lang() === "en" ? "en-GB" : "vi-VN", opts).format(new Date(iso));
}
export function fmtAge(seconds) {
  if (seconds === null || seconds === undefined) return t("no_data");
  const s = Math.max(0, seconds);
  if (s < 45) return t("now");
  const [n, unit] = s < 3600 ? [Math.round(s / 60), "minutes"] : s < 86400 ? [Math.round(s / 3600), "hours"] : [Math.round(s / 86400), "days"];
  return lang() === "en" ? `${n} ${t(unit)} ${t("ago")}` : `${n} ${t(unit)} ${t("ago")}`;
}
export function ageOf(iso) { return iso ? (Date.now() - new Date(iso).getTime()) / 1000 : null; }

export function startClock(timeEl, dateEl) {
  const tick = () => {
    const now = new Date();
    const l = lang() === "en" ? "en-GB" : "vi-VN";
    timeEl.textContent = new Intl.DateTimeFormat(l, { timeZone: TZ, hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false }).format(now);
    if (dateEl) dateEl.textContent = new Intl.DateTimeFormat(l, { timeZone: TZ, weekday: "long", day: "2-digit", month: "2-digit", year: "numeric" }).format(now);
  };
  tick();
  return setInterval(tick, 1000);
}

// ---- DOM -----------------------------------------------------------------------------------------------
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

export function toast(message, error = false) {
  const box = document.getElementById("toast");
  if (!box) return;
  const item = el("div", { class: error ? "error" : "", text: message });
  box.append(item);
  setTimeout(() => item.remove(), 5000);
}

export function errorText(e) {
  if (e && e.body && e.body.errors && e.body.errors.length) {
    return `${e.message}: ${e.body.errors.map((x) => `${(x.loc || []).slice(1).join(".")} ${x.msg || ""}`).join("; ")}`;
  }
  return (e && e.message) || String(e);
}

// Server-Sent Events with the token in the query (EventSource cannot send headers); reconnects by itself.
export function follow(topics, handlers, onState) {
  let source;
  const open = () => {
    source = new EventSource(`/api/stream?topics=${encodeURIComponent(topics)}&access_token=${encodeURIComponent(token())}`);
    source.onopen = () => onState && onState(true);
    source.onerror = () => onState && onState(false);
    for (const [name, fn] of Object.entries(handlers)) {
      source.addEventListener(name, (ev) => { try { fn(JSON.parse(ev.data)); } catch (err) { console.error(err); } });
    }
  };
  open();
  return () => source && source.close();
}
