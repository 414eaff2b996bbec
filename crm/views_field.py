"""The account manager's field app (PWA) under /field/: the shell page, its web app manifest and
its service worker.

The shell holds no record of anybody: its data comes from the sync API (crm/api/sync.py) into
IndexedDB, so the same cached shell serves whoever signs in on the tablet. What the shell carries
is what every user shares: translated strings, choice labels, the industry list, API URLs and the
base-map setting."""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.staticfiles import finders
from django.http import HttpResponse, JsonResponse
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.templatetags.static import static
from django.urls import NoReverseMatch, reverse
from django.utils.translation import get_language
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from crm.choices import ActivityKind, Intent, LeadStage, MerchantStatus, Outcome, PhotoKind, ProductKind, TaskStatus
from crm.models import Industry

THEME_COLOR = "#1f6feb"
# The shell's own files, precached by the service worker. Leaflet and the cluster plugin are only
# loaded when the Nearby page opens (My day stays light), but precached so the map works offline.
SHELL_STATIC = (
    "field/css/field.css",
    "field/js/app.js",
    "field/js/db.js",
    "field/js/sync.js",
    "field/js/pages.js",
    "field/js/ui.js",
    "field/js/nearby.js",
    "field/icons/icon-192.png",
    "field/icons/icon-512.png",
)
MAP_STATIC = (
    "leaflet/leaflet.js",
    "leaflet/leaflet.css",
    "leaflet/images/marker-icon.png",
    "leaflet/images/marker-icon-2x.png",
    "leaflet/images/marker-shadow.png",
    "leaflet/images/layers.png",
    "leaflet/images/layers-2x.png",
    "vendor/leaflet.markercluster/leaflet.markercluster.js",
    "vendor/leaflet.markercluster/MarkerCluster.css",
    "vendor/leaflet.markercluster/MarkerCluster.Default.css",
)
SHELL_TEMPLATE = Path(settings.BASE_DIR) / "templates" / "field" / "shell.html"
SW_TEMPLATE = Path(settings.BASE_DIR) / "templates" / "field" / "sw.js"


def _api(name: str) -> str | None:
    """An API URL, or None while the route does not exist (the app then says the server lacks it)."""
    try:
        return reverse(name)
    except NoReverseMatch:
        return None


def _fingerprint() -> tuple:
    """What the cache version depends on: the precached files and the two templates (path and
    modification time), so a deploy or an edit gives a new cache name."""
    paths = [finders.find(p) for p in (*SHELL_STATIC, *MAP_STATIC)]
    out = []
    for p in [*paths, str(SHELL_TEMPLATE), str(SW_TEMPLATE)]:
        if p:
            stat = Path(p).stat()
            out.append((p, stat.st_mtime_ns, stat.st_size))
    return tuple(out)


@lru_cache(maxsize=8)
def _version_for(fingerprint: tuple) -> str:
    digest = hashlib.sha256()
    for path, _mtime, _size in fingerprint:
        digest.update(path.encode())
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:12]


def cache_version() -> str:
    """A short hash of the precached files' contents: the service worker's cache name."""
    return _version_for(_fingerprint())


def _choices(enum) -> list:
    return [[value, str(label)] for value, label in enum.choices]


def field_strings() -> dict:
    """Every string the field app's JavaScript shows, translated here (no JavaScript catalog)."""
    return {
        "app_name": _("Field app"),
        "my_day": _("My day"),
        "nearby": _("Nearby"),
        "log": _("Log"),
        "new_merchant": _("New merchant"),
        "conflicts": _("Conflicts"),
        "outbox": _("Waiting to send"),
        "online": _("Online"),
        "offline": _("Offline"),
        "waiting": _("%(n)s waiting"),
        "sync": _("Sync"),
        "syncing": _("Syncing…"),
        "synced_at": _("Last sync: %(time)s"),
        "never_synced": _("Not synced yet"),
        "sync_failed": _("Sync failed: the server could not be reached. Your entries are kept."),
        "sign_in_again": _("Your session has expired. Sign in again: nothing waiting is lost."),
        "sign_in": _("Sign in"),
        "server_missing": _("The server does not offer synchronisation yet."),
        "loading": _("Loading your data…"),
        "no_data": _("No data on this device yet. Connect to the network and sync."),
        "logout": _("Log out"),
        "logout_title": _("Log out"),
        "logout_pending": _(
            "%(n)s entries have not been sent yet. If you log out now they are lost. Sync first, or discard them."
        ),
        "logout_discard": _("Discard %(n)s entries and log out"),
        "logout_confirm": _("The data of this device will be removed. Log out?"),
        "cancel": _("Cancel"),
        "other_user_title": _("Entries of another user"),
        "other_user_pending": _(
            "This tablet holds %(n)s entries of %(name)s that were not sent. They can only be sent when "
            "%(name)s signs in. Discard them to continue as %(me)s?"
        ),
        "discard_continue": _("Discard them and continue"),
        "sign_in_other": _("Sign in as %(name)s"),
        # My day
        "today_tasks": _("Follow-ups due today"),
        "overdue": _("Overdue"),
        "overdue_days": _("%(n)s days overdue"),
        "due_today": _("Due today"),
        "planned_visits": _("Planned visits"),
        "planned_hint": _("Your merchants not visited for %(n)s days or more"),
        "recent": _("Recent activity on this tablet"),
        "nothing_due": _("Nothing due today."),
        "nothing_planned": _("All your merchants were visited recently."),
        "nothing_recent": _("Nothing logged on this tablet yet."),
        "pending": _("Waiting to send"),
        "sent": _("Sent"),
        "rejected": _("Rejected"),
        "conflict": _("Conflict"),
        "greeting": _("Hello, %(name)s"),
        # Nearby
        "not_visited_days": _("Not visited for"),
        "days": _("days"),
        "never_visited": _("Never visited"),
        "last_visit_days": _("Last visit %(n)s days ago"),
        "last_visit_today": _("Visited today"),
        "distance_m": _("%(n)s m"),
        "distance_km": _("%(n)s km"),
        "locating": _("Finding your position…"),
        "no_position": _("Position unavailable: sorted by name."),
        "you_are_here": _("You are here"),
        "stale_only": _("Only not visited"),
        "no_merchants": _("No merchants in your grids on this tablet."),
        # Merchant
        "address": _("Address"),
        "status": _("Status"),
        "owner": _("Account manager"),
        "grid": _("Grid"),
        "industry": _("Industry"),
        "leads": _("Leads"),
        "no_leads": _("No open leads."),
        "amount": _("Amount requested"),
        "last_visits": _("Last visits"),
        "no_visits": _("No visit recorded."),
        "tasks": _("Follow-ups"),
        "no_tasks": _("No open follow-up."),
        "log_button": _("Log a visit or call"),
        "edit": _("Edit"),
        "save_edit": _("Save changes"),
        "edit_saved": _("Change saved: it will be sent with the next sync."),
        "not_found": _("This merchant is not on this tablet."),
        "not_yet_sent": _("Not sent yet: it gets its number from the server at the next sync."),
        "open_full": _("Open the full page"),
        "me": _("me"),
        "name": _("Name"),
        # Log
        "merchant": _("Merchant"),
        "search_merchant": _("Search a merchant by name or address"),
        "change": _("Change"),
        "kind": _("Type"),
        "outcome": _("Outcome"),
        "intent": _("Intent"),
        "none": _("—"),
        "note": _("Note"),
        "next_step": _("Next step"),
        "next_due": _("Due"),
        "photo": _("Photo"),
        "add_photo": _("Take a photo"),
        "photos_n": _("%(n)s photos"),
        "photo_kind": _("Photo type"),
        "checkin": _("Check-in"),
        "checkin_ok": _("Position ±%(n)s m"),
        "checkin_none": _("No position: the visit is saved without a check-in."),
        "advance": _("Move the lead to"),
        "save": _("Save"),
        "saved_queued": _("Saved on the tablet: it will be sent with the next sync."),
        "pick_merchant": _("Pick a merchant first."),
        "need_outcome": _("Choose an outcome."),
        "need_due": _("A next step needs a due date."),
        # New merchant
        "position": _("Position"),
        "locate": _("Use my position"),
        "credit_code": _("Unified social credit code"),
        "optional": _("optional"),
        "need_name": _("Enter the name."),
        "need_position": _("The position is needed: allow location, then tap “Use my position”."),
        "dup_title": _("Possible duplicates"),
        "dup_offline": _("Similar merchants on this tablet (offline check):"),
        "dup_hidden": _("A matching merchant exists in another grid."),
        "save_anyway": _("Not a duplicate: save anyway"),
        "checking": _("Checking for duplicates…"),
        "merchant_queued": _("Merchant saved on the tablet: it will be created at the next sync."),
        # Conflicts
        "conflicts_intro": _(
            "Someone changed these merchants on the server after you edited them on the tablet. "
            "Choose which version to keep."
        ),
        "no_conflicts": _("No conflicts."),
        "field": _("Field"),
        "mine": _("Mine"),
        "server": _("On the server"),
        "keep_server": _("Keep the server's"),
        "reapply_mine": _("Apply mine again"),
        "resolved": _("Resolved."),
        "conflict_banner": _("%(n)s conflicts need your decision"),
        "rejected_banner": _("%(n)s entries were refused by the server"),
        "dismiss": _("Dismiss"),
        "queue": _("Queue"),
        "queue_empty": _("Nothing waiting."),
        "errors": _("Errors"),
        "visit": _("Visit"),
        "call": _("Call"),
        "merchant_create": _("New merchant"),
        "merchant_update": _("Merchant change"),
        "activity": _("Visit or call"),
        "photos_pending": _("%(n)s photos to send"),
        "back": _("Back"),
    }


def field_config(request) -> dict:
    """What app.js reads from the shell (#field-config). Nothing here belongs to one user."""
    api_root = reverse("api:api-root")
    return {
        "version": cache_version(),
        "language": get_language(),
        "strings": field_strings(),
        "choices": {
            "outcome": _choices(Outcome),
            "intent": _choices(Intent),
            "activity_kind": [c for c in _choices(ActivityKind) if c[0] != ActivityKind.EVENT],
            "photo_kind": _choices(PhotoKind),
            "stage": _choices(LeadStage),
            "product": _choices(ProductKind),
            "merchant_status": _choices(MerchantStatus),
            "task_status": _choices(TaskStatus),
        },
        # Reference data (the same for everybody), in the page's language.
        "industries": [
            [i.pk, i.name_en if get_language() == "en" else i.name_zh]
            for i in Industry.objects.order_by("sort_order", "code").only("id", "name_zh", "name_en")
        ],
        "urls": {
            # The sync contract's paths (issue 5), under the API root.
            "working_set": f"{api_root}sync/working-set/",
            "sync": f"{api_root}sync/",
            "photos": f"{api_root}sync/photos/",
            "status": f"{api_root}sync/status/",
            "duplicates": _api("api:merchant-duplicates"),
            "logout": reverse("logout"),
            "login": reverse("login"),
            "merchant_page": reverse("merchant-detail", args=[987654321]).replace("987654321", "{id}"),
            "shell": reverse("field-shell"),
        },
        "static": {
            "leaflet_js": static("leaflet/leaflet.js"),
            "leaflet_css": static("leaflet/leaflet.css"),
            "cluster_js": static("vendor/leaflet.markercluster/leaflet.markercluster.js"),
            "cluster_css": [
                static("vendor/leaflet.markercluster/MarkerCluster.css"),
                static("vendor/leaflet.markercluster/MarkerCluster.Default.css"),
            ],
            "leaflet_images": static("leaflet/images/"),
        },
        "map": {
            "tile_url": settings.MAP_TILE_URL,
            "attribution": settings.MAP_TILE_ATTRIBUTION,
            "center": list(settings.LEAFLET_CONFIG.get("DEFAULT_CENTER", (30.27, 120.17))),
        },
        "stale_days_default": 30,
        "batch_size": 50,
        "sync_interval_s": 120,
    }


@login_required
@never_cache
def field_shell(request):
    """The app shell: the same for everybody (data comes from the sync API), so the service worker
    can cache it and open it offline. ``get_token`` makes sure the CSRF cookie the app reads exists."""
    get_token(request)
    return render(request, "field/shell.html", {"field_config": field_config(request), "theme_color": THEME_COLOR})


@require_GET
def field_manifest(request):
    """The web app manifest (installable app: name, icons, standalone, start URL)."""
    shell = reverse("field-shell")
    data = {
        "name": _("Grid marketing"),
        "short_name": _("Grid marketing"),
        "lang": get_language(),
        "start_url": shell,
        "scope": shell,
        "display": "standalone",
        "orientation": "any",
        "background_color": "#ffffff",
        "theme_color": THEME_COLOR,
        "icons": [
            {"src": static("field/icons/icon-192.png"), "sizes": "192x192", "type": "image/png", "purpose": "any"},
            {"src": static("field/icons/icon-512.png"), "sizes": "512x512", "type": "image/png", "purpose": "any"},
        ],
    }
    response = JsonResponse(data, json_dumps_params={"ensure_ascii": False})
    response["Content-Type"] = "application/manifest+json; charset=utf-8"
    return response


@require_GET
@never_cache
def field_service_worker(request):
    """The service worker, served from /field/ so that its scope is /field/. Never cached by the
    HTTP cache: the browser must see a new version (a new cache name) at once."""
    shell = reverse("field-shell")
    precache = [shell, reverse("field-manifest"), *(static(p) for p in (*SHELL_STATIC, *MAP_STATIC))]
    body = SW_TEMPLATE.read_text(encoding="utf-8")
    body = body.replace("__VERSION__", json.dumps(cache_version()))
    body = body.replace("__PRECACHE__", json.dumps(precache))
    body = body.replace("__SHELL__", json.dumps(shell))
    body = body.replace("__STATIC_PREFIX__", json.dumps(settings.STATIC_URL))
    response = HttpResponse(body, content_type="text/javascript; charset=utf-8")
    response["Cache-Control"] = "no-cache, no-store, must-revalidate, max-age=0"
    return response
