"""Redraws with a reviewable diff: preview → apply (or discard).

A *proposal* holds proposed boundaries (``shapes``) for one or more grids: a reshaped grid, the
two halves of a split, the union of a merge (the other grids retired), or a new grid with the
neighbours it takes area from. The preview computes, in one statement, every merchant and place
whose grid changes (from grid + owner → to grid + owner by the receiving grid's rule; locked
merchants listed but not moved) and stores them on the proposal; applying writes exactly those
rows in one transaction with one ``UPDATE … FROM`` per table, after checking that nothing the
preview read has changed since (grid versions, new or moved merchants in the area)."""

from __future__ import annotations

import functools
import json
import re
from collections import Counter

import pghistory
from django.apps import apps
from django.contrib.gis.geos import GEOSGeometry, LineString, MultiPolygon, Polygon
from django.core.exceptions import EmptyResultSet, ValidationError
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from grids.choices import GridKind, GridStatus, ProposalKind, ProposalStatus
from grids.models import Grid, GridVersion, RedrawMove, RedrawProposal, SubBranch, User
from grids.scoping import scope_cache
from grids.services._scope import check_can_draw, drawable_grids, may_draw_in
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


_MOVES_CTE = f"mv AS (SELECT * FROM {RedrawMove._meta.db_table} WHERE proposal_id = %(proposal)s)"


def _only(model, *names: str) -> tuple:
    """The fields ``names`` (attnames) of ``model``, in its field order (as ``Model.from_db`` takes them)."""
    return tuple(f for f in model._meta.concrete_fields if f.attname in names)


#: what the apply statement reads of the proposal (all of it but the display copy of the moves),
#: and of its sub-branch, grid and author (their names, for the answer; the rest is deferred):
#: (alias, model, fields)
_READ = (
    ("p", RedrawProposal, tuple(f for f in RedrawProposal._meta.concrete_fields if f.name != "merchant_moves")),
    ("sb", SubBranch, _only(SubBranch, "id", "name", "branch_id")),
    ("g", Grid, _only(Grid, "id", "name", "code", "sub_branch_id")),
    ("u", User, _only(User, "id", "username", "full_name")),
)


@functools.cache
def _read_converters() -> list:
    """``_READ`` with, per model, the fields' own converters from database values (the JSON fields:
    ``from_db_value``), built once. None of these fields is a geometry: there is no converter of
    the database backend's to add."""
    out = []
    for alias, model, fields in _READ:
        converters = []
        for i, field in enumerate(fields):
            assert field.get_internal_type() not in ("GeometryField", "PointField", "MultiPolygonField")
            col = field.get_col(alias)
            converters += [(i, col, converter) for converter in col.get_db_converters(connection)]
        out.append((alias, model, fields, converters))
    return out


@functools.cache
def _apply_sql(new_grids: bool) -> str:
    """Applying, in one statement (one round trip, one plan) after the user's scope: the proposal
    row, locked (``p``: only when ``restricted``, the proposal's id in the user's scope, holds it);
    then, when it is to be applied now (``ok``: still proposed, overlaps accepted, its new grids
    created), the existing grids' new boundaries or retirement with a version each, exactly the
    previewed merchants and places, and the proposal's status; and the checks of what the preview
    read that the merchant UPDATE cannot check itself (the versions of the grids in the area
    leaving out those this apply created, merchants in the area changed or added since the
    preview, locked moves whose merchant changed grid or lock).

    Every part reads the snapshot taken when the statement starts, i.e. the state before any of
    its writes. A grid is written only at the version the preview read (one changed meanwhile, say
    by an apply this one waited for, is not); a moved merchant that changed since the preview
    (grid, lock or anything else: ``updated_at``) does not match the merchant UPDATE's ``WHERE``.
    Data-modifying CTEs always run to completion: the caller compares what is returned and raises,
    which rolls the whole apply back. Rows are locked in the order the separate statements it
    replaces locked them: the proposal, the changed grids (by code, as every service locking
    several grids does), then the merchants (by id); each InitPlan of the select list runs when
    it is first read.

    ``new_grids``: the moves may go to grids created by this apply (``keys`` → ``reals``).
    Sent with its whitespace collapsed (psycopg caches how it parses statements under 4 kB)."""
    merchant, place = _tables()
    q = connection.ops.quote_name
    read = ", ".join(["p.*", *(f"{alias}.{q(f.column)}" for alias, _model, fields in _READ[1:] for f in fields)])
    sql = f"""
        WITH p AS MATERIALIZED (
            SELECT {", ".join(q(f.column) for f in _READ[0][2])} FROM {RedrawProposal._meta.db_table}
            WHERE id = %(proposal)s AND id IN (restricted) FOR UPDATE
        ),
        shape AS (
            SELECT s.key, s.grid_id, s.geom AS wkb
            FROM p, jsonb_to_recordset(p.shapes) AS s(key bigint, grid_id bigint, geom text)
        ),
        changed AS (SELECT coalesce(array_agg(grid_id), '{{}}') AS ids FROM shape WHERE grid_id IS NOT NULL),
        region AS (
            SELECT ST_Union(geom) AS geom FROM (
                SELECT ST_GeomFromEWKB(decode(wkb, 'hex')) AS geom FROM shape WHERE wkb IS NOT NULL
                UNION ALL SELECT g.geom FROM {Grid._meta.db_table} g, changed c WHERE g.id = ANY(c.ids)
            ) r
        ),
        ok AS (
            SELECT p.id, p.kind, p.created_at, p.grid_versions, p.place_moves, p.summary FROM p
            WHERE p.status = %(proposed)s AND (%(accept)s OR p.{q("overlaps")} = '[]'::jsonb)
              AND (%(created)s OR NOT EXISTS (SELECT FROM shape WHERE grid_id IS NULL))
        ),
        {_MOVES_CTE},
        {"k AS (SELECT * FROM unnest(%(keys)s::bigint[], %(reals)s::bigint[]) AS k(key, real))," if new_grids else ""}
        grid_lock AS (
            SELECT g.id FROM {Grid._meta.db_table} g, changed c, ok
            WHERE g.id = ANY(c.ids) ORDER BY g.code FOR UPDATE OF g
        ),
        grid_written AS (
            UPDATE {Grid._meta.db_table} g
            SET geom = CASE WHEN s.wkb IS NULL THEN g.geom ELSE ST_GeomFromEWKB(decode(s.wkb, 'hex')) END,
                status = CASE WHEN s.wkb IS NULL THEN %(retired)s ELSE g.status END,
                version = g.version + 1
            FROM ok, shape s
            WHERE g.id = s.grid_id AND g.id = ANY(ARRAY(SELECT id FROM grid_lock))
              AND g.version = (ok.grid_versions ->> s.grid_id::text)::bigint
            RETURNING g.id, g.version, g.geom, g.name, g.code, g.kind, g.status,
                      (%(notes)s::jsonb -> ok.kind) ->> (CASE WHEN s.wkb IS NULL THEN 'retired' ELSE 'boundary' END)
                      AS note
        ),
        version_written AS (
            INSERT INTO {GridVersion._meta.db_table}
                (grid_id, number, geom, name, code, kind, status, created_by_id, created_at, note)
            SELECT id, version, geom, name, code, kind, status, %(by)s::bigint, %(now)s::timestamptz, note
            FROM grid_written
            RETURNING 1
        ),
        merchant_written AS (
            UPDATE {merchant} m
            SET grid_id = {"coalesce(k.real, mv.to_grid_id)" if new_grids else "mv.to_grid_id"},
                owner_id = mv.to_owner_id, updated_at = now()
            FROM mv {"LEFT JOIN k ON k.key = mv.to_grid_id" if new_grids else ""}
            WHERE EXISTS (SELECT FROM ok) AND NOT mv.locked AND m.id = mv.merchant_id
              AND m.grid_id IS NOT DISTINCT FROM mv.from_grid_id AND NOT m.assignment_locked
              AND m.updated_at <= (SELECT created_at FROM ok)
            RETURNING 1
        ),
        place_written AS (
            UPDATE {place} pl SET grid_id = {"coalesce(k.real, pm.to_grid)" if new_grids else "pm.to_grid"}
            FROM ok, jsonb_to_recordset(ok.place_moves) AS pm(id bigint, to_grid bigint)
            {"LEFT JOIN k ON k.key = pm.to_grid" if new_grids else ""}
            WHERE pl.id = pm.id
            RETURNING 1
        ),
        proposal_written AS (
            UPDATE {RedrawProposal._meta.db_table} pr
            SET status = %(applied)s, decided_by_id = %(by)s::bigint, decided_at = %(now)s::timestamptz,
                summary = ok.summary || jsonb_build_object('created_grids', %(created_grids)s::jsonb)
            FROM ok
            WHERE pr.id = ok.id
            RETURNING 1
        )
        SELECT
            (SELECT count(*) FROM proposal_written),
            (SELECT count(*) FROM version_written),
            (SELECT count(*) FROM {Grid._meta.db_table} g, changed c
             WHERE g.id = ANY(c.ids) AND g.sub_branch_id = p.sub_branch_id),
            (SELECT coalesce(jsonb_object_agg(g.id::text, g.version), '{{}}') = p.grid_versions
             FROM {Grid._meta.db_table} g, region r, changed c
             WHERE (g.id = ANY(c.ids) OR (g.status = 'active' AND g.geom && r.geom AND ST_Intersects(g.geom, r.geom)))
               AND NOT (g.id = ANY(%(reals)s::bigint[]))),
            (SELECT count(*) FROM {merchant} m, region r
             WHERE m.location && r.geom AND ST_Intersects(r.geom, m.location) AND m.updated_at > p.created_at),
            (SELECT count(*) FROM mv JOIN {merchant} m ON m.id = mv.merchant_id
             WHERE mv.locked AND (m.grid_id IS DISTINCT FROM mv.from_grid_id OR NOT m.assignment_locked)),
            (SELECT count(*) FROM mv WHERE NOT mv.locked),
            (SELECT count(*) FROM merchant_written),
            (SELECT count(*) FROM place_written),
            {read}
        FROM p
        JOIN {SubBranch._meta.db_table} sb ON sb.id = p.sub_branch_id
        LEFT JOIN {Grid._meta.db_table} g ON g.id = p.grid_id
        LEFT JOIN {User._meta.db_table} u ON u.id = p.created_by_id"""
    assert "--" not in sql and "%%" not in sql  # lines are joined; the scope's SQL goes in as is
    return " ".join(sql.split())


class _Applied:
    """One run of ``_apply_sql``: the counts and checks it returns, and the proposal it read."""

    def __init__(self, row):
        (
            self.proposals_written,
            self.grids_written,
            self.grids_in_sub_branch,
            self.versions_unchanged,
            self.in_area,
            self.locked_changed,
            self.expected,
            self.written,
            self.places_written,
        ) = row[:9]
        values = iter(row[9:])
        loaded = {}
        for alias, model, fields, converters in _read_converters():
            items = [next(values) for _field in fields]
            for i, col, converter in converters:
                items[i] = converter(items[i], col, connection)
            if items[0] is not None:
                loaded[alias] = model.from_db(connection.alias, [f.attname for f in fields], items)
        self.proposal = proposal = loaded["p"]
        # The answer's sub-branch, grid and author (the fields read; the others deferred).
        for alias, name in (("sb", "sub_branch"), ("g", "grid"), ("u", "created_by")):
            if alias in loaded:
                setattr(proposal, name, loaded[alias])


def _run_apply(pk, *, by, accept_overlaps: bool, keymap: dict[int, int], now, created: bool) -> _Applied | None:
    """Run the apply statement for the proposal ``pk`` as ``by``: None when it is not there for
    ``by`` to change (out of scope, or no such proposal)."""
    try:
        scope_sql, scope_params = (
            RedrawProposal.objects.restrict(by, "change").filter(pk=pk).order_by().values("pk").query.sql_with_params()
        )
    except EmptyResultSet:
        return None
    names = iter(range(len(scope_params)))
    scope_sql = re.sub(r"%%|%s", lambda m: m[0] if m[0] == "%%" else f"%(scope{next(names)})s", scope_sql)
    kind_notes = {}
    for kind, label in ProposalKind.choices:
        kind_notes[kind] = {
            "boundary": _("Boundary by %(kind)s #%(id)d") % {"kind": label, "id": pk},
            "retired": _("Retired by %(kind)s #%(id)d") % {"kind": label, "id": pk},
        }
    params = {
        **{f"scope{i}": value for i, value in enumerate(scope_params)},
        "proposal": pk,
        "accept": bool(accept_overlaps),
        "created": created,
        "keys": list(keymap),
        "reals": list(keymap.values()),
        "created_grids": json.dumps({str(k): v for k, v in keymap.items()}),
        "notes": json.dumps(kind_notes),
        "by": getattr(by, "pk", None),
        "now": now,
        "proposed": ProposalStatus.PROPOSED,
        "applied": ProposalStatus.APPLIED,
        "retired": GridStatus.RETIRED,
    }
    with connection.cursor() as cursor:
        cursor.execute(_apply_sql(bool(keymap)).replace("(restricted)", f"({scope_sql})", 1), params)
        row = cursor.fetchone()
    return None if row is None else _Applied(row)


def _create_grids(proposal: RedrawProposal, shapes: list[dict], by) -> dict[int, int]:
    """Create the proposal's new grids (with their first version): ``{shape key: grid id}``."""
    keymap = {}
    for s in shapes:
        if s["grid_id"]:
            continue
        _check_code_free(s["code"])
        grid = Grid.objects.create(
            sub_branch_id=proposal.sub_branch_id,
            name=s["name"],
            code=s["code"],
            kind=s["kind"],
            geom=GEOSGeometry(s["geom"]),
            version=1,
        )
        keymap[s["key"]] = grid.pk
        note = _("Created by %(kind)s #%(id)d") % {"kind": proposal.get_kind_display(), "id": proposal.pk}
        grid_version_write(grid=grid, by=by, note=note)
    return keymap


def _appoint_leaders(*, proposal: RedrawProposal, shapes: list[dict], keymap: dict[int, int], by) -> None:
    """Appoint the leaders kept on the proposal's new grids (``shapes[i]["leader"]``, set by the
    API's propose): a membership from today, as the team endpoint does. Inside the apply's
    transaction: a refusal (the leader left meanwhile) rolls the apply back."""
    from grids.services import team as team_svc

    for shape in shapes:
        if shape.get("grid_id") is not None or not shape.get("leader"):
            continue
        grid = Grid.objects.get(pk=keymap[shape["key"]])
        try:
            team_svc.team_assign(grid=grid, by=by, leader=shape["leader"])
        except ValidationError as exc:
            if hasattr(exc, "error_dict") and set(exc.error_dict) == {"user"}:
                raise ValidationError({"leader": exc.error_dict["user"]}) from None
            raise


def redraw_apply(*, proposal: RedrawProposal | int, by, accept_overlaps: bool = False) -> RedrawProposal:
    """Apply a proposal in one transaction: the grids get their new boundaries (a version each),
    new grids are created (and the leaders kept on them appointed), retired ones retired, and
    exactly the previewed merchants and places change grid (and owner) — one ``UPDATE … FROM``
    per table, only those rows. Refused when stale (see StaleProposal), when overlaps were
    previewed and not accepted, or out of scope.

    ``proposal`` is a proposal or its id (the API passes the id): the row is read here, locked,
    by the apply statement itself (``_apply_sql``: loading, checks and writes in one round trip);
    an instance passed in gets the applied state too and is returned. Its checks, and a short
    count of written merchants (one changed since the preview), roll the whole apply back."""
    pk = proposal.pk if isinstance(proposal, RedrawProposal) else proposal
    passed = proposal if isinstance(proposal, RedrawProposal) else None
    with (
        transaction.atomic(),
        pghistory.context(redraw_proposal=pk, by=getattr(by, "pk", None)),
        # The user's scope, resolved once inside this transaction for the proposal's and the
        # grids' checks (a Membership saved meanwhile, e.g. a leader appointed, empties it).
        scope_cache(),
    ):
        applied = _apply(pk, by=by, accept_overlaps=accept_overlaps, passed=passed)
    if passed is not None:
        for field in ("status", "decided_by", "decided_at", "summary"):
            setattr(passed, field, getattr(applied, field))
        return passed
    return applied


def _apply(pk, *, by, accept_overlaps: bool, passed: RedrawProposal | None) -> RedrawProposal:
    """The body of ``redraw_apply``, inside its transaction."""
    now = timezone.now()
    run = _run_apply(pk, by=by, accept_overlaps=accept_overlaps, keymap={}, now=now, created=False)
    if run is None:
        raise RedrawProposal.DoesNotExist
    proposal = run.proposal
    if proposal.status != ProposalStatus.PROPOSED:
        if passed is not None:
            passed.status = proposal.status  # read under the row lock: a copy loaded earlier is refused
        raise ValidationError(
            {
                "status": [
                    _("This proposal has already been %(status)s.") % {"status": proposal.get_status_display().lower()}
                ]
            }
        )
    if proposal.overlaps and not accept_overlaps:
        raise overlaps_error(proposal.overlaps)
    shapes = proposal.shapes
    changed = [s["grid_id"] for s in shapes if s["grid_id"]]
    # Every existing grid written must be one ``by`` may draw. A proposal's grids lie in its
    # sub-branch, drawable or not as a whole; drawable_grids() answers for the rare others.
    if changed and not (run.grids_in_sub_branch == len(set(changed)) and may_draw_in(by, proposal.sub_branch)):
        _check_drawable(by, changed)
    _raise_if_stale(run)
    keymap = {}
    if any(not s["grid_id"] for s in shapes):
        # The first run wrote nothing (``ok`` waits for the new grids): create them, then apply.
        keymap = _create_grids(proposal, shapes, by)
        run = _run_apply(pk, by=by, accept_overlaps=accept_overlaps, keymap=keymap, now=now, created=True)
        _raise_if_stale(run)
    if run.proposals_written != 1 or run.grids_written != len(changed):
        raise _stale()  # a grid changed while this apply waited for its lock
    if run.written != run.expected:
        raise _stale(run.expected - run.written)
    if keymap:
        # The grids created here are in the proposal's sub-branch: one ``by`` may draw in.
        touched = [*changed, *keymap.values()]
        if drawable_grids(by).filter(pk__in=touched).count() != len(set(touched)):
            raise ValidationError({"sub_branch": [_("This change reaches outside the units you manage.")]})
        _appoint_leaders(proposal=proposal, shapes=shapes, keymap=keymap, by=by)
    proposal.status = ProposalStatus.APPLIED
    proposal.decided_by = by
    proposal.decided_at = now
    proposal.summary = {**proposal.summary, "created_grids": {str(k): v for k, v in keymap.items()}}
    return proposal


def _raise_if_stale(run: _Applied) -> None:
    if not run.versions_unchanged:
        raise _stale()
    if run.in_area or run.locked_changed:
        raise _stale(run.in_area + run.locked_changed)


def _check_drawable(by, grid_ids) -> None:
    """RedrawProposal.DoesNotExist (a 404) unless ``by`` may draw every one of ``grid_ids``."""
    if grid_ids and drawable_grids(by).filter(pk__in=grid_ids).count() != len(set(grid_ids)):
        raise RedrawProposal.DoesNotExist


def redraw_discard(*, proposal: RedrawProposal, by) -> RedrawProposal:
    with transaction.atomic():
        locked = (
            RedrawProposal.objects.restrict(by, "change")
            .select_related("sub_branch", "grid", "created_by")  # for the answer (the diff)
            .select_for_update(of=("self",))
            .filter(pk=proposal.pk)
            .first()
        )
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
