/*
 * gridcrm merchant 360 page (templates/crm/merchant_detail.html).
 *
 * Three things, all from #merchant-config (URLs, the relation graph, translated strings):
 *   - the relation graph: an inline SVG drawn from JSON (this merchant in the middle, the people who
 *     connect in an inner ring, related merchants outside; merchants you cannot see are one grey
 *     "+n" node, nothing more);
 *   - "Show" on a person: fetches the unmasked phone / ID number from the PII endpoint (which checks
 *     the permission and logs the view) and puts the masked text back on a second tap;
 *   - "Load older" on the timeline: fetches the next page from the API and appends it.
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
  if (more && list) {
    var cursor = config.next_before;
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
          if (!cursor) {
            more.replaceWith(el("p", "muted tl-end", S.end));
          } else {
            more.textContent = S.load_more;
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
})();
