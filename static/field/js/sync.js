/*
 * Talking to the server: the sync contract of issue 5 (crm/api/sync.py).
 *
 *   GET  sync/status/       who is signed in (401/403: the session has expired)
 *   POST sync/              {"items": [...]} -> one result per client_uuid
 *   POST sync/photos/       multipart, one photo, after its activity was acknowledged
 *   GET  sync/working-set/  the user's grids, merchants, open leads, tasks (ETag / 304)
 *
 * One sync = send the outbox (batches, oldest first), then the photos of acknowledged activities,
 * then refresh the working set. An outbox item is removed only when the server answered "created"
 * or "duplicate" (and its photos are in); "rejected" stays (shown, dismissed by the user);
 * "conflict" moves to the conflicts store. Nothing is removed on a network or auth error.
 */
import * as db from "./db.js";

export const events = new EventTarget();
const state = { running: null, authNeeded: false, serverMissing: false, lastError: null };
export function status() {
  return { ...state, running: Boolean(state.running) };
}

function emit(type, detail) {
  events.dispatchEvent(new CustomEvent(type, { detail }));
}

export class HttpError extends Error {
  constructor(status, body) {
    super("HTTP " + status);
    this.status = status;
    this.body = body;
  }
}
export class OfflineError extends Error {}

export function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

export function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  // Plain HTTP on an intranet address is not a secure context: no randomUUID there.
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** fetch, JSON in and out; throws OfflineError (no network) or HttpError (an answer that is not 2xx/304). */
export async function request(url, { method = "GET", json, form, headers = {} } = {}) {
  const init = { method, credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json", ...headers } };
  if (method !== "GET") init.headers["X-CSRFToken"] = csrfToken();
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (form !== undefined) {
    init.body = form;
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch (error) {
    throw new OfflineError(String(error));
  }
  let body = null;
  const type = response.headers.get("Content-Type") || "";
  if (type.includes("json")) body = await response.json().catch(() => null);
  if (response.status === 503 && body && body.offline) throw new OfflineError("offline");
  if (!response.ok && response.status !== 304) throw new HttpError(response.status, body);
  return { status: response.status, body, headers: response.headers };
}

function isAuth(error) {
  return error instanceof HttpError && (error.status === 401 || error.status === 403);
}

// -- Outbox -------------------------------------------------------------------------------------

let seq = Date.now() * 1000;
function nextSeq() {
  seq = Math.max(seq + 1, Date.now() * 1000);
  return seq;
}

/** Queue one item; ``photos`` = [{kind, blob, name}] (activities only). */
export async function enqueue(type, payload, photos = []) {
  const item = {
    client_uuid: uuid(),
    type,
    device_time: new Date().toISOString(),
    payload,
    photos: photos.map((p) => ({ client_uuid: uuid(), kind: p.kind, blob: p.blob, name: p.name || "photo.jpg" })),
    state: "pending",
    seq: nextSeq(),
    errors: null,
  };
  await db.put("outbox", item);
  emit("outbox");
  return item;
}

export async function outboxSummary() {
  const items = await db.outboxItems();
  const waiting = items.filter((i) => i.state !== "rejected");
  return {
    items,
    waiting: waiting.length,
    rejected: items.filter((i) => i.state === "rejected").length,
    photos: waiting.reduce((n, i) => n + (i.photos ? i.photos.length : 0), 0),
  };
}

/** A merchant created on the tablet got its server id: the placeholder goes, its visits follow. */
async function merchantCreated(item, result) {
  const localId = "local:" + item.client_uuid;
  const local = await db.get("merchants", localId);
  await db.del("merchants", localId);
  if (result.server) await db.put("merchants", { ...(local || {}), ...result.server, pending: false });
  for (const a of await db.all("activities")) {
    if (a.merchant_id === localId) await db.put("activities", { ...a, merchant_id: result.id });
  }
}

async function applyResult(item, result) {
  const s = result.status;
  if (s === "created" || s === "duplicate") {
    if (item.type === "activity") {
      const local = await db.get("activities", item.client_uuid);
      if (local) await db.put("activities", { ...local, state: "sent", server_id: result.id, warnings: result.warnings || null });
    }
    if (item.type === "merchant_create") await merchantCreated(item, result);
    if (item.type === "merchant_update" && result.server) {
      // The new version: a second edit on this tablet is based on it.
      const local = await db.get("merchants", result.server.id);
      await db.put("merchants", { ...(local || {}), ...result.server, pending: false });
    }
    if (item.photos && item.photos.length) {
      await db.put("outbox", { ...item, state: "acked", server_id: result.id });
    } else {
      await db.del("outbox", item.client_uuid);
    }
  } else if (s === "conflict") {
    await db.write(["outbox", "conflicts"], (stores) => {
      stores.conflicts.put({
        client_uuid: item.client_uuid,
        merchant: item.payload.merchant,
        base_version: item.payload.base_version,
        fields: item.payload.fields,
        server: result.server || null,
        device_time: item.device_time,
        at: new Date().toISOString(),
      });
      stores.outbox.delete(item.client_uuid);
    });
  } else if (s === "rejected") {
    await db.put("outbox", { ...item, state: "rejected", errors: result.errors || null });
    if (item.type === "activity") {
      const local = await db.get("activities", item.client_uuid);
      if (local) await db.put("activities", { ...local, state: "rejected" });
    }
  }
}

async function sendItems(urls, batchSize) {
  const items = (await db.outboxItems()).filter((i) => i.state === "pending");
  for (let start = 0; start < items.length; start += batchSize) {
    const batch = items.slice(start, start + batchSize);
    const { body } = await request(urls.sync, {
      method: "POST",
      json: {
        items: batch.map((i) => ({ client_uuid: i.client_uuid, type: i.type, device_time: i.device_time, payload: i.payload })),
      },
    });
    const byUuid = new Map(batch.map((i) => [i.client_uuid, i]));
    for (const result of (body && body.results) || []) {
      const item = byUuid.get(result.client_uuid);
      if (item) await applyResult(item, result);
    }
    emit("outbox");
  }
}

async function sendPhotos(urls) {
  const items = (await db.outboxItems()).filter((i) => i.state === "acked");
  for (const item of items) {
    let photos = [...item.photos];
    const errors = [];
    for (const photo of item.photos) {
      const form = new FormData();
      form.append("client_uuid", photo.client_uuid);
      form.append("activity_client_uuid", item.client_uuid);
      form.append("kind", photo.kind);
      form.append("file", photo.blob, photo.name);
      const { body } = await request(urls.photos, { method: "POST", form });
      const result = (body && body.results && body.results[0]) || body || {};
      if (result.status === "created" || result.status === "duplicate" || result.status === "rejected") {
        if (result.status === "rejected") errors.push(result.errors);
        photos = photos.filter((p) => p.client_uuid !== photo.client_uuid);
        await db.put("outbox", { ...item, photos, errors: errors.length ? errors : item.errors });
      }
    }
    if (!photos.length) await db.del("outbox", item.client_uuid);
    emit("outbox");
  }
}

// -- Working set --------------------------------------------------------------------------------

/** Local edits not yet acknowledged are laid over fresh server data, so the tablet shows them. */
async function overlayPending(merchants) {
  const items = await db.outboxItems();
  const byId = new Map(merchants.map((m) => [String(m.id), m]));
  for (const item of items) {
    if (item.type === "merchant_update" && item.state !== "rejected") {
      const m = byId.get(String(item.payload.merchant));
      if (m) Object.assign(m, item.payload.fields, { pending: true });
    }
    if (item.type === "activity" && item.state === "pending" && item.payload.kind === "visit") {
      const m = byId.get(String(item.payload.merchant ?? "local:" + item.payload.merchant_client_uuid));
      if (m && (!m.last_visit_at || m.last_visit_at < item.payload.occurred_at)) m.last_visit_at = item.payload.occurred_at;
    }
  }
}

export async function refreshWorkingSet(urls) {
  const etag = await db.getMeta("etag");
  const headers = etag ? { "If-None-Match": etag } : {};
  const { status: code, body, headers: h } = await request(urls.working_set, { headers });
  if (code === 304 || !body) return false;
  const locals = (await db.all("merchants")).filter((m) => String(m.id).startsWith("local:"));
  const merchants = [...body.merchants, ...locals];
  await overlayPending(merchants);
  await db.write([...db.DATA_STORES, "meta"], (stores) => {
    for (const name of db.DATA_STORES) stores[name].clear();
    for (const m of merchants) stores.merchants.put(m);
    for (const row of body.leads || []) stores.leads.put(row);
    for (const row of body.tasks || []) stores.tasks.put(row);
    for (const row of body.grids || []) stores.grids.put(row);
    stores.meta.put({ key: "user", value: body.user });
    stores.meta.put({ key: "generated_at", value: body.generated_at });
    stores.meta.put({ key: "etag", value: h.get("ETag") });
    if (body.choices) stores.meta.put({ key: "choices", value: body.choices });
  });
  return true;
}

// -- One sync -----------------------------------------------------------------------------------

export function sync(config) {
  if (state.running) return state.running;
  state.running = (async () => {
    emit("sync-start");
    const urls = config.urls;
    try {
      await sendItems(urls, config.batch_size || 50);
      await sendPhotos(urls);
      await refreshWorkingSet(urls);
      await db.setMeta("last_sync", new Date().toISOString());
      state.authNeeded = false;
      state.serverMissing = false;
      state.lastError = null;
      return { ok: true };
    } catch (error) {
      if (isAuth(error)) state.authNeeded = true;
      else if (error instanceof HttpError && error.status === 404) state.serverMissing = true;
      state.lastError = error instanceof OfflineError ? "offline" : error.message;
      return { ok: false, error };
    } finally {
      state.running = null;
      emit("sync-end", status());
      emit("outbox");
    }
  })();
  return state.running;
}

/** Who is signed in (null when offline). Throws HttpError on 401/403. */
export async function whoAmI(config) {
  try {
    const { body } = await request(config.urls.status);
    state.authNeeded = false;
    return body && body.user ? body.user : null;
  } catch (error) {
    if (error instanceof OfflineError) return null;
    if (isAuth(error)) state.authNeeded = true;
    throw error;
  }
}
