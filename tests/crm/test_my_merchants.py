"""GET /api/v1/merchants/my/: an account manager's own merchants within their grids, each with the
date of its latest visit; never-visited first; paged; one statement whatever the number of rows."""

import datetime

import pytest
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from crm.models import Activity
from tests.factories import MerchantFactory

pytestmark = pytest.mark.django_db

MY = "/api/v1/merchants/my/"
T0 = timezone.make_aware(datetime.datetime(2025, 3, 1, 9, 0))


def visit(merchant, by, at, kind="visit"):
    return Activity.objects.create(merchant=merchant, grid=merchant.grid, by=by, occurred_at=at, kind=kind)


def ids(body) -> list[int]:
    return [row["id"] for row in body["results"]]


@pytest.fixture
def mine(world):
    """am_a owns four merchants in grid A (one never visited) and one now in grid C (outside
    their scope); grid_leader_a owns one in grid A; the other is unowned."""
    am = world.am_a
    old = MerchantFactory(grid=world.grid_a, owner=am, name="乙 old visit")
    recent = MerchantFactory(grid=world.grid_a, owner=am, name="甲 recent visit")
    called = MerchantFactory(grid=world.grid_a, owner=am, name="丙 only calls")
    never = MerchantFactory(grid=world.grid_a, owner=am, name="丁 never")
    moved = MerchantFactory(grid=world.grid_c, owner=am, name="moved away")
    colleague = MerchantFactory(grid=world.grid_a, owner=world.grid_leader_a, name="colleague's")
    MerchantFactory(grid=world.grid_a, owner=None, name="nobody's")
    visit(old, am, T0)
    visit(old, am, T0 - datetime.timedelta(days=30))
    visit(recent, am, T0 + datetime.timedelta(days=3))
    visit(recent, am, T0 + datetime.timedelta(days=1))
    # A call after the latest visit does not count as a visit.
    visit(recent, am, T0 + datetime.timedelta(days=9), kind="call")
    visit(called, am, T0 + datetime.timedelta(days=2), kind="call")
    visit(moved, am, T0)
    visit(colleague, world.grid_leader_a, T0)
    return {"old": old, "recent": recent, "called": called, "never": never, "moved": moved, "colleague": colleague}


def test_only_own_merchants_in_own_grids_never_visited_first(world, mine, api_as):
    response = api_as(world.am_a).get(MY)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["count"] == 4 and body["next"] is None and body["previous"] is None
    # Never visited (by id), then the longest ago first: moved-away and colleague's are not listed.
    nulls = sorted([mine["called"].pk, mine["never"].pk])
    assert ids(body) == [*nulls, mine["old"].pk, mine["recent"].pk]
    rows = {row["id"]: row for row in body["results"]}
    assert set(rows[mine["old"].pk]) == {"id", "name", "status", "grid", "address", "last_visit_at"}
    assert rows[mine["old"].pk]["grid"] == world.grid_a.pk
    assert rows[mine["old"].pk]["name"] == "乙 old visit"
    assert rows[mine["old"].pk]["status"] == mine["old"].status


def test_last_visit_is_the_latest_visit_not_call(world, mine, api_as):
    rows = {row["id"]: row for row in api_as(world.am_a).get(MY).json()["results"]}
    recent = rows[mine["recent"].pk]["last_visit_at"]
    # ISO 8601 with an offset, the instant of the latest visit (the later call is ignored).
    assert parse_datetime(recent).utcoffset() is not None
    assert parse_datetime(recent) == T0 + datetime.timedelta(days=3)
    assert parse_datetime(rows[mine["old"].pk]["last_visit_at"]) == T0
    assert rows[mine["called"].pk]["last_visit_at"] is None
    assert rows[mine["never"].pk]["last_visit_at"] is None


def test_ordering_options(world, mine, api_as):
    client = api_as(world.am_a)
    nulls = sorted([mine["called"].pk, mine["never"].pk])
    latest_first = client.get(MY, {"ordering": "-last_visit_at"}).json()
    assert ids(latest_first) == [mine["recent"].pk, mine["old"].pk, *nulls]
    by_name = client.get(MY, {"ordering": "name"}).json()
    names = [row["name"] for row in by_name["results"]]
    assert names == sorted(names) and len(names) == 4
    assert ids(client.get(MY, {"ordering": "last_visit_at"}).json()) == [*nulls, mine["old"].pk, mine["recent"].pk]


def test_pagination(world, mine, api_as):
    client = api_as(world.am_a)
    everything = ids(client.get(MY).json())
    first = client.get(MY, {"page_size": 3}).json()
    assert first["count"] == 4 and ids(first) == everything[:3] and first["previous"] is None
    assert "page=2" in first["next"] and "page_size=3" in first["next"]
    second = client.get(first["next"]).json()
    assert ids(second) == everything[3:] and second["next"] is None
    assert "page_size=3" in second["previous"] and "page=" not in second["previous"]
    third = client.get(MY, {"page_size": 1, "page": 3}).json()
    assert ids(third) == everything[2:3] and "page=2" in third["previous"] and "page=4" in third["next"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"ordering": "owner"}, "ordering"),
        ({"ordering": "last_visit_at;drop"}, "ordering"),
        ({"page": "0"}, "page"),
        ({"page": "x"}, "page"),
        ({"page": "-1"}, "page"),
        ({"page": "5"}, "page"),  # beyond the last page
        ({"page": str(2**70)}, "page"),
        ({"page_size": "0"}, "page_size"),
        ({"page_size": "501"}, "page_size"),
        ({"page_size": "many"}, "page_size"),
    ],
)
def test_bad_parameters_are_a_400_naming_them(world, mine, api_as, query, field):
    response = api_as(world.am_a).get(MY, query)
    assert response.status_code == 400, response.content
    assert field in response.json()


def test_anonymous_is_refused(world, api_as):
    assert api_as(None).get(MY).status_code in (401, 403)


@pytest.mark.parametrize("who", ["nobody", "former_am_a"])
def test_leaver_or_user_without_scope_gets_an_empty_list(world, who, api_as):
    user = getattr(world, who)
    # Even merchants still recorded as theirs are not shown once the membership has ended.
    MerchantFactory(grid=world.grid_a, owner=user)
    response = api_as(user).get(MY)
    assert response.status_code == 200, response.content
    assert response.json() == {"count": 0, "next": None, "previous": None, "results": []}


def test_a_merchant_handed_over_moves_to_the_new_owner(world, mine, api_as):
    mine["colleague"].owner = world.am_a
    mine["colleague"].save()
    assert mine["colleague"].pk in ids(api_as(world.am_a).get(MY).json())
    assert mine["colleague"].pk not in ids(api_as(world.grid_leader_a).get(MY).json())


def test_a_constant_number_of_queries_whatever_the_rows(world, api_as, django_assert_max_num_queries):
    client = api_as(world.am_a)
    MerchantFactory(grid=world.grid_a, owner=world.am_a)
    # The user's memberships, then one statement (count + page).
    with django_assert_max_num_queries(2):
        small = client.get(MY, {"page_size": 500})
    for i in range(40):
        m = MerchantFactory(grid=world.grid_a, owner=world.am_a)
        visit(m, world.am_a, T0 + datetime.timedelta(hours=i))
    with django_assert_max_num_queries(2):
        big = client.get(MY, {"page_size": 500})
    assert small.json()["count"] == 1 and big.json()["count"] == 41


def test_routed_as_a_list_action_not_a_merchant_id(world, api_as):
    """/merchants/my/ is the action, not the detail of a merchant with pk "my"."""
    from django.urls import resolve

    assert resolve(MY).url_name == "merchant-my"
