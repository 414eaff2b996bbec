"""The account manager's working set (issue 5): what the tablet stores for offline work.

``GET /api/v1/sync/working-set/``: the user's grids, the merchants in them, their open leads and
the open follow-ups, all built into JSON by PostgreSQL in ONE statement and passed through as
bytes (PERFORMANCE.md: psycopg turning rows into Python objects costs more than the query).

Scope, decided by ``restrict()`` like everywhere else:
  * the grids are ``Grid.objects.restrict(user, "view")``: by default the grids the user is a
    *member* of (account manager, grid leader); a user whose scope is wider than grid teams
    (branch manager, regional head, mid-office, superuser) must name the grids with ``grid=``
    (a whole sub-branch does not fit on a tablet), and so may anyone narrow their set;
  * the merchants are ``Merchant.objects.restrict(user, "view")`` in those grids (closed ones left
    out: merged duplicates and gone businesses are not worked), at most
    ``WORKING_SET_MAX_MERCHANTS``; beyond that the request is refused (400 on ``grid``), never
    silently truncated: an offline store that lacks merchants would look complete;
  * leads: the open leads of those merchants; tasks: the open follow-ups of those merchants and the
    user's own merchant-less ones.
A user without any scope (a leaver) gets an empty working set.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from django.core.exceptions import EmptyResultSet, ValidationError
from django.db import connection
from django.utils import timezone
from django.utils.translation import get_language
from django.utils.translation import gettext as _
from psycopg.adapt import Loader

from crm.choices import ActivityKind, CheckinFlag, Intent, LeadStage, Outcome, PhotoKind, ProductKind, TaskStatus
from crm.models import Merchant
from grids.models import Grid
from grids.scoping import resolve_scope

#: More merchants than a tablet should hold (and than one download should carry).
WORKING_SET_MAX_MERCHANTS = 5000
#: At most this many grids named in ``grid=``.
MAX_GRIDS = 50
#: Bumped whenever the document's shape changes, so old ETags never match a new shape.
SHAPE = "ws1"

# One merchant as the device stores it (also the "server" copy in sync results).
MERCHANT_COLUMNS = """
    m.id, m.name, m.address, m.status, m.grid_id AS grid, m.owner_id AS owner,
    round(ST_Y(m.location)::numeric, 7) AS lat, round(ST_X(m.location)::numeric, 7) AS lon,
    m.version,
    (SELECT a.occurred_at FROM crm_activity a
      WHERE a.merchant_id = m.id AND a.kind = 'visit'
      ORDER BY a.occurred_at DESC LIMIT 1) AS last_visit_at,
    m.industry_id AS industry
"""

WORKING_SET_SQL = f"""
WITH ws AS MATERIALIZED (
    SELECT ws.id, ws.name, ws.address, ws.status, ws.grid_id, ws.owner_id, ws.location, ws.version, ws.industry_id
    FROM (__MERCHANTS__) ws
    LIMIT %s
)
SELECT
    (SELECT count(*) FROM ws),
    (SELECT coalesce(json_agg(x ORDER BY x.id), '[]')::text FROM (
        SELECT g.id, g.code, g.name, ST_AsGeoJSON(g.geom, 6)::json AS geom
        FROM grids_grid g WHERE g.id = ANY(%s)) x),
    (SELECT coalesce(json_agg(x ORDER BY x.id), '[]')::text FROM (
        SELECT {MERCHANT_COLUMNS} FROM ws m) x),
    (SELECT coalesce(json_agg(x ORDER BY x.id), '[]')::text FROM (
        SELECT l.id, l.merchant_id AS merchant, l.product, l.stage, l.intent, l.amount_requested
        FROM crm_lead l
        WHERE l.merchant_id IN (SELECT id FROM ws) AND l.stage NOT IN ('disbursed', 'lost')) x),
    (SELECT coalesce(json_agg(x ORDER BY x.due_at, x.id), '[]')::text FROM (
        SELECT t.id, t.merchant_id AS merchant, t.title, t.due_at, t.status, t.owner_id AS owner
        FROM crm_task t
        WHERE t.status = 'open'
          AND (t.merchant_id IN (SELECT id FROM ws) OR (t.merchant_id IS NULL AND t.owner_id = %s))) x),
    (SELECT coalesce(json_agg(json_build_array(i.id, CASE WHEN %s THEN i.name_en ELSE i.name_zh END)
                              ORDER BY i.sort_order, i.code), '[]')::text
       FROM crm_industry i)
"""

MERCHANT_ROWS_SQL = (
    f"SELECT coalesce(json_agg(x ORDER BY x.id), '[]')::text FROM (SELECT {MERCHANT_COLUMNS} FROM (__MERCHANTS__) m) x"
)


class _RawText(Loader):
    """text column -> bytes: the JSON goes to the response without a decode/encode."""

    def load(self, data):
        return bytes(data)


@dataclass(frozen=True)
class WorkingSet:
    body: bytes
    etag: str
    merchants: int


def parse_grid_ids(raw: str | None) -> list[int] | None:
    """``grid=1,2`` (or repeated) -> ids; ``None`` when absent. A bad value is a ValidationError
    on ``grid``."""
    if raw is None or raw == "":
        return None
    parts = [p.strip() for p in raw.split(",") if p.strip()]
    if not parts or not all(p.isdigit() and len(p) < 19 for p in parts):
        raise ValidationError({"grid": [_("Give grid ids as whole numbers separated by commas.")]})
    if len(parts) > MAX_GRIDS:
        raise ValidationError({"grid": [_("Name at most %(max)d grids.") % {"max": MAX_GRIDS}]})
    return sorted({int(p) for p in parts})


def working_set_grids(*, user, requested: list[int] | None) -> list[int]:
    """The grids of ``user``'s working set (see the module docstring). ValidationError on ``grid``
    when a wide scope names none, or names one it may not see (the same answer for "does not
    exist": nothing about other scopes leaks)."""
    scope = resolve_scope(user, "view")
    if scope.empty:
        return []
    if requested is None:
        if scope.everything or scope.branch_ids or scope.sub_branch_ids:
            raise ValidationError(
                {"grid": [_("Your scope is wider than a grid team's: choose the grids to take offline (grid=id,id).")]}
            )
        requested = sorted(scope.grid_ids)
    found = sorted(Grid.objects.restrict(user, "view").filter(pk__in=requested).values_list("pk", flat=True))
    if found != requested:
        raise ValidationError({"grid": [_("Some of these grids do not exist or are outside your scope.")]})
    return found


def _merchants_sql(user, grid_ids: list[int]) -> tuple[str, list]:
    queryset = (
        Merchant.objects.restrict(user, "view")
        .filter(grid_id__in=grid_ids)
        .exclude(status="closed")
        .order_by("id")
        .values("id", "name", "address", "status", "grid_id", "owner_id", "location", "version", "industry_id")
    )
    sql, params = queryset.query.sql_with_params()
    return sql, list(params)


def choices() -> dict:
    """The value/label lists the app needs offline, in the request's language."""

    def pairs(enum):
        return [[value, str(label)] for value, label in enum.choices]

    return {
        "stages": pairs(LeadStage),
        "outcomes": pairs(Outcome),
        "intent": pairs(Intent),
        "photo_kinds": pairs(PhotoKind),
        "activity_kinds": [[v, str(label)] for v, label in ActivityKind.choices if v != ActivityKind.EVENT],
        "products": pairs(ProductKind),
        "task_statuses": pairs(TaskStatus),
        "checkin_flags": pairs(CheckinFlag),
    }


def _dumps(value) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def working_set(*, user, grid_ids: list[int]) -> WorkingSet:
    """The document (bytes), its ETag (weak; from everything but ``generated_at``) and the number
    of merchants. One statement for all sections."""
    cs = choices()
    sections = {"grids": b"[]", "merchants": b"[]", "leads": b"[]", "tasks": b"[]"}
    count, industries = 0, b"[]"
    if grid_ids:
        try:
            merchants_sql, merchants_params = _merchants_sql(user, grid_ids)
        except EmptyResultSet:
            merchants_sql = None
        if merchants_sql is not None:
            sql = WORKING_SET_SQL.replace("__MERCHANTS__", merchants_sql)
            en = (get_language() or "").startswith("en")
            params = [*merchants_params, WORKING_SET_MAX_MERCHANTS + 1, grid_ids, user.pk, en]
            with connection.cursor() as cursor:
                cursor.cursor.adapters.register_loader("text", _RawText)
                cursor.execute(sql, params)
                count, grids, merchants, leads, tasks, industries = cursor.fetchone()
            if count > WORKING_SET_MAX_MERCHANTS:
                raise ValidationError(
                    {
                        "grid": [
                            _("More than %(max)d merchants: choose fewer grids (grid=id,id).")
                            % {"max": WORKING_SET_MAX_MERCHANTS}
                        ]
                    }
                )
            sections = {"grids": grids, "merchants": merchants, "leads": leads, "tasks": tasks}
    cs["industries"] = json.loads(industries) if industries != b"[]" else _industries()
    head = _dumps({"id": user.pk, "username": user.username, "full_name": getattr(user, "full_name", "")})
    choices_json = _dumps(cs)
    digest = hashlib.blake2b(digest_size=16)
    for part in (SHAPE.encode(), head, *sections.values(), choices_json):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    generated_at = _dumps(timezone.now().isoformat())
    body = b"".join(
        (
            b'{"generated_at":',
            generated_at,
            b',"user":',
            head,
            b',"grids":',
            sections["grids"],
            b',"merchants":',
            sections["merchants"],
            b',"leads":',
            sections["leads"],
            b',"tasks":',
            sections["tasks"],
            b',"choices":',
            choices_json,
            b"}",
        )
    )
    return WorkingSet(body=body, etag=f'W/"{SHAPE}-{digest.hexdigest()}"', merchants=count)


def _industries() -> list:
    """Industries when no statement ran (an empty working set still carries the lists)."""
    from crm.models import Industry

    en = (get_language() or "").startswith("en")
    return [[i.pk, i.name_en if en else i.name_zh] for i in Industry.objects.order_by("sort_order", "code")]


def merchant_rows(*, user, ids) -> dict[int, dict]:
    """The working-set row of each merchant in ``ids`` that ``user`` may view, by id (the "server"
    copy in sync results). One statement."""
    ids = sorted({int(i) for i in ids})
    if not ids:
        return {}
    queryset = (
        Merchant.objects.restrict(user, "view")
        .filter(pk__in=ids)
        .order_by("id")
        .values("id", "name", "address", "status", "grid_id", "owner_id", "location", "version", "industry_id")
    )
    try:
        sql, params = queryset.query.sql_with_params()
    except EmptyResultSet:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(MERCHANT_ROWS_SQL.replace("__MERCHANTS__", sql), params)
        (rows,) = cursor.fetchone()
    rows = json.loads(rows) if isinstance(rows, str | bytes) else rows
    return {row["id"]: row for row in rows}
