"""Grid boundaries: validation, overlaps with sibling grids, creation and metadata edits.

Everything metric (areas in m²) is computed by PostGIS in ``settings.METRIC_SRID`` (CGCS2000 /
3-degree GK CM 120E): on the 4326 storage column ``ST_Area`` would answer square degrees.
User geometries arrive as GEOS objects built by core.geo (API) or grids.io (files): they reach
PostGIS as EWKB parameters, never as text for GDAL."""

from __future__ import annotations

from django.conf import settings
from django.contrib.gis.geos import GEOSGeometry, MultiPolygon, Polygon
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils.translation import gettext as _

from core.geo import srid as allowed_srid
from grids.choices import GridKind, GridStatus, OwnershipRule
from grids.models import Grid, GridVersion, SubBranch
from grids.services._scope import check_can_draw, drawable_grids

#: overlaps (and gaps) smaller than this are rounding slivers along shared borders, not overlaps
MIN_AREA_M2 = 1.0


def _ewkb(geom) -> bytes:
    if not geom.srid:
        geom = geom.clone()
        geom.srid = settings.STORAGE_SRID
    return bytes(geom.ewkb)


def metric_srid() -> int:
    return allowed_srid(settings.METRIC_SRID)


def validate_boundary(geom, *, field: str = "geom") -> GEOSGeometry:
    """Return ``geom`` (a GEOS Polygon or MultiPolygon, SRID 4326) as a MultiPolygon, or raise
    ``ValidationError({field: [...]})``: empty, wrong type, outside China, too many vertices, or
    invalid — then with PostGIS's reason and the spot (``ST_IsValidDetail``), e.g. "Self-
    intersection at (120.123456, 30.234567)". The error's ``params`` carry ``reason``, ``lon``,
    ``lat`` for callers that draw the spot on a map."""
    if geom is None or not isinstance(geom, GEOSGeometry):
        raise ValidationError({field: [_("A boundary (polygon or multipolygon) is required.")]})
    if geom.srid not in (None, settings.STORAGE_SRID):
        raise ValidationError({field: [_("Boundaries must be in WGS 84 (EPSG:4326).")]})
    if geom.geom_type not in ("Polygon", "MultiPolygon"):
        raise ValidationError(
            {field: [_("A boundary must be a polygon or a multipolygon, not %(type)s.") % {"type": geom.geom_type}]}
        )
    if geom.empty:
        raise ValidationError({field: [_("The boundary is empty.")]})
    if geom.num_coords > settings.GEO_MAX_VERTICES:
        raise ValidationError(
            {field: [_("The boundary has more than %(max)d vertices.") % {"max": settings.GEO_MAX_VERTICES}]}
        )
    ext = settings.GEO_EXTENT
    x0, y0, x1, y1 = geom.extent
    if x0 < ext["lon_min"] or x1 > ext["lon_max"] or y0 < ext["lat_min"] or y1 > ext["lat_max"]:
        raise ValidationError(
            {field: [_("The boundary lies (partly) outside China (longitude 73–136, latitude 3–54).")]}
        )
    geom = MultiPolygon(geom, srid=4326) if geom.geom_type == "Polygon" else geom.clone()
    geom.srid = settings.STORAGE_SRID
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT d.valid, d.reason, ST_X(d.location), ST_Y(d.location),
                   ST_Area(ST_Transform(g.g, %s))
            FROM (SELECT ST_GeomFromEWKB(%s) AS g) g, LATERAL ST_IsValidDetail(g.g) d
            """,
            [metric_srid(), _ewkb(geom)],
        )
        valid, reason, lon, lat, area = cursor.fetchone()
    if not valid:
        if lon is not None:
            message = _("Invalid boundary: %(reason)s at (%(lon).6f, %(lat).6f).")
        else:
            message = _("Invalid boundary: %(reason)s.")
        params = {"reason": reason, "lon": lon, "lat": lat}
        raise ValidationError({field: [ValidationError(message % params, code="invalid_geometry", params=params)]})
    if not area or area < MIN_AREA_M2:
        raise ValidationError({field: [_("The boundary has no area.")]})
    return geom


def area_m2(geom) -> float:
    """Area of a 4326 geometry in square metres (computed in the metric SRID)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT ST_Area(ST_Transform(ST_GeomFromEWKB(%s), %s))", [_ewkb(geom), metric_srid()])
        return float(cursor.fetchone()[0] or 0.0)


def find_overlaps(geom, *, sub_branch_id: int, exclude_grid_ids=(), min_area_m2: float = MIN_AREA_M2) -> list[dict]:
    """Active grids of the sub-branch whose interiors overlap ``geom`` by at least
    ``min_area_m2``: ``[{"grid_id", "code", "name", "area_m2"}]``, largest first. Touching
    borders and slivers below the threshold are not overlaps. The GiST index (``&&``) picks the
    candidates; the overlap area is computed by PostGIS in the metric SRID."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT id, code, name, a FROM (
                SELECT g.id, g.code, g.name,
                       ST_Area(ST_Transform(ST_Intersection(g.geom, x.geom), %s)) AS a
                FROM grids_grid g, (SELECT ST_GeomFromEWKB(%s) AS geom) x
                WHERE g.sub_branch_id = %s AND g.status = 'active'
                  AND NOT (g.id = ANY(%s))
                  AND g.geom && x.geom AND ST_Intersects(g.geom, x.geom)
            ) o
            WHERE a >= %s
            ORDER BY a DESC, id
            """,
            [metric_srid(), _ewkb(geom), sub_branch_id, [int(i) for i in exclude_grid_ids], min_area_m2],
        )
        return [
            {"grid_id": gid, "code": code, "name": name, "area_m2": round(float(a), 1)}
            for gid, code, name, a in cursor.fetchall()
        ]


def overlaps_error(overlaps: list[dict], *, field: str = "geom") -> ValidationError:
    listed = "; ".join(
        _("%(name)s (%(code)s): %(area)s m²") % {"name": o["name"], "code": o["code"], "area": f"{o['area_m2']:,.0f}"}
        for o in overlaps
    )
    message = _("The boundary overlaps sibling grids — %(grids)s. Accept the overlaps to save it anyway.") % {
        "grids": listed
    }
    return ValidationError({field: [ValidationError(message, code="overlaps", params={"overlaps": overlaps})]})


def grid_version_write(*, grid: Grid, by, note: str = "") -> GridVersion:
    """Keep the grid's current state as version ``grid.version``."""
    return GridVersion.objects.create(
        grid=grid,
        number=grid.version,
        geom=grid.geom,
        name=grid.name,
        code=grid.code,
        kind=grid.kind,
        status=grid.status,
        created_by=by if getattr(by, "pk", None) else None,
        note=note[:200],
    )


def _check_code_free(code: str, *, exclude_pk=None, field: str = "code") -> None:
    qs = Grid.objects.filter(code=code)
    if exclude_pk:
        qs = qs.exclude(pk=exclude_pk)
    if qs.exists():
        raise ValidationError({field: [_("Another grid already has the code %(code)s.") % {"code": code}]})


def grid_create(
    *,
    by,
    sub_branch: SubBranch,
    name: str,
    code: str,
    kind: str = GridKind.MIXED,
    geom,
    accept_overlaps: bool = False,
    ownership_rule: str = OwnershipRule.LEADER,
    note: str = "",
) -> Grid:
    """Create a grid and its first version. Overlaps with active sibling grids are refused (the
    error lists each grid and the m²) unless ``accept_overlaps``. Merchants inside the new
    boundary are *not* moved here: that is a redraw (grids.services.redraw), previewed first.
    Raises PermissionDenied when ``by`` may not draw in the sub-branch."""
    sub_branch_id = sub_branch.pk if isinstance(sub_branch, SubBranch) else int(sub_branch)
    check_can_draw(by, sub_branch_id=sub_branch_id)
    geom = validate_boundary(geom)
    grid = Grid(
        sub_branch_id=sub_branch_id,
        name=name,
        code=code,
        kind=kind,
        geom=geom,
        ownership_rule=ownership_rule,
        status=GridStatus.ACTIVE,
        version=1,
    )
    grid.full_clean(exclude=["geom"], validate_unique=False)
    with transaction.atomic():
        _check_code_free(code)
        overlaps = find_overlaps(geom, sub_branch_id=sub_branch_id)
        if overlaps and not accept_overlaps:
            raise overlaps_error(overlaps)
        grid.save()
        grid_version_write(grid=grid, by=by, note=note or _("Created"))
        # Re-check inside the transaction: the new grid lies within what ``by`` may draw.
        if not drawable_grids(by).filter(pk=grid.pk).exists():
            raise ValidationError({"sub_branch": [_("This sub-branch is outside the units you manage.")]})
    return grid


UPDATABLE = ("name", "code", "kind", "ownership_rule")


def grid_update(*, grid: Grid, by, leader=None, note: str = "", **fields) -> Grid:
    """Change a grid's metadata (name, code, kind, ownership rule) and/or its leader. A new version
    is kept when the metadata changes; the leader goes through team_assign (membership history)."""
    unknown = set(fields) - set(UPDATABLE)
    if unknown:
        raise ValidationError({sorted(unknown)[0]: [_("This field cannot be changed here.")]})
    with transaction.atomic():
        locked = drawable_grids(by).select_for_update().filter(pk=grid.pk).first()
        if locked is None:
            raise Grid.DoesNotExist
        if locked.status != GridStatus.ACTIVE:
            raise ValidationError({"status": [_("A retired grid cannot be changed.")]})
        changed = [k for k, v in fields.items() if getattr(locked, k) != v]
        for key in changed:
            setattr(locked, key, fields[key])
        if "code" in changed:
            _check_code_free(locked.code, exclude_pk=locked.pk)
        if changed:
            locked.full_clean(exclude=["geom"], validate_unique=False)
            locked.version += 1
            locked.save(update_fields=[*changed, "version"])
            grid_version_write(
                grid=locked, by=by, note=note or _("Changed: %(fields)s") % {"fields": ", ".join(changed)}
            )
        if leader is not None:
            from grids.services.team import team_assign

            team_assign(grid=locked, by=by, leader=leader)
    return locked


def grid_retire(*, grid: Grid, by, note: str = "") -> Grid:
    """Retire a grid (no hard delete): it stops taking merchants; its merchants go to whichever
    active grid contains them, through a redraw proposal's apply or the nightly check."""
    with transaction.atomic():
        locked = drawable_grids(by).select_for_update().filter(pk=grid.pk).first()
        if locked is None:
            raise Grid.DoesNotExist
        if locked.status == GridStatus.RETIRED:
            return locked
        locked.status = GridStatus.RETIRED
        locked.version += 1
        locked.save(update_fields=["status", "version"])
        grid_version_write(grid=locked, by=by, note=note or _("Retired"))
    return locked


def as_multipolygon(geom) -> MultiPolygon:
    if isinstance(geom, Polygon):
        return MultiPolygon(geom, srid=geom.srid or 4326)
    return geom
