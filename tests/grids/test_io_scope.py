"""The generic scope checks for the import and export endpoints (tests/test_api_coverage.py
requires a class per router endpoint).

Exports list records (GeoJSON features). An import endpoint's list is the sub-branches the user
may import into, so its "own scope" is a manager's: an account manager gets an empty list there
and a 403 on every upload step."""

import pytest
from django.urls import reverse

from grids.models import Grid, Place
from tests.factories import GridFactory, PlaceFactory
from tests.scope_checks import ScopedEndpointChecks, ids_in


class TestGridExportEndpoint(ScopedEndpointChecks):
    basename = "export-grid"

    def in_scope(self, world, merchants):
        return world.grid_a

    def out_of_scope(self, world, merchants):
        return world.grid_b

    def make_many(self, world, n):
        GridFactory.create_batch(n, sub_branch=world.sb2)

    @pytest.mark.parametrize("fmt", ["xlsx", "geojson"])
    def test_suffix_urls_go_through_the_same_scope(self, fmt, world, merchants, api_as):
        response = api_as(world.am_a).get(f"/api/v1/exports/grids.{fmt}")
        assert response.status_code == 200
        if fmt == "geojson":
            assert ids_in(response) == {world.grid_a.pk}


class TestPlaceExportEndpoint(ScopedEndpointChecks):
    basename = "export-place"

    def in_scope(self, world, merchants):
        return Place.objects.filter(grid=world.grid_a).first()

    def out_of_scope(self, world, merchants):
        return Place.objects.filter(grid=world.grid_b).first()

    def make_many(self, world, n):
        PlaceFactory.create_batch(n, grid=world.grid_c)


class ImportEndpointChecks(ScopedEndpointChecks):
    step_url_name = ""

    def in_scope(self, world, merchants):
        return world.sb1

    def out_of_scope(self, world, merchants):
        return world.sb2

    def write_outside(self, world, merchants):
        # am_a may not import at all: refused before the body is read, nothing written.
        return "post", reverse(f"api:{self.basename}-commit"), {"sub_branch": world.sb2.pk}

    def test_grid_member_sees_own_scope_only(self, world, merchants, api_as):
        assert ids_in(api_as(world.am_a).get(self.list_url())) == set()
        assert ids_in(api_as(world.grid_leader_a).get(self.list_url())) == set()
        assert ids_in(api_as(world.mid_office).get(self.list_url())) == set()  # read-only
        assert ids_in(api_as(world.branch_manager).get(self.list_url())) == {world.sb1.pk}
        assert ids_in(api_as(world.regional_head).get(self.list_url())) == {world.sb1.pk, world.sb2.pk}
        assert world.grid_x.sub_branch_id in ids_in(api_as(world.admin).get(self.list_url()))

    def test_write_by_a_manager_into_another_sub_branch_writes_nothing(self, world, merchants, api_as):
        before = (Grid.objects.count(), Place.objects.count())
        response = api_as(world.branch_manager).post(
            reverse(f"api:{self.basename}-commit"),
            {"sub_branch": world.sb2.pk, "mapping": "{}"},
            format="multipart",
        )
        assert response.status_code == 400
        assert "sub_branch" in response.json()
        assert (Grid.objects.count(), Place.objects.count()) == before


class TestGridImportEndpoint(ImportEndpointChecks):
    basename = "import-grid"


class TestPlaceImportEndpoint(ImportEndpointChecks):
    basename = "import-place"
