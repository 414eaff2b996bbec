"""Who sees what, decided in one place (after NetBox's ``restrict``).

Every scoped model's default manager is a ``RestrictedManager``; every entry point (API viewsets,
pages, exports, map layers, tiles) starts from ``Model.objects.restrict(user, action)``.

Rules, from the user's *active* memberships (start <= today <= end, Asia/Shanghai date):
  * superusers see and change everything;
  * regional head: everything in their branch; mid-office analyst: the same, read-only;
  * branch manager: everything in their sub-branch;
  * grid leader / account manager: everything in the grids they belong to;
  * a merchant that lies in no grid is seen by superusers only (the nightly check moves strays
    into their grid; an OR on the owner here would also stop PostgreSQL using the grid index).
Org units themselves (branches, sub-branches) are changed by superusers only.

A model opts in by declaring ``scope_path``: how its rows reach a grid (see ``_RULES``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace

from django.apps import apps
from django.contrib.gis.db import models
from django.db import connections
from django.db.models import Q
from django.db.models.signals import post_delete, post_save
from django.utils import timezone

VIEW = "view"
ACTIONS = ("view", "add", "change", "delete")


@dataclass(frozen=True)
class UserScope:
    """The org units a user holds for one action, resolved from memberships."""

    user_id: int | None
    everything: bool = False
    branch_ids: frozenset[int] = field(default_factory=frozenset)
    sub_branch_ids: frozenset[int] = field(default_factory=frozenset)
    grid_ids: frozenset[int] = field(default_factory=frozenset)

    @property
    def empty(self) -> bool:
        return not (self.everything or self.branch_ids or self.sub_branch_ids or self.grid_ids)

    # -- Q objects over the Grid table -----------------------------------------------------
    def grid_q(self) -> Q:
        """Q on Grid selecting the grids this scope covers."""
        q = Q(pk__in=[])
        if self.branch_ids:
            q |= Q(sub_branch__branch_id__in=self.branch_ids)
        if self.sub_branch_ids:
            q |= Q(sub_branch_id__in=self.sub_branch_ids)
        if self.grid_ids:
            q |= Q(pk__in=self.grid_ids)
        return q

    def grid_fk_q(self, fk: str) -> Q:
        """Q on a model with a foreign key ``fk`` to Grid. Grid members get a literal id list;
        wider scopes a sub-select on grids (a hash semi-join, cheap at 10k grids)."""
        Grid = apps.get_model("grids", "Grid")
        q = Q(pk__in=[])
        if self.grid_ids:
            q |= Q(**{f"{fk}__in": self.grid_ids})
        if self.branch_ids or self.sub_branch_ids:
            wide = UserScope(self.user_id, branch_ids=self.branch_ids, sub_branch_ids=self.sub_branch_ids)
            q |= Q(**{f"{fk}__in": Grid.objects.filter(wide.grid_q()).values("pk")})
        return q


# -- Resolving, at most once per request --------------------------------------------------
#
# Every restrict() needs the user's active memberships. Inside ``scope_cache()`` (one read-only
# request: core.middleware.ScopeCacheMiddleware) each (user, action, day) is resolved once; outside
# it (writes, Celery, shell, tests calling code directly) every call asks the database. The cache
# lives in a ContextVar set for the block and reset when it ends, so it never outlives the request
# nor crosses threads or users; a Membership saved or deleted meanwhile empties it.

_request_scopes: ContextVar[dict | None] = ContextVar("grids_request_scopes", default=None)


@contextmanager
def scope_cache() -> Iterator[None]:
    """Resolve each user's scope at most once per action within the block (one request)."""
    token = _request_scopes.set({})
    try:
        yield
    finally:
        _request_scopes.reset(token)


# Grants: grids added to one user's scope for the length of a block (``scope_grant``). Kept apart
# from the cache (applied on the way out of resolve_scope), so a grant never lands in a cached scope.
_grants: ContextVar[dict[int, frozenset[int]] | None] = ContextVar("grids_scope_grants", default=None)


@contextmanager
def scope_grant(user, grid_ids) -> Iterator[None]:
    """Within the block, ``user``'s scope for every action also covers the grids ``grid_ids``.

    For a write that an earlier state of the world allowed and the current one no longer does (a
    visit logged offline on a merchant reassigned meanwhile, crm.services.sync): the ordinary
    service runs, with every other rule of it, as if ``user`` still held those grids. Only for
    this user, only inside the block (a ContextVar: no other request, thread or user sees it);
    nested grants add up; a user without an active membership gets just the granted grids; a
    superuser is unaffected. The caller is responsible for having decided the grant is due."""
    grid_ids = frozenset(grid_ids)
    current = _grants.get() or {}
    merged = {**current, user.pk: current.get(user.pk, frozenset()) | grid_ids}
    token = _grants.set(merged)
    try:
        yield
    finally:
        _grants.reset(token)


def _granted(user, scope: UserScope) -> UserScope:
    grants = _grants.get()
    if not grants or scope.everything:
        return scope
    extra = grants.get(user.pk)
    if not extra or extra <= scope.grid_ids:
        return scope
    return replace(scope, user_id=user.pk, grid_ids=scope.grid_ids | extra)


def _forget_scopes(**kwargs) -> None:
    cache = _request_scopes.get()
    if cache:
        cache.clear()


post_save.connect(_forget_scopes, sender="grids.Membership", weak=False, dispatch_uid="grids_scope_cache_save")
post_delete.connect(_forget_scopes, sender="grids.Membership", weak=False, dispatch_uid="grids_scope_cache_delete")


def resolve_scope(user, action: str = VIEW) -> UserScope:
    """Resolve ``user``'s scope for ``action`` (one query; none when this request already did)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    if user is None or not user.is_authenticated or not user.is_active:
        return UserScope(user_id=None)
    if user.is_superuser:
        return UserScope(user_id=user.pk, everything=True)
    today = timezone.localdate()
    cache = _request_scopes.get()
    if cache is None:
        return _granted(user, _resolve(user.pk, action, today))
    key = (user.pk, action, today)
    scope = cache.get(key)
    if scope is None:
        scope = cache[key] = _resolve(user.pk, action, today, rows=cache.get((user.pk, _ROWS, today)))
    return _granted(user, scope)


_ROWS = "membership rows"


def seed_scope_rows(user_id: int, today, rows: list[tuple]) -> None:
    """Inside a read-only request (``scope_cache``), keep ``user_id``'s active membership rows
    (branch, sub-branch, grid, role) as of ``today``, read together with the user
    (grids.auth.ScopedModelBackend), so resolving the scope asks the database nothing more.
    Outside one (writes, Celery, shell) it does nothing; a Membership saved meanwhile empties the
    cache with everything else in it."""
    cache = _request_scopes.get()
    if cache is not None:
        cache[(user_id, _ROWS, today)] = rows


_MEMBERSHIP_SQL: tuple[str, tuple[str, ...]] | None = None


def membership_sql() -> tuple[str, tuple[str, ...]]:
    """The active-membership query, compiled once from the ORM (it runs on every request, and
    compiling it cost more than running it), and the order of its parameters ("user"/"today")."""
    global _MEMBERSHIP_SQL
    if _MEMBERSHIP_SQL is None:
        import datetime

        Membership = apps.get_model("grids", "Membership")
        user_marker, day_marker = -7, datetime.date(1999, 9, 9)
        rows = (
            Membership.objects.filter(user_id=user_marker, start_date__lte=day_marker)
            .filter(Q(end_date__isnull=True) | Q(end_date__gte=day_marker))
            .order_by()
            .values_list("branch_id", "sub_branch_id", "grid_id", "role")
        )
        sql, params = rows.query.sql_with_params()
        order = tuple("user" if p == user_marker else "today" for p in params)
        assert sorted(order) == ["today", "today", "user"], params
        _MEMBERSHIP_SQL = sql, order
    return _MEMBERSHIP_SQL


def _resolve(user_id: int, action: str, today, rows: list[tuple] | None = None) -> UserScope:
    """The scope from the active membership rows (asked from the database unless given)."""
    from grids.choices import READ_ONLY_ROLES

    if rows is None:
        Membership = apps.get_model("grids", "Membership")
        sql, order = membership_sql()
        values = {"user": user_id, "today": today}
        with connections[Membership.objects.db].cursor() as cursor:
            cursor.execute(sql, [values[name] for name in order])
            rows = cursor.fetchall()
    branches, sub_branches, grids = set(), set(), set()
    for b, sb, g, role in rows:
        if action != VIEW and role in READ_ONLY_ROLES:
            continue
        if b:
            branches.add(b)
        if sb:
            sub_branches.add(sb)
        if g:
            grids.add(g)
    return UserScope(user_id, False, frozenset(branches), frozenset(sub_branches), frozenset(grids))


# -- Per-model rules: how a row reaches the grids of a scope ----------------------------------


def _grid_rule(scope: UserScope, action: str, model=None) -> Q:
    return scope.grid_q()


def _via_grid_rule(scope: UserScope, action: str, model=None) -> Q:
    return scope.grid_fk_q("grid_id")


def _sub_branch_rule(scope: UserScope, action: str, model=None) -> Q:
    if action != VIEW:
        return Q(pk__in=[])
    Grid = apps.get_model("grids", "Grid")
    return (
        Q(branch_id__in=scope.branch_ids)
        | Q(pk__in=scope.sub_branch_ids)
        | Q(pk__in=Grid.objects.filter(pk__in=scope.grid_ids).values("sub_branch_id"))
    )


def _branch_rule(scope: UserScope, action: str, model=None) -> Q:
    if action != VIEW:
        return Q(pk__in=[])
    SubBranch = apps.get_model("grids", "SubBranch")
    Grid = apps.get_model("grids", "Grid")
    return (
        Q(pk__in=scope.branch_ids)
        | Q(pk__in=SubBranch.objects.filter(pk__in=scope.sub_branch_ids).values("branch_id"))
        | Q(pk__in=Grid.objects.filter(pk__in=scope.grid_ids).values("sub_branch__branch_id"))
    )


def _membership_rule(scope: UserScope, action: str, model=None) -> Q:
    if action != VIEW:
        # Team changes are a territory matter: branch managers and regional heads change the
        # grid memberships inside their units; grid members do not change their own team.
        managers = UserScope(scope.user_id, branch_ids=scope.branch_ids, sub_branch_ids=scope.sub_branch_ids)
        return managers.grid_fk_q("grid_id")
    SubBranch = apps.get_model("grids", "SubBranch")
    Branch = apps.get_model("grids", "Branch")
    return (
        Q(user_id=scope.user_id)
        | scope.grid_fk_q("grid_id")
        | Q(sub_branch_id__in=SubBranch.objects.filter(_sub_branch_rule(scope, VIEW)).values("pk"))
        | Q(branch_id__in=Branch.objects.filter(_branch_rule(scope, VIEW)).values("pk"))
    )


def _reference_rule(scope: UserScope, action: str, model=None) -> Q:
    # Reference lists (industries): readable by anyone who holds a scope, changed by superusers.
    return Q() if action == VIEW else Q(pk__in=[])


def _via_merchant_rule(scope: UserScope, action: str, model=None) -> Q:
    # Rows about a merchant follow the merchant's *current* grid: history moves with the merchant.
    field = getattr(model, "scope_merchant_field", "merchant")
    return scope.grid_fk_q(f"{field}__grid_id")


def _activity_rule(scope: UserScope, action: str, model=None) -> Q:
    # Visits and calls follow their merchant; an event (no single merchant) belongs to its grid.
    return scope.grid_fk_q("merchant__grid_id") | (Q(merchant__isnull=True) & scope.grid_fk_q("grid_id"))


def _task_rule(scope: UserScope, action: str, model=None) -> Q:
    return scope.grid_fk_q("merchant__grid_id") | Q(merchant__isnull=True, owner_id=scope.user_id)


def _person_rule(scope: UserScope, action: str, model=None) -> Q:
    MerchantPerson = apps.get_model("crm", "MerchantPerson")
    linked = MerchantPerson.objects.filter(scope.grid_fk_q("merchant__grid_id")).values("person_id")
    return Q(pk__in=linked)


def _own_rule(scope: UserScope, action: str, model=None) -> Q:
    return Q(user_id=scope.user_id)


def _handover_rule(scope: UserScope, action: str, model=None) -> Q:
    return Q(by_id=scope.user_id)


def _superuser_rule(scope: UserScope, action: str, model=None) -> Q:
    return Q(pk__in=[])


def _territory_plan_rule(scope: UserScope, action: str, model=None) -> Q:
    # Redraw proposals (a sub-branch, optionally one grid): seen by the managers of the
    # sub-branch and by the members of the grid it redraws; decided by the managers only.
    q = Q(pk__in=[])
    if scope.sub_branch_ids:
        q |= Q(sub_branch_id__in=scope.sub_branch_ids)
    if scope.branch_ids:
        q |= Q(sub_branch__branch_id__in=scope.branch_ids)
    if action == VIEW and scope.grid_ids:
        q |= Q(grid_id__in=scope.grid_ids)
    return q


_RULES = {
    "via_merchant": _via_merchant_rule,
    "activity": _activity_rule,
    "task": _task_rule,
    "person": _person_rule,
    "own": _own_rule,
    "handover": _handover_rule,
    "superuser": _superuser_rule,
    "territory_plan": _territory_plan_rule,
    "reference": _reference_rule,
    "grid": _grid_rule,
    "via_grid": _via_grid_rule,
    "sub_branch": _sub_branch_rule,
    "branch": _branch_rule,
    "membership": _membership_rule,
}


def scope_q(model, user, action: str = VIEW, scope: UserScope | None = None) -> Q | None:
    """The Q restricting ``model`` for ``user``; ``None`` means unrestricted."""
    scope = scope or resolve_scope(user, action)
    if scope.everything:
        return None
    if scope.empty:
        # No active membership: nothing (a leaver loses access at once).
        return Q(pk__in=[])
    return _RULES[model.scope_path](scope, action, model)


class RestrictedQuerySet(models.QuerySet):
    def restrict(self, user, action: str = VIEW):
        """Only the rows ``user`` may ``action``. Anonymous users get nothing."""
        if user is None or not getattr(user, "is_authenticated", False):
            return self.none()
        q = scope_q(self.model, user, action)
        if q is None:
            return self
        return self.filter(q)


class RestrictedManager(models.Manager.from_queryset(RestrictedQuerySet)):
    use_in_migrations = False
