/*
 * Shared helpers of the field app: the shell's config (#field-config), translated strings, DOM
 * building (text from data only ever becomes text nodes), dates, distances, toast and dialog.
 */
export const config = JSON.parse(document.getElementById("field-config").textContent);
export const S = config.strings;

export function fmt(template, values) {
  return String(template).replace(/%\((\w+)\)s/g, (_m, key) => (values[key] === undefined ? "" : values[key]));
}

/** el("div.card", {attrs}, children...) — children are nodes or text. */
export function el(spec, attrs, ...children) {
  const [tag, ...classes] = spec.split(".");
  const node = document.createElement(tag || "div");
  if (classes.length) node.className = classes.join(" ");
  if (attrs && (typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = null;
  }
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key in node && key !== "list" && key !== "form") node[key] = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Replace ``node``'s content; null, false and undefined are skipped, arrays flattened. */
export function fill(node, ...children) {
  node.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

export function label(choices, value) {
  const row = (choices || []).find((c) => c[0] === value);
  return row ? row[1] : value || "";
}

export const choices = config.choices;

const locale = config.language && config.language.startsWith("zh") ? "zh-CN" : "en";
export function date(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleDateString(locale, { month: "short", day: "numeric" });
}
export function dateTime(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleString(locale, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

export function startOfDay(d = new Date()) {
  const x = new Date(d);
  x.setHours(0, 0, 0, 0);
  return x;
}

export function daysSince(iso) {
  if (!iso) return null;
  return Math.floor((startOfDay() - startOfDay(new Date(iso))) / 86400000);
}

/** Metres between two WGS 84 points (haversine). */
export function distance(lat1, lon1, lat2, lon2) {
  const r = 6371000;
  const rad = Math.PI / 180;
  const dLat = (lat2 - lat1) * rad;
  const dLon = (lon2 - lon1) * rad;
  const a = Math.sin(dLat / 2) ** 2 + Math.cos(lat1 * rad) * Math.cos(lat2 * rad) * Math.sin(dLon / 2) ** 2;
  return 2 * r * Math.asin(Math.sqrt(a));
}

export function distanceText(m) {
  if (m === null || m === undefined) return "";
  if (m < 1000) return fmt(S.distance_m, { n: Math.round(m) });
  return fmt(S.distance_km, { n: (m / 1000).toFixed(1) });
}

let toastTimer = null;
export function toast(text) {
  const node = document.querySelector("[data-testid=toast]");
  node.textContent = text;
  node.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (node.hidden = true), 3500);
}

/** A modal with a title, a text and buttons [{text, value, className}]; resolves with the value. */
export function ask(title, text, buttons) {
  const dialog = document.querySelector("[data-testid=dialog]");
  dialog.replaceChildren(
    el("h2", title),
    el("p", text),
    el(
      "div.dialog-actions",
      buttons.map((b) =>
        el("button.btn" + (b.className ? "." + b.className : ""), { type: "button", dataset: { value: b.value }, onclick: () => dialog.close(b.value) }, b.text),
      ),
    ),
  );
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue), { once: true });
    dialog.returnValue = "";
    dialog.showModal();
  });
}

/** The device's position, or null (denied, unavailable, too slow). */
export function locate(timeout = 8000) {
  return new Promise((resolve) => {
    if (!navigator.geolocation) return resolve(null);
    navigator.geolocation.getCurrentPosition(
      (p) => resolve({ lat: p.coords.latitude, lon: p.coords.longitude, accuracy: p.coords.accuracy }),
      () => resolve(null),
      { enableHighAccuracy: true, timeout, maximumAge: 60000 },
    );
  });
}

export function section(title, ...children) {
  return el("section.card", el("h2", title), ...children);
}

export function empty(text) {
  return el("p.muted.empty", text);
}
