"""Read an uploaded GeoJSON, KML or zipped Shapefile through GDAL, safely.

This is the one place app code hands a file to GDAL. Debian 12's GDAL 3.6 cannot switch off its
own file and network access (gis.W001), so the controls are ours, each tested in
tests/grids/test_io_security.py:

* GDAL only ever sees a path we made: a fixed file name inside a private temporary directory
  (mode 0700). No user string is a GDAL path, URL or ``/vsi...`` name, and zip members are never
  extracted under their own names.
* The driver is pinned per format (GDALOpenEx with an allow-list of one driver): a file that is
  really a VRT, or anything else GDAL could auto-detect and follow, is not opened. KML goes to the
  plain ``KML`` driver (expat, no NetworkLink fetching), never LIBKML.
* The bytes are checked before GDAL sees them: size cap, magic bytes, JSON parsed by Python first
  (a GeoJSON ``crs`` member is refused: GDAL would resolve it, possibly over the network), KML
  without DOCTYPE/ENTITY or NetworkLink, a ``.prj`` that is plain WKT.
* Zip archives: entry count and total uncompressed size capped (counted while extracting, not
  trusted from the headers), no absolute paths, ``..``, drive letters or symlinks.

CRS: a shapefile's ``.prj`` may be any CRS GDAL knows (EPSG:4549, 3857, 4490 ...); rows are
reprojected to WGS 84. Without a ``.prj`` WGS 84 is assumed and a warning says so. CGCS2000
(EPSG:4490) differs from WGS 84 by centimetres and is taken as is. GCJ-02 ("Mars" coordinates
from Amap/Tencent exports) has no EPSG code and cannot be detected from a file: such data must be
converted to WGS 84 before import, or every boundary lands 50–500 m off.
"""

from __future__ import annotations

import datetime
import json
import math
import re
import tempfile
import zipfile
import zlib
from ctypes import c_char_p
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path, PurePosixPath

from django.conf import settings
from django.contrib.gis.gdal import CoordTransform, DataSource, Driver, GDALException, SpatialReference
from django.contrib.gis.gdal.error import SRSException
from django.contrib.gis.gdal.prototypes import ds as capi
from django.contrib.gis.geos import GeometryCollection, GEOSException, GEOSGeometry, MultiPolygon, Point, Polygon
from django.core.exceptions import ValidationError
from django.utils.encoding import force_bytes
from django.utils.translation import gettext as _

from core.geo import srid

#: extension -> (format, the one GDAL driver allowed to open it)
FORMATS = {
    ".geojson": ("geojson", "GeoJSON"),
    ".json": ("geojson", "GeoJSON"),
    ".kml": ("kml", "KML"),
    ".zip": ("shapefile", "ESRI Shapefile"),
}
SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg")
PRJ_MAX_BYTES = 64 * 1024
PRJ_START = re.compile(r"^\s*(PROJCS|GEOGCS|PROJCRS|GEOGCRS|GEODCRS|COMPD_CS|COMPOUNDCRS|BOUNDCRS)\s*\[")
CPG_VALUE = re.compile(r"^[A-Za-z0-9_.\-]{1,40}$")
COPY_CHUNK = 64 * 1024

POLYGONS = "polygons"  # grids: Polygon/MultiPolygon, stored as MultiPolygon
PLACES = "places"  # places: a Point, or a polygon stored as MultiPolygon


@dataclass
class Row:
    """One feature of the file: its 1-based number, attributes, and geometry or errors."""

    number: int
    attributes: dict
    geom: GEOSGeometry | None = None
    errors: list[dict] = field(default_factory=list)

    def error(self, field_name: str, message: str, spot=None) -> None:
        """Record an error; ``spot`` is the (lon, lat) where the geometry breaks, if known."""
        self.errors.append(
            {
                "field": field_name,
                "message": _("row %(row)d: %(reason)s") % {"row": self.number, "reason": message},
                "spot": [spot[0], spot[1]] if spot else None,
            }
        )


@dataclass
class ImportFile:
    format: str
    fields: list[str]
    rows: list[Row]
    warnings: list[str] = field(default_factory=list)


def refuse(message: str) -> ValidationError:
    """The whole file is refused: a 400 naming ``file``."""
    return ValidationError({"file": [message]})


def read_upload(upload, *, kind: str = POLYGONS, validate_boundary=None) -> ImportFile:
    """Read ``upload`` (a Django UploadedFile) into rows.

    ``validate_boundary(geom) -> geom`` checks a polygon (the territory service's, raising
    ``ValidationError({"geom": [...]})``); rows it refuses carry its message."""
    name = (getattr(upload, "name", "") or "").lower()
    suffix = PurePosixPath(name).suffix
    if suffix not in FORMATS:
        raise refuse(_("Unsupported file type: upload a .geojson, .json, .kml or a zipped shapefile (.zip)."))
    fmt, driver = FORMATS[suffix]
    size = getattr(upload, "size", None) or 0
    if size > settings.IMPORT_MAX_BYTES:
        raise refuse(_("The file is larger than %(max)d MB.") % {"max": settings.IMPORT_MAX_BYTES // (1024 * 1024)})
    if size == 0:
        raise refuse(_("The file is empty."))
    with tempfile.TemporaryDirectory(prefix="gridcrm-import-") as tmp:
        workdir = Path(tmp)
        upload_path = workdir / f"upload{suffix if fmt != 'geojson' else '.geojson'}"
        _save(upload, upload_path)
        warnings: list[str] = []
        if fmt == "geojson":
            _check_geojson(upload_path)
            path = upload_path
        elif fmt == "kml":
            _check_kml(upload_path)
            path = upload_path
        else:
            path = _extract_shapefile(upload_path, workdir / "shape", warnings)
        return _read(path, driver, fmt, kind, warnings, validate_boundary)


# -- bytes checks ---------------------------------------------------------------------------


def _save(upload, dest: Path) -> None:
    written = 0
    with dest.open("wb") as out:
        for chunk in upload.chunks():
            written += len(chunk)
            if written > settings.IMPORT_MAX_BYTES:  # the declared size can lie
                raise refuse(
                    _("The file is larger than %(max)d MB.") % {"max": settings.IMPORT_MAX_BYTES // (1024 * 1024)}
                )
            out.write(chunk)


def _head(path: Path, n: int = 4096) -> bytes:
    with path.open("rb") as f:
        return f.read(n).lstrip(b"\xef\xbb\xbf").lstrip()


def _check_geojson(path: Path) -> None:
    if not _head(path).startswith(b"{"):
        raise refuse(_("This is not a GeoJSON file: it must be a JSON object (a FeatureCollection)."))
    try:
        data = json.loads(path.read_bytes().decode("utf-8-sig"), parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise refuse(_("This is not a GeoJSON file: the JSON cannot be parsed.")) from None
    if not isinstance(data, dict) or data.get("type") not in ("FeatureCollection", "Feature"):
        raise refuse(_('This is not a GeoJSON file: "type" must be "FeatureCollection" or "Feature".'))
    features = data.get("features", []) if data["type"] == "FeatureCollection" else [data]
    if not isinstance(features, list):
        raise refuse(_('"features" must be an array.'))
    if "crs" in data or any(isinstance(f, dict) and "crs" in f for f in features):
        raise refuse(
            _(
                'The "crs" member is not accepted: GeoJSON is WGS 84 (EPSG:4326). Projected data can be '
                "imported as a zipped shapefile with its .prj."
            )
        )
    if len(features) > settings.IMPORT_MAX_FEATURES:
        raise _too_many(len(features))


def _no_constant(name):
    raise ValueError(f"{name} is not JSON")  # NaN, Infinity: Python accepts them, GeoJSON does not


def _check_kml(path: Path) -> None:
    head = _head(path)
    if not head.startswith(b"<") or b"<kml" not in head.lower():
        raise refuse(_("This is not a KML file."))
    text = path.read_bytes().lower()
    if b"<!doctype" in text or b"<!entity" in text:
        raise refuse(_("KML files with a DOCTYPE or entity declarations are not accepted."))
    if b"networklink" in text:
        raise refuse(_("KML network links are not accepted: export the features themselves."))


def _unsafe_member(info: zipfile.ZipInfo) -> bool:
    name = info.filename
    if not name or name.startswith(("/", "\\")) or "\\" in name or "\x00" in name or re.match(r"^[A-Za-z]:", name):
        return True
    if ".." in PurePosixPath(name).parts:
        return True
    mode = (info.external_attr >> 16) & 0o170000
    return mode == 0o120000  # a symlink


def _extract_shapefile(zip_path: Path, dest: Path, warnings: list[str]) -> Path:
    if not _head(zip_path, 4).startswith(b"PK\x03\x04"):
        raise refuse(_("This is not a zip file."))
    dest.mkdir(mode=0o700)
    try:
        with zipfile.ZipFile(zip_path) as archive:
            infos = archive.infolist()
            if len(infos) > settings.IMPORT_ZIP_MAX_ENTRIES:
                raise refuse(
                    _("The zip file has more than %(max)d entries.") % {"max": settings.IMPORT_ZIP_MAX_ENTRIES}
                )
            for info in infos:
                if _unsafe_member(info):
                    raise refuse(_("The zip file contains an unsafe path: %(name)s") % {"name": info.filename[:200]})
            budget = settings.IMPORT_ZIP_MAX_UNCOMPRESSED_BYTES
            if sum(i.file_size for i in infos) > budget:
                raise _zip_too_big()
            shps = [
                i
                for i in infos
                if not i.is_dir() and i.filename.lower().endswith(".shp") and not i.filename.startswith("__MACOSX/")
            ]
            if len(shps) != 1:
                raise refuse(_("The zip file must contain exactly one shapefile (.shp)."))
            stem = shps[0].filename[:-4].lower()
            by_name = {i.filename.lower(): i for i in infos if not i.is_dir()}
            parts = {ext: by_name.get(stem + ext) for ext in SHAPEFILE_PARTS}
            missing = [ext for ext in (".shp", ".shx", ".dbf") if parts[ext] is None]
            if missing:
                raise refuse(_("The shapefile is incomplete: %(missing)s missing.") % {"missing": ", ".join(missing)})
            for ext, info in parts.items():
                if info is not None:
                    budget -= _extract_member(archive, info, dest / f"layer{ext}", budget)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, EOFError, zlib.error):
        raise refuse(_("The zip file cannot be read (damaged, encrypted or an unsupported compression).")) from None
    if parts[".prj"] is None:
        warnings.append(_("The shapefile has no .prj: coordinates are taken as WGS 84 (EPSG:4326)."))
    else:
        _check_prj(dest / "layer.prj")
    if parts[".cpg"] is not None:
        if not CPG_VALUE.match((dest / "layer.cpg").read_bytes().decode("ascii", "replace").strip()):
            raise refuse(_("The .cpg file does not name a character encoding."))
    elif not _dbf_is_utf8(dest / "layer.dbf"):
        # No .cpg and no code page in the .dbf: Chinese tools write GBK, so read it as GB18030
        # (its superset) instead of handing mojibake to the mapping step.
        (dest / "layer.cpg").write_text("GB18030")
        warnings.append(_("The shapefile has no .cpg: its text was read as GBK/GB18030."))
    return dest / "layer.shp"


def _extract_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, budget: int) -> int:
    written = 0
    with archive.open(info) as src, target.open("wb") as out:
        while chunk := src.read(COPY_CHUNK):
            written += len(chunk)
            if written > budget:  # headers can lie about sizes: count what really comes out
                raise _zip_too_big()
            out.write(chunk)
    return written


def _zip_too_big() -> ValidationError:
    return refuse(
        _("The zip file expands to more than %(max)d MB.")
        % {"max": settings.IMPORT_ZIP_MAX_UNCOMPRESSED_BYTES // (1024 * 1024)}
    )


def _check_prj(path: Path) -> None:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = ""
    if len(raw) > PRJ_MAX_BYTES or not PRJ_START.match(text):
        raise refuse(_("The .prj file is not a coordinate system in WKT."))


def _dbf_is_utf8(path: Path) -> bool:
    raw = path.read_bytes()
    if len(raw) > 29 and raw[29] != 0:  # a language driver id: GDAL recodes from it
        return True
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _too_many(n: int) -> ValidationError:
    return refuse(
        _("The file has %(n)d features; at most %(max)d can be imported at once.")
        % {"n": n, "max": settings.IMPORT_MAX_FEATURES}
    )


# -- GDAL -----------------------------------------------------------------------------------


def _open(path: Path, driver: str) -> DataSource:
    """Open our own ``path`` with exactly one allowed ``driver`` (no auto-detection)."""
    Driver.ensure_registered()
    allowed = (c_char_p * 2)(force_bytes(driver), None)
    try:
        ptr = capi.open_ds(force_bytes(str(path)), capi.GDAL_OF_READONLY | capi.GDAL_OF_VECTOR, allowed, None, None)
    except GDALException:
        raise refuse(_("The file cannot be read as %(format)s.") % {"format": driver}) from None
    return DataSource(ptr, capi.get_dataset_driver(ptr))


def _read(path: Path, driver: str, fmt: str, kind: str, warnings: list[str], validate_boundary) -> ImportFile:
    source = _open(path, driver)
    try:
        return _read_layers(source, fmt, kind, warnings, validate_boundary)
    except (GDALException, SRSException):
        raise refuse(_("The file cannot be read: its features or coordinate system are damaged.")) from None


def _read_layers(source, fmt: str, kind: str, warnings: list[str], validate_boundary) -> ImportFile:
    layers = [source[i] for i in range(source.layer_count)]
    total = sum(max(layer.num_feat, 0) for layer in layers)
    if total > settings.IMPORT_MAX_FEATURES:
        raise _too_many(total)
    if total == 0:
        raise refuse(_("The file contains no features."))
    fields: list[str] = []
    rows: list[Row] = []
    wgs84 = SpatialReference(srid(settings.STORAGE_SRID))
    for layer in layers:
        for name in layer.fields:
            if name not in fields:
                fields.append(name)
        layer_srs = layer.srs
        transform = CoordTransform(layer_srs, wgs84) if layer_srs is not None else None
        for feature in layer:
            row = Row(number=len(rows) + 1, attributes=_attributes(feature))
            rows.append(row)
            _geometry(row, feature, transform, kind, validate_boundary)
            if len(rows) > settings.IMPORT_MAX_FEATURES:
                raise _too_many(len(rows))
    return ImportFile(format=fmt, fields=fields, rows=rows, warnings=warnings)


def _attributes(feature) -> dict:
    out = {}
    for name in feature.fields:
        try:
            value = feature.get(name)
        except (UnicodeDecodeError, GDALException, ValueError, TypeError):
            value = None
        if isinstance(value, datetime.date | datetime.time):
            value = value.isoformat()
        elif isinstance(value, Decimal):
            value = str(value)
        elif isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        elif value is not None and not isinstance(value, str | int | float | bool):
            value = str(value)
        if isinstance(value, float) and value != value:  # NaN is not JSON
            value = None
        out[name] = value
    return out


def _geometry(row: Row, feature, transform, kind: str, validate_boundary) -> None:
    try:
        ogr_geom = feature.geom
    except GDALException:
        row.error("geom", _("no geometry"))
        return
    try:
        if transform is not None:
            ogr_geom.transform(transform)
        ogr_geom.set_3d(False)  # KML carries altitudes; storage is 2-D
        ogr_geom.set_measured(False)
        geom = GEOSGeometry(ogr_geom.wkb, srid=srid(settings.STORAGE_SRID))
    except (GDALException, GEOSException, ValueError):
        row.error("geom", _("the geometry cannot be read or reprojected"))
        return
    if geom.empty:
        row.error("geom", _("empty geometry"))
        return
    if not all(math.isfinite(x) and math.isfinite(y) for x, y in _points(geom)):
        row.error("geom", _("the geometry has coordinates that are not finite numbers"))
        return
    if kind == PLACES and geom.geom_type in ("Point", "MultiPoint"):
        if geom.geom_type == "MultiPoint":
            if len(geom) != 1:
                row.error("geom", _("not a point or polygon (several points)"))
                return
            geom = Point(geom[0].coords, srid=geom.srid)
        if not _inside_china(row, geom):
            return
        row.geom = geom
        return
    polygons = _polygons(geom)
    if polygons is None:
        expected = _("not a polygon") if kind == POLYGONS else _("not a point or polygon")
        row.error("geom", _("%(expected)s (found %(type)s)") % {"expected": expected, "type": geom.geom_type})
        return
    if not _inside_china(row, polygons):
        return
    try:
        row.geom = validate_boundary(polygons) if validate_boundary else polygons
    except ValidationError as exc:
        errors = exc.error_dict.get("geom", []) if hasattr(exc, "error_dict") else exc.error_list
        for error in errors:
            params = error.params if isinstance(error.params, dict) else {}
            message = error.message % params if params and "%(" in error.message else error.message
            spot = (params["lon"], params["lat"]) if params.get("lon") is not None else None
            row.error("geom", str(message), spot)


def _polygons(geom) -> MultiPolygon | None:
    """Polygon / MultiPolygon / a collection of polygons as one MultiPolygon, or None."""
    if isinstance(geom, Polygon):
        return MultiPolygon(geom, srid=geom.srid)
    if isinstance(geom, MultiPolygon):
        return geom
    if geom.geom_type == "GeometryCollection":
        parts = []
        for member in geom:
            sub = _polygons(member)
            if sub is None:
                return None
            parts.extend(sub)
        return MultiPolygon(*parts, srid=geom.srid) if parts else None
    return None


def _inside_china(row: Row, geom) -> bool:
    ext = settings.GEO_EXTENT

    def inside(x, y):
        return ext["lon_min"] <= x <= ext["lon_max"] and ext["lat_min"] <= y <= ext["lat_max"]

    xmin, ymin, xmax, ymax = geom.extent
    if inside(xmin, ymin) and inside(xmax, ymax):
        return True
    x, y = next((p for p in _points(geom) if not inside(*p)), (xmin, ymin))
    if abs(x) > 180 or abs(y) > 90:
        message = _("outside China at %(lon).6g,%(lat).6g: projected coordinates without a .prj?")
    else:
        message = _("outside China at %(lon).6g,%(lat).6g (longitude 73–136, latitude 3–54)")
    row.error("geom", message % {"lon": x, "lat": y}, (x, y))
    return False


def _points(geom):
    """Every (x, y) of a point, polygon or collection."""
    if isinstance(geom, Point):
        yield geom.coords[:2]
    elif isinstance(geom, Polygon):
        for ring in geom:
            for coord in ring.coords:
                yield coord[:2]
    elif isinstance(geom, GeometryCollection):
        for member in geom:
            yield from _points(member)
    else:  # a line
        for coord in geom.coords:
            yield coord[:2]
