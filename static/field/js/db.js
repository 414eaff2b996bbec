/*
 * The field app's offline store: one IndexedDB database, plain API (no library), promises.
 *
 * Stores (keyPath in brackets):
 *   meta [key]            user (who synced this data), etag, generated_at, last_sync, settings
 *   merchants, leads, tasks, grids [id]   the working set from GET /api/v1/sync/working-set/;
 *                         merchants created on the tablet wait here as id "local:<uuid>"
 *   activities [client_uuid]   visits and calls logged on this tablet (recent, with their state)
 *   outbox [client_uuid]  what waits to be sent: {client_uuid, type, device_time, payload, photos:
 *                         [{client_uuid, kind, blob, name}], state: "pending"|"acked"|"rejected",
 *                         server_id, errors, seq}
 *   conflicts [client_uuid]   merchant edits the server answered "conflict" to: mine vs the server's
 */

const NAME = "gridcrm-field";
const VERSION = 1;
export const DATA_STORES = ["merchants", "leads", "tasks", "grids"];
export const ALL_STORES = ["meta", ...DATA_STORES, "activities", "outbox", "conflicts"];

let dbPromise = null;

function promisify(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

export function open() {
  if (dbPromise) return dbPromise;
  dbPromise = new Promise((resolve, reject) => {
    const request = indexedDB.open(NAME, VERSION);
    request.onupgradeneeded = () => {
      const db = request.result;
      db.createObjectStore("meta", { keyPath: "key" });
      for (const name of DATA_STORES) db.createObjectStore(name, { keyPath: "id" });
      db.createObjectStore("activities", { keyPath: "client_uuid" });
      const outbox = db.createObjectStore("outbox", { keyPath: "client_uuid" });
      outbox.createIndex("seq", "seq");
      db.createObjectStore("conflicts", { keyPath: "client_uuid" });
    };
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  return dbPromise;
}

function done(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error || new Error("transaction aborted"));
  });
}

export async function all(store) {
  const db = await open();
  return promisify(db.transaction(store).objectStore(store).getAll());
}

export async function get(store, key) {
  const db = await open();
  return promisify(db.transaction(store).objectStore(store).get(key));
}

export async function count(store) {
  const db = await open();
  return promisify(db.transaction(store).objectStore(store).count());
}

export async function put(store, value) {
  const db = await open();
  const tx = db.transaction(store, "readwrite");
  tx.objectStore(store).put(value);
  return done(tx);
}

export async function putMany(store, values) {
  const db = await open();
  const tx = db.transaction(store, "readwrite");
  const os = tx.objectStore(store);
  for (const value of values) os.put(value);
  return done(tx);
}

export async function del(store, key) {
  const db = await open();
  const tx = db.transaction(store, "readwrite");
  tx.objectStore(store).delete(key);
  return done(tx);
}

/** Several stores changed in one transaction: ``fn(stores)`` gets {name: objectStore}. */
export async function write(storeNames, fn) {
  const db = await open();
  const tx = db.transaction(storeNames, "readwrite");
  const stores = {};
  for (const name of storeNames) stores[name] = tx.objectStore(name);
  fn(stores);
  return done(tx);
}

export async function getMeta(key, fallback = null) {
  const row = await get("meta", key);
  return row ? row.value : fallback;
}

export function setMeta(key, value) {
  return put("meta", { key, value });
}

/** The outbox in the order it was written. */
export async function outboxItems() {
  const db = await open();
  return promisify(db.transaction("outbox").objectStore("outbox").index("seq").getAll());
}

/** Everything of the previous user goes: data, local activities, outbox, conflicts, meta. */
export async function clearAll() {
  return write(ALL_STORES, (stores) => {
    for (const name of ALL_STORES) stores[name].clear();
  });
}
