/*
 * gridcrm map page (templates/grids/map.html).
 *
 * Grids coloured by their sub-branch, places, and merchants in clusters, fetched from the restricted
 * GeoJSON layer endpoints (/api/v1/layers/...) for the visible box and reloaded when the map stops
 * moving. Everything shown comes from #map-config: URLs, tile settings, first view, translated
 * strings and labels. Data is WGS 84; with a GCJ-02 base map (Amap, Tencent) coordinates are shifted
 * at display time only, and the visible box is shifted back before it is sent to the server.
 *
 * For tests and debugging: window.gridcrmMap, and #map[data-state] = "loading" | "ready" | "error".
 */
(function () {
  "use strict";

  var config = JSON.parse(document.getElementById("map-config").textContent);
  var S = config.strings;
  var LABELS = config.labels;
  var GCJ02 = config.tiles.crs === "gcj02";
  var RELOAD_DELAY_MS = 300;
  var LABEL_MIN_ZOOM = 14;

  if (GCJ02 && !window.gcoord) {
    // map.html loads gcoord whenever MAP_TILE_CRS is gcj02; without it, shifting silently off
    // would put every feature 50-500 m away from the base map.
    throw new Error("gcoord is required for a GCJ-02 base map");
  }

  // -- Coordinates ------------------------------------------------------------------------------

  /** [lng, lat] in WGS 84 -> L.LatLng in the base map's datum. */
  function toDisplay(lng, lat) {
    if (GCJ02) {
      var p = window.gcoord.transform([lng, lat], window.gcoord.WGS84, window.gcoord.GCJ02);
      return L.latLng(p[1], p[0]);
    }
    return L.latLng(lat, lng);
  }

  /** L.LatLng on the map -> [lng, lat] in WGS 84 (the inverse of toDisplay). */
  function toData(latlng) {
    if (GCJ02) {
      return window.gcoord.transform([latlng.lng, latlng.lat], window.gcoord.GCJ02, window.gcoord.WGS84);
    }
    return [latlng.lng, latlng.lat];
  }

  function coordsToLatLng(coords) {
    return toDisplay(coords[0], coords[1]);
  }

  // -- Small DOM helpers (text only: names never become HTML) ---------------------------------

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function popupContent(title, rows) {
    var box = el("div", "map-popup");
    box.appendChild(el("strong", "map-popup-title", title));
    var dl = el("dl");
    rows.forEach(function (row) {
      if (row[1] === undefined || row[1] === null || row[1] === "") return;
      var div = el("div");
      div.appendChild(el("dt", null, row[0]));
      div.appendChild(el("dd", null, row[1]));
      dl.appendChild(div);
    });
    box.appendChild(dl);
    return box;
  }

  function label(kind, value) {
    return (LABELS[kind] && LABELS[kind][value]) || value;
  }

  var subBranchNames = {};
  config.legend.forEach(function (row) {
    subBranchNames[row.id] = row.name;
  });
  var gridNames = {};

  // -- Layers -----------------------------------------------------------------------------------

  function gridStyle(feature) {
    var color = feature.properties.color || "#3366cc";
    var retired = feature.properties.status === "retired";
    return {
      color: color,
      weight: 2.5,
      opacity: 0.95,
      fillColor: color,
      fillOpacity: retired ? 0.05 : 0.16,
      dashArray: retired ? "6 6" : null,
      className: "grid-shape",
    };
  }

  var gridLabels = L.layerGroup();
  var gridLayer = L.geoJSON(null, {
    coordsToLatLng: coordsToLatLng,
    style: gridStyle,
    onEachFeature: function (feature, layer) {
      var p = feature.properties;
      gridNames[p.id] = p.name;
      layer.bindPopup(
        popupContent(p.name, [
          [S.code, p.code],
          [S.type, label("grid_kind", p.kind)],
          [S.status, label("grid_status", p.status)],
          [S.sub_branch, subBranchNames[p.sub_branch_id]],
        ])
      );
      // The name sits just inside the grid's top edge: merchant clusters gather towards the
      // centre, where a label would cover them.
      var bounds = layer.getBounds();
      L.tooltip({
        permanent: true,
        direction: "bottom",
        offset: [0, 4],
        className: "grid-label",
        interactive: false,
        pane: "gridLabels",
      })
        .setLatLng([bounds.getNorth(), bounds.getCenter().lng])
        .setContent(el("span", null, p.name))
        .addTo(gridLabels);
      layer.on("add", function () {
        var path = layer.getElement && layer.getElement();
        if (path) path.setAttribute("data-grid-id", p.id);
      });
    },
  });

  var placeLayer = L.geoJSON(null, {
    coordsToLatLng: coordsToLatLng,
    style: function (feature) {
      if (feature.geometry.type === "Point" || feature.geometry.type === "MultiPoint") return {};
      return { color: "#6b4fa0", weight: 1.5, dashArray: "4 4", fillOpacity: 0.08, className: "place-shape" };
    },
    pointToLayer: function (feature, latlng) {
      return L.circleMarker(latlng, {
        radius: 8,
        color: "#ffffff",
        weight: 2,
        fillColor: "#6b4fa0",
        fillOpacity: 0.95,
        className: "place-shape",
      });
    },
    onEachFeature: function (feature, layer) {
      var p = feature.properties;
      layer.bindPopup(
        popupContent(p.name, [
          [S.type, label("place_kind", p.kind)],
          [S.grid, gridNames[p.grid_id]],
        ])
      );
    },
  });

  function clusterIcon(cluster) {
    var n = cluster.getChildCount();
    var size = n < 10 ? "small" : n < 100 ? "medium" : "large";
    return L.divIcon({
      html: '<div><span>' + n + "</span></div>",
      className: "marker-cluster merchant-cluster marker-cluster-" + size,
      iconSize: L.point(44, 44),
    });
  }

  var merchantLayer = L.markerClusterGroup({
    // Coverage polygons appear on hover only; a tablet has no hover.
    showCoverageOnHover: false,
    maxClusterRadius: 56,
    spiderfyOnMaxZoom: true,
    chunkedLoading: true,
    iconCreateFunction: clusterIcon,
  });

  function merchantMarker(feature) {
    var p = feature.properties;
    var c = feature.geometry.coordinates;
    var status = /^[a-z_]+$/.test(p.status) ? p.status : "unknown";
    var marker = L.marker(toDisplay(c[0], c[1]), {
      icon: L.divIcon({
        className: "merchant-marker merchant-" + status,
        html: '<span class="merchant-dot" data-merchant-id="' + Number(p.id) + '"></span>',
        iconSize: L.point(36, 36),
      }),
      title: p.name,
      alt: p.name,
    });
    var popup = popupContent(p.name, [
      [S.status, label("merchant_status", p.status)],
      [S.grid, gridNames[p.grid_id]],
    ]);
    // The title opens the merchant 360 page (which checks scope itself).
    var link = el("a", "map-popup-title map-popup-link", p.name + " ›");
    link.href = (config.merchant_url || "/merchants/{id}/").replace("{id}", String(Number(p.id)));
    popup.replaceChild(link, popup.firstChild);
    marker.bindPopup(popup);
    return marker;
  }

  var LAYERS = [
    { key: "grids", layer: gridLayer, name: S.grids, companions: [gridLabels] },
    { key: "places", layer: placeLayer, name: S.places },
    { key: "merchants", layer: merchantLayer, name: S.merchants },
  ];

  // -- State shown to the user (and to tests) ---------------------------------------------------

  var status = {
    loading: document.querySelector("[data-testid=map-loading]"),
    truncated: document.querySelector("[data-testid=map-truncated]"),
    error: document.querySelector("[data-testid=map-error]"),
  };

  function show(node, text) {
    if (!node) return;
    if (text) node.textContent = text;
    node.hidden = false;
  }

  function hide(node) {
    if (node) node.hidden = true;
  }

  // -- The panel: layer switches and legend in one touch-friendly control ------------------------

  function buildPanel(map) {
    var Panel = L.Control.extend({
      options: { position: "topright" },
      onAdd: function () {
        var box = el("div", "map-panel leaflet-bar");
        var toggle = el("button", "map-panel-toggle");
        toggle.type = "button";
        toggle.setAttribute("aria-expanded", "true");
        toggle.appendChild(el("span", "map-panel-icon"));
        toggle.appendChild(el("span", "map-panel-toggle-text", S.layers_legend));
        box.appendChild(toggle);

        var body = el("div", "map-panel-body");
        body.id = "map-panel-body";
        toggle.setAttribute("aria-controls", body.id);

        var fieldset = el("fieldset", "map-layers");
        fieldset.appendChild(el("legend", "map-panel-heading", S.layers));
        LAYERS.forEach(function (entry) {
          var row = el("label", "map-layer-row");
          var box2 = el("input");
          box2.type = "checkbox";
          box2.checked = true;
          box2.name = "layer";
          box2.value = entry.key;
          box2.addEventListener("change", function () {
            var layers = [entry.layer].concat(entry.companions || []);
            layers.forEach(function (layer) {
              if (box2.checked) map.addLayer(layer);
              else map.removeLayer(layer);
            });
            if (box2.checked) scheduleReload(0);
          });
          row.appendChild(box2);
          row.appendChild(el("span", "legend-symbol legend-" + entry.key));
          row.appendChild(el("span", null, entry.name));
          fieldset.appendChild(row);
        });
        body.appendChild(fieldset);

        if (config.legend.length) {
          body.appendChild(el("p", "map-panel-heading", S.sub_branches));
          var list = el("ul", "legend-list");
          config.legend.forEach(function (row) {
            var item = el("li");
            var swatch = el("span", "swatch");
            swatch.style.background = /^#[0-9a-fA-F]{3,6}$/.test(row.color) ? row.color : "#3366cc";
            item.appendChild(swatch);
            item.appendChild(el("span", null, row.name));
            list.appendChild(item);
          });
          body.appendChild(list);
        }
        body.appendChild(el("p", "map-panel-heading", S.merchants));
        var symbols = el("ul", "legend-list legend-symbols");
        var entries = Object.keys(LABELS.merchant_status).map(function (key) {
          return ["legend-merchant merchant-" + key, LABELS.merchant_status[key]];
        });
        entries.push(["legend-cluster", S.cluster], ["legend-place", S.place]);
        entries.forEach(function (pair) {
          var item = el("li");
          item.appendChild(el("span", "legend-symbol " + pair[0]));
          item.appendChild(el("span", null, pair[1]));
          symbols.appendChild(item);
        });
        body.appendChild(symbols);
        box.appendChild(body);

        function setOpen(open) {
          body.hidden = !open;
          toggle.setAttribute("aria-expanded", open ? "true" : "false");
          toggle.title = open ? S.hide_legend : S.show_legend;
          box.classList.toggle("is-collapsed", !open);
        }
        toggle.addEventListener("click", function () {
          setOpen(body.hidden);
        });
        // Portrait tablets start with the panel folded, so the map keeps its width.
        setOpen(window.innerWidth >= 900);
        L.DomEvent.disableClickPropagation(box);
        L.DomEvent.disableScrollPropagation(box);
        return box;
      },
    });
    return new Panel();
  }

  // -- Loading ----------------------------------------------------------------------------------

  var map = null;
  var controller = null;
  var timer = null;
  var loadingTimer = null;
  var loads = 0;
  var last = {};

  function bboxParam() {
    var b = map.getBounds().pad(0.15);
    var sw = toData(b.getSouthWest());
    var ne = toData(b.getNorthEast());
    return [sw[0], sw[1], ne[0], ne[1]]
      .map(function (n) {
        return n.toFixed(6);
      })
      .join(",");
  }

  function fetchLayer(url, bbox, signal) {
    var sep = url.indexOf("?") === -1 ? "?" : "&";
    return fetch(url + sep + "bbox=" + encodeURIComponent(bbox), {
      credentials: "same-origin",
      headers: { Accept: "application/geo+json, application/json" },
      signal: signal,
    }).then(function (response) {
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.json();
    });
  }

  function reload() {
    if (controller) controller.abort();
    controller = new AbortController();
    var signal = controller.signal;
    var bbox = bboxParam();
    var wanted = LAYERS.filter(function (entry) {
      return map.hasLayer(entry.layer);
    });
    map.getContainer().setAttribute("data-state", "loading");
    // Only a slow load says so: a notice flashing on every pan is noise.
    if (loadingTimer) window.clearTimeout(loadingTimer);
    loadingTimer = window.setTimeout(function () {
      show(status.loading);
    }, 500);
    hide(status.error);

    // The layers load together; draw() puts grids first, as places and merchants name their grid.
    // A layer that fails does not take the others down with it.
    var jobs = wanted.map(function (entry) {
      return fetchLayer(config.layers[entry.key], bbox, signal).then(
        function (fc) {
          return { key: entry.key, fc: fc };
        },
        function (error) {
          return { key: entry.key, error: error };
        }
      );
    });
    return Promise.all(jobs).then(function (results) {
      if (signal.aborted) return;
      var collections = {};
      var failed = false;
      results.forEach(function (result) {
        if (result.error) failed = true;
        else collections[result.key] = result.fc;
      });
      draw(collections);
      loads += 1;
      window.clearTimeout(loadingTimer);
      hide(status.loading);
      if (failed) show(status.error, S.error);
      map.getContainer().setAttribute("data-state", failed ? "error" : "ready");
      map.getContainer().setAttribute("data-loads", String(loads));
    });
  }

  function draw(collections) {
    var truncated = false;
    if (collections.grids) {
      gridLabels.clearLayers();
      gridLayer.clearLayers();
      gridLayer.addData(collections.grids);
    }
    if (collections.places) {
      placeLayer.clearLayers();
      placeLayer.addData(collections.places);
    }
    if (collections.merchants) {
      merchantLayer.clearLayers();
      merchantLayer.addLayers(collections.merchants.features.map(merchantMarker));
    }
    Object.keys(collections).forEach(function (key) {
      var fc = collections[key];
      truncated = truncated || fc.truncated === true;
      last[key] = {
        count: fc.count,
        truncated: fc.truncated === true,
        ids: fc.features.map(function (f) {
          return f.properties.id;
        }),
      };
    });
    if (truncated) show(status.truncated, S.truncated);
    else hide(status.truncated);
    updateLabels();
  }

  function scheduleReload(delay) {
    if (timer) window.clearTimeout(timer);
    timer = window.setTimeout(reload, delay === undefined ? RELOAD_DELAY_MS : delay);
  }

  function updateLabels() {
    map.getContainer().classList.toggle("grid-labels-hidden", map.getZoom() < LABEL_MIN_ZOOM);
  }

  function displayBounds(bounds) {
    // bounds: [[south, west], [north, east]] in WGS 84.
    return L.latLngBounds(toDisplay(bounds[0][1], bounds[0][0]), toDisplay(bounds[1][1], bounds[1][0]));
  }

  // -- Entry point (django-leaflet calls it once the map exists) --------------------------------

  window.gridcrmMapInit = function (leafletMap) {
    map = leafletMap;
    map.getContainer().setAttribute("data-state", "loading");
    var labelPane = map.createPane("gridLabels");
    // Above markers (600) so names stay readable, below popups (700); taps pass through to markers.
    labelPane.style.zIndex = 620;
    labelPane.style.pointerEvents = "none";
    if (config.tiles.url) {
      L.tileLayer(config.tiles.url, {
        attribution: config.tiles.attribution,
        maxZoom: map.getMaxZoom(),
        minZoom: map.getMinZoom(),
      }).addTo(map);
    } else if (map.attributionControl) {
      map.attributionControl.addAttribution(escapeHtml(S.no_base_map));
    }
    LAYERS.forEach(function (entry) {
      entry.layer.addTo(map);
      (entry.companions || []).forEach(function (layer) {
        layer.addTo(map);
      });
    });
    var panel = buildPanel(map).addTo(map);
    if (config.bounds) {
      // Keep the first view clear of the open panel on the right.
      var panelBox = panel.getContainer();
      var right = panelBox.classList.contains("is-collapsed") ? 32 : panelBox.offsetWidth + 28;
      map.fitBounds(displayBounds(config.bounds), {
        paddingTopLeft: [32, 32],
        paddingBottomRight: [right, 32],
        maxZoom: 16,
        animate: false,
      });
    }
    updateLabels();
    map.on("moveend", function () {
      scheduleReload();
    });
    map.on("zoomend", updateLabels);
    reload();

    window.gridcrmMap = {
      map: map,
      layers: { grids: gridLayer, gridLabels: gridLabels, places: placeLayer, merchants: merchantLayer },
      toDisplay: toDisplay,
      toData: toData,
      reload: reload,
      last: last,
      loads: function () {
        return loads;
      },
    };
  };

  function escapeHtml(text) {
    var div = document.createElement("div");
    div.textContent = text;
    return div.innerHTML;
  }
})();
