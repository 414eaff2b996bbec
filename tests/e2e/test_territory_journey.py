"""The territory journey (issue 3, "done means") in Debian's Chromium at 1024x768:

a branch manager opens 网格规划, draws a new grid over merchants of a neighbouring grid with
Leaflet-Geoman (clicks on the map at computed pixel positions), sees in the diff preview the merchants
it will take, applies it and sees the counts change (page and database); imports a GeoJSON file of
three grids, one of them a bow-tie, and gets that row's error with nothing saved; the page also
holds at 768x1024 (portrait screenshot); and an account manager of another sub-branch can neither
open the page nor fetch any of its data.

Screenshots: test-artifacts/screenshots/territory-*-<viewport>.png."""

import json
from pathlib import Path

import pytest
from django.contrib.gis.geos import Point

from crm.models import Merchant
from grids.models import Grid, RedrawProposal
from tests.e2e.conftest import open_tab
from tests.factories import MerchantFactory

pytestmark = pytest.mark.e2e

URL = "/territory/"
TOUCH = 44


@pytest.fixture
def viewport():
    """The journey runs in landscape (1024x768); one step opens a portrait tab of its own."""
    return "landscape"


def login(tab, username: str, password: str = "pw"):
    page = tab.page
    page.goto(tab.url("/accounts/login/"))
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click(".login-card button[type=submit]")
    page.wait_for_load_state("load")


def wait_ready(page):
    page.wait_for_selector("#territory-map[data-state=ready]")


def screen_point(page, lon: float, lat: float) -> tuple[float, float]:
    """Where a WGS 84 point is on the screen (the map may shift it for a GCJ-02 base map)."""
    return tuple(
        page.evaluate(
            """([lon, lat]) => {
                const t = window.gridcrmTerritory;
                const p = t.map.latLngToContainerPoint(t.toDisplay(lon, lat));
                const box = t.map.getContainer().getBoundingClientRect();
                return [box.left + p.x, box.top + p.y];
            }""",
            [lon, lat],
        )
    )


def small_targets(page, selector: str) -> list:
    return page.eval_on_selector_all(
        selector,
        f"""els => els.filter(e => e.offsetParent !== null).map(e => {{
            const r = e.getBoundingClientRect();
            return {{what: e.className || e.tagName, text: e.textContent.trim().slice(0, 20), w: r.width, h: r.height}};
        }}).filter(r => r.w < {TOUCH} || r.h < {TOUCH})""",
    )


def assert_no_overlap(page, selectors: list[str]):
    """The boxes of these elements (when shown) do not intersect each other."""
    boxes = []
    for sel in selectors:
        for handle in page.query_selector_all(sel):
            if handle.is_visible():
                b = handle.bounding_box()
                if b:
                    boxes.append((sel, b))
    for i, (sa, a) in enumerate(boxes):
        for sb, b in boxes[i + 1 :]:
            if sa == sb:
                continue
            apart = (
                a["x"] + a["width"] <= b["x"] + 0.5
                or b["x"] + b["width"] <= a["x"] + 0.5
                or a["y"] + a["height"] <= b["y"] + 0.5
                or b["y"] + b["height"] <= a["y"] + 0.5
            )
            assert apart, f"{sa} overlaps {sb}: {a} / {b}"


def assert_fits(page):
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, "the page scrolls sideways"


LAYOUT = [".app-header", ".territory-toolbar", ".territory-map", ".territory-panel"]
TARGETS = (
    ".tool, .panel-tab, .grid-row, .btn, .territory-panel select, .territory-panel input[type=text], .leaflet-bar a"
)


def grid_count(page, grid_id: int) -> int:
    return int(page.get_attribute(f"[data-testid=grid-count-{grid_id}]", "data-count"))


@pytest.fixture
def territory(world):
    """Grid A of 西湖支行 with five merchants of am_a: three in its eastern part (the new grid will
    take them), two in the west (they stay)."""
    x0, y0, x1, y1 = world.grid_a.geom.extent
    w, h = x1 - x0, y1 - y0
    east = [
        MerchantFactory(
            name=name, grid=world.grid_a, owner=world.am_a, location=Point(x0 + fx * w, y0 + fy * h, srid=4326)
        )
        for name, fx, fy in (("东区五金店", 0.75, 0.35), ("东区面馆", 0.85, 0.5), ("东区药房", 0.7, 0.65))
    ]
    west = [
        MerchantFactory(
            name=name, grid=world.grid_a, owner=world.am_a, location=Point(x0 + fx * w, y0 + fy * h, srid=4326)
        )
        for name, fx, fy in (("西区茶馆", 0.2, 0.4), ("西区超市", 0.3, 0.7))
    ]
    # A merchant of another sub-branch: never on this page.
    other = MerchantFactory(name="滨江外卖店", grid=world.grid_c, owner=world.am_c)
    return {"east": east, "west": west, "other": other, "extent": (x0, y0, x1, y1)}


def bow_tie_file(tmp_path, world) -> str:
    """Three grids south of the sub-branch's grids, clear of them; row 2 is a bow-tie."""
    x0, y0, _x1, _y1 = world.grid_a.geom.extent
    y = y0 - 0.03

    def square(x):
        return [[[x, y], [x + 0.008, y], [x + 0.008, y + 0.008], [x, y + 0.008], [x, y]]]

    bx = x0 + 0.01
    bow_tie = [[[bx, y], [bx + 0.008, y + 0.008], [bx + 0.008, y], [bx, y + 0.008], [bx, y]]]
    features = [
        {
            "type": "Feature",
            "properties": {"名称": "导入一", "编码": "IMP-1", "类型": "商圈"},
            "geometry": {"type": "Polygon", "coordinates": square(x0)},
        },
        {
            "type": "Feature",
            "properties": {"名称": "导入二", "编码": "IMP-2", "类型": "园区"},
            "geometry": {"type": "Polygon", "coordinates": bow_tie},
        },
        {
            "type": "Feature",
            "properties": {"名称": "导入三", "编码": "IMP-3", "类型": "社区"},
            "geometry": {"type": "Polygon", "coordinates": square(x0 + 0.02)},
        },
    ]
    path = tmp_path / "三个网格.geojson"
    path.write_text(
        json.dumps({"type": "FeatureCollection", "features": features}, ensure_ascii=False), encoding="utf-8"
    )
    return str(path)


def test_territory_journey(tab, browser, live_server, world, territory, tmp_path):
    page = tab.page
    grid_a = world.grid_a

    # -- 1. The branch manager opens the territory page from the main nav -------------------------
    login(tab, "branch_manager")
    page.click(".app-nav a[href='/territory/']")
    wait_ready(page)
    assert page.locator("#territory-map").get_attribute("data-grids") == "2"  # grids A and B only
    assert grid_count(page, grid_a.pk) == 5
    assert page.locator("[data-testid=sub-branch-name]").inner_text().strip() == world.sb1.name
    # Geoman's toolbar speaks Chinese (setLang("zh")).
    assert page.get_attribute(".leaflet-pm-toolbar .button-container", "title") == "绘制多边形"
    assert world.grid_c.name not in page.content() and territory["other"].name not in page.content()
    assert small_targets(page, TARGETS) == []
    assert_no_overlap(page, LAYOUT)
    assert_fits(page)
    tab.screenshot("territory-1-open")

    # -- 2. Draws a new grid over the eastern part of grid A (Geoman draw mode, real clicks) --------
    x0, y0, x1, y1 = territory["extent"]
    w, h = x1 - x0, y1 - y0
    corners = [
        (x0 + 0.6 * w, y0 + 0.2 * h),
        (x0 + 0.95 * w, y0 + 0.2 * h),
        (x0 + 0.95 * w, y0 + 0.8 * h),
        (x0 + 0.6 * w, y0 + 0.8 * h),
    ]
    page.click("[data-testid=tool-draw]")
    assert page.get_attribute("[data-testid=tool-draw]", "aria-pressed") == "true"
    page.wait_for_selector("[data-testid=territory-hint]:not([hidden])")
    for lon, lat in corners:
        x, y = screen_point(page, lon, lat)
        page.mouse.click(x, y)
    tab.screenshot("territory-2-drawing")
    x, y = screen_point(page, *corners[0])
    page.mouse.click(x, y)  # tapping the first corner closes the polygon
    page.wait_for_selector("[data-testid=grid-form]")

    page.fill("#tf-name", "东区商圈")
    page.fill("#tf-code", "XH-NEW-1")
    page.select_option("#tf-kind", "business_district")
    page.select_option("#tf-leader", str(world.grid_leader_a.pk))
    assert page.is_checked("[data-testid=trim-neighbours]")
    assert small_targets(page, TARGETS) == []
    tab.screenshot("territory-3-form")

    # -- 3. The diff preview: the merchants the new grid takes, per account manager, on the map ---
    page.click("[data-testid=form-preview]")
    page.wait_for_selector("[data-testid=diff-table]")
    rows = page.locator("[data-testid=diff-table] tbody tr")
    moved_names = sorted(rows.nth(i).locator("td").first.inner_text().strip() for i in range(rows.count()))
    assert moved_names == sorted(m.name for m in territory["east"])
    first = rows.first.inner_text()
    assert grid_a.name in first and "东区商圈" in first and str(world.am_a) in first
    assert page.inner_text("[data-testid=diff-merchant-count]").strip() == "3"
    assert str(world.am_a) in page.inner_text("[data-testid=diff-per-am]")
    assert page.locator("[data-testid=moving-marker]").count() == 3
    for m in territory["west"]:
        assert m.name not in page.inner_text("[data-testid=view-diff]")
    # Nothing has moved yet.
    assert Merchant.objects.filter(grid=grid_a).count() == 5
    assert RedrawProposal.objects.filter(status="proposed").count() == 1
    assert small_targets(page, TARGETS) == []
    assert_no_overlap(page, LAYOUT)
    tab.screenshot("territory-4-diff")

    # -- 4. Apply: the counts change on the page and in the database ------------------------------
    page.click("[data-testid=diff-apply]")
    page.wait_for_selector("#territory-map[data-applied]")
    page.wait_for_selector("[data-testid=panel-flash]:not([hidden])")
    new_grid = Grid.objects.get(code="XH-NEW-1")
    assert new_grid.sub_branch_id == world.sb1.pk and new_grid.kind == "business_district"
    page.click("[data-testid=detail-back]")
    assert grid_count(page, grid_a.pk) == 2
    assert grid_count(page, new_grid.pk) == 3
    assert page.locator("#territory-map").get_attribute("data-grids") == "3"
    assert Merchant.objects.filter(grid=grid_a).count() == 2
    assert set(Merchant.objects.filter(grid=new_grid).values_list("name", flat=True)) == {
        m.name for m in territory["east"]
    }
    assert RedrawProposal.objects.get().status == "applied"
    assert new_grid.memberships.filter(role="grid_leader", user=world.grid_leader_a).exists()
    grid_a.refresh_from_db()
    assert grid_a.version == 2 and grid_a.versions.count() >= 1
    tab.screenshot("territory-5-applied")

    # The new grid's details: versions and team.
    page.click(f"[data-testid=grid-row-{new_grid.pk}]")
    page.wait_for_selector("[data-testid=team-list] li")
    assert str(world.grid_leader_a) in page.inner_text("[data-testid=team-list]")
    page.wait_for_selector("[data-testid=detail-versions] li")
    tab.screenshot("territory-6-detail")

    # Coverage: choropleth, legend and sortable table.
    page.click("[data-testid=tab-coverage]")
    page.wait_for_selector("[data-testid=coverage-table] tbody tr")
    assert page.locator("[data-testid=coverage-table] tbody tr").count() == 3
    page.locator("[data-testid=coverage-table] thead .sort-button").nth(1).click()  # by merchants
    counts = page.locator("[data-testid=coverage-table] tbody tr td:nth-child(2)").all_inner_texts()
    assert [int(c) for c in counts] == sorted(int(c) for c in counts)
    tab.screenshot("territory-7-coverage")
    page.click("[data-testid=tab-gaps]")
    page.wait_for_selector("[data-testid=no-gaps], [data-testid=gap-list]")
    page.click("[data-testid=tab-grids]")

    # -- 5. Import three grids, one a bow-tie: the row's error, nothing saved ---------------------
    grids_before = Grid.objects.count()
    page.click("[data-testid=tool-import]")
    page.set_input_files("[data-testid=import-file]", bow_tie_file(tmp_path, world))
    page.click("[data-testid=import-inspect]")
    page.wait_for_selector("[data-testid=import-map-name]")
    assert page.input_value("[data-testid=import-map-name]") == "名称"
    assert page.input_value("[data-testid=import-map-code]") == "编码"
    assert page.input_value("[data-testid=import-map-kind]") == "类型"
    tab.screenshot("territory-8-import-mapping")
    page.click("[data-testid=import-preview]")
    page.wait_for_selector("[data-testid=import-report]")
    bad = page.locator("[data-testid=import-row-2]")
    assert "row-error" in bad.get_attribute("class")
    assert "self-intersection" in bad.inner_text().lower()
    for ok in ("import-row-1", "import-row-3"):
        assert "row-error" not in (page.get_attribute(f"[data-testid={ok}]", "class") or "")
    assert page.is_visible("[data-testid=import-has-errors]")
    assert page.is_disabled("[data-testid=import-commit]")
    assert page.locator("[data-testid=error-spot]").count() >= 1  # where the polygon crosses itself
    assert Grid.objects.count() == grids_before
    assert not Grid.objects.filter(code__startswith="IMP-").exists()
    tab.screenshot("territory-9-import-report")
    # Committing anyway (straight to the API, with the page's session) is refused the same way.
    status, errors = page.evaluate(
        """async ([text, sb]) => {
            const fd = new FormData();
            fd.append("file", new Blob([text], {type: "application/geo+json"}), "grids.geojson");
            fd.append("sub_branch", String(sb));
            fd.append("mapping", JSON.stringify({name: "名称", code: "编码", kind: "类型"}));
            const token = document.querySelector("input[name=csrfmiddlewaretoken]").value;
            const r = await fetch("/api/v1/imports/grids/commit/", {
                method: "POST", body: fd, credentials: "same-origin", headers: {"X-CSRFToken": token},
            });
            const body = await r.json();
            return [r.status, body.error_count];
        }""",
        [Path(bow_tie_file(tmp_path, world)).read_text(encoding="utf-8"), world.sb1.pk],
    )
    assert (status, errors) == (400, 1)
    assert Grid.objects.count() == grids_before
    # Chromium logs that deliberate 400 as a console error; nothing else may be there.
    assert len([e for e in tab.errors if "400" in e]) == 1
    tab.errors = [e for e in tab.errors if "400" not in e]

    # Export: the links give this sub-branch's grids (GeoJSON and Excel).
    page.click("[data-testid=tool-export]")
    href = page.get_attribute("[data-testid=export-geojson]", "href")
    exported = page.request.get(tab.url(href))
    assert exported.status == 200
    assert {f["properties"]["code"] for f in exported.json()["features"]} == {
        grid_a.code,
        world.grid_b.code,
        "XH-NEW-1",
    }
    excel = page.request.get(tab.url(page.get_attribute("[data-testid=export-excel]", "href")))
    assert excel.status == 200 and excel.body()[:2] == b"PK"
    assert small_targets(page, TARGETS) == []

    # -- 6. Portrait (768x1024): the panel is a bottom sheet, nothing overlaps --------------------
    portrait = open_tab(browser, live_server.url, "portrait")
    try:
        login(portrait, "branch_manager")
        portrait.page.goto(portrait.url(URL))
        wait_ready(portrait.page)
        assert small_targets(portrait.page, TARGETS) == []
        assert_no_overlap(portrait.page, LAYOUT)
        assert_fits(portrait.page)
        map_box = portrait.page.locator(".territory-map").bounding_box()
        panel_box = portrait.page.locator(".territory-panel").bounding_box()
        assert panel_box["y"] >= map_box["y"] + map_box["height"] - 1  # the sheet sits under the map
        portrait.page.click(f"[data-testid=grid-row-{new_grid.pk}]")
        portrait.page.wait_for_selector("[data-testid=detail-title]")
        portrait.screenshot("territory-10-portrait")
        portrait.assert_clean()
    finally:
        portrait.context.close()

    # -- 7. An account manager of another sub-branch sees and fetches nothing of it --------------
    outsider = open_tab(browser, live_server.url, "landscape")
    try:
        login(outsider, "am_c")
        assert outsider.page.locator(".app-nav a[href='/territory/']").count() == 0
        response = outsider.page.goto(outsider.url(URL))
        assert response.status == 403
        # Chromium logs the 403 of the page itself as a console error: that one is expected.
        outsider.errors = [e for e in outsider.errors if "403" not in e]
        assert grid_a.name not in outsider.page.content()
        proposal = RedrawProposal.objects.get()
        get = outsider.page.request.get
        for path in (
            f"/api/v1/grids/{new_grid.pk}/",
            f"/api/v1/grids/{new_grid.pk}/versions/",
            f"/api/v1/grids/{new_grid.pk}/team/",
            f"/api/v1/redraw-proposals/{proposal.pk}/",
            f"/api/v1/sub-branches/{world.sb1.pk}/gaps/",
        ):
            assert get(outsider.url(path)).status == 404, path
        layer = get(outsider.url(f"/api/v1/layers/grids/?sub_branch={world.sb1.pk}")).json()
        assert layer["features"] == []
        coverage = get(outsider.url(f"/api/v1/reports/coverage/?sub_branch={world.sb1.pk}")).json()
        assert coverage["results"] == []
        exported = get(outsider.url(f"/api/v1/exports/grids/?sub_branch={world.sb1.pk}&format=geojson"))
        assert exported.status in (200, 403, 404)
        if exported.status == 200:
            assert exported.json()["features"] == []
        merchants = get(outsider.url(f"/api/v1/merchants/?grid={new_grid.pk}")).json()
        assert merchants["results"] == []
        outsider.screenshot("territory-11-outsider")
        outsider.assert_clean()
    finally:
        outsider.context.close()

    tab.assert_clean()


@pytest.fixture
def ring(world):
    """A grid of 西湖支行 north of grids A and B with a hole in it: a gap in the coverage."""
    from django.contrib.gis.geos import MultiPolygon, Polygon

    from tests.factories import GridFactory

    x0, y0, _x1, _y1 = world.grid_a.geom.extent
    y = y0 + 0.02
    outer = ((x0, y), (x0 + 0.01, y), (x0 + 0.01, y + 0.01), (x0, y + 0.01), (x0, y))
    hole = ((x0 + 0.003, y + 0.003), (x0 + 0.003, y + 0.007), (x0 + 0.007, y + 0.007), (x0 + 0.007, y + 0.003))
    hole = (*hole, hole[0])
    return GridFactory(sub_branch=world.sb1, name="环形网格", geom=MultiPolygon(Polygon(outer, hole), srid=4326))


def drag(page, start, end):
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(*end, steps=12)
    page.mouse.up()


def test_territory_tools_gaps_overlap_merge_split(tab, world, territory, ring):
    """The other tools: the gaps layer with its area; a reshaped boundary that overlaps a sibling is
    refused until the manager accepts the overlap (grids and m² listed); merge; split by a line."""
    page = tab.page
    grid_a, grid_b = world.grid_a, world.grid_b
    login(tab, "branch_manager")
    page.goto(tab.url(URL))
    wait_ready(page)

    # Gaps: the ring's hole, hatched, with its area.
    page.click("[data-testid=tab-gaps]")
    page.wait_for_selector("[data-testid=gap-list] li")
    assert page.locator("[data-testid=gap-list] li").count() == 1
    assert "平方米" in page.inner_text("[data-testid=gap-list]")  # the area, in the zh-hans UI
    assert page.locator("path.gap-shape").count() == 1
    assert page.locator("#territory-gap-hatch").count() == 1
    tab.screenshot("territory-12-gaps")
    page.click("[data-testid=tab-grids]")

    # Edit boundary: drag grid A's north-east corner into grid B.
    page.click(f"[data-testid=grid-row-{grid_a.pk}]")
    page.wait_for_selector("[data-testid=detail-title]")
    page.click("[data-testid=tool-edit]")
    page.wait_for_selector(".marker-icon")
    x0, y0, x1, y1 = territory["extent"]
    corner = screen_point(page, x1, y1)
    inside_b = screen_point(page, x1 + 0.4 * (x1 - x0), y1 - 0.3 * (y1 - y0))
    drag(page, corner, inside_b)
    page.click("[data-testid=hint-preview]")
    page.wait_for_selector("[data-testid=overlaps]")
    overlaps = page.inner_text("[data-testid=overlaps]")
    assert grid_b.name in overlaps and "平方米" in overlaps
    tab.screenshot("territory-13-overlap")
    page.click("[data-testid=diff-apply]")  # not accepted yet: refused, nothing written
    page.wait_for_selector("[data-testid=panel-flash].is-error")
    grid_a.refresh_from_db()
    assert grid_a.version == 1
    page.check("[data-testid=accept-overlaps]")
    page.click("[data-testid=diff-apply]")
    page.wait_for_selector("#territory-map[data-applied]")
    grid_a.refresh_from_db()
    grid_b.refresh_from_db()
    assert grid_a.version == 2 and grid_a.geom.intersection(grid_b.geom).area > 0

    # Merge A and B: B is retired, A keeps the union and takes B's merchants.
    page.wait_for_selector("[data-testid=detail-title]")
    page.click("[data-testid=tool-merge]")
    page.check(f"[data-testid=merge-pick-{grid_b.pk}]")
    page.click("[data-testid=merge-preview]")
    page.wait_for_selector("[data-testid=view-diff]:not([hidden])")
    page.click("[data-testid=diff-apply]")
    page.wait_for_function("document.querySelector('#territory-map').dataset.grids === '2'")
    grid_b.refresh_from_db()
    assert grid_b.status == "retired"

    # Split A (still selected after the merge) by a line from north to south through its middle.
    assert page.inner_text("[data-testid=detail-title]") == grid_a.name
    page.click("[data-testid=tool-split]")
    mid = x0 + 0.5 * (x1 - x0)
    top = screen_point(page, mid, y1 + 0.1 * (y1 - y0))
    bottom = screen_point(page, mid, y0 - 0.1 * (y1 - y0))
    page.mouse.click(*top)
    page.mouse.click(*bottom)
    page.mouse.click(*bottom)  # tapping the last point again ends the line
    page.wait_for_selector("#tf-new_name")
    page.fill("#tf-new_name", "网格A西")
    page.fill("#tf-new_code", "XH-SPLIT-1")
    page.click("[data-testid=split-preview]")
    page.wait_for_selector("[data-testid=view-diff]:not([hidden])")
    tab.screenshot("territory-14-split")
    page.click("[data-testid=diff-apply]")
    page.wait_for_function("document.querySelector('#territory-map').dataset.grids === '3'")
    part = Grid.objects.get(code="XH-SPLIT-1")
    assert part.sub_branch_id == world.sb1.pk
    total = Merchant.objects.filter(grid__in=[grid_a, part]).count()
    assert total == 5
    tab.assert_clean()
