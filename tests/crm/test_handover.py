"""管户移交: preview, apply (one receiver or by grid), who may, scope of receivers, all-or-nothing,
the leaver losing access and the receiver seeing the whole history; API and pages."""

import datetime

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from crm.choices import LeadStage, TaskStatus
from crm.models import Activity, Handover, HandoverItem, Lead, LeadEvent, Merchant, MerchantEvent, Notification, Task
from crm.services.handover import handover_apply, handover_preview
from grids.models import Membership
from tests.factories import MembershipFactory, MerchantFactory, UserFactory

API = "/api/v1/handovers/"


@pytest.fixture
def book(world, merchants):
    """am_a (grid A, and grid B since last year) owns: two merchants in A, one in B, one in C (other
    sub-branch); open leads in A and B and a disbursed one; open tasks in A, a done one, a personal
    one without merchant; past visits on the merchants. am_a2 is a colleague in grid A."""
    MembershipFactory(user=world.am_a, grid=world.grid_b, start_date=datetime.date(2024, 6, 1))
    am_a2 = UserFactory(username="am_a2", full_name="李四")
    MembershipFactory(user=am_a2, grid=world.grid_a)
    a1 = MerchantFactory(grid=world.grid_a, owner=world.am_a, name="A一号")
    a2 = MerchantFactory(grid=world.grid_a, owner=world.am_a, name="A二号")
    b1 = MerchantFactory(grid=world.grid_b, owner=world.am_a, name="B一号")
    c1 = MerchantFactory(grid=world.grid_c, owner=world.am_a, name="C一号")
    not_hers = merchants["grid_a"]
    leads = {
        "a1": Lead.objects.create(merchant=a1, owner=world.am_a, stage=LeadStage.INTERESTED),
        "b1": Lead.objects.create(merchant=b1, owner=world.am_a),
        "closed": Lead.objects.create(merchant=a2, owner=world.am_a, stage=LeadStage.DISBURSED),
        "c1": Lead.objects.create(merchant=c1, owner=world.am_a),
    }
    now = timezone.now()
    tasks = {
        "a1": Task.objects.create(owner=world.am_a, merchant=a1, title="回访A一号", due_at=now),
        "done": Task.objects.create(owner=world.am_a, merchant=a2, title="已完成", due_at=now, status=TaskStatus.DONE),
        "personal": Task.objects.create(owner=world.am_a, title="自己的事", due_at=now),
    }
    past = now - datetime.timedelta(days=90)
    visits = [
        Activity.objects.create(kind="visit", merchant=m, grid=m.grid, by=world.am_a, occurred_at=past, notes="首访")
        for m in (a1, a2, b1)
    ]
    return {
        "am_a2": am_a2,
        "a1": a1,
        "a2": a2,
        "b1": b1,
        "c1": c1,
        "not_hers": not_hers,
        "leads": leads,
        "tasks": tasks,
        "visits": visits,
    }


def snapshot():
    return {
        "merchants": dict(Merchant.objects.values_list("pk", "owner_id")),
        "leads": dict(Lead.objects.values_list("pk", "owner_id")),
        "tasks": dict(Task.objects.values_list("pk", "owner_id")),
        "memberships": sorted(Membership.objects.values_list("pk", "user_id", "grid_id", "end_date")),
        "handovers": Handover.objects.count(),
        "items": HandoverItem.objects.count(),
    }


# -- Preview ------------------------------------------------------------------------------------------


def test_preview_groups_the_book_by_grid_within_the_branch_managers_scope(world, book):
    preview = handover_preview(from_user=world.am_a, by=world.branch_manager)
    by_grid = {g.grid.pk: g for g in preview.grids}
    assert set(by_grid) == {world.grid_a.pk, world.grid_b.pk}  # grid C is another sub-branch's
    a, b = by_grid[world.grid_a.pk], by_grid[world.grid_b.pk]
    assert {m.pk for m in a.merchants} == {book["a1"].pk, book["a2"].pk}
    assert {lead.pk for lead in a.leads} == {book["leads"]["a1"].pk}  # the disbursed one is closed
    assert {t.pk for t in a.tasks} == {book["tasks"]["a1"].pk}  # done and personal tasks stay
    assert [m.pk for m in b.merchants] == [book["b1"].pk]
    assert [lead.pk for lead in b.leads] == [book["leads"]["b1"].pk]
    assert (preview.merchant_count, preview.lead_count, preview.task_count) == (3, 2, 1)
    assert {u.username for u in a.members} == {"grid_leader_a", "am_a2"}  # not the leaver
    assert b.members == []
    assert {m.grid_id for m in preview.memberships} == {world.grid_a.pk, world.grid_b.pk}


def test_regional_head_sees_the_whole_branch(world, book):
    preview = handover_preview(from_user=world.am_a, by=world.regional_head)
    assert {g.grid.pk for g in preview.grids} == {world.grid_a.pk, world.grid_b.pk, world.grid_c.pk}


@pytest.mark.parametrize("who", ["am_a", "grid_leader_a", "mid_office", "nobody", "former_am_a"])
def test_grid_members_and_read_only_roles_cannot_hand_over(world, book, who):
    with pytest.raises(PermissionDenied):
        handover_preview(from_user=world.am_a, by=getattr(world, who))
    with pytest.raises(PermissionDenied):
        handover_apply(from_user=world.grid_leader_a, by=getattr(world, who), assignments=book["am_a2"])


def test_person_outside_the_scope_is_refused(world, book):
    with pytest.raises(ValidationError) as exc:
        handover_preview(from_user=world.am_c, by=world.branch_manager)
    assert "from_user" in exc.value.message_dict


# -- Apply ----------------------------------------------------------------------------------------------


def test_apply_to_one_receiver_moves_everything_and_ends_access(world, book, api_as):
    receiver = book["am_a2"]
    t_a1 = book["tasks"]["a1"]
    reminder = Notification.objects.create(user=world.am_a, task=t_a1, event="due")
    before_events = LeadEvent.objects.count()

    handover = handover_apply(from_user=world.am_a, by=world.branch_manager, assignments=receiver)

    today = timezone.localdate()
    for key in ("a1", "a2", "b1"):
        book[key].refresh_from_db()
        assert book[key].owner_id == receiver.pk, key
    assert Merchant.objects.get(pk=book["c1"].pk).owner_id == world.am_a.pk  # another sub-branch's
    assert Lead.objects.get(pk=book["leads"]["a1"].pk).owner_id == receiver.pk
    assert Lead.objects.get(pk=book["leads"]["b1"].pk).owner_id == receiver.pk
    assert Lead.objects.get(pk=book["leads"]["closed"].pk).owner_id == world.am_a.pk
    assert Task.objects.get(pk=t_a1.pk).owner_id == receiver.pk
    assert Task.objects.get(pk=book["tasks"]["done"].pk).owner_id == world.am_a.pk
    assert Task.objects.get(pk=book["tasks"]["personal"].pk).owner_id == world.am_a.pk
    reminder.refresh_from_db()
    assert reminder.user_id == receiver.pk

    # Recorded: the handover, one item per row moved, and the owner changes in the audit history.
    assert handover.by_id == world.branch_manager.pk and handover.applied_at is not None
    items = HandoverItem.objects.filter(handover=handover)
    assert {i.merchant_id for i in items if i.merchant_id} == {book["a1"].pk, book["a2"].pk, book["b1"].pk}
    assert {i.lead_id for i in items if i.lead_id} == {book["leads"]["a1"].pk, book["leads"]["b1"].pk}
    assert {i.task_id for i in items if i.task_id} == {t_a1.pk}
    assert {i.to_user_id for i in items} == {receiver.pk}
    assert LeadEvent.objects.count() == before_events + 2
    event = MerchantEvent.objects.filter(pgh_obj_id=book["a1"].pk).order_by("-pgh_id").first()
    assert event.owner_id == receiver.pk
    assert event.pgh_context.metadata["handover"] == handover.pk

    # The leaver's grid memberships ended yesterday; the receiver joined grid B as account manager.
    ended = Membership.objects.filter(user=world.am_a)
    assert {m.end_date for m in ended} == {today - datetime.timedelta(days=1)}
    new = Membership.objects.get(user=receiver, grid=world.grid_b)
    assert (new.role, new.start_date, new.end_date) == ("account_manager", today, None)
    assert Membership.objects.filter(user=receiver, grid=world.grid_a).count() == 1  # already a member

    # The leaver sees nothing now ...
    leaver = api_as(world.am_a)
    assert leaver.get("/api/v1/merchants/").json()["count"] == 0
    assert leaver.get(f"/api/v1/merchants/{book['a1'].pk}/").status_code == 404
    assert leaver.get("/api/v1/notifications/").json()["count"] == 0
    # ... and the receiver sees the merchants with their whole past.
    mine = api_as(receiver)
    seen = {row["id"] for row in mine.get("/api/v1/merchants/?page_size=100").json()["results"]}
    assert {book["a1"].pk, book["a2"].pk, book["b1"].pk} <= seen
    assert mine.get(f"/api/v1/merchants/{book['b1'].pk}/").status_code == 200
    visible = set(Activity.objects.restrict(receiver).values_list("pk", flat=True))
    assert {v.pk for v in book["visits"]} <= visible
    assert Notification.objects.restrict(receiver).filter(pk=reminder.pk).exists()


def test_apply_by_grid(world, book):
    handover = handover_apply(
        from_user=world.am_a,
        by=world.branch_manager,
        assignments={world.grid_a.pk: book["am_a2"], world.grid_b.pk: world.grid_leader_a},
        end_memberships=False,
    )
    assert Merchant.objects.get(pk=book["a1"].pk).owner_id == book["am_a2"].pk
    assert Merchant.objects.get(pk=book["b1"].pk).owner_id == world.grid_leader_a.pk
    assert Lead.objects.get(pk=book["leads"]["b1"].pk).owner_id == world.grid_leader_a.pk
    assert Membership.objects.filter(user=world.grid_leader_a, grid=world.grid_b, role="account_manager").exists()
    assert not Membership.objects.filter(user=world.am_a, end_date__isnull=False).exists()  # kept
    assert handover.items.count() == 3 + 2 + 1


def test_receiver_outside_the_scope_is_refused_and_nothing_changes(world, book):
    before = snapshot()
    with pytest.raises(ValidationError) as exc:
        handover_apply(from_user=world.am_a, by=world.branch_manager, assignments=world.am_c)
    assert "to_user" in exc.value.message_dict
    assert snapshot() == before


def test_one_bad_grid_receiver_leaves_everything_as_it_was(world, book):
    before = snapshot()
    for assignments in (
        {world.grid_a.pk: book["am_a2"], world.grid_b.pk: world.am_c},  # am_c: another sub-branch
        {world.grid_a.pk: book["am_a2"]},  # grid B has no receiver
        {world.grid_a.pk: book["am_a2"], world.grid_b.pk: book["am_a2"], world.grid_c.pk: book["am_a2"]},
        {world.grid_a.pk: world.am_a, world.grid_b.pk: book["am_a2"]},  # the leaver
        {world.grid_a.pk: world.former_am_a, world.grid_b.pk: book["am_a2"]},  # no active membership
    ):
        with pytest.raises(ValidationError) as exc:
            handover_apply(from_user=world.am_a, by=world.branch_manager, assignments=assignments)
        assert "by_grid" in exc.value.message_dict, assignments
    assert snapshot() == before


def test_leaver_cannot_receive_own_book(world, book):
    with pytest.raises(ValidationError) as exc:
        handover_apply(from_user=world.am_a, by=world.branch_manager, assignments=world.am_a)
    assert "to_user" in exc.value.message_dict


def test_a_failure_midway_rolls_everything_back(world, book):
    """A database error at the last write (ending the leaver's memberships, refused by a constraint
    added for this test) undoes the owner changes, the items and the new memberships alike."""
    from django.db import IntegrityError, connection

    before = snapshot()
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # fixtures' deferred FK checks, before ALTER
        # A real constraint that the last write (ending memberships) violates: nothing may end.
        cursor.execute("ALTER TABLE grids_membership ADD CONSTRAINT test_no_end CHECK (end_date IS NULL) NOT VALID")
    with pytest.raises(IntegrityError):
        handover_apply(from_user=world.am_a, by=world.branch_manager, assignments=book["am_a2"])
    assert snapshot() == before


def test_membership_starting_today_is_removed(world, book):
    today = timezone.localdate()
    fresh = MembershipFactory(user=world.am_a, grid=world.grid_b, start_date=today, role="grid_leader")
    handover_apply(from_user=world.am_a, by=world.branch_manager, assignments=book["am_a2"])
    assert not Membership.objects.filter(pk=fresh.pk).exists()
    assert not Membership.objects.filter(user=world.am_a).exclude(end_date__lt=today).exists()


def test_regional_head_hands_over_across_sub_branches(world, book):
    handover_apply(from_user=world.am_a, by=world.regional_head, assignments=world.am_c)
    assert Merchant.objects.get(pk=book["c1"].pk).owner_id == world.am_c.pk
    assert Merchant.objects.get(pk=book["a1"].pk).owner_id == world.am_c.pk
    assert Membership.objects.filter(user=world.am_c, grid=world.grid_a, end_date__isnull=True).exists()


def test_person_with_nothing_in_scope_is_refused(world, book):
    with pytest.raises(ValidationError) as exc:
        handover_apply(from_user=world.am_c, by=world.branch_manager, assignments=book["am_a2"])
    assert "from_user" in exc.value.message_dict


# -- API ------------------------------------------------------------------------------------------------


def test_api_preview(world, book, api_as):
    client = api_as(world.branch_manager)
    body = client.get(f"{API}preview/", {"from_user": world.am_a.pk}).json()
    assert (body["merchant_count"], body["lead_count"], body["task_count"]) == (3, 2, 1)
    grids = {g["grid"]["id"]: g for g in body["grids"]}
    assert set(grids) == {world.grid_a.pk, world.grid_b.pk}
    assert {m["id"] for m in grids[world.grid_a.pk]["merchants"]} == {book["a1"].pk, book["a2"].pk}
    assert {u["username"] for u in grids[world.grid_a.pk]["members"]} == {"grid_leader_a", "am_a2"}


@pytest.mark.parametrize("value", ["", "abc", "-1", "0", "99999999999999999999"])
def test_api_preview_bad_from_user_is_400_naming_it(world, book, api_as, value):
    response = api_as(world.branch_manager).get(f"{API}preview/", {"from_user": value})
    assert response.status_code == 400
    assert "from_user" in response.json()


def test_api_preview_out_of_scope_person_is_400(world, book, api_as):
    response = api_as(world.branch_manager).get(f"{API}preview/", {"from_user": world.am_c.pk})
    assert response.status_code == 400 and "from_user" in response.json()
    response = api_as(world.branch_manager).get(f"{API}preview/", {"from_user": 987654})
    assert response.status_code == 400 and "from_user" in response.json()


def test_api_account_manager_cannot_hand_over(world, book, api_as):
    client = api_as(world.am_a)
    assert client.get(f"{API}preview/", {"from_user": world.grid_leader_a.pk}).status_code == 403
    before = snapshot()
    response = client.post(API, {"from_user": world.grid_leader_a.pk, "to_user": world.am_a.pk}, format="json")
    assert response.status_code == 403
    assert snapshot() == before


def test_api_apply_one_receiver(world, book, api_as):
    client = api_as(world.branch_manager)
    response = client.post(API, {"from_user": world.am_a.pk, "to_user": book["am_a2"].pk}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["merchant_count"], body["lead_count"], body["task_count"]) == (3, 2, 1)
    assert body["from_user"]["id"] == world.am_a.pk and body["end_memberships"] is True
    assert {i["to_user"]["id"] for i in body["items"]} == {book["am_a2"].pk}
    assert client.get(API).json()["count"] == 1
    detail = client.get(f"{API}{body['id']}/").json()
    assert len(detail["items"]) == 6
    # The leaver's own calls now see nothing.
    assert api_as(world.am_a).get(f"/api/v1/merchants/{book['a1'].pk}/").status_code == 404


def test_api_apply_by_grid(world, book, api_as):
    payload = {
        "from_user": world.am_a.pk,
        "by_grid": {str(world.grid_a.pk): book["am_a2"].pk, str(world.grid_b.pk): world.grid_leader_a.pk},
        "end_memberships": False,
        "note": "调岗",
    }
    response = api_as(world.branch_manager).post(API, payload, format="json")
    assert response.status_code == 201, response.content
    assert Merchant.objects.get(pk=book["b1"].pk).owner_id == world.grid_leader_a.pk
    assert Handover.objects.get().note == "调岗"


@pytest.mark.parametrize(
    "payload,field",
    [
        ({}, "from_user"),
        ({"from_user": "x"}, "from_user"),
        ({"to_user": 1}, "from_user"),
        ({"from_user": "AM"}, "to_user"),  # no receiver at all
        ({"from_user": "AM", "to_user": "C"}, "to_user"),  # outside the branch manager's scope
        ({"from_user": "AM", "to_user": 987654}, "to_user"),
        ({"from_user": "AM", "to_user": "AM2", "by_grid": {"A": "AM2"}}, "to_user"),
        ({"from_user": "AM", "by_grid": {"A": "AM2", "B": "C"}}, "by_grid"),
        ({"from_user": "AM", "by_grid": {"A": "AM2"}}, "by_grid"),
        ({"from_user": "AM", "by_grid": {"x": "AM2"}}, "by_grid"),
        ({"from_user": "AM", "by_grid": {"A": 987654, "B": "AM2"}}, "by_grid"),
        ({"from_user": "AM", "by_grid": []}, "by_grid"),
        ({"from_user": "AM", "by_grid": {}}, "by_grid"),
        ({"from_user": "C", "to_user": "AM2"}, "from_user"),
    ],
)
def test_api_bad_input_is_400_naming_the_field_and_writes_nothing(world, book, api_as, payload, field):
    ids = {"AM": world.am_a.pk, "AM2": book["am_a2"].pk, "C": world.am_c.pk}
    grids = {"A": world.grid_a.pk, "B": world.grid_b.pk}

    def resolve(value):
        return ids.get(value, value) if isinstance(value, str) else value

    body = {k: resolve(v) for k, v in payload.items() if k != "by_grid"}
    if isinstance(payload.get("by_grid"), dict):
        body["by_grid"] = {str(grids.get(k, k)): resolve(v) for k, v in payload["by_grid"].items()}
    elif "by_grid" in payload:
        body["by_grid"] = payload["by_grid"]
    before = snapshot()
    response = api_as(world.branch_manager).post(API, body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json(), response.json()
    assert snapshot() == before


def test_api_handovers_are_seen_by_who_applied_them(world, book, api_as):
    handover = handover_apply(from_user=world.am_a, by=world.branch_manager, assignments=book["am_a2"])
    assert api_as(world.regional_head).get(f"{API}{handover.pk}/").status_code == 404
    assert api_as(world.am_a).get(f"{API}{handover.pk}/").status_code == 404
    assert api_as(world.branch_manager).get(f"{API}{handover.pk}/").status_code == 200


# -- Pages ------------------------------------------------------------------------------------------------


def page_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_handover_page_flow(world, book):
    client = page_client(world.branch_manager)
    response = client.get(reverse("handover"))
    assert response.status_code == 200
    people = {u.username for u in response.context["people"]}
    assert {"am_a", "am_a2", "grid_leader_a", "former_am_a"} <= people
    assert "am_c" not in people

    response = client.get(reverse("handover"), {"from_user": world.am_a.pk})
    body = response.content.decode()
    assert response.status_code == 200
    assert 'data-testid="merchant-count">3<' in body
    assert f'data-grid-id="{world.grid_a.pk}"' in body and f'data-grid-id="{world.grid_c.pk}"' not in body
    receivers = {u.username for u in response.context["form"].fields["to_user"].queryset}
    assert "am_a2" in receivers and "am_c" not in receivers and "am_a" not in receivers

    response = client.post(
        reverse("handover"),
        {
            "from_user": world.am_a.pk,
            "to_user": book["am_a2"].pk,
            f"grid_{world.grid_b.pk}": world.grid_leader_a.pk,
            "end_memberships": "on",
        },
    )
    assert response.status_code == 302, response.content.decode()[-2000:]
    handover = Handover.objects.get()
    assert response["Location"] == reverse("handover-result", args=[handover.pk])
    assert Merchant.objects.get(pk=book["a1"].pk).owner_id == book["am_a2"].pk
    assert Merchant.objects.get(pk=book["b1"].pk).owner_id == world.grid_leader_a.pk
    assert Membership.objects.filter(user=world.am_a, end_date__isnull=True).count() == 0

    result = client.get(response["Location"])
    body = result.content.decode()
    assert result.status_code == 200
    assert 'data-testid="merchant-count">3<' in body
    assert "B一号" in body and "李四" in body


def test_handover_page_shows_errors_and_changes_nothing(world, book):
    client = page_client(world.branch_manager)
    before = snapshot()
    response = client.post(reverse("handover"), {"from_user": world.am_a.pk})  # no receiver
    assert response.status_code == 200
    assert response.context["form"].errors
    response = client.post(reverse("handover"), {"from_user": world.am_a.pk, "to_user": world.am_c.pk})
    assert response.status_code == 200
    assert "to_user" in response.context["form"].errors
    assert snapshot() == before


def test_handover_page_refuses_people_outside_the_scope(world, book):
    client = page_client(world.branch_manager)
    response = client.get(reverse("handover"), {"from_user": world.am_c.pk})
    assert response.status_code == 200
    assert response.context["book"] is None and response.context["unknown_person"]
    response = client.get(reverse("handover"), {"from_user": "1; drop"})
    assert response.status_code == 200 and response.context["book"] is None


@pytest.mark.parametrize("who", ["am_a", "grid_leader_a", "mid_office", "nobody"])
def test_handover_page_is_for_managers_only(world, book, who):
    client = page_client(getattr(world, who))
    assert client.get(reverse("handover")).status_code == 403
    assert client.post(reverse("handover"), {"from_user": world.am_a.pk, "to_user": world.am_a.pk}).status_code == 403


def test_result_page_is_only_for_who_applied_it(world, book):
    handover = handover_apply(from_user=world.am_a, by=world.branch_manager, assignments=book["am_a2"])
    assert page_client(world.regional_head).get(reverse("handover-result", args=[handover.pk])).status_code == 404
    assert page_client(world.branch_manager).get(reverse("handover-result", args=[handover.pk])).status_code == 200
