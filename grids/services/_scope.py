"""Who may draw: the territory is changed by branch managers (their sub-branch) and regional
heads (their branch); grid leaders and account managers see their grids but do not draw, and the
read-only mid-office never writes. Built on grids.scoping.resolve_scope, so it follows the same
memberships as everything else."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.utils.translation import gettext as _

from grids.models import Grid, SubBranch
from grids.scoping import UserScope, resolve_scope


def manager_scope(user) -> UserScope:
    scope = resolve_scope(user, "change")
    if scope.everything:
        return scope
    return UserScope(scope.user_id, branch_ids=scope.branch_ids, sub_branch_ids=scope.sub_branch_ids)


def drawable_grids(user):
    """Grids ``user`` may redraw, edit, retire and staff."""
    scope = manager_scope(user)
    if scope.everything:
        return Grid.objects.all()
    if scope.empty:
        return Grid.objects.none()
    return Grid.objects.filter(scope.grid_q())


def drawable_sub_branches(user):
    scope = manager_scope(user)
    if scope.everything:
        return SubBranch.objects.all()
    if scope.empty:
        return SubBranch.objects.none()
    return SubBranch.objects.filter(Q(pk__in=scope.sub_branch_ids) | Q(branch_id__in=scope.branch_ids))


def may_draw_in(user, sub_branch: SubBranch) -> bool:
    """Whether ``user`` may draw in ``sub_branch`` (loaded, with its ``branch_id``): the rule of
    drawable_sub_branches() for one sub-branch, answered from the scope without a query (the
    grids of a sub-branch are drawable exactly when it is)."""
    scope = manager_scope(user)
    if scope.everything:
        return True
    return sub_branch.pk in scope.sub_branch_ids or sub_branch.branch_id in scope.branch_ids


def check_can_draw(user, *, sub_branch_id: int) -> None:
    """PermissionDenied unless ``user`` may draw grids in the sub-branch."""
    if not drawable_sub_branches(user).filter(pk=sub_branch_id).exists():
        raise PermissionDenied(_("You may not draw grids in this sub-branch."))
