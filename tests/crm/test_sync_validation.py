"""POST /api/v1/sync/, activity items: each payload field is judged as POST /activities/ judges it
(the same values, the same errors, per item and per field, whether or not the value is an ordinary
one), and the merchants read once for the batch are read again when a merchant item of the batch
changed them. activity_log_many with the caller's scope reading: not read twice, and the INSERT
still re-checks it."""

import datetime
import json
import uuid
from types import SimpleNamespace

import pytest
from django.utils import timezone

from crm.api.activities import ActivitySerializer
from crm.models import Activity, Merchant, Task
from crm.services.activities import activity_log_many
from tests.factories import MerchantFactory

SYNC = "/api/v1/sync/"
pytestmark = pytest.mark.django_db


def item(merchant, **payload):
    return {
        "client_uuid": str(uuid.uuid4()),
        "type": "activity",
        "device_time": (timezone.now() - datetime.timedelta(minutes=10)).isoformat(),
        "payload": {"merchant": merchant.pk, "kind": "visit", **payload},
    }


def post(client, items):
    # Sent as text, so that a payload may carry what a JSON renderer would refuse (a lone surrogate).
    response = client.post(SYNC, data=json.dumps({"items": items}), content_type="application/json")
    assert response.status_code == 200, response.content
    return response.json()["results"]


def serializer_errors(user, data) -> dict:
    serializer = ActivitySerializer(data={"kind": "visit", **data}, context={"request": SimpleNamespace(user=user)})
    assert not serializer.is_valid()
    return json.loads(json.dumps(serializer.errors))


SOON = (timezone.now() + datetime.timedelta(days=1)).isoformat()

# (sync payload, the same values as ActivitySerializer data, the error keys: sync name -> serializer name)
BAD = [
    ({"notes": "a\x00b"}, {"notes": "a\x00b"}, {"notes": "notes"}),
    ({"notes": "坏\ud800字"}, {"notes": "坏\ud800字"}, {"notes": "notes"}),
    ({"notes": ["a list"]}, {"notes": ["a list"]}, {"notes": "notes"}),
    (
        {"next_step": "x" * 201, "next_due_at": SOON},
        {"next_step": "x" * 201, "next_due_at": SOON},
        {"next_step": "next_step"},
    ),
    ({"outcome": "nonsense"}, {"outcome": "nonsense"}, {"outcome": "outcome"}),
    ({"intent": 5}, {"intent": 5}, {"intent": "intent"}),
    (
        {"next_step": "回访", "next_due_at": "tomorrow"},
        {"next_step": "回访", "next_due_at": "tomorrow"},
        {"next_due_at": "next_due_at"},
    ),
    (
        {"occurred_at": "2026-13-01T10:00:00+08:00"},
        {"occurred_at": "2026-13-01T10:00:00+08:00"},
        {"occurred_at": "occurred_at"},
    ),
    ({"checkout_at": 12}, {"checkout_at": 12}, {"checkout_at": "checkout_at"}),
    ({"checkin_accuracy_m": -1}, {"checkin_accuracy_m": -1}, {"checkin": "checkin_accuracy_m"}),
    ({"checkin_accuracy_m": 2e6}, {"checkin_accuracy_m": 2e6}, {"checkin": "checkin_accuracy_m"}),
    ({"checkin_accuracy_m": "abc"}, {"checkin_accuracy_m": "abc"}, {"checkin": "checkin_accuracy_m"}),
    (  # DRF takes true as 1.0: accepted, as by POST /activities/
        {"checkin_accuracy_m": True, "checkin": {"lat": 30.2, "lon": 120.1}},
        {},
        {},
    ),
    (
        {"checkin": {"type": "Point", "coordinates": [500, 95]}},
        {"checkin": {"type": "Point", "coordinates": [500, 95]}},
        {"checkin": "checkin"},
    ),
    (
        {"checkin": {"type": "Point", "coordinates": [120.1, 30.2, 5]}},
        {"checkin": {"type": "Point", "coordinates": [120.1, 30.2, 5]}},
        {"checkin": "checkin"},
    ),
    (  # two fields wrong at once: both named, in the serializer's order
        {"outcome": "nonsense", "notes": "a\x00b"},
        {"outcome": "nonsense", "notes": "a\x00b"},
        {"notes": "notes", "outcome": "outcome"},
    ),
]


def test_each_bad_field_gets_the_activity_serializers_own_error(world, merchants, api_as):
    m = merchants["grid_a"]
    sent = [item(m, **payload) for payload, _data, _keys in BAD]
    got = post(api_as(world.am_a), sent)
    for (payload, data, keys), r in zip(BAD, got, strict=True):
        if not keys:
            assert r["status"] == "created", (payload, r)
            continue
        assert r["status"] == "rejected", (payload, r)
        expected = serializer_errors(world.am_a, data)
        assert r["errors"] == {ours: expected[theirs] for ours, theirs in keys.items()}, payload
        assert list(r["errors"]) == list(keys), payload
    created = [r["id"] for r in got if r["status"] == "created"]
    assert Activity.objects.filter(client_uuid__in=[s["client_uuid"] for s in sent]).count() == len(created)


def test_values_are_taken_as_the_serializer_takes_them(world, merchants, api_as):
    m = merchants["grid_a"]
    naive = "2026-01-05T09:30:00"  # no offset: the server's time zone, as POST /activities/ takes it
    sent = [
        item(m, notes="  门店在装修  ", next_step="  回访  ", next_due_at=SOON),
        item(m, notes=123, outcome="reached", intent="high", checkin={"lat": 30.2, "lon": 120.1, "accuracy_m": 8}),
        item(m, occurred_at=naive),
        item(m, occurred_at="2026-01-05T01:30:00Z", checkin_accuracy_m=0, checkin={"lat": 30.2, "lon": 120.1}),
    ]
    got = post(api_as(world.am_a), sent)
    assert [r["status"] for r in got] == ["created"] * 4, got
    rows = {a.client_uuid: a for a in Activity.objects.filter(client_uuid__in=[s["client_uuid"] for s in sent])}
    first, second, third, fourth = (rows[uuid.UUID(s["client_uuid"])] for s in sent)
    assert first.notes == "门店在装修" and first.next_step == "回访"
    assert Task.objects.get(activity=first).title == "回访"
    assert second.notes == "123" and second.outcome == "reached" and second.intent == "high"
    assert second.checkin_accuracy_m == 8.0
    expected = ActivitySerializer().fields["occurred_at"].run_validation(naive)
    assert third.occurred_at == expected
    assert fourth.occurred_at == datetime.datetime(2026, 1, 5, 1, 30, tzinfo=datetime.UTC)
    assert fourth.checkin_accuracy_m == 0.0
    # The answer gives the time as the serializer's field does (the server's time zone).
    assert got[3]["server"]["occurred_at"] == expected.replace(hour=9, minute=30).isoformat()


def test_a_merchant_changed_earlier_in_the_batch_is_read_again_for_the_visits_after_it(world, merchants, api_as):
    m = merchants["grid_a"]
    Merchant.objects.filter(pk=m.pk).update(owner=world.am_a)
    m.refresh_from_db()
    edit = {
        "client_uuid": str(uuid.uuid4()),
        "type": "merchant_update",
        "device_time": (timezone.now() - datetime.timedelta(minutes=20)).isoformat(),
        "payload": {"merchant": m.pk, "base_version": m.version, "fields": {"owner": world.grid_leader_a.pk}},
    }
    before = item(m, next_step="先回访", next_due_at=SOON)
    after = item(m, next_step="再回访", next_due_at=SOON)
    got = post(api_as(world.am_a), [before, edit, after])
    assert [r["status"] for r in got] == ["created"] * 3, got
    assert Merchant.objects.get(pk=m.pk).owner_id == world.grid_leader_a.pk
    # Each follow-up goes to the owner the merchant had when its visit was written.
    assert Task.objects.get(activity_id=got[0]["id"]).owner_id == world.am_a.pk
    assert Task.objects.get(activity_id=got[2]["id"]).owner_id == world.grid_leader_a.pk


def test_a_batch_of_visits_reads_the_stored_uuids_and_the_merchants_in_one_statement(
    world, api_as, django_assert_max_num_queries
):
    client = api_as(world.am_a)
    shops = [MerchantFactory(grid=world.grid_a) for _ in range(3)]
    sent = [item(shops[i % 3], checkin={"lat": 30.0, "lon": 120.0, "accuracy_m": 10}) for i in range(30)]
    # lock, memberships, (stored UUIDs + merchants in scope), the INSERT; plus the request's own
    with django_assert_max_num_queries(6):
        got = post(client, sent)
    assert [r["status"] for r in got] == ["created"] * 30


# -- activity_log_many with the caller's reading of the scope ------------------------------------------


def test_scope_read_by_the_caller_is_not_read_again(world, merchants, django_assert_max_num_queries):
    m = merchants["grid_a"]
    items = [{"kind": "visit", "merchant": m.pk, "client_uuid": uuid.uuid4()} for _ in range(5)]
    # memberships, the INSERT
    with django_assert_max_num_queries(2):
        got = activity_log_many(by=world.am_a, items=items, scoped={m.pk: (m.grid_id, m.owner_id)})
    assert [r.status for r in got] == ["created"] * 5


def test_scope_read_by_the_caller_rejects_and_the_insert_still_rechecks(world, merchants):
    a, b = merchants["grid_a"], merchants["grid_b"]
    out = {"kind": "visit", "merchant": a.pk, "client_uuid": uuid.uuid4()}
    (r,) = activity_log_many(by=world.am_a, items=[out], scoped={a.pk: None})
    assert r.status == "rejected" and "merchant" in r.error.message_dict
    # A caller's reading that says "in scope" for a merchant that is not: the INSERT refuses it.
    wrong = {"kind": "visit", "merchant": b.pk, "client_uuid": uuid.uuid4()}
    (r,) = activity_log_many(by=world.am_a, items=[wrong], scoped={b.pk: (b.grid_id, b.owner_id)})
    assert r.status == "rejected" and "merchant" in r.error.message_dict
    assert not Activity.objects.filter(merchant=b).exists()
    # A merchant the reading does not cover is read as before.
    late = {"kind": "visit", "merchant": a.pk, "client_uuid": uuid.uuid4()}
    (r,) = activity_log_many(by=world.am_a, items=[late], scoped={b.pk: None})
    assert r.status == "created"


# -- the lean checks answer what the fields answer -------------------------------------------------

LEAN_CASES = {
    "kind": ["visit", "call", "event", "nonsense", "", 1, None],
    "outcome": ["reached", "", "Reached", 0, ["reached"]],
    "intent": ["high", "medium", "low", "", "HIGH"],
    "notes": ["走访", "  走访  ", "", "   ", "a\x00b", "x" * 5000, 12, 1.5, True, "坏\ud800字", "\t换行\n"],
    "next_step": ["回访", "x" * 200, "x" * 201, " x ", ""],
    "occurred_at": [
        "2026-01-05T09:30:00+08:00",
        "2026-01-05T01:30:00Z",
        "2026-01-05T01:30:00.123456+00:00",
        "2026-01-05T09:30:00",
        "2026-01-05",
        "2026-13-05T09:30:00Z",
        "yesterday",
        datetime.datetime(2026, 1, 5, 1, 30, tzinfo=datetime.UTC),
        datetime.datetime(2026, 1, 5, 1, 30),
        datetime.date(2026, 1, 5),
        12,
    ],
    "next_due_at": ["2026-01-06T09:30:00+08:00", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00"],
    "checkout_at": ["2026-01-05T10:00:00+08:00", ""],
    "checkin_accuracy_m": [0, 0.0, 15, 15.5, 1e6, 1e6 + 1, -0.1, "15", True, 10**400, float("inf"), float("nan")],
}


@pytest.mark.parametrize("name", sorted(LEAN_CASES))
def test_lean_checks_take_a_value_exactly_as_the_field_does(name):
    from rest_framework.exceptions import ValidationError

    from crm.services.sync import _SLOW, _activity_plan, _activity_serializer

    lean = {field: check for field, _source, check, _skip in _activity_plan()}[name]
    field = _activity_serializer(context={}).fields[name]
    tz = timezone.get_current_timezone()
    taken = 0
    for value in LEAN_CASES[name]:
        answer = lean(value, tz) if lean is not None else _SLOW
        if answer is _SLOW:
            continue  # the field itself judges it
        taken += 1
        try:
            expected = field.run_validation(value)
        except ValidationError as exc:
            raise AssertionError(f"{name}: {value!r} taken as {answer!r}, the field says {exc.detail}") from None
        assert type(answer) is type(expected) and answer == expected, (name, value)
        if isinstance(expected, datetime.datetime):
            assert answer.isoformat() == expected.isoformat(), (name, value)
    assert taken, f"{name}: no ordinary value taken by its lean check"
