"""Edges found in review: nothing here may be a 500 or leak what exists outside a scope."""

import json

import pytest


@pytest.mark.parametrize("url", ["/api/v1/merchants/", "/api/v1/layers/merchants/", "/api/v1/places/"])
def test_filter_by_out_of_scope_id_is_empty_not_an_error(world, merchants, api_as, url):
    client = api_as(world.am_a)
    foreign = client.get(f"{url}?grid={world.grid_c.pk}")
    missing = client.get(f"{url}?grid=999999999")
    assert foreign.status_code == missing.status_code == 200
    assert foreign.content.replace(b"999999999", b"") == missing.content.replace(b"999999999", b"")


def test_filter_with_garbage_id_is_a_400_naming_it(world, api_as):
    response = api_as(world.am_a).get("/api/v1/merchants/?owner=abc")
    assert response.status_code == 400 and "owner" in response.json()


def test_bbox_entirely_outside_china_is_a_400(world, api_as):
    response = api_as(world.am_a).get("/api/v1/layers/grids/?bbox=0,0,10,1")
    assert response.status_code == 400 and "bbox" in response.json()


def test_token_endpoint_takes_json_only_and_never_500s(world, client):
    deep = "[" * 100000 + "]" * 100000
    assert client.post("/api/v1/auth/token/", deep, content_type="application/json").status_code == 400
    form = client.post("/api/v1/auth/token/", {"username": "am_a", "password": "pw"})
    assert form.status_code == 415
    ok = client.post("/api/v1/auth/token/", {"username": "am_a", "password": "pw"}, content_type="application/json")
    assert ok.status_code == 200 and ok.json()["token"]


def test_layer_cap_of_zero_is_an_empty_truncated_collection(world, merchants, api_as, settings):
    settings.MAP_LAYER_MAX_FEATURES = 0
    body = json.loads(api_as(world.admin).get("/api/v1/layers/merchants/").content)
    assert body == {"type": "FeatureCollection", "truncated": True, "count": 0, "features": []}
