"""Field journeys at tablet size (768x1024 and 1024x768) in Debian's Chromium.

Screenshots land in test-artifacts/screenshots/<name>-<viewport>.png."""

import math
import struct
import zlib

import pytest

pytestmark = pytest.mark.e2e

LAYER_PATH = "/api/v1/layers/"
# Everything a finger uses in the header and on the map.
TOUCH_TARGETS = (
    ".app-header a, .app-header button, .app-header summary, .btn, "
    ".leaflet-bar a, .map-panel-toggle, .map-layer-row, .merchant-cluster"
)


def login(tab, username: str, password: str = "pw"):
    page = tab.page
    page.goto(tab.url("/accounts/login/"))
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click(".login-card button[type=submit]")
    page.wait_for_load_state("load")


def open_map(tab, path: str = "/map/") -> dict:
    """Go to the map, wait until every layer is drawn; return {layer: FeatureCollection} as served."""
    page = tab.page
    served = {}

    def record(response):
        if LAYER_PATH in response.url and response.ok:
            served[response.url.split(LAYER_PATH)[1].split("/")[0]] = response

    page.on("response", record)
    if path == "/map/" and page.url.startswith(tab.base_url):
        page.click(".app-nav a[href='/map/']")
    else:
        page.goto(tab.url(path))
    page.wait_for_selector("#map[data-state=ready]")
    page.remove_listener("response", record)
    assert set(served) == {"grids", "places", "merchants"}
    return {key: response.json() for key, response in served.items()}


def merchants_drawn(page) -> int:
    """Merchants shown on screen: single markers plus the counts written on cluster icons."""
    singles = page.locator(".merchant-dot").count()
    clustered = sum(int(t) for t in page.locator(".merchant-cluster span").all_inner_texts())
    return singles + clustered


def assert_touch_targets(page):
    small = page.eval_on_selector_all(
        TOUCH_TARGETS,
        """els => els.filter(e => e.offsetParent !== null).map(e => {
            const r = e.getBoundingClientRect();
            return {what: e.className || e.tagName, text: e.textContent.trim().slice(0, 20), w: r.width, h: r.height};
        }).filter(r => r.w < 44 || r.h < 44)""",
    )
    assert small == [], f"touch targets under 44px: {small}"


def assert_fits_width(page):
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, "the page scrolls sideways"


# -- Journeys per role ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "role,heading",
    [
        ("admin", "支行"),
        ("regional_head", "支行"),
        ("mid_office", "支行"),
        ("branch_manager", "本支行网格"),
        ("grid_leader_a", "我的网格"),
        ("am_a", "我的网格"),
    ],
)
def test_role_journey_home_then_map(tab, world, crowd, role, heading):
    page = tab.page
    login(tab, role)
    assert page.url == tab.url("/")
    assert page.locator("html").get_attribute("lang") == "zh-hans"
    assert page.get_by_role("heading", name=heading, exact=True).is_visible()
    assert page.locator(".app-nav a[aria-current=page]").inner_text() == "首页"
    assert_touch_targets(page)
    assert_fits_width(page)
    tab.screenshot(f"home-{role}", full_page=True)

    layers = open_map(tab)
    grid_paths = page.locator("path.grid-shape")
    assert grid_paths.count() >= 1
    assert grid_paths.count() == len(layers["grids"]["features"])
    assert merchants_drawn(page) >= 1
    assert page.locator(".map-panel").is_visible()
    assert_touch_targets(page)
    assert_fits_width(page)
    tab.screenshot(f"map-{role}")
    tab.assert_clean()


def test_account_manager_map_holds_only_their_grid(tab, world, crowd):
    page = tab.page
    login(tab, "am_a")
    layers = open_map(tab)
    grid_a = world.grid_a.pk

    assert [f["properties"]["id"] for f in layers["grids"]["features"]] == [grid_a]
    merchant_grids = {f["properties"]["grid_id"] for f in layers["merchants"]["features"]}
    assert merchant_grids == {grid_a}
    assert layers["merchants"]["count"] == 1 + len(crowd["grid_a"])
    assert {f["properties"]["grid_id"] for f in layers["places"]["features"]} == {grid_a}

    # What is drawn matches what was served: grid A's polygon and every merchant of grid A.
    drawn_grids = page.eval_on_selector_all("path.grid-shape", "els => els.map(e => e.dataset.gridId)")
    assert drawn_grids == [str(grid_a)]
    assert merchants_drawn(page) == layers["merchants"]["count"]
    assert page.locator(".merchant-cluster").count() >= 1  # 15 merchants in one 1 km cell cluster

    # Zoom out: the reload still brings nothing from other grids, though they are now in view.
    with page.expect_response(lambda r: f"{LAYER_PATH}grids/" in r.url) as info:
        page.evaluate("gridcrmMap.map.setZoom(11)")
    assert [f["properties"]["id"] for f in info.value.json()["features"]] == [grid_a]
    page.wait_for_function("Number(document.getElementById('map').dataset.loads) >= 2")
    tab.screenshot("map-am_a-zoomed-out")
    tab.assert_clean()


def test_map_focus_from_the_home_page(tab, world, crowd):
    page = tab.page
    login(tab, "branch_manager")
    page.click(f"tr[data-grid-id='{world.grid_b.pk}'] a")
    page.wait_for_selector("#map[data-state=ready]")
    assert page.url.endswith(f"/map/?grid={world.grid_b.pk}")
    # The map opens on grid B: all of it in view, zoomed in to it (a 1 km cell).
    xmin, ymin, xmax, ymax = world.grid_b.geom.extent
    in_view = page.evaluate(f"gridcrmMap.map.getBounds().contains(L.latLngBounds([{ymin}, {xmin}], [{ymax}, {xmax}]))")
    assert in_view is True
    assert page.evaluate("gridcrmMap.map.getZoom()") >= 14
    tab.assert_clean()


def test_grid_popup_opens_with_a_tap(tab, world, crowd):
    page = tab.page
    login(tab, "grid_leader_a")
    open_map(tab)
    page.locator("path.grid-shape").first.click(position={"x": 8, "y": 8}, force=True)
    popup = page.locator(".leaflet-popup-content")
    popup.wait_for()
    assert world.grid_a.name in popup.inner_text()
    assert "编号" in popup.inner_text()
    page.wait_for_function("getComputedStyle(document.querySelector('.leaflet-popup')).opacity === '1'")
    tab.screenshot("map-popup")


def test_merchant_popup_opens_with_a_tap(tab, world, crowd):
    page = tab.page
    login(tab, "am_a")
    layers = open_map(tab)
    dot = page.locator(".merchant-dot").first
    merchant_id = int(dot.get_attribute("data-merchant-id"))
    dot.click()
    popup = page.locator(".leaflet-popup-content")
    popup.wait_for()
    served = {f["properties"]["id"]: f["properties"] for f in layers["merchants"]["features"]}
    assert served[merchant_id]["name"] in popup.inner_text()
    assert world.grid_a.name in popup.inner_text()
    # A tap on a cluster zooms in and splits it.
    zoom = page.evaluate("gridcrmMap.map.getZoom()")
    page.locator(".merchant-cluster").first.click()
    page.wait_for_function(f"gridcrmMap.map.getZoom() > {zoom}")


def test_a_failing_layer_shows_an_error(tab, world, crowd):
    page = tab.page
    login(tab, "am_a")
    page.route("**/api/v1/layers/merchants/**", lambda route: route.fulfill(status=500, body="boom"))
    page.click(".app-nav a[href='/map/']")
    page.wait_for_selector("#map[data-state=error]")
    error = page.locator("[data-testid=map-error]")
    assert error.is_visible()
    assert "加载失败" in error.inner_text()
    # The layers that did load are drawn all the same.
    assert page.locator("path.grid-shape").count() == 1
    tab.screenshot("map-error")


def test_layer_panel_switches_merchants_off_and_on(tab, world, crowd):
    page = tab.page
    login(tab, "am_a")
    open_map(tab)
    toggle = page.locator(".map-panel-toggle")
    if toggle.get_attribute("aria-expanded") == "false":
        toggle.click()
    assert page.locator(".legend-list").first.is_visible()
    tab.screenshot("map-panel-open")
    merchants_box = page.locator(".map-layer-row input[value=merchants]")
    merchants_box.uncheck()
    assert merchants_drawn(page) == 0
    with page.expect_response(lambda r: f"{LAYER_PATH}merchants/" in r.url):
        merchants_box.check()
    page.wait_for_function("document.querySelectorAll('.merchant-dot, .merchant-cluster').length > 0")
    toggle.click()
    assert not page.locator(".legend-list").first.is_visible()


def test_truncated_layers_show_a_notice(tab, world, crowd, settings):
    settings.MAP_LAYER_MAX_FEATURES = 5
    page = tab.page
    login(tab, "am_a")
    layers = open_map(tab)
    assert layers["merchants"]["truncated"] is True
    notice = page.locator("[data-testid=map-truncated]")
    assert notice.is_visible()
    assert "放大" in notice.inner_text()
    tab.screenshot("map-truncated")


def test_user_without_scope(tab, world, crowd):
    page = tab.page
    login(tab, "nobody")
    assert page.locator("[data-testid=no-scope]").is_visible()
    assert "还没有管辖范围" in page.inner_text("main")
    tab.screenshot("home-nobody")
    layers = open_map(tab)
    assert all(fc["features"] == [] for fc in layers.values())
    assert page.locator("[data-testid=map-empty]").is_visible()
    assert page.locator("path.grid-shape").count() == 0
    tab.screenshot("map-nobody")
    tab.assert_clean()


# -- Login, logout, language ----------------------------------------------------------------------


def test_wrong_password_shows_an_error(tab, world):
    page = tab.page
    tab.page.goto(tab.url("/"))
    assert page.url.startswith(tab.url("/accounts/login/"))
    tab.screenshot("login")
    login(tab, "am_a", "wrong")
    error = page.locator(".alert-error")
    assert error.is_visible()
    assert "密码" in error.inner_text()
    assert page.url.startswith(tab.url("/accounts/login/"))
    assert_touch_targets(page)
    tab.screenshot("login-error")
    tab.assert_clean()


def test_switch_to_english_and_back(tab, world, crowd):
    page = tab.page
    login(tab, "am_a")
    page.click(".lang-switch button[value=en]")
    page.wait_for_selector("html[lang=en]")
    assert page.locator(".app-nav a").all_inner_texts() == ["Home", "Map", "Merchants", "Reports"]
    assert page.get_by_role("heading", name="My grids").is_visible()
    assert "Account manager" in page.inner_text(".user-role")
    tab.screenshot("home-am_a-english", full_page=True)
    open_map(tab)
    assert "Layers and legend" in page.inner_text(".map-panel-toggle")
    tab.screenshot("map-am_a-english")
    page.click(".lang-switch button[value=zh-hans]")
    page.wait_for_selector("html[lang=zh-hans]")
    assert page.url == tab.url("/map/")
    assert "图层与图例" in page.inner_text(".map-panel-toggle")
    tab.assert_clean()


def test_logout_from_the_account_menu(tab, world):
    page = tab.page
    login(tab, "grid_leader_a")
    page.click(".user-menu summary")
    assert page.locator(".user-menu-panel").is_visible()
    assert "网格长" in page.inner_text(".user-menu-panel")
    tab.screenshot("user-menu")
    page.click(".user-menu-panel button[type=submit]")
    page.wait_for_url(lambda url: "/accounts/login/" in url)
    page.goto(tab.url("/"))
    assert "/accounts/login/" in page.url


# -- Base maps ------------------------------------------------------------------------------------


def png_1x1(rgb: tuple[int, int, int]) -> bytes:
    """A one-pixel PNG of one colour, served for every tile so the test needs no tile server."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes([0, *rgb])))
        + chunk(b"IEND", b"")
    )


def wgs84_to_gcj02(lng: float, lat: float) -> tuple[float, float]:
    """The published GCJ-02 forward formula (Krasovsky 1940 ellipsoid), independent of gcoord."""
    a, ee = 6378245.0, 0.00669342162296594323
    x, y = lng - 105.0, lat - 35.0
    dlat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * math.sqrt(abs(x))
    dlat += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    dlat += (20.0 * math.sin(y * math.pi) + 40.0 * math.sin(y / 3.0 * math.pi)) * 2.0 / 3.0
    dlat += (160.0 * math.sin(y / 12.0 * math.pi) + 320 * math.sin(y * math.pi / 30.0)) * 2.0 / 3.0
    dlng = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * math.sqrt(abs(x))
    dlng += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    dlng += (20.0 * math.sin(x * math.pi) + 40.0 * math.sin(x / 3.0 * math.pi)) * 2.0 / 3.0
    dlng += (150.0 * math.sin(x / 12.0 * math.pi) + 300.0 * math.sin(x / 30.0 * math.pi)) * 2.0 / 3.0
    rad = lat / 180.0 * math.pi
    magic = 1 - ee * math.sin(rad) ** 2
    sqrt_magic = math.sqrt(magic)
    dlat = (dlat * 180.0) / ((a * (1 - ee)) / (magic * sqrt_magic) * math.pi)
    dlng = (dlng * 180.0) / (a / sqrt_magic * math.cos(rad) * math.pi)
    return lng + dlng, lat + dlat


def test_no_tile_url_means_no_tile_layer(tab, world, crowd, settings):
    settings.MAP_TILE_URL = ""
    page = tab.page
    login(tab, "am_a")
    open_map(tab)
    assert page.locator(".leaflet-tile").count() == 0
    assert "未配置底图" in page.inner_text(".leaflet-control-attribution")


@pytest.mark.parametrize("viewport", ["landscape"])
def test_gcj02_base_map_shifts_at_display_time_only(tab, world, crowd, settings):
    settings.MAP_TILE_URL = tab.url("/tiles/{z}/{x}/{y}.png")
    settings.MAP_TILE_ATTRIBUTION = "Bank tiles"
    settings.MAP_TILE_CRS = "gcj02"
    page = tab.page
    page.route(
        "**/tiles/**", lambda route: route.fulfill(status=200, content_type="image/png", body=png_1x1((246, 240, 228)))
    )
    login(tab, "am_a")
    layers = open_map(tab)

    # The page shifts with gcoord, and gcoord agrees with the published formula.
    lng, lat = 120.155, 30.255
    shown = page.evaluate(f"(() => {{ const p = gridcrmMap.toDisplay({lng}, {lat}); return [p.lng, p.lat]; }})()")
    expected = wgs84_to_gcj02(lng, lat)
    assert shown == pytest.approx(expected, abs=1e-6)
    assert abs(shown[0] - lng) > 0.003  # ~ 450 m east in Hangzhou: the shift really happens
    back = page.evaluate(f"gridcrmMap.toData(L.latLng({expected[1]}, {expected[0]}))")
    assert back == pytest.approx([lng, lat], abs=1e-5)

    # Grid A is drawn shifted; the data served (and stored) is not.
    xmin, ymin, xmax, ymax = world.grid_a.geom.extent
    served = layers["grids"]["features"][0]["geometry"]["coordinates"][0][0]
    assert min(p[0] for p in served) == pytest.approx(xmin, abs=1e-6)
    drawn = page.evaluate(
        "(() => { const b = gridcrmMap.layers.grids.getBounds(); return [b.getWest(), b.getSouth()]; })()"
    )
    corners = [wgs84_to_gcj02(x, y) for x in (xmin, xmax) for y in (ymin, ymax)]
    assert drawn == pytest.approx([min(c[0] for c in corners), min(c[1] for c in corners)], abs=1e-6)
    # The tile layer is on, with its attribution.
    page.wait_for_selector(".leaflet-tile-loaded")
    assert "Bank tiles" in page.inner_text(".leaflet-control-attribution")
    tab.screenshot("map-gcj02")
    tab.assert_clean()
