"""The funnel rollup (crm.models.FunnelMonthCount): counts per grid x local month x stage / kind.

``funnel_rollup_rebuild`` recomputes it from the raw rows in one transaction (readers keep seeing
the previous version until it commits: DELETE + INSERT under MVCC, no lock that blocks them). It
covers every row written before ``covers_before`` = now - ``ROLLUP_MARGIN``; the margin leaves out
rows of transactions that may still be open (a sync batch takes milliseconds; a transaction open
for minutes would be a bug), so nothing committed late is missed: the report reads every row
written at or after ``covers_before`` from the raw tables (crm.selectors.funnel).

Rebuilding rather than counting on each write: every writer (lead services, activity logging,
offline sync, merges, imports, the demo loader) stays as it is, a missed writer can never make the
rollup drift, and a full rebuild at scale M costs about a second (Celery beat, every 10 minutes).
"""

from __future__ import annotations

import datetime
import time

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from crm.choices import ActivityKind, LeadStage
from crm.models import FunnelRollupState
from crm.models.funnel import ROLLUP_KIND_COLUMNS, ROLLUP_STAGE_COLUMNS

ROLLUP_MARGIN = datetime.timedelta(minutes=2)

STAGES, KINDS = tuple(LeadStage.values), tuple(ActivityKind.values)


def _pivot(column: str, values: tuple[str, ...], zeros: int, first: bool) -> str:
    counts = [f"count(*) FILTER (WHERE {column} = '{v}')" for v in values]
    pad = ["0"] * zeros
    return ", ".join(counts + pad if first else pad + counts)


_COLUMNS = (*ROLLUP_STAGE_COLUMNS, *ROLLUP_KIND_COLUMNS)
# Choice values are code constants spliced into SQL (checked in crm.selectors.funnel).
_REBUILD_SQL = f"""
INSERT INTO crm_funnelmonthcount (grid_id, month, {", ".join(_COLUMNS)})
SELECT grid_id, month, {", ".join(f"sum(c{i})" for i in range(len(_COLUMNS)))}
FROM (
    SELECT sc.grid_id, date_trunc('month', sc.at AT TIME ZONE %(tz)s)::date AS month,
           {_pivot("sc.to_stage", STAGES, len(KINDS), True)}
      FROM crm_leadstagechange sc
     WHERE sc.grid_id IS NOT NULL AND sc.recorded_at < %(before)s
     GROUP BY 1, 2
    UNION ALL
    SELECT a.grid_id, date_trunc('month', a.occurred_at AT TIME ZONE %(tz)s)::date,
           {_pivot("a.kind", KINDS, len(STAGES), False)}
      FROM crm_activity a
     WHERE a.grid_id IS NOT NULL AND a.received_at < %(before)s
     GROUP BY 1, 2
) x ({", ".join(["grid_id", "month", *(f"c{i}" for i in range(len(_COLUMNS)))])})
GROUP BY grid_id, month
"""


def funnel_rollup_rebuild(*, now: datetime.datetime | None = None) -> FunnelRollupState:
    """Recompute every count from the raw rows written before ``now - ROLLUP_MARGIN``."""
    now = now or timezone.now()
    before = now - ROLLUP_MARGIN
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        # One rebuild at a time (beat runs one, but a manual run may overlap): the second waits.
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext('crm_funnel_rollup'))")
        cursor.execute("DELETE FROM crm_funnelmonthcount")
        cursor.execute(_REBUILD_SQL, {"tz": settings.TIME_ZONE, "before": before})
        state, _created = FunnelRollupState.objects.update_or_create(
            pk=1,
            defaults={
                "covers_before": before,
                "built_at": now,
                "build_ms": round((time.perf_counter() - started) * 1000),
            },
        )
    return state
