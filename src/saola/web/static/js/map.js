// Leaflet maps from the package's own copy of Leaflet: tiles only when configured, vector layers always.
import { api, config, el, fmtNumber, fmtTime, pick } from "./common.js";

export const AQI_COLORS = ["#00e400", "#ffff00", "#ff7e00", "#ff0000", "#8f3f97", "#7e0023"];

export function makeMap(node, { zoomControl = true } = {}) {
  const L = window.L;
  const map = L.map(node, { zoomControl: false, preferCanvas: true, attributionControl: true, worldCopyJump: false })
    .setView(config.center || [11.94, 108.45], config.zoom || 11);
  if (zoomControl) L.control.zoom({ position: "bottomright" }).addTo(map);
  if (config.tileUrl) {
    // An unreachable tile server only leaves the plain background: the vector layers do not depend on it.
    L.tileLayer(config.tileUrl, { attribution: config.tileAttribution || "", maxZoom: 19, crossOrigin: true }).addTo(map);
  }
  else graticule(map);
  map.attributionControl.setPrefix("Leaflet");
  return map;
}

// Without a basemap, faint latitude/longitude lines keep the map readable as a map (not an empty box).
function graticule(map) {
  const L = window.L;
  const group = L.layerGroup().addTo(map);
  const draw = () => {
    group.clearLayers();
    const b = map.getBounds();
    const span = Math.max(b.getEast() - b.getWest(), 1e-6);
    const step = [10, 5, 2, 1, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001].find((s) => span / s >= 4) || 0.001;
    const line = { color: "#93c5fd", weight: 0.6, opacity: 0.16, interactive: false };
    for (let x = Math.ceil(b.getWest() / step) * step; x <= b.getEast(); x += step) group.addLayer(L.polyline([[b.getSouth(), x], [b.getNorth(), x]], line));
    for (let y = Math.ceil(b.getSouth() / step) * step; y <= b.getNorth(); y += step) group.addLayer(L.polyline([[y, b.getWest()], [y, b.getEast()]], line));
  };
  map.on("moveend", draw);
  draw();
}

function colourOf(layerDef, props) {
  const style = layerDef.style || {};
  if (style.color_property && props[style.color_property]) return props[style.color_property];
  if (props.aqi_color) return props.aqi_color;
  if (props.color) return props.color;
  if (style.property && style.fill && typeof style.fill === "object") {
    return style.fill[props[style.property]] || style.fill.default || "#94a3b8";
  }
  return style.color || style.fill || "#38bdf8";
}

function popupOf(layerDef, props) {
  const title = props.name || props.title || props.code || props.tracking_code || layerDef.title_vi;
  const rows = [];
  const add = (k, v) => { if (v !== undefined && v !== null && v !== "") rows.push(el("tr", {}, el("td", { text: k }), el("td", {}, el("b", { text: String(v) })))); };
  if (props.aqi !== undefined) add("AQI", `${fmtNumber(props.aqi, 0)} ${pick(props.aqi_label_vi || "", props.aqi_label_en || "")}`);
  if (props.dominant) add(pick("Chất chính", "Dominant"), props.dominant);
  if (props.status) add(pick("Trạng thái", "Status"), props.status_label || props.status);
  if (props.category) add(pick("Lĩnh vực", "Category"), props.category_label || props.category);
  if (props.land_use) add(pick("Loại đất", "Land use"), props.land_use);
  if (props.sheet_no !== undefined) add(pick("Tờ / thửa", "Sheet / parcel"), `${props.sheet_no} / ${props.parcel_no}`);
  if (props.area_m2) add(pick("Diện tích", "Area"), `${fmtNumber(props.area_m2, 1)} m²`);
  if (props.priority) add(pick("Ưu tiên", "Priority"), props.priority);
  const when = props.observed_at || props.created_at || props.received_at;
  if (when) add(pick("Thời điểm", "Time"), fmtTime(when));
  if (props.latest && typeof props.latest === "object") {
    for (const [k, v] of Object.entries(props.latest).slice(0, 6)) add(k, fmtNumber(v));
  }
  return el("div", {}, el("b", { text: title }), el("table", {}, ...rows));
}

// A layer from the overview's list: loaded once, or by bounding box when it only shows from a zoom level on.
export class VectorLayer {
  constructor(map, def, { onFeature, onCount, popup = true } = {}) {
    this.map = map; this.def = def; this.onFeature = onFeature; this.onCount = onCount; this.popup = popup;
    this.group = window.L.layerGroup();
    this.count = 0;
    this.enabled = true;
    this.byBox = (def.min_zoom || 0) > 0;
    if (this.byBox) map.on("moveend", () => this.refresh());
  }

  async refresh() {
    if (!this.enabled) return;
    const map = this.map;
    if (this.byBox && map.getZoom() < this.def.min_zoom) {
      this.ticket = (this.ticket || 0) + 1; this.group.clearLayers(); this.count = 0; this.features = [];
      if (this.onCount) this.onCount(0);
      return;
    }
    let url = this.def.url;
    if (this.byBox) {
      const b = map.getBounds();
      url += `${url.includes("?") ? "&" : "?"}bbox=${[b.getWest(), b.getSouth(), b.getEast(), b.getNorth()].map((v) => v.toFixed(6)).join(",")}&zoom=${map.getZoom()}`;
    }
    const ticket = (this.ticket = (this.ticket || 0) + 1);
    let data;
    try { data = await api(url); } catch (e) { console.warn("layer", this.def.key, e); return; }
    // A newer view was asked for while this answer travelled: drawing it now would show the wrong place or zoom.
    if (ticket !== this.ticket || (this.byBox && map.getZoom() < this.def.min_zoom)) return;
    this.draw(data);
  }

  draw(data) {
    const L = window.L;
    const def = this.def;
    const style = def.style || {};
    this.group.clearLayers();
    const layer = L.geoJSON(data, {
      pointToLayer: (f, latlng) => L.circleMarker(latlng, {
        radius: style.radius || (f.properties && f.properties.aqi !== undefined ? 9 : 7), weight: 1.5, color: "#0b1220",
        fillColor: colourOf(def, f.properties || {}), fillOpacity: 0.92,
      }),
      style: (f) => ({ color: style.stroke || "#334155", weight: style.weight ?? 0.8, fillColor: colourOf(def, f.properties || {}), fillOpacity: 0.55 }),
      onEachFeature: (f, lyr) => {
        if (this.popup) lyr.bindPopup(() => popupOf(def, f.properties || {}));
        const label = style.label_property && f.properties ? f.properties[style.label_property] : null;
        if (label !== null && label !== undefined && f.geometry && f.geometry.type === "Point") {
          lyr.bindTooltip(String(typeof label === "number" ? Math.round(label) : label), { permanent: true, direction: "right", offset: [8, 0], className: "maplabel" });
        }
        // A click on a drawn feature does not reach the map's own click handler (Leaflet stops it): pass the place on.
        if (this.onFeature) lyr.on("click", (ev) => this.onFeature(def, f, ev.latlng));
        if (f.properties && (f.properties.code || f.properties.id)) lyr.options.saolaKey = `${def.key}:${f.properties.code || f.properties.id}`;
      },
    });
    layer.eachLayer((l) => this.group.addLayer(l));
    this.count = (data.features || []).length;
    this.features = data.features || [];
    if (this.onCount) this.onCount(this.count);
  }

  setEnabled(on) {
    this.enabled = on;
    if (on) { this.group.addTo(this.map); this.refresh(); } else this.group.remove();
  }
}
