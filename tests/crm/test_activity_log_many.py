"""activity_log_many (the offline outbox's set-based path): the same rows, flags, distances and
follow-up tasks as activity_log for the same inputs, idempotent by client UUID, a bad item never
loses the others, and a number of queries that does not grow with the batch."""

import datetime
import math
import uuid

import pytest
from django.contrib.gis.geos import Point
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from crm.models import Activity, Task
from crm.services.activities import activity_log, activity_log_many
from crm.services.leads import lead_create
from grids.scoping import scope_grant
from tests.factories import MerchantFactory

pytestmark = pytest.mark.django_db
EARTH_RADIUS_M = 6_371_008.8
#: Fields compared between the two paths (ids, UUIDs and receive times differ by nature).
SAME = (
    "kind",
    "merchant_id",
    "grid_id",
    "by_id",
    "occurred_at",
    "title",
    "event_type",
    "notes",
    "outcome",
    "intent",
    "next_step",
    "checkin_accuracy_m",
    "checkin_flag",
    "checkout_at",
    "device_time",
)


def near(merchant, north_m):
    lon, lat = merchant.location.coords
    return Point(lon, lat + north_m / EARTH_RADIUS_M * 180 / math.pi, srid=4326)


def inputs(merchant, now):
    """A spread of visits and calls: each check-in flag, with and without follow-ups."""
    at = now - datetime.timedelta(hours=1)
    due = now + datetime.timedelta(days=2)
    return [
        {"kind": "visit", "checkin": near(merchant, 50), "checkin_accuracy_m": 10.0, "outcome": "reached"},
        {"kind": "visit", "checkin": near(merchant, 350), "checkin_accuracy_m": 10.0, "intent": "high"},
        {"kind": "visit", "checkin": near(merchant, 20), "checkin_accuracy_m": 500.0},
        {"kind": "visit", "checkin": near(merchant, 20)},  # accuracy unknown
        {"kind": "visit", "notes": "无定位", "checkout_at": at + datetime.timedelta(minutes=20)},
        {"kind": "call", "outcome": "reached", "next_step": "寄资料", "next_due_at": due},
        {
            "kind": "visit",
            "checkin": near(merchant, 80),
            "checkin_accuracy_m": 5.0,
            "next_step": "回访",
            "next_due_at": due,
        },
    ], at


def rows(ids):
    return {a.pk: a for a in Activity.objects.filter(pk__in=ids)}


def test_same_rows_flags_distances_and_tasks_as_activity_log(world, merchants):
    m = merchants["grid_a"]
    now = timezone.now()
    specs, at = inputs(m, now)
    one_by_one = [
        activity_log(by=world.am_a, merchant=m, occurred_at=at, client_uuid=uuid.uuid4(), device_time=at, **spec)
        for spec in specs
    ]
    many = activity_log_many(
        by=world.am_a,
        items=[
            {"merchant": m, "occurred_at": at, "client_uuid": uuid.uuid4(), "device_time": at, **spec} for spec in specs
        ],
    )
    assert [r.status for r in many] == ["created"] * len(specs)
    single_rows = rows([a.pk for a in one_by_one])
    bulk_rows = rows([r.id for r in many])
    flags = []
    for a, r in zip(one_by_one, many, strict=True):
        x, y = single_rows[a.pk], bulk_rows[r.id]
        assert {f: getattr(x, f) for f in SAME} == {f: getattr(y, f) for f in SAME}
        if x.checkin_location is None:
            assert y.checkin_location is None and y.checkin_distance_m is None
        else:
            assert x.checkin_location.equals_exact(y.checkin_location, 1e-12)
            assert y.checkin_distance_m == pytest.approx(x.checkin_distance_m, abs=1e-6)
        # What the service answers is what was stored (its Activity too, the position loaded on use).
        answered = r.activity
        assert {f: getattr(answered, f) for f in (*SAME, "checkin_distance_m", "received_at", "client_uuid")} == {
            f: getattr(y, f) for f in (*SAME, "checkin_distance_m", "received_at", "client_uuid")
        }
        assert answered.checkin_location == y.checkin_location
        flags.append(y.checkin_flag)
        tx = Task.objects.filter(activity=x).values_list("owner_id", "merchant_id", "title", "due_at", "lead_id")
        ty = Task.objects.filter(activity=y).values_list("owner_id", "merchant_id", "title", "due_at", "lead_id")
        assert list(tx) == list(ty)
    assert flags == ["ok", "too_far", "poor_accuracy", "poor_accuracy", "", "", "ok"]
    assert Task.objects.filter(activity__in=list(bulk_rows)).count() == 2


def test_task_goes_to_the_merchants_owner(world, merchants):
    m = MerchantFactory(grid=world.grid_a, owner=world.grid_leader_a)
    due = timezone.now() + datetime.timedelta(days=1)
    (r,) = activity_log_many(
        by=world.am_a,
        items=[{"kind": "call", "merchant": m.pk, "client_uuid": uuid.uuid4(), "next_step": "x", "next_due_at": due}],
    )
    assert Task.objects.get(activity_id=r.id).owner_id == world.grid_leader_a.pk


def test_the_same_batch_twice_is_one_set_of_rows(world, merchants):
    m = merchants["grid_a"]
    due = timezone.now() + datetime.timedelta(days=1)
    batch = [
        {"kind": "visit", "merchant": m, "client_uuid": uuid.uuid4(), "next_step": "回访", "next_due_at": due}
        for _ in range(4)
    ]
    first = activity_log_many(by=world.am_a, items=batch)
    again = activity_log_many(by=world.am_a, items=batch)
    assert [r.status for r in first] == ["created"] * 4
    assert [r.status for r in again] == ["duplicate"] * 4
    assert [r.id for r in again] == [r.id for r in first]
    assert Activity.objects.filter(merchant=m).count() == 4
    assert Task.objects.filter(merchant=m).count() == 4


def test_a_uuid_twice_in_one_batch_is_one_row(world, merchants):
    cu = uuid.uuid4()
    item = {"kind": "visit", "merchant": merchants["grid_a"], "client_uuid": cu}
    got = activity_log_many(by=world.am_a, items=[item, dict(item)])
    assert [r.status for r in got] == ["created", "duplicate"]
    assert got[0].id == got[1].id
    # The first rejected: the second is judged on its own.
    cu2 = uuid.uuid4()
    bad = {"kind": "visit", "merchant": merchants["grid_a"], "client_uuid": cu2, "outcome": "nonsense"}
    got = activity_log_many(by=world.am_a, items=[bad, {**bad, "outcome": "reached"}])
    assert [r.status for r in got] == ["rejected", "created"]


def test_someone_elses_uuid_is_rejected(world, merchants):
    cu = uuid.uuid4()
    activity_log_many(
        by=world.grid_leader_a, items=[{"kind": "visit", "merchant": merchants["grid_a"], "client_uuid": cu}]
    )
    (r,) = activity_log_many(
        by=world.am_a, items=[{"kind": "visit", "merchant": merchants["grid_a"], "client_uuid": cu}]
    )
    assert r.status == "rejected" and "client_uuid" in r.error.message_dict


def test_a_bad_item_does_not_lose_the_others_and_gets_activity_logs_error(world, merchants):
    m = merchants["grid_a"]
    now = timezone.now()
    bad = [
        {"kind": "visit", "merchant": m, "occurred_at": now + datetime.timedelta(days=2)},
        {"kind": "call", "merchant": m, "checkin": near(m, 10)},
        {"kind": "visit", "merchant": m, "checkin_accuracy_m": 10.0},
        {"kind": "visit", "merchant": m, "next_due_at": now + datetime.timedelta(days=1)},
        {"kind": "visit", "merchant": m, "outcome": "nonsense"},
        {"kind": "visit", "merchant": merchants["grid_b"]},  # not theirs
        {"kind": "visit", "merchant": None},
        {"kind": "walk", "merchant": m},
    ]
    expected = []
    for spec in bad:
        with pytest.raises(Exception) as exc:
            activity_log(by=world.am_a, **spec)
        expected.append(exc.value.message_dict)
    good = {"kind": "visit", "merchant": m}
    items = [{**good, "client_uuid": uuid.uuid4()}]
    items += [{**spec, "client_uuid": uuid.uuid4()} for spec in bad]
    items += [{**good, "client_uuid": uuid.uuid4()}]
    got = activity_log_many(by=world.am_a, items=items)
    assert [r.status for r in got] == ["created"] + ["rejected"] * len(bad) + ["created"]
    assert [r.error.message_dict for r in got[1:-1]] == expected
    assert Activity.objects.filter(client_uuid__in=[i["client_uuid"] for i in items]).count() == 2


def test_lead_advance_goes_through_activity_log(world, merchants):
    m = merchants["grid_a"]
    lead = lead_create(merchant=m, product="loan", by=world.am_a)
    ok = {"kind": "visit", "merchant": m, "client_uuid": uuid.uuid4(), "advance_lead": lead, "advance_to": "visited"}
    illegal = {**ok, "client_uuid": uuid.uuid4(), "advance_to": "disbursed"}
    plain = {"kind": "visit", "merchant": m, "client_uuid": uuid.uuid4()}
    got = activity_log_many(by=world.am_a, items=[illegal, plain, ok])
    assert [r.status for r in got] == ["rejected", "created", "created"]
    lead.refresh_from_db()
    assert lead.stage == "visited"
    assert not Activity.objects.filter(client_uuid=illegal["client_uuid"]).exists()
    again = activity_log_many(by=world.am_a, items=[ok])
    assert again[0].status == "duplicate" and again[0].id == got[2].id


def test_scope_grant_lets_a_granted_grid_through(world, merchants):
    m = merchants["grid_b"]
    item = {"kind": "visit", "merchant": m, "client_uuid": uuid.uuid4()}
    assert activity_log_many(by=world.am_a, items=[item])[0].status == "rejected"
    with scope_grant(world.am_a, [world.grid_b.pk]):
        assert activity_log_many(by=world.am_a, items=[item])[0].status == "created"


@pytest.mark.parametrize("size", [10, 50])
def test_queries_do_not_grow_with_the_batch(world, merchants, size, django_assert_max_num_queries):
    others = [MerchantFactory(grid=world.grid_a) for _ in range(3)]
    due = timezone.now() + datetime.timedelta(days=1)
    items = [
        {
            "kind": "visit",
            "merchant": others[i % 3],
            "client_uuid": uuid.uuid4(),
            "checkin": near(others[i % 3], 30),
            "checkin_accuracy_m": 8.0,
            **({"next_step": "回访", "next_due_at": due} if i % 2 else {}),
        }
        for i in range(size)
    ]
    items[3] = {**items[3], "outcome": "nonsense"}  # rejected in Python
    # memberships, the merchants' scope, the INSERT, the tasks
    with django_assert_max_num_queries(4):
        got = activity_log_many(by=world.am_a, items=items)
    assert sum(r.status == "created" for r in got) == size - 1
    with CaptureQueriesContext(connection) as ctx:
        again = activity_log_many(by=world.am_a, items=items)
    assert {r.status for r in again} == {"duplicate", "rejected"}
    assert len(ctx.captured_queries) <= 4  # memberships, scope, the INSERT (nothing new), the lookup
