from collections import Counter

from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.shortcuts import render

from core.context_processors import request_memberships
from crm.models import Merchant
from grids.choices import BRANCH_ROLES, GRID_ROLES, SUB_BRANCH_ROLES
from grids.models import Grid, SubBranch


@login_required
def home(request):
    """The role's home page: what the user holds and how much is in it.

    Every count comes from ``restrict()``ed querysets, aggregated in the database: the page runs a
    fixed number of queries whatever the size of the scope (see tests/test_pages.py)."""
    user = request.user
    memberships = request_memberships(request)
    roles = {m.role for m in memberships}
    grids = Grid.objects.restrict(user)
    merchants = Merchant.objects.restrict(user)

    # Two queries for every figure on the page, each over a restricted queryset: merchants per grid
    # (grouped on the merchant table alone: no join, ~2x faster at a million merchants), and the
    # grids in scope with their sub-branch, which rolls the merchant counts up to sub-branches.
    merchants_by_grid: dict[int | None, int] = dict(merchants.values_list("grid_id").annotate(n=Count("id")).order_by())
    grids_by_sub_branch: Counter[int] = Counter()
    merchants_by_sub_branch: Counter[int] = Counter()
    for grid_id, sub_branch_id in grids.values_list("id", "sub_branch_id").order_by():
        grids_by_sub_branch[sub_branch_id] += 1
        merchants_by_sub_branch[sub_branch_id] += merchants_by_grid.get(grid_id, 0)

    context = {
        "memberships": memberships,
        "has_scope": user.is_superuser or bool(memberships),
        "grid_count": grids_by_sub_branch.total(),
        "merchant_count": sum(merchants_by_grid.values()),
        "unassigned_merchant_count": merchants_by_grid.get(None, 0),
        "sub_branch_rows": None,
        "grid_rows": None,
        "my_grids": None,
    }

    if user.is_superuser or roles & set(BRANCH_ROLES):
        # Regional head, mid-office, admin: one row per sub-branch in scope.
        sub_branches = SubBranch.objects.restrict(user).select_related("branch").order_by("branch__code", "code")
        rows = [
            {
                "sub_branch": sb,
                "grid_count": grids_by_sub_branch.get(sb.pk, 0),
                "merchant_count": merchants_by_sub_branch.get(sb.pk, 0),
            }
            for sb in sub_branches
        ]
        context["sub_branch_rows"] = rows
        context["show_branch_column"] = len({r["sub_branch"].branch_id for r in rows}) > 1
        context["sub_branch_count"] = len(rows)

    managed = [m.sub_branch_id for m in memberships if m.role in SUB_BRANCH_ROLES]
    if managed:
        # Branch manager: one row per grid of their sub-branch(es).
        context["grid_rows"] = [
            {"grid": g, "merchant_count": merchants_by_grid.get(g.pk, 0)}
            for g in grids.filter(sub_branch_id__in=managed).select_related("sub_branch").order_by("sub_branch", "code")
        ]

    held = [m.grid_id for m in memberships if m.role in GRID_ROLES]
    if held:
        # Grid leader, account manager: the grids they work, each with a way onto the map.
        context["my_grids"] = [
            {"grid": g, "merchant_count": merchants_by_grid.get(g.pk, 0)}
            for g in grids.filter(pk__in=held).select_related("sub_branch").order_by("code")
        ]
    return render(request, "crm/home.html", context)
