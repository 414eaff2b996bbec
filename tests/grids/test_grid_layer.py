"""The grid layer (GeoJSON): lean by default, ``?with=merchant_count`` opt-in, scoped."""

import json

from tests.factories import MerchantFactory


def features(response):
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"] == "application/geo+json"
    return {f["properties"]["id"]: f["properties"] for f in json.loads(response.content)["features"]}


def test_default_properties_have_no_merchant_count(world, merchants, api_as):
    props = features(api_as(world.branch_manager).get("/api/v1/layers/grids/"))
    assert props and all("merchant_count" not in p for p in props.values())
    assert all({"id", "name", "code", "kind", "status", "sub_branch_id", "color"} <= set(p) for p in props.values())


def test_merchant_count_is_opt_in_and_counts_each_grids_merchants(world, merchants, api_as):
    MerchantFactory.create_batch(2, grid=world.grid_a)
    props = features(api_as(world.branch_manager).get("/api/v1/layers/grids/?with=merchant_count"))
    assert props[world.grid_a.pk]["merchant_count"] == 3
    assert props[world.grid_b.pk]["merchant_count"] == 1
    # Scope is unchanged: an account manager of grid A sees grid A only, with its count.
    props = features(api_as(world.am_a).get("/api/v1/layers/grids/?with=merchant_count"))
    assert set(props) == {world.grid_a.pk} and props[world.grid_a.pk]["merchant_count"] == 3


def test_a_grid_without_merchants_counts_zero(world, api_as):
    props = features(api_as(world.admin).get("/api/v1/layers/grids/?with=merchant_count"))
    assert props and all(p["merchant_count"] == 0 for p in props.values())


def test_unknown_with_is_a_400_naming_it(world, api_as):
    response = api_as(world.am_a).get("/api/v1/layers/grids/?with=owners")
    assert response.status_code == 400 and "with" in response.json()


def test_merchant_count_layer_is_one_statement(world, merchants, api_as, django_assert_max_num_queries):
    client = api_as(world.branch_manager)
    with django_assert_max_num_queries(3):
        features(client.get("/api/v1/layers/grids/?with=merchant_count"))
