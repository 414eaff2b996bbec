"""POST merchants/{id}/assign/ and unlock/: a manager's manual override of grid and owner (issue 3).

Who: branch managers (their sub-branch) and regional heads (their branch); a merchant outside the
user's change scope is a 404, one they see but may not assign a 403. The grid must be one they
manage and the owner a member of it (400 naming the field). A lock survives redraws and the
nightly stray check; a release follows the location again."""

import pytest
from django.contrib.gis.geos import Point
from django.urls import reverse

from crm.models import Merchant
from crm.services.merchants import merchants_fix_stray_grids
from grids.models import Grid
from grids.services.redraw import redraw_apply, redraw_preview
from tests.factories import MembershipFactory, MerchantFactory, UserFactory


def assign_url(merchant):
    return reverse("api:merchant-assign", args=[merchant.pk])


def unlock_url(merchant):
    return reverse("api:merchant-unlock", args=[merchant.pk])


def state(merchant):
    m = Merchant.objects.get(pk=merchant.pk)
    return m.grid_id, m.owner_id, m.assignment_locked


def at(grid, fx, fy=0.5):
    x0, y0, x1, y1 = grid.geom.extent
    return Point(x0 + (x1 - x0) * fx, y0 + (y1 - y0) * fy, srid=4326)


@pytest.fixture
def am_b(world):
    user = UserFactory(username="am_b")
    MembershipFactory(user=user, grid=world.grid_b)
    return user


@pytest.fixture
def in_a(world):
    """A merchant lying in grid A, owned by A's account manager."""
    return MerchantFactory(grid=world.grid_a, location=at(world.grid_a, 0.5), owner=world.am_a)


def test_branch_manager_locks_grid_and_owner(world, api_as, in_a, am_b):
    response = api_as(world.branch_manager).post(
        assign_url(in_a), {"grid": world.grid_b.pk, "owner": am_b.pk}, format="json"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["grid"]["id"] == world.grid_b.pk and body["owner"] == am_b.pk and body["assignment_locked"] is True
    assert state(in_a) == (world.grid_b.pk, am_b.pk, True)


def test_lock_defaults_to_true_and_owner_may_be_the_pool(world, api_as, in_a):
    response = api_as(world.branch_manager).post(assign_url(in_a), {"grid": world.grid_a.pk, "owner": None})
    assert response.status_code == 200, response.content
    assert state(in_a) == (world.grid_a.pk, None, True)


def test_regional_head_assigns_across_their_branch(world, api_as, in_a):
    response = api_as(world.regional_head).post(
        assign_url(in_a), {"grid": world.grid_c.pk, "owner": world.am_c.pk}, format="json"
    )
    assert response.status_code == 200, response.content
    assert state(in_a) == (world.grid_c.pk, world.am_c.pk, True)


@pytest.mark.parametrize(
    "body, field",
    [
        ({"owner": None}, "grid"),  # locking needs both
        ({"grid": "grid_a"}, "owner"),
        ({"grid": "grid_c", "owner": "am_c"}, "grid"),  # another sub-branch's grid
        ({"grid": "grid_x", "owner": None}, "grid"),  # another branch's grid
        ({"grid": 2**31 - 1, "owner": None}, "grid"),  # no such grid: the same answer
        ({"grid": "grid_a", "owner": "am_c"}, "owner"),  # not a member of grid A
        ({"grid": "grid_a", "owner": "former_am_a"}, "owner"),  # membership ended
        ({"grid": "grid_a", "owner": 2**31 - 1}, "owner"),  # no such user
        ({"grid": "grid_a", "owner": "am_a", "lock": "maybe"}, "lock"),
    ],
)
def test_bad_input_is_400_naming_the_field_and_writes_nothing(world, api_as, in_a, body, field):
    resolved = {k: getattr(world, v).pk if isinstance(v, str) and k != "lock" else v for k, v in body.items()}
    before = state(in_a)
    response = api_as(world.branch_manager).post(assign_url(in_a), resolved, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert state(in_a) == before


def test_retired_grid_is_400(world, api_as, in_a):
    Grid.objects.filter(pk=world.grid_b.pk).update(status="retired")
    response = api_as(world.branch_manager).post(assign_url(in_a), {"grid": world.grid_b.pk, "owner": None})
    assert response.status_code == 400 and "grid" in response.json()
    assert state(in_a) == (world.grid_a.pk, world.am_a.pk, False)


@pytest.mark.parametrize("who", ["am_a", "grid_leader_a"])
def test_grid_staff_who_see_the_merchant_get_403(world, api_as, in_a, who):
    client = api_as(getattr(world, who))
    body = {"grid": world.grid_a.pk, "owner": world.am_a.pk}
    assert client.post(assign_url(in_a), body, format="json").status_code == 403
    assert client.post(unlock_url(in_a)).status_code == 403
    assert state(in_a) == (world.grid_a.pk, world.am_a.pk, False)


@pytest.mark.parametrize("who", ["am_c", "mid_office", "nobody"])
def test_out_of_scope_is_404(world, api_as, in_a, who):
    client = api_as(getattr(world, who))
    assert client.post(assign_url(in_a), {"grid": world.grid_c.pk, "owner": None}, format="json").status_code == 404
    assert client.post(unlock_url(in_a)).status_code == 404
    assert state(in_a) == (world.grid_a.pk, world.am_a.pk, False)


def test_manager_of_another_sub_branch_gets_404(world, api_as, in_a):
    other = UserFactory(username="bm_2")
    MembershipFactory(user=other, role="branch_manager", sub_branch=world.sb2)
    body = {"grid": world.grid_c.pk, "owner": None}
    assert api_as(other).post(assign_url(in_a), body, format="json").status_code == 404
    assert api_as(None).post(assign_url(in_a), body, format="json").status_code in (401, 403)
    assert state(in_a) == (world.grid_a.pk, world.am_a.pk, False)


def test_lock_survives_a_redraw_preview_and_apply(world, api_as, in_a, am_b):
    # Filed by hand under grid B although it lies in grid A.
    api_as(world.branch_manager).post(assign_url(in_a), {"grid": world.grid_b.pk, "owner": am_b.pk}, format="json")
    proposal = redraw_preview(grid=world.grid_a, new_geom=world.grid_a.geom, by=world.branch_manager)
    listed = {m["id"]: m for m in proposal.merchant_moves}
    assert listed[in_a.pk]["locked"] is True and listed[in_a.pk]["to_owner"] == am_b.pk
    assert proposal.summary["locked"] == 1 and proposal.summary["merchants"] == 0
    redraw_apply(proposal=proposal, by=world.branch_manager)
    assert state(in_a) == (world.grid_b.pk, am_b.pk, True)


def test_lock_survives_the_nightly_check_and_release_follows_the_location(world, api_as, in_a, am_b):
    client = api_as(world.branch_manager)
    client.post(assign_url(in_a), {"grid": world.grid_b.pk, "owner": am_b.pk}, format="json")
    assert merchants_fix_stray_grids().fixed == 0
    assert state(in_a) == (world.grid_b.pk, am_b.pk, True)
    # Released: back in grid A, where its location lies, with the owner A's rule gives.
    Grid.objects.filter(pk=world.grid_a.pk).update(ownership_rule="leader")
    response = client.post(unlock_url(in_a))
    assert response.status_code == 200, response.content
    assert response.json()["assignment_locked"] is False
    assert state(in_a) == (world.grid_a.pk, world.grid_leader_a.pk, False)
    assert merchants_fix_stray_grids().fixed == 0


def test_release_in_place_keeps_the_owner(world, api_as, in_a):
    client = api_as(world.branch_manager)
    client.post(assign_url(in_a), {"grid": world.grid_a.pk, "owner": world.am_a.pk}, format="json")
    response = client.post(assign_url(in_a), {"lock": False}, format="json")
    assert response.status_code == 200, response.content
    assert state(in_a) == (world.grid_a.pk, world.am_a.pk, False)
    # Unlocked, a stray is moved by the nightly check again.
    Merchant.objects.filter(pk=in_a.pk).update(grid=world.grid_b)
    assert merchants_fix_stray_grids().fixed == 1
    assert state(in_a)[0] == world.grid_a.pk


def test_release_that_would_leave_the_managers_scope_is_refused(world, api_as):
    # Lies in grid C (sub-branch 2); the regional head filed it by hand under grid A (sub-branch 1).
    merchant = MerchantFactory(grid=world.grid_c, location=at(world.grid_c, 0.5))
    api_as(world.regional_head).post(
        assign_url(merchant), {"grid": world.grid_a.pk, "owner": world.am_a.pk}, format="json"
    )
    assert state(merchant) == (world.grid_a.pk, world.am_a.pk, True)
    response = api_as(world.branch_manager).post(unlock_url(merchant))
    assert response.status_code == 400 and "lock" in response.json()
    assert state(merchant) == (world.grid_a.pk, world.am_a.pk, True)
    assert api_as(world.regional_head).post(unlock_url(merchant)).status_code == 200
    assert state(merchant)[0::2] == (world.grid_c.pk, False)


def test_assignment_bumps_the_version(world, api_as, in_a):
    version = Merchant.objects.get(pk=in_a.pk).version
    api_as(world.branch_manager).post(assign_url(in_a), {"grid": world.grid_a.pk, "owner": None}, format="json")
    assert Merchant.objects.get(pk=in_a.pk).version == version + 1


@pytest.mark.parametrize("pk", ["null,null", "abc", "99999999999999999999"])
def test_a_malformed_id_is_404_not_500(world, api_as, pk):
    """Found by schemathesis: "null,null" as the id was a 500."""
    client = api_as(world.branch_manager)
    assert client.post(f"/api/v1/merchants/{pk}/assign/", {"grid": 1}, format="json").status_code == 404
    assert client.post(f"/api/v1/merchants/{pk}/unlock/").status_code == 404
