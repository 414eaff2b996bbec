/*
 * gridcrm field app (templates/field/shell.html): boot, router, top bar, sync triggers, logout.
 *
 * Boot: register the service worker (scope /field/); when online ask the server who is signed in
 * (sync/status/) BEFORE showing stored data: a different user than the one who synced the store
 * never sees it (the store is cleared, or, when the previous user's outbox is not empty, the app
 * stops and asks). Then draw the page from the store and sync. Sync triggers: app open, the
 * `online` event, the Sync button, a timer while online, and every save.
 */
import * as db from "./db.js";
import * as pages from "./pages.js";
import * as sync from "./sync.js";
import { S, ask, config, dateTime, el, fmt, toast } from "./ui.js";

const view = document.getElementById("view");
const netNode = document.querySelector("[data-testid=net]");
const countNode = document.querySelector("[data-testid=outbox-count]");
const syncButton = document.querySelector("[data-testid=sync]");
const banners = document.querySelector("[data-testid=banners]");
const ctx = pages.ctx;
let blocked = false; // another user's pending items: nothing is drawn until the user decides

// -- Top bar ------------------------------------------------------------------------------------

function drawNet() {
  const online = navigator.onLine;
  netNode.dataset.state = online ? "online" : "offline";
  netNode.querySelector(".net-label").textContent = online ? S.online : S.offline;
  document.body.classList.toggle("is-offline", !online);
}

async function drawCounts() {
  const summary = await sync.outboxSummary();
  const conflicts = await db.count("conflicts");
  countNode.textContent = fmt(S.waiting, { n: summary.waiting });
  countNode.dataset.count = summary.waiting;
  countNode.classList.toggle("pill-busy", summary.waiting > 0);
  const st = sync.status();
  const rows = [];
  if (st.authNeeded) {
    const next = encodeURIComponent(config.urls.shell);
    rows.push(el("div.banner.banner-warn", { dataset: { testid: "sign-in-again" } }, el("span", S.sign_in_again), el("a.btn", { href: `${config.urls.login}?next=${next}` }, S.sign_in)));
  }
  if (st.serverMissing) rows.push(el("div.banner.banner-warn", S.server_missing));
  if (conflicts) rows.push(el("div.banner.banner-danger", { dataset: { testid: "conflict-banner" } }, el("span", fmt(S.conflict_banner, { n: conflicts })), el("a.btn", { href: "#/conflicts" }, S.conflicts)));
  if (summary.rejected) rows.push(el("div.banner.banner-danger", { dataset: { testid: "rejected-banner" } }, el("span", fmt(S.rejected_banner, { n: summary.rejected })), el("a.btn", { href: "#/queue" }, S.queue)));
  banners.replaceChildren(...rows);
  const last = await db.getMeta("last_sync");
  document.querySelector("[data-testid=last-sync]").textContent = last ? fmt(S.synced_at, { time: dateTime(last) }) : S.never_synced;
  document.querySelector("[data-testid=menu-user]").textContent = ctx.user ? ctx.user.full_name || ctx.user.username : "";
}

// -- Router -------------------------------------------------------------------------------------

function parseHash() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [path, query] = hash.split("?");
  return { parts: path.split("/").filter(Boolean), params: new URLSearchParams(query || "") };
}

let routeToken = 0;
async function route() {
  if (blocked) return;
  const { parts, params } = parseHash();
  const token = ++routeToken;
  const name = parts[0] || "day";
  for (const a of document.querySelectorAll(".tabs a")) {
    if (a.dataset.route === name) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  document.body.dataset.route = name;
  const fresh = el("div.page", { dataset: { route: name } });
  view.replaceChildren(fresh);
  try {
    if (!ctx.user && !(await db.getMeta("user"))) {
      fresh.append(el("p.muted.empty", navigator.onLine ? S.loading : S.no_data));
      return;
    }
    if (name === "day") await pages.day(fresh);
    else if (name === "m") await pages.merchant(fresh, decodeURIComponent(parts[1] || ""));
    else if (name === "log") await pages.log(fresh, params);
    else if (name === "new") await pages.newMerchant(fresh);
    else if (name === "conflicts") await pages.conflicts(fresh);
    else if (name === "queue") await pages.queue(fresh);
    else if (name === "nearby") await (await import("./nearby.js")).nearby(fresh);
    else await pages.day(fresh);
  } finally {
    if (token === routeToken) view.dataset.ready = name;
  }
}

/** Pages that only show data are redrawn after a sync; forms being filled in are left alone. */
function redrawIfReading() {
  const name = parseHash().parts[0] || "day";
  if (["day", "m", "queue", "conflicts"].includes(name)) route();
}

// -- Sync ---------------------------------------------------------------------------------------

async function runSync() {
  if (blocked || !navigator.onLine) return;
  syncButton.disabled = true;
  syncButton.textContent = S.syncing;
  const result = await sync.sync(config);
  syncButton.disabled = false;
  syncButton.textContent = S.sync;
  if (result.ok) {
    ctx.user = (await db.getMeta("user")) || ctx.user;
    document.body.dataset.synced = "1";
  } else if (result.error instanceof sync.OfflineError) {
    toast(S.sync_failed);
  }
  await drawCounts();
  redrawIfReading();
  return result;
}
ctx.syncNow = () => {
  drawCounts();
  if (navigator.onLine) setTimeout(runSync, 0);
};

// -- Who is signed in ---------------------------------------------------------------------------

async function checkUser() {
  let me = null;
  try {
    me = await sync.whoAmI(config);
  } catch (error) {
    return; // expired session (banner) or no sync endpoint yet: keep the store, it is this device's user's
  }
  if (!me) return; // offline
  const stored = await db.getMeta("user");
  if (stored && stored.id !== me.id) {
    const summary = await sync.outboxSummary();
    if (summary.items.length === 0) {
      await db.clearAll();
    } else {
      blocked = true;
      view.replaceChildren();
      const name = stored.full_name || stored.username;
      const choice = await ask(S.other_user_title, fmt(S.other_user_pending, { n: summary.items.length, name, me: me.full_name || me.username }), [
        { text: fmt(S.sign_in_other, { name }), value: "logout", className: "btn-primary" },
        { text: S.discard_continue, value: "discard", className: "btn-danger" },
      ]);
      if (choice === "discard") {
        await db.clearAll();
        blocked = false;
      } else {
        await logoutNow();
        return;
      }
    }
  }
  await db.setMeta("user", me);
  ctx.user = me;
}

// -- Logout -------------------------------------------------------------------------------------

async function logoutNow() {
  const body = new URLSearchParams({ csrfmiddlewaretoken: sync.csrfToken() });
  try {
    await fetch(config.urls.logout, { method: "POST", credentials: "same-origin", body, headers: { "X-CSRFToken": sync.csrfToken() } });
  } catch (error) {
    toast(S.sync_failed);
    return false;
  }
  location.href = `${config.urls.login}?next=${encodeURIComponent(config.urls.shell)}`;
  return true;
}

async function logout() {
  document.querySelector("details.menu").open = false;
  const summary = await sync.outboxSummary();
  const n = summary.items.length;
  if (n > 0) {
    const choice = await ask(S.logout_title, fmt(S.logout_pending, { n }), [
      { text: S.cancel, value: "cancel" },
      { text: fmt(S.logout_discard, { n }), value: "discard", className: "btn-danger" },
    ]);
    if (choice !== "discard") return;
  }
  if (!navigator.onLine) {
    toast(S.sync_failed);
    return;
  }
  await db.clearAll();
  await logoutNow();
}

// -- Boot ---------------------------------------------------------------------------------------

async function boot() {
  drawNet();
  syncButton.addEventListener("click", runSync);
  document.querySelector("[data-testid=logout]").addEventListener("click", logout);
  document.querySelector(".lang-form").addEventListener("submit", (event) => {
    event.target.csrfmiddlewaretoken.value = sync.csrfToken();
  });
  window.addEventListener("online", () => {
    drawNet();
    runSync();
  });
  window.addEventListener("offline", drawNet);
  window.addEventListener("hashchange", route);
  sync.events.addEventListener("outbox", drawCounts);

  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register(config.urls.shell + "sw.js", { scope: config.urls.shell }).catch(() => {});
  }
  const settings = await db.getMeta("settings");
  if (settings && settings.stale_days) ctx.staleDays = settings.stale_days;

  if (navigator.onLine) await checkUser();
  ctx.user = ctx.user || (await db.getMeta("user"));
  await drawCounts();
  await route();
  document.body.dataset.booted = "1";
  if (navigator.onLine) await runSync();
  setInterval(() => {
    if (navigator.onLine && !document.hidden) runSync();
  }, (config.sync_interval_s || 120) * 1000);
}

boot();
