"""Activities: check-in distance in the database and its flags, check-out, events and their
attendees, next steps becoming tasks, funnel moves in the same step (atomic), and the tasks API."""

import datetime
import math

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from crm.models import Activity, EventAttendance, Lead, LeadStageChange, Person, Task
from crm.services.activities import activity_checkout, activity_log, task_complete
from crm.services.leads import lead_create
from tests.factories import MerchantFactory

ACTIVITIES = "/api/v1/activities/"
LEADS_URL = "/api/v1/leads/"
TASKS = "/api/v1/tasks/"
EARTH_RADIUS_M = 6_371_008.8


def offset(point, north_m=0.0, east_m=0.0):
    """[lon, lat] of a position ``north_m``/``east_m`` metres away from ``point``."""
    lon, lat = point.coords
    dlat = north_m / EARTH_RADIUS_M * 180 / math.pi
    dlon = east_m / (EARTH_RADIUS_M * math.cos(math.radians(lat))) * 180 / math.pi
    return [lon + dlon, lat + dlat]


def haversine_m(a, b):
    lon1, lat1, lon2, lat2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(h))


def geojson(coords):
    return {"type": "Point", "coordinates": coords}


def visit(client, merchant, **extra):
    return client.post(ACTIVITIES, {"kind": "visit", "merchant_id": merchant.pk, **extra})


def person_at(merchant, name="张三"):
    from crm.models import MerchantPerson

    person = Person.objects.create(name=name, phone="13812345678")
    MerchantPerson.objects.create(merchant=merchant, person=person, role="owner")
    return person


# -- check-in -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("north_m", "accuracy", "flag"),
    [
        (50, 15, "ok"),
        (2000, 15, "too_far"),
        (30, 500, "poor_accuracy"),
        (2000, 500, "too_far"),
        (50, None, "poor_accuracy"),
    ],
)
def test_checkin_distance_and_flag(world, merchants, api_as, north_m, accuracy, flag):
    merchant = merchants["grid_a"]
    position = offset(merchant.location, north_m=north_m)
    payload = {"checkin": geojson(position)}
    if accuracy is not None:
        payload["checkin_accuracy_m"] = accuracy
    response = visit(api_as(world.am_a), merchant, **payload)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["checkin_flag"] == flag
    expected = haversine_m(merchant.location.coords, position)
    assert body["checkin_distance_m"] == pytest.approx(expected, rel=0.01)
    stored = Activity.objects.get(pk=body["id"])
    assert stored.checkin_distance_m == pytest.approx(north_m, rel=0.01)
    assert body["checkin"]["coordinates"] == pytest.approx(position)


def test_checkin_distance_is_in_metres_east_west_too(world, merchants):
    merchant = merchants["grid_a"]
    from django.contrib.gis.geos import Point

    activity = activity_log(
        by=world.am_a,
        kind="visit",
        merchant=merchant,
        checkin=Point(*offset(merchant.location, east_m=1000), srid=4326),
        checkin_accuracy_m=10,
    )
    # At 30°N a degree of longitude is ~96 km: a degree-based distance would be off by orders.
    assert activity.checkin_distance_m == pytest.approx(1000, rel=0.01)
    assert activity.checkin_flag == "too_far"


def test_checkin_radius_is_a_setting(world, merchants, settings):
    settings.CHECKIN_RADIUS_M = 3000
    merchant = merchants["grid_a"]
    from django.contrib.gis.geos import Point

    activity = activity_log(
        by=world.am_a,
        kind="visit",
        merchant=merchant,
        checkin=Point(*offset(merchant.location, north_m=2000)),
        checkin_accuracy_m=5,
    )
    assert activity.checkin_flag == "ok"


@pytest.mark.parametrize(
    "checkin",
    [
        {"type": "Point", "coordinates": [120.1, 30.2, 5.0]},
        {"type": "Point", "coordinates": [10.0, 50.0]},
        {"type": "Polygon", "coordinates": [[[120.1, 30.2], [120.2, 30.2], [120.2, 30.3], [120.1, 30.2]]]},
        {"type": "Point", "coordinates": [120.1, 30.2], "crs": {"type": "name"}},
        "POINT(120.1 30.2)",
    ],
)
def test_bad_checkin_position_is_a_400_naming_it(world, merchants, api_as, checkin):
    response = visit(api_as(world.am_a), merchants["grid_a"], checkin=checkin)
    assert response.status_code == 400 and "checkin" in response.json()
    assert not Activity.objects.exists()


def test_checkin_only_on_visits_and_accuracy_needs_a_position(world, merchants, api_as):
    client = api_as(world.am_a)
    merchant = merchants["grid_a"]
    response = client.post(
        ACTIVITIES, {"kind": "call", "merchant_id": merchant.pk, "checkin": geojson(offset(merchant.location))}
    )
    assert response.status_code == 400 and "checkin" in response.json()
    response = visit(client, merchant, checkin_accuracy_m=10)
    assert response.status_code == 400 and "checkin_accuracy_m" in response.json()
    response = visit(client, merchant, checkin=geojson(offset(merchant.location)), checkin_accuracy_m=-1)
    assert response.status_code == 400 and "checkin_accuracy_m" in response.json()


# -- check-out ----------------------------------------------------------------------------------


def test_checkout_gives_the_duration(world, merchants, api_as):
    client = api_as(world.am_a)
    start = timezone.now() - datetime.timedelta(minutes=40)
    response = visit(client, merchants["grid_a"], occurred_at=start.isoformat())
    assert response.status_code == 201 and response.json()["duration_s"] is None
    url = reverse("api:activity-checkout", args=[response.json()["id"]])
    response = client.post(url, {"at": (start + datetime.timedelta(minutes=25)).isoformat()})
    assert response.status_code == 200, response.content
    assert response.json()["duration_s"] == 25 * 60
    again = client.post(url, {})
    assert again.status_code == 400 and "at" in again.json()


def test_checkout_before_checkin_is_a_400(world, merchants, api_as):
    client = api_as(world.am_a)
    start = timezone.now() - datetime.timedelta(hours=1)
    response = visit(
        client,
        merchants["grid_a"],
        occurred_at=start.isoformat(),
        checkout_at=(start - datetime.timedelta(minutes=1)).isoformat(),
    )
    assert response.status_code == 400 and "checkout_at" in response.json()
    assert not Activity.objects.exists()
    created = visit(client, merchants["grid_a"], occurred_at=start.isoformat()).json()
    url = reverse("api:activity-checkout", args=[created["id"]])
    response = client.post(url, {"at": (start - datetime.timedelta(seconds=1)).isoformat()})
    assert response.status_code == 400 and "at" in response.json()
    assert Activity.objects.get(pk=created["id"]).checkout_at is None


def test_checkout_in_one_step_and_only_of_visits(world, merchants):
    start = timezone.now() - datetime.timedelta(hours=1)
    done = activity_log(
        by=world.am_a,
        kind="visit",
        merchant=merchants["grid_a"],
        occurred_at=start,
        checkout_at=start + datetime.timedelta(minutes=10),
    )
    assert done.checkout_at - done.occurred_at == datetime.timedelta(minutes=10)
    call = activity_log(by=world.am_a, kind="call", merchant=merchants["grid_a"])
    with pytest.raises(ValidationError) as excinfo:
        activity_checkout(activity=call, by=world.am_a)
    assert "at" in excinfo.value.message_dict


def test_checkout_outside_scope_is_404(world, merchants, api_as):
    activity = activity_log(by=world.admin, kind="visit", merchant=merchants["grid_b"])
    assert api_as(world.am_a).post(reverse("api:activity-checkout", args=[activity.pk]), {}).status_code == 404
    mine = activity_log(by=world.am_a, kind="visit", merchant=merchants["grid_a"])
    assert api_as(world.mid_office).post(reverse("api:activity-checkout", args=[mine.pk]), {}).status_code == 404


# -- visits, calls and events -------------------------------------------------------------------


def test_visit_on_a_foreign_merchant_is_a_400(world, merchants, api_as):
    response = visit(api_as(world.am_a), merchants["grid_b"])
    assert response.status_code == 400 and "merchant_id" in response.json()
    response = api_as(world.am_a).post(ACTIVITIES, {"kind": "call"})
    assert response.status_code == 400 and "merchant_id" in response.json()
    assert not Activity.objects.exists()


def test_activity_takes_the_merchants_grid(world, merchants, api_as):
    response = api_as(world.am_a).post(
        ACTIVITIES, {"kind": "call", "merchant_id": merchants["grid_a"].pk, "outcome": "reached", "notes": "电话沟通"}
    )
    assert response.status_code == 201, response.content
    assert response.json()["grid"]["id"] == world.grid_a.pk
    assert response.json()["by"]["id"] == world.am_a.pk


def test_future_activity_is_refused(world, merchants, api_as):
    later = (timezone.now() + datetime.timedelta(days=1)).isoformat()
    response = visit(api_as(world.am_a), merchants["grid_a"], occurred_at=later)
    assert response.status_code == 400 and "occurred_at" in response.json()


def test_event_with_visible_attendees(world, merchants, api_as):
    second = MerchantFactory(grid=world.grid_a)
    person = person_at(merchants["grid_a"])
    response = api_as(world.am_a).post(
        ACTIVITIES,
        {
            "kind": "event",
            "grid_id": world.grid_a.pk,
            "title": "市场沙龙",
            "event_type": "salon",
            "attendee_merchant_ids": [merchants["grid_a"].pk, second.pk],
            "attendee_person_ids": [person.pk],
        },
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["merchant"] is None and body["grid"]["id"] == world.grid_a.pk
    assert {(a["type"], a["id"]) for a in body["attendees"]} == {
        ("merchant", merchants["grid_a"].pk),
        ("merchant", second.pk),
        ("person", person.pk),
    }
    assert EventAttendance.objects.filter(activity_id=body["id"]).count() == 3


def test_event_with_a_foreign_attendee_is_a_400(world, merchants, api_as):
    client = api_as(world.am_a)
    base = {"kind": "event", "grid_id": world.grid_a.pk, "title": "沙龙"}
    response = client.post(
        ACTIVITIES, {**base, "attendee_merchant_ids": [merchants["grid_a"].pk, merchants["grid_c"].pk]}
    )
    assert response.status_code == 400 and "attendee_merchant_ids" in response.json()
    foreign_person = person_at(merchants["grid_c"], "李四")
    response = client.post(ACTIVITIES, {**base, "attendee_person_ids": [foreign_person.pk]})
    assert response.status_code == 400 and "attendee_person_ids" in response.json()
    response = client.post(ACTIVITIES, base)
    assert response.status_code == 400 and "attendees" in response.json()
    assert not Activity.objects.exists()
    # ... and the service refuses them too, whatever the caller.
    with pytest.raises(ValidationError) as excinfo:
        activity_log(by=world.am_a, kind="event", grid=world.grid_a, title="x", attendees=[merchants["grid_c"]])
    assert "attendees" in excinfo.value.message_dict


def test_event_in_a_foreign_grid_is_a_400(world, merchants, api_as):
    response = api_as(world.am_a).post(
        ACTIVITIES,
        {
            "kind": "event",
            "grid_id": world.grid_b.pk,
            "title": "沙龙",
            "attendee_merchant_ids": [merchants["grid_a"].pk],
        },
    )
    assert response.status_code == 400 and "grid_id" in response.json()


def test_event_hides_attendees_the_reader_cannot_see(world, merchants, api_as):
    event = activity_log(
        by=world.branch_manager,
        kind="event",
        grid=world.grid_a,
        title="支行沙龙",
        attendees=[merchants["grid_a"], merchants["grid_b"]],
    )
    body = api_as(world.am_a).get(reverse("api:activity-detail", args=[event.pk])).json()
    assert [a["id"] for a in body["attendees"]] == [merchants["grid_a"].pk]
    body = api_as(world.branch_manager).get(reverse("api:activity-detail", args=[event.pk])).json()
    assert {a["id"] for a in body["attendees"]} == {merchants["grid_a"].pk, merchants["grid_b"].pk}


# -- next steps ---------------------------------------------------------------------------------


def test_next_step_creates_a_task_for_the_merchants_owner(world, merchants, api_as):
    merchant = merchants["grid_a"]
    merchant.owner = world.grid_leader_a
    merchant.save()
    due = timezone.now() + datetime.timedelta(days=3)
    response = visit(api_as(world.am_a), merchant, next_step="送申请材料", next_due_at=due.isoformat())
    assert response.status_code == 201, response.content
    task = Task.objects.get()
    assert (task.owner, task.merchant, task.activity_id, task.title, task.status) == (
        world.grid_leader_a,
        merchant,
        response.json()["id"],
        "送申请材料",
        "open",
    )
    assert abs(task.due_at - due) < datetime.timedelta(seconds=1)


def test_next_step_without_owner_goes_to_the_logger(world, merchants):
    activity_log(
        by=world.am_a,
        kind="call",
        merchant=merchants["grid_a"],
        next_step="回电",
        next_due_at=timezone.now() + datetime.timedelta(days=1),
    )
    assert Task.objects.get().owner == world.am_a


def test_next_step_rules(world, merchants, api_as):
    client = api_as(world.am_a)
    response = visit(client, merchants["grid_a"], next_due_at=timezone.now().isoformat())
    assert response.status_code == 400 and "next_step" in response.json()
    start = timezone.now() - datetime.timedelta(hours=2)
    response = visit(
        client,
        merchants["grid_a"],
        occurred_at=start.isoformat(),
        next_step="x",
        next_due_at=(start - datetime.timedelta(hours=1)).isoformat(),
    )
    assert response.status_code == 400 and "next_due_at" in response.json()
    assert not Task.objects.exists() and not Activity.objects.exists()


# -- funnel in the same step --------------------------------------------------------------------


def test_visit_advances_the_lead_in_the_same_step(world, merchants, api_as):
    lead = lead_create(merchant=merchants["grid_a"], product="loan", by=world.am_a)
    response = visit(
        api_as(world.am_a), merchants["grid_a"], advance_lead_id=lead.pk, advance_to="visited", intent="high"
    )
    assert response.status_code == 201, response.content
    lead.refresh_from_db()
    assert lead.stage == "visited" and lead.intent == "high"
    change = LeadStageChange.objects.get(lead=lead, to_stage="visited")
    assert change.activity_id == response.json()["id"] and change.from_stage == "lead"


def test_intent_alone_updates_the_lead(world, merchants):
    lead = lead_create(merchant=merchants["grid_a"], product="loan", by=world.am_a, intent="low")
    activity_log(by=world.am_a, kind="call", merchant=merchants["grid_a"], intent="medium", advance_lead=lead)
    lead.refresh_from_db()
    assert lead.stage == "lead" and lead.intent == "medium"


def test_illegal_advance_writes_nothing(world, merchants, api_as):
    lead = lead_create(merchant=merchants["grid_a"], product="loan", by=world.am_a)
    response = visit(
        api_as(world.am_a),
        merchants["grid_a"],
        advance_lead_id=lead.pk,
        advance_to="applied",  # needs an amount requested
        intent="high",
        checkin=geojson(offset(merchants["grid_a"].location, north_m=20)),
        checkin_accuracy_m=10,
        next_step="补材料",
        next_due_at=(timezone.now() + datetime.timedelta(days=1)).isoformat(),
    )
    assert response.status_code == 400 and "amount_requested" in response.json()
    response = visit(
        api_as(world.am_a),
        merchants["grid_a"],
        advance_lead_id=lead.pk,
        advance_to="lead",
        next_step="x",
        next_due_at=(timezone.now() + datetime.timedelta(days=1)).isoformat(),
    )
    assert response.status_code == 400 and "advance_to" in response.json()
    assert not Activity.objects.exists() and not Task.objects.exists()
    lead.refresh_from_db()
    assert lead.stage == "lead" and lead.intent == ""
    assert LeadStageChange.objects.filter(lead=lead).count() == 1


def test_advance_needs_the_merchants_own_lead(world, merchants, api_as):
    other = MerchantFactory(grid=world.grid_a)
    lead = lead_create(merchant=other, product="loan", by=world.am_a)
    response = visit(api_as(world.am_a), merchants["grid_a"], advance_lead_id=lead.pk, advance_to="visited")
    assert response.status_code == 400 and "advance_lead_id" in response.json()
    foreign = lead_create(merchant=merchants["grid_b"], product="loan", by=world.admin)
    response = visit(api_as(world.am_a), merchants["grid_a"], advance_lead_id=foreign.pk, advance_to="visited")
    assert response.status_code == 400 and "advance_lead_id" in response.json()
    response = visit(api_as(world.am_a), merchants["grid_a"], advance_to="visited")
    assert response.status_code == 400 and "advance_lead_id" in response.json()
    assert not Activity.objects.exists()
    assert Lead.objects.filter(stage="lead").count() == 2


def test_event_advances_an_attending_merchants_lead(world, merchants):
    lead = lead_create(merchant=merchants["grid_a"], product="loan", by=world.am_a)
    event = activity_log(
        by=world.am_a,
        kind="event",
        grid=world.grid_a,
        title="沙龙",
        attendees=[merchants["grid_a"]],
        advance_lead=lead,
        advance_to="interested",
    )
    lead.refresh_from_db()
    assert lead.stage == "interested"
    assert LeadStageChange.objects.get(lead=lead, to_stage="interested").activity == event


# -- API: listing, filters, JSON only -----------------------------------------------------------


def test_activity_filters(world, merchants, api_as):
    now = timezone.now()
    old = activity_log(
        by=world.am_a, kind="visit", merchant=merchants["grid_a"], occurred_at=now - datetime.timedelta(days=40)
    )
    call = activity_log(by=world.am_a, kind="call", merchant=merchants["grid_a"])
    activity_log(by=world.admin, kind="call", merchant=merchants["grid_b"])
    client = api_as(world.am_a)

    def ids(**params):
        response = client.get(ACTIVITIES, params)
        assert response.status_code == 200, response.content
        return {row["id"] for row in response.json()["results"]}

    assert ids() == {old.pk, call.pk}
    assert ids(kind="call") == {call.pk}
    assert ids(merchant=merchants["grid_a"].pk) == {old.pk, call.pk}
    assert ids(merchant=merchants["grid_b"].pk) == set()
    since = (now - datetime.timedelta(days=1)).isoformat()
    assert ids(since=since) == {call.pk}
    assert ids(until=since) == {old.pk}
    assert client.get(ACTIVITIES, {"since": "yesterday"}).status_code == 400
    assert client.get(ACTIVITIES, {"kind": "fax"}).status_code == 400


def test_activities_are_history(world, merchants, api_as):
    activity = activity_log(by=world.am_a, kind="call", merchant=merchants["grid_a"])
    url = reverse("api:activity-detail", args=[activity.pk])
    for method in ("put", "patch", "delete"):
        assert getattr(api_as(world.admin), method)(url, {"notes": "x"}).status_code == 405


def test_activities_take_json_only(world, merchants, api_as):
    response = api_as(world.am_a).post(
        ACTIVITIES, {"kind": "call", "merchant_id": merchants["grid_a"].pk}, format="multipart"
    )
    assert response.status_code == 415
    assert not Activity.objects.exists()


# -- tasks --------------------------------------------------------------------------------------


def make_task(world, merchant, by, days=1):
    activity_log(
        by=by,
        kind="call",
        merchant=merchant,
        next_step="跟进",
        next_due_at=timezone.now() + datetime.timedelta(days=days),
    )
    return Task.objects.latest("id")


def test_task_list_filters_and_complete(world, merchants, api_as):
    soon = make_task(world, merchants["grid_a"], world.am_a, days=1)
    later = make_task(world, merchants["grid_a"], world.am_a, days=10)
    theirs = make_task(world, merchants["grid_a"], world.grid_leader_a, days=2)
    client = api_as(world.am_a)

    def ids(**params):
        response = client.get(TASKS, params)
        assert response.status_code == 200, response.content
        return {row["id"] for row in response.json()["results"]}

    assert ids() == {soon.pk, later.pk, theirs.pk}
    assert ids(mine="true") == {soon.pk, later.pk}
    assert ids(due_before=(timezone.now() + datetime.timedelta(days=5)).isoformat()) == {soon.pk, theirs.pk}
    response = client.post(reverse("api:task-complete", args=[soon.pk]))
    assert response.status_code == 200 and response.json()["status"] == "done" and response.json()["done_at"]
    assert ids(status="open") == {later.pk, theirs.pk}
    again = client.post(reverse("api:task-complete", args=[soon.pk]))
    assert again.status_code == 400 and "status" in again.json()


def test_task_complete_outside_scope(world, merchants, api_as):
    foreign = make_task(world, merchants["grid_b"], world.admin)
    assert api_as(world.am_a).post(reverse("api:task-complete", args=[foreign.pk])).status_code == 404
    mine = make_task(world, merchants["grid_a"], world.am_a)
    assert api_as(world.mid_office).post(reverse("api:task-complete", args=[mine.pk])).status_code == 404
    assert set(Task.objects.values_list("status", flat=True)) == {"open"}
    task_complete(task=mine, by=world.am_a)
    assert Task.objects.get(pk=mine.pk).status == "done"


def test_tasks_cannot_be_created_or_edited_here(world, merchants, api_as):
    task = make_task(world, merchants["grid_a"], world.am_a)
    client = api_as(world.admin)
    assert client.post(TASKS, {"title": "x"}).status_code == 405
    assert client.patch(reverse("api:task-detail", args=[task.pk]), {"status": "done"}).status_code == 405


# -- bad input is a 400, never a 500 ------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "payload", "field"),
    [
        (LEADS_URL, {"merchant_id": 2**70, "product": "loan"}, "merchant_id"),
        (LEADS_URL, {"merchant_id": "abc", "product": "loan"}, "merchant_id"),
        (LEADS_URL, {"merchant_id": 1, "product": "loan", "owner_id": 2**64}, "owner_id"),
        (LEADS_URL, {"merchant_id": 1, "product": "loan", "amount_requested": "1e400"}, "amount_requested"),
        (ACTIVITIES, {"kind": "visit", "merchant_id": 2**63}, "merchant_id"),
        (
            ACTIVITIES,
            {"kind": "event", "grid_id": 1, "title": "x", "attendee_merchant_ids": [2**70]},
            "attendee_merchant_ids",
        ),
        (ACTIVITIES, {"kind": "event", "grid_id": 1, "title": "x", "attendee_person_ids": "1"}, "attendee_person_ids"),
        (ACTIVITIES, {"kind": "visit", "merchant_id": 1, "occurred_at": "9999-12-31T23:59:59Z"}, "occurred_at"),
        (ACTIVITIES, {"kind": "visit", "merchant_id": 1, "checkin_accuracy_m": "NaN"}, "checkin_accuracy_m"),
        (
            ACTIVITIES,
            {"kind": "visit", "merchant_id": 1, "advance_lead_id": 2**70, "advance_to": "visited"},
            "advance_lead_id",
        ),
        (ACTIVITIES, {"kind": "visit", "merchant_id": 1, "client_uuid": "not-a-uuid"}, "client_uuid"),
        (ACTIVITIES, {"kind": "visit", "merchant_id": 1, "title": "x" * 101}, "title"),
        (ACTIVITIES, {"kind": ["visit"], "merchant_id": 1}, "kind"),
        (ACTIVITIES, {"kind": "visit", "merchant_id": 1, "device_time": "0001-01-01T00:00:00+14:00"}, "device_time"),
        (ACTIVITIES, {"kind": "visit", "merchant_id": 1, "occurred_at": "0001-01-01T00:00:00+14:00"}, "occurred_at"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(world, merchants, api_as, url, payload, field):
    payload = {k: (merchants["grid_a"].pk if k == "merchant_id" and v == 1 else v) for k, v in payload.items()}
    payload = {k: (world.grid_a.pk if k == "grid_id" and v == 1 else v) for k, v in payload.items()}
    response = api_as(world.am_a).post(url, payload)
    assert response.status_code == 400, response.content
    assert field in response.json()


def test_same_client_uuid_twice_is_a_400(world, merchants, api_as):
    client = api_as(world.am_a)
    payload = {
        "kind": "call",
        "merchant_id": merchants["grid_a"].pk,
        "client_uuid": "6f1c8a52-0b7e-4c7a-9d0e-3b1f2a4c5d6e",
    }
    assert client.post(ACTIVITIES, payload).status_code == 201
    response = client.post(ACTIVITIES, payload)
    assert response.status_code == 400 and "client_uuid" in response.json()
    assert Activity.objects.count() == 1


def test_bad_ids_in_urls_and_filters(world, api_as):
    client = api_as(world.am_a)
    for url in (
        f"/api/v1/leads/{2**70}/",
        f"/api/v1/activities/{2**70}/",
        f"/api/v1/photos/{2**70}/file/",
        f"/api/v1/tasks/{2**70}/",
    ):
        assert client.get(url).status_code == 404, url
    assert client.post(f"/api/v1/leads/{2**70}/advance/", {"to_stage": "contacted"}).status_code == 404
    assert client.post(f"/api/v1/tasks/{2**70}/complete/").status_code == 404
    for url, params in (
        (ACTIVITIES, {"merchant": 2**70}),
        (TASKS, {"due_before": "soon"}),
        (TASKS, {"owner": "x"}),
        ("/api/v1/stage-changes/", {"lead": -1}),
        ("/api/v1/photos/", {"activity": 2**64}),
    ):
        assert client.get(url, params).status_code == 400, (url, params)


@pytest.mark.parametrize(
    ("url", "param"),
    [(ACTIVITIES, "since"), (ACTIVITIES, "until"), (TASKS, "due_before"), ("/api/v1/stage-changes/", "since")],
)
@pytest.mark.parametrize(
    "value", ["8935-10-19T13:00:18-23:05", "0001-01-01T00:00:00+08:00", "9999-12-31T23:59:59-14:00"]
)
def test_odd_time_zones_in_filters_are_no_500(world, api_as, url, param, value):
    # PostgreSQL refuses offsets beyond ±15:59 (found by schemathesis); edges of the calendar overflow.
    response = api_as(world.am_a).get(url, {param: value})
    assert response.status_code in (200, 400), response.content
