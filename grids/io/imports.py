"""Importing grids and places from a file: field mapping, a row-by-row report, and an
all-or-nothing commit.

Stateless: inspect, preview and commit each take the file again (no upload is kept on the
server). The commit re-runs every check of the preview; if any row has an error nothing is
written, and the rows are created in one transaction through the territory services, so a row
that fails while writing rolls back the rows before it.

Who may import: whoever may draw grids in the sub-branch (grids.services._scope: branch managers
in their sub-branch, regional heads in their branch, superusers); grid leaders, account managers
and the read-only mid-office may not.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import translation
from django.utils.translation import gettext as _

from core.geo import srid
from grids.choices import GridKind, GridStatus, PlaceKind
from grids.io.readers import PLACES, POLYGONS, ImportFile, Row, read_upload
from grids.models import Grid, Place, SubBranch
from grids.services._scope import drawable_sub_branches
from grids.services.territory import MIN_AREA_M2, find_overlaps, grid_create, validate_boundary

# What each target field is usually called in the files banks have (matched case-insensitively,
# exact names first, then names that contain one of these).
GRID_FIELD_NAMES = {
    "name": ("name", "名称", "网格名称", "网格名", "名字", "title"),
    "code": ("code", "编码", "网格编码", "编号", "网格编号", "代码", "grid_code"),
    "kind": ("kind", "类型", "网格类型", "type", "类别", "category"),
}
PLACE_FIELD_NAMES = {
    "name": ("name", "名称", "地点名称", "名字", "title"),
    "kind": ("kind", "类型", "type", "类别", "category"),
}
# Chinese labels accepted for each kind, besides the stored value and the (translated) label.
GRID_KIND_ALIASES = {
    "商圈": GridKind.BUSINESS_DISTRICT,
    "园区": GridKind.PARK,
    "专业市场": GridKind.MARKET,
    "市场": GridKind.MARKET,
    "社区": GridKind.COMMUNITY,
    "农区": GridKind.AGRICULTURAL,
    "混合": GridKind.MIXED,
    "综合": GridKind.MIXED,
}
PLACE_KIND_ALIASES = {
    "园区": PlaceKind.PARK,
    "专业市场": PlaceKind.MARKET,
    "市场": PlaceKind.MARKET,
    "商圈": PlaceKind.BUSINESS_DISTRICT,
    "社区": PlaceKind.COMMUNITY,
    "行政村": PlaceKind.VILLAGE,
    "村": PlaceKind.VILLAGE,
    "村庄": PlaceKind.VILLAGE,
}


@dataclass(frozen=True)
class Target:
    """What is imported: the model's fields to map, which are required, and the kinds."""

    kind: str  # "grids" or "places"
    field_names: dict
    required: tuple[str, ...]
    choices: type
    aliases: dict
    geometry: str


GRIDS = Target("grids", GRID_FIELD_NAMES, ("name", "code"), GridKind, GRID_KIND_ALIASES, POLYGONS)
PLACES_TARGET = Target("places", PLACE_FIELD_NAMES, ("name", "kind"), PlaceKind, PLACE_KIND_ALIASES, PLACES)


class ImportRefused(Exception):
    """The import is refused as a whole; ``report`` says why, row by row."""

    def __init__(self, report: dict):
        super().__init__(report.get("detail", ""))
        self.report = report


def import_sub_branches(user):
    """Sub-branches ``user`` may import grids and places into (those they may draw in)."""
    return drawable_sub_branches(user)


def can_import(user) -> bool:
    return import_sub_branches(user).exists()


def read(upload, target: Target) -> ImportFile:
    return read_upload(upload, kind=target.geometry, validate_boundary=validate_boundary)


# -- inspect ----------------------------------------------------------------------------------


def suggest_mapping(fields: list[str], target: Target) -> dict:
    """``{target field: file field or None}`` from the usual names (case-insensitive, Chinese too)."""
    lowered = {f.strip().lower(): f for f in fields}
    taken: set[str] = set()
    out = {}
    for key, names in target.field_names.items():
        found = next((lowered[n] for n in names if n in lowered and lowered[n] not in taken), None)
        if found is None:
            found = next(
                (f for f in fields if f not in taken and any(n in f.strip().lower() for n in names if len(n) > 1)),
                None,
            )
        if found is not None:
            taken.add(found)
        out[key] = found
    return out


def inspect(parsed: ImportFile, target: Target) -> dict:
    sample = settings.IMPORT_SAMPLE_ROWS
    return {
        "format": parsed.format,
        "fields": parsed.fields,
        "feature_count": len(parsed.rows),
        "sample": [row.attributes for row in parsed.rows[:sample]],
        "suggested_mapping": suggest_mapping(parsed.fields, target),
        "warnings": parsed.warnings,
    }


def check_mapping(mapping, parsed: ImportFile, target: Target) -> dict:
    """The mapping as ``{target field: file field or None}``, or ValidationError on ``mapping``."""
    if not isinstance(mapping, dict):
        raise ValidationError({"mapping": [_("The mapping must be an object of target field to file field.")]})
    unknown = sorted(set(mapping) - set(target.field_names))
    if unknown:
        raise ValidationError(
            {"mapping": [_("Unknown target fields: %(names)s.") % {"names": ", ".join(map(str, unknown))[:200]}]}
        )
    out = {}
    for key in target.field_names:
        value = mapping.get(key)
        if value in (None, ""):
            if key in target.required:
                raise ValidationError({"mapping": [_("Choose the file field for %(field)s.") % {"field": key}]})
            value = None
        elif not isinstance(value, str) or value not in parsed.fields:
            raise ValidationError(
                {
                    "mapping": [
                        _("%(field)s: the file has no field %(name)s.") % {"field": key, "name": str(value)[:100]}
                    ]
                }
            )
        out[key] = value
    return out


# -- the row report ---------------------------------------------------------------------------


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a code typed as a number in a spreadsheet: 101.0 -> "101"
    return str(value).strip()


def _kind_lookup(target: Target) -> dict[str, str]:
    lookup = {alias.lower(): value for alias, value in target.aliases.items()}
    for value, label in target.choices.choices:
        lookup[value.lower()] = value
        for lang in ("en", "zh-hans"):
            with translation.override(lang):
                lookup[str(label).strip().lower()] = value
    return lookup


def _geojson(geom) -> dict:
    return {"type": geom.geom_type, "coordinates": geom.coords}


def _row_base(row: Row) -> dict:
    return {"row": row.number, "status": "ok", "errors": list(row.errors)}


def _add_error(item: dict, row_number: int, field_name: str, message: str) -> None:
    item["errors"].append(
        {
            "field": field_name,
            "message": _("row %(row)d: %(reason)s") % {"row": row_number, "reason": message},
            "spot": None,
        }
    )


def _values(item: dict, row: Row, mapping: dict, target: Target, kinds: dict) -> None:
    max_lengths = {"name": 100, "code": 30}
    for key in target.field_names:
        column = mapping.get(key)
        value = _text(row.attributes.get(column)) if column else ""
        if key == "kind":
            if not value:
                if "kind" in target.required:
                    _add_error(item, row.number, "kind", _("the type is missing"))
                item["kind"] = GridKind.MIXED if target is GRIDS else None
                continue
            kind = kinds.get(value.lower())
            if kind is None:
                _add_error(
                    item,
                    row.number,
                    "kind",
                    _("type %(value)s is not recognised (expected one of: %(choices)s)")
                    % {"value": value[:50], "choices": ", ".join(target.choices.values)},
                )
            item["kind"] = kind
            continue
        if not value and key in target.required:
            _add_error(item, row.number, key, _("the %(field)s is missing") % {"field": key})
        elif len(value) > max_lengths.get(key, 100):
            _add_error(
                item,
                row.number,
                key,
                _("the %(field)s is longer than %(max)d characters") % {"field": key, "max": max_lengths[key]},
            )
        item[key] = value


def _pairwise_overlaps(rows: list[Row]) -> list[tuple[int, int, float]]:
    """Overlaps between the file's own rows, computed by PostGIS in one statement: (row, row, m²)."""
    with_geom = [row for row in rows if row.geom is not None and row.geom.geom_type != "Point"]
    if len(with_geom) < 2:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH r AS (SELECT t.n, ST_GeomFromEWKB(t.w) AS g FROM unnest(%s::bytea[], %s::int[]) AS t(w, n))
            SELECT n1, n2, a FROM (
                SELECT a.n AS n1, b.n AS n2, ST_Area(ST_Transform(ST_Intersection(a.g, b.g), %s)) AS a
                FROM r a JOIN r b ON a.n < b.n AND a.g && b.g AND ST_Intersects(a.g, b.g)
            ) o
            WHERE a >= %s ORDER BY n1, n2
            """,
            [
                [bytes(row.geom.ewkb) for row in with_geom],
                [row.number for row in with_geom],
                srid(settings.METRIC_SRID),
                MIN_AREA_M2,
            ],
        )
        return [(n1, n2, round(float(a), 1)) for n1, n2, a in cursor.fetchall()]


def _finish(parsed: ImportFile, items: list[dict], target: Target) -> dict:
    features = []
    for item, row in zip(items, parsed.rows, strict=True):
        if item["errors"]:
            item["status"] = "error"
        elif item.get("overlaps") or item.get("file_overlaps"):
            item["status"] = "overlap"
        props = {k: item.get(k) for k in ("row", "status", "name", "code", "kind") if k in item or k == "row"}
        if row.geom is not None:
            features.append({"type": "Feature", "geometry": _geojson(row.geom), "properties": props})
        else:
            for error in item["errors"]:
                if error.get("spot"):  # an invalid polygon: show where it breaks
                    point = {"type": "Point", "coordinates": error["spot"]}
                    features.append({"type": "Feature", "geometry": point, "properties": props})
                    break
    errors = sum(1 for item in items if item["status"] == "error")
    overlaps = sum(1 for item in items if item["status"] == "overlap")
    return {
        "target": target.kind,
        "format": parsed.format,
        "fields": parsed.fields,
        "warnings": parsed.warnings,
        "row_count": len(items),
        "error_count": errors,
        "overlap_count": overlaps,
        "rows": items,
        "geojson": {"type": "FeatureCollection", "features": features},
    }


def grids_import_report(*, parsed: ImportFile, mapping: dict, sub_branch: SubBranch) -> dict:
    """Every row checked: geometry, name, code (missing, duplicated in the file or taken), type,
    overlaps with the sub-branch's active grids and with other rows of the file (which, m²)."""
    kinds = _kind_lookup(GRIDS)
    items = []
    for row in parsed.rows:
        item = _row_base(row)
        _values(item, row, mapping, GRIDS, kinds)
        item["overlaps"], item["file_overlaps"] = [], []
        items.append(item)
    by_code: dict[str, list[dict]] = {}
    for item in items:
        if item["code"]:
            by_code.setdefault(item["code"], []).append(item)
    for code, same in by_code.items():
        if len(same) > 1:
            rows = ", ".join(str(i["row"]) for i in same)
            for item in same:
                _add_error(
                    item,
                    item["row"],
                    "code",
                    _("the code %(code)s appears more than once in the file (rows %(rows)s)")
                    % {"code": code, "rows": rows},
                )
    # Codes are unique across the whole bank: a code taken in another branch is taken here too.
    taken = set(Grid.objects.filter(code__in=list(by_code)).values_list("code", flat=True))
    for item in items:
        if item["code"] in taken:
            message = _("another grid already has the code %(code)s") % {"code": item["code"]}
            _add_error(item, item["row"], "code", message)
    for item, row in zip(items, parsed.rows, strict=True):
        if row.geom is not None:
            item["overlaps"] = find_overlaps(row.geom, sub_branch_id=sub_branch.pk)
    by_number = {item["row"]: item for item in items}
    for n1, n2, area in _pairwise_overlaps(parsed.rows):
        by_number[n1]["file_overlaps"].append({"row": n2, "area_m2": area})
        by_number[n2]["file_overlaps"].append({"row": n1, "area_m2": area})
    return _finish(parsed, items, GRIDS)


def _refusal(report: dict, *, accept_overlaps: bool) -> dict | None:
    if report["error_count"]:
        return {
            "detail": _("%(n)d of %(total)d rows have errors: nothing was imported.")
            % {"n": report["error_count"], "total": report["row_count"]},
            **report,
        }
    if report["overlap_count"] and not accept_overlaps:
        message = _(
            "%(n)d rows overlap existing grids or each other: nothing was imported. Accept the overlaps to import."
        ) % {"n": report["overlap_count"]}
        return {"detail": message, "accept_overlaps": [message], **report}
    return None


class _Rollback(Exception):
    pass


def grids_import(*, by, parsed: ImportFile, mapping: dict, sub_branch: SubBranch, accept_overlaps: bool) -> list:
    """Create every row as a grid of ``sub_branch`` in one transaction, or none: raises
    ImportRefused with the row report when any row has an error (or overlaps not accepted), or
    when a row fails while writing (then the rows written before it are rolled back)."""
    report = grids_import_report(parsed=parsed, mapping=mapping, sub_branch=sub_branch)
    refusal = _refusal(report, accept_overlaps=accept_overlaps)
    if refusal:
        raise ImportRefused(refusal)
    created: list[Grid] = []
    current = None
    try:
        with transaction.atomic():
            for item, row in zip(report["rows"], parsed.rows, strict=True):
                current = item
                try:
                    created.append(
                        grid_create(
                            by=by,
                            sub_branch=sub_branch,
                            name=item["name"],
                            code=item["code"],
                            kind=item["kind"],
                            geom=row.geom,
                            accept_overlaps=accept_overlaps,
                            note=_("Imported from a file"),
                        )
                    )
                except ValidationError as exc:
                    _service_errors(item, exc)
                    raise _Rollback from None
    except (_Rollback, IntegrityError) as exc:
        if isinstance(exc, IntegrityError) and current is not None:
            _add_error(current, current["row"], "non_field_errors", str(exc).split("\n")[0])
        current["status"] = "error"
        report["error_count"] = sum(1 for item in report["rows"] if item["status"] == "error")
        raise ImportRefused(_refusal(report, accept_overlaps=accept_overlaps)) from None
    return created


def _service_errors(item: dict, exc: ValidationError) -> None:
    errors = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
    for field_name, messages in errors.items():
        for message in messages:
            _add_error(item, item["row"], field_name, message)


# -- places -----------------------------------------------------------------------------------


def _grids_of_rows(rows: list[Row]) -> dict[int, int | None]:
    """Row number -> the grid its point (or the point on its surface) falls in, decided by PostGIS
    with the rule merchants follow (grids.selectors.grid_for_point: active grids, lowest id on a
    shared border)."""
    with_geom = [row for row in rows if row.geom is not None]
    if not with_geom:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT t.n, (SELECT g.id FROM grids_grid g
                         WHERE g.status = %s AND ST_Intersects(g.geom, ST_PointOnSurface(ST_GeomFromEWKB(t.w)))
                         ORDER BY g.id LIMIT 1)
            FROM unnest(%s::bytea[], %s::int[]) AS t(w, n)
            """,
            [GridStatus.ACTIVE.value, [bytes(row.geom.ewkb) for row in with_geom], [row.number for row in with_geom]],
        )
        return dict(cursor.fetchall())


def places_import_report(*, parsed: ImportFile, mapping: dict, sub_branch: SubBranch, user) -> dict:
    """Every row checked: geometry, name, type, and the grid it falls in, which must be a grid of
    ``sub_branch`` that ``user`` may add places to."""
    kinds = _kind_lookup(PLACES_TARGET)
    grid_of = _grids_of_rows(parsed.rows)
    allowed = dict(
        Grid.objects.restrict(user, "add")
        .filter(sub_branch=sub_branch, pk__in=[g for g in grid_of.values() if g])
        .values_list("pk", "code")
    )
    items = []
    for row in parsed.rows:
        item = _row_base(row)
        _values(item, row, mapping, PLACES_TARGET, kinds)
        item["grid"] = None
        if row.geom is not None:
            grid_id = grid_of.get(row.number)
            if grid_id in allowed:
                item["grid"] = {"id": grid_id, "code": allowed[grid_id]}
            else:
                _add_error(
                    item, row.number, "geom", _("the place lies in none of the grids of %(sb)s") % {"sb": sub_branch}
                )
        items.append(item)
    return _finish(parsed, items, PLACES_TARGET)


def places_import(*, by, parsed: ImportFile, mapping: dict, sub_branch: SubBranch) -> list:
    """Create every row as a place in one transaction, or none. The grid is set in the database
    (one UPDATE, the point-on-surface rule), then re-checked: every new place must lie in a grid
    of ``sub_branch`` that ``by`` may add to, or everything is rolled back."""
    report = places_import_report(parsed=parsed, mapping=mapping, sub_branch=sub_branch, user=by)
    refusal = _refusal(report, accept_overlaps=True)
    if refusal:
        raise ImportRefused(refusal)
    try:
        with transaction.atomic():
            places = []
            for item, row in zip(report["rows"], parsed.rows, strict=True):
                place = Place(name=item["name"], kind=item["kind"], geom=row.geom)
                try:
                    place.full_clean(exclude=["grid"])
                except ValidationError as exc:
                    _service_errors(item, exc)
                    item["status"] = "error"
                    raise _Rollback from None
                places.append(place)
            Place.objects.bulk_create(places)
            ids = [p.pk for p in places]
            with connection.cursor() as cursor:
                cursor.execute(
                    """
                    UPDATE grids_place p SET grid_id = (
                        SELECT g.id FROM grids_grid g
                        WHERE g.status = %s AND ST_Intersects(g.geom, ST_PointOnSurface(p.geom))
                        ORDER BY g.id LIMIT 1)
                    WHERE p.id = ANY(%s)
                    """,
                    [GridStatus.ACTIVE.value, ids],
                )
            landed = set(
                Place.objects.restrict(by, "add")
                .filter(pk__in=ids, grid__sub_branch=sub_branch)
                .values_list("pk", flat=True)
            )
            if len(landed) != len(ids):  # a grid was redrawn since the report: nothing is kept
                for item, place in zip(report["rows"], places, strict=True):
                    if place.pk not in landed:
                        _add_error(
                            item,
                            item["row"],
                            "geom",
                            _("the place lies in none of the grids of %(sb)s") % {"sb": sub_branch},
                        )
                        item["status"] = "error"
                raise _Rollback
    except _Rollback:
        report["error_count"] = sum(1 for item in report["rows"] if item["status"] == "error")
        raise ImportRefused(_refusal(report, accept_overlaps=True)) from None
    return list(Place.objects.filter(pk__in=ids).order_by("pk"))
