"""The territory API: scope checks for every new endpoint, and the journeys through it."""

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from crm.models import Activity, Merchant, ProductHolding
from grids.models import ChannelContact, Grid, GridVersion, RedrawProposal
from grids.services.redraw import redraw_preview
from tests.factories import GridFactory, MerchantFactory, PlaceFactory, cell
from tests.scope_checks import ScopedEndpointChecks


def square(n):
    x0, y0, x1, y1 = cell(n)
    return {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}


class TestRedrawProposalEndpoint(ScopedEndpointChecks):
    basename = "redrawproposal"

    def _pair(self, world):
        if getattr(self, "_made", None) is None:
            a = redraw_preview(grid=world.grid_a, new_geom=world.grid_a.geom, by=world.admin)
            b = redraw_preview(grid=world.grid_b, new_geom=world.grid_b.geom, by=world.admin)
            self._made = (a, b)
        return self._made

    def in_scope(self, world, merchants):
        return self._pair(world)[0]

    def out_of_scope(self, world, merchants):
        return self._pair(world)[1]

    def make_many(self, world, n):
        for _ in range(n):
            redraw_preview(grid=world.grid_c, new_geom=world.grid_c.geom, by=world.admin)

    def test_account_manager_cannot_apply_own_grid_proposal(self, world, merchants, api_as):
        p = self.in_scope(world, merchants)
        url = reverse("api:redrawproposal-apply", args=[p.pk])
        assert api_as(world.am_a).post(url, {}, format="json").status_code == 404
        assert api_as(world.mid_office).post(url, {}, format="json").status_code == 404
        assert RedrawProposal.objects.get(pk=p.pk).status == "proposed"


class TestChannelContactEndpoint(ScopedEndpointChecks):
    basename = "channelcontact"

    def _pair(self, world):
        if getattr(self, "_made", None) is None:
            self._made = (
                ChannelContact.objects.create(grid=world.grid_a, name="市场办王主任", phone="13812345678"),
                ChannelContact.objects.create(grid=world.grid_b, name="园区李主任", phone="13912345678"),
            )
        return self._made

    def in_scope(self, world, merchants):
        return self._pair(world)[0]

    def out_of_scope(self, world, merchants):
        return self._pair(world)[1]

    def make_many(self, world, n):
        ChannelContact.objects.bulk_create(ChannelContact(grid=world.grid_c, name=f"协会{i}") for i in range(n))

    def write_outside(self, world, merchants):
        return "post", self.list_url(), {"grid": world.grid_b.pk, "name": "越界", "role": "park_admin"}


class TestCoverageReportEndpoint(ScopedEndpointChecks):
    basename = "report-coverage"

    def in_scope(self, world, merchants):
        return world.grid_a

    def out_of_scope(self, world, merchants):
        return world.grid_b

    def make_many(self, world, n):
        for _ in range(n):
            MerchantFactory(grid=GridFactory(sub_branch=world.sb2))


# -- journeys -------------------------------------------------------------------------------------


def test_branch_manager_creates_grid_overlap_refused_then_accepted(world, api_as):
    client = api_as(world.branch_manager)
    body = {"sub_branch": world.sb1.pk, "name": "新网格", "code": "N1", "kind": "market", "geom": square(0)}
    overlapping = {**body, "geom": {"type": "MultiPolygon", "coordinates": [square(0)["coordinates"]]}}
    overlapping["geom"] = {
        "type": "Polygon",
        "coordinates": [[list(p) for p in world.grid_a.geom[0].exterior_ring.coords]],
    }
    response = client.post("/api/v1/grids/", overlapping, format="json")
    assert response.status_code == 400 and "geom" in response.json()
    assert world.grid_a.code in str(response.json()["geom"])
    response = client.post("/api/v1/grids/", {**overlapping, "accept_overlaps": True}, format="json")
    assert response.status_code == 201, response.content
    grid = Grid.objects.get(code="N1")
    versions = client.get(f"/api/v1/grids/{grid.pk}/versions/").json()
    assert [v["number"] for v in versions] == [1]


def test_bad_geometry_is_400_with_the_field(world, api_as):
    client = api_as(world.branch_manager)
    bowtie = {
        "type": "Polygon",
        "coordinates": [[[120.0, 30.0], [120.01, 30.01], [120.01, 30.0], [120.0, 30.01], [120.0, 30.0]]],
    }
    for geom in (bowtie, {"type": "Point", "coordinates": [120, 30]}, {"type": "Polygon", "coordinates": "x"}, None):
        body = {"sub_branch": world.sb1.pk, "name": "x", "code": "BAD", "geom": geom}
        response = client.post("/api/v1/grids/", body, format="json")
        assert response.status_code == 400 and "geom" in response.json(), response.content
    response = client.post(f"/api/v1/grids/{world.grid_a.pk}/redraw/", {"geom": bowtie}, format="json")
    assert response.status_code == 400 and "geom" in response.json()


@pytest.mark.parametrize("who", ["am_a", "grid_leader_a", "mid_office", "am_c"])
def test_account_managers_cannot_draw(world, api_as, who):
    client = api_as(getattr(world, who))
    body = {"sub_branch": world.sb1.pk, "name": "x", "code": "N2", "geom": square(400)}
    assert client.post("/api/v1/grids/", body, format="json").status_code == 403
    assert client.patch(f"/api/v1/grids/{world.grid_a.pk}/", {"name": "y"}, format="json").status_code == 404
    assert (
        client.post(f"/api/v1/grids/{world.grid_a.pk}/redraw/", {"geom": square(401)}, format="json").status_code == 404
    )
    assert not Grid.objects.filter(code="N2").exists() and Grid.objects.get(pk=world.grid_a.pk).name == "网格A"


def test_redraw_preview_diff_and_apply_over_the_api(world, api_as):
    a, b = world.grid_a, world.grid_b
    x0, y0, x1, y1 = b.geom.extent
    moving = MerchantFactory(grid=b, location=b.geom.centroid.__class__(x0 + 0.001, (y0 + y1) / 2, srid=4326))
    ax0, ay0, ax1, ay1 = a.geom.extent
    new = {
        "type": "Polygon",
        "coordinates": [[[ax0, ay0], [x0 + 0.002, ay0], [x0 + 0.002, ay1], [ax0, ay1], [ax0, ay0]]],
    }
    client = api_as(world.branch_manager)
    response = client.post(f"/api/v1/grids/{a.pk}/redraw/", {"geom": new, "note": "扩到路边"}, format="json")
    assert response.status_code == 201, response.content
    diff = response.json()
    assert [m["merchant_id"] for m in diff["moves"]] == [moving.pk]
    assert diff["moves"][0]["from_grid"]["id"] == b.pk and diff["moves"][0]["to_grid"]["id"] == a.pk
    assert diff["merchants_geojson"]["features"][0]["properties"]["id"] == moving.pk
    assert diff["overlaps"] and diff["summary"]["merchants"] == 1
    # am_a sees the proposal about their grid, but cannot apply it.
    assert api_as(world.am_a).get(f"/api/v1/redraw-proposals/{diff['id']}/").status_code == 200
    url = f"/api/v1/redraw-proposals/{diff['id']}/apply/"
    assert client.post(url, {}, format="json").status_code == 400  # overlaps not accepted
    response = client.post(url, {"accept_overlaps": True}, format="json")
    assert response.status_code == 200 and response.json()["status"] == "applied"
    assert Merchant.objects.get(pk=moving.pk).grid_id == a.pk
    assert client.post(url, {"accept_overlaps": True}, format="json").status_code == 400


def test_stale_proposal_is_409(world, api_as):
    client = api_as(world.branch_manager)
    p = client.post(f"/api/v1/grids/{world.grid_a.pk}/redraw/", {"geom": square(500)}, format="json").json()
    client.patch(f"/api/v1/grids/{world.grid_a.pk}/", {"name": "改"}, format="json")
    response = client.post(f"/api/v1/redraw-proposals/{p['id']}/apply/", {"accept_overlaps": True}, format="json")
    assert response.status_code == 409


def test_split_merge_discard_endpoints(world, api_as):
    client = api_as(world.branch_manager)
    x0, y0, x1, y1 = world.grid_a.geom.extent
    mid = (x0 + x1) / 2
    line = {"type": "LineString", "coordinates": [[mid, y0 - 0.001], [mid, y1 + 0.001]]}
    response = client.post(
        f"/api/v1/grids/{world.grid_a.pk}/split/", {"line": line, "new_name": "A2", "new_code": "A2"}, format="json"
    )
    assert response.status_code == 201, response.content
    assert len(response.json()["shapes"]["features"]) == 2
    assert client.post(f"/api/v1/redraw-proposals/{response.json()['id']}/discard/").status_code == 200
    response = client.post("/api/v1/grids/merge/", {"grid_ids": [world.grid_a.pk, world.grid_b.pk]}, format="json")
    assert response.status_code == 201, response.content
    assert (
        client.post("/api/v1/grids/merge/", {"grid_ids": [world.grid_a.pk, world.grid_c.pk]}, format="json").status_code
        == 400
    )
    response = client.post(
        f"/api/v1/grids/{world.grid_a.pk}/split/", {"new_name": "A2", "new_code": "A2"}, format="json"
    )
    assert response.status_code == 400 and "line" in response.json()


def test_team_endpoint_history(world, api_as):
    client = api_as(world.branch_manager)
    url = f"/api/v1/grids/{world.grid_a.pk}/team/"
    team = client.get(url).json()
    assert team["leader"]["user"]["id"] == world.grid_leader_a.pk
    response = client.post(url, {"leader": world.am_a.pk, "account_managers": []}, format="json")
    assert response.status_code == 200, response.content
    team = response.json()
    assert team["leader"]["user"]["id"] == world.am_a.pk and team["account_managers"] == []
    assert len(team["history"]) == 4  # the ended memberships stay
    assert api_as(world.am_a).post(url, {"account_managers": []}, format="json").status_code == 404
    bulk = {"assignments": [{"grid": world.grid_b.pk, "account_managers": [world.am_a.pk]}]}
    assert client.post("/api/v1/grids/team-bulk/", bulk, format="json").status_code == 200
    bulk = {"assignments": [{"grid": world.grid_c.pk, "account_managers": [world.am_a.pk]}]}
    assert client.post("/api/v1/grids/team-bulk/", bulk, format="json").status_code == 404


def test_channel_contact_phone_masked_unless_permitted(world, api_as):
    client = api_as(world.am_a)
    response = client.post(
        "/api/v1/channel-contacts/",
        {
            "grid": world.grid_a.pk,
            "name": "王主任",
            "organisation": "四季青市场管理处",
            "role": "market_office",
            "phone": "13812345678",
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["phone"] == "138****5678"
    world.branch_manager.user_permissions.add(Permission.objects.get(codename="view_pii"))
    from grids.models import User

    manager = User.objects.get(pk=world.branch_manager.pk)
    assert api_as(manager).get(f"/api/v1/channel-contacts/{response.json()['id']}/").json()["phone"] == "13812345678"
    bad = client.post(
        "/api/v1/channel-contacts/", {"grid": world.grid_a.pk, "name": "x", "phone": "138****5678"}, format="json"
    )
    assert bad.status_code == 400 and "phone" in bad.json()


def test_gaps_endpoint(world, api_as):
    # Eight cells around a missing centre: one hole of one cell's area.
    from grids.services.territory import area_m2

    base = 600
    ring = [base + dx + 20 * dy for dy in range(3) for dx in range(3) if (dx, dy) != (1, 1)]
    for n in ring:
        GridFactory(
            sub_branch=world.sb2,
            geom=__import__("tests.factories", fromlist=["x"]).MultiPolygon(
                __import__("django.contrib.gis.geos", fromlist=["Polygon"]).Polygon.from_bbox(cell(n)), srid=4326
            ),
        )
    hole = area_m2(__import__("django.contrib.gis.geos", fromlist=["Polygon"]).Polygon.from_bbox(cell(base + 21)))
    body = api_as(world.regional_head).get(f"/api/v1/sub-branches/{world.sb2.pk}/gaps/").json()
    assert len(body["gaps"]["features"]) == 1
    assert body["gap_area_m2"] == pytest.approx(hole, rel=1e-3)
    assert body["coverage_area_m2"] > 8 * hole * 0.99
    assert api_as(world.am_a).get(f"/api/v1/sub-branches/{world.sb2.pk}/gaps/").status_code == 404


def test_coverage_numbers(world, api_as):
    a = world.grid_a
    now = timezone.now()
    m1, m2, m3 = (MerchantFactory(grid=a) for _ in range(3))
    stray = MerchantFactory(grid=a)
    Merchant.objects.filter(pk=stray.pk).update(location=world.grid_c.geom.centroid)  # filed in A, lies in C
    Activity.objects.create(kind="visit", merchant=m1, grid=a, by=world.am_a, occurred_at=now)
    Activity.objects.create(
        kind="visit", merchant=m2, grid=a, by=world.am_a, occurred_at=now.replace(year=now.year - 1)
    )
    Activity.objects.create(kind="call", merchant=m3, grid=a, by=world.am_a, occurred_at=now)
    rows = api_as(world.branch_manager).get("/api/v1/reports/coverage/", {"ordering": "-merchants"}).json()
    row = {r["id"]: r for r in rows["results"]}[a.pk]
    assert (row["merchants"], row["in_grid"], row["visited_30"], row["visited_90"], row["never_visited"]) == (
        4,
        3,
        1,
        1,
        2,
    )
    assert row["in_grid_rate"] == 0.75
    assert rows["results"][0]["id"] == a.pk
    sb = api_as(world.branch_manager).get("/api/v1/reports/coverage/", {"level": "sub_branch"}).json()["results"]
    assert [(r["id"], r["merchants"]) for r in sb] == [(world.sb1.pk, 4)]
    assert api_as(world.am_a).get("/api/v1/reports/coverage/", {"ordering": "bogus"}).status_code == 400


def test_place_counts(world, api_as):
    place = PlaceFactory(grid=world.grid_a)
    m1, m2, _m3 = (MerchantFactory(grid=world.grid_a, place=place) for _ in range(3))
    ProductHolding.objects.create(merchant=m1, product="loan")
    ProductHolding.objects.create(merchant=m2, product="deposit")
    ProductHolding.objects.create(merchant=m2, product="loan", active=False)
    rows = {r["id"]: r for r in api_as(world.am_a).get("/api/v1/places/").json()["results"]}
    assert (
        rows[place.pk]["merchants_all"],
        rows[place.pk]["merchants_banked"],
        rows[place.pk]["merchants_with_loan"],
    ) == (3, 2, 1)


def test_grid_patch_versions(world, api_as):
    client = api_as(world.branch_manager)
    response = client.patch(
        f"/api/v1/grids/{world.grid_a.pk}/", {"name": "改名", "ownership_rule": "round_robin"}, format="json"
    )
    assert response.status_code == 200 and response.json()["version"] == 2
    assert GridVersion.objects.filter(grid=world.grid_a).count() == 1  # the factory grid had no v1 row
    assert client.patch(f"/api/v1/grids/{world.grid_a.pk}/", {"kind": "nope"}, format="json").status_code == 400
    assert client.post(f"/api/v1/grids/{world.grid_a.pk}/retire/").json()["status"] == "retired"
    assert client.delete(f"/api/v1/grids/{world.grid_a.pk}/").status_code == 405


# -- structured 400s of the territory writes (grids/api/errors.py) --------------------------------

BOWTIE = {
    "type": "Polygon",
    "coordinates": [[[120.0, 30.0], [120.01, 30.01], [120.01, 30.0], [120.0, 30.01], [120.0, 30.0]]],
}
ERROR_KEYS = {"message", "code", "spot", "overlaps"}


def grid_ring(grid):
    return {"type": "Polygon", "coordinates": [[list(p) for p in grid.geom[0].exterior_ring.coords]]}


def only_error(response, field):
    assert response.status_code == 400, response.content
    errors = response.json()[field]
    assert isinstance(errors, list) and errors
    assert all(set(e) == ERROR_KEYS and isinstance(e["message"], str) for e in errors)
    return errors[0]


def assert_spot(error):
    assert error["code"] == "invalid_geometry" and error["overlaps"] is None
    assert error["spot"] == [pytest.approx(120.005), pytest.approx(30.005)]
    assert "Self-intersection" in error["message"]


def test_invalid_geometry_gives_reason_and_spot_on_every_write(world, api_as):
    client = api_as(world.branch_manager)
    base = {"sub_branch": world.sb1.pk, "name": "坏", "code": "BAD1"}
    assert_spot(only_error(client.post("/api/v1/grids/", {**base, "geom": BOWTIE}, format="json"), "geom"))
    assert_spot(only_error(client.post("/api/v1/grids/propose/", {**base, "geom": BOWTIE}, format="json"), "geom"))
    url = f"/api/v1/grids/{world.grid_a.pk}/redraw/"
    assert_spot(only_error(client.post(url, {"geom": BOWTIE}, format="json"), "geom"))
    url = f"/api/v1/grids/{world.grid_a.pk}/split/"
    body = {"polygons": [BOWTIE, grid_ring(world.grid_a)], "new_name": "A2", "new_code": "A2"}
    assert_spot(only_error(client.post(url, body, format="json"), "polygons"))
    assert not Grid.objects.filter(code__in=["BAD1", "A2"]).exists() and not RedrawProposal.objects.exists()


def test_overlaps_are_listed_with_grid_and_area(world, api_as):
    client = api_as(world.branch_manager)
    body = {"sub_branch": world.sb1.pk, "name": "叠", "code": "OV1", "geom": grid_ring(world.grid_a)}
    error = only_error(client.post("/api/v1/grids/", body, format="json"), "geom")
    assert error["code"] == "overlaps" and error["spot"] is None
    assert [(o["grid_id"], o["code"], o["name"]) for o in error["overlaps"]] == [
        (world.grid_a.pk, world.grid_a.code, world.grid_a.name)
    ]
    assert set(error["overlaps"][0]) == {"grid_id", "code", "name", "area_m2"}
    assert error["overlaps"][0]["area_m2"] > 900_000  # a 0.01° cell is about 1 km²
    # A redraw previewed over a sibling: apply refuses until the overlaps are accepted.
    p = client.post(f"/api/v1/grids/{world.grid_b.pk}/redraw/", {"geom": grid_ring(world.grid_a)}, format="json")
    assert p.status_code == 201, p.content
    error = only_error(client.post(f"/api/v1/redraw-proposals/{p.json()['id']}/apply/", {}, format="json"), "geom")
    assert error["code"] == "overlaps" and [o["grid_id"] for o in error["overlaps"]] == [world.grid_a.pk]
    assert RedrawProposal.objects.get(pk=p.json()["id"]).status == "proposed"


def test_input_and_rule_errors_have_the_same_shape(world, api_as):
    client = api_as(world.branch_manager)
    error = only_error(client.post("/api/v1/grids/", {"sub_branch": world.sb1.pk}, format="json"), "name")
    assert error["code"] == "required" and error["spot"] is None and error["overlaps"] is None
    response = client.post("/api/v1/grids/merge/", {"grid_ids": [world.grid_a.pk, world.grid_c.pk]}, format="json")
    assert only_error(response, "grid_ids")["code"] == "invalid"
    response = client.post("/api/v1/grids/merge/", {"grid_ids": ["x", world.grid_a.pk]}, format="json")
    only_error(response, "grid_ids")  # nested (per item) errors stay under the field
    body = {"sub_branch": world.sb1.pk, "name": "重", "code": world.grid_b.code, "geom": square(700)}
    assert world.grid_b.code in only_error(client.post("/api/v1/grids/", body, format="json"), "code")["message"]
    # Other endpoints keep DRF's plain strings; 403 / 404 / 409 are untouched.
    bad = api_as(world.am_a).post("/api/v1/channel-contacts/", {"grid": world.grid_a.pk}, format="json")
    assert bad.status_code == 400 and isinstance(bad.json()["name"][0], str)
    assert api_as(world.am_a).post("/api/v1/grids/", body, format="json").status_code == 403


# -- the leader of a proposed new grid -----------------------------------------------------------


def test_propose_keeps_the_leader_and_apply_appoints_them(world, api_as):
    client = api_as(world.branch_manager)
    body = {"sub_branch": world.sb1.pk, "name": "新", "code": "NL1", "geom": square(720), "leader": world.am_a.pk}
    response = client.post("/api/v1/grids/propose/", body, format="json")
    assert response.status_code == 201, response.content
    new_shape = next(f for f in response.json()["shapes"]["features"] if f["properties"]["grid_id"] is None)
    assert new_shape["properties"]["leader"] == world.am_a.pk
    response = client.post(f"/api/v1/redraw-proposals/{response.json()['id']}/apply/", {}, format="json")
    assert response.status_code == 200, response.content
    grid = Grid.objects.get(code="NL1")
    team = client.get(f"/api/v1/grids/{grid.pk}/team/").json()
    assert team["leader"]["user"]["id"] == world.am_a.pk
    assert team["leader"]["start_date"] == timezone.localdate().isoformat()


def test_propose_refuses_an_unknown_or_inactive_leader(world, api_as):
    client = api_as(world.branch_manager)
    world.nobody.is_active = False
    world.nobody.save(update_fields=["is_active"])
    for leader in (world.nobody.pk, 2**31 - 1):
        body = {"sub_branch": world.sb1.pk, "name": "新", "code": "NL2", "geom": square(721), "leader": leader}
        assert only_error(client.post("/api/v1/grids/propose/", body, format="json"), "leader")
    assert not RedrawProposal.objects.exists()


def test_apply_rolls_back_when_the_leader_left_meanwhile(world, api_as):
    client = api_as(world.branch_manager)
    body = {"sub_branch": world.sb1.pk, "name": "新", "code": "NL3", "geom": square(722), "leader": world.am_a.pk}
    proposal = client.post("/api/v1/grids/propose/", body, format="json").json()
    world.am_a.is_active = False
    world.am_a.save(update_fields=["is_active"])
    response = client.post(f"/api/v1/redraw-proposals/{proposal['id']}/apply/", {}, format="json")
    assert only_error(response, "leader")
    assert not Grid.objects.filter(code="NL3").exists()
    assert RedrawProposal.objects.get(pk=proposal["id"]).status == "proposed"


# -- apply: the answer, and the id in the URL -------------------------------------------------------


def test_apply_answers_the_proposal_as_its_serializer_does(world, api_as):
    from grids.api.serializers import RedrawProposalSerializer

    client = api_as(world.branch_manager)
    p = client.post(f"/api/v1/grids/{world.grid_a.pk}/redraw/", {"geom": square(510)}, format="json").json()
    response = client.post(f"/api/v1/redraw-proposals/{p['id']}/apply/", {"accept_overlaps": True}, format="json")
    assert response.status_code == 200, response.content
    stored = RedrawProposal.objects.select_related("sub_branch", "grid", "created_by").get(pk=p["id"])
    assert response.json() == RedrawProposalSerializer(stored).data
    assert response.json()["status"] == "applied" and response.json()["decided_at"]


def test_apply_url_ids_and_filters_as_any_detail_url(world, api_as):
    client = api_as(world.branch_manager)
    p = client.post(f"/api/v1/grids/{world.grid_a.pk}/redraw/", {"geom": square(511)}, format="json").json()
    for bad in ("abc", "0", str(2**70), "-1"):
        assert client.post(f"/api/v1/redraw-proposals/{bad}/apply/", {}, format="json").status_code == 404, bad
    # The list filters narrow a detail URL too (as get_object() does): filtered out is a 404.
    url = f"/api/v1/redraw-proposals/{p['id']}/apply/"
    assert client.post(f"{url}?status=applied", {"accept_overlaps": True}, format="json").status_code == 404
    assert client.post(f"{url}?status=proposed", {"accept_overlaps": True}, format="json").status_code == 200
    assert RedrawProposal.objects.get(pk=p["id"]).status == "applied"
