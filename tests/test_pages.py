"""Server-rendered pages: login, home per role, map, language. Real PostGIS, the ``world`` fixture."""

import json
import shutil
import subprocess

import pytest
from django.conf import settings as django_settings
from django.test import Client
from django.urls import reverse
from django.utils import translation

from tests.factories import GridFactory, MembershipFactory, MerchantFactory, SubBranchFactory

pytestmark = pytest.mark.django_db

ROLES = ["admin", "regional_head", "mid_office", "branch_manager", "grid_leader_a", "am_a", "am_c"]


@pytest.fixture(autouse=True)
def _reset_language():
    # A page rendered in English must not leave English active for the next test's assertions.
    yield
    translation.activate("zh-hans")


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def html(response) -> str:
    return response.content.decode()


def names(world, *keys):
    return {key: getattr(world, key).name for key in keys}


def map_config(response) -> dict:
    return response.context["map_config"]


# -- Anonymous ------------------------------------------------------------------------------------


@pytest.mark.parametrize("url_name", ["home", "map"])
def test_anonymous_is_sent_to_login(client, url_name):
    url = reverse(url_name)
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={url}"


def test_login_page_renders_in_chinese_by_default(client):
    response = client.get(reverse("login"))
    assert response.status_code == 200
    body = html(response)
    assert '<html lang="zh-hans">' in body
    assert "网格化营销 CRM" in body
    assert "登录" in body
    # The language switch offers English, as a POST form to set_language.
    assert f'action="{reverse("set_language")}"' in body
    assert 'value="en"' in body


def test_login_with_wrong_password_shows_an_error(client, world):
    response = client.post(reverse("login"), {"username": "am_a", "password": "nope"})
    assert response.status_code == 200
    assert 'class="alert alert-error"' in html(response)
    assert "_auth_user_id" not in client.session


def test_login_lands_on_home(client, world):
    response = client.post(reverse("login"), {"username": "am_a", "password": "pw"}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("home")
    assert "我的网格" in html(response)


def test_logout_is_a_post_form(world):
    client = client_for(world.am_a)
    body = html(client.get(reverse("home")))
    assert f'<form method="post" action="{reverse("logout")}">' in body
    response = client.post(reverse("logout"))
    assert response.status_code == 302
    assert client.get(reverse("home")).status_code == 302


# -- Home, per role -------------------------------------------------------------------------------


def test_home_account_manager_sees_only_their_grid(world, merchants):
    MerchantFactory(grid=world.grid_a)  # two merchants in grid A
    response = client_for(world.am_a).get(reverse("home"))
    assert response.status_code == 200
    body = html(response)
    assert response.context["grid_count"] == 1
    assert response.context["merchant_count"] == 2
    assert [row["grid"].pk for row in response.context["my_grids"]] == [world.grid_a.pk]
    assert response.context["my_grids"][0]["merchant_count"] == 2
    assert response.context["sub_branch_rows"] is None
    assert response.context["grid_rows"] is None
    assert "客户经理" in body  # role, in Chinese
    assert world.grid_a.name in body
    assert f"{reverse('map')}?grid={world.grid_a.pk}" in body
    for other in (world.grid_b, world.grid_c, world.grid_x, world.sb2, world.grid_x.sub_branch, world.other_branch):
        assert other.name not in body
    for key in ("grid_b", "grid_c", "grid_x"):
        assert merchants[key].name not in body


def test_home_grid_leader(world, merchants):
    response = client_for(world.grid_leader_a).get(reverse("home"))
    body = html(response)
    assert "网格长" in body
    assert [row["grid"].pk for row in response.context["my_grids"]] == [world.grid_a.pk]
    assert world.grid_b.name not in body and world.grid_c.name not in body


def test_home_account_manager_in_the_other_sub_branch(world, merchants):
    response = client_for(world.am_c).get(reverse("home"))
    body = html(response)
    assert response.context["grid_count"] == 1
    assert world.grid_c.name in body
    assert world.grid_a.name not in body and world.sb1.name not in body


def test_home_branch_manager_sees_grids_of_their_sub_branch(world, merchants):
    MerchantFactory(grid=world.grid_b)
    MerchantFactory(grid=world.grid_b)
    response = client_for(world.branch_manager).get(reverse("home"))
    body = html(response)
    rows = {row["grid"].pk: row["merchant_count"] for row in response.context["grid_rows"]}
    assert rows == {world.grid_a.pk: 1, world.grid_b.pk: 3}
    assert response.context["grid_count"] == 2
    assert response.context["merchant_count"] == 4
    assert "支行行长" in body
    assert 'data-testid="grid-table"' in body
    assert world.grid_a.name in body and world.grid_b.name in body
    for other in (world.grid_c, world.grid_x, world.sb2):
        assert other.name not in body


@pytest.mark.parametrize("role", ["regional_head", "mid_office"])
def test_home_branch_roles_see_a_row_per_sub_branch(world, merchants, role):
    GridFactory(sub_branch=world.sb2)  # a second grid in sub-branch 2, without merchants
    response = client_for(getattr(world, role)).get(reverse("home"))
    body = html(response)
    rows = {r["sub_branch"].pk: (r["grid_count"], r["merchant_count"]) for r in response.context["sub_branch_rows"]}
    assert rows == {world.sb1.pk: (2, 2), world.sb2.pk: (2, 1)}
    assert response.context["grid_count"] == 4
    assert response.context["merchant_count"] == 3
    assert 'data-testid="sub-branch-table"' in body
    assert world.sb1.name in body and world.sb2.name in body
    assert world.grid_x.sub_branch.name not in body
    assert world.other_branch.name not in body
    assert {"regional_head": "区域负责人", "mid_office": "中台"}[role] in body


def test_home_admin_sees_everything(world, merchants):
    response = client_for(world.admin).get(reverse("home"))
    body = html(response)
    rows = {r["sub_branch"].pk: (r["grid_count"], r["merchant_count"]) for r in response.context["sub_branch_rows"]}
    assert rows[world.sb1.pk] == (2, 2)
    assert rows[world.sb2.pk] == (1, 1)
    assert rows[world.grid_x.sub_branch_id] == (1, 1)
    assert response.context["grid_count"] == 4
    assert response.context["merchant_count"] == 4
    assert response.context["show_branch_column"] is True
    assert world.other_branch.name in body and world.branch.name in body
    assert "系统管理员" in body
    assert reverse("api-docs") in body  # staff get the API docs link


def test_api_docs_link_only_for_staff(world):
    assert reverse("api-docs") not in html(client_for(world.am_a).get(reverse("home")))


@pytest.mark.parametrize("user_key", ["nobody", "former_am_a"])
def test_home_without_scope_is_friendly(world, merchants, user_key):
    response = client_for(getattr(world, user_key)).get(reverse("home"))
    assert response.status_code == 200
    body = html(response)
    assert 'data-testid="no-scope"' in body
    assert "还没有管辖范围" in body
    for key in ("grid_a", "grid_b", "grid_c", "grid_x"):
        assert getattr(world, key).name not in body
        assert merchants[key].name not in body


def test_home_shows_merchants_outside_every_grid_to_superusers_only(world):
    MerchantFactory(grid=None, owner=world.am_a)
    response = client_for(world.admin).get(reverse("home"))
    assert response.context["unassigned_merchant_count"] == 1
    assert "不在任何网格内" in html(response)
    response = client_for(world.am_a).get(reverse("home"))
    assert response.context["unassigned_merchant_count"] == 0
    assert "不在任何网格内" not in html(response)


def test_home_only_puts_hex_colours_into_style_attributes(world):
    world.sb1.color = "red;x:y"  # the column is free text of 7 characters
    world.sb1.save()
    body = html(client_for(world.regional_head).get(reverse("home")))
    assert "red;x:y" not in body
    assert "background: #3366cc" in body


@pytest.mark.parametrize("role", ROLES)
def test_home_query_count_is_bounded(world, django_assert_max_num_queries, role):
    user = getattr(world, role)
    # A bigger scope must not mean more queries: add grids, sub-branches and merchants everywhere.
    for sb in (world.sb1, world.sb2, SubBranchFactory(branch=world.branch)):
        for _ in range(3):
            grid = GridFactory(sub_branch=sb)
            MerchantFactory.create_batch(2, grid=grid)
    MembershipFactory(user=world.am_a, role="account_manager", grid=world.grid_b)
    client = client_for(user)
    client.get(reverse("home"))  # warm the session
    with django_assert_max_num_queries(10):
        response = client.get(reverse("home"))
    assert response.status_code == 200


# -- Map page -------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_map_page_renders_for_each_role(world, merchants, role):
    response = client_for(getattr(world, role)).get(reverse("map"))
    assert response.status_code == 200
    body = html(response)
    assert 'id="map"' in body
    assert "leaflet/leaflet.js" in body
    assert "vendor/leaflet.markercluster/leaflet.markercluster.js" in body
    assert "js/map.js" in body
    config = json.loads(body.split('<script id="map-config" type="application/json">')[1].split("</script>")[0])
    assert config["layers"] == {
        "grids": "/api/v1/layers/grids/",
        "places": "/api/v1/layers/places/",
        "merchants": "/api/v1/layers/merchants/",
    }
    assert config["strings"]["grids"] == "网格"
    assert config["labels"]["merchant_status"]["prospect"] == "潜在客户"


def test_map_page_loads_nothing_from_the_internet(world):
    body = html(client_for(world.am_a).get(reverse("map")))
    for marker in ("http://", "https://", "//unpkg", "//cdn"):
        assert f'src="{marker}' not in body
        assert f'href="{marker}' not in body


def test_map_first_view_is_the_users_scope(world, merchants):
    config = map_config(client_for(world.am_a).get(reverse("map")))
    (south, west), (north, east) = config["bounds"]
    xmin, ymin, xmax, ymax = world.grid_a.geom.extent
    assert (west, south, east, north) == pytest.approx((xmin, ymin, xmax, ymax))
    assert [row["id"] for row in config["legend"]] == [world.sb1.pk]


def test_map_focus_on_a_grid_outside_scope_falls_back_to_own_scope(world):
    config = map_config(client_for(world.am_a).get(reverse("map"), {"grid": world.grid_c.pk}))
    (south, west), (north, east) = config["bounds"]
    assert (west, south, east, north) == pytest.approx(world.grid_a.geom.extent)


def test_map_focus_on_a_grid_in_scope(world):
    client = client_for(world.branch_manager)
    config = map_config(client.get(reverse("map"), {"grid": world.grid_b.pk}))
    (south, west), (north, east) = config["bounds"]
    assert (west, south, east, north) == pytest.approx(world.grid_b.geom.extent)
    # A bad parameter is ignored, not a 500.
    assert client.get(reverse("map"), {"grid": "1;drop", "sub_branch": "x"}).status_code == 200


def test_map_without_scope_shows_a_notice(world):
    response = client_for(world.nobody).get(reverse("map"))
    assert map_config(response)["bounds"] is None
    assert map_config(response)["legend"] == []
    assert 'data-testid="map-empty"' in html(response)


@pytest.mark.parametrize("crs,gcoord", [("wgs84", False), ("gcj02", True)])
def test_map_loads_gcoord_only_for_a_gcj02_base_map(world, settings, crs, gcoord):
    settings.MAP_TILE_CRS = crs
    settings.MAP_TILE_URL = "https://tiles.bank.example/{z}/{x}/{y}.png" if gcoord else ""
    response = client_for(world.am_a).get(reverse("map"))
    assert ("vendor/gcoord/gcoord.global.prod.js" in html(response)) is gcoord
    assert map_config(response)["tiles"] == {"url": settings.MAP_TILE_URL, "attribution": "", "crs": crs}


# -- Language -------------------------------------------------------------------------------------


def test_default_language_is_chinese(world):
    body = html(client_for(world.am_a).get(reverse("home")))
    assert '<html lang="zh-hans">' in body
    assert "首页" in body and "地图" in body and "退出登录" in body


def test_switching_to_english(world):
    client = client_for(world.am_a)
    response = client.post(reverse("set_language"), {"language": "en", "next": reverse("map")})
    assert response.status_code == 302
    assert response["Location"] == reverse("map")
    body = html(client.get(reverse("home")))
    assert '<html lang="en">' in body
    assert "Home" in body and "My grids" in body and "Account manager" in body
    assert "我的网格" not in body
    config = map_config(client.get(reverse("map")))
    assert config["strings"]["grids"] == "Grids"
    # and back
    client.post(reverse("set_language"), {"language": "zh-hans", "next": "/"})
    assert "我的网格" in html(client.get(reverse("home")))


# -- Static files ---------------------------------------------------------------------------------


def test_static_files_collect_for_production(tmp_path, settings):
    """Production serves hashed, compressed static files: every url() and sourceMappingURL in the
    vendored CSS/JS must resolve, or collectstatic (and the deploy) fails."""
    from django.contrib.staticfiles.storage import staticfiles_storage
    from django.core.management import call_command

    settings.STATIC_ROOT = tmp_path
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    }
    call_command("collectstatic", "--noinput", verbosity=0)
    for name in ("css/app.css", "js/map.js", "vendor/leaflet.markercluster/leaflet.markercluster.js"):
        assert staticfiles_storage.stored_name(name) != name  # hashed


# -- Translations ---------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("msgattrib") is None, reason="gettext tools are not installed")
@pytest.mark.parametrize("flag", ["--untranslated", "--only-fuzzy"])
def test_chinese_catalogue_is_complete(flag):
    po = django_settings.BASE_DIR / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po"
    left = subprocess.run(["msgattrib", flag, "--no-obsolete", str(po)], capture_output=True, text=True, check=True)
    assert left.stdout == "", f"entries left {flag}:\n{left.stdout}"


def test_english_browser_still_gets_chinese_until_the_user_switches(world, client):
    client.force_login(world.am_a)
    body = client.get("/", HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9").content.decode()
    assert "网格" in body


def test_out_of_scope_page_answers_the_projects_404_in_chinese(world, merchants):
    """A merchant outside the user's grids is 'not found' (never 403: that would confirm it exists),
    on our own page with the navigation, in Chinese by default."""
    response = client_for(world.am_a).get(reverse("merchant-detail", args=[merchants["grid_c"].pk]))
    assert response.status_code == 404
    body = html(response)
    assert 'data-testid="not-found"' in body
    assert merchants["grid_c"].name not in body
    assert '<html lang="zh-hans">' in body


@pytest.mark.parametrize(
    ("role", "shown"),
    [("am_a", True), ("grid_leader_a", True), ("branch_manager", False), ("mid_office", False), ("nobody", False)],
)
def test_the_field_app_is_linked_for_grid_teams(world, role, shown):
    body = html(client_for(getattr(world, role)).get(reverse("home")))
    assert (f'href="{reverse("field-shell")}"' in body) is shown
