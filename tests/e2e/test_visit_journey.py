"""The account manager logs visits from the merchant page (issue 4), then the book changes hands.

Portrait tablet (768x1024), Chromium with an emulated position: a visit ~50 m from the merchant is
accepted; an error from the API shows next to its field and nothing typed is lost; a second visit
~2 km away is flagged with the distance, carries a storefront photo (JPEG with EXIF GPS) and moves
the lead to interested; the timeline and the funnel update in place. Then the branch manager hands
the account manager's book to a colleague through the handover page; the colleague sees the
merchant as theirs with the visits, and the former manager gets a 404. A second test, landscape
(1024x768): location denied, the visit is saved without a check-in.

Screenshots: test-artifacts/screenshots/visit-*-<viewport>.png."""

import datetime
import io
import math
import re

import pytest
from django.utils import timezone, translation

from crm.choices import LeadStage
from crm.models import Activity, ActivityPhoto, Lead, LeadStageChange, Merchant, Task
from grids.models import Membership
from tests.e2e.conftest import SCREENSHOTS, open_tab
from tests.e2e.test_journeys import assert_fits_width, login
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.e2e

# Everything a finger uses in the log panel (the file input is hidden; its label is the button).
LOG_TARGETS = (
    "[data-testid=log-jump], #log .btn, #log select, #log textarea, #log input[type=text], "
    "#log input[type=date], #log .seg span"
)
METRES_PER_DEGREE = 111_320


def assert_log_targets(page):
    small = page.eval_on_selector_all(
        LOG_TARGETS,
        """els => els.filter(e => e.offsetParent !== null).map(e => {
            const r = e.getBoundingClientRect();
            return {what: e.id || e.className || e.tagName, w: r.width, h: r.height};
        }).filter(r => r.w < 44 || r.h < 44)""",
    )
    assert small == [], f"touch targets under 44px in the log panel: {small}"


def shot(tab, name: str, selector: str | None = None):
    """A screenshot of the viewport, or of one element. For an element taller than the screen the
    sticky app header is unstuck meanwhile (it keeps its place in the flow, so nothing moves), or
    the capture would show it across the element."""
    if selector is None:
        return tab.screenshot(name)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page = tab.page
    page.evaluate("document.querySelector('.app-header').style.position = 'static'")
    try:
        page.locator(selector).screenshot(path=str(SCREENSHOTS / f"{name}-{tab.viewport}.png"))
    finally:
        page.evaluate("document.querySelector('.app-header').style.position = ''")


def offset(point, north_m: float = 0, east_m: float = 0) -> dict:
    """Playwright geolocation ``north_m`` / ``east_m`` metres from ``point`` (WGS 84)."""
    lat = point.y + north_m / METRES_PER_DEGREE
    lon = point.x + east_m / (METRES_PER_DEGREE * math.cos(math.radians(point.y)))
    return {"latitude": lat, "longitude": lon, "accuracy": 12}


def storefront_jpeg(path, lon: float, lat: float):
    """A small JPEG with EXIF GPS and DateTimeOriginal, as a phone camera writes them."""
    from PIL import ExifTags, Image

    def dms(value):
        degrees = int(value)
        minutes = int((value - degrees) * 60)
        return (float(degrees), float(minutes), round((value - degrees - minutes / 60) * 3600, 3))

    img = Image.new("RGB", (320, 240), (196, 120, 58))
    for x in range(40, 280):  # a "signboard", so the thumbnail is recognisable
        for y in range(30, 70):
            img.putpixel((x, y), (160, 20, 20))
    exif = Image.Exif()
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = timezone.localtime().strftime("%Y:%m:%d %H:%M:%S")
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = dms(lat)
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = dms(lon)
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", exif=exif, quality=85)
    path.write_bytes(buffer.getvalue())
    return path


def js_errors(tab) -> list[str]:
    # The 400 of the field-error step and the 404 at the end are expected answers, logged by Chromium.
    return [e for e in tab.errors if "Failed to load resource" not in e]


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


@pytest.fixture
def noodle_shop(world, merchants):
    """Grid A's merchant, owned by am_a, with one open lead at "contacted"."""
    m = merchants["grid_a"]
    m.name = "张记面馆"
    m.address = "西湖区文三路 88 号"
    m.owner = world.am_a
    m.save()
    lead = Lead.objects.create(merchant=m, product="loan", stage="contacted", owner=world.am_a)
    return m, lead


@pytest.fixture
def colleague(world):
    """An account manager of grid B: same sub-branch as am_a, but not (yet) in grid A."""
    user = UserFactory(username="am_b", full_name="李娜")
    MembershipFactory(user=user, grid=world.grid_b, role="account_manager")
    return user


def save_and_wait(page, flag: str):
    page.click("#log-save")
    page.wait_for_selector(f"#log-result[data-flag={flag}]")
    page.wait_for_selector("#log-save:not([disabled])")  # photo upload and refresh done


def test_account_manager_logs_visits_then_the_book_is_handed_over(
    browser, live_server, transactional_db, world, noodle_shop, colleague, media, tmp_path
):
    shop, lead = noodle_shop
    base = live_server.url
    near = offset(shop.location, north_m=50)
    far = offset(shop.location, east_m=2000)
    with translation.override("zh-hans"):
        interested = str(LeadStage.INTERESTED.label)
    assert not Merchant.objects.restrict(colleague).filter(pk=shop.pk).exists()

    # -- The account manager, on a tablet in portrait, at the shop --------------------------------
    am = open_tab(browser, base, "portrait", geolocation=near, permissions=["geolocation"])
    page = am.page
    login(am, "am_a")
    page.click(".app-nav a[href='/merchants/']")
    page.click(f"tr[data-merchant-id='{shop.pk}'] .row-link")
    page.wait_for_selector("[data-testid=merchant-name]")
    shot(am, "visit-merchant-top")
    page.click("[data-testid=log-jump]")
    page.wait_for_function("document.getElementById('log-title').getBoundingClientRect().top >= 60")
    shot(am, "visit-log-jump")
    panel = page.locator("#log")
    assert panel.is_visible()
    assert page.locator("#log-photo").get_attribute("accept") == "image/*"
    assert page.locator("#log-photo").get_attribute("capture") == "environment"
    # One open lead: chosen already; only later stages are offered.
    assert page.input_value("#log-lead") == str(lead.pk)
    assert page.locator("#log-advance-to option[value=contacted]").is_disabled()
    assert page.locator("#log-advance-to option[value=visited]").is_enabled()

    page.click("#log-checkin")
    page.wait_for_selector("#log-position.is-set")
    assert f"{near['latitude']:.5f}" in page.inner_text("#log-position")
    page.select_option("#log-outcome", "reached")
    page.click("#log .seg:has(input[name=intent][value=medium])")
    page.fill("#log-notes", "老板在店，聊了流水和扩店计划。")
    due = (timezone.localdate() + datetime.timedelta(days=3)).isoformat()
    page.fill("#log-next-due", due)  # a due date without a next step: the API refuses it
    page.select_option("#log-advance-to", "visited")
    assert_log_targets(page)
    assert_fits_width(page)
    shot(am, "visit-panel", "#log")

    page.click("#log-save")
    page.wait_for_selector(".log-field[data-field=next_step].field-invalid .field-error:not([hidden])")
    page.wait_for_selector("#log-save:not([disabled])")
    assert page.locator("#log-alert").is_visible()
    assert page.input_value("#log-notes") == "老板在店，聊了流水和扩店计划。"  # nothing lost
    assert page.input_value("#log-next-due") == due
    assert page.locator("#log-position.is-set").count() == 1
    assert Activity.objects.count() == 0
    shot(am, "visit-field-error", "#log")

    page.fill("#log-next-step", "周五带经营贷方案再访")
    save_and_wait(page, "ok")
    result = page.inner_text("#log-result")
    assert re.search(r"\b(4\d|5\d)\b", result), result  # ~50 m
    assert page.locator("#log-position.is-set").count() == 0  # the next visit checks in again
    assert page.input_value("#log-notes") == ""
    page.wait_for_selector("#timeline .tl-item.tl-new [data-testid=checkin][data-flag=ok]")
    assert page.locator(f".lead[data-lead-id='{lead.pk}'] .stagebar li.current").inner_text().strip() != interested
    shot(am, "visit-accepted")

    # -- The second visit: the tablet says it is ~2 km away -------------------------------------
    am.context.set_geolocation(far)
    page.click("#log-checkin")
    page.wait_for_function(f"document.getElementById('log-position').textContent.includes('{far['longitude']:.5f}')")
    page.click("#log .seg:has(input[name=intent][value=high])")
    page.fill("#log-notes", "老板同意提交申请材料。")
    page.select_option("#log-photo-kind", "storefront")
    photo = storefront_jpeg(tmp_path / "门头照.jpg", shop.location.x, shop.location.y)
    page.set_input_files("#log-photo", str(photo))
    page.wait_for_selector("#log-photo-preview:not([hidden]) img")
    page.select_option("#log-advance-to", "interested")
    shot(am, "visit-panel-photo", "#log")
    save_and_wait(page, "too_far")

    visits = list(Activity.objects.filter(merchant=shop).order_by("occurred_at", "id"))
    assert [v.kind for v in visits] == ["visit", "visit"]
    assert [v.checkin_flag for v in visits] == ["ok", "too_far"]
    assert 40 <= visits[0].checkin_distance_m <= 60
    assert 1950 <= visits[1].checkin_distance_m <= 2050
    assert visits[0].checkin_accuracy_m == pytest.approx(12)
    result = page.inner_text("#log-result")
    assert f"{round(visits[1].checkin_distance_m):,}" in result, result  # "2,0xx m ... 200 m"
    assert "200" in result
    assert page.locator("#log-result.is-flagged").count() == 1

    photo_row = ActivityPhoto.objects.get()
    assert photo_row.activity_id == visits[1].pk and photo_row.kind == "storefront"
    assert photo_row.content_type == "image/jpeg"
    assert photo_row.file.storage.exists(photo_row.file.name)
    assert photo_row.exif_location is not None
    assert photo_row.exif_location.distance(shop.location) < 0.0001

    lead.refresh_from_db()
    assert lead.stage == LeadStage.INTERESTED and lead.intent == "high"
    moves = list(LeadStageChange.objects.filter(lead=lead).order_by("at").values_list("to_stage", "activity_id"))
    assert moves == [("visited", visits[0].pk), ("interested", visits[1].pk)]
    task = Task.objects.get(activity=visits[0])
    assert task.title == "周五带经营贷方案再访" and task.owner == world.am_a
    assert timezone.localtime(task.due_at).date().isoformat() == due

    # The timeline and the funnel, refreshed without a reload.
    timeline = page.locator("#timeline")
    flags = timeline.locator(".tl-activity [data-testid=checkin]")
    assert sorted(flags.evaluate_all("els => els.map(e => e.dataset.flag)")) == ["ok", "too_far"]
    assert timeline.locator(".tl-flagged").count() == 1
    assert f"{round(visits[1].checkin_distance_m)}" in timeline.locator(".tl-flagged").inner_text()
    thumb = timeline.locator(".tl-flagged .tl-photos img")
    thumb.scroll_into_view_if_needed()
    page.wait_for_function("document.querySelector('#timeline .tl-flagged .tl-photos img').naturalWidth > 0")
    assert timeline.locator(".tl-stage_change").count() == 2
    assert interested in timeline.locator(".tl-stage_change").first.inner_text()
    assert page.locator(f".lead[data-lead-id='{lead.pk}'] .stagebar li.current").inner_text().strip() == interested
    assert page.locator(f".lead[data-lead-id='{lead.pk}'] .lead-head .badge").inner_text().strip() == interested
    assert page.locator("#log-advance-to option[value=interested]").is_disabled()
    assert_fits_width(page)
    shot(am, "visit-flagged")
    page.locator("[data-testid=funnel]").scroll_into_view_if_needed()
    shot(am, "visit-funnel")
    shot(am, "visit-timeline", "[data-testid=timeline]")
    # A reload shows the same (server-rendered) timeline.
    page.reload()
    assert page.locator("#timeline .tl-flagged .tl-photos img").count() == 1
    assert page.locator("#timeline [data-testid=checkin][data-flag=ok]").count() == 1
    assert am.external_requests == [] and js_errors(am) == []

    # -- The branch manager hands am_a's book to the colleague ----------------------------------
    bm = open_tab(browser, base, "portrait")
    page = bm.page
    login(bm, "branch_manager")
    page.click("[data-testid=handover-link]")
    page.select_option("#id_pick", str(world.am_a.pk))
    page.click(".picker button[type=submit]")
    page.wait_for_selector("[data-testid=handover-form]")
    assert page.inner_text("[data-testid=merchant-count]") == "1"
    assert page.inner_text("[data-testid=lead-count]") == "1"
    assert page.inner_text("[data-testid=task-count]") == "1"
    page.select_option("#id_to_user", str(colleague.pk))
    assert page.is_checked("#id_end_memberships")
    shot(bm, "visit-handover", "[data-testid=handover-form]")
    page.click("[data-testid=apply]")
    page.wait_for_url(re.compile(r"/handover/\d+/$"))
    assert page.inner_text("[data-testid=merchant-count]") == "1"
    shot(bm, "visit-handover-result")
    assert bm.external_requests == [] and js_errors(bm) == []
    bm.context.close()

    shop.refresh_from_db()
    assert shop.owner == colleague
    assert not Membership.objects.filter(user=world.am_a, grid=world.grid_a, end_date__isnull=True).exists()

    # -- The colleague sees the merchant as theirs, with its visits -----------------------------
    co = open_tab(browser, base, "portrait")
    page = co.page
    login(co, "am_b")
    page.click(".app-nav a[href='/merchants/']")
    page.check(".filter-check input[name=mine]")
    page.click(".filter-bar button[type=submit]")
    page.wait_for_selector(f"tr[data-merchant-id='{shop.pk}']")
    assert page.locator("[data-testid=merchant-table] tbody tr").count() == 1
    page.click(f"tr[data-merchant-id='{shop.pk}'] .row-link")
    page.wait_for_selector("[data-testid=merchant-name]")
    assert "李娜" in page.inner_text("[data-testid=profile]")
    timeline = page.locator("#timeline")
    assert timeline.locator(".tl-activity [data-testid=checkin]").count() == 2
    assert timeline.locator(".tl-flagged").count() == 1
    assert timeline.locator(".tl-photos img").count() == 1
    assert "老板同意提交申请材料" in timeline.inner_text()
    assert page.locator("#log").is_visible()  # they may log the next visit
    page.locator("[data-testid=timeline]").scroll_into_view_if_needed()
    shot(co, "visit-colleague")
    assert co.external_requests == [] and js_errors(co) == []
    co.context.close()

    # -- The former account manager lost access: the page is a 404 ------------------------------
    response = am.page.goto(am.url(f"/merchants/{shop.pk}/"))
    assert response.status == 404
    am.context.close()


def test_location_denied_saves_a_visit_without_check_in(browser, live_server, transactional_db, world, noodle_shop):
    shop, lead = noodle_shop
    tab = open_tab(browser, live_server.url, "landscape")  # no geolocation permission
    page = tab.page
    login(tab, "am_a")
    page.goto(tab.url(f"/merchants/{shop.pk}/"))
    page.click("[data-testid=log-jump]")
    page.click("#log-checkin")
    page.wait_for_selector("#log-geo-error:not([hidden])")
    assert page.locator("#log-position.is-set").count() == 0
    page.fill("#log-notes", "定位被拒绝，仍然记录拜访。")
    assert_log_targets(page)
    assert_fits_width(page)
    shot(tab, "visit-panel-denied", "#log")
    save_and_wait(page, "plain")
    visit = Activity.objects.get(merchant=shop)
    assert visit.kind == "visit" and visit.checkin_location is None and visit.checkin_flag == ""
    page.wait_for_selector("#timeline .tl-item.tl-new")
    assert "定位被拒绝" in page.inner_text("#timeline .tl-item.tl-new")
    page.locator("#log").scroll_into_view_if_needed()
    tab.screenshot("visit-panel")

    # A call: no check-in block.
    page.click("#log .seg:has(input[name=kind][value=call])")
    assert page.locator("[data-field=checkin]").is_hidden()
    page.select_option("#log-outcome", "not_reached")
    save_and_wait(page, "plain")
    assert Activity.objects.filter(merchant=shop, kind="call").count() == 1
    lead.refresh_from_db()
    assert lead.stage == "contacted"  # nothing moved it
    assert tab.external_requests == [] and js_errors(tab) == []
    tab.context.close()
