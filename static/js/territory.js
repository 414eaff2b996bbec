/*
 * gridcrm territory page (templates/grids/territory.html): 网格规划.
 *
 * A branch manager draws, reshapes, splits and merges the grids of a sub-branch with Leaflet-Geoman
 * (vendored; snapping to neighbouring borders; its texts in Chinese with setLang("zh")), and every
 * change of territory is first a *proposal* from the API: the merchants and places that would move
 * (from grid + owner to grid + owner), per account manager, highlighted on the map, applied or
 * discarded. Also: the grid's versions and team, a coverage choropleth with a sortable table, the
 * gaps in coverage (hatched, with their area), import (file, field mapping, row report, commit) and
 * export links.
 *
 * Everything comes from #territory-config (URLs, the sub-branch and its grids, people, grid types,
 * translated strings). Data is WGS 84; with a GCJ-02 base map coordinates are shifted at display
 * time only and shifted back before anything is sent. Server text only ever becomes text nodes.
 *
 * For tests and debugging: window.gridcrmTerritory, and #territory-map[data-state] =
 * "loading" | "ready" | "error" | "busy".
 */
(function () {
  "use strict";

  var config = JSON.parse(document.getElementById("territory-config").textContent);
  var S = config.strings;
  var U = config.urls;
  var GCJ02 = config.tiles.crs === "gcj02";
  var NEW_BASE = Math.pow(2, 40); // keys of grids a proposal creates (grids.services.redraw)
  var SNAP = { snappable: true, snapDistance: 24 };
  var MERCHANT_MIN_ZOOM = 13;

  if (GCJ02 && !window.gcoord) throw new Error("gcoord is required for a GCJ-02 base map");

  // -- Small helpers ------------------------------------------------------------------------------

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function button(text, className, onClick, testid) {
    var b = el("button", "btn " + (className || ""), text);
    b.type = "button";
    if (testid) b.setAttribute("data-testid", testid);
    if (onClick) b.addEventListener("click", onClick);
    return b;
  }

  function fmt(template, values) {
    return String(template).replace(/%\((\w+)\)s/g, function (_m, key) {
      return values[key] === undefined || values[key] === null ? "" : values[key];
    });
  }

  function num(n, digits) {
    if (n === null || n === undefined || n === "") return "";
    var v = Number(n);
    if (!isFinite(v)) return String(n);
    return v.toLocaleString(config.lang && config.lang.indexOf("zh") === 0 ? "zh-CN" : "en", {
      maximumFractionDigits: digits === undefined ? 0 : digits,
    });
  }

  function pct(v) {
    if (v === null || v === undefined) return "—";
    var n = Number(v);
    if (n <= 1) n = n * 100;
    return num(n, 1) + "%";
  }

  function csrfToken() {
    var input = document.querySelector("input[name=csrfmiddlewaretoken]");
    if (input) return input.value;
    var m = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return m ? decodeURIComponent(m[1]) : "";
  }

  function idUrl(template, id) {
    return template ? template.replace("{id}", String(Number(id))) : null;
  }

  /** fetch -> {ok, status, data}; never throws for an HTTP error (the caller shows it). */
  function api(method, url, body) {
    var options = { method: method, credentials: "same-origin", headers: { Accept: "application/json" } };
    if (method !== "GET") options.headers["X-CSRFToken"] = csrfToken();
    if (body instanceof FormData) {
      options.body = body;
    } else if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    return fetch(url, options).then(
      function (response) {
        var type = response.headers.get("Content-Type") || "";
        var parse = type.indexOf("json") !== -1 ? response.json().catch(function () { return null; }) : Promise.resolve(null);
        return parse.then(function (data) {
          return { ok: response.ok, status: response.status, data: data };
        });
      },
      function () {
        return { ok: false, status: 0, data: null };
      }
    );
  }

  function errorText(result) {
    if (result.status === 0) return S.error;
    if (result.status === 404) return S.not_found;
    var d = result.data;
    if (d && typeof d.detail === "string") return d.detail;
    return fmt(S.error_status, { status: result.status });
  }

  /** The messages of a DRF error body, flattened: [[field, message, extra], ...]. */
  function flattenErrors(data) {
    var out = [];
    function walk(field, value) {
      if (value === null || value === undefined) return;
      if (typeof value === "string") out.push([field, value, null]);
      else if (Array.isArray(value)) value.forEach(function (v) { walk(field, v); });
      else if (typeof value === "object") {
        if (typeof value.message === "string") out.push([field, value.message, value]);
        else Object.keys(value).forEach(function (k) { walk(field === "non_field_errors" || !field ? k : field, value[k]); });
      }
    }
    if (data && typeof data === "object" && !Array.isArray(data)) {
      Object.keys(data).forEach(function (k) { walk(k, data[k]); });
    } else walk("non_field_errors", data);
    return out;
  }

  // -- Coordinates ----------------------------------------------------------------------------------

  function toDisplay(lng, lat) {
    if (GCJ02) {
      var p = window.gcoord.transform([lng, lat], window.gcoord.WGS84, window.gcoord.GCJ02);
      return L.latLng(p[1], p[0]);
    }
    return L.latLng(lat, lng);
  }

  function toData(latlng) {
    if (GCJ02) return window.gcoord.transform([latlng.lng, latlng.lat], window.gcoord.GCJ02, window.gcoord.WGS84);
    return [latlng.lng, latlng.lat];
  }

  function coordsToLatLng(coords) {
    return toDisplay(coords[0], coords[1]);
  }

  function round6(c) {
    return [Math.round(c[0] * 1e6) / 1e6, Math.round(c[1] * 1e6) / 1e6];
  }

  /** A Leaflet polygon (possibly multi) -> GeoJSON MultiPolygon in WGS 84, rings closed. */
  function polygonGeometry(layer) {
    var latlngs = layer.getLatLngs();
    // L.Polygon: [ring, ring] for a polygon, [[ring, ring], [ring]] for a multipolygon.
    var polys = L.LineUtil.isFlat(latlngs[0]) ? [latlngs] : latlngs;
    return {
      type: "MultiPolygon",
      coordinates: polys.map(function (rings) {
        return rings.map(function (ring) {
          var coords = ring.map(function (ll) {
            return round6(toData(ll));
          });
          if (coords.length && (coords[0][0] !== coords[coords.length - 1][0] || coords[0][1] !== coords[coords.length - 1][1])) {
            coords.push(coords[0].slice());
          }
          return coords;
        });
      }),
    };
  }

  function lineGeometry(layer) {
    return {
      type: "LineString",
      coordinates: layer.getLatLngs().map(function (ll) {
        return round6(toData(ll));
      }),
    };
  }

  // -- Page state ---------------------------------------------------------------------------------

  var map = null;
  var state = {
    tool: null, // "draw" | "edit" | "split" | "merge" | "import" | "export" | null
    selected: null, // grid id
    mergeIds: [],
    draft: null, // the drawn polygon (new grid) or split line
    proposal: null,
    form: {}, // the new-grid form's values, kept across an error round trip
    coverage: null,
    coverageMetric: "visited_30",
    gaps: null,
    tab: "grids",
  };
  var gridsById = {};
  config.grids.forEach(function (g) {
    gridsById[g.id] = g;
  });
  var gridShapes = {}; // id -> L.Polygon on the map
  var gridNames = {}; // id -> name (from the layer; proposals add their own)

  var mapNode = null;
  var panel = document.querySelector(".territory-panel");
  var panelBody = document.getElementById("territory-panel-body");
  var flash = document.querySelector("[data-testid=panel-flash]");
  var hint = document.querySelector("[data-testid=territory-hint]");
  var views = {};
  Array.prototype.forEach.call(document.querySelectorAll(".panel-view"), function (node) {
    views[node.getAttribute("data-view")] = node;
  });

  function setBusy(busy) {
    if (mapNode) mapNode.setAttribute("data-state", busy ? "busy" : "ready");
  }

  function showView(name) {
    Object.keys(views).forEach(function (key) {
      views[key].hidden = key !== name;
    });
    panelBody.scrollTop = 0;
    unfold();
  }

  function showFlash(text, isError) {
    flash.textContent = text;
    flash.classList.toggle("is-error", !!isError);
    flash.hidden = !text;
  }

  function clearFlash() {
    showFlash("");
  }

  function setHint(text, actions) {
    var p = hint.querySelector(".territory-hint-text");
    var box = hint.querySelector(".territory-hint-actions");
    p.textContent = text || "";
    box.textContent = "";
    (actions || []).forEach(function (a) {
      box.appendChild(a);
    });
    hint.hidden = !text;
  }

  function unfold() {
    panel.classList.remove("is-folded");
    document.querySelector("[data-testid=sheet-handle]").setAttribute("aria-expanded", "true");
  }

  // -- Map layers -----------------------------------------------------------------------------------

  var gridLayer, merchantLayer, labelLayer, draftLayer, proposalLayer, movingLayer, spotLayer, gapLayer, versionLayer;
  var merchantRenderer = null;

  function gridColor(id) {
    if (state.tab === "coverage" && state.coverage) return coverageColor(id);
    return config.sub_branch.color || "#3366cc";
  }

  function gridStyle(feature) {
    var id = feature.properties.id;
    var selected = id === state.selected;
    var merging = state.mergeIds.indexOf(id) !== -1;
    var color = gridColor(id);
    var coverage = state.tab === "coverage" && state.coverage;
    return {
      color: selected || merging ? "#0b5cab" : coverage ? "#33415c" : color,
      weight: selected || merging ? 4 : 2,
      opacity: 0.95,
      fillColor: merging ? "#4dabf7" : color,
      fillOpacity: coverage ? 0.7 : selected ? 0.28 : 0.14,
      dashArray: feature.properties.status === "retired" ? "6 6" : null,
      className: "grid-shape",
    };
  }

  function labelContent(id) {
    var box = el("span");
    box.appendChild(el("span", null, gridNames[id] || ""));
    var g = gridsById[id];
    if (g) {
      var c = el("span", "grid-label-count", "· " + num(g.merchant_count));
      c.setAttribute("data-testid", "map-count-" + id);
      box.appendChild(c);
    }
    return box;
  }

  function buildGridLayer() {
    gridLayer = L.geoJSON(null, {
      coordsToLatLng: coordsToLatLng,
      style: gridStyle,
      onEachFeature: function (feature, layer) {
        var p = feature.properties;
        gridNames[p.id] = p.name;
        gridShapes[p.id] = layer;
        layer.on("click", function () {
          onGridTap(p.id);
        });
        layer.on("add", function () {
          var path = layer.getElement && layer.getElement();
          if (path) path.setAttribute("data-grid-id", p.id);
        });
        // The name sits just inside the grid's top edge: merchants gather towards the centre,
        // where a label would cover them (as on the map page).
        var bounds = layer.getBounds();
        L.tooltip({ permanent: true, direction: "bottom", offset: [0, 4], className: "grid-label", interactive: false, pane: "territoryLabels" })
          .setLatLng([bounds.getNorth(), bounds.getCenter().lng])
          .setContent(labelContent(p.id))
          .addTo(labelLayer);
      },
    });
  }

  function refreshGridStyles() {
    if (gridLayer) gridLayer.setStyle(gridStyle);
  }

  function loadGrids() {
    var url = config.urls.grid_layer + "?sub_branch=" + Number(config.sub_branch.id) + "&status=active";
    mapNode.setAttribute("data-state", "loading");
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/geo+json, application/json" } })
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .then(function (fc) {
        labelLayer.clearLayers();
        gridLayer.clearLayers();
        gridShapes = {};
        gridLayer.addData(fc);
        mapNode.setAttribute("data-state", "ready");
        mapNode.setAttribute("data-grids", String(fc.features.length));
        return fc;
      })
      .catch(function () {
        mapNode.setAttribute("data-state", "error");
        var n = document.querySelector("[data-testid=map-error]");
        n.textContent = S.error;
        n.hidden = false;
      });
  }

  var merchantTimer = null;
  var merchantAbort = null;

  function loadMerchants() {
    if (!map || map.getZoom() < MERCHANT_MIN_ZOOM) {
      merchantLayer.clearLayers();
      return Promise.resolve();
    }
    if (merchantAbort) merchantAbort.abort();
    merchantAbort = new AbortController();
    var b = map.getBounds().pad(0.2);
    var sw = toData(b.getSouthWest());
    var ne = toData(b.getNorthEast());
    var bbox = [sw[0], sw[1], ne[0], ne[1]].map(function (n) { return n.toFixed(6); }).join(",");
    return fetch(config.urls.merchant_layer + "?bbox=" + encodeURIComponent(bbox), {
      credentials: "same-origin",
      headers: { Accept: "application/geo+json, application/json" },
      signal: merchantAbort.signal,
    })
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .then(function (fc) {
        merchantLayer.clearLayers();
        fc.features.forEach(function (f) {
          var c = f.geometry.coordinates;
          var m = L.circleMarker(toDisplay(c[0], c[1]), {
            renderer: merchantRenderer,
            radius: 5,
            color: "#ffffff",
            weight: 1.5,
            fillColor: "#e8590c",
            fillOpacity: 0.95,
            pmIgnore: true,
            snapIgnore: true,
            interactive: false,
          });
          merchantLayer.addLayer(m);
        });
      })
      .catch(function () {});
  }

  function scheduleMerchants() {
    if (merchantTimer) window.clearTimeout(merchantTimer);
    merchantTimer = window.setTimeout(loadMerchants, 300);
  }

  function displayBounds(bounds) {
    return L.latLngBounds(toDisplay(bounds[0][1], bounds[0][0]), toDisplay(bounds[1][1], bounds[1][0]));
  }

  function addHatchPattern() {
    // Gaps are hatched red: an SVG pattern in the overlay renderer's <svg>, used by .gap-shape.
    var svg = map.getPanes().overlayPane.querySelector("svg");
    if (!svg || svg.querySelector("#territory-gap-hatch")) return;
    var NS = "http://www.w3.org/2000/svg";
    var defs = document.createElementNS(NS, "defs");
    var pattern = document.createElementNS(NS, "pattern");
    pattern.setAttribute("id", "territory-gap-hatch");
    pattern.setAttribute("patternUnits", "userSpaceOnUse");
    pattern.setAttribute("width", "8");
    pattern.setAttribute("height", "8");
    pattern.setAttribute("patternTransform", "rotate(45)");
    var bg = document.createElementNS(NS, "rect");
    bg.setAttribute("width", "8");
    bg.setAttribute("height", "8");
    bg.setAttribute("fill", "rgba(253, 227, 224, 0.55)");
    var line = document.createElementNS(NS, "rect");
    line.setAttribute("width", "3");
    line.setAttribute("height", "8");
    line.setAttribute("fill", "#d92d20");
    pattern.appendChild(bg);
    pattern.appendChild(line);
    defs.appendChild(pattern);
    svg.insertBefore(defs, svg.firstChild);
  }

  // -- Selecting a grid -----------------------------------------------------------------------------

  function onGridTap(id) {
    if (state.tool === "merge") {
      if (id === state.selected) return;
      var i = state.mergeIds.indexOf(id);
      if (i === -1) state.mergeIds.push(id);
      else state.mergeIds.splice(i, 1);
      refreshGridStyles();
      renderMerge();
      return;
    }
    if (state.tool === "draw" || state.tool === "edit" || state.tool === "split") return;
    selectGrid(id, { zoom: false });
  }

  function markRows() {
    Array.prototype.forEach.call(document.querySelectorAll(".grid-row"), function (row) {
      if (Number(row.getAttribute("data-grid-id")) === state.selected) row.setAttribute("aria-current", "true");
      else row.removeAttribute("aria-current");
    });
    Array.prototype.forEach.call(document.querySelectorAll("[data-needs-grid]"), function (b) {
      b.disabled = !state.selected || !!state.proposal;
    });
  }

  function selectGrid(id, options) {
    state.selected = id;
    refreshGridStyles();
    markRows();
    if (options && options.zoom && gridShapes[id]) {
      map.fitBounds(gridShapes[id].getBounds().pad(0.15), { padding: [40, 40], maxZoom: 17 });
    }
    if (state.tab !== "grids") setTab("grids");
    renderDetail(id);
  }

  function deselect() {
    state.selected = null;
    refreshGridStyles();
    markRows();
    if (versionLayer) versionLayer.clearLayers();
    showView("grids");
  }

  // -- Detail: facts, versions, team ----------------------------------------------------------------

  function renderDetail(id) {
    var g = gridsById[id] || { id: id, name: gridNames[id] || "", code: "", kind_display: "", merchant_count: 0 };
    var view = views.detail;
    view.textContent = "";
    var head = el("div", "panel-back");
    head.appendChild(button("‹ " + S.back, "btn-small", deselect, "detail-back"));
    view.appendChild(head);
    var title = el("h2", "panel-title", g.name);
    title.setAttribute("data-testid", "detail-title");
    view.appendChild(title);
    var dl = el("dl", "facts-list");
    [
      [S.code, g.code],
      [S.type, g.kind_display],
      [S.leader, g.leader || "—"],
      [S.merchants, num(g.merchant_count)],
    ].forEach(function (row) {
      dl.appendChild(el("dt", null, row[0]));
      var dd = el("dd", null, row[1]);
      if (row[0] === S.merchants) dd.setAttribute("data-testid", "detail-count");
      dl.appendChild(dd);
    });
    view.appendChild(dl);
    var actions = el("div", "panel-actions");
    actions.appendChild(button(S.edit_details, "", function () {
      state.form = { name: g.name, code: g.code, kind: g.kind, sub_branch: config.sub_branch.id, leader: g.leader_id || "" };
      renderGridForm(null, "edit");
    }, "detail-details"));
    view.appendChild(actions);

    var team = el("div");
    team.setAttribute("data-testid", "detail-team");
    view.appendChild(team);
    var versions = el("div");
    versions.setAttribute("data-testid", "detail-versions");
    view.appendChild(versions);
    showView("detail");
    loadTeam(id, team);
    loadVersions(id, versions);
  }

  function results(data) {
    if (Array.isArray(data)) return data;
    if (data && Array.isArray(data.results)) return data.results;
    if (data && data.type === "FeatureCollection") return data.features;
    return [];
  }

  function roleLabel(role) {
    return S["role_" + role] || role;
  }

  function loadTeam(id, box) {
    box.appendChild(el("h3", "panel-subtitle", S.team));
    var url = idUrl(U.team, id);
    if (!url) {
      box.appendChild(el("p", "muted", S.not_available));
      return;
    }
    var loading = el("p", "muted", S.loading);
    box.appendChild(loading);
    api("GET", url).then(function (res) {
      loading.remove();
      if (!res.ok) {
        box.appendChild(el("p", "muted", errorText(res)));
        return;
      }
      var d = res.data || {};
      var members = (d.leader ? [d.leader] : []).concat(d.account_managers || []);
      box.appendChild(el("p", "field-label", S.internal_team));
      if (!members.length) box.appendChild(el("p", "muted", S.no_team));
      var ul = el("ul", "plain-list");
      ul.setAttribute("data-testid", "team-list");
      members.forEach(function (m) {
        var li = el("li");
        li.appendChild(el("span", "grow", (m.user && m.user.display) || ""));
        li.appendChild(el("span", "role-tag", roleLabel(m.role)));
        if (m.start_date) li.appendChild(el("span", "muted", fmt(S.since, { date: m.start_date })));
        ul.appendChild(li);
      });
      box.appendChild(ul);
      var past = (d.history || []).filter(function (m) { return m.end_date; });
      if (past.length) {
        var details = el("details", "history");
        details.appendChild(el("summary", null, S.team_history + " (" + past.length + ")"));
        var hl = el("ul", "plain-list");
        past.forEach(function (m) {
          var li = el("li");
          li.appendChild(el("span", "grow", (m.user && m.user.display) || ""));
          li.appendChild(el("span", "role-tag", roleLabel(m.role)));
          li.appendChild(el("span", "muted", m.start_date + " – " + m.end_date));
          hl.appendChild(li);
        });
        details.appendChild(hl);
        box.appendChild(details);
      }
      var contactsBox = el("div");
      box.appendChild(contactsBox);
      if (!U.channel_contacts) return;
      api("GET", U.channel_contacts + "?grid=" + Number(id) + "&active=true").then(function (r2) {
        var list = r2.ok ? results(r2.data) : [];
        contactsBox.appendChild(el("p", "field-label", S.channel_contacts));
        if (!list.length) {
          contactsBox.appendChild(el("p", "muted", S.no_contacts));
          return;
        }
        var cl = el("ul", "plain-list");
        cl.setAttribute("data-testid", "channel-contacts");
        list.forEach(function (c) {
          var li = el("li");
          var main = el("span", "grow", c.name);
          if (c.organisation || c.title) main.appendChild(el("span", "cell-sub", [c.organisation, c.title].filter(Boolean).join(" · ")));
          li.appendChild(main);
          li.appendChild(el("span", "role-tag", config.channel_roles[c.role] || c.role || ""));
          if (c.phone) li.appendChild(el("span", "muted", c.phone));
          cl.appendChild(li);
        });
        contactsBox.appendChild(cl);
      });
    });
  }

  function loadVersions(id, box) {
    box.appendChild(el("h3", "panel-subtitle", S.versions));
    var url = idUrl(U.versions, id);
    if (!url) {
      box.appendChild(el("p", "muted", S.not_available));
      return;
    }
    api("GET", url).then(function (res) {
      if (!res.ok) {
        box.appendChild(el("p", "muted", errorText(res)));
        return;
      }
      var rows = results(res.data);
      if (!rows.length) {
        box.appendChild(el("p", "muted", S.no_versions));
        return;
      }
      var ul = el("ul", "plain-list");
      rows.forEach(function (v) {
        var p = v.properties || v;
        var li = el("li");
        var main = el("span", "grow", S.version + " " + p.number);
        var when = p.created_at ? String(p.created_at).replace("T", " ").slice(0, 16) : "";
        var by = p.created_by ? p.created_by.display || p.created_by : "";
        main.appendChild(el("span", "cell-sub", [when, by, p.note].filter(Boolean).join(" · ")));
        li.appendChild(main);
        var geom = v.geometry || p.geom;
        if (geom) {
          li.appendChild(
            button(S.show_version, "btn-small", function () {
              versionLayer.clearLayers();
              var shape = L.geoJSON(geom, {
                coordsToLatLng: coordsToLatLng,
                style: { color: "#7048e8", weight: 3, dashArray: "8 6", fill: false },
                pmIgnore: true,
                interactive: false,
              }).addTo(versionLayer);
              map.fitBounds(shape.getBounds(), { padding: [40, 40], maxZoom: 17 });
            })
          );
        }
        ul.appendChild(li);
      });
      box.appendChild(ul);
    });
  }

  // -- Tools ----------------------------------------------------------------------------------------

  function setPressed() {
    Array.prototype.forEach.call(document.querySelectorAll(".tool"), function (b) {
      b.setAttribute("aria-pressed", b.getAttribute("data-tool") === state.tool ? "true" : "false");
    });
  }

  function stopGeoman() {
    if (!map || !map.pm) return;
    map.pm.disableDraw();
    Object.keys(gridShapes).forEach(function (id) {
      var layer = gridShapes[id];
      if (layer.pm && layer.pm.enabled()) layer.pm.disable();
    });
  }

  /** Leave whatever tool is on; restore the grids as the server has them. */
  function endTool(keepDraft) {
    var was = state.tool;
    stopGeoman();
    state.tool = null;
    state.mergeIds = [];
    if (!keepDraft && state.draft) {
      draftLayer.clearLayers();
      state.draft = null;
    }
    setHint("");
    setPressed();
    if (was === "edit") loadGrids();
    refreshGridStyles();
  }

  function startTool(tool) {
    if (state.proposal) {
      showFlash(S.diff_intro, true);
      showView("diff");
      return;
    }
    if (state.tool === tool && tool !== "import" && tool !== "export") {
      endTool();
      if (state.selected) renderDetail(state.selected);
      else showView("grids");
      return;
    }
    endTool();
    clearFlash();
    clearMarks();
    state.tool = tool;
    setPressed();
    if (tool === "draw") startDraw();
    else if (tool === "edit") startEdit();
    else if (tool === "split") startSplit();
    else if (tool === "merge") startMerge();
    else if (tool === "import") renderImport();
    else if (tool === "export") renderExport();
  }

  function cancelButton() {
    return button(S.cancel, "btn-small", function () {
      endTool();
      if (state.selected) renderDetail(state.selected);
      else showView("grids");
    }, "hint-cancel");
  }

  // New grid: draw a polygon (snapping to the neighbours' borders), then the form.
  function startDraw() {
    setHint(S.draw_hint, [cancelButton()]);
    map.pm.enableDraw("Polygon", Object.assign({ allowSelfIntersection: true, templineStyle: { color: "#0b5cab" }, hintlineStyle: { color: "#0b5cab", dashArray: "5 5" }, pathOptions: { color: "#0b5cab", weight: 3, fillOpacity: 0.2 } }, SNAP));
  }

  // Edit boundary: drag the selected grid's corners.
  function startEdit() {
    var layer = gridShapes[state.selected];
    if (!layer) {
      showFlash(S.select_first, true);
      state.tool = null;
      setPressed();
      return;
    }
    // Show the neighbours too (their borders are what the corners snap to), clear of the hint.
    map.fitBounds(layer.getBounds().pad(0.5), { paddingTopLeft: [24, 96], paddingBottomRight: [24, 24], maxZoom: 17, animate: false });
    layer.pm.enable(Object.assign({ allowSelfIntersection: true, draggable: false }, SNAP));
    setHint(S.edit_hint, [
      button(S.preview_changes, "btn-primary btn-small", function () { previewRedraw(layer); }, "hint-preview"),
      cancelButton(),
    ]);
  }

  // Split: draw a line across the selected grid, then name the new part.
  function startSplit() {
    if (!state.selected) {
      showFlash(S.select_first, true);
      state.tool = null;
      setPressed();
      return;
    }
    setHint(S.split_hint, [cancelButton()]);
    map.pm.enableDraw("Line", Object.assign({ templineStyle: { color: "#c92a2a" }, hintlineStyle: { color: "#c92a2a", dashArray: "5 5" }, pathOptions: { color: "#c92a2a", weight: 4 } }, SNAP));
  }

  // Merge: tap the grids that join the selected one.
  function startMerge() {
    if (!state.selected) {
      showFlash(S.select_first, true);
      state.tool = null;
      setPressed();
      return;
    }
    state.mergeIds = [];
    setHint(S.merge_hint, [cancelButton()]);
    renderMerge();
  }

  function onCreate(e) {
    var layer = e.layer;
    map.removeLayer(layer);
    draftLayer.clearLayers();
    layer.options.pmIgnore = true;
    draftLayer.addLayer(layer);
    state.draft = layer;
    map.pm.disableDraw();
    if (state.tool === "draw" && (e.shape === "Polygon" || e.shape === "Rectangle")) {
      setHint("");
      renderGridForm();
    } else if (state.tool === "split" && e.shape === "Line") {
      setHint("");
      renderSplitForm();
    }
  }

  // -- The new-grid form ----------------------------------------------------------------------------

  function fieldRow(form) {
    var row = el("div", "field-row");
    form.appendChild(row);
    return row;
  }

  function field(form, name, label, control, errors) {
    var box = el("div", "field");
    var lab = el("label", null, label);
    lab.htmlFor = "tf-" + name;
    control.id = "tf-" + name;
    control.name = name;
    box.appendChild(lab);
    box.appendChild(control);
    var mine = (errors || []).filter(function (e) { return e[0] === name; });
    if (mine.length) {
      box.classList.add("field-invalid");
      mine.forEach(function (e) {
        var p = el("p", "field-error", e[1]);
        p.setAttribute("data-testid", "error-" + name);
        box.appendChild(p);
      });
    }
    form.appendChild(box);
    return control;
  }

  function input(value, required) {
    var i = el("input");
    i.type = "text";
    i.value = value || "";
    if (required) i.required = true;
    i.autocomplete = "off";
    return i;
  }

  function select(options, value) {
    var s = el("select");
    options.forEach(function (o) {
      var opt = el("option", null, o.label);
      opt.value = o.value;
      if (String(o.value) === String(value)) opt.selected = true;
      s.appendChild(opt);
    });
    return s;
  }

  /** The geometry problems of a territory 400: each error is {message, code, spot, overlaps}
   *  (grids/api/errors.py): the spot ([lon, lat]) where a boundary breaks, the sibling grids it
   *  overlaps (grid, m²). Plain-string errors (other endpoints) still show as messages. */
  function geometryProblems(data) {
    var out = { messages: [], spots: [], overlaps: [], fields: [] };
    flattenErrors(data).forEach(function (e) {
      var extra = e[2] || {};
      var overlaps = Array.isArray(extra.overlaps) ? extra.overlaps : [];
      out.overlaps = out.overlaps.concat(overlaps);
      if (e[0] === "geom" || e[0] === "line" || e[0] === "polygons" || e[0] === "shapes") {
        var spot = extra.spot;
        if (Array.isArray(spot) && spot.length === 2 && spot[0] !== null && spot[1] !== null) {
          out.spots.push([Number(spot[0]), Number(spot[1])]);
        }
        if (!(extra.code === "overlaps" || overlaps.length)) out.messages.push(e[1]);
      } else {
        out.fields.push(e);
      }
    });
    if (data && Array.isArray(data.overlaps)) out.overlaps = out.overlaps.concat(data.overlaps);
    return out;
  }

  function clearMarks() {
    spotLayer.clearLayers();
  }

  function spotMarker(latlng) {
    return L.marker(latlng, {
      icon: L.divIcon({ className: "spot-icon", html: '<span class="spot-marker" data-testid="error-spot"></span>', iconSize: [28, 28] }),
      interactive: false,
      pmIgnore: true,
      zIndexOffset: 1000,
    });
  }

  function markSpots(spots) {
    spotLayer.clearLayers();
    spots.forEach(function (s) {
      spotMarker(toDisplay(s[0], s[1])).addTo(spotLayer);
    });
  }

  function problemBox(problems, onAcceptChange) {
    var box = el("div");
    if (problems.messages.length) {
      var p = el("div", "problem");
      p.setAttribute("data-testid", "geom-errors");
      p.appendChild(el("h3", null, S.geom_errors));
      var ul = el("ul");
      problems.messages.forEach(function (m) { ul.appendChild(el("li", null, m)); });
      p.appendChild(ul);
      if (problems.spots.length) {
        p.appendChild(
          button(S.show_spot, "btn-small", function () {
            var s = problems.spots[0];
            map.setView(toDisplay(s[0], s[1]), Math.max(map.getZoom(), 17));
          }, "show-spot")
        );
      }
      box.appendChild(p);
    }
    if (problems.overlaps.length) {
      var o = el("div", "problem problem-warn");
      o.setAttribute("data-testid", "overlaps");
      o.appendChild(el("h3", null, S.overlaps));
      var ol = el("ul");
      problems.overlaps.forEach(function (x) {
        var name = x.name || gridNames[x.grid_id] || "";
        ol.appendChild(el("li", null, fmt(S.overlap_row, { grid: name + (x.code ? " (" + x.code + ")" : ""), area: num(x.area_m2) })));
      });
      o.appendChild(ol);
      if (onAcceptChange) {
        var row = el("label", "check-row");
        var cb = el("input");
        cb.type = "checkbox";
        cb.name = "accept_overlaps";
        cb.setAttribute("data-testid", "accept-overlaps");
        cb.addEventListener("change", function () { onAcceptChange(cb.checked); });
        row.appendChild(cb);
        row.appendChild(el("span", null, S.accept_overlap));
        o.appendChild(row);
      }
      box.appendChild(o);
    }
    markSpots(problems.spots);
    return box;
  }

  function renderGridForm(problems, mode) {
    var editing = mode === "edit";
    var view = views.form;
    view.textContent = "";
    view.appendChild(el("h2", "panel-title", editing ? S.edit_details + " · " + (gridNames[state.selected] || "") : S.new_grid));
    var errors = problems ? problems.fields : [];
    if (problems) view.appendChild(problemBox(problems));
    if (errors.length) {
      var fe = el("p", "problem", S.field_errors);
      view.appendChild(fe);
    }
    var form = el("form", "tform");
    form.setAttribute("data-testid", "grid-form");
    form.noValidate = true;
    var v = state.form;
    var name = field(form, "name", S.name, input(v.name, true), errors);
    var pair = fieldRow(form);
    var code = field(pair, "code", S.code, input(v.code, true), errors);
    var kind = field(pair, "kind", S.type, select(config.kinds, v.kind || "mixed"), errors);
    var pair2 = fieldRow(form);
    var sb = field(
      pair2,
      "sub_branch",
      S.sub_branch,
      select(config.sub_branches.map(function (s) { return { value: s.id, label: s.name }; }), v.sub_branch || config.sub_branch.id),
      errors
    );
    if (editing) sb.disabled = true;
    var leader = field(
      pair2,
      "leader",
      S.leader,
      select([{ value: "", label: S.no_leader }].concat(config.people.map(function (p) { return { value: p.id, label: p.name }; })), v.leader || ""),
      errors
    );
    var trim = null;
    if (!editing) {
      var row = el("label", "check-row");
      trim = el("input");
      trim.type = "checkbox";
      trim.checked = v.trim !== false;
      trim.setAttribute("data-testid", "trim-neighbours");
      row.appendChild(trim);
      row.appendChild(el("span", null, S.trim_neighbours));
      form.appendChild(row);
    }
    var leftover = errors.filter(function (e) {
      return ["name", "code", "kind", "sub_branch", "leader"].indexOf(e[0]) === -1;
    });
    leftover.forEach(function (e) {
      var p = el("p", "field-error", e[1]);
      p.setAttribute("data-testid", "error-" + e[0]);
      form.appendChild(p);
    });
    var actions = el("div", "panel-actions");
    var submit = button(editing ? S.save : S.preview_changes, "btn-primary", null, editing ? "form-save" : "form-preview");
    submit.type = "submit";
    actions.appendChild(submit);
    actions.appendChild(button(S.cancel, "", function () {
      state.form = {};
      if (!editing) endTool();
      clearMarks();
      if (state.selected) renderDetail(state.selected);
      else showView("grids");
    }, "form-cancel"));
    form.appendChild(actions);
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      state.form = {
        name: name.value.trim(),
        code: code.value.trim(),
        kind: kind.value,
        sub_branch: sb.value,
        leader: leader.value,
        trim: trim ? trim.checked : undefined,
      };
      var missing = [];
      if (!state.form.name) missing.push(["name", S.required]);
      if (!state.form.code) missing.push(["code", S.required]);
      if (missing.length) {
        renderGridForm({ messages: [], spots: [], overlaps: [], fields: missing }, mode);
        return;
      }
      if (editing) submitEdit(submit);
      else submitNewGrid(submit);
    });
    view.appendChild(form);
    showView("form");
    if (!problems) name.focus();
  }

  function submitNewGrid(submit) {
    if (!state.draft) return;
    submit.disabled = true;
    setBusy(true);
    api("POST", U.create_preview, {
      sub_branch: Number(state.form.sub_branch),
      name: state.form.name,
      code: state.form.code,
      kind: state.form.kind,
      geom: polygonGeometry(state.draft),
      trim_neighbours: state.form.trim !== false,
      // The leader travels with the proposal and is appointed by apply (same transaction).
      leader: state.form.leader ? Number(state.form.leader) : null,
    }).then(function (res) {
      setBusy(false);
      submit.disabled = false;
      if (res.ok) showProposal(res.data);
      else if (res.status === 400) renderGridForm(geometryProblems(res.data));
      else showFlash(errorText(res), true);
    });
  }

  /** Metadata of an existing grid (PATCH): name, code, type, leader. */
  function submitEdit(submit) {
    submit.disabled = true;
    var body = { name: state.form.name, code: state.form.code, kind: state.form.kind };
    if (state.form.leader) body.leader = Number(state.form.leader);
    api("PATCH", idUrl(U.grid, state.selected), body).then(function (res) {
      submit.disabled = false;
      if (res.ok) {
        var id = state.selected;
        state.form = {};
        refreshAll().then(function () {
          selectGrid(id, { zoom: false });
          showFlash(S.saved);
        });
      } else if (res.status === 400) renderGridForm(geometryProblems(res.data), "edit");
      else showFlash(errorText(res), true);
    });
  }

  // -- Split and merge forms ------------------------------------------------------------------------

  function renderSplitForm(problems) {
    var view = views.form;
    view.textContent = "";
    view.appendChild(el("h2", "panel-title", S.split + " · " + (gridNames[state.selected] || "")));
    if (problems) view.appendChild(problemBox(problems));
    var errors = problems ? problems.fields : [];
    var form = el("form", "tform");
    form.noValidate = true;
    var name = field(form, "new_name", S.new_grid_name, input(state.form.new_name, true), errors);
    var code = field(form, "new_code", S.code, input(state.form.new_code, true), errors);
    var actions = el("div", "panel-actions");
    var submit = button(S.preview_changes, "btn-primary", null, "split-preview");
    submit.type = "submit";
    actions.appendChild(submit);
    actions.appendChild(button(S.cancel, "", function () {
      endTool();
      renderDetail(state.selected);
    }));
    form.appendChild(actions);
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      state.form = { new_name: name.value.trim(), new_code: code.value.trim() };
      if (!state.form.new_name || !state.form.new_code) {
        renderSplitForm({ messages: [], spots: [], overlaps: [], fields: [[!state.form.new_name ? "new_name" : "new_code", S.required]] });
        return;
      }
      submit.disabled = true;
      setBusy(true);
      api("POST", idUrl(U.split, state.selected), {
        line: lineGeometry(state.draft),
        new_name: state.form.new_name,
        new_code: state.form.new_code,
      }).then(function (res) {
        setBusy(false);
        submit.disabled = false;
        if (res.ok) showProposal(res.data);
        else if (res.status === 400) renderSplitForm(geometryProblems(res.data));
        else showFlash(errorText(res), true);
      });
    });
    view.appendChild(form);
    showView("form");
  }

  function renderMerge(problems) {
    var view = views.form;
    view.textContent = "";
    view.appendChild(el("h2", "panel-title", S.merge));
    view.appendChild(el("p", "muted", S.merge_hint));
    if (problems) view.appendChild(problemBox(problems));
    // The other grids as a checklist (the same as tapping them on the map).
    var ul = el("ul", "plain-list");
    ul.setAttribute("data-testid", "merge-list");
    var first = el("li");
    first.appendChild(el("span", "grow", gridNames[state.selected] || (gridsById[state.selected] || {}).name || ""));
    first.appendChild(el("span", "role-tag", S.grid));
    ul.appendChild(first);
    config.grids.forEach(function (g) {
      if (g.id === state.selected) return;
      var li = el("li");
      var row = el("label", "check-row grow");
      var cb = el("input");
      cb.type = "checkbox";
      cb.checked = state.mergeIds.indexOf(g.id) !== -1;
      cb.setAttribute("data-testid", "merge-pick-" + g.id);
      cb.addEventListener("change", function () {
        onGridTap(g.id);
      });
      row.appendChild(cb);
      row.appendChild(el("span", null, g.name + " · " + g.code));
      li.appendChild(row);
      ul.appendChild(li);
    });
    view.appendChild(ul);
    var actions = el("div", "panel-actions");
    var go = button(S.preview_merge, "btn-primary", function () {
      go.disabled = true;
      setBusy(true);
      api("POST", U.merge, { grid_ids: [state.selected].concat(state.mergeIds) }).then(function (res) {
        setBusy(false);
        go.disabled = false;
        if (res.ok) showProposal(res.data);
        else if (res.status === 400) renderMerge(geometryProblems(res.data));
        else showFlash(errorText(res), true);
      });
    }, "merge-preview");
    go.disabled = !state.mergeIds.length || !U.merge;
    actions.appendChild(go);
    actions.appendChild(button(S.cancel, "", function () {
      endTool();
      renderDetail(state.selected);
    }));
    view.appendChild(actions);
    showView("form");
  }

  // -- Redraw preview -------------------------------------------------------------------------------

  function previewRedraw(layer) {
    var geom = polygonGeometry(layer);
    setBusy(true);
    api("POST", idUrl(U.redraw, state.selected), { geom: geom }).then(function (res) {
      setBusy(false);
      if (res.ok) {
        if (layer.pm) layer.pm.disable();
        showProposal(res.data);
      } else if (res.status === 400) {
        var view = views.form;
        view.textContent = "";
        view.appendChild(el("h2", "panel-title", S.edit_boundary));
        view.appendChild(problemBox(geometryProblems(res.data)));
        showView("form");
      } else showFlash(errorText(res), true);
    });
  }

  // -- The diff: what a proposal moves --------------------------------------------------------------

  function proposalGridName(p, id) {
    if (id === null || id === undefined) return S.outside;
    if (p.grid_labels && p.grid_labels[String(id)]) return p.grid_labels[String(id)];
    var g = p.summary && p.summary.grids && p.summary.grids[String(id)];
    if (g) return g.name;
    return gridNames[id] || (Number(id) >= NEW_BASE ? S.new_grid : String(id));
  }

  function ownerName(p, uid) {
    if (uid === null || uid === undefined) return S.unassigned;
    var names = (p.owner_names || {});
    if (names[String(uid)]) return names[String(uid)];
    var rows = (p.summary && p.summary.per_owner) || [];
    for (var i = 0; i < rows.length; i++) {
      if (rows[i].user_id === uid) return rows[i].display;
    }
    var person = config.people.filter(function (x) { return x.id === uid; })[0];
    return person ? person.name : "#" + uid;
  }

  function moveCell(p, grid, owner, name) {
    var td = el("td");
    td.appendChild(el("span", null, proposalGridName(p, grid)));
    td.appendChild(el("span", "cell-sub", owner && name ? name : ownerName(p, owner)));
    return td;
  }

  function drawProposal(p) {
    proposalLayer.clearLayers();
    movingLayer.clearLayers();
    var bounds = L.latLngBounds([]);
    (p.shapes_geojson || p.shapes || []).forEach(function (s) {
      var geom = s.geometry || s.geom;
      if (!geom || typeof geom !== "object") return;
      var layer = L.geoJSON(geom, {
        coordsToLatLng: coordsToLatLng,
        style: { color: "#e8590c", weight: 3, dashArray: "8 6", fillColor: "#ffa94d", fillOpacity: 0.12 },
        pmIgnore: true,
        interactive: false,
      }).addTo(proposalLayer);
      bounds.extend(layer.getBounds());
    });
    var moving = p.moving_merchants || p.merchants_geojson;
    var features = moving && moving.features
      ? moving.features
      : (p.merchant_moves || []).map(function (m) {
          return { geometry: { type: "Point", coordinates: [m.lon, m.lat] }, properties: m };
        });
    features.forEach(function (f) {
      if (!f.geometry || !f.geometry.coordinates) return;
      var c = f.geometry.coordinates;
      var ll = toDisplay(c[0], c[1]);
      L.marker(ll, {
        icon: L.divIcon({
          className: "moving-icon",
          html: '<span class="moving-marker" data-testid="moving-marker" data-merchant-id="' + Number(f.properties.id) + '"></span>',
          iconSize: [22, 22],
        }),
        title: f.properties.name,
        alt: f.properties.name,
        pmIgnore: true,
        zIndexOffset: 1000,
      }).addTo(movingLayer);
      bounds.extend(ll);
    });
    if (bounds.isValid()) map.fitBounds(bounds, { padding: [48, 48], maxZoom: 17 });
  }

  /** The API's proposal (RedrawProposalDetailSerializer) in the shape the diff view draws. */
  function normalise(p) {
    if (!p) return p;
    function gid(g) {
      if (g === null || g === undefined) return null;
      return typeof g === "object" ? (g.id === null ? "new:" + (g.code || "") : g.id) : g;
    }
    function gname(g) {
      return g && typeof g === "object" ? g.name : null;
    }
    p.grid_labels = p.grid_labels || {};
    if (Array.isArray(p.moves)) {
      p.merchant_moves = p.moves.map(function (m) {
        [m.from_grid, m.to_grid].forEach(function (g) {
          if (g && typeof g === "object") p.grid_labels[String(gid(g))] = gname(g);
        });
        return {
          id: m.merchant_id !== undefined ? m.merchant_id : m.id,
          name: m.name,
          from_grid: gid(m.from_grid),
          to_grid: gid(m.to_grid),
          from_owner: m.from_owner && typeof m.from_owner === "object" ? m.from_owner.id : m.from_owner,
          to_owner: m.to_owner && typeof m.to_owner === "object" ? m.to_owner.id : m.to_owner,
          from_owner_name: m.from_owner && m.from_owner.display,
          to_owner_name: m.to_owner && m.to_owner.display,
          locked: m.locked,
        };
      });
    }
    if (Array.isArray(p.places) && !p.place_moves) {
      p.place_moves = p.places.map(function (x) {
        [x.from_grid, x.to_grid].forEach(function (g) {
          if (g && typeof g === "object") p.grid_labels[String(gid(g))] = gname(g);
        });
        return { id: x.place_id, name: x.name, from_grid: gid(x.from_grid), to_grid: gid(x.to_grid) };
      });
    }
    if (p.shapes && p.shapes.type === "FeatureCollection") p.shapes_geojson = p.shapes.features;
    if (p.merchants_geojson) p.moving_merchants = p.merchants_geojson;
    return p;
  }

  function showProposal(p) {
    p = normalise(p);
    state.proposal = p;
    stopGeoman();
    setHint("");
    markRows();
    clearMarks();
    drawProposal(p);
    renderDiff(p);
  }

  function renderDiff(p, problems) {
    var view = views.diff;
    view.textContent = "";
    var title = el("h2", "panel-title", S.diff + (config.proposal_kinds[p.kind] ? " · " + config.proposal_kinds[p.kind] : ""));
    view.appendChild(title);
    view.appendChild(el("p", "muted", S.diff_intro));
    var summary = p.summary || {};
    var moves = p.merchant_moves || [];
    var places = p.place_moves || [];

    var facts = el("dl", "facts-list");
    facts.appendChild(el("dt", null, S.moving_merchants));
    var n = el("dd", null, num(summary.merchants !== undefined ? summary.merchants : moves.length));
    n.setAttribute("data-testid", "diff-merchant-count");
    facts.appendChild(n);
    facts.appendChild(el("dt", null, S.moving_places));
    facts.appendChild(el("dd", null, num(summary.places !== undefined ? summary.places : places.length)));
    view.appendChild(facts);

    var accept = { value: false };
    var overlaps = (p.overlaps || []).map(function (o) {
      return Object.assign({}, o, { name: o.name || gridNames[o.grid_id] });
    });
    var all = problems || { messages: [], spots: [], overlaps: [], fields: [] };
    if (overlaps.length && !all.overlaps.length) all.overlaps = overlaps;
    if (all.messages.length || all.overlaps.length) {
      view.appendChild(problemBox(all, function (checked) {
        accept.value = checked;
        clearFlash();
      }));
    }
    all.fields.forEach(function (e) {
      var err = el("p", "problem", e[1]);
      err.setAttribute("data-testid", "diff-error");
      view.appendChild(err);
    });

    var actions = el("div", "panel-actions");
    var apply = button(S.apply, "btn-primary", function () {
      if (all.overlaps.length && !accept.value) {
        showFlash(S.accept_first, true);
        return;
      }
      applyProposal(p, accept.value, apply);
    }, "diff-apply");
    var discard = button(S.discard, "btn-danger", function () { discardProposal(p, discard); }, "diff-discard");
    actions.appendChild(apply);
    actions.appendChild(discard);
    view.appendChild(actions);

    var perOwner = summary.per_owner || [];
    if (perOwner.length) {
      view.appendChild(el("h3", "panel-subtitle", S.per_am));
      var wrap = el("div", "ttable-wrap");
      var t = el("table", "ttable");
      t.setAttribute("data-testid", "diff-per-am");
      var thead = el("thead");
      var hr = el("tr");
      [S.account_manager, S.gains, S.loses].forEach(function (h, i) {
        var th = el("th", i ? "num" : null, h);
        hr.appendChild(th);
      });
      thead.appendChild(hr);
      t.appendChild(thead);
      var tb = el("tbody");
      perOwner.forEach(function (r) {
        var tr = el("tr");
        tr.appendChild(el("td", null, r.display || ownerName(p, r.user_id)));
        tr.appendChild(el("td", "num gain", r.gains ? "+" + num(r.gains) : "0"));
        tr.appendChild(el("td", "num loss", r.losses ? "−" + num(r.losses) : "0"));
        tb.appendChild(tr);
      });
      t.appendChild(tb);
      wrap.appendChild(t);
      view.appendChild(wrap);
    }

    view.appendChild(el("h3", "panel-subtitle", S.moving_merchants));
    if (!moves.length && !places.length) {
      var none = el("p", "muted", S.diff_none);
      none.setAttribute("data-testid", "diff-none");
      view.appendChild(none);
    }
    if (moves.length) {
      var w2 = el("div", "ttable-wrap");
      var table = el("table", "ttable");
      table.setAttribute("data-testid", "diff-table");
      var h2 = el("thead");
      var r2 = el("tr");
      [S.merchant, S.from, "", S.to].forEach(function (h) { r2.appendChild(el("th", null, h)); });
      h2.appendChild(r2);
      table.appendChild(h2);
      var b2 = el("tbody");
      moves.forEach(function (m) {
        var tr = el("tr");
        tr.setAttribute("data-merchant-id", String(m.id));
        var name = el("td", null, m.name);
        if (m.locked) name.appendChild(el("span", "cell-sub", S.locked));
        tr.appendChild(name);
        tr.appendChild(moveCell(p, m.from_grid, m.from_owner, m.from_owner_name));
        tr.appendChild(el("td", "move-arrow", "→"));
        tr.appendChild(moveCell(p, m.to_grid, m.to_owner, m.to_owner_name));
        b2.appendChild(tr);
      });
      table.appendChild(b2);
      w2.appendChild(table);
      view.appendChild(w2);
    }
    if (places.length) {
      view.appendChild(el("h3", "panel-subtitle", S.moving_places));
      var w3 = el("div", "ttable-wrap");
      var t3 = el("table", "ttable");
      var b3 = el("tbody");
      places.forEach(function (pl) {
        var tr = el("tr");
        tr.appendChild(el("td", null, pl.name));
        tr.appendChild(el("td", null, proposalGridName(p, pl.from_grid)));
        tr.appendChild(el("td", "move-arrow", "→"));
        tr.appendChild(el("td", null, proposalGridName(p, pl.to_grid)));
        b3.appendChild(tr);
      });
      t3.appendChild(b3);
      w3.appendChild(t3);
      view.appendChild(w3);
    }
    showView("diff");
  }

  function endProposal() {
    state.proposal = null;
    proposalLayer.clearLayers();
    movingLayer.clearLayers();
    draftLayer.clearLayers();
    state.draft = null;
    markRows();
  }

  function applyProposal(p, acceptOverlaps, btn) {
    btn.disabled = true;
    setBusy(true);
    var body = acceptOverlaps ? { accept_overlaps: true } : {};
    api("POST", idUrl(U.apply, p.id), body).then(function (res) {
      setBusy(false);
      btn.disabled = false;
      if (res.ok) {
        var applied = res.data || p;
        var created = (applied.summary && applied.summary.created_grids) || {};
        var newIds = Object.keys(created).map(function (k) { return created[k]; });
        endProposal();
        endTool();
        state.form = {};
        var focus = newIds.length ? Number(newIds[0]) : p.grid && (p.grid.id || p.grid);
        refreshAll().then(function () {
          showFlash(S.applied);
          if (focus && gridsById[focus]) selectGrid(Number(focus), { zoom: false });
          else showView("grids");
          mapNode.setAttribute("data-applied", String(p.id));
        });
      } else if (res.status === 400) {
        renderDiff(p, geometryProblems(res.data));
      } else if (res.status === 409) {
        showFlash((res.data && res.data.detail) || S.stale, true);
      } else {
        showFlash(errorText(res), true);
      }
    });
  }

  function discardProposal(p, btn) {
    btn.disabled = true;
    api("POST", idUrl(U.discard, p.id), {}).then(function (res) {
      btn.disabled = false;
      if (!res.ok && res.status !== 404) {
        showFlash(errorText(res), true);
        return;
      }
      endProposal();
      endTool();
      state.form = {};
      loadGrids();
      showFlash(S.discarded);
      if (state.selected && gridsById[state.selected]) renderDetail(state.selected);
      else showView("grids");
    });
  }

  // -- Refreshing after a change --------------------------------------------------------------------

  /** Re-read this page's grid list (counts, names) and config, then the map layers. */
  function refreshAll() {
    var url = window.location.pathname + "?sub_branch=" + Number(config.sub_branch.id);
    return fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (r) { return r.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("territory-grid-list");
        var cfg = doc.getElementById("territory-config");
        if (fresh) {
          views.grids.textContent = "";
          while (fresh.firstChild) views.grids.appendChild(fresh.firstChild);
          bindGridRows();
        }
        if (cfg) {
          var c = JSON.parse(cfg.textContent);
          config.grids = c.grids;
          config.people = c.people;
          gridsById = {};
          config.grids.forEach(function (g) { gridsById[g.id] = g; });
        }
      })
      .catch(function () {})
      .then(function () {
        state.coverage = null;
        state.gaps = null;
        gapLayer.clearLayers();
        return Promise.all([loadGrids(), loadMerchants()]);
      })
      .then(function () {
        markRows();
        if (state.tab === "coverage") renderCoverage();
        if (state.tab === "gaps") renderGaps();
      });
  }

  function bindGridRows() {
    Array.prototype.forEach.call(views.grids.querySelectorAll(".grid-row"), function (row) {
      row.addEventListener("click", function () {
        if (state.tool === "merge") {
          onGridTap(Number(row.getAttribute("data-grid-id")));
          return;
        }
        if (state.tool || state.proposal) return;
        selectGrid(Number(row.getAttribute("data-grid-id")), { zoom: true });
      });
    });
    markRows();
  }

  // -- Tabs: coverage and gaps ----------------------------------------------------------------------

  function setTab(tab) {
    if (tab !== state.tab) clearFlash();
    state.tab = tab;
    Array.prototype.forEach.call(document.querySelectorAll(".panel-tab"), function (t) {
      t.setAttribute("aria-selected", t.getAttribute("data-tab") === tab ? "true" : "false");
    });
    if (tab !== "gaps") gapLayer.clearLayers();
    if (tab === "coverage") renderCoverage();
    else if (tab === "gaps") renderGaps();
    else {
      refreshGridStyles();
      if (state.proposal) showView("diff");
      else if (state.tool === "import" || state.tool === "export") showView(state.tool);
      else if (state.selected) showView("detail");
      else showView("grids");
    }
  }

  var METRICS = [
    { key: "visited_30", label: function () { return S.visited_30; } },
    { key: "visited_90", label: function () { return S.visited_90; } },
    { key: "in_grid_rate", label: function () { return S.in_grid_rate; } },
  ];
  // Low coverage red, high green: the grids that need visits stand out.
  var SCALE_GOOD = ["#d73027", "#fc8d59", "#fee08b", "#91cf60", "#1a9850"];

  function coverageRows() {
    var c = state.coverage;
    if (!c) return [];
    return (c.results || []).map(function (r) {
      return {
        id: r.id,
        name: r.name || gridNames[r.id] || "",
        merchants: Number(r.merchants || 0),
        visited_30: r.visited_30_rate,
        visited_90: r.visited_90_rate,
        in_grid_rate: r.in_grid_rate,
        never_visited: r.never_visited,
      };
    });
  }

  function coverageColor(id) {
    var row = coverageRows().filter(function (r) { return r.id === id; })[0];
    var v = row ? row[state.coverageMetric] : null;
    if (v === null || v === undefined || !isFinite(v)) return "#ced4da";
    var i = Math.min(4, Math.floor(v * 5));
    return SCALE_GOOD[i];
  }

  var sortState = { key: "visited_30", dir: "asc" };

  function renderCoverage() {
    var view = views.coverage;
    showView("coverage");
    if (!U.coverage) {
      view.textContent = "";
      view.appendChild(el("h2", "panel-title", S.coverage));
      view.appendChild(el("p", "muted", S.not_available));
      return;
    }
    if (!state.coverage) {
      view.textContent = "";
      view.appendChild(el("h2", "panel-title", S.coverage));
      view.appendChild(el("p", "muted", S.loading));
      api("GET", U.coverage + "?sub_branch=" + Number(config.sub_branch.id)).then(function (res) {
        if (!res.ok) {
          view.textContent = "";
          view.appendChild(el("p", "muted", errorText(res)));
          return;
        }
        state.coverage = res.data || {};
        if (state.tab === "coverage") renderCoverage();
      });
      return;
    }
    refreshGridStyles();
    view.textContent = "";
    view.appendChild(el("h2", "panel-title", S.coverage));
    var form = el("div", "tform");
    var metric = field(
      form,
      "coverage_metric",
      S.coverage_metric,
      select(METRICS.map(function (m) { return { value: m.key, label: m.label() }; }), state.coverageMetric),
      []
    );
    metric.setAttribute("data-testid", "coverage-metric");
    metric.addEventListener("change", function () {
      state.coverageMetric = metric.value;
      renderCoverage();
    });
    view.appendChild(form);
    var legend = el("ul", "legend-scale");
    legend.setAttribute("data-testid", "coverage-legend");
    SCALE_GOOD.forEach(function (color, i) {
      var li = el("li");
      var sw = el("span", "swatch");
      sw.style.background = color;
      li.appendChild(sw);
      li.appendChild(el("span", null, i * 20 + "–" + (i + 1) * 20 + "%"));
      legend.appendChild(li);
    });
    var nd = el("li");
    var ndw = el("span", "swatch");
    ndw.style.background = "#ced4da";
    nd.appendChild(ndw);
    nd.appendChild(el("span", null, S.no_data));
    legend.appendChild(nd);
    view.appendChild(legend);

    var totals = state.coverage.total;
    if (totals) {
      view.appendChild(el("p", "field-label", S.coverage_total));
      var dl = el("dl", "facts-list");
      dl.setAttribute("data-testid", "coverage-total");
      [
        [S.merchants, num(totals.merchants)],
        [S.in_grid_rate, pct(totals.in_grid_rate)],
        [S.visited_30, pct(totals.visited_30_rate)],
        [S.visited_90, pct(totals.visited_90_rate)],
        [S.never_visited, num(totals.never_visited)],
      ].forEach(function (r) {
        dl.appendChild(el("dt", null, r[0]));
        dl.appendChild(el("dd", null, r[1]));
      });
      view.appendChild(dl);
    }

    var cols = [
      { key: "name", label: S.grid, text: true },
      { key: "merchants", label: S.merchants },
      { key: "visited_30", label: S.visited_30, rate: true },
      { key: "visited_90", label: S.visited_90, rate: true },
      { key: "in_grid_rate", label: S.in_grid_rate, rate: true },
      { key: "never_visited", label: S.never_visited },
    ];
    var rows = coverageRows().slice();
    rows.sort(function (a, b) {
      var x = a[sortState.key];
      var y = b[sortState.key];
      var r = typeof x === "string" ? String(x).localeCompare(String(y), "zh-CN") : (x === null ? -1 : x) - (y === null ? -1 : y);
      return sortState.dir === "asc" ? r : -r;
    });
    var wrap = el("div", "ttable-wrap");
    var table = el("table", "ttable");
    table.setAttribute("data-testid", "coverage-table");
    var thead = el("thead");
    var tr = el("tr");
    cols.forEach(function (c) {
      var th = el("th", c.text ? null : "num");
      var b = el("button", "sort-button", c.label);
      b.type = "button";
      b.setAttribute("aria-label", fmt(S.sort_by, { column: c.label }));
      if (sortState.key === c.key) {
        b.setAttribute("data-dir", sortState.dir);
        th.setAttribute("aria-sort", sortState.dir === "asc" ? "ascending" : "descending");
      }
      b.addEventListener("click", function () {
        sortState = { key: c.key, dir: sortState.key === c.key && sortState.dir === "asc" ? "desc" : "asc" };
        renderCoverage();
      });
      th.appendChild(b);
      tr.appendChild(th);
    });
    thead.appendChild(tr);
    table.appendChild(thead);
    var tbody = el("tbody");
    rows.forEach(function (r) {
      var row = el("tr");
      row.setAttribute("data-grid-id", String(r.id));
      cols.forEach(function (c) {
        var v = r[c.key];
        row.appendChild(el("td", c.text ? "nowrap" : "num", c.text ? v : c.rate ? pct(v) : num(v)));
      });
      tbody.appendChild(row);
    });
    table.appendChild(tbody);
    wrap.appendChild(table);
    view.appendChild(wrap);
  }

  function renderGaps() {
    var view = views.gaps;
    showView("gaps");
    view.textContent = "";
    view.appendChild(el("h2", "panel-title", S.gaps));
    view.appendChild(el("p", "muted", S.gaps_intro));
    if (!U.gaps) {
      view.appendChild(el("p", "muted", S.not_available));
      return;
    }
    var draw = function (data) {
      gapLayer.clearLayers();
      var features = (data && data.gaps && data.gaps.features) || [];
      var legend = el("ul", "legend-scale");
      var li = el("li");
      li.appendChild(el("span", "swatch swatch-gap"));
      li.appendChild(el("span", null, S.gaps));
      legend.appendChild(li);
      view.appendChild(legend);
      if (features.length) {
        var total = el("p", "field-label", fmt(S.gap_total, { area: num(data.gap_area_m2) }));
        total.setAttribute("data-testid", "gap-total");
        view.appendChild(total);
      }
      if (!features.length) {
        var none = el("p", "muted", S.no_gaps);
        none.setAttribute("data-testid", "no-gaps");
        view.appendChild(none);
        return;
      }
      var ul = el("ul", "plain-list");
      ul.setAttribute("data-testid", "gap-list");
      features.forEach(function (f, i) {
        var area = f.properties.area_m2;
        var layer = L.geoJSON(f.geometry, {
          coordsToLatLng: coordsToLatLng,
          style: { color: "#d92d20", weight: 2, className: "gap-shape", fillOpacity: 1 },
          pmIgnore: true,
          interactive: false,
        }).addTo(gapLayer);
        L.tooltip({ permanent: true, direction: "center", className: "grid-label gap-label", interactive: false, pane: "territoryLabels" })
          .setLatLng(layer.getBounds().getCenter())
          .setContent(el("span", null, num(area) + " " + S.m2))
          .addTo(gapLayer);
        var row = el("li");
        var text = fmt(S.gap_row, { n: i + 1, area: num(area) });
        row.appendChild(el("span", "grow", text));
        row.appendChild(button(S.show_spot, "btn-small", function () {
          map.fitBounds(layer.getBounds(), { padding: [40, 40], maxZoom: 17 });
        }));
        ul.appendChild(row);
      });
      view.appendChild(ul);
      addHatchPattern();
    };
    if (state.gaps) {
      draw(state.gaps);
      return;
    }
    var loading = el("p", "muted", S.loading);
    view.appendChild(loading);
    api("GET", idUrl(U.gaps, config.sub_branch.id)).then(function (res) {
      loading.remove();
      if (!res.ok) {
        view.appendChild(el("p", "muted", errorText(res)));
        return;
      }
      state.gaps = res.data;
      if (state.tab === "gaps") draw(state.gaps);
    });
  }

  // -- Import ---------------------------------------------------------------------------------------

  var importState = { step: 1, file: null, inspect: null, mapping: {}, report: null };

  function steps(current) {
    var ol = el("ol", "steps");
    [S.import_file, S.import_mapping, S.import_preview].forEach(function (label, i) {
      var li = el("li", i + 1 === current ? "is-current" : i + 1 < current ? "is-done" : "", (i + 1) + ". " + label.split(/[（(]/)[0]);
      ol.appendChild(li);
    });
    return ol;
  }

  function importForm(extra) {
    var fd = new FormData();
    fd.append("file", importState.file);
    fd.append("sub_branch", String(config.sub_branch.id));
    if (extra && extra.mapping) fd.append("mapping", JSON.stringify(extra.mapping));
    if (extra && extra.accept_overlaps) fd.append("accept_overlaps", "true");
    return fd;
  }

  function renderImport(problem) {
    var view = views.import;
    view.textContent = "";
    view.appendChild(el("h2", "panel-title", S.import));
    if (!U.import_inspect) {
      view.appendChild(el("p", "muted", S.not_available));
      showView("import");
      return;
    }
    var st = importState;
    view.appendChild(steps(st.step));
    if (problem) {
      var pr = el("div", "problem", problem);
      pr.setAttribute("data-testid", "import-error");
      view.appendChild(pr);
    }
    var form = el("form", "tform");
    form.noValidate = true;
    if (st.step === 1) {
      var file = el("input");
      file.type = "file";
      file.accept = ".geojson,.json,.kml,.zip,application/geo+json,application/vnd.google-earth.kml+xml,application/zip";
      file.setAttribute("data-testid", "import-file");
      field(form, "file", S.import_file, file, []);
      var actions = el("div", "panel-actions");
      var go = button(S.import_inspect, "btn-primary", null, "import-inspect");
      go.type = "submit";
      actions.appendChild(go);
      actions.appendChild(button(S.cancel, "", closeImport));
      form.appendChild(actions);
      form.addEventListener("submit", function (ev) {
        ev.preventDefault();
        if (!file.files.length) {
          renderImport(S.required);
          return;
        }
        st.file = file.files[0];
        go.disabled = true;
        api("POST", U.import_inspect, importForm()).then(function (res) {
          go.disabled = false;
          if (!res.ok) {
            renderImport(importErrorText(res));
            return;
          }
          st.inspect = res.data || {};
          st.mapping = Object.assign({}, st.inspect.suggested_mapping || {});
          st.step = 2;
          renderImport();
        });
      });
    } else if (st.step === 2) {
      var info = st.inspect;
      var fields = (info.fields || []).map(function (f) { return typeof f === "string" ? f : f.name; });
      var count = info.feature_count;
      var p = el("p", "muted", fmt(S.import_features, { n: num(count), fields: fields.join(", ") }));
      p.setAttribute("data-testid", "import-summary");
      view.appendChild(p);
      (info.warnings || []).forEach(function (w) {
        view.appendChild(el("p", "problem problem-warn", w));
      });
      var targets = [
        { key: "name", label: S.name },
        { key: "code", label: S.code },
        { key: "kind", label: S.type },
      ];
      var selects = {};
      targets.forEach(function (t) {
        var key = t.key || t;
        var opts = [{ value: "", label: S.import_field_none }].concat(fields.map(function (f) { return { value: f, label: f }; }));
        selects[key] = field(form, "map_" + key, t.label || key, select(opts, st.mapping[key] || ""), []);
        selects[key].setAttribute("data-testid", "import-map-" + key);
      });
      var actions2 = el("div", "panel-actions");
      var prev = button(S.import_preview, "btn-primary", null, "import-preview");
      prev.type = "submit";
      actions2.appendChild(prev);
      actions2.appendChild(button(S.back, "", function () { st.step = 1; renderImport(); }));
      form.appendChild(actions2);
      form.addEventListener("submit", function (ev) {
        ev.preventDefault();
        st.mapping = {};
        Object.keys(selects).forEach(function (k) {
          if (selects[k].value) st.mapping[k] = selects[k].value;
        });
        prev.disabled = true;
        api("POST", U.import_preview, importForm({ mapping: st.mapping })).then(function (res) {
          prev.disabled = false;
          if (!res.ok) {
            renderImport(importErrorText(res));
            return;
          }
          st.report = res.data;
          st.step = 3;
          renderImport();
        });
      });
    } else if (st.step === 3) {
      var report = st.report || {};
      renderReport(view, report);
      var errorsCount = Number(report.error_count || 0);
      var overlapCount = Number(report.overlap_count || 0);
      var msg = el("p", errorsCount ? "problem" : "muted", errorsCount ? S.import_has_errors : S.import_ready);
      msg.setAttribute("data-testid", errorsCount ? "import-has-errors" : "import-ready");
      view.appendChild(msg);
      var accept = { value: false };
      var actions3 = el("div", "panel-actions");
      var commit = button(S.import_commit, "btn-primary", function () {
        commit.disabled = true;
        api("POST", U.import_commit, importForm({ mapping: st.mapping, accept_overlaps: accept.value })).then(function (res) {
          commit.disabled = false;
          if (res.ok) {
            var n = res.data ? res.data.created : 0;
            importState = { step: 1, file: null, inspect: null, mapping: {}, report: null };
            endTool();
            clearMarks();
            refreshAll().then(function () {
              showView("grids");
              showFlash(fmt(S.import_done, { n: num(n) }));
            });
          } else if (res.status === 400 && res.data && res.data.rows) {
            st.report = res.data;
            renderImport(res.data.detail || S.import_has_errors);
          } else {
            renderImport(importErrorText(res));
          }
        });
      }, "import-commit");
      var refresh = function () {
        commit.disabled = errorsCount > 0 || (overlapCount > 0 && !accept.value);
      };
      if (overlapCount && !errorsCount) {
        var row = el("label", "check-row");
        var cb = el("input");
        cb.type = "checkbox";
        cb.setAttribute("data-testid", "import-accept-overlaps");
        cb.addEventListener("change", function () {
          accept.value = cb.checked;
          refresh();
        });
        row.appendChild(cb);
        row.appendChild(el("span", null, S.import_accept_overlaps));
        view.appendChild(row);
      }
      refresh();
      actions3.appendChild(commit);
      actions3.appendChild(button(S.back, "", function () { st.step = 2; clearMarks(); renderImport(); }));
      view.appendChild(actions3);
    }
    view.appendChild(form);
    showView("import");
  }

  function importErrorText(res) {
    if (res.status === 400 && res.data) {
      var msgs = flattenErrors(res.data).map(function (e) { return e[1]; });
      if (msgs.length) return msgs.join(" ");
    }
    return errorText(res);
  }

  function renderReport(view, report) {
    var rows = report.rows || [];
    (report.warnings || []).forEach(function (w) {
      view.appendChild(el("p", "problem problem-warn", w));
    });
    var wrap = el("div", "ttable-wrap");
    var table = el("table", "ttable");
    table.setAttribute("data-testid", "import-report");
    var thead = el("thead");
    var tr = el("tr");
    [S.import_row, S.name, S.code, S.import_result].forEach(function (h, i) { tr.appendChild(el("th", i ? null : "num", h)); });
    thead.appendChild(tr);
    table.appendChild(thead);
    var tbody = el("tbody");
    var spots = [];
    rows.forEach(function (r) {
      var errs = r.errors || [];
      var row = el("tr", errs.length ? "row-error" : null);
      row.setAttribute("data-testid", "import-row-" + r.row);
      row.setAttribute("data-status", r.status || "");
      row.appendChild(el("td", "num", r.row));
      row.appendChild(el("td", "nowrap", r.name || ""));
      row.appendChild(el("td", "nowrap", r.code || ""));
      var res = el("td");
      errs.forEach(function (e) {
        res.appendChild(el("span", "row-message", typeof e === "string" ? e : e.message));
        if (e && Array.isArray(e.spot) && e.spot.length === 2) spots.push(e.spot);
      });
      (r.overlaps || []).forEach(function (o) {
        res.appendChild(el("span", "cell-sub", fmt(S.import_row_overlap, { grid: o.name + (o.code ? " (" + o.code + ")" : ""), area: num(o.area_m2) })));
      });
      (r.file_overlaps || []).forEach(function (o) {
        res.appendChild(el("span", "cell-sub", fmt(S.import_file_overlap, { row: o.row, area: num(o.area_m2) })));
      });
      if (!errs.length && !(r.overlaps || []).length && !(r.file_overlaps || []).length) res.appendChild(el("span", "gain", S.import_ok));
      row.appendChild(res);
      tbody.appendChild(row);
    });
    table.appendChild(tbody);
    wrap.appendChild(table);
    view.appendChild(wrap);
    // The rows on the map (dashed, red when in error), and the spots where a geometry breaks.
    draftLayer.clearLayers();
    spotLayer.clearLayers();
    var features = (report.geojson && report.geojson.features) || [];
    if (features.length) {
      var colours = { error: "#d92d20", overlap: "#e8590c", ok: "#7048e8" };
      var shapes = L.geoJSON(report.geojson, {
        coordsToLatLng: coordsToLatLng,
        style: function (f) {
          return { color: colours[f.properties.status] || "#7048e8", weight: 2, dashArray: "6 4", fillOpacity: 0.08 };
        },
        pointToLayer: function (f, ll) {
          return spotMarker(ll);
        },
        pmIgnore: true,
        interactive: false,
      }).addTo(draftLayer);
      if (shapes.getBounds().isValid()) map.fitBounds(shapes.getBounds(), { padding: [40, 40], maxZoom: 17 });
      spots = [];
    }
    markSpots(spots);
  }

  function closeImport() {
    importState = { step: 1, file: null, inspect: null, mapping: {}, report: null };
    clearMarks();
    draftLayer.clearLayers();
    endTool();
    showView(state.selected ? "detail" : "grids");
  }

  // -- Export ---------------------------------------------------------------------------------------

  function renderExport() {
    var view = views.export;
    view.textContent = "";
    view.appendChild(el("h2", "panel-title", S.export));
    var ex = U.exports || {};
    var ul = el("ul", "plain-list");
    [
      ["geojson", S.export_geojson],
      ["excel", S.export_excel],
      ["places", S.export_places],
      ["places_excel", S.export_places_excel],
    ].forEach(function (pair) {
      if (!ex[pair[0]]) return;
      var li = el("li");
      var a = el("a", "btn btn-block", pair[1]);
      a.href = ex[pair[0]] + (ex[pair[0]].indexOf("?") === -1 ? "?" : "&") + "sub_branch=" + Number(config.sub_branch.id);
      a.setAttribute("data-format", pair[0]);
      a.setAttribute("download", "");
      a.setAttribute("data-testid", "export-" + pair[0]);
      li.appendChild(a);
      ul.appendChild(li);
    });
    if (!ul.children.length) view.appendChild(el("p", "muted", S.not_available));
    else view.appendChild(ul);
    var actions = el("div", "panel-actions");
    actions.appendChild(button(S.close, "", function () {
      endTool();
      showView(state.selected ? "detail" : "grids");
    }));
    view.appendChild(actions);
    showView("export");
  }

  // -- Wiring ---------------------------------------------------------------------------------------

  function wire() {
    Array.prototype.forEach.call(document.querySelectorAll(".tool"), function (b) {
      b.addEventListener("click", function () {
        startTool(b.getAttribute("data-tool"));
      });
    });
    Array.prototype.forEach.call(document.querySelectorAll(".panel-tab"), function (t) {
      t.addEventListener("click", function () {
        setTab(t.getAttribute("data-tab"));
      });
    });
    var handle = document.querySelector("[data-testid=sheet-handle]");
    handle.addEventListener("click", function () {
      var folded = panel.classList.toggle("is-folded");
      handle.setAttribute("aria-expanded", folded ? "false" : "true");
      window.setTimeout(function () {
        if (map) map.invalidateSize();
      }, 50);
    });
    bindGridRows();
  }

  window.gridcrmTerritoryInit = function (leafletMap) {
    map = leafletMap;
    mapNode = map.getContainer();
    mapNode.setAttribute("data-state", "loading");
    var labels = map.createPane("territoryLabels");
    labels.style.zIndex = 620;
    labels.style.pointerEvents = "none";
    if (config.tiles.url) {
      L.tileLayer(config.tiles.url, { attribution: config.tiles.attribution, maxZoom: map.getMaxZoom(), minZoom: map.getMinZoom() }).addTo(map);
    }
    // Merchants above the grids' fill (a coverage choropleth would wash them out), below labels.
    var merchantPane = map.createPane("territoryMerchants");
    merchantPane.style.zIndex = 450;
    merchantPane.style.pointerEvents = "none";
    merchantRenderer = L.canvas({ padding: 0.3, pane: "territoryMerchants" });
    labelLayer = L.layerGroup().addTo(map);
    buildGridLayer();
    gridLayer.addTo(map);
    gapLayer = L.layerGroup().addTo(map);
    merchantLayer = L.layerGroup().addTo(map);
    versionLayer = L.layerGroup().addTo(map);
    proposalLayer = L.layerGroup().addTo(map);
    draftLayer = L.layerGroup().addTo(map);
    movingLayer = L.layerGroup().addTo(map);
    spotLayer = L.layerGroup().addTo(map);

    // Leaflet-Geoman: Chinese texts when the page is Chinese; only the polygon tool in its bar
    // (the page's toolbar starts the rest); its Finish / Undo / Cancel actions show while drawing.
    if (config.lang && config.lang.indexOf("zh") === 0) map.pm.setLang("zh");
    map.pm.setGlobalOptions(Object.assign({ allowSelfIntersection: true }, SNAP));
    map.pm.addControls({
      position: "topleft",
      drawMarker: false,
      drawCircleMarker: false,
      drawPolyline: false,
      drawRectangle: false,
      drawPolygon: true,
      drawCircle: false,
      drawText: false,
      editMode: false,
      dragMode: false,
      cutPolygon: false,
      removalMode: false,
      rotateMode: false,
    });
    map.on("pm:drawstart", function (e) {
      if (e.shape === "Polygon" && state.tool !== "draw") {
        // Geoman's own polygon button: the same as "New grid".
        if (state.proposal) {
          map.pm.disableDraw();
          return;
        }
        state.tool = "draw";
        setPressed();
        setHint(S.draw_hint, [cancelButton()]);
      }
    });
    map.on("pm:create", onCreate);

    if (config.bounds) {
      map.fitBounds(displayBounds(config.bounds), { padding: [32, 32], maxZoom: 16, animate: false });
    }
    map.on("moveend", scheduleMerchants);
    wire();
    loadGrids().then(function () {
      addHatchPattern();
    });
    loadMerchants();

    window.gridcrmTerritory = {
      map: map,
      toDisplay: toDisplay,
      toData: toData,
      state: state,
      layers: function () {
        return { grids: gridLayer, moving: movingLayer, proposal: proposalLayer, gaps: gapLayer, draft: draftLayer };
      },
      gridShape: function (id) {
        return gridShapes[id];
      },
      reload: refreshAll,
    };
  };
})();
