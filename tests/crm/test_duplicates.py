"""Duplicates: candidates by credit code, phone and similar name nearby (scope-safe), the 409 on
create until confirmed, and merging two merchants without losing anything of either."""

import datetime
import math

import pghistory
import pytest
from django.contrib.gis.geos import Point
from django.core.files.base import ContentFile
from django.utils import timezone

from crm.models import (
    Activity,
    ActivityPhoto,
    EventAttendance,
    GridCheckRun,
    Handover,
    HandoverItem,
    Lead,
    LeadStageChange,
    Merchant,
    MerchantGridFix,
    MerchantPerson,
    MerchantRelation,
    Person,
    ProductHolding,
    Task,
)
from crm.services.duplicates import merchant_duplicate_candidates
from crm.services.merge import foreign_keys_to
from crm.validators import credit_code_check_char
from tests.factories import MerchantFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/merchants/"
CHECK = "/api/v1/merchants/duplicates/"
T0 = timezone.make_aware(datetime.datetime(2025, 3, 1, 9, 0))


def code(body="91330106MA2KXXXX0"):
    return body + credit_code_check_char(body)


def near(point, metres_east):
    lon, lat = point.coords
    return Point(lon + metres_east / (111_320 * math.cos(math.radians(lat))), lat, srid=4326)


def geo(point):
    return {"type": "Point", "coordinates": list(point.coords)}


@pytest.fixture
def noodle(world):
    return MerchantFactory(grid=world.grid_a, name="老王牛肉面馆", credit_code=code())


# -- Candidates by each reason ----------------------------------------------------------------------


def test_by_credit_code(world, noodle, api_as):
    body = api_as(world.am_a).post(CHECK, {"name": "完全不同的名字", "credit_code": code().lower()}).json()
    assert [(c["id"], [r["code"] for r in c["reasons"]]) for c in body["candidates"]] == [(noodle.pk, ["credit_code"])]
    assert body["candidates"][0]["score"] == 1.0 and body["hidden_count"] == 0


def test_by_phone_of_a_linked_person(world, noodle, api_as):
    boss = Person.objects.create(name="王老板", phone="13812345678")
    MerchantPerson.objects.create(merchant=noodle, person=boss, role="owner")
    for typed in ("13812345678", "+86 138-1234-5678"):
        body = api_as(world.am_a).post(CHECK, {"name": "别的名字", "phone": typed}).json()
        assert [c["id"] for c in body["candidates"]] == [noodle.pk], typed
        assert body["candidates"][0]["reasons"][0]["code"] == "phone"
    assert api_as(world.am_a).post(CHECK, {"name": "别的名字", "phone": "13900000000"}).json()["candidates"] == []


def test_by_similar_name_within_the_radius(world, noodle, api_as, settings):
    client = api_as(world.am_a)
    close = client.post(CHECK, {"name": "老王牛肉面馆(西湖店)", "location": geo(near(noodle.location, 120))}).json()
    [candidate] = close["candidates"]
    [reason] = candidate["reasons"]
    assert reason["code"] == "name" and reason["similarity"] >= settings.DUPLICATE_NAME_SIMILARITY
    assert 110 <= reason["distance_m"] <= 130
    # The same name beyond the radius, or a different name nearby: no candidate.
    far = near(noodle.location, settings.DUPLICATE_RADIUS_M + 200)
    assert client.post(CHECK, {"name": "老王牛肉面馆", "location": geo(far)}).json()["candidates"] == []
    other = client.post(CHECK, {"name": "小李五金店", "location": geo(near(noodle.location, 50))}).json()
    assert other["candidates"] == []


def test_several_reasons_score_higher(world, noodle):
    boss = Person.objects.create(name="王老板", phone="13812345678")
    MerchantPerson.objects.create(merchant=noodle, person=boss, role="owner")
    one = merchant_duplicate_candidates(name="老王牛肉面馆", location=noodle.location)["candidates"][0]["score"]
    two = merchant_duplicate_candidates(name="老王牛肉面馆", phone="13812345678", location=noodle.location)
    assert two["candidates"][0]["score"] > one
    assert {r["code"] for r in two["candidates"][0]["reasons"]} == {"name", "phone"}


def test_closed_merchants_are_no_candidates_by_name_or_phone(world, noodle):
    noodle.status = "closed"
    noodle.save()
    assert merchant_duplicate_candidates(name="老王牛肉面馆", location=noodle.location)["candidates"] == []


def test_candidates_outside_scope_say_only_that_they_exist(world, api_as):
    other = MerchantFactory(grid=world.grid_c, name="滨江老王牛肉面馆", credit_code=code("91330108MA2KYYYY0"))
    response = api_as(world.am_a).post(
        CHECK, {"name": "滨江老王牛肉面馆", "credit_code": other.credit_code, "location": geo(other.location)}
    )
    body = response.json()
    assert body["candidates"] == [] and body["hidden_count"] == 1
    [hidden] = body["hidden"]
    assert set(hidden) == {"in_scope", "message", "score", "reasons"}
    assert {r["code"] for r in hidden["reasons"]} == {"credit_code", "name"}
    text = response.content.decode()
    assert str(other.pk) not in text.replace(str(hidden["score"]), "")
    assert world.grid_c.name not in text
    # The branch manager of sub-branch 1 does not see grid C either; the regional head does.
    assert (
        api_as(world.regional_head)
        .post(CHECK, {"name": "x", "credit_code": other.credit_code})
        .json()["candidates"][0]["id"]
        == other.pk
    )


def test_duplicates_endpoint_checks_its_input(world, api_as):
    client = api_as(world.am_a)
    assert "name" in client.post(CHECK, {}).json()
    bad = client.post(CHECK, {"name": "x", "location": {"type": "Point", "coordinates": [0, 0]}})
    assert bad.status_code == 400 and "location" in bad.json()
    assert api_as(world.nobody).post(CHECK, {"name": "x"}).status_code == 403
    assert api_as(None).post(CHECK, {"name": "x"}).status_code in (401, 403)


# -- Create: 409 until confirmed --------------------------------------------------------------------


def test_create_answers_409_then_201_when_confirmed(world, noodle, api_as):
    client = api_as(world.am_a)
    payload = {"name": "老王牛肉面馆", "location": geo(near(noodle.location, 30))}
    before = Merchant.objects.count()
    response = client.post(URL, payload)
    assert response.status_code == 409, response.content
    assert [c["id"] for c in response.json()["duplicates"]["candidates"]] == [noodle.pk]
    assert Merchant.objects.count() == before  # nothing saved
    response = client.post(URL, {**payload, "confirm_not_duplicate": True})
    assert response.status_code == 201, response.content
    assert Merchant.objects.count() == before + 1
    assert "confirm_not_duplicate" not in response.json()


def test_create_without_candidates_is_201_directly(world, noodle, api_as):
    response = api_as(world.am_a).post(URL, {"name": "全新的书店", "location": geo(noodle.location)})
    assert response.status_code == 201


def test_create_with_a_taken_credit_code_lists_the_holder(world, noodle, api_as):
    payload = {"name": "x", "credit_code": noodle.credit_code, "location": geo(noodle.location)}
    for confirm in (False, True):
        response = api_as(world.am_a).post(URL, {**payload, "confirm_not_duplicate": confirm})
        assert response.status_code == 400
        body = response.json()
        assert "credit_code" in body
        assert body["duplicates"]["candidates"][0]["id"] == noodle.pk


def test_scope_errors_come_before_duplicates(world, merchants, api_as):
    lon, lat = world.grid_b.geom.centroid.coords
    payload = {"name": merchants["grid_b"].name, "location": {"type": "Point", "coordinates": [lon, lat]}}
    response = api_as(world.am_a).post(URL, payload)
    assert response.status_code == 400 and "location" in response.json()


def test_confirm_must_be_a_boolean(world, noodle, api_as):
    payload = {"name": "书店", "location": geo(noodle.location), "confirm_not_duplicate": "perhaps"}
    response = api_as(world.am_a).post(URL, payload)
    assert response.status_code == 400 and "confirm_not_duplicate" in response.json()


# -- Merge ------------------------------------------------------------------------------------------


def counts_pointing_at(*merchants) -> dict:
    ids = [m.pk for m in merchants]
    return {
        f"{model._meta.label_lower}.{field}": model._base_manager.filter(**{f"{field}__in": ids}).count()
        for model, field in foreign_keys_to(Merchant)
    }


def stocked(world, grid, by, tag, products=("loan",)):
    """A merchant with one of everything that can point at a merchant."""
    m = MerchantFactory(grid=grid, name=f"{tag}商户")
    with pghistory.context(user=by.pk):
        m.address = f"{tag}路1号"
        m.save()
    a = Activity.objects.create(merchant=m, grid=grid, by=by, kind="visit", occurred_at=T0, notes=f"{tag}走访")
    ActivityPhoto.objects.create(
        activity=a, file=ContentFile(b"\xff\xd8\xff", name="p.jpg"), content_type="image/jpeg", size=3
    )
    for product in products:
        lead = Lead.objects.create(merchant=m, product=product, stage="contacted", owner=by)
        LeadStageChange.objects.create(lead=lead, from_stage="", to_stage="lead", at=T0, by=by, grid=grid)
        LeadStageChange.objects.create(lead=lead, from_stage="lead", to_stage="contacted", at=T0, by=by, grid=grid)
        Task.objects.create(owner=by, merchant=m, lead=lead, title=f"{tag}跟进", due_at=T0)
    ProductHolding.objects.create(merchant=m, product="deposit")
    p = Person.objects.create(name=f"{tag}老板", phone="13800000000")
    MerchantPerson.objects.create(merchant=m, person=p, role="owner")
    ev = Activity.objects.create(kind="event", grid=grid, by=by, occurred_at=T0, title=f"{tag}沙龙")
    EventAttendance.objects.create(activity=ev, merchant=m)
    handover = Handover.objects.create(from_user=by, by=by)
    HandoverItem.objects.create(handover=handover, merchant=m, to_user=by)
    run = GridCheckRun.objects.create(started_at=T0)
    MerchantGridFix.objects.create(run=run, merchant=m, from_grid=None, to_grid=grid)
    return m


def merge(client, keep, drop):
    return client.post(f"{URL}{keep.pk}/merge/", {"drop": drop.pk})


def test_merge_keeps_everything_of_both(world, api_as):
    keep = stocked(world, world.grid_a, world.am_a, "甲", products=("loan",))
    drop = stocked(world, world.grid_a, world.am_a, "乙", products=("deposit",))
    third = MerchantFactory(grid=world.grid_a)
    MerchantRelation.objects.create(from_merchant=drop, to_merchant=third, kind="supplier")
    MerchantRelation.objects.create(from_merchant=third, to_merchant=drop, kind="guarantor")
    before = counts_pointing_at(keep, drop)
    stage_changes = LeadStageChange.objects.count()
    photos = ActivityPhoto.objects.count()

    response = merge(api_as(world.am_a), keep, drop)
    assert response.status_code == 200, response.content
    after = counts_pointing_at(keep)
    assert after == before  # every row that pointed at either now points at keep
    assert counts_pointing_at(drop) == dict.fromkeys(before, 0)
    assert LeadStageChange.objects.count() == stage_changes and ActivityPhoto.objects.count() == photos
    drop.refresh_from_db()
    assert drop.status == "closed" and drop.name == "乙商户"  # kept as a closed row, name kept
    assert response.json()["merchant"]["id"] == keep.pk
    assert set(MerchantRelation.objects.filter(to_merchant=third).values_list("from_merchant_id", flat=True)) == {
        keep.pk
    }


def test_merge_history_of_both_on_keeps_timeline(world, api_as):
    keep = stocked(world, world.grid_a, world.am_a, "甲")
    drop = stocked(world, world.grid_a, world.am_a, "乙", products=())
    assert merge(api_as(world.am_a), keep, drop).status_code == 200
    items = api_as(world.am_a).get(f"{URL}{keep.pk}/timeline/?limit=100").json()["results"]
    notes = {i["activity"]["notes"] for i in items if i["type"] == "activity"}
    assert {"甲走访", "乙走访"} <= notes
    history = [i for i in items if i["type"] == "merchant"]
    from_drop = [i for i in history if i["merchant_event"].get("merchant", {}).get("id") == drop.pk]
    # drop's creation, its address edit and its closing ("merged into") all stay readable.
    assert {i["merchant_event"]["label"] for i in from_drop} == {"insert", "update"}
    assert any("乙路1号" in str(i["merchant_event"]["changes"]) for i in from_drop)
    assert any(drop.name in i["title"] for i in history if "merchant" not in i["merchant_event"])
    assert len(from_drop) == 3


def test_merge_chains_follow_every_merged_record(world, api_as):
    a, b, c = (MerchantFactory(grid=world.grid_a, name=n) for n in ("甲店", "乙店", "丙店"))
    client = api_as(world.am_a)
    assert merge(client, b, a).status_code == 200
    assert merge(client, c, b).status_code == 200
    items = client.get(f"{URL}{c.pk}/timeline/?limit=100").json()["results"]
    owners = {i["merchant_event"].get("merchant", {}).get("id") for i in items if i["type"] == "merchant"}
    assert owners == {None, a.pk, b.pk}


def test_conflicting_open_leads_fold_into_the_more_advanced(world, api_as):
    keep = stocked(world, world.grid_a, world.am_a, "甲", products=("loan",))
    drop = stocked(world, world.grid_a, world.am_a, "乙", products=("loan",))
    ahead = Lead.objects.get(merchant=drop)
    Lead.objects.filter(pk=ahead.pk).update(stage="interested", amount_requested=100000)
    behind = Lead.objects.get(merchant=keep)
    Lead.objects.filter(pk=behind.pk).update(intent="high")
    closed = Lead.objects.create(merchant=drop, product="loan", stage="disbursed", amount_disbursed=5)
    changes = LeadStageChange.objects.filter(lead__merchant__in=[keep, drop]).count()
    tasks = Task.objects.filter(merchant__in=[keep, drop]).count()

    body = merge(api_as(world.am_a), keep, drop).json()
    assert body["folded_leads"] == [{"product": "loan", "kept_lead": ahead.pk, "folded_lead": behind.pk}]
    open_leads = Lead.objects.filter(merchant=keep).exclude(stage__in=["disbursed", "lost"])
    assert list(open_leads.values_list("pk", "stage", "intent")) == [(ahead.pk, "interested", "high")]
    assert set(Lead.objects.filter(merchant=keep).values_list("pk", flat=True)) == {ahead.pk, closed.pk}
    # No stage change or task lost: the folded lead's now belong to the survivor.
    assert LeadStageChange.objects.filter(lead__merchant=keep).count() == changes
    assert LeadStageChange.objects.filter(lead=ahead).count() == 4
    assert Task.objects.filter(merchant=keep).count() == tasks
    assert Task.objects.filter(lead=ahead).count() == 2


def test_people_and_relations_are_not_duplicated(world, api_as):
    keep, drop = MerchantFactory(grid=world.grid_a), MerchantFactory(grid=world.grid_a)
    third = MerchantFactory(grid=world.grid_a)
    boss = Person.objects.create(name="王老板")
    MerchantPerson.objects.create(merchant=keep, person=boss, role="owner")
    MerchantPerson.objects.create(merchant=drop, person=boss, role="owner")
    MerchantPerson.objects.create(merchant=drop, person=boss, role="shareholder", share_pct=30)
    MerchantRelation.objects.create(from_merchant=keep, to_merchant=third, kind="supplier")
    MerchantRelation.objects.create(from_merchant=drop, to_merchant=third, kind="supplier")
    MerchantRelation.objects.create(from_merchant=drop, to_merchant=keep, kind="affiliate")  # becomes a self-relation
    body = merge(api_as(world.am_a), keep, drop).json()
    assert sorted(MerchantPerson.objects.filter(merchant=keep).values_list("role", flat=True)) == [
        "owner",
        "shareholder",
    ]
    assert list(MerchantRelation.objects.values_list("from_merchant_id", "to_merchant_id", "kind")) == [
        (keep.pk, third.pk, "supplier")
    ]
    assert body["deduplicated"] == {
        "crm.merchantperson.merchant": 1,
        "crm.merchantrelation.from_merchant": 2,
    }


def test_merge_fills_keeps_blanks(world, api_as):
    keep = MerchantFactory(grid=world.grid_a, address="")
    drop = MerchantFactory(grid=world.grid_a, credit_code=code(), address="文三路1号", owner=world.am_a)
    body = merge(api_as(world.am_a), keep, drop).json()
    keep.refresh_from_db()
    drop.refresh_from_db()
    assert (keep.credit_code, keep.address, keep.owner_id) == (code(), "文三路1号", world.am_a.pk)
    assert drop.credit_code is None
    assert set(body["filled"]) == {"credit_code", "address", "owner"}


def test_merge_refuses_out_of_scope_and_writes_nothing(world, merchants, api_as):
    keep = stocked(world, world.grid_a, world.am_a, "甲")
    drop = stocked(world, world.grid_b, world.am_a, "乙")  # grid B: am_a cannot change it
    before = counts_pointing_at(keep) | {"drop": counts_pointing_at(drop)}
    response = merge(api_as(world.am_a), keep, drop)
    assert response.status_code == 400 and "drop" in response.json()
    # A merchant that does not exist answers the same: nothing leaks.
    missing = api_as(world.am_a).post(f"{URL}{keep.pk}/merge/", {"drop": 999999999})
    assert missing.json() == response.json()
    assert counts_pointing_at(keep) | {"drop": counts_pointing_at(drop)} == before
    drop.refresh_from_db()
    assert drop.status != "closed"
    # The branch manager holds both grids: allowed.
    assert merge(api_as(world.branch_manager), keep, drop).status_code == 200


@pytest.mark.parametrize(("payload", "field"), [({}, "drop"), ({"drop": "x"}, "drop"), ({"drop": -1}, "drop")])
def test_merge_input_errors(world, merchants, api_as, payload, field):
    response = api_as(world.am_a).post(f"{URL}{merchants['grid_a'].pk}/merge/", payload)
    assert response.status_code == 400 and field in response.json()


def test_merge_with_itself_or_a_closed_merchant_is_refused(world, api_as):
    keep, drop = MerchantFactory(grid=world.grid_a), MerchantFactory(grid=world.grid_a)
    client = api_as(world.am_a)
    assert merge(client, keep, keep).status_code == 400
    assert merge(client, keep, drop).status_code == 200
    again = merge(client, keep, drop)
    assert again.status_code == 400 and "drop" in again.json()
