"""Redraws with a reviewable diff: preview → apply (or discard).

A *proposal* holds proposed boundaries (``shapes``) for one or more grids: a reshaped grid, the
two halves of a split, the union of a merge (the other grids retired), or a new grid with the
neighbours it takes area from. The preview computes, in one statement, every merchant and place
whose grid changes (from grid + owner → to grid + owner by the receiving grid's rule; locked
merchants listed but not moved) and stores them on the proposal; applying writes exactly those
rows in one transaction with one ``UPDATE … FROM`` per table, after checking that nothing the
preview read has changed since (grid versions, new or moved merchants in the area)."""

from __future__ import annotations

import json
from collections import Counter

import pghistory
from django.apps import apps
from django.contrib.gis.geos import GEOSGeometry, LineString, MultiPolygon, Polygon
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from grids.choices import GridKind, GridStatus, ProposalKind, ProposalStatus
from grids.models import Grid, RedrawMove, RedrawProposal, User
from grids.services._scope import check_can_draw, drawable_grids
from grids.services.ownership import owner_ctes
from grids.services.territory import (
    _check_code_free,
    _ewkb,
    find_overlaps,
    grid_version_write,
    overlaps_error,
    validate_boundary,
)

#: keys of grids that do not exist yet (sort after every real id: the border rule still holds)
NEW_BASE = 1 << 40


class StaleProposal(ValidationError):
    """The grids or merchants the preview read have changed: preview again."""


def _tables():
    merchant = apps.get_model("crm", "Merchant")._meta.db_table
    place = apps.get_model("grids", "Place")._meta.db_table
    return merchant, place


def _shape_rows(shapes: list[dict]) -> str:
    return json.dumps([{"key": s["key"], "wkb": s["geom"]} for s in shapes])


_SHAPES_REGION = """
    shapes AS (
        SELECT s.key, ST_GeomFromEWKB(decode(s.wkb, 'hex')) AS geom
        FROM jsonb_to_recordset(%(shapes)s::jsonb) AS s(key bigint, wkb text)
        WHERE s.wkb IS NOT NULL
    ),
    region AS (
        SELECT ST_Union(geom) AS geom FROM (
            SELECT geom FROM shapes
            UNION ALL SELECT geom FROM grids_grid WHERE id = ANY(%(changed)s)
        ) r
    )"""


def _new_grid_sql(loc: str) -> str:
    # The grid of a location once the shapes are applied (lowest key wins on a shared border).
    return f"""LEAST(
        (SELECT g.id FROM grids_grid g WHERE g.status = 'active' AND NOT (g.id = ANY(%(changed)s))
           AND ST_Intersects(g.geom, {loc}) ORDER BY g.id LIMIT 1),
        (SELECT s.key FROM shapes s WHERE ST_Intersects(s.geom, {loc}) ORDER BY s.key LIMIT 1))"""


def _grid_versions(cursor, params) -> dict[str, int]:
    cursor.execute(
        f"""WITH {_SHAPES_REGION}
        SELECT g.id, g.version FROM grids_grid g, region r
        WHERE g.id = ANY(%(changed)s)
           OR (g.status = 'active' AND g.geom && r.geom AND ST_Intersects(g.geom, r.geom))""",
        params,
    )
    return {str(gid): v for gid, v in cursor.fetchall()}


def _compute_moves(params) -> tuple[list[dict], list[dict]]:
    merchant, place = _tables()
    sql = f"""
        WITH {_SHAPES_REGION},
        target AS (
            SELECT m.id, m.name, ST_X(m.location) AS lon, ST_Y(m.location) AS lat,
                   m.grid_id AS from_grid, m.owner_id AS from_owner, m.assignment_locked AS locked,
                   {_new_grid_sql("m.location")} AS to_grid
            FROM {merchant} m, region r
            WHERE m.location && r.geom AND ST_Intersects(r.geom, m.location)
        ),
        moves AS (SELECT * FROM target WHERE from_grid IS DISTINCT FROM to_grid),
        incoming AS (
            SELECT id, to_grid, row_number() OVER (PARTITION BY to_grid ORDER BY id) - 1 AS rn
            FROM moves WHERE NOT locked AND to_grid < {NEW_BASE}
        ),
        {owner_ctes("incoming")}
        SELECT mv.id, mv.name, mv.lon, mv.lat, mv.from_grid, mv.to_grid, mv.from_owner,
               CASE WHEN mv.locked THEN mv.from_owner ELSE o.owner END, mv.locked
        FROM moves mv LEFT JOIN owners o ON o.id = mv.id
        ORDER BY mv.id
    """
    keys = ("id", "name", "lon", "lat", "from_grid", "to_grid", "from_owner", "to_owner", "locked")
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        merchants = [dict(zip(keys, row, strict=True)) for row in cursor.fetchall()]
        cursor.execute(
            f"""
            WITH {_SHAPES_REGION},
            target AS (
                SELECT p.id, p.name, p.grid_id AS from_grid, {_new_grid_sql("ST_PointOnSurface(p.geom)")} AS to_grid
                FROM {place} p, region r
                WHERE p.geom && r.geom AND ST_Intersects(r.geom, ST_PointOnSurface(p.geom))
            )
            SELECT id, name, from_grid, to_grid FROM target WHERE from_grid IS DISTINCT FROM to_grid ORDER BY id
            """,
            params,
        )
        places = [dict(zip(("id", "name", "from_grid", "to_grid"), r, strict=True)) for r in cursor.fetchall()]
    for row in merchants:
        row["lon"], row["lat"] = round(row["lon"], 7), round(row["lat"], 7)
    return merchants, places


def _summary(shapes, merchants, places) -> dict:
    """Per account manager gains and losses, grid labels, and totals (for the table and map)."""
    moving = [m for m in merchants if not m["locked"]]
    gains = Counter(m["to_owner"] for m in moving)
    losses = Counter(m["from_owner"] for m in moving)
    user_ids = {u for u in (*gains, *losses) if u is not None}
    names = {u.pk: str(u) for u in User.objects.filter(pk__in=user_ids)}
    per_owner = [
        {
            "user_id": uid,
            "display": names.get(uid, "") if uid else _("Unassigned pool"),
            "gains": gains.get(uid, 0),
            "losses": losses.get(uid, 0),
            "net": gains.get(uid, 0) - losses.get(uid, 0),
        }
        for uid in sorted({*gains, *losses}, key=lambda u: (u is None, u or 0))
    ]
    grid_ids = {g for m in (*merchants, *places) for g in (m["from_grid"], m["to_grid"]) if g and g < NEW_BASE}
    grid_ids |= {s["key"] for s in shapes if s["key"] < NEW_BASE}
    grids = {str(g.pk): {"code": g.code, "name": g.name} for g in Grid.objects.filter(pk__in=grid_ids)}
    for s in shapes:
        if s["key"] >= NEW_BASE:
            grids[str(s["key"])] = {"code": s["code"], "name": s["name"]}
    per_grid = Counter()
    for m in moving:
        per_grid[(m["from_grid"], "out")] += 1
        per_grid[(m["to_grid"], "in")] += 1
    return {
        "merchants": len(moving),
        "locked": len(merchants) - len(moving),
        "places": len(places),
        "per_owner": per_owner,
        "grids": grids,
        "per_grid": [
            {"grid": g, "in": per_grid.get((g, "in"), 0), "out": per_grid.get((g, "out"), 0)}
            for g in sorted({k[0] for k in per_grid}, key=lambda g: (g is None, g or 0))
        ],
    }


def _propose(*, by, kind, sub_branch_id: int, grid: Grid | None, shapes: list[dict], note: str = "") -> RedrawProposal:
    """Build a proposal from ``shapes``: ``[{"grid_id": id|None, "geom": GEOS|None, "name", "code",
    "kind"}]`` (geom None = retire). Validates every boundary and computes the moves."""
    check_can_draw(by, sub_branch_id=sub_branch_id)
    changed = [s["grid_id"] for s in shapes if s.get("grid_id")]
    if changed and drawable_grids(by).filter(pk__in=changed).count() != len(set(changed)):
        raise Grid.DoesNotExist
    stored, overlaps = [], []
    for i, s in enumerate(shapes):
        geom = s.get("geom")
        key = s["grid_id"] or NEW_BASE + i
        if geom is not None:
            geom = validate_boundary(geom)
            for o in find_overlaps(geom, sub_branch_id=sub_branch_id, exclude_grid_ids=changed):
                overlaps.append({**o, "with": key})
        stored.append(
            {
                "key": key,
                "grid_id": s.get("grid_id"),
                "geom": geom.hexewkb.decode() if geom is not None else None,
                "name": s.get("name", ""),
                "code": s.get("code", ""),
                "kind": s.get("kind", GridKind.MIXED),
            }
        )
    for s in stored:
        if s["grid_id"] is None:
            if not s["name"] or not s["code"]:
                raise ValidationError({"code": [_("A new grid needs a name and a code.")]})
            _check_code_free(s["code"])
    params = {"shapes": _shape_rows(stored), "changed": changed, "today": timezone.localdate()}
    merchants, places = _compute_moves(params)
    with connection.cursor() as cursor:
        versions = _grid_versions(cursor, params)
    with transaction.atomic():
        proposal = RedrawProposal.objects.create(
            kind=kind,
            sub_branch_id=sub_branch_id,
            grid=grid,
            shapes=stored,
            grid_versions=versions,
            merchant_moves=merchants,
            place_moves=places,
            summary=_summary(stored, merchants, places),
            overlaps=overlaps,
            note=note[:200],
            created_by=by,
        )
        _write_moves(proposal, merchants)
    return proposal


def _write_moves(proposal: RedrawProposal, merchants: list[dict]) -> None:
    """The moves as rows of ``grids_redrawmove`` (what applying reads), in one statement."""
    if not merchants:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            f"""INSERT INTO {RedrawMove._meta.db_table}
                    (proposal_id, merchant_id, from_grid_id, to_grid_id, to_owner_id, locked)
                SELECT %s, mv.* FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[], %s::boolean[])
                    AS mv(merchant_id, from_grid, to_grid, to_owner, locked)""",
            [
                proposal.pk,
                [m["id"] for m in merchants],
                [m["from_grid"] for m in merchants],
                [m["to_grid"] for m in merchants],
                [m["to_owner"] for m in merchants],
                [m["locked"] for m in merchants],
            ],
        )


def _active_grid(by, grid) -> Grid:
    found = drawable_grids(by).filter(pk=getattr(grid, "pk", grid)).first()
    if found is None:
        raise Grid.DoesNotExist
    if found.status != GridStatus.ACTIVE:
        raise ValidationError({"grid": [_("A retired grid cannot be changed.")]})
    return found


def redraw_preview(*, grid, new_geom, by, note: str = "") -> RedrawProposal:
    """Preview a new boundary for ``grid``: which merchants and places change grid and owner."""
    grid = _active_grid(by, grid)
    return _propose(
        by=by,
        kind=ProposalKind.REDRAW,
        sub_branch_id=grid.sub_branch_id,
        grid=grid,
        shapes=[{"grid_id": grid.pk, "geom": new_geom}],
        note=note,
    )


def grid_create_preview(
    *, by, sub_branch, name, code, kind=GridKind.MIXED, geom, trim_neighbours: bool = True, note: str = ""
) -> RedrawProposal:
    """Preview a new grid. With ``trim_neighbours`` the sibling grids it overlaps give up that
    area (their new boundaries are part of the proposal), so the new grid takes their merchants."""
    sub_branch_id = getattr(sub_branch, "pk", sub_branch)
    check_can_draw(by, sub_branch_id=sub_branch_id)
    geom = validate_boundary(geom)
    shapes = [{"grid_id": None, "geom": geom, "name": name, "code": code, "kind": kind}]
    if trim_neighbours:
        for o in find_overlaps(geom, sub_branch_id=sub_branch_id):
            shapes.append({"grid_id": o["grid_id"], "geom": _difference(o["grid_id"], geom)})
    return _propose(by=by, kind=ProposalKind.CREATE, sub_branch_id=sub_branch_id, grid=None, shapes=shapes, note=note)


def _fetch_geom(sql: str, params) -> GEOSGeometry | None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if not row or row[0] is None:
        return None
    geom = GEOSGeometry(memoryview(bytes(row[0])))
    geom.srid = 4326
    return geom


def _difference(grid_id: int, geom) -> GEOSGeometry | None:
    return _fetch_geom(
        """SELECT ST_AsEWKB(ST_Multi(ST_CollectionExtract(ST_MakeValid(ST_Difference(g.geom, ST_GeomFromEWKB(%s))), 3)))
           FROM grids_grid g WHERE g.id = %s""",
        [_ewkb(geom), grid_id],
    )


def grid_split(*, grid, by, line=None, polygons=None, new_name: str, new_code: str, note: str = "") -> RedrawProposal:
    """Preview splitting ``grid`` in two, by a ``line`` (LineString cutting across it) or by two
    ``polygons`` (each clipped to the grid). The grid keeps the first part; a new grid
    (``new_name``, ``new_code``, same type) gets the second."""
    grid = _active_grid(by, grid)
    if line is not None:
        if not isinstance(line, LineString):
            raise ValidationError({"line": [_("The split line must be a LineString.")]})
        with connection.cursor() as cursor:
            cursor.execute(
                """SELECT ST_AsEWKB((d).geom) FROM (
                       SELECT ST_Dump(ST_CollectionExtract(ST_Split(g.geom, ST_GeomFromEWKB(%s)), 3)) AS d
                       FROM grids_grid g WHERE g.id = %s) x
                   ORDER BY ST_Area((d).geom) DESC""",
                [_ewkb(line), grid.pk],
            )
            parts = [GEOSGeometry(memoryview(bytes(r[0]))) for r in cursor.fetchall()]
        if len(parts) != 2:
            raise ValidationError({"line": [_("The line must cut the grid into exactly two parts.")]})
    elif polygons is not None and len(polygons) == 2:
        parts = []
        for poly in polygons:
            validate_boundary(poly, field="polygons")
            part = _fetch_geom(
                """SELECT ST_AsEWKB(ST_Multi(ST_CollectionExtract(ST_Intersection(g.geom, ST_GeomFromEWKB(%s)), 3)))
                   FROM grids_grid g WHERE g.id = %s""",
                [_ewkb(poly), grid.pk],
            )
            if part is None or part.empty:
                raise ValidationError({"polygons": [_("Each part must lie (at least partly) inside the grid.")]})
            parts.append(part)
    else:
        raise ValidationError({"line": [_("Give a line across the grid, or two polygons.")]})
    for p in parts:
        p.srid = 4326
    return _propose(
        by=by,
        kind=ProposalKind.SPLIT,
        sub_branch_id=grid.sub_branch_id,
        grid=grid,
        shapes=[
            {"grid_id": grid.pk, "geom": parts[0]},
            {"grid_id": None, "geom": parts[1], "name": new_name, "code": new_code, "kind": grid.kind},
        ],
        note=note,
    )


def grid_merge(*, grid_ids, by, note: str = "") -> RedrawProposal:
    """Preview merging grids of one sub-branch: the lowest id keeps its identity with the union
    of the boundaries; the others are retired."""
    ids = sorted({int(i) for i in grid_ids})
    if len(ids) < 2:
        raise ValidationError({"grid_ids": [_("Choose at least two grids to merge.")]})
    grids = list(drawable_grids(by).filter(pk__in=ids, status=GridStatus.ACTIVE))
    if len(grids) != len(ids):
        raise ValidationError({"grid_ids": [_("Some of these grids do not exist or are not yours to change.")]})
    if len({g.sub_branch_id for g in grids}) != 1:
        raise ValidationError({"grid_ids": [_("Only grids of one sub-branch can be merged.")]})
    union = _fetch_geom(
        "SELECT ST_AsEWKB(ST_Multi(ST_CollectionExtract(ST_UnaryUnion(ST_Collect(geom)), 3))) "
        "FROM grids_grid WHERE id = ANY(%s)",
        [ids],
    )
    keep = ids[0]
    shapes = [{"grid_id": keep, "geom": union}] + [{"grid_id": i, "geom": None} for i in ids[1:]]
    return _propose(
        by=by,
        kind=ProposalKind.MERGE,
        sub_branch_id=grids[0].sub_branch_id,
        grid=next(g for g in grids if g.pk == keep),
        shapes=shapes,
        note=note,
    )


def _stale(n: int | None = None) -> StaleProposal:
    if n is None:
        return StaleProposal(
            _("The grids in this area have changed since the preview was made. Preview the change again."),
            code="stale",
        )
    return StaleProposal(
        _("%(n)d merchants in this area have changed since the preview was made. Preview the change again.") % {"n": n},
        code="stale",
    )


def _check_fresh(proposal: RedrawProposal, cursor, params) -> int:
    """Everything the preview read that the merchant UPDATE cannot check itself, in one statement:
    the versions of the grids in the area, merchants in the area changed (or added) since the
    preview, and locked moves whose merchant changed grid or lock. Raises StaleProposal; returns
    how many merchants the UPDATE must write (the unlocked moves)."""
    merchant, _place = _tables()
    cursor.execute(
        f"""WITH {_SHAPES_REGION},
            mv AS (SELECT * FROM {RedrawMove._meta.db_table} WHERE proposal_id = %(proposal)s)
        SELECT
            (SELECT coalesce(jsonb_object_agg(g.id::text, g.version), '{{}}') FROM grids_grid g, region r
             WHERE g.id = ANY(%(changed)s)
                OR (g.status = 'active' AND g.geom && r.geom AND ST_Intersects(g.geom, r.geom))),
            (SELECT count(*) FROM {merchant} m, region r
             WHERE m.location && r.geom AND ST_Intersects(r.geom, m.location) AND m.updated_at > %(since)s),
            (SELECT count(*) FROM mv JOIN {merchant} m ON m.id = mv.merchant_id
             WHERE mv.locked AND (m.grid_id IS DISTINCT FROM mv.from_grid_id OR NOT m.assignment_locked)),
            (SELECT count(*) FROM mv WHERE NOT mv.locked)""",
        {**params, "since": proposal.created_at, "proposal": proposal.pk},
    )
    versions, in_area, locked_changed, expected = cursor.fetchone()
    if isinstance(versions, str):
        versions = json.loads(versions)
    if versions != proposal.grid_versions:
        raise _stale()
    if in_area or locked_changed:
        raise _stale(in_area + locked_changed)
    return expected


def redraw_apply(*, proposal: RedrawProposal, by, accept_overlaps: bool = False) -> RedrawProposal:
    """Apply a proposal in one transaction: the grids get their new boundaries (a version each),
    new grids are created, retired ones retired, and exactly the previewed merchants and places
    change grid (and owner) — one ``UPDATE … FROM`` per table, only those rows. Refused when
    stale (see StaleProposal), when overlaps were previewed and not accepted, or out of scope.

    The moved merchants' own staleness (grid, lock or anything else changed since the preview) is
    part of the merchant UPDATE's ``WHERE``: a row that no longer matches is not written, and a
    short row count rolls the whole apply back as stale."""
    merchant, place = _tables()
    with transaction.atomic(), pghistory.context(redraw_proposal=proposal.pk, by=getattr(by, "pk", None)):
        # Lock the row and re-read its status only: what a preview stored does not change after
        # it, and the caller has loaded it already (the API's get_object(): re-loading the JSON
        # diff cost as much as the stale checks). merchant_moves is only the display copy of the
        # moves; applying reads grids_redrawmove.
        status = (
            RedrawProposal.objects.restrict(by, "change")
            .select_for_update()
            .filter(pk=proposal.pk)
            .values_list("status", flat=True)
            .first()
        )
        if status is None:
            raise RedrawProposal.DoesNotExist
        proposal.status = status
        if proposal.status != ProposalStatus.PROPOSED:
            raise ValidationError(
                {
                    "status": [
                        _("This proposal has already been %(status)s.")
                        % {"status": proposal.get_status_display().lower()}
                    ]
                }
            )
        if proposal.overlaps and not accept_overlaps:
            raise overlaps_error(proposal.overlaps)
        shapes = proposal.shapes
        changed = [s["grid_id"] for s in shapes if s["grid_id"]]
        # Not their boundaries: they are overwritten (a retired grid's is read lazily for its version).
        grids = {g.pk: g for g in drawable_grids(by).select_for_update().defer("geom").filter(pk__in=changed)}
        if len(grids) != len(set(changed)):
            raise RedrawProposal.DoesNotExist
        params = {"shapes": _shape_rows(shapes), "changed": changed}
        with connection.cursor() as cursor:
            expected = _check_fresh(proposal, cursor, params)
        keymap = {}
        for s in shapes:
            geom = GEOSGeometry(s["geom"]) if s["geom"] else None
            if s["grid_id"]:
                grid = grids[s["grid_id"]]
                if geom is None:
                    grid.status = GridStatus.RETIRED
                else:
                    grid.geom = geom
                grid.version += 1
                grid.save(update_fields=["status", "version"] if geom is None else ["geom", "status", "version"])
                note = _("Retired by %(kind)s #%(id)d") if geom is None else _("Boundary by %(kind)s #%(id)d")
            else:
                _check_code_free(s["code"])
                grid = Grid.objects.create(
                    sub_branch_id=proposal.sub_branch_id,
                    name=s["name"],
                    code=s["code"],
                    kind=s["kind"],
                    geom=geom,
                    version=1,
                )
                keymap[s["key"]] = grid.pk
                note = _("Created by %(kind)s #%(id)d")
            grid_version_write(grid=grid, by=by, note=note % {"kind": proposal.get_kind_display(), "id": proposal.pk})
        keys, reals = list(keymap), list(keymap.values())
        with connection.cursor() as cursor:
            if expected:
                cursor.execute(
                    f"""UPDATE {merchant} m
                        SET grid_id = coalesce(k.real, mv.to_grid_id), owner_id = mv.to_owner_id, updated_at = now()
                        FROM {RedrawMove._meta.db_table} mv
                        LEFT JOIN unnest(%(keys)s::bigint[], %(reals)s::bigint[]) AS k(key, real)
                               ON k.key = mv.to_grid_id
                        WHERE mv.proposal_id = %(proposal)s AND NOT mv.locked AND m.id = mv.merchant_id
                          AND m.grid_id IS NOT DISTINCT FROM mv.from_grid_id AND NOT m.assignment_locked
                          AND m.updated_at <= %(since)s""",
                    {"keys": keys, "reals": reals, "proposal": proposal.pk, "since": proposal.created_at},
                )
                if cursor.rowcount != expected:
                    raise _stale(expected - cursor.rowcount)
            if proposal.place_moves:
                cursor.execute(
                    f"""UPDATE {place} p SET grid_id = coalesce(k.real, mv.to_grid)
                        FROM jsonb_to_recordset(%s::jsonb) AS mv(id bigint, to_grid bigint)
                        LEFT JOIN unnest(%s::bigint[], %s::bigint[]) AS k(key, real) ON k.key = mv.to_grid
                        WHERE p.id = mv.id""",
                    [json.dumps(proposal.place_moves), keys, reals],
                )
        # Re-check inside the transaction: every grid written is one ``by`` may draw.
        touched = [*changed, *keymap.values()]
        if drawable_grids(by).filter(pk__in=touched).count() != len(set(touched)):
            raise ValidationError({"sub_branch": [_("This change reaches outside the units you manage.")]})
        proposal.status = ProposalStatus.APPLIED
        proposal.decided_by = by
        proposal.decided_at = timezone.now()
        proposal.summary = {**proposal.summary, "created_grids": {str(k): v for k, v in keymap.items()}}
        proposal.save(update_fields=["status", "decided_by", "decided_at", "summary"])
    return proposal


def redraw_discard(*, proposal: RedrawProposal, by) -> RedrawProposal:
    with transaction.atomic():
        locked = RedrawProposal.objects.restrict(by, "change").select_for_update().filter(pk=proposal.pk).first()
        if locked is None:
            raise RedrawProposal.DoesNotExist
        if locked.status != ProposalStatus.PROPOSED:
            raise ValidationError({"status": [_("Only a proposal that is still open can be discarded.")]})
        locked.status = ProposalStatus.DISCARDED
        locked.decided_by = by
        locked.decided_at = timezone.now()
        locked.save(update_fields=["status", "decided_by", "decided_at"])
    return locked


__all__ = [
    "NEW_BASE",
    "MultiPolygon",
    "Polygon",
    "StaleProposal",
    "grid_create_preview",
    "grid_merge",
    "grid_split",
    "redraw_apply",
    "redraw_discard",
    "redraw_preview",
]
