"""The rules of grids.scoping, role by role."""

import datetime

import pytest

from crm.models import Merchant
from grids.models import Branch, Grid, SubBranch
from tests.factories import MembershipFactory, MerchantFactory


def grid_names(user, action="view"):
    return set(Grid.objects.restrict(user, action).values_list("name", flat=True))


@pytest.mark.parametrize(
    ("who", "view", "change"),
    [
        ("regional_head", {"网格A", "网格B", "网格C"}, {"网格A", "网格B", "网格C"}),
        ("mid_office", {"网格A", "网格B", "网格C"}, set()),
        ("branch_manager", {"网格A", "网格B"}, {"网格A", "网格B"}),
        ("grid_leader_a", {"网格A"}, {"网格A"}),
        ("am_a", {"网格A"}, {"网格A"}),
        ("am_c", {"网格C"}, {"网格C"}),
        ("nobody", set(), set()),
        ("former_am_a", set(), set()),
    ],
)
def test_grids_by_role(world, who, view, change):
    user = getattr(world, who)
    assert grid_names(user) == view
    assert grid_names(user, "change") == change


def test_admin_sees_everything(world):
    assert grid_names(world.admin) == {"网格A", "网格B", "网格C", "网格X"}


def test_anonymous_sees_nothing(world):
    from django.contrib.auth.models import AnonymousUser

    assert not Grid.objects.restrict(AnonymousUser()).exists()


def test_org_units_follow_grids(world):
    assert set(SubBranch.objects.restrict(world.am_a)) == {world.sb1}
    assert set(Branch.objects.restrict(world.am_c)) == {world.branch}
    assert set(SubBranch.objects.restrict(world.regional_head)) == {world.sb1, world.sb2}
    # Org units are changed by superusers only.
    assert not SubBranch.objects.restrict(world.regional_head, "change").exists()


def test_future_membership_is_not_active_yet(world):
    MembershipFactory(
        user=world.nobody, grid=world.grid_b, start_date=datetime.date.today() + datetime.timedelta(days=3)
    )
    assert grid_names(world.nobody) == set()


def test_merchant_outside_every_grid_is_seen_by_superusers_only(world):
    stray = MerchantFactory(grid=None, owner=world.am_a)
    assert not Merchant.objects.restrict(world.am_a).filter(pk=stray.pk).exists()
    assert not Merchant.objects.restrict(world.regional_head).filter(pk=stray.pk).exists()
    assert Merchant.objects.restrict(world.admin).filter(pk=stray.pk).exists()


def test_restrict_is_one_query_plus_the_read(world, django_assert_num_queries):
    with django_assert_num_queries(2):
        list(Merchant.objects.restrict(world.regional_head))
