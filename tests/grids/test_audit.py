"""Audit history (django-pghistory): every change to merchants, grids and memberships leaves an event
row written by a database trigger, and the event carries who did it (the pghistory context).

API requests get their context from pghistory's HistoryMiddleware (user id and URL); other writes
(admin actions, scripts, services) wrap themselves in ``pghistory.context(user=...)``."""

import datetime

import pghistory
import pytest
from pghistory.models import Events
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from crm.models import Merchant, MerchantEvent
from grids.models import Grid, GridEvent, Membership, MembershipEvent

pytestmark = pytest.mark.django_db


def merchant_url(merchant):
    return f"/api/v1/merchants/{merchant.pk}/"


def events_of(event_model, obj):
    return list(event_model.objects.filter(pgh_obj=obj).select_related("pgh_context").order_by("pgh_id"))


@pytest.fixture
def session_client():
    def make(user):
        client = APIClient()
        client.force_login(user)  # a real session: the middleware sees request.user
        return client

    return make


def test_api_patch_records_an_event_with_the_acting_user(world, merchants, session_client):
    merchant = merchants["grid_a"]
    before = events_of(MerchantEvent, merchant)
    assert [e.pgh_label for e in before] == ["insert"]
    assert before[0].pgh_context is None  # made by a factory, outside any request

    response = session_client(world.am_a).patch(
        merchant_url(merchant), {"name": "新名字茶馆", "status": "customer"}, format="json"
    )
    assert response.status_code == 200, response.content

    after = events_of(MerchantEvent, merchant)
    assert len(after) == len(before) + 1
    event = after[-1]
    assert event.pgh_label == "update"
    assert (event.name, event.status) == ("新名字茶馆", "customer")
    assert event.pgh_context is not None
    assert event.pgh_context.metadata["user"] == world.am_a.pk
    assert event.pgh_context.metadata["url"] == merchant_url(merchant)
    # The row itself changed to match.
    merchant.refresh_from_db()
    assert merchant.name == "新名字茶馆"


def test_api_patch_with_token_auth_records_the_user_too(world, merchants):
    """DRF authenticates tokens after the middleware ran; pghistory picks the user up when DRF sets
    request.user, so token-authenticated writes (the tablets) are attributed as well."""
    merchant = merchants["grid_a"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=world.am_a).key}")
    response = client.patch(merchant_url(merchant), {"address": "西湖区文三路1号"}, format="json")
    assert response.status_code == 200, response.content
    event = events_of(MerchantEvent, merchant)[-1]
    assert event.pgh_label == "update" and event.address == "西湖区文三路1号"
    assert event.pgh_context.metadata["user"] == world.am_a.pk


def test_api_create_records_an_insert_event_with_the_user(world, session_client):
    point = list(world.grid_a.geom.point_on_surface.coords)
    response = session_client(world.am_a).post(
        "/api/v1/merchants/", {"name": "新开小店", "location": {"type": "Point", "coordinates": point}}, format="json"
    )
    assert response.status_code == 201, response.content
    merchant = Merchant.objects.get(pk=response.json()["id"])
    (event,) = events_of(MerchantEvent, merchant)
    assert event.pgh_label == "insert"
    assert event.grid_id == world.grid_a.pk
    assert event.pgh_context.metadata["user"] == world.am_a.pk


def test_rejected_writes_leave_no_event(world, merchants, session_client):
    merchant = merchants["grid_a"]
    before = events_of(MerchantEvent, merchant)
    # Bad input: 400 before anything is written.
    bad = session_client(world.am_a).patch(
        merchant_url(merchant), {"location": {"type": "Point", "coordinates": [0, 0]}}, format="json"
    )
    assert bad.status_code == 400
    # A move out of the user's grids: the service writes, re-checks the scope and rolls back.
    inside_c = list(world.grid_c.geom.point_on_surface.coords)
    moved = session_client(world.am_a).patch(
        merchant_url(merchant), {"location": {"type": "Point", "coordinates": inside_c}}, format="json"
    )
    assert moved.status_code == 400, moved.content
    # Another grid's account manager cannot even see it.
    foreign = session_client(world.am_c).patch(merchant_url(merchant), {"name": "越权"}, format="json")
    assert foreign.status_code == 404
    # A read-only role cannot change it.
    readonly = session_client(world.mid_office).patch(merchant_url(merchant), {"name": "只读"}, format="json")
    assert readonly.status_code == 404
    assert events_of(MerchantEvent, merchant) == before
    merchant.refresh_from_db()
    assert merchant.grid_id == world.grid_a.pk and merchant.name == merchants["grid_a"].name


def test_each_request_gets_its_own_context(world, merchants, session_client):
    merchant = merchants["grid_a"]
    session_client(world.am_a).patch(merchant_url(merchant), {"name": "第一次"}, format="json")
    session_client(world.grid_leader_a).patch(merchant_url(merchant), {"name": "第二次"}, format="json")
    first, second = events_of(MerchantEvent, merchant)[-2:]
    assert (first.name, second.name) == ("第一次", "第二次")
    assert first.pgh_context_id != second.pgh_context_id
    assert first.pgh_context.metadata["user"] == world.am_a.pk
    assert second.pgh_context.metadata["user"] == world.grid_leader_a.pk


def test_grid_change_in_a_context_records_the_user(world):
    grid = world.grid_b
    with pghistory.context(user=world.admin.pk, reason="boundary redrawn"):
        Grid.objects.filter(pk=grid.pk).update(name="网格B-新")
        grid.refresh_from_db()
        grid.status = "retired"
        grid.save()
    events = events_of(GridEvent, grid)
    assert [e.pgh_label for e in events] == ["insert", "update", "update"]
    assert [e.name for e in events[1:]] == ["网格B-新", "网格B-新"]
    assert events[-1].status == "retired"
    # One context for the block, holding the user and what else was given.
    assert events[1].pgh_context_id == events[2].pgh_context_id
    assert events[-1].pgh_context.metadata == {"user": world.admin.pk, "reason": "boundary redrawn"}


def test_membership_changes_in_a_context_record_the_user(world):
    with pghistory.context(user=world.branch_manager.pk):
        membership = Membership.objects.create(
            user=world.nobody, role="account_manager", grid=world.grid_b, start_date=datetime.date(2025, 3, 1)
        )
        membership.end_date = datetime.date(2025, 6, 30)
        membership.save()
    events = events_of(MembershipEvent, membership)
    assert [e.pgh_label for e in events] == ["insert", "update"]
    assert events[0].end_date is None
    assert events[1].end_date == datetime.date(2025, 6, 30)
    assert {e.pgh_context.metadata["user"] for e in events} == {world.branch_manager.pk}
    assert events[0].user_id == world.nobody.pk and events[0].grid_id == world.grid_b.pk


def test_writes_outside_a_context_have_no_user(world):
    """Background writes (the nightly check) carry no context; the event is still recorded."""
    Grid.objects.filter(pk=world.grid_c.pk).update(name="网格C-夜间")
    event = events_of(GridEvent, world.grid_c)[-1]
    assert event.pgh_label == "update" and event.name == "网格C-夜间"
    assert event.pgh_context is None


def test_unchanged_save_records_nothing(world):
    grid = world.grid_a
    count = len(events_of(GridEvent, grid))
    grid.save()  # nothing changed: no update event
    assert len(events_of(GridEvent, grid)) == count


def test_aggregate_events_show_the_history_of_a_merchant(world, merchants, session_client):
    merchant = merchants["grid_a"]
    session_client(world.am_a).patch(merchant_url(merchant), {"status": "customer"}, format="json")
    history = list(Events.objects.tracks(merchant).order_by("pgh_created_at", "pgh_id"))
    assert [e.pgh_label for e in history] == ["insert", "update"]
    assert history[-1].pgh_context["user"] == world.am_a.pk
    assert history[-1].pgh_diff["status"] == ["prospect", "customer"]
