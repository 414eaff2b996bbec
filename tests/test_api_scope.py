"""Every API endpoint under the generic scope checks (tests/scope_checks.py)."""

from crm.models import Industry
from grids.models import Membership, Place
from tests.factories import GridFactory, MembershipFactory, MerchantFactory, PlaceFactory, SubBranchFactory
from tests.scope_checks import ScopedEndpointChecks


class TestBranchEndpoint(ScopedEndpointChecks):
    basename = "branch"

    def in_scope(self, world, merchants):
        return world.branch

    def out_of_scope(self, world, merchants):
        return world.other_branch


class TestSubBranchEndpoint(ScopedEndpointChecks):
    basename = "subbranch"

    def in_scope(self, world, merchants):
        return world.sb1

    def out_of_scope(self, world, merchants):
        return world.sb2

    def make_many(self, world, n):
        SubBranchFactory.create_batch(n, branch=world.branch)


class GridChecks(ScopedEndpointChecks):
    def in_scope(self, world, merchants):
        return world.grid_a

    def out_of_scope(self, world, merchants):
        return world.grid_b

    def make_many(self, world, n):
        GridFactory.create_batch(n, sub_branch=world.sb2)


class TestGridEndpoint(GridChecks):
    basename = "grid"


class TestGridLayer(GridChecks):
    basename = "layer-grid"


class PlaceChecks(ScopedEndpointChecks):
    def in_scope(self, world, merchants):
        return Place.objects.filter(grid=world.grid_a).first()

    def out_of_scope(self, world, merchants):
        return Place.objects.filter(grid=world.grid_b).first()

    def make_many(self, world, n):
        PlaceFactory.create_batch(n, grid=world.grid_c)


class TestPlaceEndpoint(PlaceChecks):
    basename = "place"


class TestPlaceLayer(PlaceChecks):
    basename = "layer-place"


class TestMembershipEndpoint(ScopedEndpointChecks):
    basename = "membership"

    def in_scope(self, world, merchants):
        return Membership.objects.get(user=world.grid_leader_a)

    def out_of_scope(self, world, merchants):
        return Membership.objects.get(user=world.am_c)

    def make_many(self, world, n):
        MembershipFactory.create_batch(n, grid=world.grid_c)


class TestIndustryEndpoint(ScopedEndpointChecks):
    basename = "industry"
    reference = True

    def in_scope(self, world, merchants):
        return Industry.objects.first()


class MerchantChecks(ScopedEndpointChecks):
    def in_scope(self, world, merchants):
        return merchants["grid_a"]

    def out_of_scope(self, world, merchants):
        return merchants["grid_b"]

    def make_many(self, world, n):
        MerchantFactory.create_batch(n, grid=world.grid_c)


class TestMerchantEndpoint(MerchantChecks):
    basename = "merchant"

    def write_outside(self, world, merchants):
        # A new merchant located in grid B (same sub-branch, not am_a's grid).
        lon, lat = world.grid_b.geom.centroid.coords
        return "post", self.list_url(), {"name": "越界商户", "location": {"type": "Point", "coordinates": [lon, lat]}}


class TestMerchantLayer(MerchantChecks):
    basename = "layer-merchant"


def test_layer_cap_marks_truncation(world, merchants, api_as, settings):
    import json

    settings.MAP_LAYER_MAX_FEATURES = 3
    MerchantFactory.create_batch(5, grid=world.grid_a, name='引号"和,{"type": "Feature"')
    body = json.loads(api_as(world.am_a).get("/api/v1/layers/merchants/").content)
    assert body["truncated"] is True and body["count"] == 3 and len(body["features"]) == 3
    settings.MAP_LAYER_MAX_FEATURES = 6
    body = json.loads(api_as(world.am_a).get("/api/v1/layers/merchants/").content)
    assert body["truncated"] is False and body["count"] == 6 and len(body["features"]) == 6
