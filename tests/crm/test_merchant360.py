"""Merchant 360: profile, the timeline (content, order, paging, a fixed number of queries), the extra
merchant actions under scope, and the pages /merchants/ and /merchants/<id>/."""

import datetime

import pghistory
import pytest
from django.core.files.base import ContentFile
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from crm.models import (
    Activity,
    ActivityPhoto,
    EventAttendance,
    Lead,
    LeadStageChange,
    MerchantPerson,
    Person,
    ProductHolding,
)
from tests.factories import MembershipFactory, MerchantFactory

pytestmark = pytest.mark.django_db

T0 = timezone.make_aware(datetime.datetime(2025, 3, 1, 9, 0))


def url(merchant, action=""):
    return f"/api/v1/merchants/{merchant.pk}/" + (f"{action}/" if action else "")


def page_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def activity(merchant, by, at, **extra):
    return Activity.objects.create(
        merchant=merchant, grid=merchant.grid, by=by, occurred_at=at, kind=extra.pop("kind", "visit"), **extra
    )


def photo(act, kind="storefront"):
    return ActivityPhoto.objects.create(
        activity=act, kind=kind, file=ContentFile(b"\xff\xd8\xff", name="p.jpg"), content_type="image/jpeg", size=3
    )


def lead_with_history(merchant, by, stages, product="loan", start=T0):
    lead = Lead.objects.create(merchant=merchant, product=product, stage=stages[-1], owner=by, intent="high")
    prev = ""
    for i, stage in enumerate(stages):
        LeadStageChange.objects.create(
            lead=lead,
            from_stage=prev,
            to_stage=stage,
            at=start + datetime.timedelta(hours=i),
            by=by,
            grid=merchant.grid,
            owner=by,
        )
        prev = stage
    return lead


@pytest.fixture
def rich(world, merchants):
    """A merchant of grid A with a bit of everything."""
    m = merchants["grid_a"]
    MembershipFactory(user=world.am_a, grid=world.grid_b, role="account_manager", start_date=datetime.date(2024, 1, 1))
    v = activity(
        m,
        world.am_a,
        T0 + datetime.timedelta(days=1),
        notes="老板在店，聊了扩店资金",
        outcome="interested",
        intent="high",
        next_step="下周带方案",
        checkin_distance_m=2034.4,
        checkin_accuracy_m=12,
        checkin_flag="too_far",
        checkout_at=T0 + datetime.timedelta(days=1, minutes=35),
    )
    photo(v)
    activity(m, world.am_a, T0 + datetime.timedelta(days=2), kind="call", outcome="reached")
    lead_with_history(m, world.am_a, ["lead", "contacted", "visited"], start=T0 + datetime.timedelta(days=3))
    # Edits with who did them (the pghistory context the middleware would set).
    with pghistory.context(user=world.branch_manager.pk):
        m.owner = world.am_a
        m.save()
    with pghistory.context(user=world.am_a.pk):
        m.name = "新名字面馆"
        m.save()
    with pghistory.context(user=world.branch_manager.pk):
        m.grid = world.grid_b
        m.save()
    # An event in grid A it attended, and one in grid C (am_a's scope does not hold it).
    ev = Activity.objects.create(kind="event", grid=world.grid_a, by=world.am_a, occurred_at=T0, title="园区沙龙")
    EventAttendance.objects.create(activity=ev, merchant=m)
    far = Activity.objects.create(kind="event", grid=world.grid_c, by=world.am_c, occurred_at=T0, title="滨江推介会")
    EventAttendance.objects.create(activity=far, merchant=m)
    return m


def test_timeline_lists_everything_newest_first(world, rich, api_as):
    response = api_as(world.am_a).get(url(rich, "timeline"))
    assert response.status_code == 200, response.content
    items = response.json()["results"]
    kinds = [i["type"] for i in items]
    assert {"activity", "stage_change", "merchant"} <= set(kinds)
    times = [i["at"] for i in items]
    assert times == sorted(times, reverse=True)

    visit = next(i for i in items if i["type"] == "activity" and i["activity"]["kind"] == "visit")
    assert visit["activity"]["checkin"] == {
        "flag": "too_far",
        "flag_display": visit["activity"]["checkin"]["flag_display"],
        "flagged": True,
        "distance_m": 2034,
        "accuracy_m": 12,
    }
    assert visit["activity"]["duration_min"] == 35
    assert visit["activity"]["notes"] == "老板在店，聊了扩店资金"
    assert visit["by"]["id"] == world.am_a.pk
    assert [p["kind"] for p in visit["activity"]["photos"]] == ["storefront"]

    stages = [i["stage_change"] for i in items if i["type"] == "stage_change"]
    assert [(s["from"], s["to"]) for s in stages] == [("contacted", "visited"), ("lead", "contacted"), (None, "lead")]

    history = [i for i in items if i["type"] == "merchant"]
    changes = [[c["field"] for c in i["merchant_event"]["changes"]] for i in history]
    assert changes[:3] == [["grid"], ["name"], ["owner"]]
    grid_change = history[0]["merchant_event"]["changes"][0]
    assert (grid_change["from"], grid_change["to"]) == (world.grid_a.name, world.grid_b.name)
    assert history[0]["by"]["id"] == world.branch_manager.pk
    assert "→" in history[0]["title"]
    name_change = history[1]["merchant_event"]["changes"][0]
    assert name_change["to"] == "新名字面馆"
    assert history[1]["by"]["id"] == world.am_a.pk
    assert history[-1]["merchant_event"]["label"] == "insert"

    events = [i for i in items if i["type"] == "activity" and i["activity"]["kind"] == "event"]
    # The grid A event shows; the grid C one (outside am_a's scope) does not.
    assert [e["activity"]["title"] for e in events] == ["园区沙龙"]
    assert events[0]["activity"]["attended"] is True


def test_timeline_shows_the_grid_c_event_to_whoever_sees_grid_c(world, rich, api_as):
    items = api_as(world.admin).get(url(rich, "timeline")).json()["results"]
    titles = {i["activity"]["title"] for i in items if i["type"] == "activity" and i["activity"]["kind"] == "event"}
    assert titles == {"园区沙龙", "滨江推介会"}


def test_updates_that_change_nothing_visible_are_left_out(world, merchants, api_as):
    m = merchants["grid_a"]
    for _ in range(3):
        m.save()  # updated_at only
    history = [i for i in api_as(world.am_a).get(url(m, "timeline")).json()["results"] if i["type"] == "merchant"]
    assert [h["merchant_event"]["label"] for h in history] == ["insert"]


def _fill(world, merchant, n):
    for i in range(n):
        a = activity(merchant, world.am_a, T0 + datetime.timedelta(minutes=i), notes=f"第{i}次")
        photo(a)
    for i in range(max(1, n // 10)):
        lead_with_history(merchant, world.am_a, ["lead", "contacted"], product=["loan", "deposit", "payroll"][i % 3])
        # The one-open-lead rule: close it so another of the same product may follow.
        Lead.objects.filter(merchant=merchant).update(stage="disbursed")
    for i in range(max(1, n // 10)):
        with pghistory.context(user=world.am_a.pk):
            merchant.address = f"地址{i}"
            merchant.save()


def _count_queries(client, path) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(path)
    assert response.status_code == 200
    return len(ctx.captured_queries)


def test_timeline_runs_a_fixed_number_of_queries(world, api_as, django_assert_max_num_queries):
    small = MerchantFactory(grid=world.grid_a)
    big = MerchantFactory(grid=world.grid_a)
    _fill(world, small, 3)
    _fill(world, big, 50)
    client = api_as(world.am_a)
    few = _count_queries(client, url(small, "timeline") + "?limit=100")
    many = _count_queries(client, url(big, "timeline") + "?limit=100")
    assert few == many
    # The user's scope, and one statement for the whole page (the merchant's visibility included).
    with django_assert_max_num_queries(2):
        response = client.get(url(big, "timeline") + "?limit=100")
    # 50 activities, 5 leads x 2 stage changes, creation + 5 edits.
    assert len(response.json()["results"]) == 50 + 10 + 6
    # The page too: a fixed number whatever the size of the merchant's history.
    page = page_client(world.am_a)
    page_few = _count_queries(page, f"/merchants/{small.pk}/")
    assert page_few == _count_queries(page, f"/merchants/{big.pk}/")


def test_timeline_pages_by_cursor_without_loss_or_repeat(world, merchants, api_as):
    m = merchants["grid_a"]
    # Many items sharing one instant: the cursor must still split them cleanly.
    for i in range(23):
        activity(m, world.am_a, T0 if i < 12 else T0 + datetime.timedelta(seconds=i))
    lead_with_history(m, world.am_a, ["lead", "contacted"], start=T0)
    client = api_as(world.am_a)
    seen, before, pages = [], None, 0
    while True:
        path = url(m, "timeline") + "?limit=5" + (f"&before={before}" if before else "")
        body = client.get(path).json()
        seen += [(i["type"], i["id"]) for i in body["results"]]
        pages += 1
        before = body["next_before"]
        if not before:
            break
    everything = client.get(url(m, "timeline") + "?limit=100").json()["results"]
    assert len(seen) == len(set(seen)) == len(everything) == 23 + 2 + 1
    assert seen == [(i["type"], i["id"]) for i in everything]
    assert pages == 6


@pytest.mark.parametrize(
    ("query", "field"),
    [("before=abc", "before"), ("before=999999999999999999_1_1", "before"), ("limit=0", "limit"), ("limit=x", "limit")],
)
def test_timeline_bad_parameters_are_400_naming_the_field(world, merchants, api_as, query, field):
    response = api_as(world.am_a).get(url(merchants["grid_a"], "timeline") + "?" + query)
    assert response.status_code == 400
    assert field in response.json()


def test_profile_has_people_products_leads_and_relation_counts(world, merchants, api_as):
    m = merchants["grid_a"]
    boss = Person.objects.create(name="王老板", phone="13812345678", id_number="33010619900101123X")
    MerchantPerson.objects.create(merchant=m, person=boss, role="legal_rep")
    MerchantPerson.objects.create(merchant=merchants["grid_b"], person=boss, role="shareholder")
    clerk = Person.objects.create(name="赵会计", phone="057188889999")
    MerchantPerson.objects.create(merchant=m, person=clerk, role="contact", title="财务")
    MerchantPerson.objects.create(merchant=m, person=clerk, role="shareholder", share_pct=5)
    soon = timezone.localdate() + datetime.timedelta(days=30)
    ProductHolding.objects.create(merchant=m, product="loan", matures_on=soon, balance=500000)
    ProductHolding.objects.create(merchant=m, product="merchant_payment")
    lead_with_history(m, world.am_a, ["lead", "contacted", "visited", "interested"])
    Lead.objects.filter(merchant=m).update(amount_requested=300000)

    body = api_as(world.am_a).get(url(m, "profile")).json()
    assert body["merchant"]["id"] == m.pk and body["merchant"]["grid"]["id"] == world.grid_a.pk
    person, clerk_entry = body["people"]  # one entry per person, the legal representative first
    assert [(r["role"], r["share_pct"]) for r in clerk_entry["roles"]] == [("shareholder", "5.00"), ("contact", None)]
    assert clerk_entry["phone"] == "057*****9999"
    assert person == {
        "id": boss.pk,
        "name": "王老板",
        "roles": [
            {
                "link_id": MerchantPerson.objects.get(merchant=m, person=boss).pk,
                "role": "legal_rep",
                "role_display": person["roles"][0]["role_display"],
                "title": "",
                "share_pct": None,
            }
        ],
        "phone": "138****5678",
        "id_number": "330106********123X",
    }
    loan = next(p for p in body["products"] if p["product"] == "loan")
    assert loan["matures_on"] == soon.isoformat() and loan["matures_soon"] is True
    assert [(lead["product"], lead["stage"], lead["stage_index"]) for lead in body["leads"]] == [
        ("loan", "interested", 3)
    ]
    assert body["leads"][0]["intent"] == "high" and body["leads"][0]["amount_requested"] == "300000.00"
    # The grid B merchant sharing the legal rep is outside am_a's scope: counted, not shown.
    assert body["relation_counts"]["visible"] == 0 and body["relation_counts"]["hidden"] == 1


@pytest.mark.parametrize(("method", "action"), [("get", "profile"), ("get", "timeline"), ("get", "related")])
def test_extra_actions_404_out_of_scope(world, merchants, api_as, method, action):
    client = api_as(world.am_a)
    assert getattr(client, method)(url(merchants["grid_a"], action)).status_code == 200
    for key in ("grid_b", "grid_c", "grid_x"):
        assert getattr(client, method)(url(merchants[key], action)).status_code == 404
    assert api_as(world.nobody).get(url(merchants["grid_a"], action)).status_code == 404
    assert api_as(None).get(url(merchants["grid_a"], action)).status_code in (401, 403)


def test_merge_404_when_the_url_merchant_is_out_of_scope(world, merchants, api_as):
    response = api_as(world.am_a).post(url(merchants["grid_b"], "merge"), {"drop": merchants["grid_a"].pk})
    assert response.status_code == 404
    # Read-only roles hold no change scope: 404 too.
    response = api_as(world.mid_office).post(url(merchants["grid_a"], "merge"), {"drop": merchants["grid_b"].pk})
    assert response.status_code == 404


# -- Pages ----------------------------------------------------------------------------------------


def test_detail_page_in_scope(world, rich):
    Person.objects.create(name="王老板", phone="13812345678")
    MerchantPerson.objects.create(merchant=rich, person=Person.objects.get(name="王老板"), role="owner")
    response = page_client(world.branch_manager).get(f"/merchants/{rich.pk}/")
    assert response.status_code == 200
    body = response.content.decode()
    assert rich.name in body or "新名字面馆" in body
    assert "138****5678" in body and "13812345678" not in body
    assert 'id="timeline"' in body and "2034" in body  # the flagged visit's distance
    assert 'id="merchant-config"' in body


def test_detail_page_404_out_of_scope(world, merchants):
    client = page_client(world.am_a)
    assert client.get(f"/merchants/{merchants['grid_a'].pk}/").status_code == 200
    for key in ("grid_b", "grid_c", "grid_x"):
        assert client.get(f"/merchants/{merchants[key].pk}/").status_code == 404
    assert client.get("/merchants/999999999/").status_code == 404
    assert page_client(world.nobody).get(f"/merchants/{merchants['grid_a'].pk}/").status_code == 404


def test_pages_need_login(client, merchants):
    for path in ("/merchants/", f"/merchants/{merchants['grid_a'].pk}/"):
        response = client.get(path)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_list_page_shows_scope_only_and_searches(world, merchants):
    MerchantFactory(grid=world.grid_a, name="老王面馆")
    MerchantFactory(grid=world.grid_a, name="小李五金")
    client = page_client(world.am_a)
    body = client.get("/merchants/").content.decode()
    assert merchants["grid_a"].name in body
    for key in ("grid_b", "grid_c", "grid_x"):
        assert merchants[key].name not in body
    assert f'href="/merchants/{merchants["grid_a"].pk}/"' in body
    found = client.get("/merchants/", {"q": "面馆"}).content.decode()
    assert "老王面馆" in found and "小李五金" not in found
    # The grid filter: a grid out of scope gives nothing (not an error).
    response = client.get("/merchants/", {"grid": world.grid_c.pk})
    assert response.status_code == 200 and merchants["grid_c"].name not in response.content.decode()
    mine = client.get("/merchants/", {"mine": "1"}).content.decode()
    assert "老王面馆" not in mine


def test_list_page_query_count_is_fixed(world):
    client = page_client(world.am_a)
    MerchantFactory.create_batch(3, grid=world.grid_a)
    few = _count_queries(client, "/merchants/")
    MerchantFactory.create_batch(40, grid=world.grid_a)
    assert _count_queries(client, "/merchants/") == few


def test_nav_links_to_the_merchant_list(world):
    body = page_client(world.am_a).get("/").content.decode()
    assert 'href="/merchants/"' in body
