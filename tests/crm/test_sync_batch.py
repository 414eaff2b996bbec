"""POST /api/v1/sync/: the tablet's outbox. Per-item answers (created / duplicate / rejected /
conflict), idempotency by client UUID, one savepoint per item, device time kept, 400s naming the
field, the late-visit rule (a merchant reassigned while the account manager was offline), and
merchants created and edited offline."""

import datetime
import uuid

import pytest
from django.db import connection
from django.utils import timezone

from crm.models import Activity, Lead, Merchant, Task
from crm.models.merchants import MerchantSyncEdit
from crm.services.handover import handover_apply
from crm.services.leads import lead_create
from crm.services.merchants import merchant_assign
from grids.models import Membership
from tests.factories import MembershipFactory, MerchantFactory, UserFactory

SYNC = "/api/v1/sync/"


def item(payload, *, type="activity", device_time=None, client_uuid=None):
    return {
        "client_uuid": str(client_uuid or uuid.uuid4()),
        "type": type,
        "device_time": (device_time or timezone.now() - datetime.timedelta(minutes=10)).isoformat(),
        "payload": payload,
    }


def visit(merchant, **extra):
    return item({"merchant": merchant.pk, "kind": "visit", "notes": "走访", **extra})


def post(client, items):
    return client.post(SYNC, {"items": items}, format="json")


def results(response):
    assert response.status_code == 200, response.content
    return response.json()["results"]


def backdate_history(days=2):
    """Tests run in one transaction, where now() is one instant: pretend everything recorded so
    far (merchants, memberships) was recorded ``days`` ago, so that what the test does next comes
    later in the history, as it would in life."""
    with connection.cursor() as cursor:
        for table in ("crm_merchantevent", "grids_membershipevent"):
            cursor.execute(f"UPDATE {table} SET pgh_created_at = pgh_created_at - %s", [datetime.timedelta(days=days)])


# -- created / duplicate / idempotency -----------------------------------------------------------


def test_batch_creates_visits_and_answers_per_item_in_order(world, merchants, api_as):
    client = api_as(world.am_a)
    m = merchants["grid_a"]
    sent = [visit(m, outcome="reached", intent="high") for _ in range(3)]
    got = results(post(client, sent))
    assert [r["client_uuid"] for r in got] == [s["client_uuid"] for s in sent]
    assert {r["status"] for r in got} == {"created"}
    assert all(r["errors"] is None for r in got)
    rows = Activity.objects.filter(client_uuid__in=[s["client_uuid"] for s in sent])
    assert {a.pk for a in rows} == {r["id"] for r in got}
    assert all(a.by_id == world.am_a.pk and a.merchant_id == m.pk for a in rows)


def test_device_time_is_kept_and_received_at_is_server_time(world, merchants, api_as):
    device_time = timezone.now() - datetime.timedelta(hours=3)
    sent = visit(merchants["grid_a"])
    sent["device_time"] = device_time.isoformat()
    before = timezone.now()
    response = post(api_as(world.am_a), [sent])
    (r,) = results(response)
    activity = Activity.objects.get(pk=r["id"])
    assert activity.device_time == device_time
    assert activity.occurred_at == device_time  # the visit happened when it was logged on the device
    assert activity.received_at >= before
    assert datetime.datetime.fromisoformat(response.json()["received_at"]) >= before


def test_same_uuid_again_is_duplicate_with_the_same_id_and_one_row(world, merchants, api_as):
    client = api_as(world.am_a)
    batch = [visit(merchants["grid_a"]) for _ in range(5)]
    first = results(post(client, batch))
    again = results(post(client, batch))
    assert [r["status"] for r in again] == ["duplicate"] * 5
    assert [r["id"] for r in again] == [r["id"] for r in first]
    assert Activity.objects.filter(client_uuid__in=[b["client_uuid"] for b in batch]).count() == 5


def test_same_uuid_twice_in_one_batch_is_one_row(world, merchants, api_as):
    one = visit(merchants["grid_a"])
    got = results(post(api_as(world.am_a), [one, dict(one)]))
    assert [r["status"] for r in got] == ["created", "duplicate"]
    assert got[0]["id"] == got[1]["id"]
    assert Activity.objects.filter(client_uuid=one["client_uuid"]).count() == 1


def test_someone_elses_uuid_is_rejected_without_revealing_the_row(world, merchants, api_as):
    one = visit(merchants["grid_a"])
    results(post(api_as(world.grid_leader_a), [one]))
    (r,) = results(post(api_as(world.am_a), [one]))
    assert r["status"] == "rejected" and r["id"] is None
    assert "client_uuid" in r["errors"]


def test_a_rejected_item_does_not_lose_the_others(world, merchants, api_as):
    m = merchants["grid_a"]
    sent = [
        visit(m),
        visit(m, occurred_at=(timezone.now() + datetime.timedelta(days=2)).isoformat()),  # in the future
        visit(m, checkin={"lat": 95.0, "lon": 500.0}),  # not a position
        item({"merchant": m.pk, "kind": "call", "checkin": {"lat": 30.2, "lon": 120.1}}),  # a call has no check-in
        visit(m, next_step="送资料", next_due_at=(timezone.now() + datetime.timedelta(days=1)).isoformat()),
    ]
    got = results(post(api_as(world.am_a), sent))
    assert [r["status"] for r in got] == ["created", "rejected", "rejected", "rejected", "created"]
    assert "occurred_at" in got[1]["errors"]
    assert "checkin" in got[2]["errors"]
    assert "checkin" in got[3]["errors"]
    assert Activity.objects.filter(client_uuid__in=[s["client_uuid"] for s in sent]).count() == 2
    assert Task.objects.filter(activity_id=got[4]["id"], title="送资料").exists()


def test_checkin_from_the_device_is_measured_in_the_database(world, merchants, api_as):
    m = merchants["grid_a"]
    lon, lat = m.location.coords
    (r,) = results(post(api_as(world.am_a), [visit(m, checkin={"lat": lat + 0.0009, "lon": lon, "accuracy_m": 12})]))
    assert r["status"] == "created"
    activity = Activity.objects.get(pk=r["id"])
    assert activity.checkin_distance_m == pytest.approx(100, rel=0.02)
    assert activity.checkin_accuracy_m == 12 and activity.checkin_flag == "ok"
    assert r["server"]["checkin_flag"] == "ok"


def test_visit_can_advance_the_lead_in_the_same_step(world, merchants, api_as):
    m = merchants["grid_a"]
    lead = lead_create(merchant=m, product="loan", by=world.am_a)
    sent = visit(m, intent="high", advance_lead=lead.pk, advance_to="visited")
    sent["device_time"] = timezone.now().isoformat()  # after the lead was opened
    (r,) = results(post(api_as(world.am_a), [sent]))
    assert r["status"] == "created", r
    lead.refresh_from_db()
    assert lead.stage == "visited" and lead.intent == "high"


def test_an_illegal_stage_move_rejects_the_whole_item(world, merchants, api_as):
    m = merchants["grid_a"]
    lead = lead_create(merchant=m, product="loan", by=world.am_a)
    sent = visit(m, advance_lead=lead.pk, advance_to="disbursed")
    sent["device_time"] = timezone.now().isoformat()
    (r,) = results(post(api_as(world.am_a), [sent]))
    assert r["status"] == "rejected"
    assert r["errors"]  # the funnel service's reason (here: a disbursement needs its amounts)
    assert not Activity.objects.filter(merchant=m).exists()


# -- scope ----------------------------------------------------------------------------------------


def test_merchant_never_had_is_rejected_exactly_like_one_that_does_not_exist(world, merchants, api_as):
    client = api_as(world.am_a)
    other = visit(merchants["grid_b"])
    missing = item({"merchant": 2**62, "kind": "visit"})
    got = results(post(client, [other, missing]))
    assert [r["status"] for r in got] == ["rejected", "rejected"]
    assert got[0]["errors"] == got[1]["errors"]
    assert list(got[0]["errors"]) == ["merchant"]
    assert got[0]["server"] is None and got[0]["warnings"] is None and got[0]["id"] is None
    assert not Activity.objects.filter(merchant=merchants["grid_b"]).exists()


def test_visit_older_than_the_membership_is_still_rejected(world, merchants, api_as):
    """former_am_a's membership of grid A ended in 2024: a visit 'today' is not theirs to log."""
    (r,) = results(post(api_as(world.former_am_a), [visit(merchants["grid_a"])]))
    assert r["status"] == "rejected"


def test_reassigned_by_handover_while_offline_is_accepted_and_the_new_owner_sees_it(world, merchants, api_as):
    m = merchants["grid_a"]
    Merchant.objects.filter(pk=m.pk).update(owner=world.am_a)
    receiver = UserFactory(username="receiver_a")
    MembershipFactory(user=receiver, grid=world.grid_a)
    backdate_history()
    visited_at = timezone.now() - datetime.timedelta(hours=1)  # offline, before the handover
    handover_apply(from_user=world.am_a, by=world.branch_manager, assignments=receiver)
    assert not Merchant.objects.restrict(world.am_a, "view").filter(pk=m.pk).exists()

    sent = visit(m, next_step="回访", next_due_at=(timezone.now() + datetime.timedelta(days=2)).isoformat())
    sent["device_time"] = visited_at.isoformat()
    (r,) = results(post(api_as(world.am_a), [sent]))
    assert r["status"] == "created", r
    assert r["server"]["late"] is True
    activity = Activity.objects.get(pk=r["id"])
    assert activity.by_id == world.am_a.pk and activity.occurred_at == visited_at
    # The follow-up goes to the merchant's owner now; the new owner sees the visit on the timeline.
    assert Task.objects.get(activity=activity).owner_id == receiver.pk
    timeline = api_as(receiver).get(f"/api/v1/merchants/{m.pk}/timeline/").json()
    assert activity.pk in [i["id"] for i in timeline["results"] if i["type"] == "activity"]
    # ... and the leaver learns nothing new: the merchant stays out of their sight.
    assert api_as(world.am_a).get(f"/api/v1/merchants/{m.pk}/").status_code == 404


def test_visit_after_the_handover_is_rejected(world, merchants, api_as):
    m = merchants["grid_a"]
    receiver = UserFactory(username="receiver_a")
    MembershipFactory(user=receiver, grid=world.grid_a)
    Merchant.objects.filter(pk=m.pk).update(owner=world.am_a)
    backdate_history()
    handover_apply(from_user=world.am_a, by=world.branch_manager, assignments=receiver)
    with connection.cursor() as cursor:  # the handover was an hour ago
        cursor.execute(
            "UPDATE grids_membershipevent SET pgh_created_at = now() - interval '1 hour' WHERE pgh_created_at = now()"
        )
    sent = visit(m)
    sent["device_time"] = (timezone.now() - datetime.timedelta(minutes=5)).isoformat()
    (r,) = results(post(api_as(world.am_a), [sent]))
    assert r["status"] == "rejected"
    assert list(r["errors"]) == ["merchant"]


def test_merchant_moved_to_another_grid_while_offline_is_accepted(world, merchants, api_as):
    m = merchants["grid_a"]
    backdate_history()
    visited_at = timezone.now() - datetime.timedelta(hours=2)
    merchant_assign(merchant=m, by=world.branch_manager, grid=world.grid_b, owner=None)
    lead = lead_create(merchant=m, product="loan", by=world.branch_manager)
    sent = visit(m, advance_lead=lead.pk, advance_to="visited")
    sent["device_time"] = visited_at.isoformat()
    (r,) = results(post(api_as(world.am_a), [sent]))
    assert r["status"] == "created", r
    assert "advance_lead" in r["warnings"]  # the funnel is no longer theirs to move
    lead.refresh_from_db()
    assert lead.stage == "lead"
    # Whoever works grid B now sees it.
    member_b = UserFactory(username="am_b")
    MembershipFactory(user=member_b, grid=world.grid_b)
    assert Activity.objects.restrict(member_b).filter(pk=r["id"]).exists()


def test_late_rule_has_a_window(world, merchants, api_as):
    m = merchants["grid_a"]
    backdate_history(days=60)
    merchant_assign(merchant=m, by=world.branch_manager, grid=world.grid_b, owner=None)
    sent = visit(m)
    sent["device_time"] = (timezone.now() - datetime.timedelta(days=45)).isoformat()
    (r,) = results(post(api_as(world.am_a), [sent]))
    assert r["status"] == "rejected"


# -- merchants created and edited offline ------------------------------------------------------------


def test_merchant_created_offline_with_duplicate_warning_not_blocking(world, merchants, api_as):
    existing = merchants["grid_a"]
    lon, lat = existing.location.coords
    payload = {"name": existing.name, "location": {"lat": lat + 0.0001, "lon": lon}, "address": "文一路1号"}
    client = api_as(world.am_a)
    new = item(payload, type="merchant_create")
    (r,) = results(post(client, [new]))
    assert r["status"] == "created", r
    merchant = Merchant.objects.get(pk=r["id"])
    assert merchant.grid_id == world.grid_a.pk and merchant.version == 1
    assert existing.pk in [c["id"] for c in r["warnings"]["duplicates"]["candidates"]]
    assert r["server"]["id"] == merchant.pk and r["server"]["version"] == 1
    assert MerchantSyncEdit.objects.get(client_uuid=new["client_uuid"]).device_time.isoformat()
    # Replayed: the same merchant, no second one.
    (again,) = results(post(client, [new]))
    assert again["status"] == "duplicate" and again["id"] == merchant.pk
    assert Merchant.objects.filter(name=existing.name).count() == 2


def test_visit_to_a_merchant_created_offline_in_the_same_batch(world, api_as):
    lon, lat = world.grid_a.geom.centroid.coords
    new = item({"name": "新发现的小店", "location": {"lat": lat, "lon": lon}}, type="merchant_create")
    seen = item({"merchant_client_uuid": new["client_uuid"], "kind": "visit"})
    got = results(post(api_as(world.am_a), [new, seen]))
    assert [r["status"] for r in got] == ["created", "created"], got
    assert Activity.objects.get(pk=got[1]["id"]).merchant_id == got[0]["id"]


def test_merchant_created_outside_the_users_grids_is_rejected(world, api_as):
    lon, lat = world.grid_c.geom.centroid.coords
    new = item({"name": "别人网格的店", "location": {"lat": lat, "lon": lon}}, type="merchant_create")
    (r,) = results(post(api_as(world.am_a), [new]))
    assert r["status"] == "rejected" and "location" in r["errors"]
    assert not Merchant.objects.filter(name="别人网格的店").exists()


def test_merchant_update_applies_on_the_same_version(world, merchants, api_as):
    m = merchants["grid_a"]
    m.refresh_from_db()
    edit = item({"merchant": m.pk, "base_version": m.version, "fields": {"address": "新地址"}}, type="merchant_update")
    (r,) = results(post(api_as(world.am_a), [edit]))
    assert r["status"] == "created", r
    m.refresh_from_db()
    assert m.address == "新地址" and m.version == 2
    assert r["server"]["version"] == 2 and r["server"]["address"] == "新地址"
    (again,) = results(post(api_as(world.am_a), [edit]))
    assert again["status"] == "duplicate" and again["id"] == m.pk
    m.refresh_from_db()
    assert m.version == 2


def test_merchant_update_on_a_stale_version_is_a_conflict_and_overwrites_nothing(world, merchants, api_as):
    m = merchants["grid_a"]
    client = api_as(world.am_a)
    base = Merchant.objects.get(pk=m.pk).version
    assert client.patch(f"/api/v1/merchants/{m.pk}/", {"name": "网上改的名字"}, format="json").status_code == 200
    edit = item({"merchant": m.pk, "base_version": base, "fields": {"name": "离线改的名字"}}, type="merchant_update")
    (r,) = results(post(client, [edit]))
    assert r["status"] == "conflict"
    assert r["server"]["name"] == "网上改的名字" and r["server"]["version"] == base + 1
    assert "base_version" in r["errors"]
    assert Merchant.objects.get(pk=m.pk).name == "网上改的名字"
    assert not MerchantSyncEdit.objects.filter(client_uuid=edit["client_uuid"]).exists()


def test_merchant_update_out_of_scope_is_rejected_without_leaking(world, merchants, api_as):
    m = merchants["grid_b"]
    edit = item({"merchant": m.pk, "base_version": 1, "fields": {"name": "x"}}, type="merchant_update")
    (r,) = results(post(api_as(world.am_a), [edit]))
    assert r["status"] == "rejected" and r["server"] is None
    assert list(r["errors"]) == ["merchant"]
    assert Merchant.objects.get(pk=m.pk).name != "x"


def test_merchant_update_with_an_unknown_field_is_rejected(world, merchants, api_as):
    m = merchants["grid_a"]
    edit = item({"merchant": m.pk, "base_version": 1, "fields": {"grid": 5}}, type="merchant_update")
    (r,) = results(post(api_as(world.am_a), [edit]))
    assert r["status"] == "rejected" and "grid" in r["errors"]


# -- malformed batches: 400 naming the field ----------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "items"),
        ({"items": "x"}, "items"),
        ({"items": []}, "items"),
        ({"items": [1]}, "items[0]"),
        (
            {"items": [{"type": "activity", "device_time": "2026-01-01T00:00:00Z", "payload": {}}]},
            "items[0].client_uuid",
        ),
        ({"items": [{"client_uuid": "nope", "type": "activity"}]}, "items[0].client_uuid"),
        ({"items": [{"client_uuid": str(uuid.uuid4()), "type": "event", "payload": {}}]}, "items[0].type"),
        (
            {"items": [{"client_uuid": str(uuid.uuid4()), "type": "activity", "device_time": "yesterday"}]},
            "items[0].device_time",
        ),
        (
            {"items": [{"client_uuid": str(uuid.uuid4()), "type": "activity", "device_time": "2026-01-01T00:00:00Z"}]},
            "items[0].payload",
        ),
    ],
)
def test_malformed_batch_is_400_naming_the_field(world, api_as, body, field):
    response = api_as(world.am_a).post(SYNC, body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert not Activity.objects.exists()


def test_malformed_fourth_item_names_it_and_writes_nothing(world, merchants, api_as):
    sent = [visit(merchants["grid_a"]) for _ in range(4)]
    sent[3]["client_uuid"] = "not-a-uuid"
    response = post(api_as(world.am_a), sent)
    assert response.status_code == 400
    assert "items[3].client_uuid" in response.json()
    assert not Activity.objects.exists()


def test_too_many_items_is_400(world, merchants, api_as):
    sent = [visit(merchants["grid_a"]) for _ in range(201)]
    response = post(api_as(world.am_a), sent)
    assert response.status_code == 400 and "items" in response.json()


def test_anonymous_is_refused_with_json(world, api_as):
    response = api_as(None).post(SYNC, {"items": []}, format="json")
    assert response.status_code in (401, 403)
    assert response["Content-Type"].startswith("application/json")


def test_a_leaver_gets_every_item_rejected(world, merchants, api_as):
    leaver = world.am_a
    Membership.objects.filter(user=leaver).update(end_date=datetime.date(2024, 12, 31))
    (r,) = results(post(api_as(leaver), [visit(merchants["grid_a"])]))
    assert r["status"] == "rejected"
    assert not Lead.objects.exists()


# -- cost: set-based, not per item ----------------------------------------------------------------


@pytest.mark.parametrize("size", [10, 50])
def test_a_batch_of_visits_costs_the_same_queries_whatever_its_size(world, api_as, size, django_assert_max_num_queries):
    client = api_as(world.am_a)
    shops = [MerchantFactory(grid=world.grid_a) for _ in range(3)]
    due = (timezone.now() + datetime.timedelta(days=1)).isoformat()
    sent = [
        visit(
            shops[i % 3],
            checkin={"lat": 30.0, "lon": 120.0, "accuracy_m": 10},
            **({"next_step": "回访", "next_due_at": due} if i % 2 else {}),
        )
        for i in range(size)
    ]
    # lock, known UUIDs, memberships, merchants in scope, (late rule: none), scope again with
    # owners, the INSERT, the tasks; plus the request's own (user, pghistory context)
    with django_assert_max_num_queries(12):
        got = results(post(client, sent))
    assert [r["status"] for r in got] == ["created"] * size
    assert Task.objects.filter(activity_id__in=[r["id"] for r in got]).count() == size // 2
