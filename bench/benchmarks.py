"""The benchmarks. Each builds a ``Case``: the endpoint through the full stack (test client with a
session login: middleware, authentication, view, restrict(), filters, SQL) against one raw SQL
statement answering the same question for the same user.

Add a benchmark with ``@benchmark`` (a function taking the ``Context`` and returning a ``Case``)."""

from __future__ import annotations

import json
import math
import time
import zoneinfo
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


# -- Issue 4: accounts, activities, the funnel -----------------------------------------------------


def route_or_pending(url: str, *, not_names: tuple[str, ...] = ()) -> str | None:
    """None when ``url`` is routed to a view (other than ``not_names``); otherwise why the benchmark
    is pending. (``/merchants/my/`` resolves to merchant-detail with pk "my" until the action exists.)"""
    from urllib.parse import urlsplit

    from django.urls import Resolver404, resolve

    try:
        match = resolve(urlsplit(url).path)
    except Resolver404:
        return f"{urlsplit(url).path} is not routed yet"
    if match.url_name in not_names:
        return f"{urlsplit(url).path} is not routed yet (it resolves to {match.url_name})"
    return None


def active_grid_ids(user_id: int) -> list[int]:
    """The grids an account manager's active memberships cover (what restrict() gives a grid member)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT DISTINCT grid_id FROM grids_membership
            WHERE user_id = %s AND grid_id IS NOT NULL AND start_date <= (now() AT TIME ZONE 'Asia/Shanghai')::date
              AND (end_date IS NULL OR end_date >= (now() AT TIME ZONE 'Asia/Shanghai')::date)
            ORDER BY 1
            """,
            [user_id],
        )
        return [r[0] for r in cursor.fetchall()]


FLOOR_URL = "/api/v1/industries/"


def stack_floor_ms(client, reps: int = 30) -> float:
    """Median of ``GET /api/v1/industries/`` (15 rows of a reference list) with the same login: what
    any endpoint costs before its own work (session, user and scope queries, middleware, DRF), for
    reading a ratio against a raw query of a few ms."""
    import statistics

    samples = []
    for i in range(reps + 3):
        t0 = time.perf_counter()
        response = client.get(FLOOR_URL)
        if i >= 3:
            samples.append(time.perf_counter() - t0)
    assert response.status_code == 200, response.status_code
    return round(statistics.median(samples) * 1000, 2)


def _json(response):
    assert response.status_code == 200, (response.status_code, response.content[:300])
    return response.content


def _parse_time(value):
    from django.utils.dateparse import parse_datetime

    return parse_datetime(value) if isinstance(value, str) else value


MY_MERCHANTS_SQL = """
    SELECT m.id, m.name, m.status, m.grid_id, m.address, lv.occurred_at AS last_visit_at
    FROM crm_merchant m
    LEFT JOIN LATERAL (
        SELECT a.occurred_at FROM crm_activity a
        WHERE a.merchant_id = m.id AND a.kind = 'visit'
        ORDER BY a.occurred_at DESC LIMIT 1
    ) lv ON true
    WHERE m.owner_id = %(user)s AND m.grid_id = ANY(%(grids)s)
    ORDER BY lv.occurred_at NULLS FIRST, m.id
    LIMIT %(limit)s
"""


@benchmark
def my_merchants_last_visit(ctx: Context) -> Case:
    """ "My merchants with last visit date" for the busiest account manager (who owns the most
    merchants): ``GET /api/v1/merchants/my/?page_size=500&ordering=last_visit_at`` against one
    statement: the user's merchants in their grids, each with its latest visit by a LATERAL ...
    LIMIT 1 on the partial index activity_last_visit (merchant_id, occurred_at DESC) WHERE
    kind = 'visit' (PERFORMANCE.md), ordered by last visit (never visited first: the endpoint's
    default, 空白户 are the ones to visit), then id.

    The endpoint's query should have that shape: restrict() (grid_id IN the user's grids), owner =
    the user, last_visit_at as a correlated subquery
    ``Subquery(Activity.objects.filter(merchant=OuterRef("pk"), kind="visit")
    .order_by("-occurred_at").values("occurred_at")[:1])`` (PostgreSQL runs it per row on the
    partial index: the same plan as the LATERAL), ``.values()`` of the listed columns (no model
    instances, no nested serializers, no location GeoJSON), and one COUNT for the page."""
    from django.db import connection

    from grids.models import User

    user_id, owned = fetchone(
        "SELECT owner_id, count(*) FROM crm_merchant WHERE owner_id IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1"
    )
    user = User.objects.get(pk=user_id)
    grids = active_grid_ids(user_id)
    limit = 500
    url = f"/api/v1/merchants/my/?page_size={limit}&ordering=last_visit_at"
    params = {"user": user_id, "grids": grids, "limit": limit}

    def raw():
        with connection.cursor() as cursor:
            cursor.execute(MY_MERCHANTS_SQL, params)
            return cursor.fetchall()

    info = {
        "url": url,
        "user": user.username,
        "merchants_owned": owned,
        "grids": len(grids),
        "columns": "id, name, status, grid_id, address, last_visit_at",
        "order": "last_visit_at ASC NULLS FIRST (never visited first, as the endpoint's default), id",
    }
    client = ctx.client_for(user.username)
    info["stack_floor_ms"] = stack_floor_ms(client)
    pending = route_or_pending(url, not_names=("merchant-detail",))
    if pending:
        return Case("my_merchants_last_visit", 2.0, None, raw, info=info, pending=pending)

    def endpoint():
        return _json(client.get(url))

    def verify(body, rows):
        data = json.loads(body)
        items = data["results"] if isinstance(data, dict) and "results" in data else data
        got = {i["id"]: _parse_time(i.get("last_visit_at")) for i in items}
        want = {r[0]: r[5] for r in rows}
        facts = {
            "endpoint_items": len(items),
            "raw_rows": len(rows),
            "same_ids": set(got) == set(want),
            "same_last_visit": got == want,
            "same_order_of_last_visit": [got.get(i["id"]) for i in items] == [r[5] for r in rows],
            "endpoint_keys": sorted(items[0]) if items else [],
        }
        if not (facts["same_ids"] and facts["same_last_visit"]):
            raise AssertionError(f"my merchants differ: {facts}")
        return facts

    return Case(
        "my_merchants_last_visit",
        2.0,
        endpoint,
        raw,
        verify=verify,
        info=info,
        breakdown=lambda: _sql_breakdown(endpoint),
    )


TIMELINE_SQL = """
    SELECT type, id, at, by_id, by_name, detail FROM (
        (SELECT 'activity' AS type, a.id, a.occurred_at AS at, 2 AS rank, a.by_id,
                coalesce(nullif(u.full_name, ''), u.username) AS by_name,
                jsonb_build_object('kind', a.kind, 'title', a.title, 'event_type', a.event_type,
                                   'outcome', a.outcome, 'intent', a.intent, 'notes', a.notes,
                                   'next_step', a.next_step, 'checkin_flag', a.checkin_flag,
                                   'distance_m', round(a.checkin_distance_m), 'accuracy_m', round(a.checkin_accuracy_m),
                                   'checkout_at', a.checkout_at) AS detail
         FROM crm_activity a JOIN grids_user u ON u.id = a.by_id
         WHERE a.merchant_id = %(m)s
         ORDER BY a.occurred_at DESC, a.id DESC LIMIT %(limit)s)
        UNION ALL
        (SELECT 'activity', a.id, a.occurred_at, 2, a.by_id, coalesce(nullif(u.full_name, ''), u.username),
                jsonb_build_object('kind', a.kind, 'title', a.title, 'event_type', a.event_type, 'notes', a.notes)
         FROM crm_activity a JOIN grids_user u ON u.id = a.by_id
         WHERE a.id IN (SELECT activity_id FROM crm_eventattendance WHERE merchant_id = %(m)s)
           AND a.merchant_id IS DISTINCT FROM %(m)s AND a.grid_id = ANY(%(grids)s)
         ORDER BY a.occurred_at DESC, a.id DESC LIMIT %(limit)s)
        UNION ALL
        (SELECT 'stage_change', sc.id, sc.at, 1, sc.by_id, coalesce(nullif(u.full_name, ''), u.username),
                jsonb_build_object('lead_id', sc.lead_id, 'product', l.product, 'from', sc.from_stage,
                                   'to', sc.to_stage, 'activity_id', sc.activity_id)
         FROM crm_leadstagechange sc JOIN crm_lead l ON l.id = sc.lead_id
         LEFT JOIN grids_user u ON u.id = sc.by_id
         WHERE l.merchant_id = %(m)s
         ORDER BY sc.at DESC, sc.id DESC LIMIT %(limit)s)
        UNION ALL
        (SELECT 'merchant', e.pgh_id, e.pgh_created_at, 0, NULL, NULL,
                jsonb_build_object('label', e.pgh_label, 'name', e.name, 'status', e.status,
                                   'grid_id', e.grid_id, 'owner_id', e.owner_id)
         FROM crm_merchantevent e
         WHERE e.pgh_obj_id = %(m)s
         ORDER BY e.pgh_created_at DESC, e.pgh_id DESC LIMIT %(limit)s)
    ) t
    ORDER BY at DESC, rank DESC, id DESC
    LIMIT %(limit)s
"""


def _query_count(call) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        call()
    return len(captured.captured_queries)


@benchmark
def merchant_timeline(ctx: Context) -> Case:
    """The timeline of the merchant with the most activities, as its owner:
    ``GET /api/v1/merchants/<id>/timeline/?limit=50`` against one UNION ALL statement: its
    activities, the events it attended (in the user's grids), its leads' stage changes and its
    pghistory events, newest first (time, then source rank: activity > stage change > merchant,
    then id), LIMIT 50; each branch limited to 50 on its index (activity_merchant_time,
    stage_change_lead_at, crm_merchantevent.pgh_obj_id). Verified: the same (type, id) list, and
    the same number of queries for this merchant as for one with a single activity (no N+1)."""
    from django.db import connection

    from grids.models import User

    merchant_id, n_activities = fetchone(
        "SELECT merchant_id, count(*) FROM crm_activity WHERE merchant_id IS NOT NULL "
        "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1"
    )
    owner_id, grid_id = fetchone("SELECT owner_id, grid_id FROM crm_merchant WHERE id = %s", [merchant_id])
    small = fetchone(
        "SELECT a.merchant_id FROM crm_activity a JOIN crm_merchant m ON m.id = a.merchant_id "
        "WHERE m.owner_id = %s GROUP BY 1 ORDER BY count(*), 1 LIMIT 1",
        [owner_id],
    )[0]
    user = User.objects.get(pk=owner_id)
    limit = 50
    url = f"/api/v1/merchants/{merchant_id}/timeline/?limit={limit}"
    params = {"m": merchant_id, "grids": active_grid_ids(owner_id), "limit": limit}

    def raw():
        with connection.cursor() as cursor:
            cursor.execute(TIMELINE_SQL, params)
            return cursor.fetchall()

    info = {
        "url": url,
        "user": user.username,
        "merchant_id": merchant_id,
        "activities": n_activities,
        "stage_changes": fetchone(
            "SELECT count(*) FROM crm_leadstagechange sc JOIN crm_lead l ON l.id = sc.lead_id WHERE l.merchant_id = %s",
            [merchant_id],
        )[0],
        "limit": limit,
    }
    client = ctx.client_for(user.username)
    info["stack_floor_ms"] = stack_floor_ms(client)
    pending = route_or_pending(url)
    if pending:
        return Case("merchant_timeline", 2.0, None, raw, info=info, pending=pending)

    def endpoint():
        return _json(client.get(url))

    def verify(body, rows):
        items = json.loads(body)["results"]
        got = [(i["type"], i["id"]) for i in items]
        want = [(r[0], r[1]) for r in rows]
        small_url = f"/api/v1/merchants/{small}/timeline/?limit={limit}"
        facts = {
            "endpoint_items": len(items),
            "raw_rows": len(rows),
            "same_items_in_order": got == want,
            "types": {t: sum(1 for g in got if g[0] == t) for t in {g[0] for g in got}},
            "queries_busiest_merchant": _query_count(endpoint),
            "queries_merchant_with_few_activities": _query_count(lambda: _json(client.get(small_url))),
        }
        if got != want:
            raise AssertionError(f"timelines differ: {facts}")
        if facts["queries_busiest_merchant"] != facts["queries_merchant_with_few_activities"]:
            raise AssertionError(f"the number of queries depends on the merchant (N+1?): {facts}")
        return facts

    return Case(
        "merchant_timeline",
        2.0,
        endpoint,
        raw,
        verify=verify,
        info=info,
        breakdown=lambda: _sql_breakdown(endpoint),
    )


FUNNEL_SQL = """
    SELECT to_stage, count(*) FROM crm_leadstagechange
    WHERE grid_id IN (SELECT id FROM grids_grid WHERE sub_branch_id = %(sb)s)
      AND at >= %(since)s AND at < %(until)s
    GROUP BY to_stage
"""


@benchmark
def funnel_sub_branch_month(ctx: Context) -> Case:
    """Funnel counts by stage for one sub-branch (the one with the most stage changes) and the last
    full month, as its branch manager: ``GET /api/v1/reports/funnel/?sub_branch=<id>&since=..&until=..``
    against ``SELECT to_stage, count(*) ... GROUP BY to_stage`` on the covering index
    stage_change_grid_at (grid_id, at) INCLUDE (to_stage). Month boundaries at local midnight
    (Asia/Shanghai), as the report's dates are."""
    import datetime as dt
    import zoneinfo

    from django.conf import settings
    from django.db import connection
    from django.utils import timezone

    first_this = timezone.localdate().replace(day=1)
    last_prev = first_this - dt.timedelta(days=1)
    first_prev = last_prev.replace(day=1)
    zone = zoneinfo.ZoneInfo(settings.TIME_ZONE)
    since = dt.datetime.combine(first_prev, dt.time(), tzinfo=zone)
    until = dt.datetime.combine(first_this, dt.time(), tzinfo=zone)
    sb_id, n_changes = fetchone(
        """
        SELECT g.sub_branch_id, count(*) FROM crm_leadstagechange sc JOIN grids_grid g ON g.id = sc.grid_id
        WHERE sc.at >= %s AND sc.at < %s GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1
        """,
        [since, until],
    )
    username = fetchone(
        "SELECT u.username FROM grids_membership ms JOIN grids_user u ON u.id = ms.user_id "
        "WHERE ms.role = 'branch_manager' AND ms.sub_branch_id = %s ORDER BY ms.id LIMIT 1",
        [sb_id],
    )[0]
    url = f"/api/v1/reports/funnel/?sub_branch={sb_id}&since={first_prev.isoformat()}&until={last_prev.isoformat()}"
    params = {"sb": sb_id, "since": since, "until": until}

    def raw():
        with connection.cursor() as cursor:
            cursor.execute(FUNNEL_SQL, params)
            return cursor.fetchall()

    info = {
        "url": url,
        "user": username,
        "sub_branch_id": sb_id,
        "grids": fetchone("SELECT count(*) FROM grids_grid WHERE sub_branch_id = %s", [sb_id])[0],
        "stage_changes_in_month": n_changes,
        "month": first_prev.strftime("%Y-%m"),
    }
    client = ctx.client_for(username)
    info["stack_floor_ms"] = stack_floor_ms(client)
    pending = route_or_pending(url)
    if pending:
        return Case("funnel_sub_branch_month", 1.5, None, raw, info=info, pending=pending)

    def endpoint():
        return _json(client.get(url))

    def verify(body, rows):
        got = {k: v for k, v in json.loads(body)["stages"].items() if v}
        want = dict(rows)
        facts = {"endpoint_stages": got, "raw_stages": want, "same_counts": got == want}
        if got != want:
            raise AssertionError(f"funnel counts differ: {facts}")
        return facts

    return Case(
        "funnel_sub_branch_month",
        1.5,
        endpoint,
        raw,
        verify=verify,
        info=info,
        breakdown=lambda: _sql_breakdown(endpoint),
    )


FUNNEL_REGION_SQL = """
    SELECT to_stage, count(*) FROM crm_leadstagechange
    WHERE grid_id IN (SELECT g.id FROM grids_grid g JOIN grids_subbranch sb ON sb.id = g.sub_branch_id
                      WHERE sb.branch_id = %(branch)s)
      AND at >= %(since)s AND at < %(until)s
    GROUP BY to_stage
"""


@benchmark
def funnel_region_year(ctx: Context) -> Case:
    """The regional head's view: funnel counts by stage for their whole branch over the last 12
    whole local months (``GET /api/v1/reports/funnel/?since=..&until=..``, every grid of the
    branch) against ``SELECT to_stage, count(*) ... GROUP BY to_stage`` over the raw stage changes
    of the branch's grids. Not a goal of an issue but the case the rollup exists for (PERFORMANCE.md:
    city x 12 months from raw rows is 0.5 s at M): our own goal is 2x a raw statement that counts
    the stage changes alone, while the report also counts the ~1M activities and gives every grid's
    row."""
    import datetime as dt

    from django.conf import settings
    from django.db import connection
    from django.utils import timezone

    zone = zoneinfo.ZoneInfo(settings.TIME_ZONE)
    first_this = timezone.localdate().replace(day=1)
    first = first_this
    for _ in range(12):
        first = (first - dt.timedelta(days=1)).replace(day=1)
    since = dt.datetime.combine(first, dt.time(), tzinfo=zone)
    until = dt.datetime.combine(first_this, dt.time(), tzinfo=zone)
    branch_id, username = fetchone(
        "SELECT ms.branch_id, u.username FROM grids_membership ms JOIN grids_user u ON u.id = ms.user_id "
        "WHERE ms.role = 'regional_head' ORDER BY ms.branch_id, ms.id LIMIT 1"
    )
    last = first_this - dt.timedelta(days=1)
    url = f"/api/v1/reports/funnel/?since={first.isoformat()}&until={last.isoformat()}"
    params = {"branch": branch_id, "since": since, "until": until}

    def raw():
        with connection.cursor() as cursor:
            cursor.execute(FUNNEL_REGION_SQL, params)
            return cursor.fetchall()

    client = ctx.client_for(username)
    info = {"url": url, "user": username, "branch_id": branch_id, "stack_floor_ms": stack_floor_ms(client)}

    def endpoint():
        return _json(client.get(url))

    def verify(body, rows):
        got = {k: v for k, v in json.loads(body)["stages"].items() if v}
        want = dict(rows)
        if got != want:
            raise AssertionError(f"funnel counts differ: {got} != {want}")
        return {"same_counts": True, "stage_changes": sum(want.values())}

    return Case("funnel_region_year", 2.0, endpoint, raw, verify=verify, info=info)
