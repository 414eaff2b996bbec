"""grids.auth.ScopedModelBackend: the session's user and their active memberships in one statement,
seeding the read-only request's scope cache; authentication rules stay ModelBackend's."""

import datetime

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from grids.auth import ScopedModelBackend
from grids.models import Membership
from grids.scoping import resolve_scope, scope_cache
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_a_read_request_asks_the_user_and_the_scope_in_one_statement(world, merchants):
    client = logged_in(world.am_a)
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(f"/api/v1/merchants/{merchants['grid_a'].pk}/")
    assert response.status_code == 200
    sql = [q["sql"] for q in ctx.captured_queries]
    assert not any(s.lstrip().startswith('SELECT "grids_membership"') for s in sql), sql
    assert sum("grids_membership" in s for s in sql) == 1  # inside the user statement
    # And the scope it seeded is the right one: grid B's merchant is not found.
    assert client.get(f"/api/v1/merchants/{merchants['grid_b'].pk}/").status_code == 404


def test_the_seeded_rows_are_today_s_active_memberships(world):
    user = UserFactory()
    today = timezone.localdate()
    MembershipFactory(user=user, role="account_manager", grid=world.grid_a)
    MembershipFactory(
        user=user,
        role="account_manager",
        grid=world.grid_b,
        start_date=today - datetime.timedelta(days=30),
        end_date=today - datetime.timedelta(days=1),
    )
    MembershipFactory(
        user=user, role="account_manager", grid=world.grid_c, start_date=today + datetime.timedelta(days=1)
    )
    with scope_cache():
        loaded = ScopedModelBackend().get_user(user.pk)
        with CaptureQueriesContext(connection) as ctx:
            scope = resolve_scope(loaded)
    assert len(ctx.captured_queries) == 0
    assert scope.grid_ids == {world.grid_a.pk}


def test_a_membership_saved_during_the_request_is_asked_again(world):
    with scope_cache():
        loaded = ScopedModelBackend().get_user(world.am_a.pk)
        MembershipFactory(user=world.am_a, role="account_manager", grid=world.grid_b)
        scope = resolve_scope(loaded)
    assert scope.grid_ids == {world.grid_a.pk, world.grid_b.pk}


def test_outside_a_read_request_nothing_is_kept(world):
    loaded = ScopedModelBackend().get_user(world.am_a.pk)
    Membership.objects.filter(user=world.am_a).update(end_date=timezone.localdate() - datetime.timedelta(days=1))
    assert resolve_scope(loaded).empty  # asked the database: the membership has ended


def test_inactive_unknown_and_malformed_users_are_nobody(world):
    backend = ScopedModelBackend()
    world.am_c.is_active = False
    world.am_c.save()
    assert backend.get_user(world.am_c.pk) is None
    assert backend.get_user(987654321) is None
    assert backend.get_user("not-an-id") is None
    assert backend.get_user(world.am_a.pk) == world.am_a


def test_a_deactivated_user_is_logged_out_at_once(world, merchants):
    client = logged_in(world.am_a)
    url = f"/api/v1/merchants/{merchants['grid_a'].pk}/"
    assert client.get(url).status_code == 200
    world.am_a.is_active = False
    world.am_a.save()
    assert client.get(url).status_code == 403


def test_a_changed_password_ends_the_session(world, merchants):
    client = logged_in(world.am_a)
    url = f"/api/v1/merchants/{merchants['grid_a'].pk}/"
    world.am_a.set_password("another-one-9")
    world.am_a.save()
    assert client.get(url).status_code == 403


def test_logging_in_with_a_password_still_works(world):
    world.am_a.set_password("pw-for-login-1")
    world.am_a.save()
    client = Client()
    response = client.post("/accounts/login/", {"username": world.am_a.username, "password": "pw-for-login-1"})
    assert response.status_code == 302
    assert client.get("/").status_code == 200
