"""Offline sync benchmarks (issue 5), in the style of bench/benchmarks.py: each builds a ``Case`` with
the endpoint through the full stack (test client, session login, middleware, DRF, restrict(),
services, SQL) against raw SQL doing the same work on the same rows. Importing this module
registers them in ``bench.benchmarks.BENCHMARKS``.

The write benchmark runs both sides inside a transaction that is rolled back after every call, with
fresh client UUIDs each time, so the bench database is left exactly as it was."""

from __future__ import annotations

import datetime
import gzip
import json
import uuid

from bench.benchmarks import Context, _sql_breakdown, active_grid_ids, benchmark, fetchone, stack_floor_ms
from bench.harness import Case

WORKING_SET_URL = "/api/v1/sync/working-set/"
SYNC_URL = "/api/v1/sync/"


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


def busiest_account_manager() -> tuple[int, int]:
    """(user id, merchants owned) of the account manager who owns the most merchants."""
    return fetchone(
        """
        SELECT m.owner_id, count(*) FROM crm_merchant m
        WHERE m.owner_id IS NOT NULL
          AND EXISTS (SELECT 1 FROM grids_membership ms WHERE ms.user_id = m.owner_id AND ms.role = 'account_manager')
        GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1
        """
    )


# The same rows as the working set, section by section, fetched to Python as rows.
RAW_GRIDS = "SELECT g.id, g.code, g.name, ST_AsGeoJSON(g.geom, 6) FROM grids_grid g WHERE g.id = ANY(%(grids)s)"
RAW_MERCHANTS = """
    SELECT m.id, m.name, m.address, m.status, m.grid_id, m.owner_id, ST_Y(m.location), ST_X(m.location),
           m.version, lv.occurred_at, m.industry_id
    FROM crm_merchant m
    LEFT JOIN LATERAL (
        SELECT a.occurred_at FROM crm_activity a
        WHERE a.merchant_id = m.id AND a.kind = 'visit'
        ORDER BY a.occurred_at DESC LIMIT 1
    ) lv ON true
    WHERE m.grid_id = ANY(%(grids)s) AND m.status <> 'closed'
"""
RAW_LEADS = """
    SELECT l.id, l.merchant_id, l.product, l.stage, l.intent, l.amount_requested
    FROM crm_lead l JOIN crm_merchant m ON m.id = l.merchant_id
    WHERE m.grid_id = ANY(%(grids)s) AND m.status <> 'closed' AND l.stage NOT IN ('disbursed', 'lost')
"""
RAW_TASKS = """
    SELECT t.id, t.merchant_id, t.title, t.due_at, t.status, t.owner_id
    FROM crm_task t LEFT JOIN crm_merchant m ON m.id = t.merchant_id
    WHERE t.status = 'open'
      AND ((m.grid_id = ANY(%(grids)s) AND m.status <> 'closed') OR (t.merchant_id IS NULL AND t.owner_id = %(user)s))
"""


@benchmark
def sync_working_set_busiest_am(ctx: Context) -> Case:
    """The initial download of the busiest account manager's working set:
    ``GET /api/v1/sync/working-set/`` with ``Accept-Encoding: gzip`` (the JSON built by PostgreSQL in
    one statement, then compressed) against the raw SQL selecting the same rows: the user's grids
    (with GeoJSON), their non-closed merchants with the last visit (LATERAL ... LIMIT 1 on
    ``activity_last_visit``), the open leads and open tasks of those merchants — four statements,
    rows fetched to Python. The compressed and plain sizes are reported."""
    from django.db import connection

    from grids.models import User

    user_id, owned = busiest_account_manager()
    user = User.objects.get(pk=user_id)
    grids = active_grid_ids(user_id)
    params = {"grids": grids, "user": user_id}

    def raw():
        out = []
        with connection.cursor() as cursor:
            for sql in (RAW_GRIDS, RAW_MERCHANTS, RAW_LEADS, RAW_TASKS):
                cursor.execute(sql, params)
                out.append(cursor.fetchall())
        return out

    client = ctx.client_for(user.username)
    info = {"url": WORKING_SET_URL, "user": user.username, "merchants_owned": owned, "grids": len(grids)}
    info["stack_floor_ms"] = stack_floor_ms(client)

    def endpoint():
        response = client.get(WORKING_SET_URL, HTTP_ACCEPT_ENCODING="gzip")
        assert response.status_code == 200, (response.status_code, response.content[:300])
        return response

    first = endpoint()
    plain = gzip.decompress(first.content) if first.get("Content-Encoding") == "gzip" else first.content
    info["bytes_gzip"] = len(first.content)
    info["bytes_plain"] = len(plain)
    info["etag_304"] = client.get(WORKING_SET_URL, HTTP_IF_NONE_MATCH=first["ETag"]).status_code

    def verify(response, rows):
        body = response.content
        data = json.loads(gzip.decompress(body) if response.get("Content-Encoding") == "gzip" else body)
        facts = {
            "grids": (len(data["grids"]), len(rows[0])),
            "merchants": (len(data["merchants"]), len(rows[1])),
            "leads": (len(data["leads"]), len(rows[2])),
            "tasks": (len(data["tasks"]), len(rows[3])),
            "same_merchant_ids": {m["id"] for m in data["merchants"]} == {r[0] for r in rows[1]},
            "same_lead_ids": {x["id"] for x in data["leads"]} == {r[0] for r in rows[2]},
            "same_task_ids": {x["id"] for x in data["tasks"]} == {r[0] for r in rows[3]},
        }
        if not (facts["same_merchant_ids"] and facts["same_lead_ids"] and facts["same_task_ids"]):
            raise AssertionError(f"working set differs from the raw rows: {facts}")
        return facts

    return Case(
        "sync_working_set_busiest_am",
        2.0,
        endpoint,
        raw,
        verify=verify,
        info=info,
        breakdown=lambda: _sql_breakdown(endpoint),
    )


RAW_INSERT = """
    INSERT INTO crm_activity (kind, merchant_id, grid_id, by_id, occurred_at, title, event_type, notes, outcome,
                              intent, next_step, checkin_location, checkin_accuracy_m, checkin_distance_m,
                              checkin_flag, client_uuid, device_time, received_at)
    SELECT 'visit', m.id, m.grid_id, %(user)s, i.at, '', '', i.notes, 'reached', 'medium', '',
           ST_SetSRID(ST_MakePoint(i.lon, i.lat), 4326), i.acc,
           ST_Distance(m.location::geography, ST_SetSRID(ST_MakePoint(i.lon, i.lat), 4326)::geography),
           CASE WHEN ST_Distance(m.location::geography, ST_SetSRID(ST_MakePoint(i.lon, i.lat), 4326)::geography)
                     > %(radius)s THEN 'too_far'
                WHEN i.acc > %(max_acc)s THEN 'poor_accuracy' ELSE 'ok' END,
           i.u, i.at, now()
    FROM unnest(%(uuids)s::uuid[], %(mids)s::bigint[], %(ats)s::timestamptz[], %(lons)s::float8[],
                %(lats)s::float8[], %(accs)s::float8[], %(notes)s::text[]) AS i(u, mid, at, lon, lat, acc, notes)
    JOIN crm_merchant m ON m.id = i.mid AND m.grid_id = ANY(%(grids)s)
    ON CONFLICT (client_uuid) DO NOTHING
    RETURNING id, client_uuid
"""


@benchmark
def sync_batch_100_visits(ctx: Context) -> Case:
    """Sending a 100-visit outbox: ``POST /api/v1/sync/`` (advisory locks on the client UUIDs,
    each item validated in Python by the activity serializer's fields and activity_log's rules,
    then ``activity_log_many``: one scope query and one ``INSERT … ON CONFLICT (client_uuid) DO
    NOTHING RETURNING`` computing the check-in distance and flag; before the change, one
    ``activity_log`` per item in its own savepoint, ~10 queries each) against one raw
    ``INSERT … SELECT … ON CONFLICT (client_uuid) DO NOTHING RETURNING`` of the same 100 rows
    (scope as a join on the user's grids, the check-in distance and flag computed in the same
    statement). Fresh UUIDs every call; both sides rolled back."""
    from django.conf import settings
    from django.db import connection
    from django.utils import timezone

    from grids.models import User

    user_id, _owned = busiest_account_manager()
    user = User.objects.get(pk=user_id)
    grids = active_grid_ids(user_id)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, ST_X(location), ST_Y(location) FROM crm_merchant"
            " WHERE grid_id = ANY(%s) AND status <> 'closed' ORDER BY id LIMIT 100",
            [grids],
        )
        targets = cursor.fetchall()
    targets = (targets * (100 // max(1, len(targets)) + 1))[:100]
    client = ctx.client_for(user.username)
    info = {"url": SYNC_URL, "user": user.username, "items": len(targets), "grids": len(grids)}
    info["stack_floor_ms"] = stack_floor_ms(client)

    def rows():
        base = timezone.now() - datetime.timedelta(hours=2)
        return [
            (uuid.uuid4(), mid, base + datetime.timedelta(seconds=i), lon + 0.0003, lat, 15.0, f"走访 {i}")
            for i, (mid, lon, lat) in enumerate(targets)
        ]

    def endpoint():
        items = [
            {
                "client_uuid": str(u),
                "type": "activity",
                "device_time": at.isoformat(),
                "payload": {
                    "merchant": mid,
                    "kind": "visit",
                    "notes": notes,
                    "outcome": "reached",
                    "intent": "medium",
                    "checkin": {"lat": lat, "lon": lon, "accuracy_m": acc},
                },
            }
            for u, mid, at, lon, lat, acc, notes in rows()
        ]

        def call():
            response = client.post(SYNC_URL, {"items": items}, content_type="application/json")
            assert response.status_code == 200, (response.status_code, response.content[:300])
            return response.json()["results"]

        return rolled_back(call)

    def raw():
        batch = rows()
        columns = list(zip(*batch, strict=True))
        params = {
            "user": user_id,
            "grids": grids,
            "radius": settings.CHECKIN_RADIUS_M,
            "max_acc": settings.CHECKIN_MAX_ACCURACY_M,
            "uuids": list(columns[0]),
            "mids": list(columns[1]),
            "ats": list(columns[2]),
            "lons": list(columns[3]),
            "lats": list(columns[4]),
            "accs": list(columns[5]),
            "notes": list(columns[6]),
        }

        def run():
            with connection.cursor() as cursor:
                cursor.execute(RAW_INSERT, params)
                return cursor.fetchall()

        return rolled_back(run)

    def verify(results, inserted):
        facts = {
            "endpoint_created": sum(r["status"] == "created" for r in results),
            "endpoint_other": sorted({r["status"] for r in results} - {"created"}),
            "raw_inserted": len(inserted),
        }
        if facts["endpoint_created"] != len(targets) or facts["raw_inserted"] != len(targets):
            raise AssertionError(f"not every visit was written: {facts} {results[:2]}")
        return facts

    return Case(
        "sync_batch_100_visits",
        3.0,
        endpoint,
        raw,
        verify=verify,
        info=info,
        breakdown=lambda: _sql_breakdown(endpoint, runs=5),
    )
