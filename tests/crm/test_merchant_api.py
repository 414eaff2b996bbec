"""Merchant writes: validation, grid from location in the database, scope, owners."""

import pytest
from django.urls import reverse

from crm.models import Industry, Merchant
from crm.validators import credit_code_check_char

URL = "/api/v1/merchants/"


def point_in(grid):
    return {"type": "Point", "coordinates": list(grid.geom.centroid.coords)}


def valid_code(body="91330106MA2KXXXX0"):
    return body + credit_code_check_char(body)


def test_create_sets_grid_from_location(world, api_as):
    response = api_as(world.am_a).post(URL, {"name": "老王面馆", "location": point_in(world.grid_a)}, format="json")
    assert response.status_code == 201, response.content
    merchant = Merchant.objects.get(pk=response.json()["id"])
    assert merchant.grid_id == world.grid_a.pk


def test_move_out_of_my_grid_is_refused_and_nothing_changes(world, merchants, api_as):
    mine = merchants["grid_a"]
    url = reverse("api:merchant-detail", args=[mine.pk])
    response = api_as(world.am_a).patch(url, {"location": point_in(world.grid_c)}, format="json")
    assert response.status_code == 400
    assert "location" in response.json()
    mine.refresh_from_db()
    assert mine.grid_id == world.grid_a.pk


def test_branch_manager_moves_between_own_grids(world, merchants, api_as):
    url = reverse("api:merchant-detail", args=[merchants["grid_a"].pk])
    response = api_as(world.branch_manager).patch(url, {"location": point_in(world.grid_b)}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["grid"]["id"] == world.grid_b.pk


def test_mid_office_is_read_only(world, merchants, api_as):
    client = api_as(world.mid_office)
    url = reverse("api:merchant-detail", args=[merchants["grid_a"].pk])
    assert client.get(url).status_code == 200
    assert client.patch(url, {"name": "x"}, format="json").status_code == 404
    assert client.post(URL, {"name": "x", "location": point_in(world.grid_a)}, format="json").status_code == 400


def test_no_hard_delete(world, merchants, api_as):
    url = reverse("api:merchant-detail", args=[merchants["grid_a"].pk])
    assert api_as(world.admin).delete(url).status_code == 405


def wrong_check_char(body="91330106MA2KXXXX0"):
    right = credit_code_check_char(body)
    return body + ("1" if right != "1" else "2")


@pytest.mark.parametrize(
    ("code", "reason"),
    [("123", "18"), ("91330106MA2KXXXX0I", "不允许"), (wrong_check_char(), "校验码")],
)
def test_credit_code_is_validated(world, api_as, code, reason):
    payload = {"name": "x", "credit_code": code, "location": point_in(world.grid_a)}
    response = api_as(world.am_a).post(URL, payload, format="json")
    assert response.status_code == 400
    assert reason in response.json()["credit_code"][0]


def test_credit_code_unique_is_a_400(world, api_as):
    client = api_as(world.am_a)
    payload = {"name": "x", "credit_code": valid_code(), "location": point_in(world.grid_a)}
    assert client.post(URL, payload, format="json").status_code == 201
    response = client.post(URL, payload, format="json")
    assert response.status_code == 400
    assert "credit_code" in response.json()


def test_owner_must_serve_the_grid(world, api_as):
    client = api_as(world.branch_manager)
    bad = {"name": "x", "location": point_in(world.grid_a), "owner": world.am_c.pk}
    response = client.post(URL, bad, format="json")
    assert response.status_code == 400
    assert "owner" in response.json()
    good = {**bad, "owner": world.am_a.pk, "industry": Industry.objects.get(code="food").pk}
    assert client.post(URL, good, format="json").status_code == 201


def test_place_from_another_scope_is_not_accepted(world, merchants, api_as):
    from grids.models import Place

    foreign = Place.objects.get(grid=world.grid_c)
    payload = {"name": "x", "location": point_in(world.grid_a), "place": foreign.pk}
    response = api_as(world.am_a).post(URL, payload, format="json")
    assert response.status_code == 400
    assert "place" in response.json()


def test_bulk_assignment_moves_only_changed_rows(world, merchants):
    from crm.services import merchants_assign_to_grids

    Merchant.objects.filter(pk=merchants["grid_a"].pk).update(grid=world.grid_c)
    assert merchants_assign_to_grids() == 1
    assert Merchant.objects.get(pk=merchants["grid_a"].pk).grid_id == world.grid_a.pk
    assert merchants_assign_to_grids() == 0


def test_shared_border_goes_to_lowest_grid_id(world):
    from django.contrib.gis.geos import MultiPolygon, Point, Polygon

    from grids.selectors import grid_for_point
    from tests.factories import GridFactory

    east = GridFactory(sub_branch=world.sb1, geom=MultiPolygon(Polygon.from_bbox((121.0, 31.0, 121.01, 31.01))))
    west = GridFactory(sub_branch=world.sb1, geom=MultiPolygon(Polygon.from_bbox((120.99, 31.0, 121.0, 31.01))))
    on_border = Point(121.0, 31.005, srid=4326)
    assert grid_for_point(on_border) == min(east.pk, west.pk)
    assert grid_for_point(Point(121.005, 31.005, srid=4326)) == east.pk
