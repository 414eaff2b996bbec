"""Territory reads computed in the database: gaps in a sub-branch's coverage, coverage and visit
rates per grid / sub-branch, merchant counts per place. Each is one or two set-based statements."""

from __future__ import annotations

import datetime
import json

from django.apps import apps
from django.core.exceptions import EmptyResultSet
from django.db import connection
from django.db.models import Count, Exists, IntegerField, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from grids.services.territory import MIN_AREA_M2, metric_srid


def gaps(*, sub_branch) -> dict:
    """Holes in the union of the sub-branch's active grids (areas enclosed by grids but in none),
    as a GeoJSON FeatureCollection with ``area_m2`` per hole, plus the covered and gap areas."""
    sb = getattr(sub_branch, "pk", sub_branch)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH u AS (
                SELECT ST_Union(geom) AS geom FROM grids_grid WHERE sub_branch_id = %(sb)s AND status = 'active'
            ),
            polys AS (SELECT (ST_Dump(u.geom)).geom AS geom FROM u WHERE u.geom IS NOT NULL),
            holes AS (
                SELECT ST_MakePolygon(ST_InteriorRingN(p.geom, n)) AS geom
                FROM polys p, generate_series(1, ST_NumInteriorRings(p.geom)) n
            ),
            measured AS (SELECT geom, ST_Area(ST_Transform(geom, %(srid)s)) AS a FROM holes)
            SELECT (SELECT ST_Area(ST_Transform(geom, %(srid)s)) FROM u),
                   (SELECT count(*) FROM grids_grid WHERE sub_branch_id = %(sb)s AND status = 'active'),
                   coalesce(json_agg(json_build_object(
                       'type', 'Feature',
                       'geometry', ST_AsGeoJSON(m.geom, 7)::json,
                       'properties', json_build_object('area_m2', round(m.a::numeric, 1))
                   ) ORDER BY m.a DESC) FILTER (WHERE m.a >= %(min)s), '[]')::text
            FROM (SELECT 1) one LEFT JOIN measured m ON true
            """,
            {"sb": sb, "srid": metric_srid(), "min": MIN_AREA_M2},
        )
        covered, grids, features = cursor.fetchone()
    features = json.loads(features)
    return {
        "sub_branch_id": sb,
        "grids": grids,
        "coverage_area_m2": round(float(covered or 0), 1),
        "gap_area_m2": round(sum(f["properties"]["area_m2"] for f in features), 1),
        "gaps": {"type": "FeatureCollection", "features": features},
    }


COVERAGE_FIELDS = ("merchants", "in_grid", "visited_30", "visited_90", "never_visited")


def coverage(*, grids, now: datetime.datetime | None = None) -> list[dict]:
    """Per grid of ``grids`` (a queryset, already restricted): merchants filed in it, how many lie
    inside its boundary (入格率 = in_grid / merchants), visited in the last 30 / 90 days, never
    visited (空白户). The last visit of each merchant comes from the partial index
    ``activity_last_visit`` (LATERAL … LIMIT 1). One statement."""
    merchant = apps.get_model("crm", "Merchant")._meta.db_table
    activity = apps.get_model("crm", "Activity")._meta.db_table
    now = now or timezone.now()
    try:
        grid_sql, grid_params = grids.order_by().values("id").query.sql_with_params()
    except EmptyResultSet:  # an empty scope: nothing to ask the database
        return []
    sql = f"""
        SELECT g.id, g.code, g.name, g.sub_branch_id, sb.name,
               count(m.id),
               count(m.id) FILTER (WHERE ST_Intersects(g.geom, m.location)),
               count(m.id) FILTER (WHERE lv.at >= %s),
               count(m.id) FILTER (WHERE lv.at >= %s),
               count(m.id) FILTER (WHERE m.id IS NOT NULL AND lv.at IS NULL)
        FROM grids_grid g
        JOIN grids_subbranch sb ON sb.id = g.sub_branch_id
        LEFT JOIN {merchant} m ON m.grid_id = g.id
        LEFT JOIN LATERAL (
            SELECT a.occurred_at AS at FROM {activity} a
            WHERE a.merchant_id = m.id AND a.kind = 'visit'
            ORDER BY a.occurred_at DESC LIMIT 1
        ) lv ON true
        WHERE g.id IN ({grid_sql})
        GROUP BY g.id, sb.name
    """
    params = [now - datetime.timedelta(days=30), now - datetime.timedelta(days=90), *grid_params]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    out = []
    for gid, code, name, sb_id, sb_name, *counts in rows:
        row = {"id": gid, "code": code, "name": name, "sub_branch_id": sb_id, "sub_branch_name": sb_name}
        row.update(dict(zip(COVERAGE_FIELDS, counts, strict=True)))
        out.append(_with_rates(row))
    return out


def _with_rates(row: dict) -> dict:
    n = row["merchants"]
    for key in ("in_grid", "visited_30", "visited_90", "never_visited"):
        row[f"{key}_rate"] = round(row[key] / n, 4) if n else None
    return row


def coverage_by_sub_branch(grid_rows: list[dict]) -> list[dict]:
    """Roll the per-grid rows up to sub-branches (sums, then rates)."""
    acc: dict[int, dict] = {}
    for r in grid_rows:
        sb = acc.setdefault(
            r["sub_branch_id"],
            {"id": r["sub_branch_id"], "name": r["sub_branch_name"], "grids": 0, **dict.fromkeys(COVERAGE_FIELDS, 0)},
        )
        sb["grids"] += 1
        for key in COVERAGE_FIELDS:
            sb[key] += r[key]
    return [_with_rates(v) for v in acc.values()]


def places_with_counts(queryset):
    """Places annotated with merchant counts: all, banked (holding any active product with the
    bank), with a loan (an active loan). Correlated subqueries: one statement with the list."""
    Merchant = apps.get_model("crm", "Merchant")
    Holding = apps.get_model("crm", "ProductHolding")

    def counted(extra: Q):
        sub = (
            Merchant.objects.filter(Q(place_id=OuterRef("pk")) & extra)
            .order_by()
            .values("place_id")
            .annotate(n=Count("id"))
            .values("n")
        )
        return Coalesce(Subquery(sub, output_field=IntegerField()), Value(0))

    banked = Exists(Holding.objects.filter(merchant_id=OuterRef("pk"), active=True))
    loan = Exists(Holding.objects.filter(merchant_id=OuterRef("pk"), active=True, product="loan"))
    return queryset.annotate(
        merchants_all=counted(Q()),
        merchants_banked=counted(Q(banked)),
        merchants_with_loan=counted(Q(loan)),
    )
