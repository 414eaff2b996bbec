"""Writes on merchants with their business rules."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from crm.models import GridCheckRun, Merchant
from grids.scoping import RestrictedQuerySet
from grids.selectors import grid_for_point
from grids.services.ownership import grid_owner_for

# One rule, used by every bulk path: a location belongs to the active grid whose boundary covers
# it; on a shared border, the lowest grid id wins (same rule as grids.selectors.grid_for_point).
GRID_OF_LOCATION_SQL = """
    (SELECT g.id FROM grids_grid g
      WHERE g.status = 'active' AND ST_Intersects(g.geom, {loc})
      ORDER BY g.id LIMIT 1)
"""


def merchant_save(*, merchant: Merchant, by, fields: dict | None = None) -> Merchant:
    """Create or update a merchant: validate, set its grid from its location in the database,
    and re-check inside the transaction that it lands within ``by``'s scope.

    Automatic ownership (grids.services.ownership): a merchant that is new or changes grid gets the
    owner the grid's rule gives (leader / round robin / pool) unless an owner is given explicitly.
    A locked merchant (``assignment_locked``: a manager's explicit choice) keeps its grid and owner.
    Shared borders: the lowest grid id wins (grids.selectors.grid_for_point)."""
    fields = dict(fields or {})
    for name, value in fields.items():
        setattr(merchant, name, value)
    creating = merchant.pk is None
    with transaction.atomic():
        if not merchant.assignment_locked:
            old_grid = merchant.grid_id
            merchant.grid_id = grid_for_point(merchant.location)
            if "owner" not in fields and "owner_id" not in fields and (creating or merchant.grid_id != old_grid):
                merchant.owner_id = grid_owner_for(grid_id=merchant.grid_id)
        merchant.full_clean()
        if merchant.owner_id and merchant.grid_id and not _owner_serves_grid(merchant.owner_id, merchant.grid_id):
            raise ValidationError({"owner": [_("The owner is not a member of the merchant's grid.")]})
        merchant.save()
        action = "add" if creating else "change"
        if not Merchant.objects.restrict(by, action).filter(pk=merchant.pk).exists():
            raise ValidationError({"location": [_("This location is outside the grids you may work in.")]})
    return merchant


def merchant_assign(*, merchant: Merchant, by, grid=None, owner=None, lock: bool = True) -> Merchant:
    """A manager's explicit assignment (manual override): put the merchant in ``grid`` (default:
    where it is) with ``owner``, and mark it locked so that redraws, the ownership rules and the
    nightly check leave it there. ``lock=False`` releases it (it follows its location again).
    ``by`` must manage (change the territory of) both the merchant's current grid and the new one."""
    from grids.services._scope import drawable_grids

    with transaction.atomic():
        current = Merchant.objects.select_for_update().get(pk=merchant.pk)
        target_id = getattr(grid, "pk", grid) or current.grid_id
        managed = drawable_grids(by).filter(pk__in={target_id, current.grid_id} - {None})
        if current.grid_id is not None and not managed.filter(pk=current.grid_id).exists():
            raise Merchant.DoesNotExist
        if target_id is None or not managed.filter(pk=target_id).exists():
            raise ValidationError({"grid": [_("Choose a grid you manage.")]})
        owner_id = getattr(owner, "pk", owner)
        if owner_id and not _owner_serves_grid(owner_id, target_id):
            raise ValidationError({"owner": [_("The owner is not a member of this grid.")]})
        current.grid_id, current.owner_id, current.assignment_locked = target_id, owner_id, lock
        if not lock:
            current.grid_id = grid_for_point(current.location)
            if current.grid_id != target_id:
                current.owner_id = grid_owner_for(grid_id=current.grid_id)
        current.save(update_fields=["grid", "owner", "assignment_locked", "updated_at"])
    return current


def _owner_serves_grid(owner_id: int, grid_id: int) -> bool:
    from grids.choices import GRID_ROLES
    from grids.models import Membership

    today = timezone.localdate()
    return (
        Membership.objects.filter(user_id=owner_id, grid_id=grid_id, role__in=GRID_ROLES, start_date__lte=today)
        .exclude(end_date__lt=today)
        .exists()
    )


def merchants_assign_to_grids(*, merchants: RestrictedQuerySet | None = None) -> int:
    """Set every merchant's grid from its location in one UPDATE; only rows whose grid changes
    are written; locked merchants (manual overrides) stay. Returns how many changed. (Owners are
    left as they are; grids.services.ownership.assign_all_merchants also re-owns by the rules.)"""
    where, params = "WHERE NOT m2.assignment_locked", []
    if merchants is not None:
        sub_sql, params = merchants.order_by().values("id").query.sql_with_params()
        where += f" AND m2.id IN ({sub_sql})"
    sql = f"""
        UPDATE crm_merchant m SET grid_id = t.new_grid, updated_at = now()
        FROM (SELECT m2.id, {GRID_OF_LOCATION_SQL.format(loc="m2.location")} AS new_grid
              FROM crm_merchant m2 {where}) t
        WHERE m.id = t.id AND m.grid_id IS DISTINCT FROM t.new_grid
    """
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def merchants_fix_stray_grids() -> GridCheckRun:
    """The nightly check: every merchant whose grid does not match its location is moved to the
    right grid, and each move is recorded as a MerchantGridFix of this run. One statement.
    Locked merchants (a manager's explicit assignment) are not strays and are left alone."""
    with transaction.atomic():
        run = GridCheckRun.objects.create(started_at=timezone.now())
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                WITH target AS (
                    SELECT m.id, m.grid_id AS old_grid, {GRID_OF_LOCATION_SQL.format(loc="m.location")} AS new_grid
                    FROM crm_merchant m
                    WHERE NOT m.assignment_locked
                ), moved AS (
                    UPDATE crm_merchant m SET grid_id = t.new_grid, updated_at = now()
                    FROM target t
                    WHERE m.id = t.id AND t.old_grid IS DISTINCT FROM t.new_grid
                    RETURNING m.id, t.old_grid, t.new_grid
                )
                INSERT INTO crm_merchantgridfix (run_id, merchant_id, from_grid_id, to_grid_id)
                SELECT %s, id, old_grid, new_grid FROM moved
                """,
                [run.pk],
            )
            run.fixed = cursor.rowcount
        run.checked = Merchant.objects.count()
        run.finished_at = timezone.now()
        run.save(update_fields=["fixed", "checked", "finished_at"])
    return run
