"""Strict GeoJSON input (core.geo) and what the API answers to bad geometry and bad bbox values.

Every bad input is a 400 that names the field at fault; never a 500. The unit tests pin the
parser's messages; the API tests go through POST /api/v1/merchants/ as account manager A with an
otherwise valid payload, so only the geometry is wrong."""

import json

import pytest
from django.conf import settings as dj_settings
from django.core.exceptions import ValidationError
from django.utils import translation

from core.geo import parse_bbox, parse_geojson_geometry
from crm.models import Merchant

MERCHANTS_URL = "/api/v1/merchants/"
POINT = ("Point",)
AREAS = ("Point", "Polygon", "MultiPolygon")


@pytest.fixture(autouse=True)
def english():
    """Messages are asserted in English; the site default is zh-hans."""
    with translation.override("en"):
        yield


@pytest.fixture
def en_client(api_as):
    def make(user):
        client = api_as(user)
        # The site ignores Accept-Language (Chinese first); the language cookie picks English.
        client.cookies[dj_settings.LANGUAGE_COOKIE_NAME] = "en"
        return client

    return make


def square(x0=120.10, y0=30.20, size=0.01):
    return [[x0, y0], [x0 + size, y0], [x0 + size, y0 + size], [x0, y0 + size], [x0, y0]]


def reason(data, allowed=AREAS) -> str:
    """The parser's message for ``data`` (fails the test if it is accepted)."""
    with pytest.raises(ValidationError) as info:
        parse_geojson_geometry(data, allowed)
    return " ".join(info.value.messages)


# --- core.geo.parse_geojson_geometry -----------------------------------------------------------


class TestParseGeometry:
    def test_valid_point(self):
        geom = parse_geojson_geometry({"type": "Point", "coordinates": [120.15, 30.25]}, POINT)
        assert geom.geom_type == "Point"
        assert geom.srid == 4326
        assert geom.coords == (120.15, 30.25)

    def test_integers_are_accepted_as_floats(self):
        geom = parse_geojson_geometry({"type": "Point", "coordinates": [120, 30]}, POINT)
        assert geom.coords == (120.0, 30.0)

    def test_valid_polygon_and_multipolygon(self):
        poly = parse_geojson_geometry({"type": "Polygon", "coordinates": [square()]}, AREAS)
        assert poly.geom_type == "Polygon" and poly.valid
        multi = parse_geojson_geometry({"type": "MultiPolygon", "coordinates": [[square()], [square(x0=120.2)]]}, AREAS)
        assert multi.geom_type == "MultiPolygon" and len(multi) == 2

    def test_polygon_with_a_hole(self):
        outer = square(size=0.1)
        hole = [[120.12, 30.22], [120.13, 30.22], [120.13, 30.23], [120.12, 30.23], [120.12, 30.22]]
        poly = parse_geojson_geometry({"type": "Polygon", "coordinates": [outer, hole]}, AREAS)
        assert len(poly) == 2

    def test_bbox_member_is_allowed(self):
        geom = parse_geojson_geometry(
            {"type": "Point", "coordinates": [120.1, 30.2], "bbox": [120.1, 30.2, 120.1, 30.2]}, POINT
        )
        assert geom.coords == (120.1, 30.2)

    @pytest.mark.parametrize("coords", [[120.1, 30.2, 5.0], [120.1, 30.2, 0, 0], [120.1]])
    def test_positions_must_be_2d(self, coords):
        assert "exactly 2 numbers" in reason({"type": "Point", "coordinates": coords})

    def test_3d_inside_a_polygon_ring_names_the_position(self):
        ring = [[*p, 10.0] for p in square()]
        assert "coordinates[0][0]" in reason({"type": "Polygon", "coordinates": [ring]})

    @pytest.mark.parametrize(
        "coords",
        [
            [2.35, 48.85],  # Paris
            [-74.0, 40.7],  # New York
            [72.99, 30.0],  # just west of the extent
            [136.01, 30.0],  # just east
            [120.0, 2.99],  # just south
            [120.0, 54.01],  # just north
            [30.2, 120.1],  # latitude and longitude swapped
            [-120.1, -30.2],
        ],
    )
    def test_outside_china(self, coords):
        assert "outside China" in reason({"type": "Point", "coordinates": coords})

    @pytest.mark.parametrize("coords", [[73.0, 3.0], [136.0, 54.0], [73, 54], [136, 3]])
    def test_the_extent_is_inclusive(self, coords):
        assert parse_geojson_geometry({"type": "Point", "coordinates": coords}, POINT).coords == tuple(
            map(float, coords)
        )

    @pytest.mark.parametrize(
        "value",
        [
            float("nan"),
            float("inf"),
            float("-inf"),
            True,
            False,
            "120.1",
            "NaN",
            None,
            [120.1],
            {"lon": 120.1},
            pytest.param(10**400, id="int-too-big-for-a-float"),
        ],
    )
    def test_coordinates_must_be_finite_numbers(self, value):
        assert "finite numbers" in reason({"type": "Point", "coordinates": [value, 30.2]})
        assert "finite numbers" in reason({"type": "Point", "coordinates": [120.1, value]})

    @pytest.mark.parametrize("coords", [None, "120.1,30.2", 120.1, {"x": 1}])
    def test_a_position_must_be_an_array(self, coords):
        assert "must be an array" in reason({"type": "Point", "coordinates": coords})

    def test_unclosed_ring(self):
        ring = square()[:-1] + [[120.10, 30.205]]
        assert "must end where it starts" in reason({"type": "Polygon", "coordinates": [ring]})

    @pytest.mark.parametrize("ring", [[], [[120.1, 30.2]] * 3, "ring", None])
    def test_ring_too_short(self, ring):
        assert "at least 4 positions" in reason({"type": "Polygon", "coordinates": [ring]})

    @pytest.mark.parametrize("coords", [[], None, "x"])
    def test_polygon_without_rings(self, coords):
        assert "at least one ring" in reason({"type": "Polygon", "coordinates": coords})

    @pytest.mark.parametrize("coords", [[], None])
    def test_multipolygon_without_polygons(self, coords):
        assert "at least one polygon" in reason({"type": "MultiPolygon", "coordinates": coords})

    def test_self_intersecting_bow_tie_gives_the_reason(self):
        bow_tie = [[120.10, 30.20], [120.11, 30.21], [120.11, 30.20], [120.10, 30.21], [120.10, 30.20]]
        message = reason({"type": "Polygon", "coordinates": [bow_tie]})
        assert message.startswith("Invalid geometry:")
        assert "Self-intersection" in message
        # GEOS reports where: the crossing point of the bow tie.
        assert "120.105" in message

    def test_overlapping_multipolygon_parts_are_invalid(self):
        message = reason({"type": "MultiPolygon", "coordinates": [[square()], [square(x0=120.105)]]})
        assert message.startswith("Invalid geometry:")

    def test_hole_outside_its_shell_is_invalid(self):
        hole = square(x0=121.0)
        assert reason({"type": "Polygon", "coordinates": [square(), hole]}).startswith("Invalid geometry:")

    def test_vertex_cap(self, settings):
        settings.GEO_MAX_VERTICES = 20
        n = 21
        ring = [[120.1 + 0.001 * i, 30.2 + 0.0001 * i * i] for i in range(n - 1)] + [[120.1, 30.2]]
        assert "more than 20 vertices" in reason({"type": "Polygon", "coordinates": [ring]})
        # The cap counts every ring of every part, not one ring at a time.
        parts = [[square(x0=120.1 + 0.02 * i)] for i in range(5)]  # 5 x 5 = 25 vertices
        assert "more than 20 vertices" in reason({"type": "MultiPolygon", "coordinates": parts})
        # At the cap it is fine.
        assert parse_geojson_geometry({"type": "MultiPolygon", "coordinates": parts[:4]}, AREAS).num_coords == 20

    def test_default_vertex_cap_is_enforced_before_positions_are_parsed(self, settings):
        cap = settings.GEO_MAX_VERTICES
        # Garbage positions: if the cap were checked after parsing, the message would be about them.
        ring = [["x", "y"]] * (cap + 1)
        assert f"more than {cap} vertices" in reason({"type": "Polygon", "coordinates": [ring]})

    def test_crs_member_is_rejected(self):
        crs = {"type": "name", "properties": {"name": "EPSG:4326"}}
        assert '"crs"' in reason({"type": "Point", "coordinates": [120.1, 30.2], "crs": crs})

    @pytest.mark.parametrize(
        ("extra", "named"),
        [
            ({"properties": {}}, "properties"),
            ({"properties": "not an object"}, "properties"),
            ({"id": 1}, "id"),
            ({"geometries": []}, "geometries"),
            ({"Coordinates": [1, 2]}, "Coordinates"),
        ],
    )
    def test_unknown_members_are_named(self, extra, named):
        message = reason({"type": "Point", "coordinates": [120.1, 30.2], **extra})
        assert "Unexpected members" in message and named in message

    def test_a_feature_is_not_a_geometry(self):
        feature = {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [120.1, 30.2]},
            "properties": "x",
        }
        message = reason(feature, POINT)
        assert "Unexpected members" in message and "geometry" in message

    @pytest.mark.parametrize(
        "gtype", ["LineString", "GeometryCollection", "point", "POINT", "", None, 5, ["Point"], {"a": 1}]
    )
    def test_wrong_type(self, gtype):
        assert "Geometry type must be one of: Point" in reason({"type": gtype, "coordinates": [120.1, 30.2]}, POINT)

    def test_type_must_be_allowed_for_the_field(self):
        assert "must be one of: Point" in reason({"type": "Polygon", "coordinates": [square()]}, POINT)

    @pytest.mark.parametrize(
        "data", [None, "POINT(120.1 30.2)", '{"type": "Point", "coordinates": [120.1, 30.2]}', [120.1, 30.2], 5]
    )
    def test_not_an_object(self, data):
        assert "Expected a GeoJSON geometry object" in reason(data, POINT)


# --- core.geo.parse_bbox -----------------------------------------------------------------------


class TestParseBBox:
    def test_valid(self):
        assert parse_bbox("120.1,30.2,120.3,30.4") == (120.1, 30.2, 120.3, 30.4)

    def test_floats_and_clamped_to_china(self):
        box = parse_bbox("60,-10,170,80")
        assert box == (73.0, 3.0, 136.0, 54.0)
        assert all(type(n) is float for n in box)

    @pytest.mark.parametrize(
        ("value", "message"),
        [
            ("a,b", "four numbers"),
            ("1,2,3", "four numbers"),
            ("1,2,3,4,5", "four numbers"),
            ("", "four numbers"),
            ("120.1;30.2;120.3;30.4", "four numbers"),
            ("a,b,c,d", "numbers only"),
            ("120.1,30.2,120.3,", "numbers only"),
            ("0x10,1,2,3", "numbers only"),
            ("inf,30.2,120.3,30.4", "finite"),
            ("120.1,-Infinity,120.3,30.4", "finite"),
            ("nan,30.2,120.3,30.4", "finite"),
            ("120.1,30.2,1e400,30.4", "finite"),
            ("120.3,30.2,120.1,30.4", "minimum must be below"),
            ("120.1,30.4,120.3,30.2", "minimum must be below"),
            ("120.1,30.2,120.1,30.4", "minimum must be below"),
        ],
    )
    def test_garbage(self, value, message):
        with pytest.raises(ValidationError) as info:
            parse_bbox(value)
        assert message in " ".join(info.value.messages)


# --- Through the API ---------------------------------------------------------------------------


@pytest.fixture
def client_a(world, en_client):
    return en_client(world.am_a)


@pytest.fixture
def inside_a(world):
    return list(world.grid_a.geom.point_on_surface.coords)


def post(client, payload):
    return client.post(MERCHANTS_URL, payload, format="json")


def assert_field_error(response, field):
    assert response.status_code == 400, (response.status_code, response.content[:500])
    body = response.json()
    assert field in body, body
    assert body[field], body
    return " ".join(map(str, body[field]))


@pytest.mark.django_db
class TestMerchantGeometryThroughTheAPI:
    def test_valid_point_in_grid_a_is_created_in_grid_a(self, client_a, world, inside_a):
        # A client-supplied grid is ignored: the database decides from the location.
        response = post(
            client_a,
            {"name": "西湖茶庄", "location": {"type": "Point", "coordinates": inside_a}, "grid": world.grid_b.pk},
        )
        assert response.status_code == 201, response.json()
        merchant = Merchant.objects.get(pk=response.json()["id"])
        assert merchant.grid_id == world.grid_a.pk
        assert merchant.location.coords == pytest.approx(tuple(inside_a))
        assert response.json()["grid"]["id"] == world.grid_a.pk
        assert response.json()["location"]["type"] == "Point"

    def test_point_in_another_scope_is_refused_and_writes_nothing(self, client_a, world):
        inside_c = list(world.grid_c.geom.point_on_surface.coords)
        response = post(client_a, {"name": "滨江商户", "location": {"type": "Point", "coordinates": inside_c}})
        assert_field_error(response, "location")
        assert not Merchant.objects.filter(name="滨江商户").exists()

    @pytest.mark.parametrize(
        ("location", "message"),
        [
            ({"type": "Point", "coordinates": [120.15, 30.25, 12.0]}, "3-D"),
            ({"type": "Point", "coordinates": [2.35, 48.85]}, "outside China"),
            ({"type": "Point", "coordinates": [30.25, 120.15]}, "outside China"),
            ({"type": "Point", "coordinates": [True, 30.25]}, "finite"),
            ({"type": "Point", "coordinates": ["120.15", "30.25"]}, "finite"),
            ({"type": "Point", "coordinates": [None, None]}, "finite"),
            ({"type": "Point", "coordinates": None}, "array"),
            ({"type": "Point"}, "array"),
            (
                {"type": "Point", "coordinates": [120.15, 30.25], "crs": {"type": "name", "properties": {}}},
                "crs",
            ),
            ({"type": "Point", "coordinates": [120.15, 30.25], "srid": 3857}, "Unexpected members: srid"),
            ({"type": "Point", "coordinates": [120.15, 30.25], "properties": "x"}, "Unexpected members"),
            (
                {"type": "Feature", "geometry": {"type": "Point", "coordinates": [120.15, 30.25]}, "properties": []},
                "Unexpected members",
            ),
            ({"type": "LineString", "coordinates": [[120.1, 30.2], [120.2, 30.3]]}, "must be one of: Point"),
            ({"type": "Polygon", "coordinates": [square()]}, "must be one of: Point"),
            ({"coordinates": [120.15, 30.25]}, "must be one of: Point"),
            ("POINT(120.15 30.25)", "GeoJSON geometry object"),
            ('{"type": "Point", "coordinates": [120.15, 30.25]}', "GeoJSON geometry object"),
            ([120.15, 30.25], "GeoJSON geometry object"),
            (12, "GeoJSON geometry object"),
            (None, "null"),
        ],
    )
    def test_bad_location_is_a_400_naming_location(self, client_a, location, message):
        before = Merchant.objects.count()
        response = post(client_a, {"name": "坏坐标", "location": location})
        assert message in assert_field_error(response, "location")
        assert Merchant.objects.count() == before

    def test_a_huge_polygon_as_location_is_a_400(self, client_a, settings):
        # Merchants take points only, so the vertex cap shows as a type error here; the cap itself
        # is covered above. A huge coordinate list must still be a clean 400.
        ring = square() * (settings.GEO_MAX_VERTICES // 5 + 1)
        response = post(client_a, {"name": "巨大", "location": {"type": "Polygon", "coordinates": [ring]}})
        assert_field_error(response, "location")

    def test_missing_location(self, client_a):
        assert "required" in assert_field_error(post(client_a, {"name": "无坐标"}), "location")

    def _raw(self, client, body: bytes, content_type="application/json"):
        return client.generic("POST", MERCHANTS_URL, body, content_type=content_type)

    @pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
    def test_nan_and_infinity_literals_are_refused(self, client_a, literal):
        body = '{"name": "x", "location": {"type": "Point", "coordinates": [%s, 30.25]}}' % literal  # noqa: UP031
        response = self._raw(client_a, body.encode())
        assert response.status_code == 400, response.content
        assert "JSON parse error" in response.json()["detail"]

    def test_integer_too_big_for_a_float(self, client_a):
        body = '{"name": "x", "location": {"type": "Point", "coordinates": [1%s, 30.25]}}' % ("0" * 400)  # noqa: UP031
        response = self._raw(client_a, body.encode())
        assert "finite" in assert_field_error(response, "location")

    def test_integer_with_too_many_digits(self, client_a):
        body = '{"name": "x", "location": {"type": "Point", "coordinates": [1%s, 30.25]}}' % ("0" * 5000)  # noqa: UP031
        response = self._raw(client_a, body.encode())
        assert response.status_code == 400, response.content
        assert "JSON parse error" in response.json()["detail"]

    @pytest.mark.parametrize(
        "body",
        [
            b"not json",
            b'{"name": "x", "location": ',
            b"\xff\xfe\x00garbage",
            b"[" * 100_000 + b"]" * 100_000,  # nesting deeper than Python's recursion limit
            b'{"location": ' * 5000 + b"1" + b"}" * 5000,
        ],
        ids=["text", "truncated", "not-utf8", "deep-array", "deep-object"],
    )
    def test_non_json_body_is_a_400(self, client_a, body):
        response = self._raw(client_a, body)
        assert response.status_code == 400, response.content[:300]
        assert "JSON parse error" in response.json()["detail"]

    @pytest.mark.parametrize("body", [b"[]", b'"x"', b"12", b"null"])
    def test_json_that_is_not_an_object(self, client_a, body):
        response = self._raw(client_a, body)
        assert response.status_code == 400, response.content
        assert "non_field_errors" in response.json()

    def test_multipart_body_is_refused(self, client_a, inside_a):
        payload = {"name": "表单商户", "location": json.dumps({"type": "Point", "coordinates": inside_a})}
        response = client_a.post(MERCHANTS_URL, payload, format="multipart")
        assert response.status_code in (400, 415), response.content
        assert not Merchant.objects.filter(name="表单商户").exists()

    def test_form_body_is_refused(self, client_a, inside_a):
        body = "name=x&location=%7B%22type%22%3A%22Point%22%7D"
        response = self._raw(client_a, body.encode(), "application/x-www-form-urlencoded")
        assert response.status_code in (400, 415), response.content

    def test_geojson_media_type_is_refused_cleanly(self, client_a, inside_a):
        body = json.dumps({"name": "x", "location": {"type": "Point", "coordinates": inside_a}}).encode()
        response = self._raw(client_a, body, "application/geo+json")
        assert response.status_code in (400, 415), response.content

    def test_patch_with_bad_location_leaves_the_row_alone(self, client_a, merchants):
        merchant = merchants["grid_a"]
        response = client_a.patch(
            f"{MERCHANTS_URL}{merchant.pk}/", {"location": {"type": "Point", "coordinates": [0, 0]}}, format="json"
        )
        assert "outside China" in assert_field_error(response, "location")
        merchant.refresh_from_db()
        assert merchant.location.coords == merchants["grid_a"].location.coords


BBOX_URLS = [
    "/api/v1/merchants/",
    "/api/v1/grids/",
    "/api/v1/places/",
    "/api/v1/layers/merchants/",
    "/api/v1/layers/grids/",
    "/api/v1/layers/places/",
]


@pytest.mark.django_db
class TestBBoxFilter:
    @pytest.mark.parametrize("url", BBOX_URLS)
    @pytest.mark.parametrize(
        "bbox",
        [
            "a,b",
            "1,2,3",
            "1,2,3,4,5",
            "inf,30,121,31",
            "120,30,Infinity,31",
            "nan,30,121,31",
            "121,30,120,31",
            "120,31,121,30",
            "120,30,120,31",
            "120 30 121 31",
            "POLYGON((120 30,121 30,121 31,120 30))",
            "120,30,121,31);DROP TABLE crm_merchant;--",
        ],
    )
    def test_garbage_bbox_is_a_400_naming_bbox(self, client_a, url, bbox):
        response = client_a.get(url, {"bbox": bbox})
        assert_field_error(response, "bbox")

    def test_bbox_selects_by_location(self, en_client, world, merchants):
        x0, y0, x1, y1 = world.grid_a.geom.extent
        admin = en_client(world.admin)
        inner = f"{x0 + 0.001},{y0 + 0.001},{x1 - 0.001},{y1 - 0.001}"
        response = admin.get(MERCHANTS_URL, {"bbox": inner})
        assert response.status_code == 200
        assert [m["id"] for m in response.json()["results"]] == [merchants["grid_a"].pk]
        layer = admin.get("/api/v1/layers/merchants/", {"bbox": inner})
        assert layer.status_code == 200
        assert [f["properties"]["id"] for f in json.loads(layer.content)["features"]] == [merchants["grid_a"].pk]
        # Everywhere in China: all four merchants.
        response = admin.get(MERCHANTS_URL, {"bbox": "73,3,136,54"})
        assert response.json()["count"] == 4

    def test_empty_bbox_means_no_filter(self, en_client, world, merchants):
        response = en_client(world.admin).get(MERCHANTS_URL, {"bbox": ""})
        assert response.status_code == 200
        assert response.json()["count"] == 4
