"""Compensating controls for the silenced gis.W001 (see config/settings/production.py).

Debian 12's GDAL 3.6 cannot switch off its own file and network access, so user input must never
reach GDAL. Each control listed in production.py has a test here:
  1. SRIDs are ints from settings.ALLOWED_SRIDS (core.geo.srid);
  2. parsing GeoJSON and bbox values never calls GDAL (guarded below: GDAL's entry points raise);
  3. GeoJSON with a ``crs`` member is a 400;
  4. no spatial lookup comes straight from a query string: bbox is four floats, and every filter on
     a geometry column is a BBoxFilter.
"""

import ast
import json
import pathlib

import pytest
from django.conf import settings
from django.contrib.gis import gdal
from django.contrib.gis.db.models import GeometryField
from django.contrib.gis.geos import GEOSGeometry, Point
from django.core.exceptions import ValidationError
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import translation

from core.filters import BBoxFilter
from core.geo import parse_bbox, parse_geojson_geometry, srid
from crm.models import Merchant

REPO = pathlib.Path(settings.BASE_DIR)
APP_DIRS = ("core", "crm", "grids", "campaigns", "config")


@pytest.fixture(autouse=True)
def english():
    with translation.override("en"):
        yield


# --- 1. SRIDs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [4326, 4549, 3857])
def test_srid_accepts_allow_listed_ints(value):
    assert value in settings.ALLOWED_SRIDS
    assert srid(value) == value
    assert type(srid(value)) is int


@pytest.mark.parametrize(
    "value",
    [
        "4326",
        b"4326",
        "EPSG:4326",
        "+proj=longlat +datum=WGS84",
        'GEOGCS["WGS 84"]',
        "/etc/passwd",
        "https://example.com/crs.json",
        999999,
        0,
        -1,
        4326.0,
        True,
        False,
        None,
        [4326],
        {"srid": 4326},
    ],
)
def test_srid_rejects_everything_else(value):
    with pytest.raises(ValueError, match="not allowed"):
        srid(value)


def test_srid_rejects_int_subclasses():
    class Sneaky(int):
        def __str__(self):
            return "+proj=longlat"

    with pytest.raises(ValueError):
        srid(Sneaky(4326))


def test_allowed_srids_are_plain_ints():
    assert settings.ALLOWED_SRIDS
    assert all(type(s) is int for s in settings.ALLOWED_SRIDS)
    assert settings.STORAGE_SRID in settings.ALLOWED_SRIDS
    assert settings.METRIC_SRID in settings.ALLOWED_SRIDS


# --- 2. No GDAL in the input path --------------------------------------------------------------


class GDALCalled(AssertionError):
    pass


class _ForbiddenMeta(type):
    def __getattr__(cls, name):
        raise GDALCalled(f"GDAL {cls.__name__}.{name} was used")


def _forbidden(name):
    def __init__(self, *args, **kwargs):
        raise GDALCalled(f"GDAL {name}({args!r:.80}) was called")

    return _ForbiddenMeta(name, (), {"__init__": __init__})


GDAL_ENTRY_POINTS = ("OGRGeometry", "SpatialReference", "GDALRaster", "CoordTransform", "DataSource")


@pytest.fixture
def no_gdal(monkeypatch):
    """GDAL's Python entry points raise while the test runs. A guard, not a stand-in: the parsers
    must not reach GDAL at all, and GEOS (which does the real work) is untouched."""
    for name in GDAL_ENTRY_POINTS:
        monkeypatch.setattr(gdal, name, _forbidden(name))


@pytest.fixture
def gdal_from_numbers_only(monkeypatch):
    """The documented invariant for the whole request path, enforced around the *real* GDAL:
    GDAL may see GEOS-made WKB and SRIDs from the allow-list (GEOS renders ``.geojson`` through
    OGR), but never a string, a raster or a data source. Returns the permitted calls it saw."""
    seen = []
    real_ogr, real_srs = gdal.OGRGeometry, gdal.SpatialReference

    class GuardedOGRGeometry(real_ogr):
        def __init__(self, geom_input, srs=None):
            if isinstance(geom_input, str | bytes | bytearray | memoryview):
                raise GDALCalled(f"OGRGeometry({geom_input!r:.80})")
            seen.append("OGRGeometry(ptr)")
            super().__init__(geom_input, srs)

        @classmethod
        def _from_wkb(cls, geom_input):
            if not isinstance(geom_input, memoryview):  # GEOS hands over its WKB as a memoryview
                raise GDALCalled(f"OGRGeometry._from_wkb({geom_input!r:.80})")
            seen.append("OGRGeometry._from_wkb")
            return real_ogr._from_wkb(geom_input)

        @staticmethod
        def from_json(geom_input):
            raise GDALCalled(f"OGRGeometry.from_json({geom_input!r:.80})")

        @classmethod
        def from_gml(cls, gml_string):
            raise GDALCalled(f"OGRGeometry.from_gml({gml_string!r:.80})")

    class GuardedSpatialReference(real_srs):
        def __init__(self, srs_input="", srs_type="user", axis_order=None):
            if type(srs_input) is not int or srs_input not in settings.ALLOWED_SRIDS:
                raise GDALCalled(f"SpatialReference({srs_input!r:.80})")
            seen.append(f"SpatialReference({srs_input})")
            super().__init__(srs_input, srs_type, axis_order)

    monkeypatch.setattr(gdal, "OGRGeometry", GuardedOGRGeometry)
    monkeypatch.setattr(gdal, "SpatialReference", GuardedSpatialReference)
    for name in ("GDALRaster", "DataSource"):
        monkeypatch.setattr(gdal, name, _forbidden(name))
    return seen


def test_the_strict_guard_bites(no_gdal):
    """Without this the other tests could pass with a guard that guards nothing: these GEOS calls
    go through GDAL, and must now fail."""
    with pytest.raises(GDALCalled):
        GEOSGeometry('{"type": "Point", "coordinates": [120.1, 30.2]}')  # GeoJSON strings go to OGR
    with pytest.raises(GDALCalled):
        Point(120.1, 30.2, srid=4326).transform(4549)
    with pytest.raises(GDALCalled):
        Point(120.1, 30.2, srid=4326).geojson  # noqa: B018
    with pytest.raises(GDALCalled):
        gdal.GDALRaster("/vsicurl/https://example.com/x.tif")


def test_the_invariant_guard_bites_and_lets_numbers_through(gdal_from_numbers_only):
    with pytest.raises(GDALCalled):
        GEOSGeometry('{"type": "Point", "coordinates": [120.1, 30.2]}')
    with pytest.raises(GDALCalled):
        gdal.SpatialReference("+proj=longlat +datum=WGS84")
    with pytest.raises(GDALCalled):
        gdal.SpatialReference("4326")
    with pytest.raises(GDALCalled):
        Point(120.1, 30.2, srid=999999).srs  # noqa: B018
    with pytest.raises(GDALCalled):
        gdal.OGRGeometry("POINT (120.1 30.2)")
    with pytest.raises(GDALCalled):
        gdal.OGRGeometry.from_gml("<gml:Point/>")
    with pytest.raises(GDALCalled):
        gdal.DataSource("/vsicurl/https://example.com/x.shp")
    # What GEOS does with our own numbers still works, through the real GDAL.
    assert json.loads(Point(120.1, 30.2, srid=4326).geojson) == {"type": "Point", "coordinates": [120.1, 30.2]}
    assert Point(120.1, 30.2, srid=4326).transform(4549, clone=True).x > 100000
    assert "OGRGeometry._from_wkb" in gdal_from_numbers_only


VALID_INPUTS = [
    ({"type": "Point", "coordinates": [120.1, 30.2]}, ("Point",)),
    (
        {"type": "Polygon", "coordinates": [[[120.1, 30.2], [120.2, 30.2], [120.2, 30.3], [120.1, 30.2]]]},
        ("Polygon",),
    ),
    (
        {"type": "MultiPolygon", "coordinates": [[[[120.1, 30.2], [120.2, 30.2], [120.2, 30.3], [120.1, 30.2]]]]},
        ("MultiPolygon",),
    ),
]

INVALID_INPUTS = [
    '{"type": "Point", "coordinates": [120.1, 30.2]}',  # a string GEOSGeometry would hand to OGR
    "POINT(120.1 30.2)",
    "<gml:Point><gml:coordinates>120.1,30.2</gml:coordinates></gml:Point>",
    "/vsicurl/https://example.com/evil.geojson",
    {"type": "Point", "coordinates": [120.1, 30.2], "crs": {"type": "name", "properties": {"name": "EPSG:3857"}}},
    {
        "type": "Point",
        "coordinates": [120.1, 30.2],
        "crs": {"type": "link", "properties": {"href": "http://example.com/crs", "type": "proj4"}},
    },
    {"type": "Point", "coordinates": [120.1, 30.2, 1]},
    {"type": "Point", "coordinates": ["120.1", "30.2"]},
    {"type": "Polygon", "coordinates": [[[120.1, 30.2], [120.2, 30.3], [120.2, 30.2], [120.1, 30.3], [120.1, 30.2]]]},
    {"type": "Polygon", "coordinates": [[[120.1, 30.2], [120.2, 30.2], [120.2, 30.3], [120.1, 30.3]]]},
    {"type": "GeometryCollection", "geometries": []},
]


@pytest.mark.parametrize(("data", "types"), VALID_INPUTS)
def test_valid_geojson_parses_without_gdal(no_gdal, data, types):
    geom = parse_geojson_geometry(data, types)
    assert geom.valid and geom.srid == 4326
    assert geom.geom_type == data["type"]


@pytest.mark.parametrize("data", INVALID_INPUTS)
def test_invalid_geojson_is_refused_without_gdal(no_gdal, data):
    with pytest.raises(ValidationError):
        parse_geojson_geometry(data, ("Point", "Polygon", "MultiPolygon"))


def test_bbox_parses_without_gdal(no_gdal):
    assert parse_bbox("120.1,30.2,120.3,30.4") == (120.1, 30.2, 120.3, 30.4)
    for bad in ("a,b", "POLYGON((1 2,3 4,5 6,1 2))", "SRID=4326;POINT(1 2),1,2,3"):
        with pytest.raises(ValidationError):
            parse_bbox(bad)


@pytest.mark.django_db
def test_the_merchant_api_gives_gdal_no_strings(gdal_from_numbers_only, world, api_as):
    """Create, read, list, filter and reject through the API with GDAL guarded: input never reaches
    it as text (responses render geometry through OGR from GEOS's WKB, which is allowed)."""
    client = api_as(world.am_a)
    point = list(world.grid_a.geom.point_on_surface.coords)
    created = client.post("/api/v1/merchants/", {"name": "安全", "location": {"type": "Point", "coordinates": point}})
    assert created.status_code == 201, created.content
    assert Merchant.objects.get(pk=created.json()["id"]).grid_id == world.grid_a.pk
    assert client.get(f"/api/v1/merchants/{created.json()['id']}/").status_code == 200
    assert client.get("/api/v1/merchants/", {"bbox": "73,3,136,54"}).json()["count"] == 1
    assert client.get("/api/v1/layers/merchants/", {"bbox": "73,3,136,54"}).status_code == 200
    for bad in INVALID_INPUTS:
        response = client.post("/api/v1/merchants/", {"name": "x", "location": bad})
        assert response.status_code == 400, (bad, response.content)
        assert "location" in response.json()
    # The guard sat on the path the API really uses (responses render through it).
    assert "OGRGeometry._from_wkb" in gdal_from_numbers_only


# --- 3. crs ------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "crs",
    [
        {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}},
        {"type": "name", "properties": {"name": "EPSG:4326"}},  # even the storage CRS
        {"type": "link", "properties": {"href": "file:///etc/passwd", "type": "proj4"}},
        None,
    ],
)
def test_crs_member_is_a_400(world, api_as, crs):
    point = list(world.grid_a.geom.point_on_surface.coords)
    client = api_as(world.am_a)
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    response = client.post(
        "/api/v1/merchants/", {"name": "带CRS", "location": {"type": "Point", "coordinates": point, "crs": crs}}
    )
    assert response.status_code == 400
    assert '"crs"' in " ".join(response.json()["location"])
    assert not Merchant.objects.filter(name="带CRS").exists()


# --- 4. bbox and spatial lookups from query strings ---------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "1);DROP TABLE crm_merchant;--,2,3,4",
        "120,30,121,31 OR 1=1",
        "120,30,121,ST_Buffer(location;1000)",
        "POLYGON((120 30,121 30,121 31,120 30))",
        "SRID=3857;POINT(120 30),1,2,3",
        "0x78,30,121,31",
        "120,30,121,31,4326",
    ],
)
def test_bbox_with_sql_or_wkt_is_refused(value):
    with pytest.raises(ValidationError):
        parse_bbox(value)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "value",
    [
        "1);DROP TABLE crm_merchant;--,2,3,4",
        "POLYGON((120 30,121 30,121 31,120 30))",
        "SRID=4326;POINT(120 30)",
    ],
)
def test_bbox_with_sql_or_wkt_is_a_400(world, api_as, value):
    for url in ("/api/v1/merchants/", "/api/v1/layers/grids/"):
        response = api_as(world.am_a).get(url, {"bbox": value})
        assert response.status_code == 400, response.content
        assert "bbox" in response.json()


def _api_viewsets():
    """Every viewset class reachable under /api/."""

    def walk(patterns, prefix=""):
        for p in patterns:
            if isinstance(p, URLResolver):
                yield from walk(p.url_patterns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern) and (prefix + str(p.pattern)).startswith("api/"):
                cls = getattr(p.callback, "cls", None)
                if cls is not None:
                    yield cls

    return set(walk(get_resolver().url_patterns))


def test_every_filter_on_a_geometry_column_is_a_bbox_filter():
    viewsets = _api_viewsets()
    assert len(viewsets) >= 10  # the walk found the router
    geometry_filters = 0
    for cls in viewsets:
        filterset_class = getattr(cls, "filterset_class", None)
        if filterset_class is None:
            continue
        model = filterset_class._meta.model
        for name, flt in filterset_class.base_filters.items():
            field_name = flt.field_name.split("__")[0]
            try:
                field = model._meta.get_field(field_name)
            except Exception:  # noqa: BLE001 - a declared filter on a non-field (e.g. a method)
                continue
            if isinstance(field, GeometryField):
                geometry_filters += 1
                assert isinstance(flt, BBoxFilter), f"{filterset_class.__name__}.{name} filters a geometry column"
                assert flt.lookup_expr == "exact"  # BBoxFilter builds its own && lookup from floats
    assert geometry_filters >= 3  # merchants, grids, places


GDAL_NAMES = {"OGRGeometry", "SpatialReference", "GDALRaster", "CoordTransform", "DataSource", "OGRGeomType"}
# The one module allowed to open files with GDAL: grid/place import (issue 3). Its own controls
# (our temp path only, one driver per format, content screened first, zip guards) are tested in
# tests/grids/test_io_readers.py; see control 6 in config/settings/production.py.
GDAL_FILE_READERS = {"grids/io/readers.py"}


def test_app_code_never_uses_gdal():
    """A source guard: app code neither imports django.contrib.gis.gdal nor names its classes, so no
    value (user-supplied or not) is handed to GDAL. Integer SRIDs via core.geo.srid and GEOS are
    the way in. Comments and docstrings may talk about GDAL; code may not use it. The file importer
    (GDAL_FILE_READERS) is the single, separately tested exception."""
    offenders = []
    for top in APP_DIRS:
        for path in sorted((REPO / top).rglob("*.py")):
            if "migrations" in path.parts or path.relative_to(REPO).as_posix() in GDAL_FILE_READERS:
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                hit = None
                if isinstance(node, ast.ImportFrom) and node.module and "gis.gdal" in node.module:
                    hit = f"from {node.module} import ..."
                elif isinstance(node, ast.ImportFrom) and node.module == "django.contrib.gis":
                    if any(a.name == "gdal" for a in node.names):
                        hit = "from django.contrib.gis import gdal"
                elif isinstance(node, ast.Import) and any("gis.gdal" in a.name for a in node.names):
                    hit = "import ...gdal"
                elif isinstance(node, ast.Name) and node.id in GDAL_NAMES:
                    hit = node.id
                elif isinstance(node, ast.Attribute) and node.attr in GDAL_NAMES | {"from_gml", "ogr", "srs"}:
                    hit = node.attr
                if hit:
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno}: {hit}")
    assert not offenders, "\n".join(offenders)
