"""The territory page (网格规划, grids.views.territory_page): who may open it, what it holds, and the
nav link. Server-rendered only; the browser journey is tests/e2e/test_territory_journey.py."""

import datetime
import json

import pytest
from django.test import Client
from django.urls import reverse

from tests.factories import GridFactory, MembershipFactory, MerchantFactory, SubBranchFactory, UserFactory

pytestmark = pytest.mark.django_db

URL = "/territory/"


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def config(response) -> dict:
    return response.context["territory_config"]


def test_url_name():
    assert reverse("territory") == URL


def test_anonymous_is_sent_to_login(client):
    response = client.get(URL)
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={URL}"


@pytest.mark.parametrize("role", ["am_a", "am_c", "grid_leader_a", "mid_office", "nobody", "former_am_a"])
def test_roles_that_do_not_draw_get_403(world, merchants, role):
    response = client_for(getattr(world, role)).get(URL)
    assert response.status_code == 403
    body = response.content.decode()
    for grid in (world.grid_a, world.grid_b, world.grid_c, world.grid_x):
        assert grid.name not in body
    assert "territory-config" not in body


def test_ended_branch_manager_membership_gets_403(world):
    leaver = UserFactory(username="old_bm")
    MembershipFactory(
        user=leaver,
        role="branch_manager",
        sub_branch=world.sb1,
        start_date=datetime.date(2023, 1, 1),
        end_date=datetime.date(2024, 1, 1),
    )
    assert client_for(leaver).get(URL).status_code == 403


def test_branch_manager_sees_their_sub_branch_only(world, merchants):
    MerchantFactory(grid=world.grid_a)  # grid A: two merchants
    response = client_for(world.branch_manager).get(URL)
    assert response.status_code == 200
    body = response.content.decode()
    cfg = config(response)
    assert cfg["sub_branch"]["id"] == world.sb1.pk
    assert [s["id"] for s in cfg["sub_branches"]] == [world.sb1.pk]
    rows = {g["id"]: g for g in cfg["grids"]}
    assert set(rows) == {world.grid_a.pk, world.grid_b.pk}
    assert rows[world.grid_a.pk]["merchant_count"] == 2
    assert rows[world.grid_b.pk]["merchant_count"] == 1
    # The list on the page, with its counts, in Chinese.
    assert f'data-testid="grid-count-{world.grid_a.pk}" data-count="2"' in body
    assert world.grid_a.name in body and world.grid_b.name in body
    assert '<html lang="zh-hans">' in body
    assert "新建网格" in body or "New grid" in body  # the lead translates; the msgid is English
    # Nothing of the other sub-branch or branch: names, merchants, people.
    for other in (world.grid_c, world.grid_x, world.sb2, world.grid_x.sub_branch, world.other_branch):
        assert other.name not in body
    for key in ("grid_c", "grid_x"):
        assert merchants[key].name not in body
    assert str(world.am_c) not in body
    # The people offered as grid leader are those of this sub-branch's grids.
    assert {p["id"] for p in cfg["people"]} == {world.grid_leader_a.pk, world.am_a.pk}
    assert rows[world.grid_a.pk]["leader"] == str(world.grid_leader_a)


def test_branch_manager_cannot_switch_to_another_sub_branch(world, merchants):
    response = client_for(world.branch_manager).get(f"{URL}?sub_branch={world.sb2.pk}")
    assert response.status_code == 200
    cfg = config(response)
    assert cfg["sub_branch"]["id"] == world.sb1.pk  # an id outside the scope falls back to their own
    body = response.content.decode()
    assert world.grid_c.name not in body and world.sb2.name not in body


def test_regional_head_switches_between_their_sub_branches(world, merchants):
    client = client_for(world.regional_head)
    response = client.get(URL)
    assert response.status_code == 200
    cfg = config(response)
    assert {s["id"] for s in cfg["sub_branches"]} == {world.sb1.pk, world.sb2.pk}
    assert 'data-testid="sub-branch-select"' in response.content.decode()
    response = client.get(f"{URL}?sub_branch={world.sb2.pk}")
    cfg = config(response)
    assert cfg["sub_branch"]["id"] == world.sb2.pk
    assert [g["id"] for g in cfg["grids"]] == [world.grid_c.pk]
    body = response.content.decode()
    assert world.grid_x.name not in body and world.other_branch.name not in body
    # Another branch's sub-branch is not reachable by id.
    response = client.get(f"{URL}?sub_branch={world.grid_x.sub_branch_id}")
    assert config(response)["sub_branch"]["id"] != world.grid_x.sub_branch_id
    assert world.grid_x.name not in response.content.decode()


def test_superuser_opens_it(world, merchants):
    response = client_for(world.admin).get(URL)
    assert response.status_code == 200
    assert config(response)["sub_branches"]


def test_branch_manager_of_a_sub_branch_without_grids(world):
    empty = SubBranchFactory(branch=world.branch, name="空支行")
    manager = UserFactory(username="bm_empty")
    MembershipFactory(user=manager, role="branch_manager", sub_branch=empty)
    response = client_for(manager).get(URL)
    assert response.status_code == 200
    assert config(response)["grids"] == []
    assert config(response)["bounds"] is None
    assert 'data-testid="no-grids"' in response.content.decode()


def test_retired_grids_are_not_in_the_list(world):
    retired = GridFactory(sub_branch=world.sb1, name="退役网格", status="retired")
    response = client_for(world.branch_manager).get(URL)
    assert {g["id"] for g in config(response)["grids"]} == {world.grid_a.pk, world.grid_b.pk}
    assert retired.name not in response.content.decode()


def test_config_names_existing_api_routes(world):
    response = client_for(world.branch_manager).get(URL)
    urls = config(response)["urls"]
    for key in ("grid_layer", "merchant_layer", "create_preview", "redraw", "split", "merge", "apply", "discard"):
        assert urls[key], key
    assert "{id}" in urls["redraw"] and "{id}" in urls["apply"]
    assert urls["import_inspect"] and urls["import_preview"] and urls["import_commit"]
    assert urls["exports"]["geojson"].endswith("format=geojson")
    assert urls["exports"]["excel"].endswith("format=xlsx")
    # The config is in the page as JSON (json_script), with no raw "<" to break out of it.
    body = response.content.decode()
    start = body.index('id="territory-config"')
    raw = body[body.index(">", start) + 1 : body.index("</script>", start)]
    assert json.loads(raw)["sub_branch"]["id"] == world.sb1.pk


# -- The nav link --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "role,shown",
    [
        ("admin", True),
        ("regional_head", True),
        ("branch_manager", True),
        ("mid_office", False),
        ("grid_leader_a", False),
        ("am_a", False),
        ("nobody", False),
    ],
)
def test_nav_link_per_role(world, role, shown):
    body = client_for(getattr(world, role)).get(reverse("home")).content.decode()
    assert (f'href="{URL}"' in body) is shown


def test_nav_link_is_current_on_the_page(world):
    body = client_for(world.branch_manager).get(URL).content.decode()
    assert f'<a href="{URL}" aria-current="page">' in body


def test_page_query_count_does_not_grow_with_grids(world, django_assert_max_num_queries):
    for _ in range(10):
        grid = GridFactory(sub_branch=world.sb1)
        MerchantFactory(grid=grid)
        MembershipFactory(user=UserFactory(), role="account_manager", grid=grid)
    client = client_for(world.branch_manager)
    with django_assert_max_num_queries(20):
        response = client.get(URL)
    assert len(config(response)["grids"]) == 12
