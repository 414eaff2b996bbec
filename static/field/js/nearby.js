/*
 * Nearby: a Leaflet map of my grids' merchants around my position, and the list nearest first.
 * Merchants not visited for N days (N set on the page, kept on the tablet) are highlighted.
 * Leaflet and the cluster plugin are loaded here, when the page opens (never on My day); the
 * service worker precaches them, so the map draws offline too (tiles only when a tile server is
 * configured and reachable).
 */
import * as db from "./db.js";
import { ctx } from "./pages.js";
import { S, config, daysSince, fill, distance, distanceText, el, empty, fmt, label, choices, locate } from "./ui.js";

let leafletLoading = null;

function addScript(src) {
  return new Promise((resolve, reject) => {
    const s = document.createElement("script");
    s.src = src;
    s.onload = resolve;
    s.onerror = reject;
    document.head.append(s);
  });
}

function addCss(href) {
  if (document.querySelector(`link[href="${href}"]`)) return;
  document.head.append(el("link", { rel: "stylesheet", href }));
}

function loadLeaflet() {
  if (leafletLoading) return leafletLoading;
  addCss(config.static.leaflet_css);
  for (const href of config.static.cluster_css) addCss(href);
  leafletLoading = addScript(config.static.leaflet_js)
    .then(() => addScript(config.static.cluster_js))
    .then(() => {
      window.L.Icon.Default.imagePath = config.static.leaflet_images;
    });
  return leafletLoading;
}

function geometry(value) {
  if (!value) return null;
  return typeof value === "string" ? JSON.parse(value) : value;
}

function isStale(m, days) {
  const d = daysSince(m.last_visit_at);
  return d === null || d >= days;
}

export async function nearby(view) {
  const [merchants, grids] = await Promise.all([db.all("merchants"), db.all("grids")]);
  const located = merchants.filter((m) => typeof m.lat === "number" && typeof m.lon === "number" && m.status !== "closed");
  let staleOnly = false;

  const daysInput = el("input.days", { type: "number", min: 1, max: 999, value: ctx.staleDays, inputMode: "numeric", dataset: { testid: "stale-days" } });
  const staleToggle = el("input", { type: "checkbox", dataset: { testid: "stale-only" } });
  const status = el("p.muted.small", { dataset: { testid: "nearby-status" } }, S.locating);
  const mapBox = el("div.nearby-map", { id: "nearby-map", dataset: { testid: "nearby-map" } });
  const list = el("ul.rows", { dataset: { testid: "nearby-list" } });

  fill(view, 
    el("h1.page-title", S.nearby),
    el(
      "div.nearby-controls",
      el("label.inline", el("span", S.not_visited_days), daysInput, el("span", S.days)),
      el("label.inline.check", staleToggle, el("span", S.stale_only)),
      status,
    ),
    el("div.nearby-layout", mapBox, el("section.card.nearby-list", located.length ? list : empty(S.no_merchants))),
  );

  let map = null;
  let layer = null;
  let here = null;

  function draw() {
    const days = ctx.staleDays;
    const pos = ctx.position;
    let rows = located.map((m) => ({ m, d: pos ? distance(pos.lat, pos.lon, m.lat, m.lon) : null, stale: isStale(m, days) }));
    if (staleOnly) rows = rows.filter((r) => r.stale);
    rows.sort((a, b) => (a.d !== null && b.d !== null ? a.d - b.d : a.m.name.localeCompare(b.m.name)));
    list.replaceChildren(
      ...rows.slice(0, 100).map(({ m, d, stale }) => {
        const v = daysSince(m.last_visit_at);
        return el(
          "li.row" + (stale ? ".row-stale" : ""),
          { dataset: { testid: "nearby-item", id: m.id, stale: stale ? "1" : "0" } },
          el("div.row-main", el("a.row-title", { href: "#/m/" + encodeURIComponent(m.id) }, m.name), el("div.row-sub", [d !== null ? distanceText(d) : "", label(choices.merchant_status, m.status)].filter(Boolean).join(" · "))),
          el("span.badge" + (stale ? ".badge-warn" : ""), v === null ? S.never_visited : v === 0 ? S.last_visit_today : fmt(S.last_visit_days, { n: v })),
          String(m.id).startsWith("local:") ? null : el("a.btn.btn-small", { href: "#/log?merchant=" + m.id }, S.log),
        );
      }),
    );
    if (!map) return;
    layer.clearLayers();
    for (const { m, stale } of rows) {
      const marker = window.L.circleMarker([m.lat, m.lon], {
        radius: 10,
        weight: 2,
        color: "#ffffff",
        fillColor: stale ? "#d1242f" : "#1f6feb",
        fillOpacity: 0.9,
      });
      marker.bindPopup(() => {
        const box = el("div.popup", el("strong", m.name), el("br"), el("a", { href: "#/m/" + encodeURIComponent(m.id) }, S.merchant));
        return box;
      });
      layer.addLayer(marker);
    }
  }

  daysInput.addEventListener("change", async () => {
    const n = Math.max(1, Math.min(999, parseInt(daysInput.value, 10) || config.stale_days_default));
    daysInput.value = n;
    ctx.staleDays = n;
    await db.setMeta("settings", { stale_days: n });
    draw();
  });
  staleToggle.addEventListener("change", () => {
    staleOnly = staleToggle.checked;
    draw();
  });
  draw();

  try {
    await loadLeaflet();
  } catch (error) {
    mapBox.hidden = true;
  }
  if (window.L && mapBox.isConnected) {
    const L = window.L;
    map = L.map(mapBox, { zoomControl: true, minZoom: 5, maxZoom: 19, attributionControl: false }).setView(config.map.center, 13);
    if (config.map.tile_url) {
      L.tileLayer(config.map.tile_url, { attribution: config.map.attribution, maxZoom: 19 }).addTo(map);
      L.control.attribution({ prefix: false }).addTo(map);
    }
    const gridLayer = L.geoJSON(null, { style: { color: "#1f6feb", weight: 2, fillOpacity: 0.05 } }).addTo(map);
    for (const g of grids) {
      const geom = geometry(g.geom);
      if (geom) gridLayer.addData({ type: "Feature", geometry: geom, properties: { name: g.name } });
    }
    layer = L.markerClusterGroup ? L.markerClusterGroup({ disableClusteringAtZoom: 17, showCoverageOnHover: false }) : L.layerGroup();
    map.addLayer(layer);
    draw();
    const bounds = gridLayer.getBounds();
    if (bounds.isValid()) map.fitBounds(bounds, { padding: [16, 16] });
    else if (located.length) map.fitBounds(located.map((m) => [m.lat, m.lon]), { padding: [24, 24] });
    view.dataset.map = "ready";
  }

  const pos = await locate();
  if (!view.isConnected) return;
  if (pos) {
    ctx.position = pos;
    status.textContent = "";
    if (map) {
      // Above the cluster icons (marker pane, z-index 600): the position is never hidden under one.
      if (!map.getPane("here")) map.createPane("here").style.zIndex = 650;
      here = window.L.circleMarker([pos.lat, pos.lon], { pane: "here", radius: 10, color: "#ffffff", weight: 3, fillColor: "#1a7f37", fillOpacity: 1 })
        .bindTooltip(S.you_are_here, { permanent: true, direction: "top", offset: [0, -10], pane: "here" })
        .addTo(map);
      map.setView([pos.lat, pos.lon], Math.max(map.getZoom(), 16), { animate: false });
    }
  } else {
    status.textContent = S.no_position;
  }
  draw();
  view.dataset.located = pos ? "1" : "0";
  return here;
}
