"""Strict GeoJSON geometry input, and the few geometry helpers the apps share.

Security (see config/settings/production.py, gis.W001): user input never reaches GDAL. We parse
GeoJSON ourselves, check every number, and build GEOS objects from floats; SRIDs are integers
from settings.ALLOWED_SRIDS.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from django.conf import settings
from django.contrib.gis.geos import LinearRing, MultiPolygon, Point, Polygon
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

ALLOWED_MEMBERS = {"type", "coordinates", "bbox"}


def srid(value: int) -> int:
    """An SRID from the allow-list, as an int. Anything else is refused."""
    if type(value) is not int or value not in settings.ALLOWED_SRIDS:
        raise ValueError(f"SRID {value!r} is not allowed")
    return value


def _position(pos, where: str) -> tuple[float, float]:
    ext = settings.GEO_EXTENT
    if not isinstance(pos, list | tuple):
        raise ValidationError(_("%(where)s: a position must be an array [longitude, latitude].") % {"where": where})
    if len(pos) != 2:
        raise ValidationError(
            _("%(where)s: positions must have exactly 2 numbers (longitude, latitude); 3-D is not accepted.")
            % {"where": where}
        )
    out = []
    for v in pos:
        try:
            # float() of a JSON integer too big for a double raises OverflowError (was a 500).
            num = float(v) if isinstance(v, int | float) and not isinstance(v, bool) else math.nan
        except OverflowError:
            num = math.inf
        if not math.isfinite(num):
            raise ValidationError(_("%(where)s: coordinates must be finite numbers.") % {"where": where})
        out.append(num)
    lon, lat = out
    if not (ext["lon_min"] <= lon <= ext["lon_max"] and ext["lat_min"] <= lat <= ext["lat_max"]):
        raise ValidationError(
            _("%(where)s: (%(lon)s, %(lat)s) lies outside China (longitude 73–136, latitude 3–54).")
            % {"where": where, "lon": lon, "lat": lat}
        )
    return lon, lat


def _ring(coords, where: str, counter: list[int]) -> LinearRing:
    if not isinstance(coords, list) or len(coords) < 4:
        raise ValidationError(_("%(where)s: a ring needs at least 4 positions.") % {"where": where})
    counter[0] += len(coords)
    if counter[0] > settings.GEO_MAX_VERTICES:
        raise ValidationError(_("The geometry has more than %(max)d vertices.") % {"max": settings.GEO_MAX_VERTICES})
    pts = [_position(p, f"{where}[{i}]") for i, p in enumerate(coords)]
    if pts[0] != pts[-1]:
        raise ValidationError(_("%(where)s: a ring must end where it starts.") % {"where": where})
    return LinearRing(pts, srid=4326)


def _polygon(coords, where: str, counter: list[int]) -> Polygon:
    if not isinstance(coords, list) or not coords:
        raise ValidationError(_("%(where)s: a polygon needs at least one ring.") % {"where": where})
    rings = [_ring(r, f"{where}[{i}]", counter) for i, r in enumerate(coords)]
    return Polygon(*rings, srid=4326)


def parse_geojson_geometry(data, allowed_types: Sequence[str]):
    """Validate a GeoJSON geometry object and return a GEOS geometry in SRID 4326.

    Raises ``ValidationError`` with a message that names the problem (and where it is)."""
    if not isinstance(data, dict):
        raise ValidationError(_("Expected a GeoJSON geometry object."))
    if "crs" in data:
        raise ValidationError(_('The "crs" member is not accepted: coordinates are always WGS 84 (EPSG:4326).'))
    extra = set(data) - ALLOWED_MEMBERS
    if extra:
        raise ValidationError(_("Unexpected members: %(names)s.") % {"names": ", ".join(sorted(map(str, extra)))})
    gtype = data.get("type")
    if gtype not in allowed_types:
        raise ValidationError(_("Geometry type must be one of: %(types)s.") % {"types": ", ".join(allowed_types)})
    coords = data.get("coordinates")
    counter = [0]
    if gtype == "Point":
        geom = Point(*_position(coords, "coordinates"), srid=srid(settings.STORAGE_SRID))
    elif gtype == "Polygon":
        geom = _polygon(coords, "coordinates", counter)
    elif gtype == "MultiPolygon":
        if not isinstance(coords, list) or not coords:
            raise ValidationError(_("coordinates: a multipolygon needs at least one polygon."))
        geom = MultiPolygon(*[_polygon(p, f"coordinates[{i}]", counter) for i, p in enumerate(coords)], srid=4326)
    else:  # pragma: no cover - allowed_types only names the types above
        raise ValidationError(_("Unsupported geometry type."))
    if not geom.valid:
        raise ValidationError(_("Invalid geometry: %(reason)s") % {"reason": geom.valid_reason})
    return geom


def parse_bbox(value: str) -> tuple[float, float, float, float]:
    """``"minlon,minlat,maxlon,maxlat"`` → four floats inside China, or ValidationError."""
    parts = value.split(",")
    if len(parts) != 4:
        raise ValidationError(_("bbox must be four numbers: min longitude, min latitude, max longitude, max latitude."))
    try:
        nums = [float(p) for p in parts]
    except ValueError:
        raise ValidationError(_("bbox must contain numbers only.")) from None
    if not all(math.isfinite(n) for n in nums):
        raise ValidationError(_("bbox must contain finite numbers."))
    x0, y0, x1, y1 = nums
    if x0 >= x1 or y0 >= y1:
        raise ValidationError(_("bbox minimum must be below its maximum."))
    ext = settings.GEO_EXTENT
    # Clamp to China's extent rather than refuse: a zoomed-out map legitimately asks for more.
    box = (max(x0, ext["lon_min"]), max(y0, ext["lat_min"]), min(x1, ext["lon_max"]), min(y1, ext["lat_max"]))
    if box[0] >= box[2] or box[1] >= box[3]:
        raise ValidationError(_("bbox lies entirely outside China (longitude 73–136, latitude 3–54)."))
    return box
