/*
 * gridcrm merchant 360 page (templates/crm/merchant_detail.html).
 *
 * Three things, all from #merchant-config (URLs, the relation graph, translated strings):
 *   - the relation graph: an inline SVG drawn from JSON (this merchant in the middle, the people who
 *     connect in an inner ring, related merchants outside; merchants you cannot see are one grey
 *     "+n" node, nothing more);
 *   - "Show" on a person: fetches the unmasked phone / ID number from the PII endpoint (which checks
 *     the permission and logs the view) and puts the masked text back on a second tap;
 *   - "Load older" on the timeline: fetches the next page from the API and appends it;
 *   - the "Log activity" panel: a visit (with a check-in from navigator.geolocation) or a call, sent
 *     to the activities API in one request (follow-up task and lead move included), then its photo to
 *     the photos API; the outcome is shown (accepted, or flagged with the distance and the reason),
 *     errors next to their fields, and the timeline and funnel position are refreshed in place.
 * Text from the server only ever becomes text nodes, never HTML.
 */
(function () {
  "use strict";

  var node = document.getElementById("merchant-config");
  if (!node) return;
  var config = JSON.parse(node.textContent);
  var S = config.strings;
  var SVG = "http://www.w3.org/2000/svg";

  function el(tag, className, text) {
    var e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function svg(tag, attrs) {
    var e = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (k) {
      e.setAttribute(k, attrs[k]);
    });
    return e;
  }

  function fmt(template, values) {
    return template.replace(/%\((\w+)\)s/g, function (_m, key) {
      return values[key] === undefined ? "" : values[key];
    });
  }

  function getJSON(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } }).then(function (r) {
      if (!r.ok) {
        var error = new Error("HTTP " + r.status);
        error.status = r.status;
        throw error;
      }
      return r.json();
    });
  }

  // -- Relation graph ---------------------------------------------------------------------------

  function shorten(text, n) {
    text = String(text || "");
    return text.length > n ? text.slice(0, n - 1) + "…" : text;
  }

  function drawGraph(box, graph) {
    var width = Math.max(box.clientWidth, 280);
    var height = Math.max(320, Math.min(460, Math.round(width * 0.75)));
    var cx = width / 2;
    var cy = height / 2;
    // An elliptical ring (tablets are wider than the graph is tall), with room around it for the
    // names written under the nodes.
    var rx = Math.max(cx - 90, 60);
    var ry = Math.max(cy - 52, 60);
    function at(a, scale) {
      return { x: cx + rx * scale * Math.cos(a), y: cy + ry * scale * Math.sin(a), a: a, scale: scale };
    }
    var pos = {};
    var self = graph.nodes.filter(function (n) {
      return n.type === "self";
    })[0];
    var merchants = graph.nodes.filter(function (n) {
      return n.type === "merchant" || n.type === "hidden";
    });
    var people = graph.nodes.filter(function (n) {
      return n.type === "person";
    });
    pos[self.id] = { x: cx, y: cy };
    var step = (2 * Math.PI) / Math.max(merchants.length, 1);
    merchants.forEach(function (n, i) {
      // Half a step off the vertical: nodes go to the wide sides of the ellipse first.
      pos[n.id] = at(-Math.PI / 2 + step / 2 + step * i, 1);
    });
    // People: those linked to this merchant sit on an inner ring, in the mean direction of the
    // merchants they lead to (directly or through a relative); a relative sits further out, towards
    // the merchant it holds a role at.
    function neighbours(id) {
      var out = [];
      graph.edges.forEach(function (e) {
        if (e.from === id) out.push(e.to);
        else if (e.to === id) out.push(e.from);
      });
      return out;
    }
    function meanAngle(ids, fallback) {
      var xs = 0;
      var ys = 0;
      ids.forEach(function (id) {
        if (pos[id] && pos[id].a !== undefined) {
          xs += Math.cos(pos[id].a);
          ys += Math.sin(pos[id].a);
        }
      });
      return xs || ys ? Math.atan2(ys, xs) : fallback;
    }
    var direct = {};
    graph.edges.forEach(function (e) {
      if (e.from === self.id) direct[e.to] = true;
    });
    people.forEach(function (n, i) {
      var reach = neighbours(n.id);
      if (direct[n.id]) {
        // Through a relative too: their merchants pull the same way.
        reach.slice().forEach(function (id) {
          if (id.charAt(0) === "p") reach = reach.concat(neighbours(id));
        });
      }
      var a = meanAngle(reach, (2 * Math.PI * i) / Math.max(people.length, 1));
      pos[n.id] = at(a, direct[n.id] ? 0.45 : 0.68);
    });
    // People on the same spot are pulled apart along their ring.
    people.forEach(function (n, i) {
      people.slice(0, i).forEach(function (m) {
        var dx = pos[n.id].x - pos[m.id].x;
        var dy = pos[n.id].y - pos[m.id].y;
        if (dx * dx + dy * dy < 56 * 56) pos[n.id] = at(pos[n.id].a + 0.45, pos[n.id].scale);
      });
    });

    var root = svg("svg", {
      viewBox: "0 0 " + width + " " + height,
      width: "100%",
      height: height,
      class: "graph-svg",
      focusable: "false",
    });
    var edges = svg("g", { class: "graph-edges" });
    var labels = svg("g", { class: "graph-edge-labels" });
    graph.edges.forEach(function (e) {
      var a = pos[e.from];
      var b = pos[e.to];
      if (!a || !b) return;
      edges.appendChild(
        svg("line", {
          x1: a.x,
          y1: a.y,
          x2: b.x,
          y2: b.y,
          class: "graph-edge" + (e.kind ? " graph-edge-" + e.kind : ""),
        })
      );
      // A label only where the line is long enough to carry it clear of the nodes; the list
      // next to the graph says the same in full.
      var length = Math.sqrt((a.x - b.x) * (a.x - b.x) + (a.y - b.y) * (a.y - b.y));
      if (length < 130) return;
      var label = svg("text", { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 + 4, class: "graph-edge-label" });
      label.textContent = shorten(e.label, 7);
      labels.appendChild(label);
    });
    root.appendChild(edges);

    graph.nodes.forEach(function (n) {
      var p = pos[n.id];
      if (!p) return;
      var group = svg("g", { class: "graph-node graph-" + n.type, transform: "translate(" + p.x + "," + p.y + ")" });
      var radius = n.type === "self" ? 26 : n.type === "person" ? 18 : 22;
      group.appendChild(svg("circle", { r: radius }));
      var below = n.type === "person" ? radius + 14 : radius + 16;
      if (n.type === "hidden") {
        var count = svg("text", { y: 5, class: "graph-count" });
        count.textContent = n.label;
        group.appendChild(count);
        var note = svg("text", { y: below });
        note.textContent = S.hidden_merchants;
        group.appendChild(note);
      } else {
        var text = svg("text", { y: below });
        text.textContent = shorten(n.label, n.type === "self" ? 12 : 9);
        group.appendChild(text);
        var title = svg("title");
        title.textContent = n.label;
        group.appendChild(title);
      }
      if (n.url) {
        var link = svg("a", { href: n.url, class: "graph-link" });
        link.appendChild(group);
        root.appendChild(link);
      } else {
        root.appendChild(group);
      }
    });
    root.appendChild(labels);
    box.textContent = "";
    box.appendChild(root);
  }

  var graphBox = document.getElementById("relation-graph");
  if (graphBox && config.graph && config.graph.nodes.length > 1) {
    drawGraph(graphBox, config.graph);
    var lastWidth = graphBox.clientWidth;
    window.addEventListener("resize", function () {
      if (Math.abs(graphBox.clientWidth - lastWidth) > 40) {
        lastWidth = graphBox.clientWidth;
        drawGraph(graphBox, config.graph);
      }
    });
  } else if (graphBox) {
    graphBox.hidden = true;
  }

  // -- Personal data: explicit, logged unmasking -------------------------------------------------

  document.querySelectorAll(".pii-toggle").forEach(function (button) {
    button.addEventListener("click", function () {
      var row = button.closest(".person");
      var spans = row.querySelectorAll(".pii");
      if (button.getAttribute("aria-pressed") === "true") {
        spans.forEach(function (span) {
          span.textContent = span.getAttribute("data-masked");
          span.classList.remove("is-revealed");
        });
        button.setAttribute("aria-pressed", "false");
        button.textContent = S.show;
        return;
      }
      var id = Number(button.getAttribute("data-person-id"));
      var url = config.urls.pii.replace("/0/", "/" + id + "/") + "?merchant=" + Number(config.merchant_id);
      button.disabled = true;
      getJSON(url)
        .then(function (data) {
          spans.forEach(function (span) {
            var value = data[span.getAttribute("data-field")];
            if (value) {
              span.textContent = value;
              span.classList.add("is-revealed");
            }
          });
          button.setAttribute("aria-pressed", "true");
          button.textContent = S.hide;
        })
        .catch(function (error) {
          window.alert(error.status === 403 ? S.no_permission : S.error);
        })
        .then(function () {
          button.disabled = false;
        });
    });
  });

  // -- Timeline: older pages from the API ----------------------------------------------------------

  function chip(className, text) {
    return el("span", "chip " + className, text);
  }

  function timelineItem(item) {
    var a = item.activity || {};
    var li = el("li", "tl-item tl-" + item.type + (a.checkin && a.checkin.flagged ? " tl-flagged" : ""));
    li.setAttribute("data-type", item.type);
    li.setAttribute("data-id", item.id);
    var dot = el("span", "tl-dot");
    dot.setAttribute("aria-hidden", "true");
    li.appendChild(dot);
    var body = el("div", "tl-body");
    var head = el("div", "tl-head");
    head.appendChild(el("strong", "tl-title", item.title));
    var time = el("time", "tl-time", String(item.at).slice(0, 16).replace("T", " "));
    time.setAttribute("datetime", item.at);
    head.appendChild(time);
    body.appendChild(head);

    var meta = el("div", "tl-meta");
    if (item.by) meta.appendChild(el("span", null, fmt(S.by, { name: item.by.display })));
    if (a.checkin) {
      var c = a.checkin;
      var text = c.flag_display || "";
      if (c.distance_m !== null && c.distance_m !== undefined) text += " · " + fmt(S.distance, { m: c.distance_m });
      if (c.accuracy_m !== null && c.accuracy_m !== undefined) text += " · " + fmt(S.accuracy, { m: c.accuracy_m });
      var chk = chip(c.flagged ? "chip-warn" : "chip-ok", text);
      chk.setAttribute("data-testid", "checkin");
      chk.setAttribute("data-flag", c.flag || "");
      meta.appendChild(chk);
    }
    if (a.duration_min !== null && a.duration_min !== undefined) meta.appendChild(chip("", fmt(S.duration, { min: a.duration_min })));
    if (a.intent) meta.appendChild(chip("chip-intent-" + a.intent, a.intent_display));
    if (meta.childNodes.length) body.appendChild(meta);

    if (a.notes) body.appendChild(el("p", "tl-notes", a.notes));
    if (a.next_step) {
      var next = el("p", "tl-next");
      next.appendChild(el("span", "muted", S.next_step + ":"));
      next.appendChild(document.createTextNode(" " + a.next_step));
      body.appendChild(next);
    }
    var changes = (item.merchant_event && item.merchant_event.changes) || [];
    if (changes.length > 1) {
      var ul = el("ul", "tl-changes");
      changes.forEach(function (ch) {
        if (ch.field === "location") return;
        var li2 = el("li");
        li2.appendChild(el("span", "muted", ch.label + ":"));
        li2.appendChild(document.createTextNode(" " + (ch.from || "—") + " → " + (ch.to || "—")));
        ul.appendChild(li2);
      });
      body.appendChild(ul);
    }
    if (a.photos && a.photos.length) {
      var photos = el("ul", "tl-photos");
      a.photos.forEach(function (p) {
        var li3 = el("li");
        if (p.url) {
          var link = el("a", "photo-thumb");
          link.href = p.url;
          link.target = "_blank";
          link.rel = "noopener";
          var img = el("img");
          img.src = p.url;
          img.alt = p.kind_display;
          img.loading = "lazy";
          img.width = 96;
          img.height = 72;
          link.appendChild(img);
          link.appendChild(el("span", null, p.kind_display));
          li3.appendChild(link);
        } else {
          li3.appendChild(el("span", "photo-thumb", p.kind_display));
        }
        photos.appendChild(li3);
      });
      body.appendChild(photos);
    }
    li.appendChild(body);
    return li;
  }

  var more = document.getElementById("timeline-more");
  var list = document.getElementById("timeline");
  var cursor = config.next_before;

  function timelineEnd(show) {
    var end = list.parentNode.querySelector(".tl-end");
    if (show && !end) more.insertAdjacentElement("afterend", el("p", "muted tl-end", S.end));
    if (!show && end) end.remove();
  }

  if (more && list) {
    more.addEventListener("click", function (event) {
      event.preventDefault();
      if (!cursor || more.getAttribute("aria-busy") === "true") return;
      more.setAttribute("aria-busy", "true");
      more.textContent = S.loading;
      var url = config.urls.timeline + "?limit=" + Number(config.timeline_page) + "&before=" + encodeURIComponent(cursor);
      getJSON(url)
        .then(function (page) {
          page.results.forEach(function (item) {
            list.appendChild(timelineItem(item));
          });
          cursor = page.next_before;
          more.textContent = S.load_more;
          if (!cursor) {
            more.hidden = true;
            timelineEnd(true);
          }
        })
        .catch(function () {
          more.textContent = S.error;
        })
        .then(function () {
          more.removeAttribute("aria-busy");
        });
    });
  }

  /* The first page again (after an activity was logged); items not shown before are marked new. */
  function refreshTimeline() {
    if (!list) return Promise.resolve();
    var shown = {};
    list.querySelectorAll(".tl-item").forEach(function (li) {
      shown[li.getAttribute("data-type") + ":" + li.getAttribute("data-id")] = true;
    });
    return getJSON(config.urls.timeline + "?limit=" + Number(config.timeline_page)).then(function (page) {
      list.textContent = "";
      page.results.forEach(function (item) {
        var li = timelineItem(item);
        if (!shown[item.type + ":" + item.id]) li.classList.add("tl-new");
        list.appendChild(li);
      });
      list.hidden = page.results.length === 0;
      var empty = document.getElementById("timeline-empty");
      if (empty && page.results.length) empty.remove();
      cursor = page.next_before;
      if (more) {
        more.hidden = !cursor;
        more.textContent = S.load_more;
        if (cursor) more.href = "?before=" + encodeURIComponent(cursor) + "#tl-title";
        timelineEnd(false);
      }
    });
  }

  // -- Funnel position: redrawn from the leads API -------------------------------------------------

  var funnel = (config.funnel || []).filter(function (s) {
    return s.value !== "lost";
  });

  function stageRank(stage) {
    for (var i = 0; i < funnel.length; i++) if (funnel[i].value === stage) return i;
    return -1;
  }

  function stageLabel(stage) {
    var all = config.funnel || [];
    for (var i = 0; i < all.length; i++) if (all[i].value === stage) return all[i].label;
    return stage;
  }

  function updateLead(lead) {
    var rank = stageRank(lead.stage);
    var box = document.querySelector('.lead[data-lead-id="' + Number(lead.id) + '"]');
    if (box) {
      var badge = box.querySelector(".lead-head .badge");
      if (badge) badge.textContent = stageLabel(lead.stage);
      box.querySelectorAll(".stagebar li").forEach(function (li, i) {
        li.classList.toggle("done", rank >= 0 && i < rank);
        li.classList.toggle("current", i === rank);
        if (i === rank) li.setAttribute("aria-current", "step");
        else li.removeAttribute("aria-current");
      });
      var tier = box.querySelector(".lead-head .chip");
      if (lead.intent) {
        if (!tier) {
          tier = el("span", "chip");
          badge.insertAdjacentElement("afterend", tier);
        }
        tier.className = "chip chip-intent-" + lead.intent;
        tier.textContent = (config.intents || {})[lead.intent] || lead.intent;
      } else if (tier) {
        tier.remove();
      }
    }
    var option = document.querySelector('#log-lead option[value="' + Number(lead.id) + '"]');
    if (option) {
      option.setAttribute("data-rank", rank);
      option.textContent = option.getAttribute("data-product") + " · " + stageLabel(lead.stage);
    }
  }

  function refreshLeads() {
    if (!document.querySelector(".lead[data-lead-id], #log-lead")) return Promise.resolve();
    var url = config.urls.leads + "?merchant=" + Number(config.merchant_id) + "&page_size=100";
    return getJSON(url).then(function (page) {
      (page.results || []).forEach(updateLead);
    });
  }

  // -- Log activity: a visit (with check-in) or a call, then its photo -------------------------------

  var form = document.getElementById("log-form");
  if (form) initLogPanel(form);

  function initLogPanel(form) {
    var csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;
    var alertBox = document.getElementById("log-alert");
    var result = document.getElementById("log-result");
    var save = document.getElementById("log-save");
    var checkinButton = document.getElementById("log-checkin");
    var checkinLabel = checkinButton.querySelector(".label");
    var checkinText = checkinLabel.textContent;
    var position = document.getElementById("log-position");
    var geoError = document.getElementById("log-geo-error");
    var photo = document.getElementById("log-photo");
    var photoKind = document.getElementById("log-photo-kind");
    var preview = document.getElementById("log-photo-preview");
    var retry = document.getElementById("log-photo-retry");
    var leadSelect = document.getElementById("log-lead");
    var stageSelect = document.getElementById("log-advance-to");
    var checkin = null; // {lon, lat, accuracy}
    var clientUuid = null; // one per activity: a second tap or a retry after a lost answer saves once
    var photoFor = null; // the activity a failed photo belongs to
    var previewUrl = null;
    var numbers;
    try {
      numbers = new Intl.NumberFormat(document.documentElement.lang || undefined, { maximumFractionDigits: 0 });
    } catch (e) {
      numbers = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
    }

    function number(value) {
      return value === null || value === undefined ? "—" : numbers.format(Math.round(Number(value)));
    }

    function uuid4() {
      var b = new Uint8Array(16);
      window.crypto.getRandomValues(b); // crypto.randomUUID needs HTTPS; this does not
      b[6] = (b[6] & 0x0f) | 0x40;
      b[8] = (b[8] & 0x3f) | 0x80;
      var h = Array.prototype.map
        .call(b, function (x) {
          return (x + 0x100).toString(16).slice(1);
        })
        .join("");
      return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
    }

    function kind() {
      return form.querySelector("input[name=kind]:checked").value;
    }

    function showForKind() {
      var k = kind();
      form.querySelectorAll("[data-for-kind]").forEach(function (node) {
        node.hidden = node.getAttribute("data-for-kind") !== k;
      });
    }

    function showStages() {
      if (!leadSelect || !stageSelect) return;
      var option = leadSelect.selectedOptions[0];
      var rank = option && option.value ? Number(option.getAttribute("data-rank")) : null;
      stageSelect.disabled = rank === null;
      Array.prototype.forEach.call(stageSelect.options, function (o) {
        if (!o.value) return;
        o.disabled = rank === null || Number(o.getAttribute("data-rank")) <= rank;
        if (o.disabled && o.selected) stageSelect.value = "";
      });
    }

    // The outcome of the last save stays until the next activity is begun (a failed photo keeps it).
    function hideStaleResult(event) {
      if (result.hidden || photoFor) return;
      result.hidden = true;
    }
    form.addEventListener("input", hideStaleResult);
    form.addEventListener("change", hideStaleResult);
    checkinButton.addEventListener("click", hideStaleResult);

    form.querySelectorAll("input[name=kind]").forEach(function (radio) {
      radio.addEventListener("change", showForKind);
    });
    if (leadSelect) leadSelect.addEventListener("change", showStages);
    showForKind();
    showStages();

    // Check-in: the device's position, read when the manager taps (not on page load).
    function setCheckin(value) {
      checkin = value;
      geoError.hidden = true;
      if (value) {
        position.textContent = fmt(S.position, {
          lat: value.lat.toFixed(5),
          lon: value.lon.toFixed(5),
          acc: number(value.accuracy),
        });
        position.classList.add("is-set");
        checkinLabel.textContent = S.checkin_again;
      } else {
        position.textContent = S.no_checkin_note;
        position.classList.remove("is-set");
        checkinLabel.textContent = checkinText;
      }
    }

    function geoFailed(message) {
      setCheckin(null);
      geoError.textContent = message;
      geoError.hidden = false;
    }

    checkinButton.addEventListener("click", function () {
      if (checkinButton.getAttribute("aria-busy") === "true") return;
      if (!navigator.geolocation || window.isSecureContext === false) {
        geoFailed(S.geo_unsupported);
        return;
      }
      checkinButton.setAttribute("aria-busy", "true");
      geoError.hidden = true;
      position.classList.remove("is-set");
      position.textContent = S.locating;
      navigator.geolocation.getCurrentPosition(
        function (p) {
          checkinButton.removeAttribute("aria-busy");
          setCheckin({ lon: p.coords.longitude, lat: p.coords.latitude, accuracy: p.coords.accuracy });
        },
        function (error) {
          checkinButton.removeAttribute("aria-busy");
          geoFailed(error.code === 1 ? S.geo_denied : error.code === 3 ? S.geo_timeout : S.geo_unavailable);
        },
        { enableHighAccuracy: true, timeout: 20000, maximumAge: 0 }
      );
    });

    // Photo: checked here first, so a photo the server would refuse does not follow a saved visit.
    function photoProblem(file) {
      if ((config.photo_types || []).indexOf(file.type) < 0) return S.photo_type;
      if (file.size > config.photo_max_bytes) return fmt(S.photo_size, { mb: Math.floor(config.photo_max_bytes / 1048576) });
      return null;
    }

    function clearPhoto() {
      photo.value = "";
      preview.hidden = true;
      if (previewUrl) URL.revokeObjectURL(previewUrl);
      previewUrl = null;
    }

    photo.addEventListener("change", function () {
      fieldError("file", null);
      var file = photo.files[0];
      if (!file) {
        clearPhoto();
        return;
      }
      var problem = photoProblem(file);
      if (problem) {
        clearPhoto();
        fieldError("file", [problem]);
        return;
      }
      if (previewUrl) URL.revokeObjectURL(previewUrl);
      previewUrl = URL.createObjectURL(file);
      preview.querySelector("img").src = previewUrl;
      preview.querySelector(".log-photo-name").textContent = file.name;
      preview.hidden = false;
    });
    document.getElementById("log-photo-clear").addEventListener("click", function () {
      clearPhoto();
      fieldError("file", null);
    });

    // Errors: next to the field the API names; anything else in the alert at the top.
    function fieldBox(name) {
      var box = form.querySelector('.log-field[data-field="' + name + '"]');
      return box && !box.hidden ? box : null;
    }

    function fieldError(name, messages) {
      var box = form.querySelector('.log-field[data-field="' + name + '"]');
      if (!box) return;
      var p = box.querySelector(":scope > .field-error:not(#log-geo-error)");
      box.classList.toggle("field-invalid", !!messages);
      p.textContent = messages ? messages.join(" ") : "";
      p.hidden = !messages;
    }

    function clearErrors() {
      alertBox.hidden = true;
      alertBox.textContent = "";
      form.querySelectorAll(".log-field[data-field]").forEach(function (box) {
        fieldError(box.getAttribute("data-field"), null);
      });
    }

    function showAlert(lines) {
      alertBox.textContent = "";
      lines.forEach(function (line) {
        alertBox.appendChild(el("p", null, line));
      });
      alertBox.hidden = false;
      alertBox.scrollIntoView({ block: "nearest" });
    }

    // API field -> the form's field (the service names some by its own words).
    var ACTIVITY_FIELDS = {
      checkin_accuracy_m: "checkin",
      advance_lead: "advance_lead_id",
      merchant: null,
      merchant_id: null,
      occurred_at: null,
      client_uuid: null,
    };

    function flatten(value) {
      if (Array.isArray(value)) return value.map(flatten).join(" ");
      if (value && typeof value === "object") return Object.keys(value).map(function (k) { return flatten(value[k]); }).join(" ");
      return String(value);
    }

    function showErrors(data, forPhoto) {
      var general = [];
      var first = null;
      Object.keys(data).forEach(function (key) {
        var messages = [].concat(data[key]).map(flatten);
        var name = forPhoto ? (key === "file" || key === "kind" ? "file" : null) : key in ACTIVITY_FIELDS ? ACTIVITY_FIELDS[key] : key;
        var box = name && fieldBox(name);
        if (box) {
          fieldError(name, messages);
          first = first || box;
        } else {
          general = general.concat(messages);
        }
      });
      if (!forPhoto) showAlert([S.fix_fields].concat(general));
      else if (general.length) showAlert(general);
      if (first) first.scrollIntoView({ block: "center" });
    }

    function send(url, body, contentType) {
      var headers = { Accept: "application/json", "X-CSRFToken": csrf };
      if (contentType) headers["Content-Type"] = contentType;
      return fetch(url, { method: "POST", credentials: "same-origin", headers: headers, body: body }).then(function (r) {
        return r.json().then(
          function (data) {
            return { ok: r.ok, status: r.status, data: data };
          },
          function () {
            return { ok: r.ok, status: r.status, data: null };
          }
        );
      });
    }

    function payload() {
      var body = { kind: kind(), merchant_id: config.merchant_id };
      ["notes", "next_step", "outcome"].forEach(function (name) {
        var value = form.elements[name].value.trim();
        if (value) body[name] = value;
      });
      var intent = form.querySelector("input[name=intent]:checked");
      if (intent && intent.value) body.intent = intent.value;
      var due = form.elements.next_due.value;
      // A due date: the end of that day, in the server's zone (a naive time is read as local).
      if (due) body.next_due_at = due + "T23:59:00";
      if (body.kind === "visit" && checkin) {
        body.checkin = { type: "Point", coordinates: [checkin.lon, checkin.lat] };
        body.checkin_accuracy_m = Math.round(checkin.accuracy * 10) / 10;
      }
      if (leadSelect && leadSelect.value) {
        body.advance_lead_id = Number(leadSelect.value);
        if (stageSelect.value) body.advance_to = stageSelect.value;
      }
      return body;
    }

    function resetForm(keepPhoto) {
      ["notes", "next_step", "outcome", "next_due"].forEach(function (name) {
        form.elements[name].value = "";
      });
      form.querySelector("input[name=intent][value='']").checked = true;
      if (stageSelect) stageSelect.value = "";
      setCheckin(null);
      if (!keepPhoto) clearPhoto();
    }

    function showResult(flag, lines) {
      result.className = "log-result" + (flag === "ok" ? "" : flag === "plain" ? " is-plain" : " is-flagged");
      result.setAttribute("data-flag", flag);
      result.textContent = "";
      lines.forEach(function (line, i) {
        result.appendChild(el("p", i === 0 ? "log-result-main" : null, line));
      });
      result.hidden = false;
    }

    function addResultLine(text, isError) {
      var p = el("p", isError ? "log-result-error" : null, text);
      result.appendChild(p);
      return p;
    }

    function describe(activity, body) {
      var flag = activity.checkin_flag || "";
      var values = {
        m: number(activity.checkin_distance_m),
        radius: number(config.checkin_radius_m),
        acc: number(activity.checkin_accuracy_m),
        max: number(config.checkin_max_accuracy_m),
      };
      var main;
      var shown = "plain";
      if (activity.kind !== "visit") {
        main = S.saved_call;
      } else if (!flag) {
        main = S.saved_visit_no_checkin;
      } else if (flag === "ok") {
        main = fmt(S.saved_visit_ok, values);
        shown = "ok";
      } else if (flag === "too_far") {
        main = fmt(S.saved_visit_far, values);
        shown = flag;
      } else {
        main = fmt(activity.checkin_accuracy_m === null ? S.saved_visit_unknown_accuracy : S.saved_visit_inaccurate, values);
        shown = flag;
      }
      var lines = [main];
      if (body.advance_to) lines.push(fmt(S.lead_moved, { stage: stageLabel(body.advance_to) }));
      if (body.next_due_at && body.next_step) lines.push(fmt(S.task_created, { date: body.next_due_at.slice(0, 10) }));
      return { flag: shown, lines: lines };
    }

    function uploadPhoto(activityId) {
      var file = photo.files[0];
      if (!file) return Promise.resolve();
      photoFor = activityId;
      retry.hidden = true;
      var line = addResultLine(S.photo_uploading);
      var data = new FormData();
      data.append("activity", String(activityId));
      data.append("kind", photoKind.value);
      data.append("file", file, file.name || "photo.jpg");
      function failed(errors) {
        line.textContent = S.photo_failed;
        line.className = "log-result-error";
        if (errors) showErrors(errors, true);
        else fieldError("file", [S.save_error]);
        retry.hidden = false;
      }
      return send(config.urls.photos, data, null).then(
        function (r) {
          if (r.ok) {
            photoFor = null;
            clearPhoto();
            line.textContent = fmt(S.photo_saved, { kind: (config.photo_kinds || {})[r.data.kind] || r.data.kind });
            return;
          }
          failed(r.status === 400 && r.data && typeof r.data === "object" ? r.data : null);
        },
        function () {
          failed(null);
        }
      );
    }

    function refreshAll() {
      return Promise.all([refreshTimeline(), refreshLeads()]).then(showStages, function () {
        addResultLine(S.error, true);
      });
    }

    function busy(on) {
      save.disabled = on;
      retry.disabled = on;
      if (on) save.setAttribute("aria-busy", "true");
      else save.removeAttribute("aria-busy");
      save.textContent = on ? S.saving : S.save;
    }

    retry.addEventListener("click", function () {
      if (!photoFor || save.disabled) return;
      fieldError("file", null);
      var problem = photo.files[0] ? photoProblem(photo.files[0]) : null;
      if (problem) {
        fieldError("file", [problem]);
        return;
      }
      busy(true);
      result.querySelectorAll(".log-result-error").forEach(function (p) {
        p.remove();
      });
      uploadPhoto(photoFor)
        .then(refreshAll)
        .then(function () {
          busy(false);
        });
    });

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (save.disabled) return;
      clearErrors();
      result.hidden = true;
      var file = photo.files[0];
      var problem = file ? photoProblem(file) : null;
      if (problem) {
        fieldError("file", [problem]);
        showAlert([S.fix_fields]);
        return;
      }
      var body = payload();
      clientUuid = clientUuid || uuid4();
      body.client_uuid = clientUuid;
      photoFor = null;
      retry.hidden = true;
      busy(true);
      send(config.urls.activities, JSON.stringify(body), "application/json")
        .then(function (r) {
          if (r.ok) {
            clientUuid = null;
            var outcome = describe(r.data, body);
            showResult(outcome.flag, outcome.lines);
            resetForm(!!file);
            return uploadPhoto(r.data.id).then(refreshAll);
          }
          if (r.status === 400 && r.data && typeof r.data === "object") {
            if (r.data.client_uuid && Object.keys(r.data).length === 1) {
              // Saved by an earlier tap whose answer was lost.
              clientUuid = null;
              showResult("plain", [S.saved_already]);
              resetForm(false);
              return refreshAll();
            }
            result.hidden = true;
            showErrors(r.data, false);
            return;
          }
          result.hidden = true;
          showAlert([r.status === 403 || r.status === 404 ? S.forbidden : S.save_error]);
        })
        .catch(function () {
          showAlert([S.save_error]);
        })
        .then(function () {
          busy(false);
          if (!result.hidden) result.scrollIntoView({ block: "nearest" });
        });
    });
  }
})();
