"""Automatic ownership: which grid a location falls in, and which owner a merchant gets there.

Grid of a location (one rule for every path: save, import, bulk assignment, redraw, nightly
check): the *active* grid whose boundary covers the location (``ST_Intersects``, so a point on
the edge counts). **Shared border rule:** a point on the border of several grids (or in an
accepted overlap) belongs to the grid with the **lowest id** — the oldest grid keeps its edge.

Owner in that grid, by the grid's ``ownership_rule``:
  * ``leader``: the grid's active grid leader (the latest one if several), else nobody;
  * ``round_robin``: the grid's active account manager holding the **fewest merchants in that
    grid**, ties by user id; a batch of merchants arriving together (ordered by merchant id) is
    dealt out in turn starting with that manager (deterministic, one statement);
  * ``pool``: nobody (the unassigned pool, worked from lists).
A merchant with ``assignment_locked`` (a manager's explicit grid/owner choice) is never moved or
re-owned by these rules.

Everything here is SQL over the whole set (``UPDATE … FROM``), never a loop over rows: the join
runs on the GiST index of ``grids_grid.geom``."""

from __future__ import annotations

from django.apps import apps
from django.db import connection, transaction
from django.utils import timezone


def _merchant_table() -> str:
    return apps.get_model("crm", "Merchant")._meta.db_table


#: SQL for the grid of a location ``{loc}`` (see the module docstring for the border rule)
GRID_OF_LOCATION_SQL = """(SELECT g.id FROM grids_grid g
      WHERE g.status = 'active' AND ST_Intersects(g.geom, {loc})
      ORDER BY g.id LIMIT 1)"""


def owner_ctes(incoming: str) -> str:
    """CTEs computing ``owners(id, owner)`` for the rows of ``incoming(id, to_grid, rn)`` (``rn``:
    0-based position of the row among those arriving in the same grid). Needs ``%(today)s``."""
    merchant = _merchant_table()
    return f"""
    active_team AS (
        SELECT ms.grid_id, ms.user_id, ms.role, ms.start_date, ms.id
        FROM grids_membership ms
        WHERE ms.grid_id IN (SELECT DISTINCT to_grid FROM {incoming})
          AND ms.role IN ('grid_leader', 'account_manager')
          AND ms.start_date <= %(today)s AND (ms.end_date IS NULL OR ms.end_date >= %(today)s)
    ),
    leaders AS (
        SELECT DISTINCT ON (grid_id) grid_id, user_id FROM active_team
        WHERE role = 'grid_leader' ORDER BY grid_id, start_date DESC, id DESC
    ),
    -- Only grids dealing round-robin need the load count (a scan of their merchants).
    rr_members AS (
        SELECT DISTINCT t.grid_id, t.user_id FROM active_team t JOIN grids_grid g ON g.id = t.grid_id
        WHERE t.role = 'account_manager' AND g.ownership_rule = 'round_robin'
    ),
    rr_load AS (
        SELECT m.grid_id, m.owner_id, count(*) AS n FROM {merchant} m
        WHERE m.grid_id IN (SELECT grid_id FROM rr_members) GROUP BY 1, 2
    ),
    rr AS (
        SELECT a.grid_id, a.user_id,
               row_number() OVER (PARTITION BY a.grid_id ORDER BY coalesce(l.n, 0), a.user_id) - 1 AS idx,
               count(*) OVER (PARTITION BY a.grid_id) AS n
        FROM rr_members a LEFT JOIN rr_load l ON l.grid_id = a.grid_id AND l.owner_id = a.user_id
    ),
    owners AS (
        SELECT i.id,
               CASE g.ownership_rule WHEN 'leader' THEN ld.user_id WHEN 'round_robin' THEN r.user_id END AS owner
        FROM {incoming} i
        LEFT JOIN grids_grid g ON g.id = i.to_grid
        LEFT JOIN leaders ld ON ld.grid_id = i.to_grid
        LEFT JOIN rr r ON r.grid_id = i.to_grid AND r.idx = i.rn %% r.n
    )"""


def grid_owner_for(*, grid_id: int | None) -> int | None:
    """The owner a merchant newly arriving in ``grid_id`` gets by the grid's rule."""
    if grid_id is None:
        return None
    sql = f"""
        WITH incoming AS (SELECT 0::bigint AS id, %(grid)s::bigint AS to_grid, 0 AS rn),
        {owner_ctes("incoming")}
        SELECT owner FROM owners
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, {"grid": grid_id, "today": timezone.localdate()})
        row = cursor.fetchone()
    return row[0] if row else None


def assign_all_merchants(*, sub_branch=None) -> int:
    """Put every merchant (or those lying in the sub-branch's grids) into the grid its location
    falls in, and give the ones that change grid an owner by the receiving grid's rule; locked
    merchants stay. One ``UPDATE … FROM``; only rows whose grid changes are written. Returns how
    many rows changed."""
    merchant = _merchant_table()
    where = ""
    params: dict = {"today": timezone.localdate()}
    if sub_branch is not None:
        # Merchants inside the sub-branch's grids now, or filed under one of them.
        params["sb"] = getattr(sub_branch, "pk", sub_branch)
        where = """AND (m.grid_id IN (SELECT id FROM grids_grid WHERE sub_branch_id = %(sb)s)
                    OR EXISTS (SELECT 1 FROM grids_grid s WHERE s.sub_branch_id = %(sb)s AND s.status = 'active'
                               AND ST_Intersects(s.geom, m.location)))"""
    # The grid of each merchant is looked up once (a LATERAL probe of the GiST index), not once in
    # the WHERE and again in the SELECT as a scalar sub-select was; only the rows that change grid
    # go on to the window and the owner rules.
    sql = f"""
        WITH incoming AS (
            SELECT m.id, t.to_grid, row_number() OVER (PARTITION BY t.to_grid ORDER BY m.id) - 1 AS rn
            FROM {merchant} m
            LEFT JOIN LATERAL (
                SELECT g.id AS to_grid FROM grids_grid g
                WHERE g.status = 'active' AND ST_Intersects(g.geom, m.location)
                ORDER BY g.id LIMIT 1
            ) t ON true
            WHERE NOT m.assignment_locked AND m.grid_id IS DISTINCT FROM t.to_grid {where}
        ),
        {owner_ctes("incoming")}
        UPDATE {merchant} m SET grid_id = i.to_grid, owner_id = o.owner, updated_at = now()
        FROM incoming i JOIN owners o ON o.id = i.id
        WHERE m.id = i.id
    """
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount
