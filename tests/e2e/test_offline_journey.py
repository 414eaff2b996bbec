"""The account manager's tablet works offline (issue 5): the field app under /field/.

Portrait tablet (768x1024), Chromium with a service worker and an emulated position. The account
manager logs in, opens /field/, waits for the working set and for the service worker to control the
page, goes offline, logs 20 visits with a photo each through the Log page, reloads the app while
still offline and finds the 20 queued (counter and list). Meanwhile a grid leader changes one
merchant on the server while the tablet edits the same field offline. Back online the outbox is
sent: exactly 20 visits and 20 photos on the server; the same 20 items put back into the outbox and
sent again change nothing; the edit comes back as a conflict, shown side by side, and applying it
again lands it. A second test walks every page in landscape (1024x768) for the screenshots and the
touch-target sizes.

Screenshots: test-artifacts/screenshots/field-*-<viewport>.png."""

import datetime
import gzip
import io
import math
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders
from django.utils import timezone
from rest_framework.test import APIClient

from crm.models import Activity, ActivityPhoto, Lead, Merchant, Task
from crm.services.merchants import merchant_save
from tests.e2e.conftest import open_tab
from tests.e2e.test_journeys import assert_fits_width, login

pytestmark = pytest.mark.e2e

# Offline really is offline for the service worker too: see PW_EXPERIMENTAL_SERVICE_WORKER_NETWORK_EVENTS
# in tests/e2e/conftest.py (checked below with a fetch from the page).

VISITS = 20
METRES_PER_DEGREE = 111_320
# What a finger uses on the field app's pages (inside the page, the top bar and the tabs).
TARGETS = (
    "#view a:not(.leaflet-control-attribution a), #view button, #view select, #view textarea, "
    "#view input:not([type=file]):not([type=radio]):not([type=checkbox]), #view label.check, "
    "#view .seg span, .topbar a, .topbar button, .topbar summary, .tabs a"
)


def jpeg(path: Path, shade: int) -> Path:
    from PIL import Image

    img = Image.new("RGB", (160, 120), (shade % 256, 120, 58))
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=80)
    path.write_bytes(buffer.getvalue())
    return path


def near(point, north_m: float = 0, east_m: float = 0) -> dict:
    lat = point.y + north_m / METRES_PER_DEGREE
    lon = point.x + east_m / (METRES_PER_DEGREE * math.cos(math.radians(point.y)))
    return {"latitude": lat, "longitude": lon, "accuracy": 15}


def assert_targets(page, where: str):
    small = page.eval_on_selector_all(
        TARGETS,
        """els => els.filter(e => e.offsetParent !== null).map(e => {
            const r = e.getBoundingClientRect();
            const what = (e.dataset.testid || e.className || e.tagName) + ' ' + e.textContent.trim().slice(0, 20);
            return {what, w: Math.round(r.width), h: Math.round(r.height)};
        }).filter(r => r.w < 48 || r.h < 48)""",
    )
    assert small == [], f"touch targets under 48 px on {where}: {small}"


def no_overlap(page, selector: str):
    """Direct children of ``selector`` must not overlap one another."""
    overlaps = page.eval_on_selector_all(
        selector,
        """els => {
            const out = [];
            for (const parent of els) {
                const kids = [...parent.children].filter(k => k.offsetParent !== null)
                    .map(k => [k, k.getBoundingClientRect()]);
                for (let i = 0; i < kids.length; i++) for (let j = i + 1; j < kids.length; j++) {
                    const [a, ra] = kids[i], [b, rb] = kids[j];
                    const apart = ra.right - 1 <= rb.left || rb.right - 1 <= ra.left
                        || ra.bottom - 1 <= rb.top || rb.bottom - 1 <= ra.top;
                    if (!apart)
                        out.push((a.className || a.tagName) + ' / ' + (b.className || b.tagName));
                }
            }
            return out;
        }""",
    )
    assert overlaps == [], f"overlapping elements in {selector}: {overlaps}"


def go_offline(tab):
    tab.context.set_offline(True)


def go_online(tab):
    tab.context.set_offline(False)


def wait_route(page, name: str):
    page.wait_for_selector(f"#view[data-ready={name}] .page[data-route={name}]")


def go(page, hash_: str, name: str):
    page.evaluate("h => { document.querySelector('#view').dataset.ready = ''; location.hash = h; }", hash_)
    wait_route(page, name)


def waiting(page) -> int:
    return int(page.get_attribute("[data-testid=outbox-count]", "data-count"))


def wait_waiting(page, n: int):
    """The outbox indicator shows ``n`` items waiting (fails after the default timeout)."""
    page.wait_for_function(
        "n => document.querySelector('[data-testid=outbox-count]').dataset.count === String(n)", arg=n
    )
    assert waiting(page) == n


def wait_synced(page):
    """The outbox is empty and no sync is running."""
    page.wait_for_function(
        """() => document.querySelector('[data-testid=outbox-count]').dataset.count === '0'
                 && !document.querySelector('[data-testid=sync]').disabled""",
        timeout=60_000,
    )


def open_field(tab):
    """Open the app and wait until the working set is stored and the service worker controls the page."""
    page = tab.page
    page.goto(tab.url("/field/"))
    page.wait_for_selector("body[data-synced='1']", timeout=30_000)
    page.wait_for_function("navigator.serviceWorker.controller !== null", timeout=30_000)
    page.wait_for_function(
        "async () => { const keys = await caches.keys(); if (!keys.length) return false;"
        " const c = await caches.open(keys[0]); return !!(await c.match('/field/')); }",
        timeout=30_000,
    )


@pytest.fixture
def field_world(world, crowd):
    """Grid A's merchants owned by am_a, a lead, follow-ups overdue and due today."""
    merchants = crowd["grid_a"]
    Merchant.objects.filter(pk__in=[m.pk for m in merchants]).update(owner=world.am_a)
    now = timezone.localtime()  # Asia/Shanghai, the tablets' time zone too
    Task.objects.create(
        owner=world.am_a, merchant=merchants[0], title="回访：补充流水", due_at=now - datetime.timedelta(days=2)
    )
    Task.objects.create(
        owner=world.am_a, merchant=merchants[1], title="送贷款申请表", due_at=now.replace(hour=23, minute=30)
    )
    Lead.objects.create(merchant=merchants[0], product="loan", stage="contacted", intent="high", owner=world.am_a)
    for m in merchants:
        m.refresh_from_db()
    return merchants


def test_offline_journey(browser, live_server, transactional_db, world, field_world, tmp_path):
    merchants = field_world
    start = merchants[0].location
    tab = open_tab(
        browser,
        live_server.url,
        "portrait",
        service_workers="allow",
        timezone_id=settings.TIME_ZONE,
        geolocation=near(start, north_m=30),
        permissions=["geolocation"],
    )
    page = tab.page
    context = tab.context
    try:
        login(tab, "am_a")
        open_field(tab)

        # -- My day, online: the overdue and today's follow-ups from the stored working set.
        wait_route(page, "day")
        assert page.get_attribute("[data-testid=net]", "data-state") == "online"
        assert page.locator("[data-testid=task]").count() == 2
        assert "回访：补充流水" in page.inner_text("[data-testid=due-list]")
        tab.screenshot("field-day")
        assert_targets(page, "My day")
        assert_fits_width(page)

        go(page, "#/nearby", "nearby")
        page.wait_for_selector("#view .page[data-map=ready][data-located='1']")
        tab.screenshot("field-nearby")
        assert_targets(page, "Nearby")
        assert_fits_width(page)
        go(page, "#/", "day")

        # -- Offline. The service worker's own fetches must fail too (checked, not assumed).
        go_offline(tab)
        page.wait_for_selector("[data-testid=net][data-state=offline]")
        reached = page.evaluate(
            "() => fetch('/api/v1/sync/status/', {credentials: 'same-origin'}).then(r => r.status, () => 'failed')"
        )
        assert reached in (503, "failed"), f"the server was reachable while offline: {reached}"
        tab.errors.clear()  # the probe's own 503 ("Failed to load resource") is not the app's error
        tab.screenshot("field-offline")

        # -- 20 visits with a photo each, through the Log page.
        photo = jpeg(tmp_path / "storefront.jpg", 90)
        for n in range(VISITS):
            m = merchants[n % len(merchants)]
            go(page, f"#/log?merchant={m.pk}", "log")
            page.wait_for_selector("[data-testid=picked]")
            page.click("[data-testid=outcome] label:nth-child(1)")
            page.click("[data-testid=intent] label:nth-child(2)")
            page.fill("[data-testid=notes]", f"离线走访 {n + 1}")
            page.set_input_files("[data-testid=photo-input]", str(photo))
            page.wait_for_selector("[data-testid=photo-count]:not(:empty)")
            page.wait_for_selector("[data-testid=checkin]:not(:has-text('…'))")
            if n == 0:
                tab.screenshot("field-log")
                assert_targets(page, "Log")
            page.click("[data-testid=save-log]")
            wait_route(page, "m")
            assert waiting(page) == n + 1
        tab.screenshot("field-merchant")
        assert_targets(page, "Merchant")

        # -- Reload while offline: the service worker serves the shell, IndexedDB the queue.
        page.reload()
        page.wait_for_selector("body[data-booted='1']")
        assert page.get_attribute("[data-testid=net]", "data-state") == "offline"
        assert waiting(page) == VISITS
        go(page, "#/queue", "queue")
        assert page.locator("[data-testid=queue-item][data-state=pending]").count() == VISITS
        tab.screenshot("field-queue-offline")
        # Keep the items, photos included, in the page for the replay below.
        uuids = page.evaluate(
            """() => new Promise((resolve, reject) => {
                const open = indexedDB.open('gridcrm-field');
                open.onsuccess = () => {
                    const req = open.result.transaction('outbox').objectStore('outbox').getAll();
                    req.onsuccess = () => {
                        window.__replay = req.result;
                        resolve(req.result.map(i => i.client_uuid));
                    };
                    req.onerror = reject;
                };
            })"""
        )
        assert len(uuids) == VISITS

        # -- A conflicting edit: the tablet changes the address offline, a colleague on the server.
        target = merchants[2]
        go(page, f"#/m/{target.pk}", "m")
        page.click("[data-testid=edit-merchant]")
        page.fill("[data-testid=edit-form] [name=address]", "平板上改的地址 8 号")
        page.click("[data-testid=edit-form] button[type=submit]")
        page.wait_for_selector("[data-testid=merchant-name] .chip-pending")
        assert waiting(page) == VISITS + 1
        merchant_save(
            merchant=Merchant.objects.get(pk=target.pk),
            by=world.grid_leader_a,
            fields={"address": "服务器上改的地址 9 号"},
        )

        # -- Online again: the outbox goes by itself (the online event), photos after their visits.
        go_online(tab)
        page.wait_for_selector("[data-testid=net][data-state=online]")
        wait_synced(page)
        assert Activity.objects.filter(client_uuid__in=uuids).count() == VISITS
        assert Activity.objects.filter(client_uuid__in=uuids, by=world.am_a, kind="visit").count() == VISITS
        assert ActivityPhoto.objects.filter(activity__client_uuid__in=uuids).count() == VISITS
        notes = set(Activity.objects.filter(client_uuid__in=uuids).values_list("notes", flat=True))
        assert notes == {f"离线走访 {n + 1}" for n in range(VISITS)}

        # -- The same batch again (photos included), through the app's outbox: nothing doubles.
        page.evaluate(
            """() => new Promise((resolve, reject) => {
                const open = indexedDB.open('gridcrm-field');
                open.onsuccess = () => {
                    const tx = open.result.transaction('outbox', 'readwrite');
                    for (const item of window.__replay) tx.objectStore('outbox').put({...item, state: 'pending'});
                    tx.oncomplete = resolve;
                    tx.onerror = reject;
                };
            })"""
        )
        page.click("[data-testid=sync]")
        wait_synced(page)
        assert Activity.objects.filter(client_uuid__in=uuids).count() == VISITS
        assert ActivityPhoto.objects.filter(activity__client_uuid__in=uuids).count() == VISITS
        # And straight to the API with the page's session: every item answers "duplicate".
        statuses = page.evaluate(
            """async () => {
                const csrf = document.cookie.match(/csrftoken=([^;]+)/)[1];
                const items = window.__replay.map(i => ({client_uuid: i.client_uuid, type: i.type,
                                                        device_time: i.device_time, payload: i.payload}));
                const r = await fetch('/api/v1/sync/', {method: 'POST', credentials: 'same-origin',
                    headers: {'Content-Type': 'application/json', 'X-CSRFToken': csrf}, body: JSON.stringify({items})});
                return (await r.json()).results.map(x => x.status);
            }"""
        )
        assert statuses == ["duplicate"] * VISITS
        assert Activity.objects.filter(client_uuid__in=uuids).count() == VISITS

        # -- The conflict is shown, not lost: mine vs the server's, then mine applied again.
        page.wait_for_selector("[data-testid=conflict-banner]")
        go(page, "#/conflicts", "conflicts")
        card = page.locator(f"[data-testid=conflict][data-merchant='{target.pk}']")
        assert card.locator("[data-testid=mine]").inner_text() == "平板上改的地址 8 号"
        assert card.locator("[data-testid=theirs]").inner_text() == "服务器上改的地址 9 号"
        tab.screenshot("field-conflict")
        assert_targets(page, "Conflicts")
        assert Merchant.objects.get(pk=target.pk).address == "服务器上改的地址 9 号"
        card.locator("[data-testid=reapply]").click()
        page.wait_for_selector("[data-testid=conflict]", state="detached")
        wait_synced(page)
        page.wait_for_function("() => !document.querySelector('[data-testid=conflict-banner]')")
        assert Merchant.objects.get(pk=target.pk).address == "平板上改的地址 8 号"

        # -- The visits show on My day as sent.
        go(page, "#/", "day")
        page.wait_for_selector("[data-testid=recent][data-state=sent]")
        assert page.locator("[data-testid=recent][data-state=pending]").count() == 0
        tab.assert_clean()
    finally:
        context.close()


def test_pages_landscape_and_size(browser, live_server, transactional_db, world, field_world):
    """Every page at 1024x768 (screenshots, finger-sized targets, nothing overlapping), the
    New merchant duplicate warning, and the My day first-load size."""
    merchants = field_world
    tab = open_tab(
        browser,
        live_server.url,
        "landscape",
        service_workers="allow",
        timezone_id=settings.TIME_ZONE,
        geolocation=near(merchants[3].location, east_m=20),
        permissions=["geolocation"],
    )
    page = tab.page
    try:
        login(tab, "am_a")
        loaded = []
        page.on("requestfinished", lambda request: loaded.append(request.url))
        open_field(tab)
        wait_route(page, "day")
        tab.screenshot("field-day")
        assert_targets(page, "My day")
        no_overlap(page, ".topbar-tools")
        no_overlap(page, ".tabs")
        assert_fits_width(page)

        # My day loads no map library; its compressed transfer size, tiles excluded (none here).
        day_assets = [u for u in loaded if "/static/" in u]
        assert not any("leaflet" in u for u in day_assets)
        total = shell_transfer_size(page, day_assets, world.am_a)
        print(f"\nMy day first load, gzip-compressed: {total / 1024:.1f} KB ({len(day_assets)} static files)")
        assert total < 500 * 1024

        go(page, "#/nearby", "nearby")
        page.wait_for_selector("#view .page[data-map=ready][data-located='1']")
        rows = page.locator("[data-testid=nearby-item]")
        assert rows.first.get_attribute("data-id") == str(merchants[3].pk), "nearest first"
        assert page.locator("[data-testid=nearby-item][data-stale='1']").count() == rows.count()  # nobody visited yet
        tab.screenshot("field-nearby")
        assert_targets(page, "Nearby")
        assert_fits_width(page)

        go(page, f"#/m/{merchants[0].pk}", "m")
        tab.screenshot("field-merchant")
        assert_targets(page, "Merchant")
        assert_fits_width(page)

        go(page, "#/log", "log")
        page.fill("[data-testid=merchant-search]", merchants[3].name[:2])
        page.wait_for_selector("[data-testid=pick]")
        tab.screenshot("field-log")
        assert_targets(page, "Log")
        assert_fits_width(page)

        go(page, "#/new", "new")
        page.wait_for_selector("[data-testid=position]:not(:has-text('…'))")
        page.fill("[data-testid=new-name]", merchants[3].name)
        page.fill("[data-testid=new-address]", "文二路 100 号")
        page.click("[data-testid=save-merchant]")
        page.wait_for_selector("[data-testid=duplicate-warning]")
        assert merchants[3].name in page.inner_text("[data-testid=duplicate-warning]")
        tab.screenshot("field-new")
        assert_targets(page, "New merchant")
        assert_fits_width(page)
        # Offline, the warning comes from the store.
        go_offline(tab)
        go(page, "#/", "day")
        go(page, "#/new", "new")
        page.wait_for_selector("[data-testid=position]:not(:has-text('…'))")
        page.fill("[data-testid=new-name]", merchants[4].name)
        page.click("[data-testid=save-merchant]")
        page.wait_for_selector("[data-testid=duplicate-warning]")
        assert merchants[4].name in page.inner_text("[data-testid=duplicate-warning]")
        tab.screenshot("field-new-offline")
        go_online(tab)

        # -- The session expires: the call logged meanwhile waits; after signing in again it goes.
        tab.context.clear_cookies()
        go(page, "#/", "day")
        go(page, f"#/log?merchant={merchants[5].pk}", "log")
        page.click("[data-testid=kind] label:nth-child(2)")
        page.click("[data-testid=outcome] label:nth-child(2)")
        page.fill("[data-testid=notes]", "会话过期时的电话")
        page.click("[data-testid=save-log]")
        page.wait_for_selector("[data-testid=sign-in-again]")
        # The banner may already show from the refused sync of the navigation above: wait for the
        # call itself to land in the outbox rather than reading the count once.
        wait_waiting(page, 1)
        # The browser logs the refused request itself; that is the expected answer, not an app error.
        tab.errors[:] = [e for e in tab.errors if "status of 403" not in e]
        tab.screenshot("field-sign-in-again")
        page.click("[data-testid=sign-in-again] a")
        page.fill("#id_username", "am_a")
        page.fill("#id_password", "pw")
        page.click(".login-card button[type=submit]")
        page.wait_for_url("**/field/**")
        page.wait_for_selector("body[data-synced='1']")
        wait_synced(page)
        assert Activity.objects.filter(by=world.am_a, kind="call", notes="会话过期时的电话").count() == 1
        assert page.locator("[data-testid=sign-in-again]").count() == 0

        # -- Another user signs in on this tablet: the previous user's store is gone before anything shows.
        tab.context.clear_cookies()
        login(tab, "am_c")
        open_field(tab)
        stored = page.evaluate(
            """() => new Promise(resolve => {
                const open = indexedDB.open('gridcrm-field');
                open.onsuccess = () => {
                    const req = open.result.transaction('merchants').objectStore('merchants').getAllKeys();
                    req.onsuccess = () => resolve(req.result);
                };
            })"""
        )
        assert set(stored) == set(Merchant.objects.filter(grid=world.grid_c).values_list("pk", flat=True))
        assert page.get_attribute("[data-testid=outbox-count]", "data-count") == "0"
        tab.assert_clean()
    finally:
        tab.context.close()


def shell_transfer_size(page, static_urls, user) -> int:
    """Bytes of the My day first load as a gzip-compressing server sends them: the shell HTML, the
    manifest and every static file the page fetched, each compressed (PNG as is), plus the working
    set as the API sent it (gzip)."""
    total = 0
    shell = page.evaluate("fetch('/field/', {credentials: 'same-origin'}).then(r => r.text())")
    total += len(gzip.compress(shell.encode()))
    manifest = page.evaluate("fetch('/field/manifest.webmanifest').then(r => r.text())")
    total += len(gzip.compress(manifest.encode()))
    for url in sorted(set(static_urls)):
        path = finders.find(url.split(settings.STATIC_URL, 1)[1].split("?")[0])
        data = Path(path).read_bytes()
        total += len(data) if path.endswith(".png") else len(gzip.compress(data))
    client = APIClient()
    client.force_authenticate(user)
    response = client.get("/api/v1/sync/working-set/", HTTP_ACCEPT_ENCODING="gzip")
    assert response.status_code == 200 and response["Content-Encoding"] == "gzip"
    total += len(response.content)
    return total
