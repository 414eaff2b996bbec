"""Merchant 360 at tablet size (768x1024 and 1024x768): the list, the page with every section, the
relation graph, unmasking a phone (logged), older timeline pages, and the map popup's link.

Screenshots: test-artifacts/screenshots/merchant-*-<viewport>.png."""

import datetime
import io

import pghistory
import pytest
from django.contrib.auth.models import Permission
from django.contrib.gis.geos import Point
from django.core.files.base import ContentFile
from django.utils import timezone

from crm.models import (
    Activity,
    ActivityPhoto,
    EventAttendance,
    Industry,
    Lead,
    LeadStageChange,
    MerchantPerson,
    MerchantRelation,
    Person,
    PersonRelation,
    PiiAccess,
    ProductHolding,
)
from tests.e2e.test_journeys import assert_fits_width, assert_touch_targets, login, open_map
from tests.factories import MembershipFactory, MerchantFactory, UserFactory

pytestmark = pytest.mark.e2e

MERCHANT_TARGETS = ".btn, .crumbs a, .related-link, .row-link, .pii-toggle, .app-nav a, .photo-thumb"


def png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (96, 72), (200, 120, 60)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def shop(world, merchants):
    """A merchant of grid A with people, products, a lead history, visits, relations and history."""
    now = timezone.now()
    m = merchants["grid_a"]
    with pghistory.context(user=world.branch_manager.pk):
        m.name = "老王牛肉面馆"
        m.address = "西湖区文三路 128 号"
        m.industry = Industry.objects.filter(code="catering").first() or Industry.objects.first()
        m.owner = world.am_a
        m.status = "customer"
        m.save()
    boss = Person.objects.create(name="王建国", phone="13812345678", id_number="330106199001011234")
    wife = Person.objects.create(name="李秀英", phone="13900001111")
    clerk = Person.objects.create(name="赵会计", phone="057188889999")
    MerchantPerson.objects.create(merchant=m, person=boss, role="legal_rep")
    MerchantPerson.objects.create(merchant=m, person=boss, role="shareholder", share_pct=60)
    MerchantPerson.objects.create(merchant=m, person=clerk, role="contact", title="财务")
    PersonRelation.objects.create(from_person=boss, to_person=wife, kind="spouse")
    ProductHolding.objects.create(
        merchant=m,
        product="loan",
        balance=300000,
        opened_on=now.date() - datetime.timedelta(days=300),
        matures_on=now.date() + datetime.timedelta(days=45),
    )
    ProductHolding.objects.create(
        merchant=m, product="merchant_payment", opened_on=now.date() - datetime.timedelta(days=600)
    )
    ProductHolding.objects.create(merchant=m, product="deposit", balance=82000.5)

    lead = Lead.objects.create(
        merchant=m, product="loan", stage="interested", intent="high", owner=world.am_a, amount_requested=500000
    )
    prev = ""
    for i, stage in enumerate(["lead", "contacted", "visited", "interested"]):
        LeadStageChange.objects.create(
            lead=lead,
            from_stage=prev,
            to_stage=stage,
            by=world.am_a,
            grid=world.grid_a,
            at=now - datetime.timedelta(days=40 - i * 9),
        )
        prev = stage
    for i in range(24):
        a = Activity.objects.create(
            merchant=m,
            grid=world.grid_a,
            by=world.am_a,
            kind="visit" if i % 3 else "call",
            occurred_at=now - datetime.timedelta(days=60 - i * 2, hours=3),
            outcome="reached",
            notes=f"第{i + 1}次跟进：老板想扩一家分店，需要装修资金约五十万。",
        )
        if a.kind == "visit":
            far = i % 4 == 0
            a.checkin_distance_m, a.checkin_accuracy_m = (2034.0, 15) if far else (46.0, 12)
            a.checkin_flag = "too_far" if far else "ok"
            a.next_step = "下周带贷款方案再访"
            a.intent = "high"
            a.save()
    last = Activity.objects.filter(merchant=m, kind="visit").order_by("-occurred_at").first()
    ActivityPhoto.objects.create(
        activity=last, file=ContentFile(png(), name="front.png"), content_type="image/png", size=100
    )

    def spot(dx):  # around the shop, ~100 m apart, so the map does not pile them up
        return Point(m.location.x + dx * 0.001, m.location.y + 0.001, srid=4326)

    supplier = MerchantFactory(grid=world.grid_a, name="杭州面粉批发部", location=spot(-2))
    MerchantRelation.objects.create(from_merchant=supplier, to_merchant=m, kind="supplier")
    chain = MerchantFactory(grid=world.grid_a, name="王记牛肉面二店", location=spot(0))
    MerchantPerson.objects.create(merchant=chain, person=boss, role="owner")
    shop2 = MerchantFactory(grid=world.grid_a, name="秀英服装店", location=spot(2))
    MerchantPerson.objects.create(merchant=shop2, person=wife, role="owner")
    hidden = MerchantFactory(grid=world.grid_c, name="滨江冷链物流")
    MerchantRelation.objects.create(from_merchant=m, to_merchant=hidden, kind="supplier")
    ev = Activity.objects.create(
        kind="event",
        grid=world.grid_a,
        by=world.am_a,
        title="文三路商户沙龙",
        occurred_at=now - datetime.timedelta(days=5),
    )
    EventAttendance.objects.create(activity=ev, merchant=m)
    return m


@pytest.fixture
def officer(world):
    user = UserFactory(username="pii_officer", full_name="合规专员")
    MembershipFactory(user=user, grid=world.grid_a, role="grid_leader")
    user.user_permissions.add(Permission.objects.get(codename="view_pii", content_type__app_label="crm"))
    return user


def test_merchant_360_page(tab, world, shop):
    page = tab.page
    login(tab, "am_a")
    page.click(".app-nav a[href='/merchants/']")
    page.wait_for_selector("[data-testid=merchant-table]")
    assert_touch_targets(page)
    assert_fits_width(page)
    tab.screenshot("merchant-list", full_page=True)

    page.fill("#f-q", "面馆")
    page.click(".filter-bar button[type=submit]")
    page.wait_for_load_state("load")
    page.click(f"tr[data-merchant-id='{shop.pk}'] .row-link")
    page.wait_for_selector("[data-testid=merchant-name]")
    assert page.inner_text("[data-testid=merchant-name]") == "老王牛肉面馆"

    # People masked; the graph drawn; the hidden merchant only counted.
    people = page.inner_text("[data-testid=people]")
    assert "138****5678" in people and "13812345678" not in people
    assert page.locator(".pii-toggle").count() == 0  # am_a holds no view_pii
    page.wait_for_selector("#relation-graph svg")
    assert page.locator("#relation-graph .graph-merchant").count() == 3
    assert page.locator("#relation-graph .graph-hidden").count() == 1
    assert "滨江冷链物流" not in page.content()
    assert (
        page.locator(".stagebar li.current").inner_text().strip()
        == page.locator("[data-lead-id] .badge").first.inner_text().strip()
    )
    assert page.locator("[data-testid=checkin]").first.is_visible()
    page.locator(".photo-thumb img").first.scroll_into_view_if_needed()  # loading="lazy"
    page.wait_for_function("document.querySelector('.photo-thumb img').naturalWidth > 0")
    page.evaluate("window.scrollTo(0, 0)")

    assert_touch_targets(page)
    assert_fits_width(page)
    tab.screenshot("merchant-360", full_page=True)
    tab.screenshot("merchant-360-top")

    # Older timeline items load from the API and append.
    before = page.locator("#timeline .tl-item").count()
    page.click("#timeline-more")
    page.wait_for_function(f"document.querySelectorAll('#timeline .tl-item').length > {before}")
    assert page.locator("#timeline .tl-item").count() > before

    # Chain prospecting: follow a related merchant to its own 360 page.
    page.click(".related-link >> text=王记牛肉面二店")
    page.wait_for_selector("[data-testid=merchant-name]")
    assert page.inner_text("[data-testid=merchant-name]") == "王记牛肉面二店"
    tab.assert_clean()


def test_permitted_user_unmasks_a_phone_and_it_is_logged(tab, world, shop, officer):
    page = tab.page
    login(tab, "pii_officer")
    page.goto(tab.url(f"/merchants/{shop.pk}/"))
    row = page.locator(".person", has_text="王建国").first
    row.locator(".pii-toggle").click()
    page.wait_for_function("document.querySelector('.pii.is-revealed') !== null")
    assert "13812345678" in row.inner_text()
    assert PiiAccess.objects.filter(user=officer, field="phone").count() == 1
    assert_touch_targets(page)
    tab.screenshot("merchant-360-pii")
    row.locator(".pii-toggle").click()
    assert "13812345678" not in row.inner_text()
    tab.assert_clean()


def test_read_only_role_gets_no_log_panel(tab, world, shop):
    # Mid-office reads the branch but works on no merchant: the page has no way to log a visit
    # (the activities API refuses them anyway).
    login(tab, "mid_office")
    tab.page.goto(tab.url(f"/merchants/{shop.pk}/"))
    tab.page.wait_for_selector("[data-testid=timeline] .tl-item")
    assert tab.page.locator("#log, [data-testid=log-jump]").count() == 0
    tab.assert_clean()


def test_out_of_scope_merchant_is_a_404_page(tab, world, merchants):
    login(tab, "am_a")
    response = tab.page.goto(tab.url(f"/merchants/{merchants['grid_c'].pk}/"))
    assert response.status == 404


def test_map_popup_links_to_the_merchant_page(tab, world, shop):
    page = tab.page
    login(tab, "am_a")
    open_map(tab)
    page.evaluate(f"gridcrmMap.map.setView(gridcrmMap.toDisplay({shop.location.x}, {shop.location.y}), 18)")
    page.wait_for_function("Number(document.getElementById('map').dataset.loads) >= 2")
    page.locator(f".merchant-dot[data-merchant-id='{shop.pk}']").click()
    link = page.locator(".leaflet-popup-content .map-popup-link")
    link.wait_for()
    box = link.bounding_box()
    assert box["height"] >= 44
    link.click()
    page.wait_for_selector("[data-testid=merchant-name]")
    assert page.url.endswith(f"/merchants/{shop.pk}/")


def test_header_still_fits_in_english_with_the_merchants_link(tab, world, shop):
    page = tab.page
    login(tab, "am_a")
    page.goto(tab.url(f"/merchants/{shop.pk}/"))
    page.click(".lang-switch button[value=en]")
    page.wait_for_selector("html[lang=en]")
    assert page.locator(".app-nav a[aria-current=page]").inner_text().strip() == "Merchants"
    assert_fits_width(page)
    assert_touch_targets(page)
    tab.screenshot("merchant-360-english")
    page.click(".lang-switch button[value=zh-hans]")
    page.wait_for_selector("html[lang=zh-hans]")
