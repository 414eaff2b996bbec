"""Territory benchmarks (issue 3), in the style of bench/benchmarks.py: each builds a ``Case`` with
the app's path (service or endpoint through the full stack) against the raw SQL doing the same
work on the same rows. Importing this module registers them in ``bench.benchmarks.BENCHMARKS``.

Benchmarks that write run inside a transaction that is rolled back after every call (both sides),
so the bench database is left exactly as it was."""

from __future__ import annotations

import json

from bench.benchmarks import Context, _sql_breakdown, benchmark, fetchone, stack_floor_ms
from bench.harness import Case


class _Rollback(Exception):
    pass


def rolled_back(fn):
    """Run ``fn`` inside a transaction that is always rolled back; return its result."""
    from django.db import transaction

    out = {}
    try:
        with transaction.atomic():
            out["v"] = fn()
            raise _Rollback
    except _Rollback:
        pass
    return out["v"]


# The same question as the service: locked merchants (a manager's explicit choice) are skipped by
# both sides. (The raw side still leaves out the service's shared-border tie-break and the owner
# rules: those are the service's own work, measured against this bare spatial UPDATE.)
ASSIGN_RAW_SQL = """
    UPDATE crm_merchant m SET grid_id = g.id, updated_at = now()
    FROM grids_grid g
    WHERE g.status = 'active' AND ST_Contains(g.geom, m.location) AND m.grid_id IS DISTINCT FROM g.id
      AND NOT m.assignment_locked
"""


@benchmark
def territory_assign_all_merchants(ctx: Context) -> Case:
    """Assign every merchant of the city to the grid containing it: the service
    ``assign_all_merchants()`` (lowest grid id on shared borders, owners by the receiving grid's
    rule, locked merchants skipped, only changed rows written) against the raw
    ``UPDATE … FROM grids_grid … ST_Contains`` writing changed rows. To make both sides write, the
    grid of every 20th merchant is cleared first, in the same rolled-back transaction (the same
    statement on both sides; the counts are verified)."""
    from django.db import connection

    from grids.services.ownership import assign_all_merchants

    scramble = "UPDATE crm_merchant SET grid_id = NULL WHERE id % 20 = 0 AND NOT assignment_locked"
    total = fetchone("SELECT count(*) FROM crm_merchant")[0]

    def endpoint():
        def run():
            with connection.cursor() as cursor:
                cursor.execute(scramble)
            return assign_all_merchants()

        return rolled_back(run)

    def raw():
        def run():
            with connection.cursor() as cursor:
                cursor.execute(scramble)
                cursor.execute(ASSIGN_RAW_SQL)
                return cursor.rowcount

        return rolled_back(run)

    def verify(ep_rows, raw_rows):
        return {"endpoint_rows_changed": ep_rows, "raw_rows_changed": raw_rows, "merchants": total}

    return Case(
        name="territory_assign_all_merchants",
        goal=1.2,
        endpoint=endpoint,
        raw=raw,
        verify=verify,
        info={"merchants": total, "scrambled": "every 20th merchant's grid cleared (both sides)"},
    )


def _redraw_setup(target: int = 500) -> dict:
    """A grid G and a new boundary taking about ``target`` merchants from neighbouring grids of
    the same sub-branch with higher ids (so that G wins the shared area by the border rule)."""
    row = fetchone(
        """
        WITH g AS (
            SELECT g.id, g.sub_branch_id, g.geom FROM grids_grid g
            WHERE g.status = 'active'
              AND (SELECT count(*) FROM grids_grid n WHERE n.sub_branch_id = g.sub_branch_id AND n.id > g.id) > 30
            ORDER BY g.id LIMIT 1
        ),
        near AS (
            SELECT n.id, n.geom, (SELECT count(*) FROM crm_merchant m WHERE m.grid_id = n.id) AS merchants,
                   ST_Distance(n.geom, g.geom) AS d
            FROM grids_grid n, g
            WHERE n.sub_branch_id = g.sub_branch_id AND n.id > g.id AND n.status = 'active'
        ),
        ranked AS (SELECT *, sum(merchants) OVER (ORDER BY d, id) AS running FROM near)
        SELECT g.id,
               ST_AsEWKB(ST_Multi(ST_CollectionExtract(
                   ST_MakeValid(ST_Union(ARRAY[g.geom] || array_agg(r.geom))), 3))),
               sum(r.merchants)
        FROM g, ranked r
        WHERE r.running - r.merchants < %s
        GROUP BY g.id, g.geom
        """,
        [target],
    )
    return {"grid_id": row[0], "geom_ewkb": bytes(row[1]), "merchants": int(row[2])}


@benchmark
def territory_redraw_apply(ctx: Context) -> Case:
    """Apply a previewed redraw of one grid that moves about 500 merchants:
    ``POST /api/v1/redraw-proposals/<id>/apply/`` as the sub-branch's branch manager (stale
    checks, grid version, one ``UPDATE … FROM`` of the previewed rows) against one raw ``UPDATE``
    setting the same grid and owner on the same rows. Both rolled back after every call."""
    from django.contrib.gis.geos import GEOSGeometry
    from django.db import connection

    from grids.models import Grid, Membership, User
    from grids.services.redraw import redraw_preview

    setup = _redraw_setup()
    grid = Grid.objects.get(pk=setup["grid_id"])
    manager = (
        Membership.objects.filter(sub_branch_id=grid.sub_branch_id, role="branch_manager")
        .select_related("user")
        .order_by("id")
        .first()
    )
    username = manager.user.username if manager else "admin"
    geom = GEOSGeometry(memoryview(setup["geom_ewkb"]))
    geom.srid = 4326
    proposal = redraw_preview(grid=grid, new_geom=geom, by=User.objects.get(username=username))
    moves = [m for m in proposal.merchant_moves if not m["locked"]]
    payload = json.dumps([{"id": m["id"], "to_grid": m["to_grid"], "to_owner": m["to_owner"]} for m in moves])
    client = ctx.client_for(username)
    url = f"/api/v1/redraw-proposals/{proposal.pk}/apply/"

    def endpoint():
        def run():
            response = client.post(url, {"accept_overlaps": True}, content_type="application/json")
            assert response.status_code == 200, (response.status_code, response.content[:300])
            return response.json()["summary"]["merchants"]

        return rolled_back(run)

    def raw():
        def run():
            with connection.cursor() as cursor:
                cursor.execute(
                    """UPDATE crm_merchant m SET grid_id = mv.to_grid, owner_id = mv.to_owner, updated_at = now()
                       FROM jsonb_to_recordset(%s::jsonb) AS mv(id bigint, to_grid bigint, to_owner bigint)
                       WHERE m.id = mv.id""",
                    [payload],
                )
                return cursor.rowcount

        return rolled_back(run)

    def verify(ep, rw):
        if ep != rw:
            raise AssertionError(f"rows differ: endpoint {ep}, raw {rw}")
        return {"merchants_moved": ep}

    return Case(
        name="territory_redraw_apply_500",
        goal=1.5,
        endpoint=endpoint,
        raw=raw,
        verify=verify,
        breakdown=lambda: _sql_breakdown(endpoint, runs=5),
        info={
            "grid_id": grid.pk,
            "user": username,
            "proposal": proposal.pk,
            "moves": len(moves),
            "stack_floor_ms": stack_floor_ms(client),
        },
    )


@benchmark
def territory_grid_layer_sub_branch(ctx: Context) -> Case:
    """``GET /api/v1/layers/grids/?sub_branch=<id>`` as the branch manager of the sub-branch with
    the most grids, against one statement building the same FeatureCollection."""
    from django.conf import settings
    from django.db import connection

    sb_id, n = fetchone("SELECT sub_branch_id, count(*) FROM grids_grid GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1")
    username = fetchone(
        """SELECT u.username FROM grids_membership ms JOIN grids_user u ON u.id = ms.user_id
           WHERE ms.sub_branch_id = %s AND ms.role = 'branch_manager' ORDER BY ms.id LIMIT 1""",
        [sb_id],
    )
    username = username[0] if username else "admin"
    client = ctx.client_for(username)
    url = f"/api/v1/layers/grids/?sub_branch={sb_id}"
    raw_sql = """
        SELECT '{"type":"FeatureCollection","features":['
               || coalesce(string_agg(ST_AsGeoJSON(x.*, 'geom', 6), ','), '') || ']}'
        FROM (
            SELECT g.id, g.name, g.code, g.kind, g.status, g.sub_branch_id, sb.color, g.geom
            FROM grids_grid g JOIN grids_subbranch sb ON sb.id = g.sub_branch_id
            WHERE g.sub_branch_id = %s
            LIMIT %s
        ) x
    """

    def endpoint():
        response = client.get(url)
        assert response.status_code == 200, response.status_code
        return response.content

    def raw():
        with connection.cursor() as cursor:
            cursor.execute(raw_sql, [sb_id, settings.MAP_LAYER_MAX_FEATURES])
            return cursor.fetchone()[0]

    def verify(ep_body, raw_text):
        ep, rw = json.loads(ep_body), json.loads(raw_text)
        facts = {"endpoint_features": len(ep["features"]), "raw_features": len(rw["features"])}
        if facts["endpoint_features"] != facts["raw_features"]:
            raise AssertionError(f"feature counts differ: {facts}")
        return facts

    return Case(
        name="territory_grid_layer_sub_branch",
        goal=1.5,
        endpoint=endpoint,
        raw=raw,
        verify=verify,
        breakdown=lambda: _sql_breakdown(endpoint),
        # The raw statement takes a few ms: read the ratio beyond the stack floor too (README).
        info={"url": url, "user": username, "grids": n, "stack_floor_ms": stack_floor_ms(client)},
    )
