/*
 * gridcrm field app service worker (served by crm.views_field.field_service_worker at /field/sw.js,
 * scope /field/). The placeholders in capitals are filled by the view.
 *
 *  - install: precache the app shell (the /field/ page, its JS/CSS, icons, Leaflet) in a cache named
 *    after a hash of those files, so a new deploy gives a new cache and the old one is dropped;
 *  - navigations to /field/: network first (a fresh shell, or the login page when the session has
 *    expired), the cached shell when the network fails;
 *  - /static/: cache first (files missing from the precache are cached on first use);
 *  - /api/: network only, NEVER cached. The app keeps its data in IndexedDB, tied to the user who
 *    synced it, and reads it from there when the network fails; a cached API answer could show one
 *    user's data to the next one who signs in on the tablet. When the network fails the worker
 *    answers 503 {"offline": true} so the app knows to fall back.
 */
"use strict";

var VERSION = __VERSION__;
var CACHE = "gridcrm-field-" + VERSION;
var PRECACHE = __PRECACHE__;
var SHELL = __SHELL__;
var STATIC_PREFIX = __STATIC_PREFIX__;

self.addEventListener("install", function (event) {
  event.waitUntil(
    caches.open(CACHE).then(function (cache) {
      return Promise.all(
        PRECACHE.map(function (url) {
          return fetch(url, { credentials: "same-origin", cache: "no-cache" }).then(function (response) {
            // A redirect (to the login page) or an error must never become the cached shell.
            if (!response.ok || response.redirected) throw new Error("precache " + url + ": " + response.status);
            return cache.put(url, response);
          });
        })
      );
    }).then(function () {
      return self.skipWaiting();
    })
  );
});

self.addEventListener("activate", function (event) {
  event.waitUntil(
    caches.keys().then(function (keys) {
      return Promise.all(
        keys.filter(function (key) {
          return key.indexOf("gridcrm-field-") === 0 && key !== CACHE;
        }).map(function (key) {
          return caches.delete(key);
        })
      );
    }).then(function () {
      return self.clients.claim();
    })
  );
});

function offlineJSON() {
  return new Response(JSON.stringify({ offline: true, detail: "offline" }), {
    status: 503,
    headers: { "Content-Type": "application/json", "Cache-Control": "no-store" },
  });
}

function shellFromCache() {
  return caches.open(CACHE).then(function (cache) {
    return cache.match(SHELL);
  });
}

self.addEventListener("fetch", function (event) {
  var request = event.request;
  var url = new URL(request.url);
  if (url.origin !== self.location.origin) return;

  if (url.pathname.indexOf("/api/") === 0) {
    if (request.method !== "GET") return; // writes go straight to the network; the app keeps them
    event.respondWith(fetch(request).catch(offlineJSON));
    return;
  }

  if (request.mode === "navigate" && url.pathname === SHELL) {
    event.respondWith(
      fetch(request).then(function (response) {
        if (response.ok && !response.redirected) {
          var copy = response.clone();
          caches.open(CACHE).then(function (cache) {
            cache.put(SHELL, copy);
          });
        }
        return response;
      }).catch(function () {
        return shellFromCache().then(function (cached) {
          return cached || Response.error();
        });
      })
    );
    return;
  }

  if (request.method === "GET" && (url.pathname.indexOf(STATIC_PREFIX) === 0 || PRECACHE.indexOf(url.pathname) >= 0)) {
    event.respondWith(
      caches.open(CACHE).then(function (cache) {
        return cache.match(request, { ignoreSearch: true }).then(function (hit) {
          if (hit) return hit;
          return fetch(request).then(function (response) {
            if (response.ok && url.pathname.indexOf(STATIC_PREFIX) === 0) cache.put(request, response.clone());
            return response;
          });
        });
      })
    );
  }
});

self.addEventListener("message", function (event) {
  if (event.data === "version" && event.source) event.source.postMessage({ version: VERSION });
});
