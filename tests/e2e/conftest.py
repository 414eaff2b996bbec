"""Browser journeys: Playwright (sync API) driving Debian's Chromium against pytest-django's live server.

Never ``playwright install``: it downloads a browser and fails here. Chromium comes from apt
(``make system TEST=1``), with fonts-wqy-microhei so Chinese renders."""

import os
import random
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.gis.geos import Point

from tests.factories import MerchantFactory

# Playwright's sync API runs an event loop in this thread; Django's ORM refuses to run next to one
# unless told it is safe (it is: the loop only talks to the browser).
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
# Chromium's offline emulation (context.set_offline) does not reach a service worker's own fetches
# unless Playwright attaches its network layer to the worker, which this switch turns on. It is read
# by the Playwright driver when it starts (the session's `browser` fixture). Without it the field
# app's service worker still reaches the live server "offline" (tests/e2e/test_offline_journey.py).
os.environ.setdefault("PW_EXPERIMENTAL_SERVICE_WORKER_NETWORK_EVENTS", "1")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
# The two tablet orientations every journey runs in.
VIEWPORTS = {"portrait": {"width": 768, "height": 1024}, "landscape": {"width": 1024, "height": 768}}
SCREENSHOTS = Path(settings.BASE_DIR) / "test-artifacts" / "screenshots"


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (make system TEST=1)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(params=list(VIEWPORTS))
def viewport(request) -> str:
    return request.param


class Tab:
    """A page plus what the journey must not see: requests leaving the live server, JS errors."""

    def __init__(self, page, base_url: str, viewport: str):
        self.page = page
        self.base_url = base_url
        self.viewport = viewport
        self.external_requests: list[str] = []
        self.errors: list[str] = []

    def url(self, path: str) -> str:
        return self.base_url + path

    def screenshot(self, name: str, full_page: bool = False) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}-{self.viewport}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        return path

    def assert_clean(self):
        assert self.external_requests == [], "the app must never load anything from outside"
        assert self.errors == [], "JavaScript errors on the page"


@pytest.fixture
def tab(browser, viewport, live_server, transactional_db):
    context = browser.new_context(
        viewport=VIEWPORTS[viewport],
        locale="zh-CN",  # a bank tablet in China; Django's LocaleMiddleware reads Accept-Language
        has_touch=True,
        device_scale_factor=1,
    )
    context.set_default_timeout(15_000)
    base = live_server.url
    tab = Tab(context.new_page(), base, viewport)

    def guard(route):
        tab.external_requests.append(route.request.url)
        route.abort()

    # Bank intranets have no internet: anything not served by the app is recorded and refused.
    context.route(re.compile(r"^(?!" + re.escape(base) + r"/).*"), guard)
    tab.page.on("pageerror", lambda exc: tab.errors.append(str(exc)))
    tab.page.on(
        "console",
        lambda msg: tab.errors.append(msg.text) if msg.type == "error" and "favicon" not in msg.text else None,
    )
    yield tab
    context.close()


@pytest.fixture
def crowd(world, merchants):
    """More merchants, spread inside grids A and C, so the map has clusters to draw."""
    rng = random.Random(7)
    out = {}
    for key, n in (("grid_a", 14), ("grid_c", 6)):
        grid = getattr(world, key)
        xmin, ymin, xmax, ymax = grid.geom.extent
        out[key] = [
            MerchantFactory(
                grid=grid,
                location=Point(rng.uniform(xmin + 0.001, xmax - 0.001), rng.uniform(ymin + 0.001, ymax - 0.001)),
                status=rng.choice(["prospect", "customer", "dormant"]),
            )
            for _ in range(n)
        ]
    return out


def open_tab(browser, base_url: str, viewport: str, **context_options) -> Tab:
    """A browser context of its own (own cookies: one per person of a journey) at a tablet size,
    guarded like the ``tab`` fixture. ``context_options`` go to ``browser.new_context`` (for
    example ``geolocation`` and ``permissions=["geolocation"]``). ``tab.context`` is the context:
    close it at the end (``tab.context.close()``)."""
    options = {"viewport": VIEWPORTS[viewport], "locale": "zh-CN", "has_touch": True, "device_scale_factor": 1}
    context = browser.new_context(**{**options, **context_options})
    context.set_default_timeout(15_000)
    tab = Tab(context.new_page(), base_url, viewport)
    tab.context = context

    def guard(route):
        tab.external_requests.append(route.request.url)
        route.abort()

    context.route(re.compile(r"^(?!" + re.escape(base_url) + r"/).*"), guard)
    tab.page.on("pageerror", lambda exc: tab.errors.append(str(exc)))
    tab.page.on(
        "console",
        lambda msg: tab.errors.append(msg.text) if msg.type == "error" and "favicon" not in msg.text else None,
    )
    return tab
