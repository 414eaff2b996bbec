"""The funnel report: leads reaching each stage and activity volume, per grid and period.

ONE statement answers the report, stage counts and activity volume together, and PostgreSQL
builds the JSON document (passed through to the response as bytes):

* stage changes into each stage (LeadStageChange.to_stage; a lead created in the period counts
  under "lead"), by the grid the merchant was in at the time of the change, from the covering
  index stage_change_grid_at (grid, at) INCLUDE (to_stage);
* activities (visits, calls, events) by Activity.grid, from the covering index
  activity_grid_time (grid, occurred_at) INCLUDE (kind);

both index-only scans, one ``count(*) FILTER (...)`` column per stage or kind, merged per grid with
UNION ALL + GROUP BY. Only the grids the user may view (``Grid.objects.restrict``) are read.

bench/ at scale M (a sub-branch of 192 grids, one month): per-row Python (dicts per grid, choice
lists rebuilt on every access) and a DRF serializer cost 10x the two queries; now the endpoint runs
the user's memberships and this statement, and does no per-row work."""

from __future__ import annotations

import datetime
import json

from django.core.exceptions import EmptyResultSet
from django.db import connection
from django.utils import timezone
from psycopg.adapt import Loader

from crm.choices import ActivityKind, LeadStage
from crm.models.funnel import ROLLUP_KIND_COLUMNS, ROLLUP_STAGE_COLUMNS
from grids.models import Grid

# Fixed at import: the keys of every "stages" / "activities" object, in this order.
STAGES: tuple[str, ...] = tuple(LeadStage.values)
KINDS: tuple[str, ...] = tuple(ActivityKind.values)


def _counts(prefix: str, column: str, values: tuple[str, ...]) -> str:
    # Choice values are code constants (checked below), never user input.
    return ", ".join(f"count(*) FILTER (WHERE {column} = '{v}') AS {prefix}{i}" for i, v in enumerate(values))


def _object(prefix: str, values: tuple[str, ...], agg: str = "") -> str:
    """SQL text of a JSON object {"lead": <col>, ...} over the pivoted columns (summed when ``agg``):
    the document is concatenated as text, cheaper than json_build_object per row (~1 ms for the
    192 grids of a sub-branch)."""
    parts = []
    for i, value in enumerate(values):
        column = f"coalesce({agg}(r.{prefix}{i}), 0)" if agg else f"r.{prefix}{i}"
        parts.append("'" + ("," if i else "{") + '"' + value + '"' + ":' || " + column)
    return " || ".join(parts) + " || '}'"


# The report document (both statements): totals, then one object per grid by code.
_ROW = (
    """'{"id":' || r.id || ',"name":' || to_json(r.name)::text || ',"code":' || to_json(r.code)::text"""
    + """ || ',"stages":' || """
    + _object("s", STAGES)
    + """ || ',"activities":' || """
    + _object("a", KINDS)
    + " || '}'"
)
_DOCUMENT = (
    """SELECT '{"since":"' || %s::date || '","until":"' || %s::date || '","stages":' || """
    + _object("s", STAGES, "sum")
    + """ || ',"activities":' || """
    + _object("a", KINDS, "sum")
    + """ || ',"results":[' || coalesce(string_agg("""
    + _ROW
    + """, ',' ORDER BY r.code), '') || ']}'"""
)


assert all(v.isidentifier() and v.islower() for v in STAGES + KINDS), "choice values are spliced into SQL"

_ANY = " + ".join([f"s.s{i}" for i in range(len(STAGES))] + [f"a.a{i}" for i in range(len(KINDS))])

# __GRIDS__: the restricted grids (id, name, code). For each, two LATERAL aggregates, each one
# index-only range scan of that grid's period (a plain Aggregate per grid: cheaper than hashing
# every row by grid and stage/kind).
REPORT_SQL = f"""
{_DOCUMENT}
FROM (
    SELECT g.id, g.name, g.code, s.*, a.*
    FROM (__GRIDS__) g
    CROSS JOIN LATERAL (
        SELECT {_counts("s", "sc.to_stage", STAGES)}
        FROM crm_leadstagechange sc WHERE sc.grid_id = g.id AND sc.at >= %s AND sc.at < %s
    ) s
    CROSS JOIN LATERAL (
        SELECT {_counts("a", "a.kind", KINDS)}
        FROM crm_activity a WHERE a.grid_id = g.id AND a.occurred_at >= %s AND a.occurred_at < %s
    ) a
    WHERE {_ANY} > 0
) r
"""


# The rollup path (crm.models.FunnelMonthCount), a statement starting with SELECT (pghistory's
# middleware prefixes any other with a set_config() command): the whole local months inside the period come from
# the rollup, plus the rows written since it was built (received/recorded at or after
# ``covers_before``: a handful, by their own index); the parts of the period outside whole months
# (``__EDGES__``) from the raw rows like REPORT_SQL. ``covers_before`` is read inside the statement
# (one snapshot with the counts, so a rebuild committing meanwhile can neither drop nor double a
# row); ``hint`` is the value read just before, a literal that lets the planner see how few rows
# are new (it is never later than the one read inside, so it only widens the range).
_ROLLUP_SUMS = ", ".join(
    f"r.{column} AS {prefix}{i}"
    for prefix, columns in (("s", ROLLUP_STAGE_COLUMNS), ("a", ROLLUP_KIND_COLUMNS))
    for i, column in enumerate(columns)
)
# A raw row as one count in its column: (sc.to_stage = 'lead')::int AS s0, ..., 0 AS a0, ...
_STAGE_ROW = ", ".join([f"(sc.to_stage = '{v}')::int" for v in STAGES] + ["0"] * len(KINDS))
_KIND_ROW = ", ".join(["0"] * len(STAGES) + [f"(a.kind = '{v}')::int" for v in KINDS])
_SUMS = ", ".join(f"sum(c.{p}{i}) AS {p}{i}" for p, values in (("s", STAGES), ("a", KINDS)) for i in range(len(values)))
_COLS = ", ".join(f"{p}{i}" for p, values in (("s", STAGES), ("a", KINDS)) for i in range(len(values)))

ROLLUP_SQL = f"""
SELECT q.doc FROM (
WITH g AS (__GRIDS__),
st AS (SELECT covers_before FROM crm_funnelrollupstate WHERE id = 1),
c ({_COLS}, grid_id) AS (
    SELECT {_ROLLUP_SUMS}, r.grid_id FROM crm_funnelmonthcount r
     WHERE r.grid_id IN (SELECT id FROM g) AND r.month >= %s AND r.month < %s
    UNION ALL
    SELECT {_STAGE_ROW}, sc.grid_id FROM crm_leadstagechange sc, st
     WHERE sc.recorded_at >= %s AND sc.recorded_at >= st.covers_before
       AND sc.at >= %s AND sc.at < %s AND sc.grid_id IN (SELECT id FROM g)
    UNION ALL
    SELECT {_KIND_ROW}, a.grid_id FROM crm_activity a, st
     WHERE a.received_at >= %s AND a.received_at >= st.covers_before
       AND a.occurred_at >= %s AND a.occurred_at < %s AND a.grid_id IN (SELECT id FROM g)
    __EDGES__
)
{_DOCUMENT} AS doc
FROM (
    SELECT g.id, g.name, g.code, {_SUMS}
    FROM c JOIN g ON g.id = c.grid_id
    GROUP BY g.id, g.name, g.code
    HAVING {" + ".join(f"sum(c.{p}{i})" for p, values in (("s", STAGES), ("a", KINDS)) for i in range(len(values)))} > 0
) r
) q
"""

_EDGE_SQL = f"""
    UNION ALL
    SELECT {_STAGE_ROW}, sc.grid_id FROM crm_leadstagechange sc
     WHERE sc.at >= %s AND sc.at < %s AND sc.grid_id IN (SELECT id FROM g)
    UNION ALL
    SELECT {_KIND_ROW}, a.grid_id FROM crm_activity a
     WHERE a.occurred_at >= %s AND a.occurred_at < %s AND a.grid_id IN (SELECT id FROM g)"""


def _whole_months(since: datetime.datetime, until: datetime.datetime):
    """(first month start, end) as local dates and as instants: the whole local months inside
    [since, until), or None when there is none."""
    zone = timezone.get_default_timezone()
    local = since.astimezone(zone)
    first = local.date().replace(day=1)
    if local != datetime.datetime.combine(first, datetime.time(), zone):
        first = next_month(first)
    end = until.astimezone(zone).date().replace(day=1)
    if end <= first:
        return None
    return (
        first,
        end,
        datetime.datetime.combine(first, datetime.time(), zone),
        datetime.datetime.combine(end, datetime.time(), zone),
    )


def next_month(day: datetime.date) -> datetime.date:
    """The first day of the month after ``day``'s."""
    return (day.replace(day=28) + datetime.timedelta(days=4)).replace(day=1)


def _rollup_covers_before() -> datetime.datetime | None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT covers_before FROM crm_funnelrollupstate WHERE id = 1")
        row = cursor.fetchone()
    return row[0] if row else None


class _RawText(Loader):
    """text column -> bytes: the document goes to the response without a decode/encode."""

    def load(self, data):
        return bytes(data)


def _empty(since_day: datetime.date, until_day: datetime.date) -> bytes:
    return json.dumps(
        {
            "since": since_day.isoformat(),
            "until": until_day.isoformat(),
            "stages": dict.fromkeys(STAGES, 0),
            "activities": dict.fromkeys(KINDS, 0),
            "results": [],
        },
        separators=(",", ":"),
    ).encode()


def funnel_report_json(
    *,
    user,
    sub_branch_id: int | None = None,
    grid_ids=None,
    since: datetime.datetime,
    until: datetime.datetime,
    since_day: datetime.date | None = None,
    until_day: datetime.date | None = None,
) -> bytes:
    """The report as a JSON document (bytes): ``{"since", "until", "stages", "activities",
    "results": [{"id", "name", "code", "stages", "activities"}, ...]}`` for the grids ``user``
    may view (optionally one sub-branch and/or some grids), counting ``since`` <= t < ``until``.
    ``since_day``/``until_day`` are the days the period was asked as (default: the dates of
    ``since`` and of the day before ``until``). Rows: one per grid that had anything, by code."""
    since_day = since_day or since.date()
    until_day = until_day or (until - datetime.timedelta(days=1)).date()
    grids = Grid.objects.restrict(user, "view")
    if sub_branch_id is not None:
        grids = grids.filter(sub_branch_id=sub_branch_id)
    if grid_ids is not None:
        grids = grids.filter(pk__in=list(grid_ids))
    try:
        grids_sql, grids_params = grids.order_by().values("id", "name", "code").query.sql_with_params()
    except EmptyResultSet:  # no scope, or ids that are all outside it: nothing to ask
        return _empty(since_day, until_day)
    months = _whole_months(since, until)
    hint = _rollup_covers_before() if months else None
    if hint is None:  # no whole month in the period, or the rollup was never built
        sql = REPORT_SQL.replace("__GRIDS__", grids_sql)
        params = [since_day, until_day, *grids_params, since, until, since, until]
    else:
        first_month, end_month, months_from, months_to = months
        fresh = [hint, months_from, months_to]
        params = [*grids_params, first_month, end_month, *fresh, *fresh]
        edges = ""
        for lo, hi in ((since, months_from), (months_to, until)):
            if lo < hi:
                edges += _EDGE_SQL
                params += [lo, hi, lo, hi]
        params += [since_day, until_day]
        sql = ROLLUP_SQL.replace("__GRIDS__", grids_sql).replace("__EDGES__", edges)
    # Not prepared (core.db.prepared_cursor): a generic plan cannot see how few rows are newer than
    # the rollup (the hint) nor how long the period is, and picked plans 100x slower for a branch
    # x 12 months; planning costs ~1 ms.
    with connection.cursor() as cursor:
        cursor.cursor.adapters.register_loader("text", _RawText)
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


def funnel_summary(
    *,
    user,
    sub_branch_id: int | None = None,
    grid_ids=None,
    since: datetime.datetime,
    until: datetime.datetime,
) -> dict:
    """The same report as a dict (for Python callers): ``stages``, ``activities`` (totals) and
    ``grids`` (the per-grid rows), from the same single statement."""
    report = json.loads(
        funnel_report_json(user=user, sub_branch_id=sub_branch_id, grid_ids=grid_ids, since=since, until=until)
    )
    return {
        "since": since,
        "until": until,
        "stages": report["stages"],
        "activities": report["activities"],
        "grids": report["results"],
    }
