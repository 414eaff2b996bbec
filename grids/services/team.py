"""Grid teams: the leader and account managers of each grid (the internal team), as Membership
rows with start and end dates. Nothing is deleted: a change ends the old membership and starts a
new one, so "who held this grid when" stays answerable."""

from __future__ import annotations

import datetime

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from grids.choices import GridStatus, Role
from grids.models import Grid, Membership, User
from grids.services._scope import drawable_grids

UNSET = object()


def _active(grid_id: int, role: str, today: datetime.date):
    return Membership.objects.filter(grid_id=grid_id, role=role, start_date__lte=today).filter(
        Q(end_date__isnull=True) | Q(end_date__gte=today)
    )


def _end(memberships, today: datetime.date) -> int:
    """End memberships: they last through yesterday (or their start day, the shortest possible)."""
    n = 0
    yesterday = today - datetime.timedelta(days=1)
    for m in memberships:
        m.end_date = max(yesterday, m.start_date)
        m.save(update_fields=["end_date"])
        n += 1
    return n


def _user_id(user) -> int:
    uid = getattr(user, "pk", user)
    if not isinstance(uid, int) or not User.objects.filter(pk=uid, is_active=True).exists():
        raise ValidationError({"user": [_("Unknown or inactive user.")]})
    return uid


def _assign_one(*, grid: Grid, leader, account_managers, today) -> dict:
    changes = {"started": 0, "ended": 0}
    if leader is not UNSET:
        current = list(_active(grid.pk, Role.GRID_LEADER, today))
        new_id = _user_id(leader) if leader is not None else None
        stale = [m for m in current if m.user_id != new_id]
        changes["ended"] += _end(stale, today)
        if new_id is not None and not any(m.user_id == new_id for m in current):
            Membership.objects.create(user_id=new_id, role=Role.GRID_LEADER, grid=grid, start_date=today)
            changes["started"] += 1
    if account_managers is not None:
        wanted = {_user_id(u) for u in account_managers}
        current = list(_active(grid.pk, Role.ACCOUNT_MANAGER, today))
        held = {m.user_id for m in current}
        changes["ended"] += _end([m for m in current if m.user_id not in wanted], today)
        for uid in sorted(wanted - held):
            Membership.objects.create(user_id=uid, role=Role.ACCOUNT_MANAGER, grid=grid, start_date=today)
            changes["started"] += 1
    return changes


def team_assign_bulk(*, by, assignments: list[dict]) -> dict:
    """Set the teams of several grids at once: ``[{"grid": Grid|id, "leader": user|id|None
    (optional), "account_managers": [users] (optional)}]``. One transaction; every grid must be
    one ``by`` manages. Returns how many memberships started and ended."""
    today = timezone.localdate()
    totals = {"started": 0, "ended": 0}
    with transaction.atomic():
        ids = [getattr(a["grid"], "pk", a["grid"]) for a in assignments]
        grids = {g.pk: g for g in drawable_grids(by).select_for_update().filter(pk__in=ids)}
        if len(grids) != len(set(ids)):
            raise Grid.DoesNotExist
        for a, gid in zip(assignments, ids, strict=True):
            grid = grids[gid]
            if grid.status != GridStatus.ACTIVE:
                raise ValidationError({"grid": [_("A retired grid has no team.")]})
            done = _assign_one(
                grid=grid,
                leader=a.get("leader", UNSET),
                account_managers=a.get("account_managers"),
                today=today,
            )
            for k in totals:
                totals[k] += done[k]
        # Re-check inside the transaction: every membership written is one ``by`` may change.
        written = Membership.objects.filter(grid_id__in=ids, start_date=today)
        if written.count() != written.restrict(by, "change").count():
            raise ValidationError({"grid": [_("This team change reaches outside the units you manage.")]})
    return totals


def team_assign(*, grid, by, leader=UNSET, account_managers=None) -> dict:
    """Set one grid's leader and/or account managers (see team_assign_bulk)."""
    item = {"grid": grid}
    if leader is not UNSET:
        item["leader"] = leader
    if account_managers is not None:
        item["account_managers"] = account_managers
    return team_assign_bulk(by=by, assignments=[item])


def team_of(*, grid) -> dict:
    """The grid's current team and its membership history (newest first)."""
    today = timezone.localdate()
    rows = list(
        Membership.objects.filter(grid=grid, role__in=(Role.GRID_LEADER, Role.ACCOUNT_MANAGER))
        .select_related("user")
        .order_by("-start_date", "-id")
    )

    def active(m):
        return m.start_date <= today and (m.end_date is None or m.end_date >= today)

    def brief(m):
        return {
            "membership_id": m.pk,
            "user": {"id": m.user_id, "username": m.user.username, "display": str(m.user)},
            "role": m.role,
            "start_date": m.start_date,
            "end_date": m.end_date,
        }

    leaders = [brief(m) for m in rows if active(m) and m.role == Role.GRID_LEADER]
    return {
        "grid_id": getattr(grid, "pk", grid),
        "leader": leaders[0] if leaders else None,
        "account_managers": [brief(m) for m in rows if active(m) and m.role == Role.ACCOUNT_MANAGER],
        "history": [brief(m) for m in rows],
    }
