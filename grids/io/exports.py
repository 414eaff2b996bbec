"""GeoJSON and Excel exports of grids and places. The caller passes an already restricted (and
filtered) queryset: what the user may see is decided by grids.scoping, not here.

GeoJSON is built by PostgreSQL (core.geojson); the Excel file is written row by row from one
query (openpyxl's write-only mode), with the boundary as GeoJSON text computed by PostGIS."""

from __future__ import annotations

import io

from django.conf import settings
from django.contrib.gis.db.models.functions import AsGeoJSON, Transform
from django.core.exceptions import ValidationError
from django.db.models import DecimalField, F, FloatField, Func
from django.db.models.functions import Cast, Round
from django.utils import timezone
from django.utils.translation import gettext as _
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell

from core.geo import srid
from core.geojson import feature_collection
from grids.choices import GridKind, GridStatus, PlaceKind

#: Excel refuses (or silently damages) cells longer than this.
XLSX_CELL_MAX = 32767
XLSX_CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def area_m2():
    """The area in m², computed in the metric SRID (on 4326 ST_Area answers square degrees)."""
    area = Func(Transform("geom", srid(settings.METRIC_SRID)), function="ST_Area", output_field=FloatField())
    return Round(Cast(area, DecimalField(max_digits=20, decimal_places=4)), 1)


def export_filename(stem: str, ext: str) -> str:
    """``grids-20250101.xlsx``: the date in the bank's time zone (Asia/Shanghai)."""
    day = timezone.localdate(timezone=timezone.get_default_timezone())
    return f"{stem}-{day:%Y%m%d}.{ext}"


def _too_many() -> ValidationError:
    return ValidationError(
        {
            "non_field_errors": [
                _("More than %(max)d features: filter the export (by sub-branch, for example).")
                % {"max": settings.EXPORT_MAX_FEATURES}
            ]
        }
    )


def _check_count(queryset) -> None:
    # Counted before writing: a workbook abandoned half-way is wasted work.
    if queryset.order_by().count() > settings.EXPORT_MAX_FEATURES:
        raise _too_many()


# -- grids ------------------------------------------------------------------------------------


def _grids(queryset):
    return queryset.annotate(sub_branch_code=F("sub_branch__code"), area_m2=area_m2())


def grids_geojson(queryset) -> bytes:
    text, _count, truncated = feature_collection(
        _grids(queryset),
        geom_column="geom",
        fields=["id", "code", "name", "kind", "status", "sub_branch_code", "area_m2"],
        limit=settings.EXPORT_MAX_FEATURES,
    )
    if truncated:
        raise _too_many()
    return text


def grids_xlsx(queryset) -> bytes:
    headers = [
        _("ID"),
        _("Code"),
        _("Name"),
        _("Type"),
        _("Status"),
        _("Sub-branch code"),
        _("Sub-branch"),
        _("Area (m²)"),
        _("Boundary (GeoJSON)"),
    ]
    _check_count(queryset)
    kinds, statuses = dict(GridKind.choices), dict(GridStatus.choices)
    rows = (
        _grids(queryset)
        .annotate(sub_branch_name=F("sub_branch__name"), boundary=AsGeoJSON("geom", precision=6))
        .order_by("code")
        .values_list(
            "id", "code", "name", "kind", "status", "sub_branch_code", "sub_branch_name", "area_m2", "boundary"
        )
    )
    return _workbook(
        _("Grids"),
        headers,
        (
            (pk, code, name, str(kinds.get(kind, kind)), str(statuses.get(st, st)), sb_code, sb_name, area, geo)
            for pk, code, name, kind, st, sb_code, sb_name, area, geo in rows.iterator(chunk_size=500)
        ),
    )


# -- places -----------------------------------------------------------------------------------


def places_geojson(queryset) -> bytes:
    text, _count, truncated = feature_collection(
        queryset.annotate(grid_code=F("grid__code"), sub_branch_code=F("grid__sub_branch__code")),
        geom_column="geom",
        fields=["id", "name", "kind", "grid_id", "grid_code", "sub_branch_code"],
        limit=settings.EXPORT_MAX_FEATURES,
    )
    if truncated:
        raise _too_many()
    return text


def places_xlsx(queryset) -> bytes:
    headers = [
        _("ID"),
        _("Name"),
        _("Type"),
        _("Grid code"),
        _("Grid"),
        _("Sub-branch code"),
        _("Geometry (GeoJSON)"),
    ]
    _check_count(queryset)
    kinds = dict(PlaceKind.choices)
    rows = (
        queryset.annotate(
            grid_code=F("grid__code"),
            grid_name=F("grid__name"),
            sub_branch_code=F("grid__sub_branch__code"),
            geometry=AsGeoJSON("geom", precision=6),
        )
        .order_by("name", "id")
        .values_list("id", "name", "kind", "grid_code", "grid_name", "sub_branch_code", "geometry")
    )
    return _workbook(
        _("Places"),
        headers,
        (
            (pk, name, str(kinds.get(kind, kind)), grid_code, grid_name, sb_code, geo)
            for pk, name, kind, grid_code, grid_name, sb_code, geo in rows.iterator(chunk_size=500)
        ),
    )


# -- Excel ------------------------------------------------------------------------------------


def _workbook(title: str, headers: list[str], rows) -> bytes:
    book = Workbook(write_only=True)
    sheet = book.create_sheet(title=title[:31])
    sheet.append([_cell(sheet, h) for h in headers])
    for row in rows:
        sheet.append([_cell(sheet, value) for value in row])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _cell(sheet, value):
    if value is None or isinstance(value, int | float):
        return value
    if not isinstance(value, str):
        value = float(value)  # Decimal areas
        return value
    if len(value) > XLSX_CELL_MAX:
        value = _("(too long for a spreadsheet cell: use the GeoJSON export)")
    cell = WriteOnlyCell(sheet, value=value)
    # A name such as "=HYPERLINK(...)" is text, never a formula (spreadsheet formula injection).
    cell.data_type = "s"
    return cell
