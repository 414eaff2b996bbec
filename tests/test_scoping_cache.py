"""The per-request scope cache (grids.scoping.scope_cache, core.middleware.ScopeCacheMiddleware):
a scope is resolved once per user and action within one read-only request, and never outlives it,
crosses users or actions, or survives a membership change."""

import datetime

import pytest
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from core.middleware import ScopeCacheMiddleware
from crm.models import Merchant
from grids.models import Membership
from grids.scoping import ACTIONS, _request_scopes, resolve_scope, scope_cache, scope_grant
from tests.factories import MerchantFactory, UserFactory

pytestmark = pytest.mark.django_db


def queries(fn) -> int:
    with CaptureQueriesContext(connection) as ctx:
        fn()
    return len(ctx.captured_queries)


def test_outside_a_request_every_call_asks_the_database(world):
    assert queries(lambda: [resolve_scope(world.am_a) for _ in range(3)]) == 3


def test_inside_the_block_once_per_user_and_action(world):
    with scope_cache():
        assert queries(lambda: [resolve_scope(world.am_a) for _ in range(3)]) == 1
        assert queries(lambda: resolve_scope(world.am_a, "change")) == 1  # another action: its own entry
        # Another user in the same block gets their own scope, not am_a's.
        am_c = resolve_scope(world.am_c)
        am_a = resolve_scope(world.am_a)
    assert am_a.grid_ids == {world.grid_a.pk} and am_c.grid_ids == {world.grid_c.pk}
    assert _request_scopes.get() is None
    assert queries(lambda: resolve_scope(world.am_a)) == 1  # the block is over: no cache


def test_read_only_roles_still_lose_write_scope(world):
    with scope_cache():
        assert not resolve_scope(world.mid_office).empty
        assert resolve_scope(world.mid_office, "change").empty


def test_a_membership_change_in_the_block_empties_it(world):
    with scope_cache():
        assert resolve_scope(world.am_a).grid_ids == {world.grid_a.pk}
        Membership.objects.filter(user=world.am_a).get().save()  # any save of a membership
        assert queries(lambda: resolve_scope(world.am_a)) == 1
        Membership.objects.create(
            user=world.am_a, role="account_manager", grid=world.grid_b, start_date=datetime.date(2024, 1, 1)
        )
        assert resolve_scope(world.am_a).grid_ids == {world.grid_a.pk, world.grid_b.pk}


def test_the_middleware_caches_safe_methods_only():
    seen = {}

    def get_response(request):
        seen[request.method] = _request_scopes.get() is not None
        return None

    middleware = ScopeCacheMiddleware(get_response)
    factory = RequestFactory()
    for method in ("get", "head", "options", "post", "put", "patch", "delete"):
        middleware(getattr(factory, method)("/"))
    assert seen == {
        "GET": True,
        "HEAD": True,
        "OPTIONS": True,
        "POST": False,
        "PUT": False,
        "PATCH": False,
        "DELETE": False,
    }
    assert _request_scopes.get() is None


def test_a_membership_that_ends_is_seen_by_the_next_request(world, api_as):
    """No scope survives its request: the same client (the same user object) loses access at once."""
    m = MerchantFactory(grid=world.grid_a, owner=world.am_a)
    client = api_as(world.am_a)
    assert m.pk in {row["id"] for row in client.get("/api/v1/merchants/").json()["results"]}
    assert client.get(f"/api/v1/merchants/{m.pk}/timeline/").status_code == 200
    Membership.objects.filter(user=world.am_a).update(end_date=timezone.localdate() - datetime.timedelta(days=1))
    assert client.get("/api/v1/merchants/").json()["results"] == []
    assert client.get(f"/api/v1/merchants/{m.pk}/timeline/").status_code == 404
    assert client.get("/api/v1/merchants/my/").json()["count"] == 0


def test_scope_grant_widens_one_user_for_the_block_only(world):
    m = MerchantFactory(grid=world.grid_b)
    with scope_grant(world.am_a, [world.grid_b.pk]):
        for action in ACTIONS:
            assert resolve_scope(world.am_a, action).grid_ids == {world.grid_a.pk, world.grid_b.pk}
        assert Merchant.objects.restrict(world.am_a, "change").filter(pk=m.pk).exists()
        assert world.grid_b.pk not in resolve_scope(world.am_c).grid_ids  # another user: untouched
        with scope_grant(world.am_a, [world.grid_c.pk]):  # nested grants add up
            assert resolve_scope(world.am_a).grid_ids == {world.grid_a.pk, world.grid_b.pk, world.grid_c.pk}
        assert resolve_scope(world.am_a).grid_ids == {world.grid_a.pk, world.grid_b.pk}
    assert resolve_scope(world.am_a).grid_ids == {world.grid_a.pk}
    assert not Merchant.objects.restrict(world.am_a, "change").filter(pk=m.pk).exists()


def test_scope_grant_never_lands_in_the_request_cache(world):
    with scope_cache():
        assert resolve_scope(world.am_a).grid_ids == {world.grid_a.pk}
        with scope_grant(world.am_a, [world.grid_b.pk]):
            assert queries(lambda: resolve_scope(world.am_a)) == 0  # the cached scope, widened
            assert resolve_scope(world.am_a).grid_ids == {world.grid_a.pk, world.grid_b.pk}
        assert resolve_scope(world.am_a).grid_ids == {world.grid_a.pk}


def test_scope_grant_for_a_user_without_membership_and_a_superuser(world):
    nobody = UserFactory(username="nobody")
    boss = UserFactory(username="boss", is_superuser=True)
    with scope_grant(nobody, [world.grid_b.pk]), scope_grant(boss, [world.grid_b.pk]):
        assert resolve_scope(nobody, "change").grid_ids == {world.grid_b.pk}
        assert resolve_scope(boss).everything
    assert resolve_scope(nobody).empty
