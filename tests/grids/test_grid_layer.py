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


# -- the lean filterset: django-filter's validation and filtering without per-request copies -----

QUERIES = [
    {},
    {"sub_branch": "5"},
    {"sub_branch": "abc"},
    {"sub_branch": "0"},
    {"sub_branch": ""},
    {"kind": "market", "status": "active"},
    {"kind": "nonsense"},
    {"status": "null"},
    {"q": "网格", "bbox": "120.0,30.0,120.5,30.5"},
    {"bbox": "120.0,30.0"},
    {"bbox": "1,2,3,4,5", "sub_branch": "x", "kind": "?"},
]


def _plain(filterset_class):
    """The same filterset as django-filter runs it (per-request copies and a form)."""
    return type(f"Plain{filterset_class.__name__}", (filterset_class,), {"_lean_filters": None})


def _outcome(filterset):
    valid = filterset.is_valid()
    errors = {k: [(e.code, e.message % (e.params or ())) for e in v] for k, v in filterset.errors.as_data().items()}
    return valid, errors, str(filterset.qs.query) if valid else None


def test_lean_filtersets_validate_and_filter_as_django_filter_does(world):
    from django.http import QueryDict

    from grids.filtersets import GridFilterSet, PlaceFilterSet
    from grids.models import Grid, Place

    for filterset_class, model in ((GridFilterSet, Grid), (PlaceFilterSet, Place)):
        plain = _plain(filterset_class)
        for params in QUERIES:
            data = QueryDict(mutable=True)
            data.update(params)
            lean = filterset_class(data, queryset=model.objects.all())
            assert lean.filters is filterset_class(data, queryset=model.objects.all()).filters  # shared
            reference = plain(data, queryset=model.objects.all())
            assert reference.filters is not plain.base_filters
            assert _outcome(lean) == _outcome(reference), params
        # The browsable API's form is django-filter's (the same labels); the class's filters, which
        # the OpenAPI schema reads, are left alone.
        forms = [fs(QueryDict(), queryset=model.objects.all()).form for fs in (filterset_class, plain)]
        assert [(n, f.label) for n, f in forms[0].fields.items()] == [(n, f.label) for n, f in forms[1].fields.items()]
        assert all(not hasattr(f, "model") for f in filterset_class.base_filters.values())


def test_layer_filters_answer_as_before(world, merchants, api_as):
    client = api_as(world.regional_head)
    props = features(client.get(f"/api/v1/layers/grids/?sub_branch={world.sb1.pk}"))
    assert set(props) == {world.grid_a.pk, world.grid_b.pk}
    response = client.get("/api/v1/layers/grids/?sub_branch=abc&kind=nonsense")
    assert response.status_code == 400 and {"sub_branch", "kind"} <= set(response.json())
    # Out of scope is empty, not an error.
    assert features(client.get(f"/api/v1/layers/grids/?sub_branch={world.grid_x.sub_branch_id}")) == {}
