/*
 * The field app's pages, drawn from the offline store only (IndexedDB): they work the same online
 * and offline. Writes go to the outbox (sync.enqueue) and to the local copies, so what the user did
 * shows at once; the server's answer comes with the next sync.
 *
 *   day(view)            My day: follow-ups due today and overdue, planned visits, recent activity
 *   merchant(view, id)   the essentials of the 360 view, an offline edit (merchant_update)
 *   log(view, params)    a visit or call in a few taps, with photos and check-in
 *   newMerchant(view)    position from GPS, duplicate warning (server when online, store offline)
 *   conflicts(view)      mine vs the server's, keep one
 *   queue(view)          what waits to be sent, and what the server refused
 */
import * as db from "./db.js";
import * as sync from "./sync.js";
import { S, choices, config, fill, date, dateTime, daysSince, distance, distanceText, el, empty, fmt, label, locate, section, startOfDay, toast } from "./ui.js";

export const ctx = { user: null, staleDays: config.stale_days_default, position: null, syncNow: () => {} };

const idOf = (v) => (v && typeof v === "object" ? v.id : v);
const displayOf = (v) => (v && typeof v === "object" ? v.display || v.name || v.full_name || v.username || v.id : v);
const isLocal = (id) => String(id).startsWith("local:");

function industryName(value) {
  if (value && typeof value === "object") return displayOf(value);
  const row = config.industries.find((i) => String(i[0]) === String(value));
  return row ? row[1] : value || "";
}

function ownerText(m) {
  const id = idOf(m.owner);
  if (ctx.user && id === ctx.user.id) return S.me;
  return m.owner_name || displayOf(m.owner) || "";
}

function merchantCoords(m) {
  if (typeof m.lat === "number" && typeof m.lon === "number") return [m.lat, m.lon];
  return null;
}

function staleBadge(m) {
  const days = daysSince(m.last_visit_at);
  const stale = days === null || days >= ctx.staleDays;
  const text = days === null ? S.never_visited : days === 0 ? S.last_visit_today : fmt(S.last_visit_days, { n: days });
  return el("span.badge" + (stale ? ".badge-warn" : ""), { dataset: { stale: stale ? "1" : "0" } }, text);
}

function statusChip(m) {
  return el("span.chip.chip-" + (m.status || "prospect"), label(choices.merchant_status, m.status));
}

function pendingChip(text) {
  return el("span.chip.chip-pending", text || S.pending);
}

async function merchantsById() {
  return new Map((await db.all("merchants")).map((m) => [String(m.id), m]));
}

function merchantLink(m, fallback) {
  return el("a.row-title", { href: "#/m/" + encodeURIComponent(m ? m.id : fallback) }, m ? m.name : fallback);
}

// -- My day -------------------------------------------------------------------------------------

export async function day(view) {
  const [tasks, merchants, activities] = await Promise.all([db.all("tasks"), merchantsById(), db.all("activities")]);
  const endOfToday = new Date(startOfDay().getTime() + 86400000);
  const due = tasks
    .filter((t) => t.status === "open" && new Date(t.due_at) < endOfToday)
    .sort((a, b) => a.due_at.localeCompare(b.due_at));
  const overdue = due.filter((t) => new Date(t.due_at) < startOfDay());
  const today = due.filter((t) => new Date(t.due_at) >= startOfDay());

  function taskRow(t) {
    const m = merchants.get(String(idOf(t.merchant)));
    const late = daysSince(t.due_at);
    return el(
      "li.row",
      { dataset: { testid: "task" } },
      el("div.row-main", m ? merchantLink(m) : null, el("div.row-sub", t.title)),
      el("span.badge" + (late > 0 ? ".badge-danger" : ""), late > 0 ? fmt(S.overdue_days, { n: late }) : S.due_today),
      m ? el("a.btn.btn-small", { href: "#/log?merchant=" + m.id }, S.log) : null,
    );
  }

  const mine = [...merchants.values()].filter((m) => !ctx.user || idOf(m.owner) === ctx.user.id || isLocal(m.id));
  const planned = mine
    .filter((m) => m.status !== "closed")
    .filter((m) => {
      const d = daysSince(m.last_visit_at);
      return d === null || d >= ctx.staleDays;
    })
    .sort((a, b) => (a.last_visit_at || "").localeCompare(b.last_visit_at || "") || a.name.localeCompare(b.name))
    .slice(0, 8);

  const recent = activities.sort((a, b) => b.occurred_at.localeCompare(a.occurred_at)).slice(0, 10);

  fill(view, 
    el("h1.page-title", ctx.user ? fmt(S.greeting, { name: ctx.user.full_name || ctx.user.username }) : S.my_day),
    section(
      S.today_tasks,
      due.length
        ? el("ul.rows", { dataset: { testid: "due-list" } }, overdue.length ? el("li.row-head", S.overdue) : null, overdue.map(taskRow), today.length && overdue.length ? el("li.row-head", S.due_today) : null, today.map(taskRow))
        : empty(S.nothing_due),
    ),
    section(
      S.planned_visits,
      el("p.muted.small", fmt(S.planned_hint, { n: ctx.staleDays })),
      planned.length
        ? el(
            "ul.rows",
            { dataset: { testid: "planned-list" } },
            planned.map((m) =>
              el("li.row", el("div.row-main", merchantLink(m), el("div.row-sub", m.address || "")), staleBadge(m), el("a.btn.btn-small", { href: "#/log?merchant=" + encodeURIComponent(m.id) }, S.log)),
            ),
          )
        : empty(S.nothing_planned),
    ),
    section(
      S.recent,
      recent.length
        ? el(
            "ul.rows",
            { dataset: { testid: "recent-list" } },
            recent.map((a) =>
              el(
                "li.row",
                { dataset: { testid: "recent", state: a.state } },
                el("div.row-main", merchantLink(merchants.get(String(a.merchant_id)), a.merchant_name), el("div.row-sub", [label(choices.activity_kind, a.kind), label(choices.outcome, a.outcome), dateTime(a.occurred_at)].filter(Boolean).join(" · "))),
                el("span.chip.chip-" + a.state, a.state === "sent" ? S.sent : a.state === "rejected" ? S.rejected : S.pending),
              ),
            ),
          )
        : empty(S.nothing_recent),
    ),
  );
}

// -- Merchant -----------------------------------------------------------------------------------

export async function merchant(view, id) {
  const m = await db.get("merchants", isLocal(id) ? id : Number(id));
  if (!m) {
    fill(view, el("h1.page-title", S.merchant), empty(S.not_found));
    return;
  }
  const [leads, tasks, activities, grids] = await Promise.all([db.all("leads"), db.all("tasks"), db.all("activities"), db.all("grids")]);
  const grid = grids.find((g) => g.id === idOf(m.grid));
  const myLeads = leads.filter((l) => idOf(l.merchant) === m.id);
  const myTasks = tasks.filter((t) => idOf(t.merchant) === m.id && t.status === "open").sort((a, b) => a.due_at.localeCompare(b.due_at));
  const visits = activities.filter((a) => a.merchant_id === m.id).sort((a, b) => b.occurred_at.localeCompare(a.occurred_at)).slice(0, 5);

  const facts = el(
    "dl.facts",
    el("dt", S.address),
    el("dd", m.address || S.none),
    el("dt", S.status),
    el("dd", statusChip(m)),
    el("dt", S.owner),
    el("dd", ownerText(m) || S.none),
    el("dt", S.grid),
    el("dd", grid ? grid.name : displayOf(m.grid) || S.none),
    el("dt", S.industry),
    el("dd", industryName(m.industry) || S.none),
    el("dt", S.last_visits),
    el("dd", staleBadge(m)),
  );

  // The offline edit: name, address, status -> a merchant_update with the version it was based on.
  const form = el(
    "form.card.edit-form",
    { hidden: true, dataset: { testid: "edit-form" } },
    el("label.field", el("span", S.name), el("input", { name: "name", value: m.name, required: true, maxLength: 200 })),
    el("label.field", el("span", S.address), el("input", { name: "address", value: m.address || "", maxLength: 300 })),
    el("label.field", el("span", S.status), el("select", { name: "status" }, choices.merchant_status.map(([v, t]) => el("option", { value: v, selected: v === m.status }, t)))),
    el("div.actions", el("button.btn.btn-primary", { type: "submit" }, S.save_edit), el("button.btn", { type: "button", onclick: () => (form.hidden = true) }, S.cancel)),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const fields = {};
    for (const key of ["name", "address", "status"]) {
      const value = String(data.get(key) || "").trim();
      if (value !== (m[key] || "")) fields[key] = value;
    }
    if (!Object.keys(fields).length) {
      form.hidden = true;
      return;
    }
    if (!isLocal(m.id)) {
      await sync.enqueue("merchant_update", { merchant: m.id, base_version: m.version, fields });
    } else {
      // Not on the server yet: the create that waits in the outbox carries the change.
      const item = await db.get("outbox", m.id.slice("local:".length));
      if (item && item.state === "pending") await db.put("outbox", { ...item, payload: { ...item.payload, ...fields } });
    }
    await db.put("merchants", { ...m, ...fields, pending: true });
    toast(S.edit_saved);
    ctx.syncNow();
    merchant(view, id);
  });

  fill(view, 
    el(
      "div.page-head",
      el("h1.page-title", { dataset: { testid: "merchant-name" } }, m.name, " ", m.pending || isLocal(m.id) ? pendingChip() : null),
      el(
        "div.actions",
        el("a.btn.btn-primary.btn-lg", { href: "#/log?merchant=" + encodeURIComponent(m.id), dataset: { testid: "log-merchant" } }, S.log_button),
        el("button.btn.btn-lg", { type: "button", dataset: { testid: "edit-merchant" }, onclick: () => (form.hidden = !form.hidden) }, S.edit),
      ),
    ),
    isLocal(m.id) ? el("p.notice", S.not_yet_sent) : null,
    form,
    el("section.card", facts),
    section(
      S.leads,
      myLeads.length
        ? el(
            "ul.rows",
            myLeads.map((l) =>
              el(
                "li.row",
                el("div.row-main", el("div.row-title", label(choices.product, l.product) || S.leads), el("div.row-sub", [label(choices.intent, l.intent), l.amount_requested ? S.amount + " " + l.amount_requested : ""].filter(Boolean).join(" · "))),
                el("span.chip.chip-stage", label(choices.stage, l.stage)),
              ),
            ),
          )
        : empty(S.no_leads),
    ),
    section(
      S.last_visits,
      visits.length
        ? el("ul.rows", visits.map((a) => el("li.row", el("div.row-main", el("div.row-title", label(choices.activity_kind, a.kind) + " · " + dateTime(a.occurred_at)), el("div.row-sub", [label(choices.outcome, a.outcome), a.notes].filter(Boolean).join(" · "))), el("span.chip.chip-" + a.state, a.state === "sent" ? S.sent : a.state === "rejected" ? S.rejected : S.pending))))
        : m.last_visit_at
          ? el("p", dateTime(m.last_visit_at))
          : empty(S.no_visits),
    ),
    section(
      S.tasks,
      myTasks.length
        ? el("ul.rows", myTasks.map((t) => el("li.row", el("div.row-main", el("div.row-title", t.title)), el("span.badge" + (daysSince(t.due_at) > 0 ? ".badge-danger" : ""), date(t.due_at)))))
        : empty(S.no_tasks),
    ),
    !isLocal(m.id) && navigator.onLine ? el("p", el("a.btn", { href: config.urls.merchant_page.replace("{id}", m.id) }, S.open_full)) : null,
  );
}

// -- Log ----------------------------------------------------------------------------------------

function segmented(name, options, value, testid) {
  return el(
    "div.seg",
    { role: "radiogroup", dataset: { testid } },
    options.map(([v, t]) => el("label", el("input", { type: "radio", name, value: v, checked: v === value }), el("span", t))),
  );
}

function localDateInput(offsetDays) {
  const d = new Date(Date.now() + offsetDays * 86400000);
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
}

/** One activity as the sync takes it (crm/services/sync.py): the merchant by id, or by the UUID
 * of its merchant_create item when it was created on this tablet and not sent yet. */
export function activityPayload(values) {
  const id = String(values.merchant.id);
  const payload = { kind: values.kind, occurred_at: values.occurred_at, outcome: values.outcome, notes: values.notes };
  if (isLocal(id)) payload.merchant_client_uuid = id.slice("local:".length);
  else payload.merchant = values.merchant.id;
  if (values.intent) payload.intent = values.intent;
  if (values.next_step) {
    payload.next_step = values.next_step;
    payload.next_due_at = values.next_due_at;
  }
  if (values.checkin && values.kind === "visit") {
    payload.checkin = { lat: values.checkin.lat, lon: values.checkin.lon, accuracy_m: Math.round(values.checkin.accuracy * 10) / 10 };
  }
  if (values.advance_lead) {
    payload.advance_lead = values.advance_lead;
    payload.advance_to = values.advance_to;
  }
  return payload;
}

export async function log(view, params) {
  const merchants = (await db.all("merchants")).filter((m) => m.status !== "closed");
  let selected = params.get("merchant") ? merchants.find((m) => String(m.id) === params.get("merchant")) : null;
  let position = null;
  let photos = [];

  const pickBox = el("div.picker", { dataset: { testid: "merchant-picker" } });
  const leadBox = el("div");
  const checkinText = el("span.muted", { dataset: { testid: "checkin" } }, S.locating);
  const photoCount = el("span.muted", { dataset: { testid: "photo-count" } });
  const errorBox = el("p.form-error", { hidden: true, role: "alert", dataset: { testid: "log-error" } });

  async function drawLeads() {
    fill(leadBox);
    if (!selected) return;
    const leads = (await db.all("leads")).filter((l) => idOf(l.merchant) === selected.id && !["disbursed", "lost"].includes(l.stage));
    if (!leads.length) return;
    const stages = choices.stage.map((c) => c[0]);
    const options = [el("option", { value: "" }, S.none)];
    for (const l of leads) {
      for (const [v, t] of choices.stage) {
        if (stages.indexOf(v) > stages.indexOf(l.stage)) options.push(el("option", { value: `${l.id}:${v}` }, `${label(choices.product, l.product) || S.leads}: ${label(choices.stage, l.stage)} → ${t}`));
      }
    }
    leadBox.append(el("label.field", el("span", S.advance), el("select", { name: "advance" }, options)));
  }

  function drawPicker(query = "") {
    fill(pickBox);
    if (selected) {
      pickBox.append(
        el(
          "div.picked",
          { dataset: { testid: "picked" } },
          el("div.row-main", el("div.row-title", selected.name), el("div.row-sub", selected.address || "")),
          el("button.btn", { type: "button", onclick: () => ((selected = null), drawPicker(), drawLeads()) }, S.change),
        ),
      );
      return;
    }
    const input = el("input.search", { type: "search", placeholder: S.search_merchant, value: query, dataset: { testid: "merchant-search" }, autocomplete: "off" });
    const list = el("ul.rows.pick-list");
    const draw = () => {
      const q = input.value.trim().toLowerCase();
      let rows = merchants.filter((m) => (!q || m.name.toLowerCase().includes(q) || (m.address || "").toLowerCase().includes(q)));
      if (position) rows = rows.map((m) => ({ m, d: merchantCoords(m) ? distance(position.lat, position.lon, m.lat, m.lon) : Infinity })).sort((a, b) => a.d - b.d).map((r) => r.m);
      list.replaceChildren(
        ...rows.slice(0, 8).map((m) =>
          el(
            "li",
            el(
              "button.pick",
              { type: "button", dataset: { testid: "pick", id: m.id }, onclick: () => ((selected = m), drawPicker(), drawLeads()) },
              el("span.row-title", m.name),
              el("span.row-sub", [m.address, position && merchantCoords(m) ? distanceText(distance(position.lat, position.lon, m.lat, m.lon)) : ""].filter(Boolean).join(" · ")),
            ),
          ),
        ),
      );
    };
    input.addEventListener("input", draw);
    pickBox.append(input, list);
    draw();
  }

  const fileInput = el("input.visually-hidden", { type: "file", accept: "image/*", capture: "environment", multiple: true, id: "log-photo", dataset: { testid: "photo-input" } });
  fileInput.addEventListener("change", async () => {
    for (const file of fileInput.files) photos.push({ blob: new Blob([await file.arrayBuffer()], { type: file.type || "image/jpeg" }), name: file.name });
    fileInput.value = "";
    photoCount.textContent = photos.length ? fmt(S.photos_n, { n: photos.length }) : "";
  });

  const form = el(
    "form.log-form",
    { novalidate: true, dataset: { testid: "log-form" } },
    el("div.field", el("span.field-label", S.merchant), pickBox),
    el("div.field", el("span.field-label", S.kind), segmented("kind", choices.activity_kind, "visit", "kind")),
    el("div.field", el("span.field-label", S.outcome), segmented("outcome", choices.outcome, "", "outcome")),
    el("div.field", el("span.field-label", S.intent), segmented("intent", [["", S.none], ...choices.intent], "", "intent")),
    el("label.field", el("span.field-label", S.note), el("textarea", { name: "notes", rows: 3, maxLength: 2000, dataset: { testid: "notes" } })),
    el(
      "div.field-row",
      el("label.field.grow", el("span.field-label", S.next_step), el("input", { name: "next_step", maxLength: 200, dataset: { testid: "next-step" } })),
      el("label.field", el("span.field-label", S.next_due), el("input", { type: "date", name: "next_due", value: localDateInput(3), dataset: { testid: "next-due" } })),
    ),
    leadBox,
    el(
      "div.field-row",
      el("div.field", el("span.field-label", S.photo), el("div.photo-line", fileInput, el("label.btn", { htmlFor: "log-photo", dataset: { testid: "photo-button" } }, S.add_photo), photoCount)),
      el("label.field", el("span.field-label", S.photo_kind), el("select", { name: "photo_kind" }, choices.photo_kind.map(([v, t]) => el("option", { value: v }, t)))),
    ),
    el("div.field", el("span.field-label", S.checkin), checkinText),
    errorBox,
    el("button.btn.btn-primary.btn-lg.btn-block", { type: "submit", dataset: { testid: "save-log" } }, S.save),
  );

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const fail = (text) => {
      errorBox.textContent = text;
      errorBox.hidden = false;
    };
    if (!selected) return fail(S.pick_merchant);
    if (!data.get("outcome")) return fail(S.need_outcome);
    const nextStep = String(data.get("next_step") || "").trim();
    if (nextStep && !data.get("next_due")) return fail(S.need_due);
    const [leadId, stage] = String(data.get("advance") || "").split(":");
    const values = {
      merchant: selected,
      kind: data.get("kind"),
      occurred_at: new Date().toISOString(),
      outcome: data.get("outcome"),
      intent: data.get("intent") || null,
      notes: String(data.get("notes") || "").trim(),
      next_step: nextStep,
      next_due_at: nextStep ? new Date(data.get("next_due") + "T18:00:00").toISOString() : null,
      checkin: position,
      advance_lead: leadId ? Number(leadId) : null,
      advance_to: stage || null,
    };
    const kind = data.get("photo_kind");
    const item = await sync.enqueue("activity", activityPayload(values), photos.map((p) => ({ ...p, kind })));
    await db.put("activities", {
      client_uuid: item.client_uuid,
      merchant_id: selected.id,
      merchant_name: selected.name,
      kind: values.kind,
      outcome: values.outcome,
      intent: values.intent,
      notes: values.notes,
      occurred_at: values.occurred_at,
      photos: photos.length,
      state: "pending",
    });
    if (values.kind === "visit") await db.put("merchants", { ...selected, last_visit_at: values.occurred_at });
    if (nextStep) await db.put("tasks", { id: "local:" + item.client_uuid, merchant: selected.id, title: nextStep, due_at: values.next_due_at, status: "open", pending: true });
    toast(S.saved_queued);
    ctx.syncNow();
    location.hash = "#/m/" + encodeURIComponent(selected.id);
  });

  fill(view, el("h1.page-title", S.log), form);
  drawPicker();
  drawLeads();
  position = await locate();
  ctx.position = position || ctx.position;
  checkinText.textContent = position ? fmt(S.checkin_ok, { n: Math.round(position.accuracy) }) : S.checkin_none;
  if (!selected && pickBox.isConnected) drawPicker(pickBox.querySelector("input") ? pickBox.querySelector("input").value : "");
}

// -- New merchant -------------------------------------------------------------------------------

const normalize = (s) => String(s || "").replace(/[\s()（）·.,，。-]/g, "").toLowerCase();

/** Offline duplicate check: cached merchants with the same or a contained name, nearby when both have a position. */
async function localDuplicates(name, position) {
  const n = normalize(name);
  if (n.length < 2) return [];
  return (await db.all("merchants")).filter((m) => {
    const other = normalize(m.name);
    const similar = other === n || (other.length >= 2 && (other.includes(n) || n.includes(other)));
    if (!similar) return false;
    if (other === n) return true;
    return position && merchantCoords(m) ? distance(position.lat, position.lon, m.lat, m.lon) <= 500 : false;
  });
}

export async function newMerchant(view) {
  let position = null;
  let confirmed = false;
  const posText = el("span", { dataset: { testid: "position" } }, S.locating);
  const dupBox = el("div", { dataset: { testid: "duplicates" } });
  const errorBox = el("p.form-error", { hidden: true, role: "alert" });

  async function findPosition() {
    posText.textContent = S.locating;
    position = await locate();
    posText.textContent = position ? `${position.lat.toFixed(5)}, ${position.lon.toFixed(5)} (±${Math.round(position.accuracy)} m)` : S.need_position;
  }

  const form = el(
    "form.log-form",
    { novalidate: true, dataset: { testid: "new-form" } },
    el("div.field", el("span.field-label", S.position), el("div.photo-line", posText, el("button.btn", { type: "button", onclick: findPosition }, S.locate))),
    el("label.field", el("span.field-label", S.name), el("input", { name: "name", required: true, maxLength: 200, dataset: { testid: "new-name" } })),
    el("label.field", el("span.field-label", S.address), el("input", { name: "address", maxLength: 300, dataset: { testid: "new-address" } })),
    el(
      "div.field-row",
      el("label.field.grow", el("span.field-label", S.industry), el("select", { name: "industry" }, el("option", { value: "" }, S.none), config.industries.map(([v, t]) => el("option", { value: v }, t)))),
      el("label.field.grow", el("span.field-label", `${S.credit_code} (${S.optional})`), el("input", { name: "credit_code", maxLength: 18, autocapitalize: "characters" })),
    ),
    dupBox,
    errorBox,
    el("button.btn.btn-primary.btn-lg.btn-block", { type: "submit", dataset: { testid: "save-merchant" } }, S.save),
  );
  form.querySelector("[name=name]").addEventListener("input", () => {
    confirmed = false;
    fill(dupBox);
  });

  async function save(values) {
    const payload = {
      name: values.name,
      address: values.address,
      location: { type: "Point", coordinates: [position.lon, position.lat] },
    };
    if (values.industry) payload.industry = Number(values.industry);
    if (values.credit_code) payload.credit_code = values.credit_code;
    if (confirmed) payload.confirm_not_duplicate = true;
    const item = await sync.enqueue("merchant_create", payload);
    const id = "local:" + item.client_uuid;
    await db.put("merchants", { id, name: values.name, address: values.address, status: "prospect", lat: position.lat, lon: position.lon, industry: payload.industry || null, owner: ctx.user ? ctx.user.id : null, last_visit_at: null, pending: true });
    toast(S.merchant_queued);
    ctx.syncNow();
    location.hash = "#/m/" + encodeURIComponent(id);
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    errorBox.hidden = true;
    const data = new FormData(form);
    const values = Object.fromEntries([...data.entries()].map(([k, v]) => [k, String(v).trim()]));
    if (!values.name) return ((errorBox.textContent = S.need_name), (errorBox.hidden = false));
    if (!position) return ((errorBox.textContent = S.need_position), (errorBox.hidden = false));
    if (confirmed) return save(values);
    fill(dupBox, el("p.muted", S.checking));
    let server = null;
    if (navigator.onLine && config.urls.duplicates) {
      try {
        const body = { name: values.name, location: { type: "Point", coordinates: [position.lon, position.lat] } };
        if (values.credit_code) body.credit_code = values.credit_code;
        server = (await sync.request(config.urls.duplicates, { method: "POST", json: body })).body;
      } catch (error) {
        server = null; // offline or refused: the store answers instead
      }
    }
    let rows = [];
    let hidden = 0;
    let offline = false;
    if (server) {
      rows = server.candidates.map((c) => ({ name: c.name, address: c.address, why: c.reasons.map((r) => r.label).join(", "), id: c.id }));
      hidden = server.hidden_count || 0;
    } else {
      offline = true;
      rows = (await localDuplicates(values.name, position)).map((m) => ({ name: m.name, address: m.address, id: m.id, why: merchantCoords(m) ? distanceText(distance(position.lat, position.lon, m.lat, m.lon)) : "" }));
    }
    if (!rows.length && !hidden) {
      fill(dupBox);
      return save(values);
    }
    confirmed = true;
    fill(dupBox, 
      el(
        "div.card.dup-card",
        { role: "alert", dataset: { testid: "duplicate-warning" } },
        el("h2", S.dup_title),
        offline ? el("p.muted", S.dup_offline) : null,
        el("ul.rows", rows.map((r) => el("li.row", el("div.row-main", el("a.row-title", { href: "#/m/" + r.id }, r.name), el("div.row-sub", [r.address, r.why].filter(Boolean).join(" · ")))))),
        hidden ? el("p", S.dup_hidden) : null,
      ),
    );
    form.querySelector("[data-testid=save-merchant]").textContent = S.save_anyway;
    dupBox.scrollIntoView({ block: "center" });
  });

  fill(view, el("h1.page-title", S.new_merchant), form);
  findPosition();
}

// -- Conflicts ----------------------------------------------------------------------------------

function serverValue(server, key) {
  if (!server) return "";
  const source = server.fields && typeof server.fields === "object" ? server.fields : server;
  return source[key];
}

function shown(key, value) {
  if (key === "status") return label(choices.merchant_status, value);
  if (key === "industry") return industryName(value);
  return value === null || value === undefined || value === "" ? S.none : String(value);
}

export async function conflicts(view) {
  const rows = await db.all("conflicts");
  const merchants = await merchantsById();
  const fieldNames = { name: S.name, address: S.address, status: S.status, industry: S.industry };

  async function keepServer(c) {
    const m = merchants.get(String(c.merchant));
    if (m && c.server) {
      const copy = { ...m, pending: false, version: serverValue(c.server, "version") ?? c.server.version ?? m.version };
      for (const key of Object.keys(c.fields)) copy[key] = serverValue(c.server, key);
      await db.put("merchants", copy);
    }
    await db.del("conflicts", c.client_uuid);
    toast(S.resolved);
    conflicts(view);
  }

  async function reapply(c) {
    const version = (c.server && (c.server.version ?? serverValue(c.server, "version"))) ?? c.base_version;
    await sync.enqueue("merchant_update", { merchant: c.merchant, base_version: version, fields: c.fields });
    const m = merchants.get(String(c.merchant));
    if (m) await db.put("merchants", { ...m, ...c.fields, version, pending: true });
    await db.del("conflicts", c.client_uuid);
    toast(S.resolved);
    ctx.syncNow();
    conflicts(view);
  }

  fill(view, 
    el("h1.page-title", S.conflicts),
    rows.length ? el("p", S.conflicts_intro) : empty(S.no_conflicts),
    ...rows.map((c) => {
      const m = merchants.get(String(c.merchant));
      return el(
        "section.card.conflict",
        { dataset: { testid: "conflict", merchant: c.merchant } },
        el("h2", m ? m.name : (c.server && c.server.name) || "#" + c.merchant),
        el("p.muted.small", dateTime(c.device_time)),
        el(
          "table.compare",
          el("thead", el("tr", el("th", S.field), el("th", S.mine), el("th", S.server))),
          el(
            "tbody",
            Object.keys(c.fields).map((key) =>
              el("tr", el("th", fieldNames[key] || key), el("td.mine", { dataset: { testid: "mine" } }, shown(key, c.fields[key])), el("td.theirs", { dataset: { testid: "theirs" } }, shown(key, serverValue(c.server, key)))),
            ),
          ),
        ),
        el(
          "div.actions",
          el("button.btn.btn-lg", { type: "button", dataset: { testid: "keep-server" }, onclick: () => keepServer(c) }, S.keep_server),
          el("button.btn.btn-primary.btn-lg", { type: "button", dataset: { testid: "reapply" }, onclick: () => reapply(c) }, S.reapply_mine),
        ),
      );
    }),
  );
}

// -- Queue --------------------------------------------------------------------------------------

function errorText(errors) {
  if (!errors) return "";
  if (typeof errors === "string") return errors;
  if (Array.isArray(errors)) return errors.map(errorText).join("; ");
  return Object.entries(errors)
    .map(([k, v]) => `${k}: ${errorText(v)}`)
    .join("; ");
}

export async function queue(view) {
  const { items } = await sync.outboxSummary();
  const merchants = await merchantsById();
  const typeLabel = { activity: S.activity, merchant_create: S.merchant_create, merchant_update: S.merchant_update };
  fill(view, 
    el("h1.page-title", S.outbox),
    items.length
      ? el(
          "ul.rows",
          { dataset: { testid: "queue-list" } },
          items.map((i) => {
            const m = merchants.get(String(i.payload.merchant ?? "local:" + i.payload.merchant_client_uuid));
            const name = i.type === "merchant_create" ? i.payload.name : m ? m.name : "";
            return el(
              "li.row",
              { dataset: { testid: "queue-item", state: i.state, uuid: i.client_uuid } },
              el(
                "div.row-main",
                el("div.row-title", [i.type === "activity" ? label(choices.activity_kind, i.payload.kind) : typeLabel[i.type], name].filter(Boolean).join(" · ")),
                el("div.row-sub", [dateTime(i.device_time), i.photos && i.photos.length ? fmt(S.photos_pending, { n: i.photos.length }) : ""].filter(Boolean).join(" · ")),
                i.errors ? el("div.form-error", errorText(i.errors)) : null,
              ),
              el("span.chip.chip-" + i.state, i.state === "rejected" ? S.rejected : S.pending),
              i.state === "rejected"
                ? el(
                    "button.btn.btn-small",
                    {
                      type: "button",
                      onclick: async () => {
                        await db.del("outbox", i.client_uuid);
                        queue(view);
                      },
                    },
                    S.dismiss,
                  )
                : null,
            );
          }),
        )
      : empty(S.queue_empty),
  );
}
