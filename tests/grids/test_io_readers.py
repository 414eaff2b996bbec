"""Reading uploaded GeoJSON, KML and zipped shapefiles (grids/io/readers.py), with real GDAL.

The files are made here: GeoJSON and KML as text; shapefiles written by GDAL itself (the ESRI
Shapefile driver, through the same library the app reads with), zipped with ``zipfile``. The
helpers are imported by the other test_io_* modules."""

import io
import json
import tempfile
import zipfile
from ctypes import c_char_p, c_void_p
from pathlib import Path

import pytest
from django.contrib.gis.gdal import DataSource, Driver
from django.contrib.gis.gdal.libgdal import lgdal
from django.contrib.gis.geos import MultiPolygon, Polygon
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from django.utils import translation

from grids.io.readers import PLACES, POLYGONS, read_upload
from grids.services.territory import validate_boundary

# Far from the factories' grids (120.10-120.30 E), so imported rows never touch them.
X0, Y0 = 121.50, 31.20


def square(x, y, size=0.01):
    return [[[x, y], [x + size, y], [x + size, y + size], [x, y + size], [x, y]]]


BOWTIE = [[[X0, Y0], [X0 + 0.01, Y0 + 0.01], [X0 + 0.01, Y0], [X0, Y0 + 0.01], [X0, Y0]]]


def feature(geometry, **props):
    return {"type": "Feature", "properties": props, "geometry": geometry}


def polygon(coords):
    return {"type": "Polygon", "coordinates": coords}


def collection(*features, **extra):
    return {"type": "FeatureCollection", **extra, "features": list(features)}


def three_grids(invalid_row=2):
    """Three grids side by side; row ``invalid_row`` (1-based) is a self-intersecting bow tie."""
    rows = []
    for i in range(3):
        coords = BOWTIE if i + 1 == invalid_row else square(X0 + 0.02 * i, Y0)
        rows.append(feature(polygon(coords), 名称=f"导入网格{i + 1}", 编码=f"IMP{i + 1}", 类型="园区"))
    return collection(*rows)


def geojson_file(data, name="grids.geojson"):
    body = data if isinstance(data, bytes) else json.dumps(data, ensure_ascii=False).encode()
    return SimpleUploadedFile(name, body, content_type="application/geo+json")


KML_TEMPLATE = """<?xml version="1.0" encoding="UTF-8"?>
<kml xmlns="http://www.opengis.net/kml/2.2"><Document>{placemarks}</Document></kml>"""


def kml_placemark(name, description, coords):
    ring = " ".join(f"{x},{y},0" for x, y in coords[0])
    return (
        f"<Placemark><name>{name}</name><description>{description}</description><Polygon><outerBoundaryIs>"
        f"<LinearRing><coordinates>{ring}</coordinates></LinearRing></outerBoundaryIs></Polygon></Placemark>"
    )


def kml_file(*placemarks, name="grids.kml"):
    return SimpleUploadedFile(name, KML_TEMPLATE.format(placemarks="".join(placemarks)).encode())


def shapefile_members(data: dict, *, layer="grids") -> dict[str, bytes]:
    """Write ``data`` (GeoJSON; a ``crs`` member gives its CRS) as a shapefile with GDAL's own
    ESRI Shapefile driver, UTF-8 attributes; return {file name: bytes}."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        src_path = Path(tmp) / "src.geojson"
        src_path.write_text(json.dumps(data, ensure_ascii=False))
        source = DataSource(str(src_path))
        create = lgdal.OGR_Dr_CreateDataSource
        create.argtypes, create.restype = [c_void_p, c_char_p, c_void_p], c_void_p
        copy = lgdal.OGR_DS_CopyLayer
        copy.argtypes, copy.restype = [c_void_p, c_void_p, c_char_p, c_void_p], c_void_p
        destroy = lgdal.OGR_DS_Destroy
        destroy.argtypes = [c_void_p]
        target = create(Driver("ESRI Shapefile").ptr, str(Path(tmp) / "out").encode(), None)
        options = (c_char_p * 2)(b"ENCODING=UTF-8", None)
        assert copy(target, source[0].ptr, layer.encode(), options)
        destroy(target)  # flushes the files
        for path in sorted((Path(tmp) / "out").iterdir()):
            out[path.name] = path.read_bytes()
    return out


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, body in members.items():
            archive.writestr(name, body)
    return buf.getvalue()


def shapefile_zip(data: dict, *, drop=(), name="grids.zip") -> SimpleUploadedFile:
    members = {k: v for k, v in shapefile_members(data).items() if Path(k).suffix not in drop}
    return SimpleUploadedFile(name, zip_bytes(members), content_type="application/zip")


def projected(coords_4326, srid):
    poly = Polygon(*coords_4326, srid=4326)
    poly.transform(srid)
    return [list(map(list, ring)) for ring in poly.coords]


def messages(rows):
    return [e["message"] for row in rows for e in row.errors]


@pytest.fixture(autouse=True)
def english():
    with translation.override("en"):
        yield


def read(upload, kind=POLYGONS):
    return read_upload(upload, kind=kind, validate_boundary=validate_boundary)


def refused(upload, kind=POLYGONS) -> str:
    with pytest.raises(ValidationError) as exc:
        read(upload, kind)
    assert list(exc.value.message_dict) == ["file"]
    return " ".join(exc.value.message_dict["file"])


# -- GeoJSON ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_geojson_rows_fields_and_the_invalid_row_with_reason_and_spot():
    parsed = read(geojson_file(three_grids(invalid_row=2)))
    assert parsed.format == "geojson"
    assert parsed.fields == ["名称", "编码", "类型"]
    assert [r.number for r in parsed.rows] == [1, 2, 3]
    assert parsed.rows[0].attributes == {"名称": "导入网格1", "编码": "IMP1", "类型": "园区"}
    ok = parsed.rows[0].geom
    assert isinstance(ok, MultiPolygon) and ok.srid == 4326 and not ok.hasz  # Polygon -> MultiPolygon
    bad = parsed.rows[1]
    assert bad.geom is None
    [error] = bad.errors
    assert error["field"] == "geom"
    assert error["message"].startswith("row 2: ")
    assert "Self-intersection" in error["message"]
    lon, lat = error["spot"]  # where the bow tie crosses itself
    assert lon == pytest.approx(X0 + 0.005) and lat == pytest.approx(Y0 + 0.005)
    assert not parsed.rows[2].errors


@pytest.mark.django_db
def test_geojson_not_a_polygon_and_outside_china_and_3d():
    data = collection(
        feature({"type": "LineString", "coordinates": [[X0, Y0], [X0 + 0.01, Y0]]}, name="线"),
        feature(polygon(square(2.35, 48.85)), name="巴黎"),
        feature({"type": "Polygon", "coordinates": [[[*p, 12.5] for p in square(X0, Y0)[0]]]}, name="3D"),
        feature(None, name="空"),
    )
    rows = read(geojson_file(data)).rows
    assert "row 1: not a polygon (found LineString)" in messages(rows)
    [outside] = rows[1].errors
    assert outside["message"].startswith("row 2: outside China at 2.35,48.85")
    assert outside["spot"] == [2.35, 48.85]
    assert not rows[2].errors and not rows[2].geom.hasz  # forced to 2-D
    assert rows[3].errors[0]["message"] == "row 4: no geometry"


@pytest.mark.django_db
def test_places_take_points_and_polygons():
    data = collection(
        feature({"type": "Point", "coordinates": [X0, Y0]}, name="市场"),
        feature(polygon(square(X0, Y0)), name="园区"),
        feature({"type": "LineString", "coordinates": [[X0, Y0], [X0 + 0.01, Y0]]}, name="路"),
    )
    rows = read(geojson_file(data), kind=PLACES).rows
    assert rows[0].geom.geom_type == "Point"
    assert rows[1].geom.geom_type == "MultiPolygon"
    assert "not a point or polygon" in rows[2].errors[0]["message"]


@pytest.mark.parametrize(
    "crs",
    [
        {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::3857"}},
        {"type": "link", "properties": {"href": "http://example.com/crs", "type": "proj4"}},
    ],
)
def test_geojson_crs_member_is_refused_before_gdal(crs):
    assert '"crs"' in refused(geojson_file(collection(feature(polygon(square(X0, Y0))), crs=crs)))


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1, 2]", b'{"type": "Polygon", "coordinates": []}', b"[" * 100000, b"\x89PNG\r\n\x1a\n"],
)
def test_not_geojson_is_refused(body):
    assert refused(geojson_file(body))


# -- KML ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_kml_reads_name_and_description_as_fields_in_2d():
    parsed = read(kml_file(kml_placemark("网格K", "K-001", square(X0, Y0))))
    assert parsed.format == "kml"
    assert parsed.fields == ["Name", "Description"]
    [row] = parsed.rows
    assert row.attributes == {"Name": "网格K", "Description": "K-001"}
    assert row.geom.geom_type == "MultiPolygon" and not row.geom.hasz


@pytest.mark.parametrize(
    "body",
    [
        b'<?xml version="1.0"?><!DOCTYPE kml [<!ENTITY x SYSTEM "file:///etc/passwd">]><kml><Document/></kml>',
        b"<kml><Document><NetworkLink><Link><href>http://example.com/a.kml</href></Link></NetworkLink></Document></kml>",
        b'{"type": "FeatureCollection", "features": []}',
    ],
)
def test_dangerous_or_wrong_kml_is_refused(body):
    assert refused(SimpleUploadedFile("grids.kml", body))


def test_a_vrt_named_kml_is_not_opened_by_another_driver():
    # GDAL would auto-detect a VRT (which can point at any file or URL); the driver is pinned.
    # The comment gets it past the magic-bytes check, so only the pinned driver stands in the way.
    vrt = (
        b'<OGRVRTDataSource><!-- <kml> --><OGRVRTLayer name="x"><SrcDataSource>/vsicurl/http://example.com/x.geojson'
        b"</SrcDataSource></OGRVRTLayer></OGRVRTDataSource>"
    )
    message = refused(SimpleUploadedFile("grids.kml", vrt))
    assert "cannot be read as KML" in message or "no features" in message


# -- Shapefiles ---------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("srid", [4549, 3857])
def test_shapefile_with_prj_is_reprojected_to_wgs84(srid):
    original = square(X0, Y0)
    crs = {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{srid}"}}
    data = collection(feature(polygon(projected(original, srid)), name="投影网格", code="P1"), crs=crs)
    parsed = read(shapefile_zip(data))
    assert parsed.format == "shapefile" and parsed.warnings == []
    [row] = parsed.rows
    assert row.attributes == {"name": "投影网格", "code": "P1"}  # UTF-8 kept through the .cpg
    assert not row.errors
    xmin, ymin, xmax, ymax = row.geom.extent
    assert (xmin, ymin, xmax, ymax) == pytest.approx((X0, Y0, X0 + 0.01, Y0 + 0.01), abs=1e-6)


@pytest.mark.django_db
def test_shapefile_without_prj_is_taken_as_wgs84_with_a_warning():
    parsed = read(shapefile_zip(collection(feature(polygon(square(X0, Y0)), name="无投影")), drop={".prj"}))
    assert parsed.rows[0].geom.extent == pytest.approx((X0, Y0, X0 + 0.01, Y0 + 0.01))
    assert any(".prj" in w for w in parsed.warnings)


@pytest.mark.django_db
def test_projected_shapefile_without_prj_says_so():
    data = collection(
        feature(polygon(projected(square(X0, Y0), 4549)), name="x"),
        crs={"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::4549"}},
    )
    [row] = read(shapefile_zip(data, drop={".prj"})).rows
    assert "projected coordinates without a .prj" in row.errors[0]["message"]


@pytest.mark.django_db
def test_shapefile_without_cpg_in_gbk_is_read_as_gbk():
    members = shapefile_members(collection(feature(polygon(square(X0, Y0)), name="西湖网格")))
    # Rewrite the .dbf as a Chinese desktop GIS would: GBK text, no .cpg, no code page byte.
    dbf = bytearray(members.pop("grids.dbf"))
    dbf = dbf.replace("西湖网格".encode(), "西湖网格".encode("gbk") + b"    ")
    dbf[29] = 0
    members.pop("grids.cpg", None)
    members["grids.dbf"] = bytes(dbf)
    parsed = read(SimpleUploadedFile("g.zip", zip_bytes(members)))
    assert parsed.rows[0].attributes["name"] == "西湖网格"
    assert any("GB18030" in w for w in parsed.warnings)


def _shp_members():
    return shapefile_members(collection(feature(polygon(square(X0, Y0)), name="x")))


@pytest.mark.parametrize(
    "name", ["../grids.shp", "/etc/grids.shp", "a/../../grids.shp", "C:/grids.shp", "..\\grids.shp"]
)
def test_zip_path_traversal_is_refused(name):
    members = _shp_members()
    members[name] = members["grids.shp"]
    assert "unsafe path" in refused(SimpleUploadedFile("g.zip", zip_bytes(members)))


def test_zip_symlink_is_refused():
    members = _shp_members()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, body in members.items():
            archive.writestr(name, body)
        link = zipfile.ZipInfo("link.prj")
        link.external_attr = (0o120777 << 16) | 0
        archive.writestr(link, "/etc/passwd")
    assert "unsafe path" in refused(SimpleUploadedFile("g.zip", buf.getvalue()))


def test_zip_bomb_and_entry_count_are_refused():
    members = _shp_members()
    members["padding.txt"] = b"\0" * (3 * 1024 * 1024)  # compresses to a few KB
    with override_settings(IMPORT_ZIP_MAX_UNCOMPRESSED_BYTES=2 * 1024 * 1024):
        assert "expands to more than 2 MB" in refused(SimpleUploadedFile("g.zip", zip_bytes(members)))
    many = {**_shp_members(), **{f"x{i}.txt": b"" for i in range(10)}}
    with override_settings(IMPORT_ZIP_MAX_ENTRIES=8):
        assert "more than 8 entries" in refused(SimpleUploadedFile("g.zip", zip_bytes(many)))


def test_zip_headers_that_lie_about_sizes_are_caught_while_extracting():
    members = _shp_members()
    members["grids.dbf"] = members["grids.dbf"] + b"\0" * (3 * 1024 * 1024)
    body = bytearray(zip_bytes(members))
    # Make every header claim a tiny uncompressed size; extraction counts the real bytes.
    entry = zipfile.ZipFile(io.BytesIO(bytes(body))).getinfo("grids.dbf")
    with override_settings(IMPORT_ZIP_MAX_UNCOMPRESSED_BYTES=2 * 1024 * 1024):
        lying = _patch_sizes(bytes(body), entry.filename, 10)
        message = refused(SimpleUploadedFile("g.zip", lying))
    assert "expands to more than" in message or "cannot be read" in message


def _patch_sizes(body: bytes, name: str, size: int) -> bytes:
    """Rewrite the uncompressed size of ``name`` in the local and central headers."""
    out = bytearray(body)
    encoded = name.encode()
    for sig, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = 0
        while (i := out.find(sig, start)) != -1:
            name_at = i + (30 if sig == b"PK\x03\x04" else 46)
            if out[name_at : name_at + len(encoded)] == encoded:
                out[i + offset : i + offset + 4] = size.to_bytes(4, "little")
            start = i + 4
    return bytes(out)


@pytest.mark.parametrize(
    ("members", "needle"),
    [
        ({"a.txt": b"x"}, "exactly one shapefile"),
        ({"a.shp": b"x", "b.shp": b"x"}, "exactly one shapefile"),
        ({"a.shp": b"x", "a.dbf": b"x"}, ".shx missing"),
    ],
)
def test_incomplete_shapefile_zips_are_refused(members, needle):
    assert needle in refused(SimpleUploadedFile("g.zip", zip_bytes(members)))


def test_prj_that_is_not_wkt_is_refused():
    members = _shp_members()
    members["grids.prj"] = b"https://example.com/crs.prj"
    assert ".prj" in refused(SimpleUploadedFile("g.zip", zip_bytes(members)))


def test_damaged_zip_and_wrong_magic_are_refused():
    assert refused(SimpleUploadedFile("g.zip", b"PK\x03\x04" + b"\0" * 100))
    assert refused(SimpleUploadedFile("g.zip", b"plain text"))


# -- type and size caps ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["grids.csv", "grids.shp", "grids.kmz", "grids", "grids.geojson.exe"])
def test_unsupported_file_types_are_refused(name):
    assert "Unsupported file type" in refused(SimpleUploadedFile(name, b"{}"))


def test_size_and_feature_caps():
    data = collection(*[feature(polygon(square(X0 + 0.02 * i, Y0)), name=str(i)) for i in range(5)])
    with override_settings(IMPORT_MAX_BYTES=100):
        assert "larger than" in refused(geojson_file(data))
    with override_settings(IMPORT_MAX_FEATURES=4):
        assert "at most 4" in refused(geojson_file(data))
    assert "empty" in refused(geojson_file(b""))


@pytest.mark.django_db
def test_feature_cap_holds_for_shapefiles_too():
    data = collection(*[feature(polygon(square(X0 + 0.02 * i, Y0)), name=str(i)) for i in range(5)])
    with override_settings(IMPORT_MAX_FEATURES=4):
        assert "at most 4" in refused(shapefile_zip(data))


# -- the GDAL controls (grids/io/readers.py is the one module that hands files to GDAL) ----------


@pytest.fixture
def gdal_opens(monkeypatch):
    """Records what GDALOpenEx is given; the real call goes through (a spy, not a stand-in)."""
    from django.contrib.gis.gdal.prototypes import ds as capi

    seen = []
    real = capi.open_ds

    def spy(path, flags, allowed, options, siblings):
        drivers = []
        i = 0
        while allowed is not None and allowed[i] is not None:
            drivers.append(allowed[i])
            i += 1
        seen.append((path, drivers))
        return real(path, flags, allowed, options, siblings)

    monkeypatch.setattr(capi, "open_ds", spy)
    return seen


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "make", "driver", "opened"),
    [
        (
            "/vsicurl/http://example.com/x.geojson",
            lambda: json.dumps(three_grids(None)).encode(),
            b"GeoJSON",
            "upload.geojson",
        ),
        ("../../etc/passwd.json", lambda: json.dumps(three_grids(None)).encode(), b"GeoJSON", "upload.geojson"),
        (
            "/vsizip//etc/x.kml",
            lambda: KML_TEMPLATE.format(placemarks=kml_placemark("a", "b", square(X0, Y0))).encode(),
            b"KML",
            "upload.kml",
        ),
        ("../evil.zip", lambda: zip_bytes(_shp_members()), b"ESRI Shapefile", "layer.shp"),
    ],
)
def test_gdal_only_sees_our_temp_path_and_one_driver(gdal_opens, name, make, driver, opened):
    upload = SimpleUploadedFile(name, make())  # making a shapefile opens GDAL too: not counted
    del gdal_opens[:]
    read(upload)
    [(path, drivers)] = gdal_opens
    path = Path(path.decode())
    assert path.name == opened
    assert path.is_relative_to(tempfile.gettempdir()) and "gridcrm-import-" in str(path)
    assert ".." not in path.parts and "vsi" not in str(path)
    assert drivers == [driver]
    assert not path.exists()  # the temp dir is gone once the file is read
