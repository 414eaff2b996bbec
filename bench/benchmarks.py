"""The benchmarks. Each builds a ``Case``: the endpoint through the full stack (test client with a
session login: middleware, authentication, view, restrict(), filters, SQL) against one raw SQL
statement answering the same question for the same user.

Add a benchmark with ``@benchmark`` (a function taking the ``Context`` and returning a ``Case``)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.harness import Case

BENCHMARKS: list[Callable[[Context], Case]] = []


def benchmark(fn):
    BENCHMARKS.append(fn)
    return fn


@dataclass
class Context:
    scale: str
    clients: dict = field(default_factory=dict)

    def client_for(self, username: str):
        """A test client logged in with a session (as a browser would be)."""
        if username not in self.clients:
            from django.test import Client

            from grids.models import User

            client = Client()
            client.force_login(User.objects.get(username=username))
            self.clients[username] = client
        return self.clients[username]


def fetchone(sql: str, params=None):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def densest_window(branch_id: int, km: float = 5.0, cell_km: float = 1.0) -> dict:
    """The ``km`` x ``km`` window (aligned to a ``cell_km`` grid) holding the most merchants of the
    branch: count merchants per cell, then sum blocks of cells."""
    from crm.demo.builder import KM_PER_DEG_LAT, KM_PER_DEG_LON

    dlon, dlat = cell_km / KM_PER_DEG_LON, cell_km / KM_PER_DEG_LAT
    k = round(km / cell_km)
    i, j, n = fetchone(
        """
        WITH c AS (
            SELECT floor(ST_X(m.location) / %(dlon)s)::int AS i, floor(ST_Y(m.location) / %(dlat)s)::int AS j,
                   count(*) AS n
            FROM crm_merchant m
            JOIN grids_grid g ON g.id = m.grid_id JOIN grids_subbranch sb ON sb.id = g.sub_branch_id
            WHERE sb.branch_id = %(branch)s
            GROUP BY 1, 2
        )
        SELECT a.i, a.j, sum(b.n) FROM c a
        JOIN c b ON b.i BETWEEN a.i AND a.i + %(k)s - 1 AND b.j BETWEEN a.j AND a.j + %(k)s - 1
        GROUP BY a.i, a.j ORDER BY 3 DESC, 1, 2 LIMIT 1
        """,
        {"dlon": dlon, "dlat": dlat, "k": k, "branch": branch_id},
    )
    bbox = (i * dlon, j * dlat, (i + k) * dlon, (j + k) * dlat)
    return {"bbox": [round(v, 6) for v in bbox], "merchants_in_scope": int(n), "area_km2": km * km}


def _sql_breakdown(call: Callable[[], object], runs: int = 10) -> dict:
    """Time one endpoint call split into the SQL statements it runs and everything else (Python:
    middleware, auth, view, filters, query compilation, response)."""
    from django.db import connection

    per_query: dict[str, list[float]] = {}
    totals, sql_totals = [], []

    def wrapper(execute, sql, params, many, context):
        t0 = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            key = " ".join(sql.split())[:140]
            per_query.setdefault(key, []).append(time.perf_counter() - t0)
            sql_totals[-1] += time.perf_counter() - t0

    with connection.execute_wrapper(wrapper):
        for _ in range(runs):
            sql_totals.append(0.0)
            t0 = time.perf_counter()
            call()
            totals.append(time.perf_counter() - t0)
    med = sorted(totals)[len(totals) // 2]
    sql_med = sorted(sql_totals)[len(sql_totals) // 2]
    return {
        "endpoint_median_ms": round(med * 1000, 3),
        "sql_median_ms": round(sql_med * 1000, 3),
        "python_median_ms": round((med - sql_med) * 1000, 3),
        "queries_per_request": round(sum(len(v) for v in per_query.values()) / runs, 1),
        "queries": {k: round(sorted(v)[len(v) // 2] * 1000, 3) for k, v in per_query.items()},
    }


@benchmark
def merchants_layer(ctx: Context) -> Case:
    """GET /api/v1/layers/merchants/?bbox=<densest 25 km² window> as the regional head, against one
    SQL statement building the same FeatureCollection (same columns, scope, bbox and cap)."""
    from django.conf import settings
    from django.db import connection

    from grids.models import Membership

    username = "region"
    branch_id = Membership.objects.get(user__username=username, role="regional_head").branch_id
    window = densest_window(branch_id)
    x0, y0, x1, y1 = window["bbox"]
    limit = settings.MAP_LAYER_MAX_FEATURES
    url = f"/api/v1/layers/merchants/?bbox={x0},{y0},{x1},{y1}"
    client = ctx.client_for(username)
    raw_sql = """
        SELECT '{"type":"FeatureCollection","features":['
               || coalesce(string_agg(ST_AsGeoJSON(x.*, 'location', 6), ','), '') || ']}'
        FROM (
            SELECT m.id, m.name, m.status, m.grid_id, m.location
            FROM crm_merchant m
            WHERE m.grid_id IN (SELECT g.id FROM grids_grid g
                                JOIN grids_subbranch sb ON sb.id = g.sub_branch_id
                                WHERE sb.branch_id = %s)
              AND m.location && ST_MakeEnvelope(%s, %s, %s, %s, 4326)
            LIMIT %s
        ) x
    """
    params = [branch_id, x0, y0, x1, y1, limit]

    def endpoint():
        response = client.get(url)
        assert response.status_code == 200, response.status_code
        return response.content

    def raw():
        with connection.cursor() as cursor:
            cursor.execute(raw_sql, params)
            return cursor.fetchone()[0]

    def verify(ep_body, raw_text):
        ep = json.loads(ep_body)
        rw = json.loads(raw_text)
        ep_ids = {f["properties"]["id"] for f in ep["features"]}
        rw_ids = {f["properties"]["id"] for f in rw["features"]}
        facts = {
            "endpoint_features": len(ep["features"]),
            "raw_features": len(rw["features"]),
            "endpoint_truncated": ep.get("truncated"),
            "same_feature_ids": ep_ids == rw_ids,
            "endpoint_bytes": len(ep_body),
            "raw_bytes": len(raw_text.encode()),
            "property_keys": sorted(ep["features"][0]["properties"]) if ep["features"] else [],
        }
        if facts["endpoint_features"] != facts["raw_features"]:
            raise AssertionError(f"feature counts differ: {facts}")
        return facts

    return Case(
        name="merchants_layer_bbox_regional_head",
        goal=1.5,
        endpoint=endpoint,
        raw=raw,
        verify=verify,
        breakdown=lambda: _sql_breakdown(endpoint),
        info={
            "url": url,
            "user": username,
            "branch_id": branch_id,
            "window": window,
            "limit": limit,
            "window_km": math.sqrt(window["area_km2"]),
        },
    )
